// Communicators for data-parallel training: the collectives a run needs (all-reduce, reduce-scatter, all-gather,
// broadcast, barrier) behind one small interface, with a single-process implementation and MPI for host buffers.
// A GPU backend adds NCCL here (bootstrapped through MPI) without touching the training loop.
//
// Every collective has a deadline (GPT2_COMM_TIMEOUT): a rank that died, hangs, or runs different flags gives a
// one-line error, never a hang.

import type { Tensor } from "../kernels/backend.js";
import { loadNativeAddon } from "../kernels/native.js";
import { env as envVar } from "../util/env.js";

/** A buffer a collective works on: a backend tensor (a host Float32Array on the CPU backends), or host values. */
export type CommBuffer = Tensor | Float32Array | Float64Array | Uint8Array;

export interface PendingOp {
  /** drives progress; true once complete (never blocks) */
  test(): boolean;
  /** blocks until complete (or the deadline) */
  wait(): void;
}

export interface Communicator {
  readonly rank: number;
  readonly size: number;
  /** "single" or "mpi" (and "nccl" with a GPU backend) */
  readonly kind: string;
  /** a line saying what it is (library, ABI) */
  readonly description: string;
  /** collectives advance while the caller computes (NCCL); MPI on CPUs only progresses inside MPI calls */
  readonly asyncProgress: boolean;
  /** in-place sum over all ranks */
  allReduceSum(buf: CommBuffer): void;
  /** the same, started now and finished by wait(): lets the backward pass go on meanwhile */
  startAllReduceSum(buf: CommBuffer): PendingOp;
  /**
   * In-place reduce-scatter (sum): buf holds counts.reduce(+) values on every rank; afterwards this rank's part,
   * at offset counts[0] + ... + counts[rank - 1], holds the sum over ranks (the rest of buf is undefined).
   */
  reduceScatterSum(buf: Tensor | Float32Array, counts: number[]): void;
  /** In-place all-gather: each rank's part (layout as reduceScatterSum) is copied to every rank. */
  allGather(buf: Tensor | Float32Array, counts: number[]): void;
  broadcast(buf: CommBuffer, root?: number): void;
  barrier(): void;
  /** seconds spent blocked in collectives since the last call */
  takeWaitSeconds(): number;
  /** ends every rank of the job at once (after an error on one of them) */
  abort(code?: number): void;
  close(): void;
}

export class CommError extends Error {
  override name = "CommError";
}

/** Equal parts of `total` for `size` ranks (the last may be smaller): counts and this rank's [lo, hi). */
export function shardRange(total: number, size: number, rank: number): { counts: number[]; lo: number; hi: number } {
  const chunk = Math.ceil(total / size);
  const counts = Array.from({ length: size }, (_, r) => Math.max(0, Math.min(chunk, total - r * chunk)));
  const lo = Math.min(total, rank * chunk);
  return { counts, lo, hi: lo + counts[rank] };
}

const DONE: PendingOp = { test: () => true, wait: () => {} };

/** One process: every collective is the identity. */
export class SingleComm implements Communicator {
  readonly rank = 0;
  readonly size = 1;
  readonly kind = "single";
  readonly description = "single process";
  readonly asyncProgress = false;
  allReduceSum(): void {}
  startAllReduceSum(): PendingOp { return DONE; }
  reduceScatterSum(): void {}
  allGather(): void {}
  broadcast(): void {}
  barrier(): void {}
  takeWaitSeconds(): number { return 0; }
  abort(code = 1): void { process.exit(code); }
  close(): void {}
}

interface MpiAddon {
  mpiInit(lib?: string): { rank: number; size: number; lib: string; abi: string };
  /** a blocking collective under a watchdog that ends the process after timeoutSeconds; returns seconds taken */
  mpiRun(op: string, buf: CommBuffer | null, arg: number | Int32Array | null, timeoutSeconds: number): number;
  /** a non-blocking in-place all-reduce (sum); returns a request id */
  mpiStart(buf: CommBuffer): number;
  mpiTest(id: number): boolean;
  mpiWait(id: number, timeoutSeconds: number): number;
  mpiAbort(code: number): void;
  mpiFinalize(): void;
}

/**
 * MPI through the native addon, which loads libmpi at run time. Buffers must be host typed arrays.
 * Blocking collectives past their deadline end the process from the addon's watchdog (MPI cannot cancel them);
 * the overlapped all-reduces are polled and raise a CommError.
 */
export class MpiComm implements Communicator {
  readonly rank: number;
  readonly size: number;
  readonly kind = "mpi";
  readonly description: string;
  readonly asyncProgress = false;
  private waited = 0;

  constructor(private readonly mpi: MpiAddon, readonly timeoutSeconds: number, lib?: string) {
    const info = mpi.mpiInit(lib);
    this.rank = info.rank;
    this.size = info.size;
    this.description = `MPI (${info.lib}, ${info.abi === "openmpi" ? "Open MPI" : "MPICH"} ABI), ${info.size} ranks`;
  }

  private host(buf: CommBuffer): Float32Array | Float64Array | Uint8Array {
    if (buf instanceof Float32Array || buf instanceof Float64Array || buf instanceof Uint8Array) return buf;
    throw new CommError("MPI collectives take host buffers (Float32Array); this backend's tensors live elsewhere");
  }

  private run(op: string, buf: CommBuffer | null, arg: number | Int32Array | null = null): void {
    this.waited += this.mpi.mpiRun(op, buf === null ? null : this.host(buf), arg, this.timeoutSeconds);
  }

  startAllReduceSum(buf: CommBuffer): PendingOp {
    const b = this.host(buf);
    const id = this.mpi.mpiStart(b);
    let done = false;
    return {
      test: () => done || (done = this.mpi.mpiTest(id)),
      wait: () => {
        if (done) return;
        try {
          this.waited += this.mpi.mpiWait(id, this.timeoutSeconds);
        } catch (e) {
          const msg = (e as Error).message;
          throw new CommError(msg.startsWith("timeout: ")
            ? `${msg.slice(9)} (GPT2_COMM_TIMEOUT): another rank died, hangs, or runs different flags` : msg);
        }
        done = true;
      },
    };
  }

  allReduceSum(buf: CommBuffer): void { this.run("allreduce", buf); }
  reduceScatterSum(buf: Tensor, counts: number[]): void { this.run("reducescatter", buf, Int32Array.from(counts)); }
  allGather(buf: Tensor, counts: number[]): void { this.run("allgather", buf, Int32Array.from(counts)); }
  broadcast(buf: CommBuffer, root = 0): void { this.run("bcast", buf, root); }
  barrier(): void { this.run("barrier", null); }

  takeWaitSeconds(): number {
    const w = this.waited;
    this.waited = 0;
    return w;
  }

  abort(code = 1): void { this.mpi.mpiAbort(code); process.exit(code); }

  close(): void { this.mpi.mpiFinalize(); }
}

/**
 * Ranks in the job as the launcher tells them (mpirun / srun / hydra), before MPI is initialized: the job's size, and
 * this node's rank count and this process's place among them (which GPU it takes).
 */
export function launcherWorld(env: NodeJS.ProcessEnv = process.env): { size: number; localSize: number; localRank: number } | null {
  const n = (k: string) => (env[k] !== undefined ? Number(env[k]) : NaN);
  const first = (keys: string[], ok: (x: number) => boolean) => keys.map(n).find((x) => Number.isInteger(x) && ok(x));
  const size = first(["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"], (x) => x > 0);
  if (size === undefined) return null;
  const local = first(["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"], (x) => x > 0);
  const localRank = first(["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMIX_LOCAL_RANK", "SLURM_LOCALID"], (x) => x >= 0);
  return { size, localSize: local ?? size, localRank: localRank ?? 0 };
}

/** Seconds a collective may wait (GPT2_COMM_TIMEOUT, default 600: long enough for rank 0's evaluations). */
export function commTimeout(from: NodeJS.ProcessEnv = process.env): number {
  const t = Number(envVar("GPT2_COMM_TIMEOUT", from) ?? 600);
  if (!(t > 0)) throw new CommError(`GPT2_COMM_TIMEOUT must be a positive number of seconds, got "${envVar("GPT2_COMM_TIMEOUT", from)}"`);
  return t;
}

/**
 * The communicator for this process: MPI when a launcher started more than one rank (or `force` asks for it),
 * else a single process. GPT2_LIBMPI names the MPI library when it is not libmpi.so.40 / .12.
 */
export function createCommunicator(opts: { force?: boolean; env?: NodeJS.ProcessEnv } = {}): Communicator {
  const env = opts.env ?? process.env;
  const world = launcherWorld(env);
  if (!opts.force && (!world || world.size <= 1)) return new SingleComm();
  const { addon, error } = loadNativeAddon();
  if (!addon) throw new CommError(`multi-process training needs the native addon, which is not available: ${error}`);
  try {
    return new MpiComm(addon as unknown as MpiAddon, commTimeout(env), envVar("GPT2_LIBMPI", env));
  } catch (e) {
    if (e instanceof CommError) throw e;
    throw new CommError(`${world ? `launched as ${world.size} ranks, but ` : ""}${(e as Error).message}`);
  }
}
