// The optimizer and the whole-tensor operations around it: AdamW, the gradient norm's sum of squares, copies between
// storages, scaling. Bandwidth-bound loops over every parameter, split over the team (parallel.h).

#include <cmath>
#include <cstring>
#include <vector>

#include "layers.h"
#include "parallel.h"

CLONES static void adamw_range(float* params, const float* grads, float* m, float* v, long i0, long i1, float lr,
                               float beta1, float beta2, float eps, float decay, float c1, float c2, float gs) {
  for (long i = i0; i < i1; i++) {
    const float g = grads[i] * gs;
    const float mi = beta1 * m[i] + (1.f - beta1) * g;
    const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] = params[i] * decay - lr * (mi / c1) / (std::sqrt(vi / c2) + eps);
  }
}

void adamw(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1, float beta2, float eps,
           float weight_decay, int t, float grad_scale) {
  // bias corrections in double, as torch computes them in Python floats
  const float c1 = (float)(1.0 - std::pow((double)beta1, t)), c2 = (float)(1.0 - std::pow((double)beta2, t));
  const float decay = 1.f - lr * weight_decay;
  parallel_range(n, [=](long i0, long i1) { adamw_range(params, grads, m, v, i0, i1, lr, beta1, beta2, eps, decay, c1, c2, grad_scale); });
}

// Per-thread partial sums added in thread order: the same bits on every run with the same thread count (an OpenMP
// reduction may combine partials in any order, which would break bit-exact resume).
// Within a thread, 8 independent double lanes (vectorizable without reassociating any sum; one scalar chain ran at a
// third of the memory's speed), combined in lane order.
CLONES static double sum_squares_range(const float* x, long i0, long i1) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  long i = i0;
  for (; i + 8 <= i1; i += 8)
    for (int l = 0; l < 8; l++) lane[l] += (double)x[i + l] * x[i + l];
  double s = 0.0;
  for (int l = 0; l < 8; l++) s += lane[l];
  for (; i < i1; i++) s += (double)x[i] * x[i];
  return s;
}

double sum_squares(Ten x, long n) {
  std::vector<double> part(g_threads(), 0.0);
  if (!x.h) parallel_range(n, [&](long i0, long i1) { part[omp_get_thread_num()] = sum_squares_range(x.f, i0, i1); });
  else
    parallel_range(n, [&](long i0, long i1) {
      double s = 0.0;
      for (long c = i0; c < i1; c += STAGE) s += sum_squares_range(load(x, c, std::min(STAGE, i1 - c), 0), 0, std::min(STAGE, i1 - c));
      part[omp_get_thread_num()] = s;
    });
  double s = 0.0;
  for (double p : part) s += p;
  return s;
}

void copy_tensor(Ten dst, Ten src, long n) {
  parallel_range(n, [=](long i0, long i1) {
    if (dst.h && src.h) std::memcpy(dst.h + i0, src.h + i0, sizeof(uint16_t) * (i1 - i0));
    else if (dst.h) narrow_row(dst.h + i0, src.f + i0, i1 - i0);
    else if (src.h) widen_row(dst.f + i0, src.h + i0, i1 - i0);
    else std::memcpy(dst.f + i0, src.f + i0, sizeof(float) * (i1 - i0));
  });
}

CLONES static void scale_range(float* x, long i0, long i1, float s) {
  for (long i = i0; i < i1; i++) x[i] *= s;
}

void scale(float* x, long n, float s) {
  parallel_range(n, [=](long i0, long i1) { scale_range(x, i0, i1, s); });
}
