// The ops plane (default :9090): liveness, readiness, Prometheus metrics, and the routing table
// as JSON (`/admin/routes`) and as a small live HTML page (`/`). The routing table shows the
// topology, so by default (ops.auth: admin) it needs an admin token of the data plane's token store:
// `Authorization: Bearer`, or `?_token=` for the page, which a browser opens by URL. Probes and
// Prometheus need no token. `/admin/routes` takes a query (filter, page: docs/admin-routes.md);
// without one it is the whole table, as before.

import { Buffer } from 'node:buffer'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { constants, createGzip } from 'node:zlib'
import { Hono, type Context } from 'hono'
import type { Registry } from 'prom-client'
import type { OpsAuth } from '../config/schema.js'
import { ForbiddenError, UnauthorizedError } from '../core/errors.js'
import { presentedToken, type TokenStore } from './auth.js'
import { describeError, errorHeaders } from './error-response.js'
import { parseRoutesQuery, type RoutesQuery, type RoutesView } from './routes-view.js'
import { ROUTES_PAGE_HEADERS, ROUTES_PAGE_HTML } from './routes-page.js'

export interface Readiness {
  /** Why the gateway is not ready, or null when it is. */
  notReadyReason(): string | null
}

/** The routing table as the admin view shows it (docs/admin-routes.md); built on each call. */
export interface RoutesSource {
  /** The page a query asks for. */
  routes(query: RoutesQuery): RoutesView
  /** The whole table (no query) as JSON text in pieces, built over several turns (routes-view.ts fullViewPieces). */
  fullView(): Promise<readonly string[]>
}

/** Who may see the routing table; read on every request, so a config reload applies at once. */
export interface OpsAccess {
  /** `ops.auth` of the current config. */
  mode(): OpsAuth
  /** The current token store (replaced when the config file changes). */
  tokens(): TokenStore
}

/**
 * What /metrics reads: a prom-client Registry; when it offers exposition() (the gateway's, in
 * telemetry/metrics-registry.ts), its text in pieces built over several turns of the event loop.
 */
export type MetricsRegistryLike = Registry & { exposition?(): Promise<readonly string[]> }

/**
 * `registry` is null when metrics are off (`metrics.enabled: false`). `flushEvents` emits the
 * events deferred to the end of the current turn (EventHub.flush) before a scrape is read.
 */
export function createOpsApp(deps: {
  registry: MetricsRegistryLike | null
  readiness: Readiness
  routes: RoutesSource
  access: OpsAccess
  flushEvents?: () => void
}): Hono {
  const app = new Hono()
  const access = deps.access
  const errorReply = (c: Context, err: unknown): Response => {
    const d = describeError(err)
    return c.body(d.body, d.status as 401, { 'content-type': 'application/json', 'cache-control': 'no-store', ...errorHeaders(err, d) })
  }
  // The topology views: null when the request may see them, else the 401/403 reply.
  const denied = (c: Context): Response | null => {
    if (access.mode() === 'none') return null
    const err = refusal(access.tokens(), c.req.header('authorization'), c.req.query('_token') ?? null)
    return err === null ? null : errorReply(c, err)
  }
  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', (c) => {
    const reason = deps.readiness.notReadyReason()
    return reason === null ? c.json({ status: 'ready' }) : c.json({ status: 'not ready', reason }, 503)
  })
  const registry = deps.registry
  const flushEvents = deps.flushEvents ?? (() => {})
  // Gzip when asked (Prometheus always asks): 16.6 MB of text at 5,000 instances is 0.7 MB gzipped.
  // Compressed by zlib's thread pool, piece by piece; a large plain text is streamed the same way,
  // never encoded as one 16 MB string in one turn.
  // Scrapes that overlap share the text being built: /metrics needs no token, and a second scraper
  // (or a flood of requests) then costs no more CPU or memory than the first.
  const exposition =
    registry === null
      ? null
      : sharedWhilePending((): Promise<readonly string[]> => (registry.exposition !== undefined ? registry.exposition() : registry.metrics().then((text) => [text])))
  app.get('/metrics', async (c) => {
    if (registry === null || exposition === null) return c.json({ error: 'NOTFOUND metrics are off in this gateway (metrics.enabled: false)' }, 404)
    flushEvents()
    const pieces = await exposition()
    const headers = { 'content-type': registry.contentType, vary: 'Accept-Encoding' }
    if (acceptsGzip(c.req.header('accept-encoding'))) {
      const body = (await gzip(pieces)) as Uint8Array<ArrayBuffer> // (Buffer.concat's is one)
      return c.body(body, 200, { ...headers, 'content-encoding': 'gzip' })
    }
    return c.body(pieces.length === 1 ? pieces[0]! : streamOf(pieces), 200, headers)
  })
  // Full views that overlap share the one being built, as scrapes do: it is built over several turns
  // (~30 ms at 5,000 instances) and is ~6 MiB of text until sent, so callers arriving meanwhile
  // (several dashboards, or a flood when ops.auth is none) cost no more CPU or memory than the first.
  const fullView = sharedWhilePending(() => deps.routes.fullView())
  app.get('/admin/routes', async (c) => {
    const refused = denied(c)
    if (refused !== null) return refused
    let query: RoutesQuery | null
    try {
      query = parseRoutesQuery(new URL(c.req.url).searchParams)
    } catch (err) {
      // A BadRequestError: 400 with the parameter and what it takes.
      return errorReply(c, err)
    }
    if (query !== null) return c.json(deps.routes.routes(query), 200, { 'cache-control': 'no-store' })
    const pieces = await fullView()
    return c.body(streamOf(pieces), 200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  })
  app.get('/', (c) => denied(c) ?? c.body(ROUTES_PAGE_HTML, 200, { ...ROUTES_PAGE_HEADERS }))
  app.notFound((c) =>
    c.json({ error: 'NOTFOUND no such ops endpoint; try /healthz, /readyz, /metrics, /admin/routes or /' }, 404),
  )
  return app
}

/** `build`, shared by calls that overlap: while one call's promise is pending, later calls get that promise. */
function sharedWhilePending<T>(build: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | null = null
  return () =>
    (pending ??= build().finally(() => {
      pending = null
    }))
}

/** Whether an Accept-Encoding header accepts gzip (`gzip` listed without q=0; `*` is not taken). */
export function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false
  return header.split(',').some((part) => {
    const [coding, ...params] = part.split(';').map((x) => x.trim().toLowerCase())
    if (coding !== 'gzip' && coding !== 'x-gzip') return false
    const q = params.find((p) => p.startsWith('q='))
    return q === undefined || Number(q.slice(2)) > 0
  })
}

/**
 * The pieces gzipped by zlib's thread pool (the event loop only hands them over). The fastest level:
 * a third of the default's CPU for 5,000 instances' text, 0.68 MB instead of 0.55 MB (from 16.6).
 */
async function gzip(pieces: readonly string[]): Promise<Buffer> {
  const out: Buffer[] = []
  const collect = new Writable({
    write(chunk: Buffer, _encoding, done) {
      out.push(chunk)
      done()
    },
  })
  await pipeline(Readable.from(pieces), createGzip({ level: constants.Z_BEST_SPEED }), collect)
  return Buffer.concat(out)
}

/** The pieces as a body, one encoded per pull: each costs a short turn, the whole text never one long one. */
function streamOf(pieces: readonly string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder()
  let next = 0
  return new ReadableStream({
    pull(controller) {
      if (next < pieces.length) controller.enqueue(encoder.encode(pieces[next++]))
      else controller.close()
    },
  })
}

const HOW = 'send an admin token: Authorization: Bearer <token>, or open the page as /?_token=<token>'

/** Why a request may not see the routing table (401 no or unknown token, 403 not admin), or null. */
function refusal(tokens: TokenStore, authorization: string | undefined, queryToken: string | null): Error | null {
  const secret = presentedToken(authorization, queryToken)
  if (secret === null) return new UnauthorizedError(`the routing table needs a token; ${HOW}`)
  const principal = tokens.authenticate(secret)
  if (principal === null) return new UnauthorizedError(`unknown token; ${HOW}`)
  if (principal.access !== 'admin') {
    return new ForbiddenError(`token '${principal.name}' has ${principal.access} access; the routing table needs admin`)
  }
  return null
}
