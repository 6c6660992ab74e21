// The one contract every balancing strategy must meet (the pattern of hono's
// router/common.case.test.ts): the same cases, run against all five strategies.
//
// Weight-0 rule under test (see index.ts): while any candidate has weight > 0, a weight-0
// candidate is never picked; when all weights are 0, every candidate is still pickable.

import { describe, expect, test } from 'vitest'
import { createBalancer, type BalancerOptions } from './index.js'
import { createPrng, type Prng } from './prng.js'
import { candidate, fixedLoad } from './testing.js'
import type { Balancer, Candidate, PickContext, Strategy } from './types.js'

// A small prime table keeps maglev rebuilds cheap across thousands of membership changes.
const make = (s: Strategy, opts: BalancerOptions = {}) => (): Balancer =>
  createBalancer(s, { now: () => 0, maglevTableSize: 1009, ...opts })

const STRATEGIES: readonly (readonly [string, () => Balancer])[] = [
  ['least-request', make('least-request')],
  ['round-robin', make('round-robin')],
  ['random', make('random')],
  ['weighted', make('weighted')],
  ['maglev', make('maglev')],
  ['maglev (rendezvous fill)', make('maglev', { maglevFill: 'rendezvous' })],
]

const POOL = Array.from({ length: 12 }, (_, i) => `10.1.0.${i + 1}:6379`)

/** A random eligible list: 1..8 distinct ids from POOL, in random order, random weights. */
function randomList(rng: Prng, { zeros = true, fresh = true } = {}): Candidate[] {
  const size = 1 + rng.int(8)
  const pool = [...POOL]
  const out: Candidate[] = []
  for (let i = 0; i < size; i++) {
    const id = pool.splice(rng.int(pool.length), 1)[0]!
    const weight = zeros && rng.next() < 0.25 ? 0 : 1 + rng.int(rng.next() < 0.5 ? 10 : 10_000)
    out.push(fresh ? candidate(id, weight, fixedLoad(rng.int(4), 0.5 + rng.next())) : candidate(id, weight))
  }
  return out
}

function randomContext(rng: Prng): PickContext {
  return { clientId: rng.next() < 0.2 ? null : `client-${rng.int(500)}`, random: rng.next }
}

describe.each(STRATEGIES)('balancer contract: %s', (_name, newBalancer) => {
  test('returns null for an empty list, with or without a client id', () => {
    const b = newBalancer()
    const rng = createPrng(1)
    expect(b.pick([], { clientId: null, random: rng.next })).toBeNull()
    expect(b.pick([], { clientId: 'c1', random: rng.next })).toBeNull()
    // ...also after it has state from an earlier, non-empty list.
    b.pick([candidate('a:1'), candidate('b:1')], { clientId: 'c1', random: rng.next })
    expect(b.pick([], { clientId: 'c1', random: rng.next })).toBeNull()
  })

  test('returns the only candidate, whatever its weight', () => {
    const b = newBalancer()
    const rng = createPrng(2)
    for (const weight of [0, 1, 100, 10_000]) {
      const only = candidate(`only-${weight}:6379`, weight)
      for (let i = 0; i < 20; i++) expect(b.pick([only], randomContext(rng))).toBe(only)
    }
  })

  test('only ever returns an element of the list it was given, honouring the weight-0 rule', () => {
    const b = newBalancer()
    const rng = createPrng(3)
    for (let round = 0; round < 400; round++) {
      const list = randomList(rng)
      const anyPositive = list.some((c) => c.weight > 0)
      for (let i = 0; i < 10; i++) {
        const got = b.pick(list, randomContext(rng))
        expect(got).not.toBeNull()
        expect(list.includes(got!)).toBe(true) // identity: never a stale object from an earlier list
        if (anyPositive) expect(got!.weight).toBeGreaterThan(0)
      }
    }
  })

  test('is deterministic for a given random source', () => {
    const run = (): string[] => {
      const b = newBalancer()
      const rng = createPrng(4)
      const out: string[] = []
      for (let round = 0; round < 100; round++) {
        const list = randomList(rng)
        for (let i = 0; i < 10; i++) out.push(b.pick(list, randomContext(rng))!.id)
      }
      return out
    }
    expect(run()).toEqual(run())
  })

  test('removing the last pick and adding new candidates never yields a stale or foreign id', () => {
    const b = newBalancer()
    const rng = createPrng(5)
    let list = [candidate('a:1', 3), candidate('b:1', 2), candidate('c:1', 1)]
    let next = 0
    for (let step = 0; step < 300; step++) {
      const ctx = randomContext(rng)
      const got = b.pick(list, ctx)!
      expect(list.includes(got)).toBe(true)
      // Remove what was just picked, add one or two new ids, sometimes re-create objects and reorder.
      list = list.filter((c) => c !== got)
      for (let k = rng.int(2) + (list.length === 0 ? 1 : 0); k >= 0; k--) list.push(candidate(`n${next++}:1`, 1 + rng.int(5)))
      if (rng.next() < 0.3) list = list.map((c) => candidate(c.id, c.weight)).reverse()
      while (list.length > 6) list.shift()
      const again = b.pick(list, ctx)!
      expect(list.includes(again)).toBe(true)
      expect(again.id).not.toBe(got.id)
    }
  })

  test('weight 0 takes traffic only when every candidate has weight 0', () => {
    const b = newBalancer()
    const rng = createPrng(6)
    const mixed = [candidate('z1:1', 0), candidate('p1:1', 5), candidate('z2:1', 0), candidate('p2:1', 1)]
    const allZero = [candidate('z1:1', 0), candidate('z2:1', 0), candidate('z3:1', 0)]
    const seen = new Set<string>()
    for (let i = 0; i < 2000; i++) {
      expect(b.pick(mixed, randomContext(rng))!.weight).toBeGreaterThan(0)
      seen.add(b.pick(allZero, randomContext(rng))!.id)
    }
    expect([...seen].sort()).toEqual(['z1:1', 'z2:1', 'z3:1'])
  })

  // Equal weights and equal load: least-request, by design, never picks the costliest of three or
  // more candidates while costs stay frozen (in service they move with every request).
  test('no candidate that takes traffic starves', () => {
    const b = newBalancer()
    const rng = createPrng(7)
    const list = [candidate('a:1', 5), candidate('b:1', 5), candidate('c:1', 5), candidate('d:1', 0)]
    const seen = new Set<string>()
    for (let i = 0; i < 3000; i++) seen.add(b.pick(list, randomContext(rng))!.id)
    expect([...seen].sort()).toEqual(['a:1', 'b:1', 'c:1'])
  })

  test('uses only the injected random source (never Math.random)', () => {
    const original = Math.random
    Math.random = () => {
      throw new Error('Math.random called')
    }
    try {
      const b = newBalancer()
      const rng = createPrng(8)
      for (let i = 0; i < 200; i++) b.pick(randomList(rng), randomContext(rng))
    } finally {
      Math.random = original
    }
  })
})
