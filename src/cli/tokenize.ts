// gpt2 tokenize [--json] [--allow-special] [--chat]: text on stdin -> ids;  gpt2 detokenize: ids on stdin -> text.

import { parseExample, parseMessages, renderChat, renderExample, type Rendered } from "../chat/template.js";
import { CHAT_VOCAB_SIZE, decode, encode } from "../tokenizer/bpe.js";
import { parse, parseIds, readStdin, UsageError, commandHelp } from "./common.js";

export const help = commandHelp({
  usage: "gpt2 tokenize [--json] [--allow-special] [--chat] < text",
  about: "Text on stdin to GPT-2 token ids (tiktoken's, exactly).",
  flags: {
    json: { type: "boolean", help: "a JSON array (with --chat: {ids, trained, text})" },
    "allow-special": { type: "boolean", help: "the text <|endoftext|> is the special token 50256 (otherwise plain text)" },
    chat: { type: "boolean", help: "stdin is a conversation ({\"messages\": [...]}): show its rendering by the chat template, [[trained]] tokens marked" },
  },
});

export const detokenizeHelp = commandHelp({
  usage: "gpt2 detokenize < ids", about: "Token ids on stdin (a JSON array, or separated by commas or white space) to text; chat tokens print as their names.", flags: {},
});

export async function tokenizeCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, help.flags);
  const text = await readStdin();
  if (values.chat) return showChat(text, !!values.json);
  const ids = encode(text, { allowSpecial: values["allow-special"] });
  process.stdout.write(values.json ? JSON.stringify(ids) + "\n" : ids.join(" ") + "\n");
}

/**
 * --chat: a conversation on stdin ({"messages": [...]}, a bare array of messages, or {"prompt", "completion"})
 * rendered by the chat template: the ids, and the text with the tokens the loss trains on marked [[like this]].
 * A conversation that ends with a user message is shown as a prompt, ending in <|assistant|>.
 */
function showChat(text: string, json: boolean): void {
  let row: unknown;
  try { row = JSON.parse(text); } catch { throw new UsageError("--chat expects a JSON conversation on stdin: {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}, ...]}"); }
  let r: Rendered;
  if (Array.isArray(row)) row = { messages: row };
  const msgs = (row as { messages?: unknown }).messages;
  if (Array.isArray(msgs) && msgs.length && (msgs.at(-1) as { role?: unknown })?.role !== "assistant") {
    r = renderChat(parseMessages(msgs, "stdin"), { generationPrompt: true });
  } else {
    r = renderExample(parseExample(row, "stdin"));
  }
  if (json) {
    process.stdout.write(JSON.stringify({ ids: r.ids, trained: Array.from(r.trained), text: decode(r.ids) }) + "\n");
    return;
  }
  let view = "";
  for (let i = 0; i < r.ids.length; i++) {
    const open = r.trained[i] && !r.trained[i - 1], close = r.trained[i] && !r.trained[i + 1];
    view += (open ? "[[" : "") + decode([r.ids[i]]) + (close ? "]]" : "");
  }
  let trained = 0;
  for (const t of r.trained) trained += t;
  process.stdout.write(`${view}\n\nids (${r.ids.length}, ${trained} trained on, marked [[...]] above): ${r.ids.join(" ")}\n`);
}

export async function detokenizeCommand(argv: string[]): Promise<void> {
  parse(argv, {});
  const ids = parseIds(await readStdin(), "stdin");
  const bad = ids.find((i) => i >= CHAT_VOCAB_SIZE);
  if (bad !== undefined) throw new UsageError(`token id ${bad} is outside GPT-2's vocabulary with the chat tokens [0, ${CHAT_VOCAB_SIZE})`);
  process.stdout.write(decode(ids));
}
