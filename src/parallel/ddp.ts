// Data parallelism over a Communicator, as PyTorch DDP / llm.c: every rank computes gradients on its own batch,
// which are averaged across ranks before the update (each rank's loss is pre-scaled by 1/ranks, so a sum is the
// mean). Without ZeRO, where the communicator progresses on its own (NCCL on a GPU's copy engines), the all-reduce
// runs in buckets started during backward (one per block, in the order backward finishes them), overlapping the
// remaining layers, as PyTorch DDP does. MPI on CPUs does its reductions on the calling core inside MPI calls, so
// there nothing can overlap (measured: bench/scaleout.ts) and one blocking all-reduce of the whole buffer is
// fastest. With ZeRO-1 the gradients are reduce-scattered, each rank updates its own shard of the parameters with
// its shard of the AdamW state, and the parameters are all-gathered.

import type { Tensor } from "../kernels/backend.js";
import type { GPT2 } from "../model/gpt2.js";
import type { Communicator, PendingOp } from "./comm.js";
import { shardRange } from "./comm.js";
import { env } from "../util/env.js";

export interface Shard {
  /** parameters [lo, hi) of the flat buffer are this rank's */
  lo: number;
  hi: number;
  /** every rank's share, in rank order */
  counts: number[];
}

export class DataParallel {
  /** this rank's optimizer shard: everything without ZeRO */
  readonly shard: Shard;
  private pending: PendingOp[] = [];
  private buckets: Tensor[][];
  private tail: Tensor[];

  /**
   * @param overlap start each block's all-reduce during backward: by default where the communicator progresses
   *   asynchronously; GPT2_DDP_OVERLAP=1 / 0 forces it on / off (for measuring)
   */
  constructor(readonly model: GPT2, readonly comm: Communicator, readonly zero: 0 | 1,
    readonly overlap = env("GPT2_DDP_OVERLAP") ? env("GPT2_DDP_OVERLAP") === "1" : comm.asyncProgress) {
    const total = model.layout.total;
    this.shard = zero ? shardRange(total, comm.size, comm.rank) : { lo: 0, hi: total, counts: [total] };
    // buckets of gradient views per block (and ln_f), in the order backward completes them
    if (!model.grads) throw new Error("DataParallel needs the model's gradient buffer: call model.zeroGrad() first");
    const L = model.config.nLayer, be = model.backend, grads = (): Tensor => model.grads!;
    const specs = model.layout.tensors;
    const perLayer = specs.filter((s) => !["wte", "wpe", "lnfw", "lnfb"].includes(s.name));
    this.buckets = Array.from({ length: L + 1 }, (_, l) =>
      l === L ? ["lnfw", "lnfb"].map((n) => be.view(grads(), model.layout.byName[n].offset, model.layout.byName[n].size))
        : perLayer.map((s) => be.view(grads(), s.offset + (l * s.size) / L, s.size / L)));
    this.tail = ["wte", "wpe"].map((n) => be.view(grads(), model.layout.byName[n].offset, model.layout.byName[n].size));
  }

  get active(): boolean { return this.comm.size > 1; }

  /**
   * Arms the overlap for the next backward (the last micro-step of an optimizer step): each completed block's
   * gradients start their all-reduce at once. Only without ZeRO (ZeRO-1 reduce-scatters the flat buffer at the end).
   */
  beforeLastBackward(): void {
    if (!this.active || this.zero || !this.overlap) return;
    this.model.onLayerBackward = (layer) => {
      for (const view of this.buckets[layer]) this.pending.push(this.comm.startAllReduceSum(view));
      for (const p of this.pending) p.test(); // drive progress of the ones in flight
    };
  }

  /** Finishes the gradient reduction after backward: all ranks then hold the mean gradient (or their shard of it). */
  reduceGradients(): void {
    this.model.onLayerBackward = null;
    if (!this.active) return;
    const grads = this.model.grads!;
    if (this.zero) {
      this.comm.reduceScatterSum(grads, this.shard.counts);
      return;
    }
    if (this.pending.length === 0) { // not overlapped: one all-reduce of the whole buffer
      this.comm.allReduceSum(grads);
      return;
    }
    for (const view of this.tail) this.pending.push(this.comm.startAllReduceSum(view));
    for (const p of this.pending) p.wait();
    this.pending = [];
  }

  /** A per-shard sum (e.g. of squared gradients) totalled over the ranks that hold the shards (ZeRO-1). */
  sumOverShards(x: number): number {
    if (!this.zero || !this.active) return x;
    const buf = new Float64Array([x]);
    this.comm.allReduceSum(buf);
    return buf[0];
  }

  /** After the update of this rank's shard: every rank gets all the parameters. */
  gatherParams(): void {
    if (this.zero && this.active) this.comm.allGather(this.model.params, this.shard.counts);
  }

  /** The same starting weights on every rank (rank 0's). */
  broadcastParams(): void {
    if (this.active) this.comm.broadcast(this.model.params, 0);
  }
}
