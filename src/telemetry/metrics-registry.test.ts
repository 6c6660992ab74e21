// The sliced scrape: it prints what prom-client prints, yields to the event loop between slices
// (other work runs while a large scrape is built), and refuses what it would not print (default
// labels).

import { Counter, Gauge, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { HotCounter, HotHistogram } from './hot-metrics.js'
import { MetricsRegistry, SLICE_LINES } from './metrics-registry.js'

/** Turns of the event loop (setImmediate ticks) that pass while `work` runs. */
async function turnsDuring(work: () => Promise<unknown>): Promise<number> {
  let turns = 0
  let done = false
  const tick = (): void => {
    if (done) return
    turns++
    setImmediate(tick)
  }
  setImmediate(tick)
  await work()
  done = true
  return turns
}

function registryWith(series: number, sliceLines?: number): MetricsRegistry {
  const r = new MetricsRegistry(sliceLines)
  const hot = new HotCounter({ name: 'hot_total', help: 'hot', labelNames: ['redis_instance', 'to'], registry: r })
  for (let i = 0; i < series; i++) hot.touch(`i-${i >> 1}`, i % 2 === 0 ? 'up' : 'down')
  const plain = new Counter({ name: 'plain_total', help: 'plain', labelNames: ['reason'], registers: [r] })
  plain.inc({ reason: 'x' }, 3)
  new Gauge({ name: 'plain_gauge', help: 'a gauge\nwith a "newline" and a \\', registers: [r] }).set(1.5)
  return r
}

describe('MetricsRegistry', () => {
  it('prints byte for byte what prom-client prints', async () => {
    const r = registryWith(1_000, 64)
    const h = new HotHistogram({ name: 'h_seconds', help: 'h', labelNames: ['redis_instance'], buckets: [0.1, 1], registry: r })
    h.observe(0.5, 'a')
    h.observe(5, 'b')
    expect(await r.metrics()).toBe(await Registry.prototype.metrics.call(r))
    expect((await r.metrics()).startsWith('# HELP hot_total hot\n# TYPE hot_total counter\nhot_total{redis_instance="i-0",to="up"} 0\n')).toBe(true)
  })

  it('yields to the event loop every sliceLines lines, and between metrics', async () => {
    const r = registryWith(1_000, 100)
    let ranBeforeTheEnd = false
    let done = false
    setImmediate(() => (ranBeforeTheEnd = !done))
    const turns = await turnsDuring(async () => {
      await r.metrics()
      done = true
    })
    expect(ranBeforeTheEnd).toBe(true)
    // 10 slices of the hot counter, then one per prom-client metric.
    expect(turns).toBeGreaterThanOrEqual(12)
  })

  it('slices at the default size too: a scrape of 3 x SLICE_LINES series takes 3 turns or more', async () => {
    const r = registryWith(3 * SLICE_LINES)
    expect(await turnsDuring(() => r.metrics())).toBeGreaterThanOrEqual(3)
  })

  it('falls back to prom-client for OpenMetrics, and refuses default labels', async () => {
    const r = registryWith(4)
    r.setContentType(Registry.OPENMETRICS_CONTENT_TYPE as never)
    expect(await r.metrics()).toBe(await Registry.prototype.metrics.call(r))
    expect(() => r.setDefaultLabels({ zone: 'a' })).toThrow(/default labels are not supported/)
  })
})
