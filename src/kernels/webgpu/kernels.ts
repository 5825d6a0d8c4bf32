// The WebGPU backend's kernels in WGSL, one entry per compute pass.
//
// A kernel names its storage arguments and its scalar parameters; the backend (./backend.ts) generates the bindings
// and, for each argument, accessors `ld_<name>(i)` / `st_<name>(i, x)` that add the argument's offset, so a body
// reads like the TypeScript reference (../js/layers.ts). Arguments that share a GPU buffer (views of one allocation,
// or an aliased argument such as crossEntropy's dlogits over logits) are bound once, as WebGPU requires.
//
// Every reduction runs in a fixed order, without atomics (WGSL has no float atomics): two runs give the same bits.
// Each body sees `wid` (the workgroup's linear index, below u.total) and `lid` (the invocation's index in it).

/** f32 and i32 arrays, and u32: a bf16 tensor's raw words (two values each) */
export type ArgType = "f32" | "i32" | "u32";

export interface KernelSpec {
  args: [name: string, type: ArgType][];
  params: [name: string, type: "u32" | "f32"][];
  /** invocations per workgroup */
  wg: number;
  /** module-scope WGSL: workgroup memory, helper functions */
  decls?: string;
  body: string;
}

const f = (...names: string[]): [string, ArgType][] => names.map((n) => [n, "f32"]);
const u = (...names: string[]): [string, "u32"][] => names.map((n) => [n, "u32"]);

/**
 * Workgroup-wide reductions over 256 invocations (called in uniform control flow): wg_sum0, wg_sum1, wg_sum2 and
 * wg_max0, each with workgroup memory of its own. A kernel's consecutive reductions use different ones: Mesa's
 * llvmpipe (the CPU adapter CI tests on) was seen to move the read of one reduction's result past the barrier that
 * follows it, so that the next reduction's writes to the same memory changed it (a layernorm's variance came out wrong).
 */
const REDUCE = [0, 1, 2].map((k) => /* wgsl */ `
var<workgroup> red${k}: array<f32, 256>;
fn wg_sum${k}(lid: u32, x: f32) -> f32 {
  red${k}[lid] = x;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { red${k}[lid] += red${k}[lid + s]; }
    workgroupBarrier();
  }
  let r = red${k}[0];
  workgroupBarrier();
  return r;
}`).join("\n") + /* wgsl */ `
var<workgroup> redm: array<f32, 256>;
fn wg_max0(lid: u32, x: f32) -> f32 {
  redm[lid] = x;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { redm[lid] = max(redm[lid], redm[lid + s]); }
    workgroupBarrier();
  }
  let r = redm[0];
  workgroupBarrier();
  return r;
}`;

/** one invocation per element: `i` below u.n */
const EACH = "let i = wid * 256u + lid; if (i >= u.n) { return; }";

const GELU = /* wgsl */ `
const GELU_SCALE = 0.7978845608028654;
// tanh from exp(-2|x|), which neither overflows nor loses the absolute precision GELU needs (builtin tanh is looser
// on some implementations: 4.6e-6 off on Mesa's)
fn tanh_c(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }`;

export const KERNELS = {
  // ---------------------------------------------------------------- memory
  fill: { args: f("t"), params: [...u("n"), ["value", "f32"]], wg: 256, body: `${EACH} st_t(i, u.value);` },
  copy: { args: f("dst", "src"), params: u("n"), wg: 256, body: `${EACH} st_dst(i, ld_src(i));` },
  scale: { args: f("t"), params: [...u("n"), ["s", "f32"]], wg: 256, body: `${EACH} st_t(i, ld_t(i) * u.s);` },
  /** partial[w] = sum of squares of the w-th run of 4096 values */
  sumSquares: {
    args: f("partial", "t"), params: u("n"), wg: 256, decls: REDUCE, body: `
    var s = 0.0;
    for (var r = 0u; r < 16u; r++) {
      let i = wid * 4096u + r * 256u + lid;
      if (i < u.n) { let x = ld_t(i); s += x * x; }
    }
    let total = wg_sum0(lid, s);
    if (lid == 0u) { st_partial(wid, total); }`,
  },

  /** dst (bf16, two values a word) = src rounded to nearest even, as the CPU's vcvtneps2bf16 and PyTorch */
  toBf16: {
    args: [["dst", "u32"], ...f("src")], params: u("n", "count"), wg: 256, decls: /* wgsl */ `
fn bf16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) { return (b >> 16u) | 0x40u; }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}`, body: `${EACH}
    // an odd count leaves the last word's high half (the next tensor's value) as it was
    var hi = ld_dst(i) & 0xffff0000u;
    if (2u * i + 1u < u.count) { hi = bf16_bits(ld_src(2u * i + 1u)) << 16u; }
    st_dst(i, bf16_bits(ld_src(2u * i)) | hi);`,
  },

  // ---------------------------------------------------------------- encoder
  encoderForward: {
    args: [...f("out"), ["inp", "i32"], ...f("wte", "wpe")], params: u("n", "T", "C"), wg: 256, body: `${EACH}
    let c = i % u.C; let bt = i / u.C; let t = bt % u.T;
    let tok = u32(ld_inp(bt));
    st_out(i, ld_wte(tok * u.C + c) + ld_wpe(t * u.C + c));`,
  },
  /** dwpe[t, c] += the sum over the batch, one invocation per (t, c) */
  encoderBackwardPos: {
    args: f("dwpe", "dout"), params: u("n", "B", "T", "C"), wg: 256, body: `${EACH}
    let c = i % u.C; let t = i / u.C;
    var s = 0.0;
    for (var b = 0u; b < u.B; b++) { s += ld_dout((b * u.T + t) * u.C + c); }
    st_dwpe(i, ld_dwpe(i) + s);`,
  },
  /** dwte[inp[n], c] += dout[n, c], one invocation per channel walking the tokens in order (as the reference) */
  encoderBackwardTok: {
    args: [...f("dwte", "dout"), ["inp", "i32"]], params: u("n", "N", "C"), wg: 256, body: `${EACH}
    for (var r = 0u; r < u.N; r++) {
      let j = u32(ld_inp(r)) * u.C + i;
      st_dwte(j, ld_dwte(j) + ld_dout(r * u.C + i));
    }`,
  },

  // ---------------------------------------------------------------- layernorm: a workgroup per row
  layernormForward: {
    args: f("out", "mean", "rstd", "inp", "weight", "bias"), params: u("C"), wg: 256, decls: REDUCE, body: `
    let x = wid * u.C;
    var s = 0.0;
    for (var i = lid; i < u.C; i += 256u) { s += ld_inp(x + i); }
    let m = wg_sum0(lid, s) / f32(u.C);
    var v = 0.0;
    for (var i = lid; i < u.C; i += 256u) { let d = ld_inp(x + i) - m; v += d * d; }
    let rs = 1.0 / sqrt(wg_sum1(lid, v) / f32(u.C) + 1e-5);
    for (var i = lid; i < u.C; i += 256u) { st_out(x + i, (ld_inp(x + i) - m) * rs * ld_weight(i) + ld_bias(i)); }
    if (lid == 0u) { st_mean(wid, m); st_rstd(wid, rs); }`,
  },
  /** dinp += for one row per workgroup */
  layernormBackwardInput: {
    args: f("dinp", "dout", "inp", "weight", "mean", "rstd"), params: u("C"), wg: 256, decls: REDUCE, body: `
    let x = wid * u.C; let m = ld_mean(wid); let rs = ld_rstd(wid);
    var a = 0.0; var b = 0.0;
    for (var i = lid; i < u.C; i += 256u) {
      let norm = (ld_inp(x + i) - m) * rs; let dnorm = ld_weight(i) * ld_dout(x + i);
      a += dnorm; b += dnorm * norm;
    }
    let dm = wg_sum0(lid, a) / f32(u.C);
    let dnm = wg_sum1(lid, b) / f32(u.C);
    for (var i = lid; i < u.C; i += 256u) {
      let norm = (ld_inp(x + i) - m) * rs; let dnorm = ld_weight(i) * ld_dout(x + i);
      st_dinp(x + i, ld_dinp(x + i) + (dnorm - dm - norm * dnm) * rs);
    }`,
  },
  /** dweight, dbias += over the rows, one invocation per channel */
  layernormBackwardParams: {
    args: f("dweight", "dbias", "dout", "inp", "mean", "rstd"), params: u("n", "N"), wg: 256, body: `${EACH}
    var dw = 0.0; var db = 0.0;
    for (var r = 0u; r < u.N; r++) {
      let d = ld_dout(r * u.n + i);
      db += d; dw += (ld_inp(r * u.n + i) - ld_mean(r)) * ld_rstd(r) * d;
    }
    st_dweight(i, ld_dweight(i) + dw); st_dbias(i, ld_dbias(i) + db);`,
  },

  // ---------------------------------------------------------------- matmul
  /**
   * c (M,N) = [c +] [bias +] A @ B with A(m,k) = a[m*sam + k*sak], B(k,n) = b[k*sbk + n*sbn]: the forward product and
   * both backward ones are this kernel with other strides. 64 x 64 tiles of c per workgroup, 16 deep in workgroup
   * memory, 4 x 4 outputs per invocation.
   */
  gemm: {
    args: f("c", "a", "b", "bias"), params: u("M", "N", "K", "sam", "sak", "sbk", "sbn", "accum", "hasBias", "tilesN"), wg: 256,
    decls: `var<workgroup> As: array<f32, 1024>;\nvar<workgroup> Bs: array<f32, 1024>;`, body: `
    let m0 = (wid / u.tilesN) * 64u; let n0 = (wid % u.tilesN) * 64u;
    let tx = lid % 16u; let ty = lid / 16u;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < u.K; k0 += 16u) {
      for (var r = 0u; r < 4u; r++) {
        let e = lid + r * 256u;
        let kk = e % 16u; let mm = e / 16u; let gk = k0 + kk;
        var va = 0.0; var vb = 0.0;
        if (gk < u.K && m0 + mm < u.M) { va = ld_a((m0 + mm) * u.sam + gk * u.sak); }
        if (gk < u.K && n0 + mm < u.N) { vb = ld_b(gk * u.sbk + (n0 + mm) * u.sbn); }
        As[kk * 64u + mm] = va; Bs[kk * 64u + mm] = vb;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < 16u; kk++) {
        var av: array<f32, 4>; var bv: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) { av[i] = As[kk * 64u + ty * 4u + i]; bv[i] = Bs[kk * 64u + tx * 4u + i]; }
        for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]); } }
      }
      workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) {
        let gm = m0 + ty * 4u + i; let gn = n0 + tx * 4u + j;
        if (gm < u.M && gn < u.N) {
          var v = acc[i * 4u + j];
          if (u.hasBias == 1u) { v += ld_bias(gn); }
          if (u.accum == 1u) { v += ld_c(gm * u.N + gn); }
          st_c(gm * u.N + gn, v);
        }
      }
    }`,
  },
  /**
   * gemm for a few rows (generation's one token per stream): an invocation per output, walking K in order; no
   * workgroup memory or barriers, which cost more than they save when only M rows share a tile.
   */
  gemmRows: {
    args: f("c", "a", "b", "bias"), params: u("M", "N", "K", "sam", "sak", "sbk", "sbn", "accum", "hasBias", "n"), wg: 256, body: `
    let i = wid * 256u + lid; if (i >= u.n) { return; }
    let gm = i / u.N; let gn = i % u.N;
    var acc = 0.0;
    for (var k = 0u; k < u.K; k++) { acc = fma(ld_a(gm * u.sam + k * u.sak), ld_b(k * u.sbk + gn * u.sbn), acc); }
    if (u.hasBias == 1u) { acc += ld_bias(gn); }
    if (u.accum == 1u) { acc += ld_c(i); }
    st_c(i, acc);`,
  },
  /** dbias[o] += the sum of dout's column o over its rows, in row order */
  columnSum: {
    args: f("dbias", "dout"), params: u("n", "N"), wg: 256, body: `${EACH}
    var s = 0.0;
    for (var r = 0u; r < u.N; r++) { s += ld_dout(r * u.n + i); }
    st_dbias(i, ld_dbias(i) + s);`,
  },

  // ---------------------------------------------------------------- attention: an invocation per query, online softmax
  /**
   * out = softmax(q k^T / sqrt(hs)) v over keys 0..pos+t, q from qkv (B,Tq,3C), keys and values at
   * k[b*kB + h*kH + kC + j*kS] (training: inside qkv; generation: the KV cache), lse saved when hasLse.
   */
  attention: {
    args: f("out", "lse", "qkv", "k", "v"), params: [...u("n", "Tq", "C", "NH", "pos", "kB", "kH", "kC", "vC", "kS", "hasLse"), ["scale", "f32"]],
    wg: 64, body: `
    let i = wid * 64u + lid; if (i >= u.n) { return; }
    let t = i % u.Tq; let bh = i / u.Tq; let h = bh % u.NH; let b = bh / u.NH;
    let qo = (b * u.Tq + t) * 3u * u.C + h * HS;
    var q: array<f32, HS>; var acc: array<f32, HS>;
    for (var d = 0u; d < HS; d++) { q[d] = ld_qkv(qo + d); }
    var mx = -3.0e38; var sum = 0.0;
    let base = b * u.kB + h * u.kH;
    for (var j = 0u; j <= u.pos + t; j++) {
      let ko = base + u.kC + j * u.kS; let vo = base + u.vC + j * u.kS;
      var s = 0.0;
      for (var d = 0u; d < HS; d++) { s += q[d] * ld_k(ko + d); }
      s *= u.scale;
      if (s > mx) {
        let corr = exp(mx - s); sum *= corr;
        for (var d = 0u; d < HS; d++) { acc[d] *= corr; }
        mx = s;
      }
      let p = exp(s - mx); sum += p;
      for (var d = 0u; d < HS; d++) { acc[d] += p * ld_v(vo + d); }
    }
    let oo = (b * u.Tq + t) * u.C + h * HS;
    for (var d = 0u; d < HS; d++) { st_out(oo + d, acc[d] / sum); }
    if (u.hasLse == 1u) { st_lse(bh * u.Tq + t, mx + log(sum)); }`,
  },
  /** the new tokens' keys and values into the caches (B,NH,maxT,hs) at pos.. */
  kvStore: {
    args: f("kcache", "vcache", "qkv"), params: u("n", "Tq", "C", "NH", "pos", "maxT"), wg: 256, body: `${EACH}
    let c = i % u.C; let bt = i / u.C; let t = bt % u.Tq; let b = bt / u.Tq;
    let h = c / HS; let d = c % HS;
    let dst = ((b * u.NH + h) * u.maxT + u.pos + t) * HS + d;
    let src = bt * 3u * u.C + c;
    st_kcache(dst, ld_qkv(src + u.C)); st_vcache(dst, ld_qkv(src + 2u * u.C));`,
  },
  /** D[b,h,t] = dout . out, the softmax backward's row term */
  attentionRowDot: {
    args: f("D", "dout", "out"), params: u("n", "T", "C", "NH"), wg: 64, body: `
    let i = wid * 64u + lid; if (i >= u.n) { return; }
    let t = i % u.T; let bh = i / u.T; let h = bh % u.NH; let b = bh / u.NH;
    let o = (b * u.T + t) * u.C + h * HS;
    var s = 0.0;
    for (var d = 0u; d < HS; d++) { s += ld_dout(o + d) * ld_out(o + d); }
    st_D(i, s);`,
  },
  /** dq for one query per invocation, over its keys in order */
  attentionBackwardQuery: {
    args: f("dqkv", "dout", "qkv", "lse", "D"), params: [...u("n", "T", "C", "NH"), ["scale", "f32"]], wg: 64, body: `
    let i = wid * 64u + lid; if (i >= u.n) { return; }
    let t = i % u.T; let bh = i / u.T; let h = bh % u.NH; let b = bh / u.NH;
    let C3 = 3u * u.C;
    let qo = (b * u.T + t) * C3 + h * HS; let o = (b * u.T + t) * u.C + h * HS;
    var q: array<f32, HS>; var g: array<f32, HS>; var dq: array<f32, HS>;
    for (var d = 0u; d < HS; d++) { q[d] = ld_qkv(qo + d); g[d] = ld_dout(o + d); }
    let l = ld_lse(i); let Dt = ld_D(i);
    for (var j = 0u; j <= t; j++) {
      let ko = (b * u.T + j) * C3 + u.C + h * HS;
      var s = 0.0; var dp = 0.0;
      for (var d = 0u; d < HS; d++) { s += q[d] * ld_qkv(ko + d); dp += g[d] * ld_qkv(ko + u.C + d); }
      let p = exp(s * u.scale - l);
      let ds = p * (dp - Dt) * u.scale;
      for (var d = 0u; d < HS; d++) { dq[d] += ds * ld_qkv(ko + d); }
    }
    for (var d = 0u; d < HS; d++) { st_dqkv(qo + d, dq[d]); }`,
  },
  /** dk, dv for one key per invocation, over the queries that see it, in order */
  attentionBackwardKey: {
    args: f("dqkv", "dout", "qkv", "lse", "D"), params: [...u("n", "T", "C", "NH"), ["scale", "f32"]], wg: 64, body: `
    let i = wid * 64u + lid; if (i >= u.n) { return; }
    let j = i % u.T; let bh = i / u.T; let h = bh % u.NH; let b = bh / u.NH;
    let C3 = 3u * u.C;
    let ko = (b * u.T + j) * C3 + u.C + h * HS;
    var kj: array<f32, HS>; var vj: array<f32, HS>; var dk: array<f32, HS>; var dv: array<f32, HS>;
    for (var d = 0u; d < HS; d++) { kj[d] = ld_qkv(ko + d); vj[d] = ld_qkv(ko + u.C + d); }
    for (var t = j; t < u.T; t++) {
      let qo = (b * u.T + t) * C3 + h * HS; let o = (b * u.T + t) * u.C + h * HS;
      var s = 0.0; var dp = 0.0;
      for (var d = 0u; d < HS; d++) { s += ld_qkv(qo + d) * kj[d]; dp += ld_dout(o + d) * vj[d]; }
      let r = bh * u.T + t;
      let p = exp(s * u.scale - ld_lse(r));
      let ds = p * (dp - ld_D(r)) * u.scale;
      for (var d = 0u; d < HS; d++) { dk[d] += ds * ld_qkv(qo + d); dv[d] += p * ld_dout(o + d); }
    }
    for (var d = 0u; d < HS; d++) { st_dqkv(ko + d, dk[d]); st_dqkv(ko + u.C + d, dv[d]); }`,
  },

  // ---------------------------------------------------------------- pointwise
  geluForward: {
    args: f("out", "inp"), params: u("n"), wg: 256, decls: GELU, body: `${EACH}
    let x = ld_inp(i);
    st_out(i, 0.5 * x * (1.0 + tanh_c(GELU_SCALE * (x + 0.044715 * x * x * x))));`,
  },
  geluBackward: {
    args: f("dinp", "inp", "dout"), params: u("n"), wg: 256, decls: GELU, body: `${EACH}
    let x = ld_inp(i);
    let th = tanh_c(GELU_SCALE * (x + 0.044715 * x * x * x));
    let grad = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_SCALE * (1.0 + 3.0 * 0.044715 * x * x);
    st_dinp(i, grad * ld_dout(i));`,
  },
  residualForward: { args: f("out", "a", "b"), params: u("n"), wg: 256, body: `${EACH} st_out(i, ld_a(i) + ld_b(i));` },

  // ---------------------------------------------------------------- classifier: a workgroup per row
  crossEntropy: {
    args: [...f("losses", "dlogits", "logits"), ["targets", "i32"], ...f("rowWeights")],
    params: [...u("V", "Vp", "hasGrad", "hasWeights"), ["gradScale", "f32"]], wg: 256, decls: REDUCE, body: `
    let x = wid * u.Vp; let tgt = ld_targets(wid);
    var mx = -3.0e38;
    for (var i = lid; i < u.V; i += 256u) { mx = max(mx, ld_logits(x + i)); }
    mx = wg_max0(lid, mx);
    var s = 0.0;
    for (var i = lid; i < u.V; i += 256u) { s += exp(ld_logits(x + i) - mx); }
    // the target's logit is read before the reduction's last barrier: dlogits may be the same memory
    var tl = 0.0;
    if (lid == 0u && tgt >= 0) { tl = ld_logits(x + u32(tgt)); }
    let lsum = log(wg_sum0(lid, s)) + mx;
    if (lid == 0u) { st_losses(wid, select(0.0, lsum - tl, tgt >= 0)); }
    if (u.hasGrad == 1u) {
      var sc = u.gradScale;
      if (u.hasWeights == 1u) { sc *= ld_rowWeights(wid); }
      for (var i = lid; i < u.Vp; i += 256u) {
        var gr = 0.0;
        if (i < u.V && tgt >= 0) { gr = (exp(ld_logits(x + i) - lsum) - select(0.0, 1.0, i32(i) == tgt)) * sc; }
        st_dlogits(x + i, gr);
      }
    }`,
  },

  // ---------------------------------------------------------------- optimizer
  adamw: {
    args: f("params", "grads", "m", "v"), params: [...u("n"), ...(["lr", "b1", "b2", "eps", "wd", "c1", "c2", "gs"].map((n) => [n, "f32"]) as [string, "f32"][])],
    wg: 256, body: `${EACH}
    let g = ld_grads(i) * u.gs;
    let mi = u.b1 * ld_m(i) + (1.0 - u.b1) * g;
    let vi = u.b2 * ld_v(i) + (1.0 - u.b2) * g * g;
    st_m(i, mi); st_v(i, vi);
    let p = ld_params(i) * (1.0 - u.lr * u.wd);
    st_params(i, p - u.lr * (mi / u.c1) / (sqrt(vi / u.c2) + u.eps));`,
  },
} satisfies Record<string, KernelSpec>;

export type KernelName = keyof typeof KERNELS;
