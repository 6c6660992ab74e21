import { gunzipSync } from 'node:zlib'
import { Counter, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { EventHub, type RequestEndEvent } from '../core/events.js'
import { sha256Hex, type OpsAuth } from '../config/schema.js'
import { TokenStore } from './auth.js'
import { acceptsGzip, createOpsApp } from './ops-plane.js'
import { GatewayMetrics } from '../telemetry/metrics.js'
import type { RoutesQuery } from './routes-view.js'

const notReady = { notReadyReason: () => null }
const noRoutes = { routes: () => ({}) as never, fullView: async () => ['{}'] }
const tokens = new TokenStore([
  { name: 'ops', access: 'admin', targets: ['*'], sha256: sha256Hex('admin-secret') },
  { name: 'app', access: 'write', targets: ['*'], sha256: sha256Hex('write-secret') },
])
const access = (mode: OpsAuth = 'admin') => ({ mode: () => mode, tokens: () => tokens })

describe('ops plane /metrics', () => {
  it('counts events deferred in this turn: a scrape read before the setImmediate still includes them', async () => {
    const registry = new Registry()
    const ended = new Counter({ name: 'test_requests_total', help: 'requests', registers: [registry] })
    const events = new EventHub()
    events.on('requestEnd', () => ended.inc())
    const app = createOpsApp({ registry, readiness: notReady, routes: noRoutes, access: access(), flushEvents: events.flush })
    const e: RequestEndEvent = { instance: 'cache', group: null, class: 'read', status: 200, code: 'OK', durationS: 0.001, endMs: 1, scope: null }
    events.emitLater('requestEnd', e)
    events.emitLater('requestEnd', e)
    // app.request runs the handler without a turn of the event loop in between.
    const text = await (await app.request('/metrics')).text()
    expect(text).toMatch(/^test_requests_total 2$/m)
  })

  it('scrapes that overlap share one build of the text', async () => {
    const metrics = new GatewayMetrics({ defaultMetrics: false })
    let builds = 0
    const registry = metrics.registry
    const build = registry.exposition.bind(registry)
    registry.exposition = () => {
      builds++
      return build()
    }
    const app = createOpsApp({ registry, readiness: notReady, routes: noRoutes, access: access() })
    const texts = await Promise.all([1, 2, 3].map(async () => (await app.request('/metrics')).text()))
    expect(builds).toBe(1)
    expect(new Set(texts).size).toBe(1)
    // Once it is done, the next scrape builds anew.
    await app.request('/metrics')
    expect(builds).toBe(2)
  })

  it('answers gzip when the scraper accepts it (Prometheus does), plain text otherwise', async () => {
    const metrics = new GatewayMetrics({ defaultMetrics: false })
    const events = new EventHub()
    metrics.subscribe(events)
    events.emit('instanceChange', { instance: 'cache', change: 'added', maintenance: null, weight: null, removedEndpoints: [], addedEndpoints: ['h:1'] })
    const app = createOpsApp({ registry: metrics.registry, readiness: notReady, routes: noRoutes, access: access() })
    const plain = await app.request('/metrics')
    expect(plain.headers.get('content-encoding')).toBeNull()
    expect(plain.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
    expect(plain.headers.get('vary')).toBe('Accept-Encoding')
    const text = await plain.text()
    expect(text).toContain('redis_gateway_endpoint_up{redis_instance="cache",redis_endpoint="h:1"} 0')
    const zipped = await app.request('/metrics', { headers: { 'accept-encoding': 'gzip, deflate' } })
    expect(zipped.headers.get('content-encoding')).toBe('gzip')
    expect(zipped.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
    const bytes = Buffer.from(await zipped.arrayBuffer())
    expect(gunzipSync(bytes).toString()).toBe(text)
    expect(bytes.length).toBeLessThan(text.length / 4)
    const refused = await app.request('/metrics', { headers: { 'accept-encoding': 'gzip;q=0, identity' } })
    expect(refused.headers.get('content-encoding')).toBeNull()
    expect(await refused.text()).toBe(text)
  })

  it('sends a large text piece by piece, plain or gzipped, the same text as one string', async () => {
    const metrics = new GatewayMetrics({ defaultMetrics: false })
    const events = new EventHub()
    metrics.subscribe(events)
    for (let i = 0; i < 1_000; i++) {
      events.emit('instanceChange', { instance: `i-${i}`, change: 'added', maintenance: null, weight: null, removedEndpoints: [], addedEndpoints: [`h:${i}`] })
    }
    const app = createOpsApp({ registry: metrics.registry, readiness: notReady, routes: noRoutes, access: access() })
    const whole = await metrics.registry.metrics()
    expect((await metrics.registry.exposition()).length).toBeGreaterThan(1)
    const plain = await app.request('/metrics')
    expect(await plain.text()).toBe(whole)
    const zipped = await app.request('/metrics', { headers: { 'accept-encoding': 'gzip' } })
    expect(gunzipSync(Buffer.from(await zipped.arrayBuffer())).toString()).toBe(whole)
  })

  it('reads Accept-Encoding: gzip when listed without q=0', () => {
    for (const yes of ['gzip', 'GZIP', 'deflate, gzip', 'gzip;q=0.5', 'br;q=1.0, gzip;q=0.8, *;q=0.1', 'x-gzip']) expect(acceptsGzip(yes), yes).toBe(true)
    for (const no of [undefined, '', 'identity', 'br, deflate', 'gzip;q=0', 'gzip; q=0.0', '*', 'gzipx']) expect(acceptsGzip(no), String(no)).toBe(false)
  })

  it('answers 404 with a clear message when metrics are off', async () => {
    const app = createOpsApp({ registry: null, readiness: notReady, routes: noRoutes, access: access() })
    const res = await app.request('/metrics')
    expect(res.status).toBe(404)
    expect(await res.json()).toEqual({ error: 'NOTFOUND metrics are off in this gateway (metrics.enabled: false)' })
  })
})

describe('ops plane access (ops.auth)', () => {
  const routes = { routes: () => ({ version: 1 }) as never, fullView: async () => ['{"version":1}'] }
  const get = (path: string, mode: OpsAuth, headers: Record<string, string> = {}) =>
    createOpsApp({ registry: new Registry(), readiness: notReady, routes, access: access(mode) }).request(path, { headers })

  it('admin: the routing table and the page need an admin token, by Bearer or _token', async () => {
    for (const path of ['/admin/routes', '/']) {
      const none = await get(path, 'admin')
      expect(none.status, path).toBe(401)
      expect(none.headers.get('www-authenticate')).toBe('Bearer')
      expect(none.headers.get('content-type')).toMatch(/^application\/json/)
      expect(((await none.json()) as { error: string }).error).toMatch(/^UNAUTHORIZED the routing table needs a token; .*Bearer.*_token/)
      const bad = await get(path, 'admin', { authorization: 'Bearer wrong-secret' })
      expect(bad.status, path).toBe(401)
      expect(await bad.text()).not.toContain('wrong-secret')
      const writer = await get(path, 'admin', { authorization: 'Bearer write-secret' })
      expect(writer.status, path).toBe(403)
      expect(await writer.json()).toEqual({ error: "FORBIDDEN token 'app' has write access; the routing table needs admin" })
      expect((await get(path, 'admin', { authorization: 'Bearer admin-secret' })).status, path).toBe(200)
      expect((await get(`${path}?_token=admin-secret`, 'admin')).status, path).toBe(200)
      expect((await get(`${path}?_token=write-secret`, 'admin')).status, path).toBe(403)
    }
  })

  it('none: open to anyone, as before', async () => {
    expect((await get('/admin/routes', 'none')).status).toBe(200)
    expect((await get('/', 'none')).status).toBe(200)
  })

  it('probes and metrics never need a token', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics']) expect((await get(path, 'admin')).status, path).toBe(200)
  })
})

describe('ops plane /admin/routes query', () => {
  const asked: (RoutesQuery | null)[] = []
  const routes = {
    routes: (q: RoutesQuery) => (asked.push(q), { version: 1 }) as never,
    fullView: async () => (asked.push(null), ['{"version":', '1}']),
  }
  const get = (path: string, mode: OpsAuth = 'admin', headers: Record<string, string> = { authorization: 'Bearer admin-secret' }) =>
    createOpsApp({ registry: new Registry(), readiness: notReady, routes, access: access(mode) }).request(path, { headers })

  it('no parameters (the page token aside): the full view, as before, its pieces sent as one JSON body', async () => {
    asked.length = 0
    const full = await get('/admin/routes')
    expect(full.status).toBe(200)
    expect(full.headers.get('content-type')).toBe('application/json')
    expect(full.headers.get('cache-control')).toBe('no-store')
    expect(await full.json()).toEqual({ version: 1 })
    expect((await get('/admin/routes?_token=admin-secret', 'admin', {})).status).toBe(200)
    expect(asked).toEqual([null, null])
  })

  it('full views that overlap share one build; the next call after it builds anew', async () => {
    let builds = 0
    let finish: (pieces: readonly string[]) => void = () => {}
    const slow = {
      routes: routes.routes,
      fullView: () => {
        builds++
        return new Promise<readonly string[]>((resolve) => (finish = resolve))
      },
    }
    const app = createOpsApp({ registry: new Registry(), readiness: notReady, routes: slow, access: access('none') })
    const calls = [1, 2, 3].map(() => app.request('/admin/routes'))
    await new Promise((r) => setImmediate(r))
    expect(builds).toBe(1)
    finish(['{"version":', '7}'])
    for (const res of await Promise.all(calls)) expect(await res.json()).toEqual({ version: 7 })
    const next = app.request('/admin/routes')
    await new Promise((r) => setImmediate(r))
    expect(builds).toBe(2)
    finish(['{"version":8}'])
    expect(await (await next).json()).toEqual({ version: 8 })
  })

  it('passes the parsed query on', async () => {
    asked.length = 0
    expect((await get('/admin/routes?limit=100&after=inst-0099&q=ord&health=degraded,down&instance=a&instance=b%20c&groups=none')).status).toBe(200)
    expect(asked).toEqual([{ instances: ['a', 'b c'], q: 'ord', health: ['degraded', 'down'], after: 'inst-0099', limit: 100, groups: 'none' }])
  })

  it('a bad parameter is a 400 with the reason, after the token check', async () => {
    asked.length = 0
    const res = await get('/admin/routes?limit=0')
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.json()).toEqual({ error: 'BADREQUEST limit must be an integer from 1 to 1000, got "0"' })
    expect(await (await get('/admin/routes?healthy=down')).json()).toEqual({
      error: 'BADREQUEST unknown parameter "healthy" of /admin/routes; known: instance, q, health, limit, after, groups (docs/admin-routes.md)',
    })
    expect((await get('/admin/routes?health=broken', 'none', {})).status).toBe(400)
    // Who may not see the table learns nothing about the parameters.
    expect((await get('/admin/routes?limit=0', 'admin', {})).status).toBe(401)
    expect(asked).toEqual([])
  })
})
