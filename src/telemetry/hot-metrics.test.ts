// The hot counter and histogram print exactly what prom-client's own Counter and Histogram print
// for the same updates (line order aside), including label escaping, bucket edges, +Inf, _sum and
// _count; and non-finite observations are dropped rather than poisoning the sum.

import { Counter, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { HotCounter, HotHistogram } from './hot-metrics.js'
import { LATENCY_BUCKETS } from './metrics.js'
import { createPrng } from '../balancer/prng.js'

const sorted = async (r: Registry): Promise<string[]> => (await r.metrics()).split('\n').filter(Boolean).sort()

describe('HotCounter and HotHistogram', () => {
  it('print the same exposition as prom-client for the same updates', async () => {
    const ref = new Registry()
    const hot = new Registry()
    const labels5 = ['instance', 'group', 'class', 'outcome', 'code'] as const
    const labels3 = ['instance', 'class', 'outcome'] as const
    const refCounter = new Counter({ name: 'c_total', help: 'c', labelNames: labels5, registers: [ref] })
    const refHist = new Histogram({ name: 'h_seconds', help: 'h', labelNames: labels3, buckets: LATENCY_BUCKETS, registers: [ref] })
    const hotCounter = new HotCounter({ name: 'c_total', help: 'c', labelNames: labels5, registry: hot })
    const hotHist = new HotHistogram({ name: 'h_seconds', help: 'h', labelNames: labels3, buckets: LATENCY_BUCKETS, registry: hot })
    const prng = createPrng(7)
    const rand = prng.next
    const pick = <T>(xs: readonly T[]): T => prng.pick(xs)
    const instances = ['orders', 'cache-eu', 'we"ird\\name\n', '']
    for (let i = 0; i < 5_000; i++) {
      const l = { instance: pick(instances), group: pick(['', 'g1']), class: pick(['read', 'write']), outcome: pick(['success', 'client_error']), code: pick(['OK', 'REDIS']) }
      refCounter.inc(l)
      hotCounter.inc(l.instance, l.group, l.class, l.outcome, l.code)
      // Exactly on a bound, between bounds, below the first and above the last.
      const v = pick([0.00005, 0.0001, 0.0003, 0.001, 0.0042, 1, 7.5, 12, rand() * 0.01])
      refHist.observe({ instance: l.instance, class: l.class, outcome: l.outcome }, v)
      hotHist.observe(v, l.instance, l.class, l.outcome)
    }
    expect(await sorted(hot)).toEqual(await sorted(ref))
  })

  it('agree with prom-client when label sets repeat in runs (the last-series memo), across a reset', async () => {
    const ref = new Registry()
    const hot = new Registry()
    const names = ['instance', 'endpoint', 'role', 'outcome'] as const
    const refCounter = new Counter({ name: 'u_total', help: 'u', labelNames: names, registers: [ref] })
    const hotCounter = new HotCounter({ name: 'u_total', help: 'u', labelNames: names, registry: hot })
    const prng = createPrng(11)
    const pick = <T>(xs: readonly T[]): T => prng.pick(xs)
    for (let i = 0; i < 2_000; i++) {
      // Equal text in a new string object now and then: the memo compares values, not identity.
      const l = { instance: pick(['a', 'b', ['a'].join('')]), endpoint: pick(['e1', 'e2']), role: pick(['primary', 'replica']), outcome: pick(['ok', 'timeout']) }
      const run = 1 + Math.floor(prng.next() * 5)
      for (let k = 0; k < run; k++) {
        refCounter.inc(l)
        hotCounter.inc(l.instance, l.endpoint, l.role, l.outcome)
      }
      if (i === 1_000) {
        refCounter.reset()
        hotCounter.reset()
        // The same labels right after the reset must count in a new series.
        refCounter.inc(l)
        hotCounter.inc(l.instance, l.endpoint, l.role, l.outcome)
      }
    }
    expect(await sorted(hot)).toEqual(await sorted(ref))
  })

  it('ignores NaN and infinities', async () => {
    const r = new Registry()
    const h = new HotHistogram({ name: 'h', help: 'h', labelNames: ['a'], buckets: [1], registry: r })
    h.observe(Number.NaN, 'x')
    h.observe(Number.POSITIVE_INFINITY, 'x')
    h.observe(0.5, 'x')
    expect(await r.metrics()).toContain('h_sum{a="x"} 0.5')
    expect(await r.metrics()).toContain('h_count{a="x"} 1')
  })

  it('touch() creates a series at 0 (keeping an existing value); removeFirst() drops every series of a first label', async () => {
    const hot = new Registry()
    const c = new HotCounter({ name: 'c_total', help: 'c', labelNames: ['instance', 'class'], registry: hot })
    const h = new HotHistogram({ name: 'h_seconds', help: 'h', labelNames: ['instance', 'class'], buckets: [1], registry: hot })
    c.inc('a', 'read')
    c.touch('a', 'read')
    c.touch('a', 'write')
    c.touch('b', 'read')
    h.observe(0.5, 'a', 'read')
    let text = await hot.metrics()
    expect(text).toContain('c_total{instance="a",class="read"} 1')
    expect(text).toContain('c_total{instance="a",class="write"} 0')
    expect(text).toContain('c_total{instance="b",class="read"} 0')
    c.removeFirst('a')
    h.removeFirst('a')
    text = await hot.metrics()
    expect(text).not.toContain('instance="a"')
    expect(text).toContain('c_total{instance="b",class="read"} 0')
    c.inc('a', 'read') // the memo of the last series found is dropped too
    expect(await hot.metrics()).toContain('c_total{instance="a",class="read"} 1')
  })
})
