// The ops plane (default :9090): liveness, readiness and Prometheus metrics.

import { Hono } from 'hono'
import type { Registry } from 'prom-client'

export interface Readiness {
  /** Why the gateway is not ready, or null when it is. */
  notReadyReason(): string | null
}

export function createOpsApp(deps: { registry: Registry; readiness: Readiness }): Hono {
  const app = new Hono()
  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', (c) => {
    const reason = deps.readiness.notReadyReason()
    return reason === null ? c.json({ status: 'ready' }) : c.json({ status: 'not ready', reason }, 503)
  })
  app.get('/metrics', async (c) =>
    c.body(await deps.registry.metrics(), 200, { 'content-type': deps.registry.contentType }),
  )
  app.notFound((c) => c.json({ error: 'NOTFOUND no such ops endpoint; try /healthz, /readyz or /metrics' }, 404))
  return app
}
