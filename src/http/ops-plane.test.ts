import { Counter, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { EventHub, type RequestEndEvent } from '../core/events.js'
import { createOpsApp } from './ops-plane.js'

const notReady = { notReadyReason: () => null }
const noRoutes = { routes: () => ({}) as never }

describe('ops plane /metrics', () => {
  it('counts events deferred in this turn: a scrape read before the setImmediate still includes them', async () => {
    const registry = new Registry()
    const ended = new Counter({ name: 'test_requests_total', help: 'requests', registers: [registry] })
    const events = new EventHub()
    events.on('requestEnd', () => ended.inc())
    const app = createOpsApp({ registry, readiness: notReady, routes: noRoutes, flushEvents: events.flush })
    const e: RequestEndEvent = { instance: 'cache', group: null, class: 'read', status: 200, code: 'OK', durationS: 0.001, endMs: 1, scope: null }
    events.emitLater('requestEnd', e)
    events.emitLater('requestEnd', e)
    // app.request runs the handler without a turn of the event loop in between.
    const text = await (await app.request('/metrics')).text()
    expect(text).toMatch(/^test_requests_total 2$/m)
  })

  it('answers 404 with a clear message when metrics are off', async () => {
    const app = createOpsApp({ registry: null, readiness: notReady, routes: noRoutes })
    const res = await app.request('/metrics')
    expect(res.status).toBe(404)
    expect(await res.json()).toEqual({ error: 'NOTFOUND metrics are off in this gateway (metrics.enabled: false)' })
  })
})
