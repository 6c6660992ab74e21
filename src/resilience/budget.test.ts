// Retry and hedge budgets: ratio of requests plus a per-second floor, over a sliding window that
// forgets old requests and old spending, with an injected clock.

import { describe, expect, test } from 'vitest'
import { createPrng } from '../balancer/prng.js'
import { HEDGE_BUDGET_DEFAULTS, HedgeBudget, RETRY_BUDGET_DEFAULTS, RetryBudget, SlidingBudget } from './budget.js'

function clock(t0 = 0): { t: number; now: () => number } {
  const c = { t: t0, now: () => c.t }
  return c
}

function drain(tryOne: () => boolean, max = 1_000_000): number {
  let n = 0
  while (n < max && tryOne()) n++
  return n
}

describe('RetryBudget', () => {
  test('defaults: 20% of requests, 10 per second floor, 10 s window', () => {
    expect(RETRY_BUDGET_DEFAULTS).toEqual({ ratio: 0.2, minPerSecond: 10, windowMs: 10_000 })
  })

  test('20% of requests without a floor', () => {
    const c = clock()
    const b = new RetryBudget({ minPerSecond: 0 }, c.now)
    expect(b.tryRetry()).toBe(false) // no requests, no floor: nothing
    for (let i = 0; i < 100; i++) b.recordRequest()
    expect(b.available()).toBe(20)
    expect(drain(() => b.tryRetry())).toBe(20)
    expect(b.available()).toBe(0)
    for (let i = 0; i < 5; i++) b.recordRequest()
    expect(drain(() => b.tryRetry())).toBe(1) // 105 x 0.2 = 21
  })

  test('recordRequest(t) counts the request at t without reading the clock, as recordRequest() does', () => {
    const c = clock()
    let reads = 0
    const counted = (): number => {
      reads++
      return c.t
    }
    const byClock = new RetryBudget({ minPerSecond: 0 }, c.now)
    const given = new RetryBudget({ minPerSecond: 0 }, counted)
    for (const [at, n] of [[0, 50], [4_000, 25], [11_000, 10]] as const) {
      c.t = at
      for (let i = 0; i < n; i++) {
        byClock.recordRequest()
        given.recordRequest(at)
      }
      expect(reads).toBe(0)
      expect(given.available()).toBe(byClock.available())
      reads = 0
    }
    // At 11 s the first 50 have left the 10 s window: (25 + 10) x 0.2 = 7.
    expect(given.available()).toBe(7)
  })

  test('the floor: 10/s x 10 s = 100 retries with no traffic, added to the ratio', () => {
    const c = clock()
    const idle = new RetryBudget({}, c.now)
    expect(drain(() => idle.tryRetry())).toBe(100)
    const busy = new RetryBudget({}, c.now)
    for (let i = 0; i < 100; i++) busy.recordRequest()
    expect(drain(() => busy.tryRetry())).toBe(120)
  })

  test('a refused retry consumes nothing', () => {
    const c = clock()
    const b = new RetryBudget({ minPerSecond: 0 }, c.now)
    for (let i = 0; i < 10; i++) b.recordRequest()
    expect(drain(() => b.tryRetry())).toBe(2)
    for (let i = 0; i < 50; i++) expect(b.tryRetry()).toBe(false)
    for (let i = 0; i < 5; i++) b.recordRequest() // 15 x 0.2 = 3: exactly one more
    expect(b.tryRetry()).toBe(true)
    expect(b.tryRetry()).toBe(false)
  })

  test('the window slides: old requests stop granting retries, old retries stop costing', () => {
    const c = clock(0)
    const b = new RetryBudget({ minPerSecond: 0, windowMs: 10_000 }, c.now)
    for (let i = 0; i < 100; i++) b.recordRequest()
    expect(drain(() => b.tryRetry())).toBe(20)
    c.t = 5_000
    for (let i = 0; i < 50; i++) b.recordRequest() // 150 in window, 20 spent: 10 more
    expect(drain(() => b.tryRetry())).toBe(10)
    c.t = 10_000 // the t=0 requests and retries have expired: 50 requests, 10 spent
    expect(b.available()).toBe(0)
    expect(b.tryRetry()).toBe(false)
    c.t = 15_000 // everything expired
    expect(b.available()).toBe(0)
    for (let i = 0; i < 10; i++) b.recordRequest()
    expect(drain(() => b.tryRetry())).toBe(2)
  })

  test('a retry storm is held to the ratio over time', () => {
    // 1000 requests/s, every one wanting a retry: about 20% get one, plus the floor.
    const c = clock(0)
    const b = new RetryBudget({}, c.now)
    let requests = 0
    let retries = 0
    for (let ms = 0; ms < 60_000; ms++) {
      c.t = ms
      b.recordRequest()
      requests++
      if (b.tryRetry()) retries++
    }
    // Steady state: 0.2 x 10 000 + 100 per 10 s window = 2100 / 10 000 requests.
    expect(retries / requests).toBeGreaterThan(0.2)
    expect(retries / requests).toBeLessThan(0.23)
  })

  test('refuses nonsense options', () => {
    const c = clock()
    expect(() => new RetryBudget({ ratio: -0.1 }, c.now)).toThrow(/ratio/)
    expect(() => new RetryBudget({ minPerSecond: Number.NaN }, c.now)).toThrow(/minPerSecond/)
    expect(() => new RetryBudget({ windowMs: 0 }, c.now)).toThrow(/windowMs/)
  })
})

describe('HedgeBudget', () => {
  test('defaults: 5% of requests, 1 per second floor', () => {
    expect(HEDGE_BUDGET_DEFAULTS).toEqual({ ratio: 0.05, minPerSecond: 1, windowMs: 10_000 })
    const c = clock()
    const idle = new HedgeBudget({}, c.now)
    expect(drain(() => idle.tryHedge())).toBe(10)
  })

  test('5% of requests', () => {
    const c = clock()
    const b = new HedgeBudget({ minPerSecond: 0 }, c.now)
    for (let i = 0; i < 1000; i++) b.recordRequest()
    expect(drain(() => b.tryHedge())).toBe(50)
    expect(b.options).toEqual({ ratio: 0.05, minPerSecond: 0, windowMs: 10_000 })
  })
})

describe('SlidingBudget against a reference model (seeded)', () => {
  test('grants exactly what a brute-force count over the same buckets grants', () => {
    for (const seed of [3, 17, 2024]) {
      const rng = createPrng(seed)
      const c = clock(rng.int(1e6))
      const opts = { ratio: rng.next() * 0.5, minPerSecond: rng.int(5), windowMs: 1000 + rng.int(9000) }
      const b = new SlidingBudget(opts, c.now, RETRY_BUDGET_DEFAULTS)
      const bucketMs = opts.windowMs / 10
      const events: { bucket: number; spent: boolean }[] = []
      for (let i = 0; i < 20_000; i++) {
        c.t += rng.next() < 0.02 ? rng.int(opts.windowMs) : rng.int(5)
        const head = Math.floor(c.t / bucketMs)
        if (rng.next() < 0.7) {
          b.recordRequest()
          events.push({ bucket: head, spent: false })
        } else {
          const live = events.filter((e) => e.bucket > head - 10)
          const requests = live.filter((e) => !e.spent).length
          const spent = live.length - requests
          const expected = spent + 1 <= opts.ratio * requests + (opts.minPerSecond * opts.windowMs) / 1000 + 1e-9
          expect(b.tryConsume()).toBe(expected)
          if (expected) events.push({ bucket: head, spent: true })
        }
        if (events.length > 5000) events.splice(0, events.length - 5000)
      }
    }
  })
})
