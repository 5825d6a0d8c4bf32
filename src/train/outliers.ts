// Loss and grad-norm outlier detection, as llm.c's outlier_detector.h: the z-score of a new value against the mean
// and standard deviation of the last `window` values (once at least `minCount` are in).

export class OutlierDetector {
  private readonly buf: number[] = [];
  private next = 0;

  constructor(readonly window = 128, readonly minCount = 16) {}

  /** z-score of x against the window so far (NaN until minCount values are in); then x joins the window. */
  update(x: number): number {
    let z = NaN;
    if (this.buf.length >= this.minCount) {
      let mean = 0;
      for (const v of this.buf) mean += v;
      mean /= this.buf.length;
      let varSum = 0;
      for (const v of this.buf) varSum += (v - mean) * (v - mean);
      const std = Math.sqrt(varSum / this.buf.length);
      z = std > 0 ? (x - mean) / std : 0;
    }
    if (Number.isFinite(x)) {
      if (this.buf.length < this.window) this.buf.push(x);
      else { this.buf[this.next] = x; this.next = (this.next + 1) % this.window; }
    }
    return z;
  }

  get state(): { buf: number[]; next: number } { return { buf: [...this.buf], next: this.next }; }
  set state(s: { buf: number[]; next: number }) { this.buf.splice(0, this.buf.length, ...s.buf); this.next = s.next; }
}
