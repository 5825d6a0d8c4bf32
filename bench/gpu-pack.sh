#!/usr/bin/env bash
# Packs, on this machine, what bench/gpu-check.sh needs on a lent GPU machine (no Node, no internet there) into .gpu/
# (git-ignored through .git/info/exclude), within the device tool's 64 MiB: a Node binary, the compiled package
# (dist/, the native addon built here: it dlopen()s CUDA at run time, so it needs no CUDA to build), the runtime
# dependencies that training and the tests import, llm.c's sources from ../shared/bench/llmc and Tiny Shakespeare
# shards for both trainers. Then: device run with carry [".gpu"] and command "bash bench/gpu-check.sh".
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SHARED:-../shared}"
rm -rf .gpu && mkdir -p .gpu
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
npm run build >/dev/null
[ -f build/Release/gpt2ts_native.node ] || node scripts/build-native.mjs
xz -T2 -6 -c "$(command -v node)" > .gpu/node.xz
tar -cJf .gpu/app.tar.xz dist build/Release/gpt2ts_native.node \
  node_modules/tiktoken node_modules/tinyglobby node_modules/fdir node_modules/picomatch \
  node_modules/hyparquet node_modules/hyparquet-compressors node_modules/fzstd node_modules/hysnappy \
  node_modules/webgpu/package.json node_modules/webgpu/index.js node_modules/webgpu/dist/linux-x64
# the addon's libraries a CUDA image might lack (OpenMP's runtime); gpu-check.sh uses them only when missing there
mkdir -p .gpu/lib && cp -L "$(ldd build/Release/gpt2ts_native.node | awk '/libgomp/ {print $3}')" .gpu/lib/
# and the C++ runtime it was built against (GLIBCXX_3.4.30), for an image with an older one
cp -L "$(ldd build/Release/gpt2ts_native.node | awk '/libstdc\+\+/ {print $3}')" .gpu/lib/
# the Vulkan loader, which the CUDA image may lack, for WebGPU (Dawn) on the GPU (device README: bring the loaders)
mkdir -p .gpu/gl /tmp/gpt2ts-apt-amd64/partial
apt_o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/gpt2ts-apt-amd64'
# shellcheck disable=SC2086
{ apt-get $apt_o update -qq && (cd .gpu/gl && apt-get $apt_o download -qq libvulkan1); } >/dev/null 2>&1 || echo "no Vulkan loader packed: the WebGPU stage will say so"
mkdir -p .gpu/llmc
cp -r "$SHARED/bench/llmc/Makefile" "$SHARED/bench/llmc/train_gpt2.cu" "$SHARED/bench/llmc/llmc" "$SHARED/bench/llmc/run_gpu.sh" .gpu/llmc/
node "$SHARED/bench/llmc/make-inputs.mjs" .gpu/inputs --shards-only >/dev/null
du -sh .gpu
