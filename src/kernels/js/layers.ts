// Pure-TypeScript reference kernels: the spec every other backend is tested against.
// Plain loops, float32 storage, double-precision accumulation. Shapes as in ../backend.ts.

type F32 = Float32Array;

// ---------------------------------------------------------------- encoder
export function encoderForward(out: F32, inp: Int32Array, wte: F32, wpe: F32, B: number, T: number, C: number): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * C, ix = inp[b * T + t] * C, p = t * C;
      for (let i = 0; i < C; i++) out[o + i] = wte[ix + i] + wpe[p + i];
    }
  }
}

export function encoderBackward(dwte: F32, dwpe: F32, dout: F32, inp: Int32Array, B: number, T: number, C: number): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * C, ix = inp[b * T + t] * C, p = t * C;
      for (let i = 0; i < C; i++) {
        dwte[ix + i] += dout[o + i];
        dwpe[p + i] += dout[o + i];
      }
    }
  }
}

// ---------------------------------------------------------------- layernorm (eps 1e-5, as GPT-2)
export function layernormForward(out: F32, mean: F32, rstd: F32, inp: F32, weight: F32, bias: F32, N: number, C: number): void {
  for (let n = 0; n < N; n++) {
    const x = n * C;
    let m = 0;
    for (let i = 0; i < C; i++) m += inp[x + i];
    m /= C;
    let v = 0;
    for (let i = 0; i < C; i++) { const d = inp[x + i] - m; v += d * d; }
    v /= C;
    const s = 1 / Math.sqrt(v + 1e-5);
    for (let i = 0; i < C; i++) out[x + i] = (inp[x + i] - m) * s * weight[i] + bias[i];
    mean[n] = m;
    rstd[n] = s;
  }
}

export function layernormBackward(dinp: F32, dweight: F32, dbias: F32, dout: F32, inp: F32, weight: F32,
  mean: F32, rstd: F32, N: number, C: number): void {
  for (let n = 0; n < N; n++) {
    const x = n * C, m = mean[n], s = rstd[n];
    let dnormMean = 0, dnormNormMean = 0;
    for (let i = 0; i < C; i++) {
      const norm = (inp[x + i] - m) * s;
      const dnorm = weight[i] * dout[x + i];
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= C;
    dnormNormMean /= C;
    for (let i = 0; i < C; i++) {
      const norm = (inp[x + i] - m) * s;
      const dnorm = weight[i] * dout[x + i];
      dbias[i] += dout[x + i];
      dweight[i] += norm * dout[x + i];
      dinp[x + i] += (dnorm - dnormMean - norm * dnormNormMean) * s;
    }
  }
}

// ---------------------------------------------------------------- matmul, weight (OC, C) as nn.Linear
export function matmulForward(out: F32, inp: F32, weight: F32, bias: F32 | null, N: number, C: number, OC: number): void {
  for (let n = 0; n < N; n++) {
    const x = n * C, y = n * OC;
    for (let o = 0; o < OC; o++) {
      const w = o * C;
      let acc = bias ? bias[o] : 0;
      for (let i = 0; i < C; i++) acc += inp[x + i] * weight[w + i];
      out[y + o] = acc;
    }
  }
}

export function matmulBackward(dinp: F32 | null, dweight: F32, dbias: F32 | null, dout: F32, inp: F32, weight: F32,
  N: number, C: number, OC: number): void {
  if (dinp) {
    const row = new Float64Array(C);
    for (let n = 0; n < N; n++) {
      row.fill(0);
      const y = n * OC;
      for (let o = 0; o < OC; o++) {
        const d = dout[y + o], w = o * C;
        for (let i = 0; i < C; i++) row[i] += d * weight[w + i];
      }
      const x = n * C;
      for (let i = 0; i < C; i++) dinp[x + i] = row[i];
    }
  }
  const row = new Float64Array(C);
  for (let o = 0; o < OC; o++) {
    row.fill(0);
    let db = 0;
    for (let n = 0; n < N; n++) {
      const d = dout[n * OC + o], x = n * C;
      db += d;
      for (let i = 0; i < C; i++) row[i] += d * inp[x + i];
    }
    const w = o * C;
    for (let i = 0; i < C; i++) dweight[w + i] += row[i];
    if (dbias) dbias[o] += db;
  }
}

// ---------------------------------------------------------------- attention (flash-style: per-row scores only)
export function attentionForward(out: F32, lse: F32, qkv: F32, B: number, T: number, C: number, NH: number,
  scores: Float64Array): void {
  const hs = C / NH, C3 = 3 * C, scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const q = (b * T + t) * C3 + h * hs;
        let max = -Infinity;
        for (let j = 0; j <= t; j++) {
          const k = (b * T + j) * C3 + C + h * hs;
          let s = 0;
          for (let i = 0; i < hs; i++) s += qkv[q + i] * qkv[k + i];
          s *= scale;
          scores[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) { scores[j] = Math.exp(scores[j] - max); sum += scores[j]; }
        const o = (b * T + t) * C + h * hs;
        for (let i = 0; i < hs; i++) {
          let acc = 0;
          for (let j = 0; j <= t; j++) acc += scores[j] * qkv[(b * T + j) * C3 + 2 * C + h * hs + i];
          out[o + i] = acc / sum;
        }
        lse[(b * NH + h) * T + t] = max + Math.log(sum);
      }
    }
  }
}

export function attentionBackward(dqkv: F32, dout: F32, qkv: F32, out: F32, lse: F32, B: number, T: number, C: number,
  NH: number): void {
  const hs = C / NH, C3 = 3 * C, scale = 1 / Math.sqrt(hs);
  dqkv.fill(0, 0, B * T * C3);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const q = (b * T + t) * C3 + h * hs, o = (b * T + t) * C + h * hs;
        let D = 0;
        for (let i = 0; i < hs; i++) D += dout[o + i] * out[o + i];
        const l = lse[(b * NH + h) * T + t];
        for (let j = 0; j <= t; j++) {
          const k = (b * T + j) * C3 + C + h * hs, v = k + C;
          let s = 0, dp = 0;
          for (let i = 0; i < hs; i++) { s += qkv[q + i] * qkv[k + i]; dp += dout[o + i] * qkv[v + i]; }
          const p = Math.exp(s * scale - l);
          const ds = p * (dp - D) * scale;
          for (let i = 0; i < hs; i++) {
            dqkv[q + i] += ds * qkv[k + i];
            dqkv[k + i] += ds * qkv[q + i];
            dqkv[v + i] += p * dout[o + i];
          }
        }
      }
    }
  }
}

export function attentionCached(out: F32, kcache: F32, vcache: F32, qkv: F32, B: number, Tq: number, pos: number,
  maxT: number, C: number, NH: number, scores: Float64Array): void {
  const hs = C / NH, C3 = 3 * C, scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const cache = (b * NH + h) * maxT * hs;
      for (let t = 0; t < Tq; t++) {
        const src = (b * Tq + t) * C3 + h * hs, dst = cache + (pos + t) * hs;
        for (let i = 0; i < hs; i++) { kcache[dst + i] = qkv[src + C + i]; vcache[dst + i] = qkv[src + 2 * C + i]; }
      }
      for (let t = 0; t < Tq; t++) {
        const q = (b * Tq + t) * C3 + h * hs, last = pos + t;
        let max = -Infinity;
        for (let j = 0; j <= last; j++) {
          const k = cache + j * hs;
          let s = 0;
          for (let i = 0; i < hs; i++) s += qkv[q + i] * kcache[k + i];
          s *= scale;
          scores[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j <= last; j++) { scores[j] = Math.exp(scores[j] - max); sum += scores[j]; }
        const o = (b * Tq + t) * C + h * hs;
        for (let i = 0; i < hs; i++) {
          let acc = 0;
          for (let j = 0; j <= last; j++) acc += scores[j] * vcache[cache + j * hs + i];
          out[o + i] = acc / sum;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- GELU (tanh approximation)
const GELU_SCALE = Math.sqrt(2 / Math.PI);

export function geluForward(out: F32, inp: F32, N: number): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    out[i] = 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + 0.044715 * x * x * x)));
  }
}

export function geluBackward(dinp: F32, inp: F32, dout: F32, N: number): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    const th = Math.tanh(GELU_SCALE * (x + 0.044715 * x * x * x));
    const sech2 = 1 - th * th;
    const grad = 0.5 * (1 + th) + 0.5 * x * sech2 * GELU_SCALE * (1 + 3 * 0.044715 * x * x);
    dinp[i] = grad * dout[i];
  }
}

export function residualForward(out: F32, a: F32, b: F32, N: number): void {
  for (let i = 0; i < N; i++) out[i] = a[i] + b[i];
}

// ---------------------------------------------------------------- fused softmax + cross-entropy
export function crossEntropy(losses: F32, dlogits: F32 | null, logits: F32, targets: Int32Array, N: number, V: number,
  Vp: number, gradScale: number, rowWeights: Float32Array | null = null): void {
  for (let n = 0; n < N; n++) {
    const x = n * Vp, target = targets[n];
    const scale = rowWeights ? gradScale * rowWeights[n] : gradScale;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[x + i] > max) max = logits[x + i];
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[x + i] - max);
    const logSum = Math.log(sum) + max;
    losses[n] = target >= 0 ? logSum - logits[x + target] : 0;
    if (dlogits) {
      const y = n * Vp;
      for (let i = 0; i < V; i++) {
        const p = target >= 0 ? Math.exp(logits[x + i] - logSum) : 0;
        dlogits[y + i] = (p - (i === target ? 1 : 0)) * scale;
      }
      for (let i = V; i < Vp; i++) dlogits[y + i] = 0;
    }
  }
}

// ---------------------------------------------------------------- optimizer
export function adamw(params: F32, grads: F32, m: F32, v: F32, n: number, lr: number, beta1: number, beta2: number,
  eps: number, weightDecay: number, t: number, gradScale: number): void {
  const c1 = 1 - Math.pow(beta1, t), c2 = 1 - Math.pow(beta2, t);
  for (let i = 0; i < n; i++) {
    const g = Math.fround(grads[i] * gradScale); // what the gradient would hold, scaled in place in float32
    const mi = beta1 * m[i] + (1 - beta1) * g;
    const vi = beta2 * v[i] + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const p = params[i] * (1 - lr * weightDecay);
    params[i] = p - lr * (mi / c1) / (Math.sqrt(vi / c2) + eps);
  }
}
