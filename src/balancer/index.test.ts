// The factory: every strategy name maps to its balancer, groups reuse them, options pass through.

import { describe, expect, test } from 'vitest'
import {
  createBalancer,
  createGroupBalancer,
  DEFAULTS,
  LeastRequestBalancer,
  MaglevBalancer,
  RandomBalancer,
  RoundRobinBalancer,
  WeightedBalancer,
} from './index.js'
import { candidate } from './testing.js'

describe('createBalancer', () => {
  test('maps every endpoint strategy', () => {
    expect(createBalancer('least-request')).toBeInstanceOf(LeastRequestBalancer)
    expect(createBalancer('round-robin')).toBeInstanceOf(RoundRobinBalancer)
    expect(createBalancer('random')).toBeInstanceOf(RandomBalancer)
    expect(createBalancer('weighted')).toBeInstanceOf(WeightedBalancer)
    expect(createBalancer('maglev')).toBeInstanceOf(MaglevBalancer)
    expect(createBalancer(DEFAULTS.strategy)).toBeInstanceOf(LeastRequestBalancer)
  })

  test('maps every group strategy; sticky is maglev', () => {
    expect(createGroupBalancer('sticky')).toBeInstanceOf(MaglevBalancer)
    expect(createGroupBalancer('weighted')).toBeInstanceOf(WeightedBalancer)
    expect(createGroupBalancer('round-robin')).toBeInstanceOf(RoundRobinBalancer)
    expect(createGroupBalancer('least-request')).toBeInstanceOf(LeastRequestBalancer)
    expect(createGroupBalancer(DEFAULTS.groupStrategy)).toBeInstanceOf(WeightedBalancer)
  })

  test('passes options through: clock, table size', () => {
    let calls = 0
    const lr = createBalancer('least-request', { now: () => ++calls })
    lr.pick([candidate('a'), candidate('b')], { clientId: null, random: () => 0.3 })
    expect(calls).toBe(1)
    expect(() => createBalancer('maglev', { maglevTableSize: 100 })).toThrow(RangeError)
  })

  test('constructors do no work: the maglev table is built on first use', () => {
    const b = createBalancer('maglev') as MaglevBalancer
    expect(b.tableBuilds).toBe(0)
    b.pick([candidate('a'), candidate('b')], { clientId: 'x', random: () => 0 })
    expect(b.tableBuilds).toBe(1)
  })
})
