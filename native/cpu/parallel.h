// Work split over the OpenMP team, shared by the element-wise kernels (layers.cc, optimizer.cc).
#pragma once

#include "threads.h"

// target_clones compiles a function for AVX-512, AVX2 and baseline x86-64 and picks one at load time
#if defined(__x86_64__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

// Splits [0, n) into one contiguous range per thread; f is a (target_clones) function over a range, so the
// vectorized body is the one picked for this CPU (OpenMP's outlined bodies are not cloned themselves).
// Work below SERIAL_WORK elements runs on the calling thread: waking the team costs more than it saves (token-by-
// token generation is made of such small calls).
constexpr long SERIAL_WORK = 1L << 15;

template <class F>
inline void parallel_range(long n, F f, long work = -1) {
  if ((work < 0 ? n : work) < SERIAL_WORK) return f(0, n);
#pragma omp parallel
  {
    const long nt = omp_get_num_threads(), id = omp_get_thread_num();
    const long i0 = n * id / nt, i1 = n * (id + 1) / nt;
    if (i1 > i0) f(i0, i1);
  }
}

// values of a bf16 argument staged through float32 at a time (storage.h's per-thread buffers)
constexpr long STAGE = 2048;
