// How NCCL's ranks find each other without MPI, as llm.c's -pi tcp / -pi fs do: rank 0 makes NCCL's 128-byte unique
// id and hands it to the others, through a TCP server on its address or through a file in a folder all ranks share.
// Every wait has a deadline: a rank that never comes gives an error, not a hang.

import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { CommError } from "./comm.js";

export const UNIQUE_ID_BYTES = 128;
/** llm.c's port for -pi tcp */
export const DEFAULT_BOOTSTRAP_PORT = 12345;
export const ID_FILE = "ncclUniqueId.sync";

export interface BootstrapOptions {
  method: "tcp" | "fs";
  rank: number;
  size: number;
  /** tcp: rank 0's address as the others reach it, "host" or "host:port" */
  server?: string;
  /** fs: a folder every rank sees */
  dir?: string;
  timeoutSeconds: number;
}

/** "host[:port]" -> host and port (default 12345) */
export function parseServer(server: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(server);
  if (!m) throw new CommError(`-ps expects HOST or HOST:PORT, got "${server}"`);
  const port = m[2] === undefined ? DEFAULT_BOOTSTRAP_PORT : Number(m[2]);
  if (!(port > 0 && port < 65536)) throw new CommError(`-ps: port ${m[2]} out of range`);
  return { host: m[1].replace(/^\[|\]$/g, ""), port };
}

/**
 * Rank 0 calls make() and gives the id to every other rank; every rank returns it. `done` (rank 0) is called once
 * all ranks hold it: with -pi fs it removes the file, so a later run never reads this run's id.
 */
export async function shareUniqueId(opts: BootstrapOptions, make: () => Uint8Array): Promise<{ id: Uint8Array; done: () => void }> {
  if (opts.size < 1 || opts.rank < 0 || opts.rank >= opts.size) throw new CommError(`rank ${opts.rank} of ${opts.size}: -pr must be in [0, -pn)`);
  if (opts.method === "tcp") return { id: await viaTcp(opts, make), done: () => {} };
  return viaFolder(opts, make);
}

async function viaTcp(opts: BootstrapOptions, make: () => Uint8Array): Promise<Uint8Array> {
  if (!opts.server) throw new CommError("-pi tcp needs -ps HOST[:PORT], the address of rank 0");
  const { host, port } = parseServer(opts.server);
  const deadline = Date.now() + opts.timeoutSeconds * 1000;
  if (opts.rank === 0) {
    const id = make();
    if (opts.size === 1) return id;
    await new Promise<void>((resolve, reject) => {
      let served = 0;
      const server = net.createServer((sock) => {
        sock.on("error", () => {});
        sock.end(Buffer.from(id), () => {
          if (++served === opts.size - 1) { clearTimeout(timer); server.close(); resolve(); }
        });
      });
      const timer = setTimeout(() => {
        server.close();
        reject(new CommError(`-pi tcp: ${served + 1} of ${opts.size} ranks joined within ${opts.timeoutSeconds} s (GPT2_COMM_TIMEOUT)`));
      }, Math.max(0, deadline - Date.now()));
      server.on("error", (e) => { clearTimeout(timer); reject(new CommError(`-pi tcp: rank 0 cannot listen on ${host}:${port}: ${e.message}`)); });
      server.listen(port, host);
    });
    return id;
  }
  for (;;) {
    try {
      return await new Promise<Uint8Array>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const sock = net.connect(port, host);
        sock.setTimeout(Math.max(1, deadline - Date.now()), () => sock.destroy(new Error("timed out")));
        sock.on("data", (c: Buffer) => chunks.push(c));
        sock.on("error", reject);
        sock.on("close", () => {
          const b = Buffer.concat(chunks);
          if (b.length === UNIQUE_ID_BYTES) resolve(new Uint8Array(b));
          else reject(new Error(`received ${b.length} bytes`));
        });
      });
    } catch (e) {
      if (Date.now() >= deadline) {
        throw new CommError(`-pi tcp: rank ${opts.rank} could not get the NCCL id from rank 0 at ${host}:${port} within ` +
          `${opts.timeoutSeconds} s (GPT2_COMM_TIMEOUT): ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** A file older than this is taken for one left by an earlier run that crashed before its ranks joined. */
const STALE_MS = 120_000;

async function viaFolder(opts: BootstrapOptions, make: () => Uint8Array): Promise<{ id: Uint8Array; done: () => void }> {
  if (!opts.dir) throw new CommError("-pi fs needs -pf DIR, a folder every rank sees");
  if (!fs.existsSync(opts.dir)) throw new CommError(`-pf ${opts.dir}: no such folder`);
  const file = path.join(opts.dir, ID_FILE);
  if (opts.rank === 0) {
    const id = make();
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, id);
    fs.renameSync(tmp, file);
    return { id, done: () => fs.rmSync(file, { force: true }) };
  }
  const start = Date.now(), deadline = start + opts.timeoutSeconds * 1000;
  for (;;) {
    try {
      const st = fs.statSync(file);
      if (st.mtimeMs >= start - STALE_MS && st.size === UNIQUE_ID_BYTES) return { id: new Uint8Array(fs.readFileSync(file)), done: () => {} };
    } catch { /* not there yet */ }
    if (Date.now() >= deadline) {
      throw new CommError(`-pi fs: rank ${opts.rank} found no ${file} from rank 0 within ${opts.timeoutSeconds} s (GPT2_COMM_TIMEOUT)`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
