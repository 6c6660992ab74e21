// The bucketed sliding window: expiry at bucket boundaries, several series, clock steps back, and
// a differential test against a brute-force event log with the same bucket semantics.

import { describe, expect, test } from 'vitest'
import { createPrng } from '../balancer/prng.js'
import { RollingCounts } from './window.js'

describe('RollingCounts', () => {
  test('counts within the window and forgets whole buckets as they fall out', () => {
    const w = new RollingCounts(1000, 10, 1) // 100 ms buckets
    w.add(0, 0)
    w.add(0, 50, 2)
    w.add(0, 150)
    expect(w.sum(0, 150)).toBe(4)
    // Bucket 0 ([0, 100)) is in the window until bucket 10 begins at t = 1000.
    expect(w.sum(0, 999)).toBe(4)
    expect(w.sum(0, 1000)).toBe(1)
    expect(w.sum(0, 1100)).toBe(0)
  })

  test('a gap longer than the window clears everything', () => {
    const w = new RollingCounts(1000, 10, 2)
    for (let t = 0; t < 1000; t += 10) w.add(t % 20 === 0 ? 0 : 1, t)
    expect(w.sum(0, 999) + w.sum(1, 999)).toBe(100)
    expect(w.sum(0, 1_000_000)).toBe(0)
    expect(w.sum(1, 1_000_000)).toBe(0)
    w.add(1, 1_000_001)
    expect(w.sum(1, 1_000_001)).toBe(1)
  })

  test('series are independent but expire together', () => {
    const w = new RollingCounts(1000, 10, 2)
    w.add(0, 0, 3)
    w.add(1, 0, 1)
    expect([w.sum(0, 0), w.sum(1, 0)]).toEqual([3, 1])
    expect([w.sum(0, 1000), w.sum(1, 1000)]).toEqual([0, 0])
  })

  test('a clock step back counts into the current bucket', () => {
    const w = new RollingCounts(1000, 10, 1)
    w.add(0, 500)
    w.add(0, 100) // earlier than the head: treated as "now"
    expect(w.sum(0, 500)).toBe(2)
    expect(w.sum(0, 1499)).toBe(2)
    expect(w.sum(0, 1500)).toBe(0)
  })

  test('clear forgets everything', () => {
    const w = new RollingCounts(1000, 10, 1)
    w.add(0, 5, 7)
    w.clear()
    expect(w.sum(0, 5)).toBe(0)
    w.add(0, 6)
    expect(w.sum(0, 6)).toBe(1)
  })

  test('rejects nonsense sizes', () => {
    expect(() => new RollingCounts(0, 10, 1)).toThrow(RangeError)
    expect(() => new RollingCounts(1000, 0, 1)).toThrow(RangeError)
    expect(() => new RollingCounts(1000, 10, 0)).toThrow(RangeError)
    expect(() => new RollingCounts(Number.POSITIVE_INFINITY, 10, 1)).toThrow(RangeError)
  })

  test('matches a brute-force event log over random times (seeded)', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const rng = createPrng(seed)
      const windowMs = 1000
      const N = 10
      const bucketMs = windowMs / N
      const w = new RollingCounts(windowMs, N, 2)
      const log: { bucket: number; s: number; n: number }[] = []
      let t = 0
      let head = Number.NEGATIVE_INFINITY
      for (let i = 0; i < 5000; i++) {
        const r = rng.next()
        // Mostly small steps, sometimes a long gap, sometimes a step back.
        t += r < 0.05 ? -rng.int(300) : r < 0.1 ? rng.int(3000) : rng.int(40)
        head = Math.max(head, Math.floor(t / bucketMs))
        if (rng.next() < 0.6) {
          const s = rng.int(2)
          const n = 1 + rng.int(3)
          w.add(s, t, n)
          log.push({ bucket: head, s, n })
        }
        for (const s of [0, 1]) {
          const expected = log.filter((e) => e.s === s && e.bucket > head - N).reduce((a, e) => a + e.n, 0)
          expect(w.sum(s, t)).toBe(expected)
        }
      }
    }
  })
})
