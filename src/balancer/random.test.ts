// Random: uniform among the candidates that take traffic, driven only by ctx.random.

import { describe, expect, test } from 'vitest'
import { createPrng } from './prng.js'
import { RandomBalancer } from './random.js'
import { candidate } from './testing.js'

describe('random', () => {
  test('uniform within 2% over 100k picks; weight 0 excluded; magnitudes ignored', () => {
    const rng = createPrng(31)
    const b = new RandomBalancer()
    const list = [candidate('a', 1), candidate('z', 0), candidate('b', 50), candidate('c', 10_000), candidate('d', 3)]
    const counts = new Map<string, number>()
    const N = 100_000
    for (let i = 0; i < N; i++) {
      const id = b.pick(list, { clientId: null, random: rng.next })!.id
      counts.set(id, (counts.get(id) ?? 0) + 1)
    }
    expect(counts.has('z')).toBe(false)
    for (const id of ['a', 'b', 'c', 'd']) expect(Math.abs(counts.get(id)! / N - 0.25)).toBeLessThan(0.25 * 0.02)
  })

  test('maps the random value onto the list in order, and survives a source that returns 1', () => {
    const b = new RandomBalancer()
    const list = [candidate('a'), candidate('z', 0), candidate('b'), candidate('c')]
    expect(b.pick(list, { clientId: null, random: () => 0 })!.id).toBe('a')
    expect(b.pick(list, { clientId: null, random: () => 0.5 })!.id).toBe('b')
    expect(b.pick(list, { clientId: null, random: () => 0.999 })!.id).toBe('c')
    expect(b.pick(list, { clientId: null, random: () => 1 })!.id).toBe('c')
  })
})
