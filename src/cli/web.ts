// gpt2 web [--port P] [--host H] [--model FILE ...]: GPT-2 in the browser (WebGPU), served from this machine.

import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { startStaticServer } from "../serve/static.js";
import { commandHelp, num, parse, UsageError } from "./common.js";
import { modelFile } from "../io/load.js";

/** where the package keeps the built web app (npm run build:web writes it; the published package ships it) */
export function webDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../web");
}

export const help = commandHelp({
  usage: "gpt2 web [--port P] [--host H] [--model FILE ...]",
  about: "GPT-2 in the browser: open a model (a file or a URL: gpt2ts, llm.c .bin, Hugging Face safetensors), generate\n" +
    "with streamed tokens, train the tiny preset on pasted text with a live loss chart, download the checkpoint. It runs\n" +
    "on the browser's WebGPU (the same WGSL kernels as --backend webgpu), else on the CPU; the page fetches nothing\n" +
    "from anywhere but this server. `npm run build:web -- --out DIR` writes the same app for any static host.",
  flags: {
    port: { type: "string", arg: "P", help: "the port", shown: "8787 (0: any free one)" },
    host: { type: "string", arg: "H", help: "the address to listen on", shown: "127.0.0.1" },
    model: { type: "string", multiple: true, arg: "FILE", help: "a model file to serve at /models/NAME; the page opens the first one (repeatable)" },
    dir: { type: "string", arg: "DIR", help: "the built app to serve", shown: "the package's dist/web" },
  },
});

export async function webCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, help.flags);
  const dir = values.dir ?? webDir();
  if (!fs.existsSync(path.join(dir, "index.html"))) {
    throw new UsageError(`${dir} holds no built web app (index.html): run "npm run build:web" in the gpt2ts checkout${values.dir ? "" : ", or pass --dir"}`);
  }
  const models = ((values.model ?? []) as string[]).map((m) => {
    const f = modelFile(m);
    if (!fs.existsSync(f) || !fs.statSync(f).isFile()) throw new UsageError(`--model ${m}: no such file (give a .gpt2ts checkpoint, an llm.c .bin or a model.safetensors)`);
    return f;
  });
  const server = await startStaticServer({ dir, models, port: num(values.port, "port", 8787, { int: true, min: 0, max: 65535 }), host: values.host });
  const open = models.length ? `?model=models/${encodeURIComponent(path.basename(models[0]))}` : "";
  process.stdout.write(`gpt2 web: ${server.url}${open}  (Ctrl-C to stop)\n`);
  await new Promise<void>((resolve) => {
    const stop = () => { void server.close().then(resolve); };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
