// Smooth weighted round-robin: shares within 2% of the weights over 100k picks, exact at every
// prefix, and correct across candidate-set and weight changes.

import { describe, expect, test } from 'vitest'
import { createPrng, type Prng } from './prng.js'
import { candidate } from './testing.js'
import type { Candidate } from './types.js'
import { WeightedBalancer } from './weighted.js'

const CTX = { clientId: null, random: () => 0.5 }

function randomWeights(rng: Prng): number[] {
  const w = Array.from({ length: 2 + rng.int(8) }, () =>
    rng.next() < 0.2 ? 0 : 1 + rng.int(rng.next() < 0.5 ? 10 : 10_000),
  )
  if (!w.some((x) => x > 0)) w[0] = 1
  return w
}

/** Picks `n` times; returns counts by id and the largest |count - expected| seen at any prefix. */
function run(b: WeightedBalancer, list: readonly Candidate[], n: number): { counts: Map<string, number>; maxDrift: number } {
  const total = list.reduce((a, c) => a + c.weight, 0)
  const counts = new Map(list.map((c) => [c.id, 0]))
  let maxDrift = 0
  for (let t = 1; t <= n; t++) {
    const id = b.pick(list, CTX)!.id
    counts.set(id, counts.get(id)! + 1)
    for (const c of list) maxDrift = Math.max(maxDrift, Math.abs(counts.get(c.id)! - (t * c.weight) / total))
  }
  return { counts, maxDrift }
}

function expectShares(counts: Map<string, number>, list: readonly Candidate[], n: number): void {
  const total = list.reduce((a, c) => a + c.weight, 0)
  for (const c of list) {
    const expected = (n * c.weight) / total
    const got = counts.get(c.id) ?? 0
    if (c.weight === 0) expect(got).toBe(0)
    // Within 2% of the weight's share; tiny shares (expected < 100 picks) within 2 picks.
    else expect(Math.abs(got - expected)).toBeLessThanOrEqual(Math.max(0.02 * expected, 2))
  }
}

describe('weighted (smooth weighted round-robin)', () => {
  test("nginx's example: {a:5, b:1, c:1} -> a a b a c a a", () => {
    const b = new WeightedBalancer()
    const list = [candidate('a', 5), candidate('b', 1), candidate('c', 1)]
    const seq = Array.from({ length: 14 }, () => b.pick(list, CTX)!.id).join('')
    expect(seq).toBe('aabacaa'.repeat(2))
  })

  test('shares within 2% of the weights over 100k picks, for random weight vectors (0..10000)', () => {
    const rng = createPrng(21)
    for (let round = 0; round < 8; round++) {
      const list = randomWeights(rng).map((w, i) => candidate(`10.3.0.${i}:6379`, w))
      const { counts, maxDrift } = run(new WeightedBalancer(), list, 100_000)
      expectShares(counts, list, 100_000)
      expect(maxDrift).toBeLessThanOrEqual(list.length) // smooth: exact at every prefix, not just on average
    }
  })

  test('the candidate order does not matter, even when it changes on every pick', () => {
    const rng = createPrng(22)
    const list = [candidate('a', 1), candidate('b', 2), candidate('c', 7)]
    const b = new WeightedBalancer()
    const counts = new Map<string, number>()
    for (let i = 0; i < 100_000; i++) {
      const shuffled = [...list].sort(() => rng.next() - 0.5)
      const id = b.pick(shuffled, CTX)!.id
      counts.set(id, (counts.get(id) ?? 0) + 1)
    }
    expectShares(counts, list, 100_000)
  })

  test('state survives candidates leaving and returning; shares follow the current set', () => {
    const b = new WeightedBalancer()
    const a = candidate('a', 1)
    const bb = candidate('b', 2)
    const c = candidate('c', 3)
    run(b, [a, bb, c], 1_000)
    const without = run(b, [a, bb], 30_000)
    expectShares(without.counts, [a, bb], 30_000)
    const back = run(b, [a, bb, c], 60_000)
    expectShares(back.counts, [a, bb, c], 60_000)
    expect(back.maxDrift).toBeLessThanOrEqual(3 + 1) // clamped state: no long catch-up burst
  })

  test('a weight change (canary ramp 0 -> 100 -> 10000 -> 1) applies at once', () => {
    const b = new WeightedBalancer()
    const main = candidate('main', 1000)
    for (const w of [0, 100, 10_000, 1]) {
      const list = [main, candidate('canary', w)]
      const { counts, maxDrift } = run(b, list, 100_000)
      expectShares(counts, list, 100_000)
      expect(maxDrift).toBeLessThanOrEqual(2)
    }
  })

  test('forgets ids that are gone for good (pod churn does not grow its state)', () => {
    const b = new WeightedBalancer()
    for (let gen = 0; gen < 1_000; gen++) {
      b.pick([candidate(`pod-${gen}`, 1), candidate(`pod-${gen + 1}`, 1)], CTX)
    }
    // Internal, but the point of the test: bounded memory.
    expect((b as unknown as { byId: Map<string, unknown> }).byId.size).toBeLessThanOrEqual(2 * 2 + 16 + 1)
  })
})
