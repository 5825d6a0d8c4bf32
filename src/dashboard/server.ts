// The dashboard server: 127.0.0.1 only unless a host is given; serves the page, its assets from the installed
// packages (works offline, no CDN), /metrics.json (a run's records, as metrics.jsonl) and /runs.json (all runs).

import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { RunMetrics } from "./charts.js";
import { PAGE } from "./page.js";

export interface DashboardOptions {
  port?: number;
  host?: string;
  /** called on every request for the current runs */
  runs: () => RunMetrics[];
}

export interface Dashboard {
  url: string;
  close(): Promise<void>;
}

export async function startDashboard(o: DashboardOptions): Promise<Dashboard> {
  const require = createRequire(import.meta.url);
  const echartsFile = path.join(path.dirname(require.resolve("echarts/package.json")), "dist", "echarts.min.js");
  const chartsFile = path.join(path.dirname(fileURLToPath(import.meta.url)), "charts.js");
  const send = (res: http.ServerResponse, status: number, type: string, body: string | Buffer) => {
    res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
    res.end(body);
  };
  const server = http.createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    try {
      if (url === "/" || url === "/index.html") return send(res, 200, "text/html; charset=utf-8", PAGE);
      if (url === "/assets/echarts.min.js") return send(res, 200, "text/javascript", fs.readFileSync(echartsFile));
      if (url === "/assets/charts.js") return send(res, 200, "text/javascript", fs.readFileSync(chartsFile));
      if (url === "/runs.json") return send(res, 200, "application/json", JSON.stringify(o.runs()));
      if (url === "/metrics.json") return send(res, 200, "application/json", JSON.stringify(o.runs()[0]?.metrics ?? []));
      send(res, 404, "text/plain", "not found");
    } catch (e) {
      send(res, 500, "text/plain", (e as Error).message);
    }
  });
  const host = o.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}/`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
