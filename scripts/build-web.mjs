// Builds the web app (src/web) into a folder any static host serves: app.js (one ES module bundled by esbuild from
// the same TypeScript sources as the CLI: model, WebGPU kernels, formats, tokenizer), index.html, and tiktoken's
// WASM and GPT-2 ranks, which the page fetches from its own origin. `gpt2 web` serves dist/web.
//
//   node scripts/build-web.mjs [--out DIR]      (npm run build:web -- --out DIR)
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire } from "node:module";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const args = process.argv.slice(2);
const at = args.indexOf("--out");
const out = path.resolve(at >= 0 && args[at + 1] ? args[at + 1] : path.join(root, "dist/web"));

let esbuild;
try {
  esbuild = await import("esbuild");
} catch (e) {
  // an installed package ships dist/web already built; only a checkout without dev dependencies lands here
  console.error(`build-web: esbuild is not installed (npm install in the checkout installs it): ${e.message.split("\n")[0]}`);
  process.exit(1);
}
const require = createRequire(path.join(root, "package.json"));
fs.mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: [path.join(root, "src/web/app.ts")], outfile: path.join(out, "app.js"),
  bundle: true, format: "esm", platform: "browser", target: "es2022", minify: true,
  legalComments: "linked", logLevel: "warning",
  // util/crc32.ts takes Node's native zlib.crc32 when it exists: in the browser it is absent, and its JS table is used
  // (any other Node module reaching the bundle fails the build)
  plugins: [{
    name: "no-node-zlib",
    setup(b) {
      b.onResolve({ filter: /^node:zlib$/ }, () => ({ path: "node:zlib", namespace: "empty" }));
      b.onLoad({ filter: /.*/, namespace: "empty" }, () => ({ contents: "export const crc32 = undefined;", loader: "js" }));
    },
  }],
});
fs.copyFileSync(path.join(root, "src/web/static/index.html"), path.join(out, "index.html"));
fs.copyFileSync(require.resolve("tiktoken/lite/tiktoken_bg.wasm"), path.join(out, "tiktoken_bg.wasm"));
fs.copyFileSync(require.resolve("tiktoken/encoders/gpt2.json"), path.join(out, "gpt2.json"));
const size = fs.readdirSync(out).reduce((n, f) => n + fs.statSync(path.join(out, f)).size, 0);
console.log(`build-web: ${out} (${(size / 2 ** 20).toFixed(1)} MiB)`);
