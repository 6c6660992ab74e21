// A bucketed sliding-window counter (a ring of fixed time buckets), shared by the breaker's
// failure rate and the retry/hedge budgets. Exact per-event timestamps would need memory per
// event; a ring of N buckets costs O(N) memory once, O(1) per call and no allocation, at the price
// of a window that slides in steps of windowMs / N.
//
// The window covers the current (partial) bucket and the N - 1 before it, so an event stays
// counted for between windowMs - windowMs/N and windowMs. Several series (e.g. calls and
// failures) share one ring so they expire together.
//
// Time comes from the caller (`now` arguments), never from a timer; it may stand still or go
// backwards (a step back is treated as "still in the current bucket").

export class RollingCounts {
  private readonly bucketMs: number
  /** counts[bucket * series + s] */
  private readonly counts: Float64Array
  private readonly totals: Float64Array
  /** Index (time / bucketMs, floored) of the newest bucket; -Infinity before the first event. */
  private head = Number.NEGATIVE_INFINITY

  constructor(
    readonly windowMs: number,
    readonly buckets: number,
    readonly series: number,
  ) {
    if (!(windowMs > 0) || !Number.isFinite(windowMs)) throw new RangeError(`windowMs must be > 0, got ${windowMs}`)
    if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be an integer >= 1, got ${buckets}`)
    if (!Number.isInteger(series) || series < 1) throw new RangeError(`series must be an integer >= 1, got ${series}`)
    this.bucketMs = windowMs / buckets
    this.counts = new Float64Array(buckets * series)
    this.totals = new Float64Array(series)
  }

  /** Adds n to series s at time now. */
  add(s: number, now: number, n = 1): void {
    this.advance(now)
    const slot = this.slotOf(this.head)
    this.counts[slot * this.series + s]! += n
    this.totals[s]! += n
  }

  /** Sum of series s over the window ending at now. */
  sum(s: number, now: number): number {
    this.advance(now)
    return this.totals[s]!
  }

  /** Forgets everything (e.g. when a breaker changes state and old outcomes no longer apply). */
  clear(): void {
    this.counts.fill(0)
    this.totals.fill(0)
    this.head = Number.NEGATIVE_INFINITY
  }

  /** Expires the buckets that fell out of the window; at most `buckets` steps whatever the gap. */
  private advance(now: number): void {
    const idx = Math.floor(now / this.bucketMs)
    if (!(idx > this.head)) return
    const steps = Math.min(idx - this.head, this.buckets)
    for (let i = 1; i <= steps; i++) {
      // Stepping from `idx - steps + i` rather than `head + i` visits the same ring slots
      // when the gap exceeds the ring (all of them, once) and avoids -Infinity arithmetic.
      const base = this.slotOf(idx - steps + i) * this.series
      for (let s = 0; s < this.series; s++) {
        this.totals[s]! -= this.counts[base + s]!
        this.counts[base + s] = 0
      }
    }
    this.head = idx
  }

  private slotOf(idx: number): number {
    const m = idx % this.buckets
    return m < 0 ? m + this.buckets : m
  }
}
