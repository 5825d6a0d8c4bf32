#!/usr/bin/env bash
# The GPU check, one device call of under 8 minutes (a 450 s deadline shared by the stages, GPU_CHECK_DEADLINE) on a lent NVIDIA machine (H100/H200, CUDA 13, no Node, no
# internet). Prepare .gpu/ here first with bench/gpu-pack.sh, then:
#   device run  command "bash bench/gpu-check.sh"  carry [".gpu"]  timeout_s 540
# It: unpacks Node and the package; builds and runs llm.c's CUDA trainer (.gpu/llmc/run_gpu.sh) and ours on the same
# GPU, shape (d12 bf16, B=32, T=1024, 30 steps) and shards, and prints the ratio of tokens/s and the two losses
# after 30 steps: the numbers first; then runs the GPU tests (test/cuda/gpu.test.ts, the GPU rows of the kernel
# conformance, WebGPU's on Dawn's Vulkan); times each kernel of a few d12 steps (GPT2_CUDA_PROFILE); runs d12 again
# with float32 activations (what bf16 storage gained); tries d48 (1.5B) at B=4 with recompute 2; and measures WebGPU
# beside CUDA. $OUT (the device tool brings it back, else /tmp/gpu-out)
# gets summary.json and logs.tar.gz. Each stage has a time limit, so one failure still leaves the others' numbers.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-out}"
# the device tool brings back at most 8 files: every log goes to one folder, archived (with the summary beside it) at exit
LOGS="$OUT/logs"
mkdir -p "$LOGS"
trap 'tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$LOGS"' EXIT
T0=$(date +%s)
# one device call runs at most 600 s: every stage gets what is left of DEADLINE seconds, at most its own limit
DEADLINE="${GPU_CHECK_DEADLINE:-450}"
stage() { echo; echo "=== $* ($(( $(date +%s) - T0 )) s)"; }
# limit N: N seconds, or what is left before the deadline (1 when nothing is: `timeout 0` would mean no limit)
limit() { local left=$(( DEADLINE - ($(date +%s) - T0) )); if (( left < $1 )); then echo $(( left > 1 ? left : 1 )); else echo "$1"; fi; }

stage "unpack"
[ -d .gpu ] || { echo "no .gpu/: run bench/gpu-pack.sh here and carry .gpu"; exit 2; }
mkdir -p /tmp/gpt2ts-bin
if command -v xz >/dev/null; then
  xz -dc .gpu/node.xz > /tmp/gpt2ts-bin/node && tar -xJf .gpu/app.tar.xz
else  # Python's lzma and tarfile do the same
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' .gpu/node.xz /tmp/gpt2ts-bin/node
  python3 -m tarfile -e .gpu/app.tar.xz .
fi
chmod +x /tmp/gpt2ts-bin/node
export PATH="/tmp/gpt2ts-bin:$PATH"
# the addon's runtime libraries (OpenMP, a new enough libstdc++) where the image lacks them
if ! ldconfig -p | grep -q 'libgomp\.so\.1' || ! strings "$(ldconfig -p | awk '/libstdc\+\+\.so\.6 / {print $NF; exit}')" 2>/dev/null | grep -q GLIBCXX_3.4.30; then
  export LD_LIBRARY_PATH="$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
node --version
node -e 'require("./build/Release/gpt2ts_native.node")' && echo "native addon loads"
# Vulkan for WebGPU (Dawn): the loader when the image lacks it, and NVIDIA's driver manifest where it is not registered
if ! ldconfig -p | grep -q 'libvulkan\.so\.1' && ls .gpu/gl/*.deb >/dev/null 2>&1; then
  for f in .gpu/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export GPT2_WEBGPU_ADAPTER=vulkan
# CUDA's libraries: the toolkit's, and the wheels beside PyTorch (NCCL is only there)
GPT2_CUDA_LIBDIR="$(python3 - <<'PY'
import glob, site, os
dirs = sorted({os.path.dirname(p) for s in site.getsitepackages() for p in glob.glob(s + "/nvidia/*/lib/lib*.so*")})
print(":".join(dirs + ["/usr/local/cuda/lib64"]))
PY
)"
# (a folder named beforehand comes first: a dry run here points it at test/cuda's CPU emulation of CUDA)
GPT2_CUDA_LIBDIR="${GPT2_CUDA_DRYRUN_LIBDIR:+$GPT2_CUDA_DRYRUN_LIBDIR:}$GPT2_CUDA_LIBDIR"
export GPT2_CUDA_LIBDIR GPT2_CUDA_CACHE=/tmp/gpt2ts-cuda-cache
# libraries that NVRTC and cuBLAS open by name themselves (libnvrtc-builtins, libcublasLt) are found on the loader's path
export LD_LIBRARY_PATH="$GPT2_CUDA_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# the d12 / d48 shapes (a dry run on the emulation shrinks them)
D12="${GPU_CHECK_D12:--e d12 -b 32 -t 1024 -d 32768}"
D48="${GPU_CHECK_D48:--e d48 -b 4 -t 1024 -d 4096}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$LOGS/gpu.txt"
nvcc --version | tail -2 | tee -a "$LOGS/gpu.txt"
echo "GPT2_CUDA_LIBDIR=$GPT2_CUDA_LIBDIR" | tee -a "$LOGS/gpu.txt"
# what the backend itself finds: the driver and device, then a kernel compile with this machine's NVRTC
node --input-type=module -e '
  const { probeCuda, cudaKernelSource } = await import("./dist/src/kernels/cuda.js");
  const { loadNativeAddon } = await import("./dist/src/kernels/native.js");
  const info = probeCuda();
  console.log("probe:", JSON.stringify(info));
  if (!("error" in info)) {
    const t0 = Date.now();
    const bytes = loadNativeAddon().addon.cudaCompile(cudaKernelSource(), info.major * 10 + info.minor);
    console.log(`NVRTC: ${bytes} bytes of CUBIN for sm_${info.major}${info.minor} in ${Date.now() - t0} ms`);
  }' 2>&1 | tee -a "$LOGS/gpu.txt"

SHARDS=.gpu/inputs/dev/data/tinyshakespeare
# the numbers first (llm.c, ours, their ratio), then the tests, the profile, d48 and WebGPU, in what time is left
stage "llm.c train_gpt2.cu d12, same GPU, shape and shards"
timeout "$(limit 150)" bash .gpu/llmc/run_gpu.sh .gpu/inputs 32 1024 30 > "$LOGS/llmc.json" 2> "$LOGS/llmc.err"
cat "$LOGS/llmc.json" "$LOGS/llmc.err" | tail -5

stage "gpt2ts d12 bf16 ($D12), 30 steps"
# shell words on purpose: $D12 holds several flags
# shellcheck disable=SC2086
timeout "$(limit 100)" node dist/src/cli/main.js train --backend cuda --dtype bf16 $D12 -x 30 \
  -i "$SHARDS/tiny_shakespeare_train.bin" -v 0 -s 0 -n 0 -l 3e-4 > "$LOGS/ours-d12.log" 2>&1
echo "exit $?" >> "$LOGS/ours-d12.log"
grep -E "^(backend|memory|step +(1|2|3|10|20|30)/)|exit|rror" "$LOGS/ours-d12.log"

stage "ratio"
node - "$LOGS/ours-d12.log" "$LOGS/llmc.json" <<'JS' | tee "$OUT/summary.json"
const fs = require("fs");
const [ours, peer] = process.argv.slice(2).map((f) => { try { return fs.readFileSync(f, "utf8"); } catch { return ""; } });
// step lines are padded to the width of the last step ("step  1/30")
const rows = [...ours.matchAll(/step +(\d+)\/\d+ \| loss ([\d.]+) .*?\| ([\d.]+) ms \| ([\d.]+) tok\/s \| MFU ([\d.n\/a%]+)/g)];
const steady = rows.slice(3).map((r) => Number(r[3])).sort((a, b) => a - b);
const ms = steady[Math.floor(steady.length / 2)];
let llmc = null;
try { llmc = JSON.parse(peer.trim().split("\n").pop()); } catch { /* llm.c failed: its log says why */ }
const [B, T] = [/B=(\d+) T=(\d+)/.exec(ours) ?? [0, NaN, NaN]].map((m) => [Number(m[1]), Number(m[2])])[0];
const out = { gpt2ts: { B, T, ms_per_step: ms, tokens_per_s: Math.round((B * T * 1000) / ms), mfu: rows.at(-1)?.[5], loss_last: Number(rows.at(-1)?.[2]) }, llmc };
if (llmc) Object.assign(out, { ratio_tokens_per_s: +(out.gpt2ts.tokens_per_s / llmc.tokens_per_s).toFixed(3), loss_rel_diff: +((out.gpt2ts.loss_last - llmc.loss_last) / llmc.loss_last).toFixed(4) });
console.log(JSON.stringify(out));
JS

stage "GPU tests"
timeout "$(limit 100)" node --test --test-reporter=spec dist/test/cuda/gpu.test.js dist/test/kernels/conformance.test.js \
  > "$LOGS/tests.log" 2>&1
echo "exit $?" >> "$LOGS/tests.log"
grep -E "^ *(✔|✖|﹣)|^ℹ (tests|pass|fail|skipped)|exit " "$LOGS/tests.log" | head -40


stage "where a d12 step's time goes (GPT2_CUDA_PROFILE: each call timed alone, 4 steps)"
# shellcheck disable=SC2086
GPT2_CUDA_PROFILE=1 timeout "$(limit 45)" node dist/src/cli/main.js train --backend cuda --dtype bf16 $D12 -x 4 \
  -i "$SHARDS/tiny_shakespeare_train.bin" -v 0 -s 0 -n 0 > "$LOGS/profile.log" 2>&1
grep -A12 "^GPT2_CUDA_PROFILE" "$LOGS/profile.log"

stage "the same d12 with float32 activations (GPT2_ACTIVATIONS=f32: bf16 products only, as before bf16 storage), 10 steps"
# shellcheck disable=SC2086
GPT2_ACTIVATIONS=f32 timeout "$(limit 40)" node dist/src/cli/main.js train --backend cuda --dtype bf16 $D12 -x 10 \
  -i "$SHARDS/tiny_shakespeare_train.bin" -v 0 -s 0 -n 0 -l 3e-4 > "$LOGS/ours-d12-f32act.log" 2>&1
echo "exit $?" >> "$LOGS/ours-d12-f32act.log"
grep -E "^(backend|memory|step +(1|5|10)/)|exit|rror" "$LOGS/ours-d12-f32act.log"

# its 1.55 B initial weights are drawn on the host first: 80 s at 19 M normals/s on a Zen 4 core, hence 130 s
stage "gpt2ts d48 (1.5B) bf16 ($D48), recompute 2, 4 steps"
# shellcheck disable=SC2086
timeout "$(limit 130)" node dist/src/cli/main.js train --backend cuda --dtype bf16 $D48 -x 4 -r 2 \
  -i "$SHARDS/tiny_shakespeare_train.bin" -v 0 -s 0 -n 0 > "$LOGS/ours-d48.log" 2>&1
echo "exit $?" >> "$LOGS/ours-d48.log"
grep -E "^(memory|step)|exit|rror" "$LOGS/ours-d48.log"

stage "WebGPU (Dawn, Vulkan) beside CUDA: d12 fp32, B=4 T=1024, 3 steps each"
for be in webgpu cuda; do
  timeout "$(limit 40)" node dist/src/cli/main.js bench --backend "$be" --model d12 --batch 4 --seq 1024 --steps 3 > "$LOGS/bench-$be.log" 2>&1
  echo "exit $?" >> "$LOGS/bench-$be.log"
  grep -E "^(backend|median)|exit|rror" "$LOGS/bench-$be.log"
done
stage "done"
