// SGEMM in the Goto/BLIS style: B packed into KC x NC panels (shared), A into MC x KC blocks (shared), an MR x NR
// register-blocked micro-kernel; both packing and the macro-kernel are split across the OpenMP team.
// Micro-kernels: AVX-512 6x64 (24 zmm accumulators), AVX2+FMA 6x16, portable 4x16. Chosen once at run time.

#include "gemm.h"


#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gemm_kernels.h"
#include "gemm_packers16.h"
#include "gemv.h"
#include "threads.h"

namespace {

struct Plan {
  int MR, NR, KC, MC, NC;
  // kpack: values packed per k step (1 for fp32, 2 for bf16 pairs)
  int kpack;
  MicroKernel kernel;
  Packer packA, packB;
  StripPacker packAStrip;  // optional: A panels from lines contiguous across, a strip at once
  // the same from bf16 storage (the bf16 plan; the AVX-512 float32 plan packs bf16 weights as B, widened)
  Packer16 packA16 = nullptr, packB16 = nullptr;
  StripPacker16 packAStrip16 = nullptr;
};

/** Packing buffers (0: B panel, 1: A block, 2: a float32 C for bf16 storage), grown on demand and kept for the next call. */
struct Scratch {
  float* bufs[3] = {nullptr, nullptr, nullptr};
  size_t caps[3] = {0, 0, 0};
  float* get(int which, size_t n) {
    if (caps[which] < n) {
      std::free(bufs[which]);
      bufs[which] = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
      caps[which] = n;
    }
    return bufs[which];
  }
};

/** shared by the team when threads split one product */
float* scratch(int which, size_t n) {
  static Scratch s;
  return s.get(which, n);
}

/** private to a thread when each computes its own slice */
float* thread_scratch(int which, size_t n) {
  thread_local Scratch s;
  return s.get(which, n);
}

/** [lo, hi) of n items for member `t` of a team of `T` (static schedule) */
inline void share(int n, int t, int T, int& lo, int& hi) {
  lo = (int)((long)n * t / T);
  hi = (int)((long)n * (t + 1) / T);
}

/**
 * The blocked product over the whole M x N. With team = true every thread of the enclosing parallel region calls
 * it with the same arguments and they split the packing and the micro-tiles (shared Ap/Bp, barriers between the
 * phases); with team = false one thread does it all with its own buffers.
 */
void blocked(const Plan& p, int M, int N, int K, int KC, int MC, int NC, Src A, long rsa, long csa, Src B, long rsb, long csb,
             Ten C, long ldc, bool accumulate, const float* bias, float* Bp, float* Ap, bool team) {
  const int MR = p.MR, NR = p.NR;
  const int t = team ? omp_get_thread_num() : 0, T = team ? omp_get_num_threads() : 1;
  alignas(64) float tile[16 * 64];
  int lo, hi;
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc), nStrips = (nc + NR - 1) / NR;
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc), kcp = (kc + p.kpack - 1) / p.kpack;
      const bool acc = accumulate || pc > 0;
      share(nStrips, t, T, lo, hi);
      for (int s = lo; s < hi; s++) {
        const int j0 = jc + s * NR;
        const long off = (long)pc * rsb + (long)j0 * csb;
        if (B.h) p.packB16(Bp + (size_t)s * NR * kcp, B.h + off, rsb, csb, kc, std::min(NR, jc + nc - j0), NR);
        else p.packB(Bp + (size_t)s * NR * kcp, B.f + off, rsb, csb, kc, std::min(NR, jc + nc - j0), NR);
      }
      if (team) {
#pragma omp barrier
      }
      for (int ic = 0; ic < M; ic += MC) {
        const int mc = std::min(MC, M - ic), mStrips = (mc + MR - 1) / MR;
        share(mStrips, t, T, lo, hi);
        if (rsa == 1 && (A.h ? p.packAStrip16 != nullptr : p.packAStrip != nullptr) && hi > lo) {
          const int i0 = ic + lo * MR, width = std::min((hi - lo) * MR, ic + mc - i0);
          const long off = i0 + (long)pc * csa;
          if (A.h) p.packAStrip16(Ap + (size_t)lo * MR * kcp, A.h + off, csa, kc, width, hi - lo, (long)MR * kcp);
          else p.packAStrip(Ap + (size_t)lo * MR * kcp, A.f + off, csa, kc, width, hi - lo, (long)MR * kcp);
        } else {
          for (int s = lo; s < hi; s++) {
            const int i0 = ic + s * MR;
            const long off = (long)i0 * rsa + (long)pc * csa;
            if (A.h) p.packA16(Ap + (size_t)s * MR * kcp, A.h + off, csa, rsa, kc, std::min(MR, ic + mc - i0), MR);
            else p.packA(Ap + (size_t)s * MR * kcp, A.f + off, csa, rsa, kc, std::min(MR, ic + mc - i0), MR);
          }
        }
        if (team) {
#pragma omp barrier
        }
        // jr-major order: a thread walks down one B strip, which stays in L2
        share(nStrips * mStrips, t, T, lo, hi);
        for (int u = lo; u < hi; u++) {
          const int sj = u / mStrips, si = u % mStrips;
          const int i0 = ic + si * MR, j0 = jc + sj * NR;
          const int mr = std::min(MR, ic + mc - i0), nr = std::min(NR, jc + nc - j0);
          const float* a = Ap + (size_t)si * MR * kcp;
          const float* b = Bp + (size_t)sj * NR * kcp;
          const float* bj = bias && !acc ? bias + j0 : nullptr;
          if (C.h) {
            // bf16 storage: one K block (run() sees to it), the tile rounded on its way out. The kernel loads a whole
            // NR-wide bias: a partial tile adds its nr values here instead (reading past a short bias could fault)
            p.kernel(kcp, a, b, tile, NR, false, nr == NR ? bj : nullptr);
            if (bj && nr < NR)
              for (int r = 0; r < mr; r++)
                for (int q = 0; q < nr; q++) tile[r * NR + q] += bj[q];
            for (int r = 0; r < mr; r++) narrow_row(C.h + (long)(i0 + r) * ldc + j0, tile + r * NR, nr);
            continue;
          }
          float* c = C.f + (long)i0 * ldc + j0;
          if (mr == MR && nr == NR) {
            p.kernel(kcp, a, b, c, ldc, acc, bj);
          } else {
            p.kernel(kcp, a, b, tile, NR, false, nullptr);
            for (int r = 0; r < mr; r++)
              for (int q = 0; q < nr; q++)
                c[r * ldc + q] = (acc ? c[r * ldc + q] : bj ? bj[q] : 0.f) + tile[r * NR + q];
          }
        }
        if (team) {
#pragma omp barrier
        }
      }
    }
  }
}

/** rows of a float32 M x N (row stride N) rounded into bf16 C (row stride ldc) */
void narrow_rows(uint16_t* C, long ldc, const float* F, int M, int N) {
#pragma omp parallel for schedule(static) if ((long)M * N >= (1L << 15))
  for (int i = 0; i < M; i++) narrow_row(C + (long)i * ldc, F + (long)i * N, N);
}

/** the largest K a bf16 C is computed in one K block (beyond it: through a float32 copy of C) */
constexpr int BF16_C_ONE_BLOCK = 2048;

void run(const Plan& p, int M, int N, int K, Src A, long rsa, long csa, Src B, long rsb, long csb, Ten C, long ldc,
         bool accumulate, const float* bias) {
  if (M <= 0 || N <= 0) return;
  if (C.h && (accumulate || K > BF16_C_ONE_BLOCK || K <= 0)) {
    // a bf16 C whose sums span K blocks (or accumulate) gathers them in float32 first
    float* F = scratch(2, (size_t)M * N);
    if (accumulate)
      for (int i = 0; i < M; i++) widen_row(F + (long)i * N, C.h + (long)i * ldc, N);
    run(p, M, N, K, A, rsa, csa, B, rsb, csb, f32_ten(F), N, accumulate, bias);
    return narrow_rows(C.h, ldc, F, M, N);
  }
  if (K <= 0) {
    if (!accumulate)
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C.f[i * ldc + j] = bias ? bias[j] : 0.f;
    return;
  }
  const int MR = p.MR, NR = p.NR;
  // K in equal blocks of at most p.KC (1024 = B*T of a d12 step is one block in dW += dout^T inp, instead of
  // 768 + a short 256 whose C tiles cost as much to load and store as a full block's); a bf16 C in one block
  const int kBlocks = C.h ? 1 : (K + p.KC - 1) / p.KC;
  const int KC = (K + kBlocks - 1) / kBlocks;
  const int T = g_threads();
  // enough work for every thread: each takes its own slice of the output and runs the whole blocked product on it
  // with private buffers (no barriers). Slicing N makes every thread pack all of A, slicing M all of B: slice the
  // dimension whose operand is larger (M > N: A is larger). 2-5 % faster on 2 cores than splitting the packing and
  // tiles of one product, which needs three barriers per block.
  const int nStripsAll = (N + NR - 1) / NR, mStripsAll = (M + MR - 1) / MR;
  // Except bf16's deep products (the lm_head's dinp: K = 50304 over 256 x 768): there each thread would convert all of
  // one operand (51 MB of dlogits), and sharing the packing wins, 425-442 -> 469-476 GFLOP/s (fp32 loses: not there).
  const bool deep = p.kpack > 1 && K >= 16L * std::max(M, N);
  const bool sliceM = !deep && M > N && mStripsAll >= 4 * T, sliceN = !deep && !sliceM && nStripsAll >= 4 * T;
  if (T > 1 && (sliceM || sliceN)) {
#pragma omp parallel
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      int lo, hi;
      share(sliceM ? mStripsAll : nStripsAll, t, nt, lo, hi);
      const int unit = sliceM ? MR : NR, total = sliceM ? M : N;
      const int at = lo * unit, len = std::min(total, hi * unit) - at;
      if (len > 0) {
        const int m = sliceM ? len : M, n = sliceM ? N : len;
        const int NC = std::min(std::max(NR, p.NC / NR * NR), ((n + NR - 1) / NR) * NR);
        const int MC = std::min(std::max(MR, p.MC / MR * MR), ((m + MR - 1) / MR) * MR);
        float* Bp = thread_scratch(0, (size_t)KC * NC);
        float* Ap = thread_scratch(1, (size_t)KC * MC);
        if (sliceM)
          blocked(p, m, N, K, KC, MC, NC, A.at((long)at * rsa), rsa, csa, B, rsb, csb, C.at((long)at * ldc), ldc, accumulate,
                  bias, Bp, Ap, false);
        else
          blocked(p, M, n, K, KC, MC, NC, A, rsa, csa, B.at((long)at * csb), rsb, csb, C.at(at), ldc, accumulate,
                  bias ? bias + at : nullptr, Bp, Ap, false);
      }
    }
    return;
  }
  // block sizes are whole numbers of micro-tiles, so the strips of a block never overrun its packed buffer
  const int NC = std::min(std::max(NR, p.NC / NR * NR), ((N + NR - 1) / NR) * NR);
  const int MC = std::min(std::max(MR, p.MC / MR * MR), ((M + MR - 1) / MR) * MR);
  float* Bp = scratch(0, (size_t)KC * NC);
  float* Ap = scratch(1, (size_t)KC * MC);
#pragma omp parallel
  blocked(p, M, N, K, KC, MC, NC, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, bias, Bp, Ap, true);
}

Plan make_plan(bool bf16) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  // bf16: KC = 768 values (384 pairs: a 96 KB B micro-panel in L2); against 256, 512 and 1024 in same-run A/Bs it was
  // the fastest forward (~600 vs ~530 GFLOP/s at KC 256) and dinp, dW the same
  const bool bwvl = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  if (bf16 && __builtin_cpu_supports("avx512bf16") && bwvl)
    return {6, 64, 768, 384, 3072, 2, kernel_bf16_6x64, pack_bf16_pairs_avx512, pack_bf16_pairs_avx512, pack_a6_strip_bf16_avx512,
            pack_pairs16_avx512, pack_pairs16_avx512, pack_a6_strip16_avx512};
  // KC = 768 covers GPT-2's C in one block: each C tile is loaded and stored once per K=C product (measured best
  // of KC 128..1024 on Zen 5; the B micro-panel then lives in L2, which keeps up with the FMAs)
  if (__builtin_cpu_supports("avx512f"))
    return {6, 64, 1024, 384, 3072, 1, kernel_avx512_6x64, pack_a6_avx512, pack_panel_avx512, pack_a6_strip_avx512,
            nullptr, bwvl ? pack_panel16_avx512 : nullptr, nullptr};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {6, 16, 256, 192, 2048, 1, kernel_avx2_6x16, pack_panel, pack_panel, nullptr};
#endif
  (void)bf16;
  return {4, 16, 256, 128, 2048, 1, kernel_generic_4x16, pack_panel, pack_panel, nullptr};
}

const Plan& plan_fp32() {
  static const Plan p = make_plan(false);
  return p;
}
const Plan& plan_bf16() {
  static const Plan p = make_plan(true);
  return p;
}

}  // namespace

void sgemm(int M, int N, int K, const float* A, long rsa, long csa, const float* B, long rsb, long csb, float* C,
           long ldc, bool accumulate, const float* bias) {
  if (M <= 4) return gemm_small_m(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, bias);
  run(plan_fp32(), M, N, K, Src{A, nullptr}, rsa, csa, Src{B, nullptr}, rsb, csb, f32_ten(C), ldc, accumulate, bias);
}

void sgemm_bf16(int M, int N, int K, const float* A, long rsa, long csa, const float* B, long rsb, long csb,
                float* C, long ldc, bool accumulate, const float* bias) {
  if (M <= 4 || plan_bf16().kpack != 2) return sgemm(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, bias);
  run(plan_bf16(), M, N, K, Src{A, nullptr}, rsa, csa, Src{B, nullptr}, rsb, csb, f32_ten(C), ldc, accumulate, bias);
}

/** the float32 values of the elements an operand's strides reach, widened into v (an operand already float32: itself) */
static const float* widened(Src s, int rows, int cols, long rs, long cs, std::vector<float>& v) {
  if (!s.h) return s.f;
  const long extent = (long)(rows - 1) * rs + (long)(cols - 1) * cs + 1;
  v.resize(extent);
  widen_row(v.data(), s.h, extent);
  return v.data();
}

void gemm_any(bool bf16, int M, int N, int K, Src A, long rsa, long csa, Src B, long rsb, long csb, Ten C, long ldc,
              bool accumulate, const float* bias) {
  if (bf16 && M > 4 && plan_bf16().kpack == 2) return run(plan_bf16(), M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, bias);
  if (!A.h && !B.h && !C.h) return sgemm(M, N, K, A.f, rsa, csa, B.f, rsb, csb, C.f, ldc, accumulate, bias);
  // bf16 weights over more rows than a GEMV serves (a prompt's prefill): float32 products, the weights widened as
  // they are packed
  if (!A.h && B.h && !C.h && M > 4 && plan_fp32().packB16) return run(plan_fp32(), M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, bias);
  // bf16 storage without the bf16 product (a few rows; a CPU without AVX512-BF16): float32 copies of the operands
  if (M <= 0 || N <= 0) return;
  std::vector<float> a, b, c;
  const float* Af = widened(A, M, std::max(K, 1), rsa, csa, a);
  const float* Bf = widened(B, std::max(K, 1), N, rsb, csb, b);
  if (!C.h) return sgemm(M, N, K, Af, rsa, csa, Bf, rsb, csb, C.f, ldc, accumulate, bias);
  c.assign((size_t)M * N, 0.f);
  if (accumulate)
    for (int i = 0; i < M; i++) widen_row(c.data() + (long)i * N, C.h + (long)i * ldc, N);
  sgemm(M, N, K, Af, rsa, csa, Bf, rsb, csb, c.data(), N, accumulate, bias);
  narrow_rows(C.h, ldc, c.data(), M, N);
}

const char* gemm_isa() {
  const Plan& p = plan_fp32();
  return p.NR == 64 ? "avx512" : p.MR == 6 ? "avx2" : "generic";
}

bool cpu_has_bf16() { return plan_bf16().kpack == 2; }

bool gemm_packs_bf16_weights() { return plan_fp32().packB16 != nullptr; }

