// Every metric the README's "Ops plane" section lists, on one registry, served on the ops port, with
// the stated labels; label values stay bounded whatever requests send (thousands of distinct keys,
// client ids, tokens and target names do not add series); an endpoint that leaves drops its
// gauges; `metrics.enabled: false` keeps and serves nothing. Real redis-server processes.

import { request } from 'node:http'
import { gunzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, WRITE_TOKEN, type TestGateway, type TestInstance } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'
import { LATENCY_BUCKETS } from '../../src/telemetry/metrics.js'
import { HEALTH, startTopology, type Topology } from './replication-env.js'

const A = 'redis-gateway.io/'
let topo: Topology
let gw: TestGateway

const instances = (): TestInstance[] => [
  { name: 'main', endpoints: topo.urls, annotations: { [`${A}read-policy`]: 'prefer-replica', [`${A}hedge-after`]: '1ms', [`${A}groups`]: 'g' } },
  { name: 'other', endpoints: [topo.primary.url], annotations: { [`${A}groups`]: 'g' } },
]

beforeAll(async () => {
  topo = await startTopology()
  gw = await startGateway({ instances: instances(), groups: { g: { strategy: 'sticky' } }, extra: HEALTH, watch: true })
  await waitFor(() => [...gw.gateway.pool.all()].every((e) => e.state.healthy && e.state.role !== 'unknown'), { message: 'endpoints checked' })
})

afterAll(async () => {
  await gw?.stop()
  await topo?.stop()
})

async function send(path: string, body: unknown, headers: Record<string, string> = {}, token = WRITE_TOKEN): Promise<number> {
  const res = await fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, ...headers },
    body: JSON.stringify(body),
  })
  await res.arrayBuffer()
  return res.status
}

async function scrape(): Promise<string> {
  const res = await fetch(`${gw.opsUrl}/metrics`)
  expect(res.status).toBe(200)
  return res.text()
}

/** The gateway's own series (Node's process_ and nodejs_ metrics excluded: their label sets vary with GC). */
function series(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('redis_gateway_'))
    .map((l) => l.slice(0, l.lastIndexOf(' ')))
}

/** One round of every kind of request, each with fresh keys, client ids, tokens and names. */
async function round(i: number): Promise<void> {
  const key = `key-${i}-${Math.random()}`
  await Promise.all([
    send('/v1/instances/main', ['SET', key, `value-${i}`]),
    send('/v1/instances/main', ['GET', key]),
    send('/v1/instances/main', ['HGET', key, 'f']), // a Redis error reply (WRONGTYPE once SET ran)
    send('/v1/instances/main', ['LPUSH', key, 'x']).then(() => send('/v1/instances/main', ['GET', key])),
    send('/v1/instances/main/pipeline', [['GET', key], ['SET', key, 'v']]),
    send('/v1/instances/main/multi-exec', [['SET', key, 'v'], ['GET', key]]),
    send('/v1/groups/g', ['GET', key], { 'x-client-id': `client-${i}-${Math.random()}` }),
    send('/v1/instances/main', ['GET', key], {}, `bogus-token-${i}-${Math.random()}`), // 401
    send(`/v1/instances/nope-${i}`, ['GET', key]), // 404, unknown target
    send('/v1/instances/main', [`NOSUCHCMD${i}`, key]), // 400, unknown command
    send('/v1/instances/main', '{not json'), // 400
  ])
}

describe('metrics', () => {
  it('serves every documented metric with its labels on one registry', async () => {
    await round(0)
    const json = await gw.gateway.metrics.registry.getMetricsAsJSON()
    const byName = new Map(json.map((m) => [m.name, m]))
    const expected: Record<string, string[]> = {
      redis_gateway_requests_total: ['redis_instance', 'group', 'class', 'outcome', 'code'],
      redis_gateway_request_duration_seconds: ['redis_instance', 'class', 'outcome'],
      redis_gateway_upstream_duration_seconds: ['redis_instance', 'redis_endpoint', 'role', 'outcome'],
      redis_gateway_inflight_requests: [],
      redis_gateway_endpoint_up: ['redis_instance', 'redis_endpoint'],
      redis_gateway_breaker_state: ['redis_instance', 'redis_endpoint'],
      redis_gateway_retries_total: ['redis_instance', 'code'],
      redis_gateway_hedges_total: ['redis_instance', 'result'],
      redis_gateway_replica_lag_bytes: ['redis_instance', 'redis_endpoint'],
      redis_gateway_discovery_events_total: ['source', 'outcome'],
      redis_gateway_discovery_last_sync_timestamp_seconds: ['source'],
      redis_gateway_routing_table_instances: [],
      redis_gateway_breaker_transitions_total: ['redis_instance', 'redis_endpoint', 'to'],
      redis_gateway_endpoint_transitions_total: ['redis_instance', 'redis_endpoint', 'to'],
      redis_gateway_role_changes_total: ['redis_instance', 'redis_endpoint', 'to'],
      redis_gateway_maintenance_changes_total: ['redis_instance', 'to'],
    }
    for (const [name, labels] of Object.entries(expected)) {
      const m = byName.get(name) as unknown as { labelNames?: string[] } | undefined
      expect(m, name).toBeDefined()
      const declared = (gw.gateway.metrics.registry.getSingleMetric(name) as unknown as { labelNames: string[] }).labelNames
      expect([...declared].sort(), name).toEqual([...labels].sort())
    }
    const text = await scrape()
    expect(text).toMatch(/redis_gateway_requests_total\{redis_instance="main",group="",class="write",outcome="success",code="OK"\} \d+/)
    expect(text).toMatch(/redis_gateway_requests_total\{redis_instance="(main|other)",group="g",class="read",outcome="success",code="OK"\} \d+/)
    expect(text).toMatch(/redis_gateway_requests_total\{redis_instance="",group="",class="none",outcome="client_error",code="UNAUTHORIZED"\} \d+/)
    expect(text).toMatch(/redis_gateway_endpoint_up\{redis_instance="main",redis_endpoint="127\.0\.0\.1:\d+"\} 1/)
    expect(text).toMatch(/redis_gateway_routing_table_instances 2/)
  })

  it('no label is one a scrape overwrites; Node default metrics keep their standard names', async () => {
    // Prometheus and the Prometheus Operator set these on every target (changed in 0.2: the gateway's
    // instance and endpoint labels became redis_instance and redis_endpoint).
    const scrapeLabels = new Set(['instance', 'job', 'endpoint', 'pod', 'namespace', 'service', 'container'])
    for (const m of gw.gateway.metrics.registry.getMetricsAsArray()) {
      const { name, labelNames } = m as unknown as { name: string; labelNames?: string[] }
      expect((labelNames ?? []).filter((l) => scrapeLabels.has(l)), name).toEqual([])
    }
    const text = await scrape()
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect(text).toMatch(new RegExp(`^${name} `, 'm'))
    }
    expect(text).not.toContain('redis_gateway_process_')
  })

  it('histogram buckets span 100 us to 10 s', () => {
    expect(LATENCY_BUCKETS[0]).toBeLessThanOrEqual(0.0001)
    expect(LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]).toBeGreaterThanOrEqual(10)
    // Roughly 1-2.5-5 steps: no decade without buckets.
    for (let i = 1; i < LATENCY_BUCKETS.length; i++) expect(LATENCY_BUCKETS[i]! / LATENCY_BUCKETS[i - 1]!).toBeLessThanOrEqual(2.5)
  })

  it('does not grow with distinct keys, client ids, tokens and target names', async () => {
    for (let i = 1; i <= 5; i++) await round(i) // every label combination the rounds produce
    const before = series(await scrape())
    for (let i = 0; i < 300; i++) await round(1000 + i) // 3,300 requests, ~1,500 distinct names
    const after = series(await scrape())
    // Every label value comes from a bounded set: configured names, endpoints, enumerations.
    const endpoints = topo.all.map((s) => `127.0.0.1:${s.port}`)
    const allowed: Record<string, readonly string[]> = {
      redis_instance: ['', 'main', 'other'],
      group: ['', 'g'],
      redis_endpoint: endpoints,
      role: ['primary', 'replica', 'none'],
      class: ['none', 'read', 'write', 'pipeline', 'multi', 'subscribe'],
      outcome: ['success', 'client_error', 'server_error', 'ok', 'reply_error', 'busy', 'timeout', 'unavailable', 'reset', 'listed', 'watching', 'reconciled', 'error', 'gone', 'conflict', 'bad_annotation'],
      code: ['OK', 'REDIS', 'UNAUTHORIZED', 'NOTFOUND', 'UNKNOWNCOMMAND', 'BADREQUEST', 'TIMEOUT', 'UNAVAILABLE', 'NOENDPOINT', 'UPSTREAMRESET', 'OVERLOADED'],
      result: ['sent', 'won'],
      budget: ['retry', 'hedge'],
      reason: ['sse_backlog', 'write_timeout', 'request_timeout'],
      to: ['open', 'half-open', 'closed', 'up', 'down', 'primary', 'replica', 'off', 'drain', 'read-only'],
      source: ['static', 'kubernetes'],
      le: [...LATENCY_BUCKETS.map(String), '+Inf'],
    }
    for (const line of after) {
      for (const [, name, value] of line.matchAll(/(\w+)="([^"]*)"/g)) {
        expect(allowed[name!], `label ${name} in ${line}`).toBeDefined()
        expect(allowed[name!], `label value in ${line}`).toContain(value)
      }
    }
    // 3,300 more requests with fresh values add no series beyond what the first rounds had, except
    // combinations of those bounded values that timing decides (e.g. whether a hedge won yet).
    expect(after.length - before.length).toBeLessThan(20)
    const text = after.join('\n')
    for (const leak of ['key-', 'client-', 'bogus-token', 'nope-', 'NOSUCHCMD', 'value-']) expect(text).not.toContain(leak)
  })

  it('answers gzip on the wire when asked (as Prometheus asks), plain text otherwise', async () => {
    /** A raw GET, no decompression: status, headers and body bytes as sent. */
    const get = (headers: Record<string, string>): Promise<{ headers: Record<string, unknown>; body: Buffer }> =>
      new Promise((resolve, reject) => {
        const req = request(`${gw.opsUrl}/metrics`, { headers }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }))
          res.on('error', reject)
        })
        req.on('error', reject)
        req.end()
      })
    const zipped = await get({ 'accept-encoding': 'gzip', 'user-agent': 'Prometheus/2.53.0' })
    expect(zipped.headers['content-encoding']).toBe('gzip')
    expect(zipped.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
    const unzipped = gunzipSync(zipped.body).toString()
    const plain = await get({})
    expect(plain.headers['content-encoding']).toBeUndefined()
    const text = plain.body.toString()
    // Two scrapes: the same series (values may move between them).
    expect(series(unzipped).sort()).toEqual(series(text).sort())
    expect(unzipped).toMatch(/^redis_gateway_endpoint_up\{redis_instance="main",redis_endpoint="127\.0\.0\.1:\d+"\} 1$/m)
    expect(zipped.body.length).toBeLessThan(text.length / 4)
  })

  it('drops an endpoint’s gauges when its instance no longer lists it', async () => {
    const r2 = `redis_endpoint="127.0.0.1:${topo.r2.port}"`
    const has = (text: string) => text.split('\n').some((l) => l.startsWith('redis_gateway_endpoint_up{redis_instance="main"') && l.includes(r2))
    expect(has(await scrape())).toBe(true)
    const next = instances()
    next[0] = { ...next[0]!, endpoints: [topo.primary.url, topo.r1.url] }
    await gw.rewrite({ instances: next, groups: { g: { strategy: 'sticky' } }, extra: HEALTH })
    await waitFor(async () => !has(await scrape()), { message: 'endpoint_up series of the removed endpoint gone' })
    const text = await scrape()
    expect(text).not.toMatch(new RegExp(`redis_gateway_(replica_lag_bytes|breaker_state)\\{redis_instance="main",${r2}`))
  })
})

describe('metrics off', () => {
  it('metrics.enabled: false keeps no metric and serves none', async () => {
    const off = await startGateway({ instances: [{ name: 'main', endpoints: [topo.primary.url] }], extra: { metrics: { enabled: false } } })
    try {
      expect(off.gateway.events.has('requestEnd')).toBe(false)
      expect(off.gateway.events.has('upstream')).toBe(false)
      const res = await fetch(`${off.opsUrl}/metrics`)
      expect(res.status).toBe(404)
      expect(await res.text()).toContain('metrics.enabled')
    } finally {
      await off.stop()
    }
  })
})
