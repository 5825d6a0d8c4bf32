// Collective bandwidth under MPI, for the scale-out benchmark: all-reduce, reduce-scatter and all-gather of float32
// buffers of growing size. Launch with mpirun, e.g.
//   mpirun -np 2 node dist/bench/collectives.js [--json]
// Prints per size the median time and the bus bandwidth (NCCL's convention: all-reduce moves 2(n-1)/n of the
// buffer per rank, reduce-scatter and all-gather (n-1)/n).
import { parseArgs } from "node:util";
import { createCommunicator, shardRange } from "../src/parallel/comm.js";

const { values } = parseArgs({ options: { json: { type: "boolean" }, reps: { type: "string" } } });
const comm = createCommunicator({ force: true });
const n = comm.size, reps = Number(values.reps ?? 7);
const results: { floats: number; op: string; ms: number; busGBs: number }[] = [];
for (const floats of [1 << 10, 1 << 14, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 124_475_904]) {
  const buf = new Float32Array(floats).fill(1);
  const { counts } = shardRange(floats, n, comm.rank);
  const ops: [string, () => void, number][] = [
    ["all-reduce", () => comm.allReduceSum(buf), (2 * (n - 1)) / n],
    ["reduce-scatter", () => comm.reduceScatterSum(buf, counts), (n - 1) / n],
    ["all-gather", () => comm.allGather(buf, counts), (n - 1) / n],
  ];
  for (const [op, run, factor] of ops) {
    const times: number[] = [];
    for (let r = 0; r < reps; r++) {
      comm.barrier();
      const t0 = performance.now();
      run();
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const ms = times[Math.floor(times.length / 2)];
    results.push({ floats, op, ms, busGBs: (floats * 4 * factor) / (ms / 1000) / 1e9 });
  }
}
if (comm.rank === 0) {
  if (values.json) console.log(JSON.stringify({ ranks: n, comm: comm.description, results }));
  else {
    console.log(`${comm.description}`);
    for (const r of results) console.log(`${r.op.padEnd(15)} ${(r.floats * 4 / 2 ** 20).toFixed(3).padStart(9)} MiB  ${r.ms.toFixed(3).padStart(9)} ms  bus ${r.busGBs.toFixed(2)} GB/s`);
  }
}
comm.close();
