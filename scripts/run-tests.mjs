// Runs the compiled test files (dist/test/**/*.test.js) with node's test runner.
// Node 20's --test takes no globs, so the files are listed here.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const build = spawnSync(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", root], { stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);
// the web app's bundle, from the same sources (its browser test loads it)
const web = spawnSync(process.execPath, [path.join(root, "scripts/build-web.mjs")], { stdio: "inherit" });
if (web.status !== 0) process.exit(web.status ?? 1);

function collect(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? collect(p) : e.name.endsWith(".test.js") ? [p] : [];
  });
}
const only = process.argv.slice(2);
let files = collect(path.join(root, "dist/test")).sort();
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
if (files.length === 0) { console.error("no test files found"); process.exit(1); }
// the CLI picks the GPU when one is found; the tests mean the CPU unless they name --backend cuda (GPU tests do)
const env = { ...process.env };
if (!env.GPT2_BACKEND && fs.existsSync(path.join(root, "build/Release/gpt2ts_native.node"))) env.GPT2_BACKEND = "native";
const r = spawnSync(process.execPath, ["--test", "--test-concurrency=2", ...files], { stdio: "inherit", cwd: root, env });
process.exit(r.status ?? 1);
