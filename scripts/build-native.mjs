// npm install hook: compiles the native CPU backend with node-gyp (bundled with npm) against the local Node headers.
// A failed build never fails the install: the package then runs on the pure-TypeScript backend and says so.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
// npm tells lifecycle scripts where its node-gyp is; run by hand, look beside this Node's npm
const bundled = path.join(path.dirname(process.execPath), "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js");
const gypJs = process.env.npm_config_node_gyp ?? (fs.existsSync(bundled) ? bundled : undefined);
const cmd = gypJs ? process.execPath : "node-gyp";
// build offline against this Node's own headers when npm has not named them (e.g. Debian's /usr/include/node)
const nodedir = process.env.npm_config_nodedir ??
  [path.resolve(path.dirname(process.execPath), "..")].find((d) => fs.existsSync(path.join(d, "include/node/node_api.h")));
const gypArgs = ["rebuild", ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const args = gypJs ? [gypJs, ...gypArgs] : gypArgs;
const r = spawnSync(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
if (r.status === 0) {
  console.log("gpt2ts: native CPU backend built (build/Release/gpt2ts_native.node)");
} else {
  const why = (r.error?.message ?? (r.stderr || r.stdout || "").trim().split("\n").slice(-5).join("\n"));
  console.warn(`gpt2ts: could not build the native CPU backend; the pure-TypeScript backend will be used.\n${why}`);
}
