// The ops plane (default :9090): liveness, readiness, Prometheus metrics, and the routing table
// as JSON (`/admin/routes`) and as a small live HTML page (`/`).

import { Hono } from 'hono'
import type { Registry } from 'prom-client'
import type { RoutesView } from './routes-view.js'
import { ROUTES_PAGE_HEADERS, ROUTES_PAGE_HTML } from './routes-page.js'

export interface Readiness {
  /** Why the gateway is not ready, or null when it is. */
  notReadyReason(): string | null
}

/** The routing table as the admin view shows it (docs/admin-routes.md); built on each call. */
export interface RoutesSource {
  routes(): RoutesView
}

/**
 * `registry` is null when metrics are off (`metrics.enabled: false`). `flushEvents` emits the
 * events deferred to the end of the current turn (EventHub.flush) before a scrape is read.
 */
export function createOpsApp(deps: {
  registry: Registry | null
  readiness: Readiness
  routes: RoutesSource
  flushEvents?: () => void
}): Hono {
  const app = new Hono()
  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', (c) => {
    const reason = deps.readiness.notReadyReason()
    return reason === null ? c.json({ status: 'ready' }) : c.json({ status: 'not ready', reason }, 503)
  })
  const registry = deps.registry
  const flushEvents = deps.flushEvents ?? (() => {})
  app.get('/metrics', async (c) => {
    if (registry === null) return c.json({ error: 'NOTFOUND metrics are off in this gateway (metrics.enabled: false)' }, 404)
    flushEvents()
    return c.body(await registry.metrics(), 200, { 'content-type': registry.contentType })
  })
  app.get('/admin/routes', (c) => c.json(deps.routes.routes(), 200, { 'cache-control': 'no-store' }))
  app.get('/', (c) => c.body(ROUTES_PAGE_HTML, 200, { ...ROUTES_PAGE_HEADERS }))
  app.notFound((c) =>
    c.json({ error: 'NOTFOUND no such ops endpoint; try /healthz, /readyz, /metrics, /admin/routes or /' }, 404),
  )
  return app
}
