// A synthetic assistant task whose answers can be checked exactly: questions about facts given in the same message
// ("Facts: Anna lives in Oslo. Ben lives in Rome. ... Question: Where does Ben live?" -> "In Rome."), asked both
// ways round ("Who lives in Oslo?" -> "It is Anna."). A model
// pretrained on English text cannot do it (it does not know the chat format, nor to answer and stop); a few minutes
// of SFT on such conversations teach it, and held-out rows (new combinations of names and places) measure it.
// Seeded, so every run makes the same rows.

import { Rng } from "../util/rng.js";
import type { Message } from "./template.js";

const NAMES = ["Anna", "Ben", "Carl", "Dora", "Emil", "Fay", "Gus", "Hana", "Ivan", "Jane", "Karl", "Lena", "Mark", "Nina",
  "Omar", "Paul", "Rosa", "Sam", "Tara", "Uma", "Vera", "Will", "Yara", "Zoe", "Adam", "Bea", "Cleo", "Dan", "Eva", "Finn",
  "Gina", "Hugo", "Iris", "Jack", "Kim", "Leo", "Maya", "Noah", "Olga", "Pia"];
const PLACES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Berlin", "Madrid", "Vienna", "Dublin", "Athens", "Prague",
  "Lisbon", "Warsaw", "Boston", "Denver", "Sydney", "Toronto", "Mumbai", "Seoul", "Dakar", "Quito", "Havana", "Nairobi",
  "Geneva", "Milan", "Munich", "Zurich", "Bergen", "Porto", "Seville", "Krakow", "Delhi", "Manila", "Hanoi", "Perth"];

export interface SyntheticOptions {
  /** facts per question: 1 to this many, uniformly (one fact is a copy; more need a lookup, which is much harder) */
  facts?: number;
  seed?: number;
}

/** One conversation: `facts` facts, a question about one of them, and the exact answer. */
export function factsConversation(rng: Rng, facts = 2): { messages: Message[]; answer: string } {
  const names = pick(rng, NAMES, facts), places = pick(rng, PLACES, facts);
  const lines = names.map((n, i) => `${n} lives in ${places[i]}.`);
  const k = rng.int(facts);
  const byPlace = rng.int(2) === 1;
  const question = byPlace ? `Who lives in ${places[k]}?` : `Where does ${names[k]} live?`;
  // every name and place is preceded by a space, in the facts and in the answer: the same tokens, to be found and
  // copied (a word at the start of a text is a different GPT-2 token from the same word after a space)
  const answer = byPlace ? `It is ${names[k]}.` : `In ${places[k]}.`;
  return { messages: [{ role: "user", content: `Facts: ${lines.join(" ")} Question: ${question}` }, { role: "assistant", content: answer }], answer };
}

/** `count` rows as JSONL text ({"messages": [...]}), seeded. */
export function factsJsonl(count: number, o: SyntheticOptions = {}): string {
  const rng = new Rng(o.seed ?? 1);
  let out = "";
  for (let i = 0; i < count; i++) out += JSON.stringify({ messages: factsConversation(rng, 1 + rng.int(o.facts ?? 2)).messages }) + "\n";
  return out;
}

/**
 * Preference pairs on the same questions: the right answer is chosen, a wrong one rejected (another name or place
 * from the facts when there is one, else any other).
 */
export function factsPairsJsonl(count: number, o: SyntheticOptions = {}): string {
  const rng = new Rng(o.seed ?? 1);
  let out = "";
  for (let i = 0; i < count; i++) {
    const { messages, answer } = factsConversation(rng, 1 + rng.int(o.facts ?? 2));
    const question = messages[0].content;
    const byName = answer.startsWith("It is ");
    const pool = byName ? NAMES : PLACES;
    const inFacts = pool.filter((x) => question.includes(` ${x} `) || question.includes(` ${x}.`));
    const right = answer.replace(/^(It is|In) /, "").replace(/\.$/, "");
    const wrongFrom = inFacts.filter((x) => x !== right);
    const wrong = wrongFrom.length ? wrongFrom[rng.int(wrongFrom.length)] : pool.filter((x) => x !== right)[rng.int(pool.length - 1)];
    out += JSON.stringify({ messages: [messages[0]], chosen: answer, rejected: `${byName ? "It is" : "In"} ${wrong}.` }) + "\n";
  }
  return out;
}

/** Prompts for RL, each with the answer a checker compares against. */
export function factsPromptsJsonl(count: number, o: SyntheticOptions = {}): string {
  const rng = new Rng(o.seed ?? 1);
  let out = "";
  for (let i = 0; i < count; i++) {
    const { messages, answer } = factsConversation(rng, 1 + rng.int(o.facts ?? 2));
    out += JSON.stringify({ messages: [messages[0]], answer }) + "\n";
  }
  return out;
}

/** The checker of the facts task for gpt2 rl --reward: 1 for the exact answer, else 0. */
export const FACTS_CHECKER = `// The reward of an answer to a facts question: 1 when it is exactly the answer, else 0 (gpt2 rl --reward this.mjs).
export function reward(prompt, answer, row) {
  const correct = answer.trim() === row.answer;
  return { reward: correct ? 1 : 0, correct };
}
`;

/** k distinct items of a list, in random order */
function pick<T>(rng: Rng, from: readonly T[], k: number): T[] {
  const p = rng.permutation(from.length);
  return Array.from({ length: k }, (_, i) => from[p[i]]);
}
