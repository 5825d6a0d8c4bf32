// The web app's server (gpt2 web): its built folder (scripts/build-web.mjs) as static files, and models given on the
// command line under /models/NAME, so the page opens them by URL. 127.0.0.1 only unless a host is given; GET and
// HEAD only; nothing outside those files is reachable (no listing, no path above the folder).

import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { pipeline } from "node:stream";

export interface StaticServerOptions {
  /** the built web app */
  dir: string;
  /** model files served at /models/BASENAME */
  models?: string[];
  port?: number;
  host?: string;
}

export interface StaticServer {
  url: string;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".json": "application/json",
  ".wasm": "application/wasm", ".txt": "text/plain; charset=utf-8", ".css": "text/css",
};

export async function startStaticServer(o: StaticServerOptions): Promise<StaticServer> {
  const root = fs.realpathSync(path.resolve(o.dir));
  const models = new Map((o.models ?? []).map((m) => [path.basename(m), path.resolve(m)]));
  const host = o.host ?? "127.0.0.1";
  const loopback = /^(127\.|::1$|::ffff:127\.|localhost$)/i.test(host);
  /** the name a request was sent to (its Host header, lowercase, port dropped) when it names this server's port */
  const named = (h: string | undefined): string | null => {
    const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec((h ?? "").toLowerCase());
    if (!m || (m[2] === undefined ? port !== 80 : Number(m[2]) !== port)) return null;
    return m[1];
  };
  let port = 0;
  const server = http.createServer((req, res) => {
    const fail = (status: number, msg: string) => { res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }); res.end(msg + "\n"); };
    // on the loopback address, only requests that name it (a page elsewhere that rebinds its own name to 127.0.0.1
    // must not read the models served here)
    if (loopback) {
      const name = named(req.headers.host);
      if (name === null || !/^(127\.[\d.]+|localhost|\[::1\]|\[::ffff:127\.[\d.]+\])$/.test(name)) {
        return fail(421, "this server answers to loopback names only (127.0.0.1, localhost, [::1])");
      }
    }
    if (req.method !== "GET" && req.method !== "HEAD") { res.setHeader("allow", "GET, HEAD"); return fail(405, "only GET and HEAD"); }
    let name: string;
    try { name = decodeURIComponent((req.url ?? "/").split("?")[0]); } catch { return fail(400, "a malformed path"); }
    if (name === "/") name = "/index.html";
    let file: string | undefined;
    if (name.startsWith("/models/")) file = models.get(name.slice("/models/".length));
    else {
      const p = path.resolve(root, "." + path.posix.normalize(name));
      if (p.startsWith(root + path.sep)) file = p;
    }
    let size: number;
    try {
      if (!file) throw new Error();
      // the app's own files only: a link inside the folder that leads out of it is not followed
      if (!name.startsWith("/models/") && !fs.realpathSync(file).startsWith(root + path.sep)) throw new Error();
      const st = fs.statSync(file);
      if (!st.isFile()) throw new Error();
      size = st.size;
    } catch { return fail(404, "not found"); }
    res.writeHead(200, {
      "content-type": TYPES[path.extname(file)] ?? "application/octet-stream", "content-length": size, "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
    });
    if (req.method === "HEAD") return res.end();
    // a client that goes away closes the file too
    pipeline(fs.createReadStream(file), res, () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, host, () => { server.off("error", reject); resolve(); });
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}/`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
