// Branch-free float exp, so loops around it vectorize.
#pragma once

#include <cmath>
#include <cstring>

// exp(x) for float, ~1 ulp on [-87, 88], branch-free so loops around it vectorize (Cephes-style polynomial).
inline float fast_exp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int e = ((int)n + 127) << 23;
  float s;
  std::memcpy(&s, &e, 4);
  return p * s;
}
