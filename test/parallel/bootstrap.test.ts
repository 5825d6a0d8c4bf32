// llm.c's NCCL bootstraps without MPI (-pi tcp, -pi fs): rank 0's id reaches every rank, and a missing rank 0 is an
// error within the deadline. Pure TypeScript: no GPU or NCCL needed (the ids here are made-up bytes).
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { test } from "node:test";
import { ID_FILE, parseServer, shareUniqueId } from "../../src/parallel/bootstrap.js";
import { tmpDir } from "../helpers.js";

const makeId = () => Uint8Array.from({ length: 128 }, (_, i) => (i * 7 + 3) & 255);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

test("-pi tcp: three ranks get rank 0's id, the others started first", async () => {
  const server = `127.0.0.1:${await freePort()}`;
  const opts = (rank: number) => ({ method: "tcp" as const, rank, size: 3, server, timeoutSeconds: 20 });
  const others = [1, 2].map((r) => shareUniqueId(opts(r), () => assert.fail("only rank 0 makes the id")));
  await new Promise((r) => setTimeout(r, 300));
  const all = await Promise.all([shareUniqueId(opts(0), makeId), ...others]);
  for (const got of all) assert.deepEqual(got.id, makeId());
});

test("-pi fs: rank 1 waits for rank 0's file; rank 0 removes it once all joined; a stale file is ignored", async () => {
  const dir = tmpDir();
  const file = path.join(dir, ID_FILE);
  fs.writeFileSync(file, new Uint8Array(128)); // left by a run that crashed long ago
  const old = new Date(Date.now() - 3600_000);
  fs.utimesSync(file, old, old);
  const opts = (rank: number) => ({ method: "fs" as const, rank, size: 2, dir, timeoutSeconds: 20 });
  const one = shareUniqueId(opts(1), () => assert.fail("only rank 0 makes the id"));
  await new Promise((r) => setTimeout(r, 300));
  const zero = await shareUniqueId(opts(0), makeId);
  assert.deepEqual((await one).id, makeId());
  assert.deepEqual(zero.id, makeId());
  zero.done();
  assert.equal(fs.existsSync(file), false);
});

test("a rank whose rank 0 never comes fails within the deadline, naming the method and the address", async () => {
  const server = `127.0.0.1:${await freePort()}`;
  await assert.rejects(shareUniqueId({ method: "tcp", rank: 1, size: 2, server, timeoutSeconds: 1 }, makeId),
    new RegExp(`-pi tcp: rank 1 could not get the NCCL id from rank 0 at ${server} within 1 s`));
  const dir = tmpDir();
  await assert.rejects(shareUniqueId({ method: "fs", rank: 1, size: 2, dir, timeoutSeconds: 1 }, makeId),
    /-pi fs: rank 1 found no .*ncclUniqueId\.sync from rank 0 within 1 s/);
  await assert.rejects(shareUniqueId({ method: "fs", rank: 0, size: 2, dir: path.join(dir, "missing"), timeoutSeconds: 1 }, makeId),
    /-pf .*missing: no such folder/);
});

test("-ps takes HOST or HOST:PORT (llm.c's port 12345 by default)", () => {
  assert.deepEqual(parseServer("10.0.0.1"), { host: "10.0.0.1", port: 12345 });
  assert.deepEqual(parseServer("node-a:2345"), { host: "node-a", port: 2345 });
  assert.deepEqual(parseServer("[::1]:99"), { host: "::1", port: 99 });
  assert.throws(() => parseServer("a:b:c"), /-ps expects HOST or HOST:PORT/);
});
