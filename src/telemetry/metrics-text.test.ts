// The /metrics text of a small gateway is what it was before the hot metrics held the per-instance
// and per-endpoint series and the scrape was sliced (issue 21): metrics-text.golden.prom was
// printed by prom-client's Registry.metrics() with the metrics of the commit before that change,
// fed the events below (and, added since, redis_gateway_waiting_requests). Same metrics in the same order, same HELP and TYPE lines, same series and
// values; only the order of series within a metric may differ (an instance's series are together).

import { readFileSync } from 'node:fs'
import { Registry } from 'prom-client'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { EventHub, type RequestEndEvent, type UpstreamEvent } from '../core/events.js'
import { GatewayMetrics } from './metrics.js'

// --- golden feed start (copied verbatim into the script that printed the golden with the old code)
function feed(events: EventHub, metrics: GatewayMetrics): void {
  const added = (instance: string, endpoints: string[]) =>
    ({ instance, change: 'added', maintenance: null, weight: null, removedEndpoints: [], addedEndpoints: endpoints }) as const
  const request = (instance: string | null, cls: string, status: number, code: string, durationS: number, group: string | null = null): RequestEndEvent =>
    ({ instance, group, class: cls, status, code, durationS, endMs: 0, scope: null })
  const upstream = (instance: string, endpoint: string, role: string, outcome: string, durationS: number): UpstreamEvent =>
    ({ instance, endpoint, role, outcome, durationS, scope: null, operation: '', commands: 1, host: '', port: 0, startMs: 0, breaker: null })
  metrics.countStreams(() => 2)
  events.emit('discovery', { source: 'static', kind: 'listed', resource: 'file' })
  events.emit('instanceChange', added('orders', ['10.0.0.1:6379', '10.0.0.2:6379']))
  events.emit('instanceChange', added('cache', ['10.0.1.1:6379']))
  events.emit('instanceChange', added('we"ird\\name', ['10.0.2.1:6379']))
  events.emit('instanceChange', added('gone', ['10.0.3.1:6379']))
  events.emit('instanceChange', added('clu', ['10.0.4.1:6379']))
  events.emit('table', { instances: 5, groups: 1, version: 3 })
  events.emit('endpointState', { instance: 'orders', endpoint: '10.0.0.1:6379', up: true, reason: 'ok' })
  events.emit('endpointState', { instance: 'orders', endpoint: '10.0.0.2:6379', up: true, reason: 'ok' })
  events.emit('endpointState', { instance: 'cache', endpoint: '10.0.1.1:6379', up: false, reason: 'timeout' })
  events.emit('endpointRole', { instances: ['orders'], endpoint: '10.0.0.2:6379', from: 'replica', to: 'primary' })
  events.emit('replicaLag', { instance: 'orders', endpoint: '10.0.0.2:6379', bytes: 4096 })
  events.emit('replicaLag', { instance: 'orders', endpoint: '10.0.0.1:6379', bytes: 12 })
  events.emit('replicaLag', { instance: 'orders', endpoint: '10.0.0.1:6379', bytes: null })
  events.emit('breaker', { instances: ['cache'], endpoint: '10.0.1.1:6379', from: 'closed', to: 'open', reason: 'failures' })
  events.emit('breaker', { instances: ['cache'], endpoint: '10.0.1.1:6379', from: 'open', to: 'half-open', reason: 'timer' })
  events.emit('requestStart', { instance: 'orders' })
  events.emit('requestStart', { instance: 'orders' })
  for (const [i, d] of [0.00005, 0.0003, 0.0042, 0.1, 12].entries()) {
    events.emit('requestEnd', request('orders', i % 2 === 0 ? 'read' : 'write', 200, 'OK', d))
    events.emit('upstream', upstream('orders', '10.0.0.1:6379', 'primary', 'ok', d / 2))
  }
  events.emit('requestEnd', request('cache', 'read', 503, 'NOENDPOINT', 0.001, 'g'))
  events.emit('requestEnd', request(null, 'none', 401, 'UNAUTHORIZED', 0.0001))
  events.emit('requestEnd', request('we"ird\\name', 'pipeline', 200, 'OK', 0.002))
  events.emit('upstream', upstream('cache', '10.0.1.1:6379', 'primary', 'timeout', 1.5))
  events.emit('retry', { instance: 'cache', reason: 'TIMEOUT', scope: null })
  events.emit('retry', { instance: 'cache', reason: 'LOADING', scope: null })
  events.emit('hedge', { instance: 'orders', result: 'sent', scope: null })
  events.emit('budgetExhausted', { instance: 'orders', budget: 'hedge' })
  events.emit('slowClient', { reason: 'sse_backlog' })
  events.emit('fault', { where: 'http_request', error: new Error('x'), endpoint: null })
  events.emit('annotationError', { instance: 'orders', source: 'kubernetes:default/orders', key: 'k', message: 'bad' })
  events.emit('configReload', { ok: true })
  events.emit('clusterTopology', { instance: 'clu', kind: 'changed', shards: 2, slots: 16384, nodes: 3, nodeIds: ['10.0.4.1:6379', '10.0.4.2:6379', '10.0.4.3:6379'], message: null })
  events.emit('clusterTopology', { instance: 'clu', kind: 'error', shards: 2, slots: 16384, nodes: 3, nodeIds: [], message: 'x' })
  events.emit('clusterRedirect', { instance: 'clu', kind: 'moved' })
  events.emit('clusterTopology', { instance: 'clu', kind: 'changed', shards: 2, slots: 8192, nodes: 2, nodeIds: ['10.0.4.1:6379', '10.0.4.2:6379'], message: null })
  events.emit('instanceChange', { instance: 'orders', change: 'updated', maintenance: { from: 'off', to: 'drain' }, weight: null, removedEndpoints: [], addedEndpoints: [] })
  events.emit('instanceChange', { instance: 'cache', change: 'updated', maintenance: null, weight: null, removedEndpoints: ['10.0.1.1:6379'], addedEndpoints: ['10.0.1.2:6379'] })
  events.emit('instanceChange', { instance: 'gone', change: 'removed', maintenance: null, weight: null, removedEndpoints: ['10.0.3.1:6379'], addedEndpoints: [] })
  events.emit('requestEnd', request('orders', 'multi', 500, 'OVERLOADED', 0.01))
  events.emit('requestStart', { instance: 'orders' })
  events.emit('requestEnd', request('orders', 'read', 200, 'OK', 0.0002))
}
// --- golden feed end

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] })
  vi.setSystemTime(new Date('2025-01-02T03:04:05Z'))
})
afterEach(() => vi.useRealTimers())

function fed(): GatewayMetrics {
  const events = new EventHub()
  const metrics = new GatewayMetrics({ defaultMetrics: false })
  metrics.subscribe(events)
  feed(events, metrics)
  return metrics
}

/** Per metric: its HELP and TYPE lines, then its series lines sorted. */
function byMetric(text: string): string[][] {
  expect(text.endsWith('\n')).toBe(true)
  return text
    .slice(0, -1)
    .split('\n\n')
    .map((block) => {
      const lines = block.split('\n')
      return [...lines.slice(0, 2), ...lines.slice(2).sort()]
    })
}

describe('the /metrics text', () => {
  it('has the metrics, HELP and TYPE lines, series and values it had before issue 21', async () => {
    const golden = readFileSync(new URL('./metrics-text.golden.prom', import.meta.url), 'utf8')
    const text = await fed().registry.metrics()
    expect(byMetric(text)).toEqual(byMetric(golden))
    expect(text.length).toBe(golden.length)
  })

  it('is byte for byte what prom-client itself prints for the same metrics, series order included', async () => {
    const metrics = fed()
    const ours = await metrics.registry.metrics()
    const promClients = await Registry.prototype.metrics.call(metrics.registry)
    expect(ours).toBe(promClients)
  })

  it('comes in pieces that each end at a line end', async () => {
    const metrics = new GatewayMetrics({ defaultMetrics: false })
    const events = new EventHub()
    metrics.subscribe(events)
    for (let i = 0; i < 1_000; i++) {
      events.emit('instanceChange', { instance: `i-${i}`, change: 'added', maintenance: null, weight: null, removedEndpoints: [], addedEndpoints: [`h:${i}`] })
    }
    const pieces = await metrics.registry.exposition()
    expect(pieces.length).toBeGreaterThan(5)
    for (const p of pieces) expect(p.endsWith('\n')).toBe(true)
    expect(pieces.join('')).toBe(await metrics.registry.metrics())
  })
})
