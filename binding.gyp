{
  "targets": [
    {
      "target_name": "gpt2ts_native",
      "sources": ["native/addon.cc", "native/cpu/bindings.cc", "native/cpu/gemm.cc", "native/cpu/gemv.cc", "native/cpu/layers.cc", "native/cpu/optimizer.cc", "native/cpu/attention.cc", "native/cpu/attention_bf16.cc", "native/mpi/mpi.cc", "native/mpi/library.cc", "native/cuda/libs.cc", "native/cuda/cuda.cc", "native/cuda/layers.cc", "native/cuda/attention.cc", "native/cuda/nccl.cc"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O3"],
      "cflags_cc": ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno", "-Wno-unused-function", "-Wno-psabi"],
      "ldflags": ["-fopenmp"],
      "libraries": ["-ldl"],
      "conditions": [["target_arch=='x64'", { "cflags_cc": ["-mtune=znver3"] }]]
    }
  ]
}
