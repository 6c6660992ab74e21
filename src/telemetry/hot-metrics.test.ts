// The hot counter, gauge and histogram print exactly what prom-client's own Counter, Gauge and
// Histogram print for the same updates (line order aside), including label escaping, bucket edges,
// +Inf, _sum and _count, both through the sliced scrape (MetricsRegistry) and through prom-client's
// printer (get()); zero series of a start print like prom-client series set to 0 (inc by 0) and
// count like them; non-finite observations are dropped rather than poisoning the sum; removal drops
// exactly the series asked for and leaves no empty Map behind.

import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { HotCounter, HotGauge, HotHistogram } from './hot-metrics.js'
import { LATENCY_BUCKETS } from './metrics.js'
import { MetricsRegistry } from './metrics-registry.js'
import { createPrng } from '../balancer/prng.js'

const sorted = async (r: Registry): Promise<string[]> => (await r.metrics()).split('\n').filter(Boolean).sort()
/** The hot registry's text both ways: sliced (exposition()) and as prom-client prints get(); they must agree. */
const hotSorted = async (r: MetricsRegistry): Promise<string[]> => {
  const text = await r.metrics()
  expect(text).toBe(await Registry.prototype.metrics.call(r))
  return text.split('\n').filter(Boolean).sort()
}

describe('HotCounter and HotHistogram', () => {
  it('print the same exposition as prom-client for the same updates', async () => {
    const ref = new Registry()
    const hot = new MetricsRegistry(50)
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
    expect(await hotSorted(hot)).toEqual(await sorted(ref))
  })

  it('agree with prom-client when label sets repeat in runs (the last-series memo), across a reset', async () => {
    const ref = new Registry()
    const hot = new MetricsRegistry(50)
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
    expect(await hotSorted(hot)).toEqual(await sorted(ref))
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
    const hot = new MetricsRegistry()
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
    c.removeWhere('a')
    h.removeWhere('a')
    text = await hot.metrics()
    expect(text).not.toContain('instance="a"')
    expect(text).toContain('c_total{instance="b",class="read"} 0')
    c.inc('a', 'read') // the memo of the last series found is dropped too
    expect(await hot.metrics()).toContain('c_total{instance="a",class="read"} 1')
  })

  it("HotGauge: set and remove print what prom-client's Gauge prints", async () => {
    const ref = new Registry()
    const hot = new MetricsRegistry(7)
    const names = ['redis_instance', 'redis_endpoint'] as const
    const refGauge = new Gauge({ name: 'g', help: 'g', labelNames: names, registers: [ref] })
    const hotGauge = new HotGauge({ name: 'g', help: 'g', labelNames: names, registry: hot })
    const prng = createPrng(3)
    for (let i = 0; i < 3_000; i++) {
      const l = { redis_instance: prng.pick(['a', 'b', 'c"\\']), redis_endpoint: prng.pick(['e1', 'e2', 'e3']) }
      const v = prng.pick([0, 1, 2, -3.5, 1e21, 4096])
      if (prng.next() < 0.2) {
        refGauge.remove(l)
        hotGauge.removeWhere(l.redis_instance, l.redis_endpoint)
      } else {
        refGauge.set(l, v)
        hotGauge.set(v, l.redis_instance, l.redis_endpoint)
      }
    }
    expect(await hotSorted(hot)).toEqual(await sorted(ref))
  })

  it('removeWhere() drops one series, or every series under the labels given, and prunes empty Maps', async () => {
    const r = new MetricsRegistry()
    const c = new HotCounter({ name: 't_total', help: 't', labelNames: ['redis_instance', 'redis_endpoint', 'to'], registry: r })
    for (const i of ['a', 'b']) for (const e of ['e1', 'e2']) for (const to of ['up', 'down']) c.touch(i, e, to)
    c.removeWhere('a', 'e1', 'up')
    c.removeWhere('b', 'e2')
    c.removeWhere('nope', 'e1') // absent: nothing happens
    expect((await r.metrics()).split('\n').filter((l) => l.startsWith('t_total'))).toEqual([
      't_total{redis_instance="a",redis_endpoint="e1",to="down"} 0',
      't_total{redis_instance="a",redis_endpoint="e2",to="up"} 0',
      't_total{redis_instance="a",redis_endpoint="e2",to="down"} 0',
      't_total{redis_instance="b",redis_endpoint="e1",to="up"} 0',
      't_total{redis_instance="b",redis_endpoint="e1",to="down"} 0',
    ])
    c.removeWhere('a', 'e1', 'down')
    c.removeWhere('a', 'e2', 'up')
    c.removeWhere('a', 'e2', 'down')
    c.removeWhere('b')
    const root = (c as unknown as { root: Map<string, unknown> }).root
    expect(root.size).toBe(0)
  })

  it('exposition() comes in chunks of about maxLines lines and never splits a histogram series', () => {
    const r = new MetricsRegistry()
    const h = new HotHistogram({ name: 'h', help: 'h', labelNames: ['a'], buckets: [1, 2, 3], registry: r })
    for (let i = 0; i < 100; i++) h.observe(i % 4, `s${i}`)
    const chunks = [...h.exposition(20)]
    // 6 lines a series (3 buckets, +Inf, _sum, _count): a chunk ends after the series that reaches 20.
    for (const chunk of chunks.slice(0, -1)) expect(chunk.split('\n').length - 1).toBe(24)
    expect(chunks.join('').split('\n').length - 1).toBe(100 * 6)
    for (const chunk of chunks) expect(chunk.startsWith('h_bucket{le="1",')).toBe(true)
  })

  it('zero series of a start print and count like prom-client series incremented by 0, through removals and restarts', async () => {
    const ref = new Registry()
    const hot = new MetricsRegistry(5)
    const names = ['redis_instance', 'redis_endpoint', 'to'] as const
    const refCounter = new Counter({ name: 't_total', help: 't', labelNames: names, registers: [ref] })
    const hotCounter = new HotCounter({ name: 't_total', help: 't', labelNames: names, registry: hot, zeros: [['open'], ['closed']] })
    const prng = createPrng(5)
    const instances = ['a', 'b', 'c\n"x']
    const endpoints = ['e1', 'e2']
    const tos = ['open', 'closed', 'half-open']
    for (let i = 0; i < 3_000; i++) {
      const inst = prng.pick(instances)
      const ep = prng.pick(endpoints)
      const op = prng.next()
      if (op < 0.15) {
        for (const to of ['open', 'closed']) refCounter.inc({ redis_instance: inst, redis_endpoint: ep, to }, 0)
        hotCounter.start(inst, ep)
      } else if (op < 0.2) {
        for (const e of endpoints) for (const to of tos) refCounter.remove({ redis_instance: inst, redis_endpoint: e, to })
        hotCounter.removeWhere(inst)
      } else if (op < 0.3) {
        for (const to of tos) refCounter.remove({ redis_instance: inst, redis_endpoint: ep, to })
        hotCounter.removeWhere(inst, ep)
      } else {
        const to = prng.pick(tos)
        refCounter.inc({ redis_instance: inst, redis_endpoint: ep, to })
        hotCounter.inc(inst, ep, to)
      }
      if (i % 500 === 0) expect(await hotSorted(hot)).toEqual(await sorted(ref))
    }
    expect(await hotSorted(hot)).toEqual(await sorted(ref))
  })

  it('a start prints its zero series first, keeps series stored before it, and survives the removal of one of them', async () => {
    const r = new MetricsRegistry()
    const c = new HotCounter({ name: 'r_total', help: 'r', labelNames: ['redis_instance', 'code'], registry: r, zeros: [['TIMEOUT'], ['RESET']] })
    c.inc('a', 'LOADING') // counted before the instance was started
    c.inc('a', 'RESET')
    c.start('a')
    c.start('a') // twice: no change
    c.start('b')
    const lines = async (): Promise<string[]> => (await r.metrics()).split('\n').filter((l) => l.startsWith('r_total'))
    expect(await lines()).toEqual([
      'r_total{redis_instance="a",code="TIMEOUT"} 0',
      'r_total{redis_instance="a",code="RESET"} 1',
      'r_total{redis_instance="a",code="LOADING"} 1',
      'r_total{redis_instance="b",code="TIMEOUT"} 0',
      'r_total{redis_instance="b",code="RESET"} 0',
    ])
    c.removeWhere('b', 'TIMEOUT') // nothing stored for b: no change
    c.removeWhere('a', 'LOADING')
    c.removeWhere('a', 'RESET') // a zero series lasts as long as its start: back to 0 (the gateway never does this)
    expect(await lines()).toEqual([
      'r_total{redis_instance="a",code="TIMEOUT"} 0',
      'r_total{redis_instance="a",code="RESET"} 0',
      'r_total{redis_instance="b",code="TIMEOUT"} 0',
      'r_total{redis_instance="b",code="RESET"} 0',
    ])
    c.removeWhere('a')
    expect(await lines()).toEqual(['r_total{redis_instance="b",code="TIMEOUT"} 0', 'r_total{redis_instance="b",code="RESET"} 0'])
    expect(() => c.start('a', 'x')).toThrow(/start\(\) takes 1 label values/)
    const bad = (labelNames: string[], zeros: string[][]) => () => new HotCounter({ name: 'bad', help: 'b', labelNames, registry: r, zeros })
    expect(bad(['a'], [['x']])).toThrow(/zero series/) // start() would take no label
    expect(bad(['a', 'b'], [[]])).toThrow(/zero series/)
    expect(bad(['a', 'b', 'c'], [['x'], ['y', 'z']])).toThrow(/zero series/)
    expect(bad(['a', 'b', 'c', 'd'], [['x']])).toThrow(/zero series/) // start() would take 3
  })
})
