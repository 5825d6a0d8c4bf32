// NCCL for the CUDA backend's device buffers: the Communicator of multi-GPU runs. Rank 0's unique id reaches the other
// ranks through MPI (mpirun) or llm.c's -pi tcp / -pi fs (bootstrap.ts). Collectives run on NCCL's own stream and
// progress while the GPU computes (asyncProgress), so DataParallel overlaps the gradient all-reduce with backward.
// Host buffers (scalars, flags' hash) go through a device staging buffer.

import { byteSize, bytesOf } from "../kernels/backend.js";
import { CudaBackend, CudaTensor, type CudaAddon } from "../kernels/cuda.js";
import { loadNativeAddon } from "../kernels/native.js";
import type { BootstrapOptions } from "./bootstrap.js";
import { shareUniqueId } from "./bootstrap.js";
import { CommError, type CommBuffer, type Communicator, type PendingOp } from "./comm.js";

/** bytes of n float32 values */
const f32 = (n: number): number => bytesOf(n, "f32");

interface NcclAddon {
  ncclUniqueIdNew(): Uint8Array;
  ncclInit(id: Uint8Array, size: number, rank: number, timeoutSeconds: number): number;
  ncclStart(op: string, ptr: number, count: number, dtype: number, root: number): void;
  ncclTest(): boolean;
  ncclWait(what: string, timeoutSeconds: number): number;
  ncclStaging(bytes: number): number;
  ncclAbort(): void;
  ncclDestroy(): void;
}

const FLOAT32 = 7, FLOAT64 = 8, UINT8 = 1;
const NAMES: Record<string, string> = { allreduce: "all-reduce", reducescatter: "reduce-scatter", allgather: "all-gather", bcast: "broadcast" };

/** How the ranks meet: through an MPI communicator already running, or -pi tcp / fs. */
export type NcclBootstrap = { via: Communicator } | BootstrapOptions;

export class NcclComm implements Communicator {
  readonly kind = "nccl";
  readonly asyncProgress = true;
  readonly description: string;
  private waited = 0;

  private constructor(private readonly addon: NcclAddon & CudaAddon, readonly rank: number, readonly size: number,
    readonly timeoutSeconds: number, version: number, how: string, private readonly host: Communicator | null) {
    const v = `${Math.floor(version / 10000)}.${Math.floor(version / 100) % 100}.${version % 100}`;
    this.description = `NCCL ${v} (ids shared ${how}), ${size} ranks`;
  }

  /** Sets up NCCL for `backend`'s GPU; every rank of the job must call it. */
  static async create(backend: CudaBackend, boot: NcclBootstrap, timeoutSeconds: number): Promise<NcclComm> {
    const addon = loadNativeAddon().addon as unknown as NcclAddon & CudaAddon;
    let id: Uint8Array, done = () => {}, rank: number, size: number, how: string;
    if ("via" in boot) {
      ({ rank, size } = boot.via);
      id = rank === 0 ? addon.ncclUniqueIdNew() : new Uint8Array(128);
      boot.via.broadcast(id, 0);
      how = `over ${boot.via.kind.toUpperCase()}`;
    } else {
      ({ rank, size } = boot);
      ({ id, done } = await shareUniqueId(boot, () => addon.ncclUniqueIdNew()));
      how = boot.method === "tcp" ? `by TCP from ${boot.server}` : `through ${boot.dir}`;
    }
    if (!(backend instanceof CudaBackend)) throw new CommError("NCCL needs the CUDA backend (--backend cuda)");
    const version = addon.ncclInit(id, size, rank, timeoutSeconds);
    done();
    return new NcclComm(addon, rank, size, timeoutSeconds, version, how, "via" in boot ? boot.via : null);
  }

  private run(op: string, ptr: number, count: number, dtype = FLOAT32, root = 0): void {
    this.addon.ncclStart(op, ptr, count, dtype, root);
    this.finish(op);
  }

  private finish(op: string): void {
    try {
      this.waited += this.addon.ncclWait(NAMES[op] ?? op, this.timeoutSeconds);
    } catch (e) {
      const msg = (e as Error).message;
      throw new CommError(msg.startsWith("timeout: ")
        ? `rank ${this.rank}: ${msg.slice(9)} (GPT2_COMM_TIMEOUT): another rank died, hangs, or runs different flags` : msg);
    }
  }

  /** a host array through the device: copied in, reduced or broadcast, copied back */
  private staged(op: string, buf: Float32Array | Float64Array | Uint8Array, root = 0): void {
    const dtype = buf instanceof Float64Array ? FLOAT64 : buf instanceof Uint8Array ? UINT8 : FLOAT32;
    const dev = this.addon.ncclStaging(Math.max(8, buf.byteLength));
    this.addon.cudaWrite(dev, buf);
    this.run(op, dev, buf.length, dtype, root);
    this.addon.cudaRead(dev, buf);
  }

  private static isHost(buf: CommBuffer): buf is Float32Array | Float64Array | Uint8Array {
    return buf instanceof Float32Array || buf instanceof Float64Array || buf instanceof Uint8Array;
  }

  private device(buf: CommBuffer): CudaTensor {
    if (!(buf instanceof CudaTensor)) throw new CommError("NCCL collectives take CUDA tensors or host typed arrays");
    return buf;
  }

  allReduceSum(buf: CommBuffer): void {
    if (NcclComm.isHost(buf)) return this.staged("allreduce", buf);
    const t = this.device(buf);
    this.run("allreduce", t.ptr, t.length);
  }

  startAllReduceSum(buf: CommBuffer): PendingOp {
    if (NcclComm.isHost(buf)) {
      this.staged("allreduce", buf);
      return { test: () => true, wait: () => {} };
    }
    const t = this.device(buf);
    this.addon.ncclStart("allreduce", t.ptr, t.length, FLOAT32, 0);
    let done = false;
    // collectives complete in the order they were queued on NCCL's stream: waiting for the last covers this one
    return { test: () => done || (done = this.addon.ncclTest()), wait: () => { if (!done) this.finish("allreduce"); done = true; } };
  }

  /** NCCL wants equal parts; unequal ones (the last shard shorter) go through a padded staging buffer. */
  private parts(buf: CommBuffer, counts: number[]): { t: CudaTensor; chunk: number; equal: boolean; lo: number } {
    const t = this.device(buf);
    const chunk = counts[0];
    const lo = counts.slice(0, this.rank).reduce((a, b) => a + b, 0);
    return { t, chunk, equal: counts.every((c) => c === chunk) && chunk * this.size === t.length, lo };
  }

  reduceScatterSum(buf: CommBuffer, counts: number[]): void {
    const { t, chunk, equal, lo } = this.parts(buf, counts);
    if (equal) return this.run("reducescatter", t.ptr, chunk);
    // collectives move float32 values (f32 below: bytes of n of them)
    const stage = this.addon.ncclStaging(f32(chunk * this.size));
    this.addon.cudaCopy(stage, t.ptr, byteSize(t));
    this.addon.cudaFill(stage + byteSize(t), chunk * this.size - t.length, 0);
    this.run("reducescatter", stage, chunk);
    if (counts[this.rank] > 0) this.addon.cudaCopy(t.ptr + f32(lo), stage + f32(this.rank * chunk), f32(counts[this.rank]));
  }

  allGather(buf: CommBuffer, counts: number[]): void {
    const { t, chunk, equal, lo } = this.parts(buf, counts);
    if (equal) return this.run("allgather", t.ptr, chunk);
    const stage = this.addon.ncclStaging(f32(chunk * this.size));
    if (counts[this.rank] > 0) this.addon.cudaCopy(stage + f32(this.rank * chunk), t.ptr + f32(lo), f32(counts[this.rank]));
    this.run("allgather", stage, chunk);
    this.addon.cudaCopy(t.ptr, stage, byteSize(t));
  }

  broadcast(buf: CommBuffer, root = 0): void {
    if (NcclComm.isHost(buf)) return this.staged("bcast", buf, root);
    const t = this.device(buf);
    this.run("bcast", t.ptr, t.length, FLOAT32, root);
  }

  barrier(): void { this.staged("allreduce", new Uint8Array(1)); }

  takeWaitSeconds(): number {
    const w = this.waited;
    this.waited = 0;
    return w;
  }

  abort(code = 1): void {
    this.addon.ncclAbort();
    if (this.host) this.host.abort(code);
    process.exit(code);
  }

  close(): void {
    this.addon.ncclDestroy();
    this.host?.close();
  }
}
