// Least-request: PeakEwma arithmetic with an injected clock, the P2C choice, and a discrete-event
// simulation (fake clock, single-threaded FIFO servers like Redis) showing that traffic moves away
// from a slow endpoint.

import { describe, expect, test } from 'vitest'
import { cost, LeastRequestBalancer, LoadTracker, PeakEwma } from './least-request.js'
import { createPrng } from './prng.js'
import { RandomBalancer } from './random.js'
import { candidate, fixedLoad, trackedCandidate } from './testing.js'
import type { Balancer, Candidate } from './types.js'

describe('PeakEwma', () => {
  test('reports the default RTT until the first observation, which replaces it', () => {
    const e = new PeakEwma({ defaultRttMs: 5, tauMs: 1000 })
    expect(e.get(0)).toBe(5)
    expect(e.get(1e9)).toBe(5) // no decay without an observation
    expect(e.hasObservations).toBe(false)
    e.observe(0.5, 100)
    expect(e.get(100)).toBe(0.5)
    expect(e.hasObservations).toBe(true)
  })

  test('jumps to a higher sample at once (peak)', () => {
    const e = new PeakEwma({ tauMs: 10_000 })
    e.observe(1, 0)
    e.observe(50, 1)
    expect(e.get(1)).toBe(50)
  })

  test('moves toward a lower sample with weight 1 - exp(-elapsed / tau)', () => {
    const e = new PeakEwma({ tauMs: 10_000 })
    e.observe(10, 0)
    e.observe(2, 10_000) // elapsed = tau: w = 1/e
    const w = Math.exp(-1)
    expect(e.get(10_000)).toBeCloseTo(10 * w + 2 * (1 - w), 12)
    e.observe(2, 10_000) // no time elapsed: no movement
    expect(e.get(10_000)).toBeCloseTo(10 * w + 2 * (1 - w), 12)
  })

  test('get decays toward 0 while idle, without side effects', () => {
    const e = new PeakEwma({ tauMs: 1000 })
    e.observe(8, 0)
    expect(e.get(1000)).toBeCloseTo(8 * Math.exp(-1), 12)
    expect(e.get(2000)).toBeCloseTo(8 * Math.exp(-2), 12)
    expect(e.get(0)).toBe(8) // reading did not change the state
  })

  test('clock going backwards and bad samples are harmless', () => {
    const e = new PeakEwma({ tauMs: 1000 })
    e.observe(4, 1000)
    expect(e.get(500)).toBe(4) // elapsed clamped at 0
    e.observe(1, 500)
    expect(e.get(500)).toBe(4)
    e.observe(Number.NaN, 2000)
    e.observe(-3, 2000)
    expect(e.get(1000)).toBe(4)
  })

  test('rejects nonsense options', () => {
    expect(() => new PeakEwma({ tauMs: 0 })).toThrow(RangeError)
    expect(() => new PeakEwma({ defaultRttMs: -1 })).toThrow(RangeError)
  })
})

describe('LoadTracker', () => {
  test('counts in-flight requests and feeds RTTs; NaN releases without a sample', () => {
    const t = new LoadTracker({ defaultRttMs: 1 })
    t.start()
    t.start()
    expect(t.inflight).toBe(2)
    t.finish(3, 10)
    expect(t.inflight).toBe(1)
    expect(t.latency.get(10)).toBe(3)
    t.finish(Number.NaN, 20)
    expect(t.inflight).toBe(0)
    expect(t.latency.get(10)).toBe(3)
    t.finish(1, 30) // an unmatched finish never goes negative
    expect(t.inflight).toBe(0)
  })
})

describe('least-request (P2C over peak-EWMA cost)', () => {
  const pickMany = (b: Balancer, list: readonly Candidate[], n: number, seed: number): Map<string, number> => {
    const rng = createPrng(seed)
    const counts = new Map<string, number>()
    for (let i = 0; i < n; i++) {
      const id = b.pick(list, { clientId: null, random: rng.next })!.id
      counts.set(id, (counts.get(id) ?? 0) + 1)
    }
    return counts
  }

  test('cost = latency x (in-flight + 1) / weight', () => {
    expect(cost(candidate('a', 2, fixedLoad(3, 5)), 0)).toBe(10)
    expect(cost(candidate('a', 2, fixedLoad(3, 5)), 0, false)).toBe(20)
  })

  test('of two candidates it always takes the cheaper, whatever the random draw', () => {
    const b = new LeastRequestBalancer({ now: () => 0 })
    const list = [candidate('slow', 1, fixedLoad(0, 2)), candidate('fast', 1, fixedLoad(0, 1))]
    expect(pickMany(b, list, 1000, 41).get('fast')).toBe(1000)
  })

  test('an endpoint whose EWMA latency is 10x the others gets far less traffic (< 10%, 3 endpoints)', () => {
    let now = 0
    const b = new LeastRequestBalancer({ now: () => now })
    const list = [trackedCandidate('fast-1'), trackedCandidate('fast-2'), trackedCandidate('slow')]
    for (let t = 0; t < 100; t++) {
      now = t
      list[0]!.load.latency.observe(1, now)
      list[1]!.load.latency.observe(1, now)
      list[2]!.load.latency.observe(10, now)
    }
    const counts = pickMany(b, list, 30_000, 42)
    expect((counts.get('slow') ?? 0) / 30_000).toBeLessThan(0.1)
    expect(Math.abs(counts.get('fast-1')! - counts.get('fast-2')!) / 30_000).toBeLessThan(0.02)
  })

  test('an endpoint with many more requests in flight gets far less traffic', () => {
    const b = new LeastRequestBalancer({ now: () => 0 })
    const list = [candidate('a', 1, fixedLoad(1, 1)), candidate('busy', 1, fixedLoad(20, 1)), candidate('b', 1, fixedLoad(0, 1))]
    const counts = pickMany(b, list, 30_000, 43)
    expect((counts.get('busy') ?? 0) / 30_000).toBeLessThan(0.1)
  })

  test('a weight-2 candidate wins against an equally loaded weight-1 one', () => {
    const b = new LeastRequestBalancer({ now: () => 0 })
    const list = [candidate('w1', 1, fixedLoad(2, 1)), candidate('w2', 2, fixedLoad(2, 1))]
    expect(pickMany(b, list, 1000, 44).get('w2')).toBe(1000)
  })

  test('a slow endpoint that got no traffic is probed again once its estimate has decayed', () => {
    let now = 0
    const b = new LeastRequestBalancer({ now: () => now })
    const list = [trackedCandidate('f1'), trackedCandidate('f2'), trackedCandidate('slow')]
    list[2]!.load.latency.observe(100, 0)
    const rng = createPrng(45)
    let slowAt = -1
    for (let i = 0; i < 200_000 && slowAt < 0; i++) {
      now = i // 1 ms per request; the fast ones keep reporting 1 ms
      list[0]!.load.latency.observe(1, now)
      list[1]!.load.latency.observe(1, now)
      if (b.pick(list, { clientId: null, random: rng.next })!.id === 'slow') slowAt = now
    }
    // 100 ms x e^(-t / 10 s) < 1 ms after ~46 s.
    expect(slowAt).toBeGreaterThan(40_000)
    expect(slowAt).toBeLessThan(60_000)
  })

  test('reads the injected clock once per pick', () => {
    let calls = 0
    const b = new LeastRequestBalancer({
      now: () => {
        calls++
        return 0
      },
    })
    const list = [candidate('a'), candidate('b'), candidate('c')]
    for (let i = 0; i < 10; i++) b.pick(list, { clientId: null, random: Math.random })
    expect(calls).toBe(10)
  })

  describe('simulation: single-threaded FIFO servers, Poisson arrivals, fake clock', () => {
    interface Done {
      readonly at: number
      readonly sentAt: number
      readonly c: ReturnType<typeof trackedCandidate>
    }

    /** A min-heap of completions by time. */
    class Heap {
      private a: Done[] = []
      get size(): number {
        return this.a.length
      }
      peek(): Done | undefined {
        return this.a[0]
      }
      push(d: Done): void {
        const a = this.a
        a.push(d)
        for (let i = a.length - 1; i > 0; ) {
          const p = (i - 1) >> 1
          if (a[p]!.at <= a[i]!.at) break
          ;[a[p], a[i]] = [a[i]!, a[p]!]
          i = p
        }
      }
      pop(): Done {
        const a = this.a
        const top = a[0]!
        const last = a.pop()!
        if (a.length > 0) {
          a[0] = last
          for (let i = 0; ; ) {
            const l = 2 * i + 1
            const r = l + 1
            let m = i
            if (l < a.length && a[l]!.at < a[m]!.at) m = l
            if (r < a.length && a[r]!.at < a[m]!.at) m = r
            if (m === i) break
            ;[a[m], a[i]] = [a[i]!, a[m]!]
            i = m
          }
        }
        return top
      }
    }

    function simulate(make: (now: () => number) => Balancer, serviceMs: Record<string, number>, seed: number) {
      const rng = createPrng(seed)
      let now = 0
      const b = make(() => now)
      const list = Object.keys(serviceMs).map((id) => trackedCandidate(id))
      const freeAt = new Map<string, number>()
      const heap = new Heap()
      const counts = new Map<string, number>()
      let latencySum = 0
      const N = 50_000
      for (let i = 0; i < N; i++) {
        now += rng.exp(1) // 1000 requests/s
        while (heap.size > 0 && heap.peek()!.at <= now) {
          const d = heap.pop()
          d.c.load.finish(d.at - d.sentAt, d.at)
          latencySum += d.at - d.sentAt
        }
        const c = b.pick(list, { clientId: null, random: rng.next }) as ReturnType<typeof trackedCandidate>
        c.load.start()
        const done = Math.max(now, freeAt.get(c.id) ?? 0) + rng.exp(serviceMs[c.id]!)
        freeAt.set(c.id, done)
        heap.push({ at: done, sentAt: now, c })
        counts.set(c.id, (counts.get(c.id) ?? 0) + 1)
      }
      while (heap.size > 0) latencySum += heap.peek()!.at - heap.pop().sentAt
      return { share: (id: string) => (counts.get(id) ?? 0) / N, meanLatencyMs: latencySum / N }
    }

    test('a 10x slower endpoint (10 ms vs 1 ms service) gets < 10% of the traffic', () => {
      const service = { 'fast-1': 1, 'fast-2': 1, slow: 10 }
      const lr = simulate((now) => new LeastRequestBalancer({ now }), service, 46)
      const random = simulate(() => new RandomBalancer(), service, 46)
      expect(lr.share('slow')).toBeLessThan(0.1)
      expect(random.share('slow')).toBeGreaterThan(0.3) // the baseline it improves on
      expect(lr.meanLatencyMs).toBeLessThan(random.meanLatencyMs / 10)
    })

    test('equal endpoints share evenly (no endpoint is starved by the cost function)', () => {
      const sim = simulate((now) => new LeastRequestBalancer({ now }), { a: 1, b: 1, c: 1 }, 47)
      for (const id of ['a', 'b', 'c']) expect(Math.abs(sim.share(id) - 1 / 3)).toBeLessThan(0.03)
    })
  })
})
