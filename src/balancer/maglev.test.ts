// Maglev properties over 10k client ids, for the paper's greedy fill and the rendezvous fill.
// What holds, precisely:
//   both fills  - every client of a removed backend moves; about 1/N of all clients move
//                 (1/N +- sampling noise); about 1/(N+1) move when one joins; the table is the
//                 same in every process for the same membership; shares follow weights.
//   maglev      - slot shares are exact to 0.1%; but survivors' clients are not perfectly still:
//                 under 1% of them move on a removal, and under 0.5% of all clients shift
//                 between old backends on an addition (greedy fill cascades).
//   rendezvous  - strictly minimal: on an addition every moved client moved TO the newcomer,
//                 on a removal no survivor's client moves; shares are statistical (binomial).

import { describe, expect, test } from 'vitest'
import { buildMaglevTable, buildRendezvousTable, MaglevBalancer, maglevSlot, type MaglevFill } from './maglev.js'
import { createPrng } from './prng.js'
import { candidate, ids } from './testing.js'
import type { Candidate } from './types.js'

const M = 65537
const CLIENTS = Array.from({ length: 10_000 }, (_, i) => `client-${i}`)
const FILLS: readonly MaglevFill[] = ['maglev', 'rendezvous']

/** Where each client goes, with a fresh balancer (as a fresh gateway process would). */
function assign(list: readonly Candidate[], fill: MaglevFill): string[] {
  const b = new MaglevBalancer({ fill })
  const ctx = { clientId: '', random: () => 0 }
  return CLIENTS.map((c) => {
    ctx.clientId = c
    return b.pick(list, ctx)!.id
  })
}

function shares(assigned: readonly string[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const id of assigned) m.set(id, (m.get(id) ?? 0) + 1 / assigned.length)
  return m
}

describe('maglev table', () => {
  test.each(FILLS)('%s: fills every slot, only with backends of weight > 0', (fill) => {
    const build = fill === 'maglev' ? buildMaglevTable : buildRendezvousTable
    const t = build([candidate('b:1', 3), candidate('a:1', 0), candidate('c:1', 1)], 1009)!
    expect(t.backends).toEqual(['b:1', 'c:1'])
    expect(t.entries.length).toBe(1009)
    for (const e of t.entries) expect(e === 0 || e === 1).toBe(true)
    expect(build([], 1009)).toBeNull()
  })

  test('maglev fill: slot shares equal the weights to 0.1%', () => {
    const rng = createPrng(11)
    const vectors = [[1, 1, 1], [1, 2, 3], [100, 100, 10], [5, 0, 5], ...Array.from({ length: 5 }, () => Array.from({ length: 2 + rng.int(20) }, () => 1 + rng.int(10_000)))]
    for (const weights of vectors) {
      const t = buildMaglevTable(weights.map((w, i) => candidate(`h${i}:6379`, w)), M)!
      const total = weights.reduce((a, b) => a + b, 0)
      const count = new Map<string, number>()
      for (const e of t.entries) count.set(t.backends[e]!, (count.get(t.backends[e]!) ?? 0) + 1)
      weights.forEach((w, i) => {
        const expected = (M * w) / total
        const got = count.get(`h${i}:6379`) ?? 0
        expect(Math.abs(got - expected)).toBeLessThanOrEqual(Math.max(0.001 * expected, 2))
      })
    }
  })

  test('rejects a table size that is not a prime', () => {
    expect(() => new MaglevBalancer({ tableSize: 65536 })).toThrow(RangeError)
    expect(() => buildMaglevTable([candidate('a:1')], 1000)).toThrow(RangeError)
    expect(() => new MaglevBalancer({ tableSize: 65537 })).not.toThrow()
  })

  test('golden picks: a change here remaps sticky clients across a rolling upgrade', () => {
    const list = [candidate('10.0.0.1:6379', 100), candidate('10.0.0.2:6379', 100), candidate('10.0.0.3:6379', 50)]
    const names = ['alice', 'bob', 'carol', 'dave', 'eve', 'frank', 'grace', 'heidi', 'ivan', 'judy']
    const pick = (fill: MaglevFill): string[] => {
      const b = new MaglevBalancer({ fill })
      return names.map((n) => b.pick(list, { clientId: n, random: () => 0 })!.id.slice(7, 8))
    }
    expect(pick('maglev').join('')).toBe('2222332333')
    expect(pick('rendezvous').join('')).toBe('2212311232')
    expect(maglevSlot('alice', M)).toBe(maglevSlot('alice', M))
  })
})

describe.each(FILLS)('maglev balancer (%s fill)', (fill) => {
  test('the same client always gets the same endpoint, whatever the random source', () => {
    const b = new MaglevBalancer({ fill })
    const list = ids(5).map((id) => candidate(id))
    const rng = createPrng(12)
    const first = new Map<string, string>()
    for (let i = 0; i < 20_000; i++) {
      const client = CLIENTS[rng.int(500)]!
      const got = b.pick(list, { clientId: client, random: rng.next })!.id
      if (!first.has(client)) first.set(client, got)
      expect(got).toBe(first.get(client))
    }
  })

  test('process independence: separate instances, shuffled lists, fresh objects -> same choices', () => {
    const rng = createPrng(13)
    const a = ids(7).map((id, i) => candidate(id, 1 + i * 10))
    const b = [...a].reverse().map((c) => candidate(`${c.id}`, c.weight))
    for (let i = b.length - 1; i > 0; i--) {
      const j = rng.int(i + 1)
      ;[b[i], b[j]] = [b[j]!, b[i]!]
    }
    expect(assign(b, fill)).toEqual(assign(a, fill))
    const build = fill === 'maglev' ? buildMaglevTable : buildRendezvousTable
    expect(build(b, M)!.entries).toEqual(build(a, M)!.entries)
  })

  test.each([3, 5, 10, 20])('one of %i endpoints leaves: its clients move, about 1/N move in all', (n) => {
    const list = ids(n).map((id) => candidate(id))
    const before = assign(list, fill)
    for (const removed of [0, n - 1, Math.floor(n / 2)]) {
      const gone = list[removed]!.id
      const after = assign(list.filter((_, i) => i !== removed), fill)
      let moved = 0
      let survivors = 0
      let survivorsMoved = 0
      for (let k = 0; k < CLIENTS.length; k++) {
        if (before[k] !== after[k]) moved++
        if (before[k] === gone) expect(after[k]).not.toBe(gone)
        else {
          survivors++
          if (after[k] !== before[k]) survivorsMoved++
        }
      }
      expect(moved / CLIENTS.length).toBeLessThanOrEqual(1 / n + 0.025)
      if (fill === 'rendezvous') expect(survivorsMoved).toBe(0)
      else expect(survivorsMoved / survivors).toBeLessThan(0.01)
    }
  })

  test.each([3, 5, 10, 20])('an unrelated endpoint joins %i: about 1/(N+1) move, to the newcomer', (n) => {
    const list = ids(n).map((id) => candidate(id))
    const before = assign(list, fill)
    const newcomer = '10.9.9.9:6379'
    const after = assign([...list, candidate(newcomer)], fill)
    let moved = 0
    let movedElsewhere = 0
    for (let k = 0; k < CLIENTS.length; k++) {
      if (before[k] === after[k]) continue
      moved++
      if (after[k] !== newcomer) movedElsewhere++
    }
    expect(moved / CLIENTS.length).toBeLessThanOrEqual(1 / (n + 1) + 0.025)
    expect(moved / CLIENTS.length).toBeGreaterThanOrEqual(1 / (n + 1) - 0.025)
    if (fill === 'rendezvous') expect(movedElsewhere).toBe(0) // none move between the old members
    else expect(movedElsewhere / CLIENTS.length).toBeLessThan(0.005) // Maglev: a few cascade
  })

  test('raising one weight (a canary ramp) moves clients only onto that endpoint', () => {
    const list = [candidate('main-a', 100), candidate('main-b', 100), candidate('canary', 10)]
    const before = assign(list, fill)
    const after = assign([list[0]!, list[1]!, candidate('canary', 50)], fill)
    let elsewhere = 0
    for (let k = 0; k < CLIENTS.length; k++) if (before[k] !== after[k] && after[k] !== 'canary') elsewhere++
    if (fill === 'rendezvous') expect(elsewhere).toBe(0)
    else expect(elsewhere / CLIENTS.length).toBeLessThan(0.01)
    expect(shares(after).get('canary')!).toBeGreaterThan(shares(before).get('canary')!)
  })

  test('client shares follow the weights', () => {
    const rng = createPrng(14)
    for (let round = 0; round < 5; round++) {
      const weights = Array.from({ length: 2 + rng.int(5) }, () => rng.int(10_001))
      if (!weights.some((w) => w > 0)) weights[0] = 1
      const list = weights.map((w, i) => candidate(`10.2.0.${i}:6379`, w))
      const got = shares(assign(list, fill))
      const total = weights.reduce((a, b) => a + b, 0)
      // 10k clients: sampling noise alone is ~0.5 percentage points (1 sigma at p = 0.5).
      list.forEach((c) => expect(Math.abs((got.get(c.id) ?? 0) - c.weight / total)).toBeLessThan(0.025))
      list.filter((c) => c.weight === 0).forEach((c) => expect(got.has(c.id)).toBe(false))
    }
  })

  test('rebuilds the table only when membership or weights change', () => {
    const b = new MaglevBalancer({ fill, tableSize: 4099 })
    const ctx = { clientId: 'c', random: () => 0.5 }
    const a = ids(4).map((id) => candidate(id, 10))
    b.pick(a, ctx)
    b.pick(a, ctx)
    expect(b.tableBuilds).toBe(1)
    b.pick([...a].reverse(), ctx) // reordered
    b.pick(a.map((c) => candidate(c.id, c.weight)), ctx) // fresh objects, same membership
    expect(b.tableBuilds).toBe(1)
    const smaller = a.slice(1)
    b.pick(smaller, ctx) // a member left
    expect(b.tableBuilds).toBe(2)
    b.pick(a, ctx) // ...and came back: the cached table is reused
    b.pick(smaller, ctx)
    expect(b.tableBuilds).toBe(2)
    b.pick([candidate(a[0]!.id, 11), ...a.slice(1)], ctx) // a weight changed
    expect(b.tableBuilds).toBe(3)
    b.pick([a[0]!], ctx) // a single candidate needs no table
    b.pick(a, { clientId: null, random: () => 0.5 }) // nor does a pick without a client id
    expect(b.tableBuilds).toBe(3)
  })

  test('without a client id: weighted random via ctx.random, weight 0 excluded', () => {
    const b = new MaglevBalancer({ fill, tableSize: 1009 })
    const rng = createPrng(15)
    const list = [candidate('a', 1), candidate('b', 3), candidate('z', 0), candidate('c', 6)]
    const count = new Map<string, number>()
    const N = 100_000
    for (let i = 0; i < N; i++) {
      const id = b.pick(list, { clientId: null, random: rng.next })!.id
      count.set(id, (count.get(id) ?? 0) + 1)
    }
    expect(count.has('z')).toBe(false)
    for (const [id, w] of [['a', 0.1], ['b', 0.3], ['c', 0.6]] as const) {
      expect(Math.abs(count.get(id)! / N - w)).toBeLessThan(0.01)
    }
  })
})
