#!/usr/bin/python3
"""The yardstick for bench/bf16-curve.ts: how far PyTorch's own bf16 (CPU autocast: bf16 matmuls and attention
products, float32 LayerNorms, softmax and residual stream) moves its loss curve from its float32 one, on the same
model shape, data and schedule as our curve (tiny with 2 heads of 64, B=16, T=128, AdamW lr 3e-3, 20 warmup steps,
cosine to 0.1x, weight decay 0.1, clip 1.0), over the same 20-step windows. And the same for float32 on 1 vs 2
threads (how far a change of summation order alone moves a trajectory), and bf16 on 1 vs 2 threads.

  /usr/bin/python3 bench/bf16-curve-torch.py --data DIR_WITH_SHARDS [--steps 300] [--pairs dtype,threads]
(~1.2 s a step on 2 Zen 4 cores: the two runs of --pairs dtype take ~13 minutes, all four ~40.)
(`gpt2 prepare tinyshakespeare --input ../shared/data/tinyshakespeare.txt --out DIR` makes the shards.)
"""
import argparse
import glob
import math
import os
import sys

# the peer at its best: drop the machine's OpenBLAS pin (as ../shared/bench/pytorch/bench.py does)
if any(k in os.environ for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/bench/pytorch"))
from model import GPT, GPTConfig  # noqa: E402


def load_tokens(pattern):
    # llm.c's shard format: a 256-int32 header (magic 20240520, version, token count), then uint16 tokens
    out = []
    for f in sorted(glob.glob(pattern)):
        raw = np.fromfile(f, dtype=np.uint8)
        header = raw[:1024].view(np.int32)
        assert header[0] == 20240520, f"bad magic in {f}"
        out.append(raw[1024:1024 + 2 * header[2]].view(np.uint16).astype(np.int64))
    return np.concatenate(out)


def run(tokens, steps, dtype, threads, B=16, T=128, lr=3e-3, warmup=20, final=0.1):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=T, vocab_size=50304, n_layer=4, n_head=2, n_embd=128))
    opt = model.make_optimizer(lr=lr, weight_decay=0.1)
    losses, pos = [], 0
    for step in range(steps):
        if pos + B * T + 1 > len(tokens):
            pos = 0
        buf = torch.from_numpy(tokens[pos:pos + B * T + 1])
        pos += B * T
        x, y = buf[:-1].view(B, T), buf[1:].view(B, T)
        # llm.c's schedule: linear warmup, then cosine to final * lr
        if step < warmup:
            lr_t = lr * (step + 1) / warmup
        else:
            p = min(1.0, (step - warmup) / max(1, steps - warmup))
            lr_t = lr * final + 0.5 * (1 + math.cos(math.pi * p)) * (lr - lr * final)
        for g in opt.param_groups:
            g["lr"] = lr_t
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast(device_type="cpu", dtype=torch.bfloat16) if dtype == "bf16" else torch.autocast(device_type="cpu", enabled=False)
        with ctx:
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


def compare(name, a, b, W=20):
    n = len(a)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    worst = max(abs(mean(b[i:i + W]) - mean(a[i:i + W])) / mean(a[i:i + W]) for i in range(0, n - W + 1, W))
    last = 100 * (mean(b[-W:]) / mean(a[-W:]) - 1)
    print(f"{name:28s} worst {W}-step window {100 * worst:.2f} %; mean of the last {W}: {mean(a[-W:]):.4f} vs {mean(b[-W:]):.4f} ({last:+.2f} %)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--pairs", default="dtype,threads", help="which comparisons: dtype (fp32 vs bf16), threads (1 vs 2 threads)")
    args = ap.parse_args()
    tokens = load_tokens(os.path.join(args.data, "*_train_*.bin"))
    print(f"torch {torch.__version__}, {len(tokens)} training tokens, {args.steps} steps", flush=True)
    pairs = args.pairs.split(",")
    wanted = [("fp32 2T", "fp32", 2), ("bf16 2T", "bf16", 2)] + ([("fp32 1T", "fp32", 1), ("bf16 1T", "bf16", 1)] if "threads" in pairs else [])
    runs = {}
    for name, dtype, threads in wanted:
        runs[name] = run(tokens, args.steps, dtype, threads)
        print(f"{name}: first {runs[name][0]:.4f}, step 100 {runs[name][min(99, args.steps - 1)]:.4f}, last {runs[name][-1]:.4f}", flush=True)
    if "dtype" in pairs:
        compare("fp32 2T vs bf16 2T", runs["fp32 2T"], runs["bf16 2T"])
    if "threads" in pairs:
        compare("fp32 1T vs bf16 1T", runs["fp32 1T"], runs["bf16 1T"])
        compare("fp32 2T vs fp32 1T", runs["fp32 2T"], runs["fp32 1T"])
        compare("bf16 2T vs bf16 1T", runs["bf16 2T"], runs["bf16 1T"])


if __name__ == "__main__":
    main()
