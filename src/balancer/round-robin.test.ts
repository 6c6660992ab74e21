// Round-robin: strict rotation on a stable list, and a rotation that survives the eligible set
// changing between picks (removals, additions, interleaved different lists).

import { describe, expect, test } from 'vitest'
import { createPrng } from './prng.js'
import { RoundRobinBalancer } from './round-robin.js'
import { candidate } from './testing.js'
import type { Candidate } from './types.js'

const ctx = (seed = 1) => ({ clientId: null, random: createPrng(seed).next })

function picks(b: RoundRobinBalancer, list: readonly Candidate[], n: number, seed = 1): string[] {
  const c = ctx(seed)
  return Array.from({ length: n }, () => b.pick(list, c)!.id)
}

describe('round-robin', () => {
  test('a stable list rotates strictly: every window of n picks has each candidate once', () => {
    const list = ['a', 'b', 'c', 'd', 'e'].map((id) => candidate(id))
    const seq = picks(new RoundRobinBalancer(), list, 500)
    for (let i = 0; i + 5 <= seq.length; i++) expect(new Set(seq.slice(i, i + 5)).size).toBe(5)
  })

  test('weight is a gate only: 0 is skipped, magnitudes are ignored', () => {
    const list = [candidate('a', 1), candidate('z', 0), candidate('b', 10_000)]
    const seq = picks(new RoundRobinBalancer(), list, 1000)
    expect(seq.filter((x) => x === 'a').length).toBe(500)
    expect(seq.filter((x) => x === 'b').length).toBe(500)
  })

  test('removing the last pick continues the rotation over the others, without repeats', () => {
    const b = new RoundRobinBalancer()
    const c = ctx()
    const list = ['a', 'b', 'c', 'd'].map((id) => candidate(id))
    const first = [b.pick(list, c)!.id, b.pick(list, c)!.id]
    const rest = list.filter((x) => x.id !== first[1])
    const after = Array.from({ length: 6 }, () => b.pick(rest, c)!.id)
    expect(after).not.toContain(first[1])
    expect(new Set(after.slice(0, 3)).size).toBe(3)
    expect(after.slice(3)).toEqual(after.slice(0, 3))
  })

  test('an added candidate is served next, then joins the rotation', () => {
    const b = new RoundRobinBalancer()
    const c = ctx()
    const list = ['a', 'b', 'c'].map((id) => candidate(id))
    picks(b, list, 7)
    const grown = [...list, candidate('new')]
    expect(b.pick(grown, c)!.id).toBe('new')
    const seq = Array.from({ length: 40 }, () => b.pick(grown, c)!.id)
    for (let i = 0; i + 4 <= seq.length; i++) expect(new Set(seq.slice(i, i + 4)).size).toBe(4)
  })

  test('reads over [primary, r1, r2] interleaved with writes over [primary] still reach every replica', () => {
    const b = new RoundRobinBalancer()
    const c = ctx()
    const p = candidate('primary')
    const reads = [p, candidate('r1'), candidate('r2')]
    const counts = new Map<string, number>()
    for (let i = 0; i < 3000; i++) {
      b.pick([p], c)
      const id = b.pick(reads, c)!.id
      counts.set(id, (counts.get(id) ?? 0) + 1)
    }
    expect([...counts.values()]).toEqual([1000, 1000, 1000])
  })

  test('two overlapping lists interleaved: nobody starves, shared members are not double-served', () => {
    const b = new RoundRobinBalancer()
    const c = ctx()
    const [x, y, z, w] = ['x', 'y', 'z', 'w'].map((id) => candidate(id))
    const counts = new Map<string, number>()
    for (let i = 0; i < 4000; i++) {
      for (const list of [[x!, y!, z!], [y!, z!, w!]]) {
        const id = b.pick(list, c)!.id
        counts.set(id, (counts.get(id) ?? 0) + 1)
      }
    }
    for (const id of ['x', 'y', 'z', 'w']) expect(counts.get(id)!).toBeGreaterThan(8000 / 4 * 0.6)
  })

  test('the first pick starts at a random position (no startup herd across gateway processes)', () => {
    const list = ['a', 'b', 'c', 'd'].map((id) => candidate(id))
    const firsts = new Set(Array.from({ length: 40 }, (_, seed) => picks(new RoundRobinBalancer(), list, 1, seed)[0]))
    expect(firsts.size).toBe(4)
  })
})
