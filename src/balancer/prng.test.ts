// The seeded PRNG the property tests rely on: deterministic, seed-sensitive, roughly uniform.

import { describe, expect, test } from 'vitest'
import { createPrng } from './prng.js'

describe('createPrng', () => {
  test('same seed, same stream; different seeds, different streams', () => {
    const a = createPrng(42)
    const b = createPrng(42)
    const c = createPrng(43)
    const sa = Array.from({ length: 100 }, a.next)
    expect(Array.from({ length: 100 }, b.next)).toEqual(sa)
    expect(Array.from({ length: 100 }, c.next)).not.toEqual(sa)
  })

  test('values in [0, 1), mean and buckets close to uniform', () => {
    const r = createPrng(7)
    const buckets = new Array<number>(10).fill(0)
    let sum = 0
    let outside = 0
    const N = 100_000
    for (let i = 0; i < N; i++) {
      const x = r.next()
      if (!(x >= 0 && x < 1)) outside++
      sum += x
      buckets[Math.floor(x * 10)]!++
    }
    expect(outside).toBe(0)
    expect(Math.abs(sum / N - 0.5)).toBeLessThan(0.005)
    for (const b of buckets) expect(Math.abs(b / N - 0.1)).toBeLessThan(0.005)
  })

  test('int, pick and exp', () => {
    const r = createPrng(9)
    for (let i = 0; i < 1000; i++) expect([0, 1, 2]).toContain(r.int(3))
    expect(['x']).toContain(r.pick(['x']))
    expect(() => r.pick([])).toThrow(RangeError)
    let sum = 0
    for (let i = 0; i < 100_000; i++) sum += r.exp(2)
    expect(Math.abs(sum / 100_000 - 2)).toBeLessThan(0.05)
  })
})
