// One rank of the collectives test (run under mpirun by dist.test.ts): known per-rank inputs through every
// collective of the MPI communicator; prints this rank's results as one JSON line.
import { createCommunicator, shardRange } from "../../src/parallel/comm.js";

const comm = createCommunicator({ force: true });
const r = comm.rank, n = comm.size;

const f32 = new Float32Array([r + 1, 10 * (r + 1), 0.5, -r]);
comm.allReduceSum(f32);
const f64 = new Float64Array([Math.PI * (r + 1), 1e-12 * (r + 1)]);
comm.allReduceSum(f64);
// 11 values do not split evenly: counts 6 + 5 for two ranks
const total = 11;
const { counts, lo, hi } = shardRange(total, n, r);
const rs = Float32Array.from({ length: total }, (_, i) => i * (r + 1));
comm.reduceScatterSum(rs, counts);
const ag = new Float32Array(total).fill(-1);
for (let i = lo; i < hi; i++) ag[i] = 100 * r + i;
comm.allGather(ag, counts);
const bc = Float32Array.from({ length: 3 }, (_, i) => (r === n - 1 ? 7 + i : -1));
comm.broadcast(bc, n - 1);
const overlapped = Float32Array.from({ length: 1000 }, (_, i) => i + r);
const op = comm.startAllReduceSum(overlapped);
while (!op.test()) { /* poll */ }
op.wait();
comm.barrier();
console.log(JSON.stringify({ rank: r, size: n, kind: comm.kind, f32: [...f32], f64: [...f64], lo, hi,
  rsMine: [...rs.subarray(lo, hi)], ag: [...ag], bc: [...bc], overlapped: [overlapped[0], overlapped[999]] }));
comm.close();
