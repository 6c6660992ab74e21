// The ejection cap: how many replicas may be out, and which ones stay out when more breakers are
// open than the cap allows (the earliest tripped, ties by id).

import { describe, expect, test } from 'vitest'
import { CircuitBreaker } from './breaker.js'
import { applyEjectionCap, maxEjectable, type EjectionCandidate } from './outlier.js'

const ep = (id: string, breakerOpen: boolean, trippedAt?: number): EjectionCandidate => ({ id, breakerOpen, trippedAt })

describe('maxEjectable', () => {
  test('floor(total x pct / 100), default 50%', () => {
    expect(maxEjectable(0)).toBe(0)
    expect(maxEjectable(1)).toBe(0) // a lone replica is never ejected at 50%
    expect(maxEjectable(2)).toBe(1)
    expect(maxEjectable(3)).toBe(1)
    expect(maxEjectable(4)).toBe(2)
    expect(maxEjectable(5)).toBe(2)
    expect(maxEjectable(10, 10)).toBe(1)
    expect(maxEjectable(10, 100)).toBe(10)
    expect(maxEjectable(10, 0)).toBe(0)
  })

  test('exact for integer percentages despite floating point', () => {
    expect(maxEjectable(100, 29)).toBe(29) // 0.29 * 100 would be 28.999999999999996
    expect(maxEjectable(100, 7)).toBe(7)
    expect(maxEjectable(3, 100 / 3)).toBe(1) // one third of three
    expect(maxEjectable(3, 33)).toBe(0)
  })

  test('out-of-range inputs are clamped', () => {
    expect(maxEjectable(4, 150)).toBe(4)
    expect(maxEjectable(4, -10)).toBe(0)
    expect(maxEjectable(4, Number.NaN)).toBe(0)
    expect(maxEjectable(-3)).toBe(0)
    expect(maxEjectable(Number.NaN)).toBe(0)
  })
})

describe('applyEjectionCap', () => {
  test('no replicas: nothing to eject', () => {
    expect(applyEjectionCap([], 50)).toEqual(new Set())
  })

  test('1 of 2 replicas open: ejected', () => {
    expect(applyEjectionCap([ep('a', false), ep('b', true, 5)])).toEqual(new Set(['b']))
  })

  test('2 of 2 open at 50%: only the one that tripped first stays ejected', () => {
    expect(applyEjectionCap([ep('a', true, 20), ep('b', true, 10)], 50)).toEqual(new Set(['b']))
  })

  test('3 of 4 open at 50%: the two earliest tripped are ejected, the third serves', () => {
    const set = applyEjectionCap([ep('a', true, 300), ep('b', true, 100), ep('c', false), ep('d', true, 200)], 50)
    expect(set).toEqual(new Set(['b', 'd']))
  })

  test('under the cap, every open breaker is ejected', () => {
    expect(applyEjectionCap([ep('a', true), ep('b', true), ep('c', false), ep('d', false)], 50)).toEqual(
      new Set(['a', 'b']),
    )
  })

  test('a lone replica is never ejected at 50%', () => {
    expect(applyEjectionCap([ep('a', true, 1)], 50)).toEqual(new Set())
  })

  test('ties by id; unknown trip times sort last', () => {
    expect(applyEjectionCap([ep('z', true, 5), ep('y', true, 5), ep('x', false), ep('w', false)], 25)).toEqual(
      new Set(['y']),
    )
    expect(applyEjectionCap([ep('a', true), ep('b', true, 99), ep('c', false), ep('d', false)], 25)).toEqual(
      new Set(['b']),
    )
  })

  test('the ejected set is stable when another breaker opens later', () => {
    const before = applyEjectionCap([ep('a', true, 10), ep('b', false), ep('c', false), ep('d', false)], 25)
    const after = applyEjectionCap([ep('a', true, 10), ep('b', true, 50), ep('c', false), ep('d', false)], 25)
    expect(before).toEqual(new Set(['a']))
    expect(after).toEqual(new Set(['a']))
  })

  test('does not reorder the caller\'s list', () => {
    const list = [ep('b', true, 2), ep('a', true, 1), ep('c', true, 3), ep('d', false)]
    const copy = list.map((e) => e.id)
    applyEjectionCap(list, 50)
    expect(list.map((e) => e.id)).toEqual(copy)
  })

  test('fed from real breakers via trippedAt', () => {
    let t = 1000
    const clock = (): number => t
    const bs = ['r1', 'r2', 'r3', 'r4'].map((id) => ({ id, b: new CircuitBreaker({}, clock) }))
    for (const x of [bs[2]!, bs[0]!, bs[1]!]) {
      for (let i = 0; i < 5; i++) x.b.onFailure(false)
      t += 10
    }
    const set = applyEjectionCap(
      bs.map((x) => ({ id: x.id, breakerOpen: x.b.state.kind === 'open', trippedAt: x.b.trippedAt })),
      50,
    )
    expect(set).toEqual(new Set(['r3', 'r1']))
  })
})
