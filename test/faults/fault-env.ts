// What the fault-injection tests share: the test bed (real Redis servers, fault proxies in front of
// them, the gateway in front of those, all stopped after the file's tests), a keep-alive HTTP
// client whose sockets the test owns (so it can close them and count what the gateway still
// holds), closed-loop load generators with per-request status, error code and latency, latency
// percentiles, and a reader for the gateway's Prometheus /metrics. Not a test file itself.

import { execFile } from 'node:child_process'
import http from 'node:http'
import { promisify } from 'node:util'
import { afterAll } from 'vitest'
import type { PooledEndpoint } from '../../src/upstream/pool.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { startGateway, WRITE_TOKEN, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js'
import { startRedis, type RedisServer, type StartRedisOptions } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { startTopology, type Topology } from '../integration/replication-env.js'

const run = promisify(execFile)

/** The gateway settings every fault test uses: fast health checks and short timeouts. */
export const COMMAND_TIMEOUT_MS = 500
export const CONNECT_TIMEOUT_MS = 300
/** The gateway ends every request by commandTimeout + this margin (its DEADLINE_MARGIN_MS). */
export const DEADLINE_MARGIN_MS = 250
export const FAULT_GATEWAY_EXTRA = {
  health: { interval: '200ms', timeout: '300ms' },
  redis: { commandTimeout: `${COMMAND_TIMEOUT_MS}ms`, connectTimeout: `${CONNECT_TIMEOUT_MS}ms` },
} as const
/** What the tests accept as "no request hangs": the deadline plus 1 s of slack for a busy machine. */
export const MAX_SETTLE_MS = COMMAND_TIMEOUT_MS + 1_000

// ---------------------------------------------------------------------------------------
// The test bed.

/** Annotation keys: this prefix and the setting, e.g. `${A}read-policy`. */
export const A = 'redis-gateway.io/'

/** What the gateway can tell apart: a redis-server or a fault proxy, by its port. */
type Target = { readonly port: number }

/**
 * Servers, proxies and the gateway of one test file. Whatever is started through it is stopped
 * after the file's tests (faultBed registers the afterAll): the client's sockets closed, then
 * the gateway, the proxies, and the servers, last started first.
 */
export interface FaultBed {
  /** A keep-alive client for the file's requests (tests that count sockets bring their own). */
  readonly client: HttpClient
  /** The gateway, once gateway() has resolved. */
  readonly gw: TestGateway
  /** A primary and two replicas of it, fully synced. */
  topology(): Promise<Topology>
  redis(opts?: StartRedisOptions): Promise<RedisServer>
  /** A fault proxy in front of `target`, healthy until the test injects a fault. */
  proxy(target: { readonly host?: string; readonly port: number }): Promise<FaultProxy>
  /** The gateway with the fault settings (FAULT_GATEWAY_EXTRA) unless `opts.extra` says otherwise. */
  gateway(opts: TestGatewayOptions): Promise<TestGateway>
  /** The gateway's endpoint for a server or proxy. */
  endpointOf(target: Target): PooledEndpoint
  /** Waits until the gateway's endpoint for every target is `ready`. */
  waitForEndpoints(targets: readonly Target[], ready: (ep: PooledEndpoint) => boolean, message: string, timeoutMs?: number): Promise<void>
}

/** Registers the file's afterAll; start what the file needs through the bed in its beforeAll. */
export function faultBed(): FaultBed {
  const servers: { stop(): Promise<void> }[] = []
  const proxies: FaultProxy[] = []
  let gateway: TestGateway | undefined
  const bed: FaultBed = {
    client: new HttpClient(),
    get gw(): TestGateway {
      if (!gateway) throw new Error('the fault bed has no gateway yet')
      return gateway
    },
    async topology() {
      const topo = await startTopology()
      servers.push(topo)
      return topo
    },
    async redis(opts) {
      const server = await startRedis(opts)
      servers.push(server)
      return server
    },
    async proxy(target) {
      const proxy = await startFaultProxy(target)
      proxies.push(proxy)
      return proxy
    },
    async gateway(opts) {
      gateway = await startGateway({ ...opts, extra: opts.extra ?? FAULT_GATEWAY_EXTRA })
      return gateway
    },
    endpointOf(target) {
      const ep = [...bed.gw.gateway.pool.all()].find((e) => e.client.spec.port === target.port)
      if (!ep) throw new Error(`the gateway has no endpoint on port ${target.port}`)
      return ep
    },
    async waitForEndpoints(targets, ready, message, timeoutMs = 10_000) {
      await waitFor(() => targets.every((t) => ready(bed.endpointOf(t))), { timeoutMs, intervalMs: 20, message })
    },
  }
  afterAll(async () => {
    bed.client.close()
    await gateway?.stop()
    await Promise.all(proxies.map((p) => p.close()))
    for (const server of servers.reverse()) await server.stop()
  })
  return bed
}

/** Healthy, known as a replica, and linked to its primary. */
export const linkedReplica = (ep: PooledEndpoint): boolean => ep.state.healthy && ep.state.role === 'replica' && ep.state.link === 'connected'

export const breakerClosed = (ep: PooledEndpoint): boolean => ep.state.breaker.state.kind === 'closed'

/** Writes `key` = `value` on the primary and waits until both replicas have it. */
export async function seed(topo: Topology, key: string, value: string): Promise<void> {
  const pc = topo.primary.client()
  try {
    await pc.set(key, value)
  } finally {
    pc.disconnect()
  }
  for (const r of [topo.r1, topo.r2]) {
    const rc = r.client()
    try {
      await waitFor(async () => (await rc.get(key)) === value, { message: `replica ${r.port} to have ${key}` })
    } finally {
      rc.disconnect()
    }
  }
}

// ---------------------------------------------------------------------------------------
// Requests and load.

export interface Result {
  /** HTTP status; 0 when the request failed on the client side (see `code`). */
  readonly status: number
  /** 'OK' for 200, else the stable upper-case code the error body starts with (TIMEOUT, NOENDPOINT...). */
  readonly code: string
  /** `result` of a 200 reply. */
  readonly result: unknown
  /** `error` of a failed reply, or the client-side error. */
  readonly error: string | null
  /** The Retry-After header, if any. */
  readonly retryAfter: string | null
  readonly ms: number
  /** performance.now() when the request was sent. */
  readonly startedAt: number
}

/**
 * A JSON client over node:http with its own keep-alive agent, so a test can close every client
 * socket (close()) and then check that the gateway holds none. `timeoutMs` is a client-side
 * guard: a request still unanswered then is recorded as status 0, code 'HANG'.
 */
export class HttpClient {
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096 })

  constructor(
    private readonly token = WRITE_TOKEN,
    private readonly timeoutMs = 10_000,
  ) {}

  post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Result> {
    const payload = JSON.stringify(body)
    const startedAt = performance.now()
    return new Promise((resolve) => {
      let settled = false
      const done = (r: Omit<Result, 'ms' | 'startedAt'>): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve({ ...r, ms: performance.now() - startedAt, startedAt })
      }
      const req = http.request(
        url,
        {
          method: 'POST',
          agent: this.agent,
          headers: {
            authorization: `Bearer ${this.token}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('error', (e) => done({ status: 0, code: 'CLIENT', result: null, error: e.message, retryAfter: null }))
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            let parsed: { result?: unknown; error?: string } | null = null
            try {
              parsed = JSON.parse(text) as { result?: unknown; error?: string }
            } catch {
              // Not JSON: recorded as the raw text below.
            }
            const status = res.statusCode ?? 0
            const error = parsed?.error ?? (status === 200 ? null : text)
            const code = status === 200 ? 'OK' : (/^[A-Z][A-Z_]+/.exec(error ?? '')?.[0] ?? 'REDIS')
            const ra = res.headers['retry-after']
            done({ status, code, result: parsed?.result ?? null, error, retryAfter: typeof ra === 'string' ? ra : null })
          })
        },
      )
      const timer = setTimeout(() => {
        done({ status: 0, code: 'HANG', result: null, error: `no reply within ${this.timeoutMs} ms`, retryAfter: null })
        req.destroy()
      }, this.timeoutMs)
      req.on('error', (e) => done({ status: 0, code: 'CLIENT', result: null, error: e.message, retryAfter: null }))
      req.end(payload)
    })
  }

  /** Opens `n` keep-alive sockets ahead of a burst (n concurrent requests to `url`), so the burst measures the gateway, not TCP setup. */
  async warm(url: string, n: number): Promise<void> {
    await Promise.all(Array.from({ length: n }, () => this.post(url, ['PING'])))
  }

  /** Closes every socket of this client (idle and busy). */
  close(): void {
    this.agent.destroy()
  }
}

export interface LoadOptions {
  /** Concurrent closed-loop clients. */
  readonly concurrency: number
  /** Stop starting requests after this many (total)... */
  readonly count?: number
  /** ...or after this long, or when `until()` says so (whichever comes first). */
  readonly durationMs?: number
  readonly until?: () => boolean
  /** Pause of each client between its requests (pacing only). Default 0. */
  readonly pauseMs?: number
}

/**
 * Closed-loop load: `concurrency` clients each send a request, wait for its outcome, and send the
 * next, until the count, the duration or `until()` ends it. Resolves when every request settled.
 */
export async function runLoad(opts: LoadOptions, make: (i: number) => Promise<Result>): Promise<Result[]> {
  const out: Result[] = []
  const started = performance.now()
  let next = 0
  const more = (): boolean =>
    (opts.count === undefined || next < opts.count) &&
    (opts.durationMs === undefined || performance.now() - started < opts.durationMs) &&
    !(opts.until?.() ?? false)
  const worker = async (): Promise<void> => {
    while (more()) {
      const i = next++
      out.push(await make(i))
      if (opts.pauseMs) await sleep(opts.pauseMs)
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, worker))
  return out
}

/**
 * Load that runs until stop() is called, for scenarios where the test injects faults while
 * requests flow. `results` grows as requests settle; stop() resolves when all have settled.
 */
export function backgroundLoad(opts: Omit<LoadOptions, 'until'>, make: (i: number) => Promise<Result>): {
  readonly results: Result[]
  stop(): Promise<Result[]>
} {
  let stopped = false
  const results: Result[] = []
  const done = runLoad({ ...opts, until: () => stopped }, async (i) => {
    const r = await make(i)
    results.push(r)
    return r
  })
  return {
    results,
    async stop() {
      stopped = true
      await done
      return results
    },
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The q-quantile (0..1) of `values` by the nearest-rank method. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank]!
}

/** Counts of each `status code` pair, e.g. { '200 OK': 950, '504 TIMEOUT': 3 }. */
export function tally(results: readonly Result[]): Record<string, number> {
  const t: Record<string, number> = {}
  for (const r of results) {
    const k = `${r.status} ${r.code}`
    t[k] = (t[k] ?? 0) + 1
  }
  return t
}

export function maxMs(results: readonly Result[]): number {
  return results.reduce((m, r) => Math.max(m, r.ms), 0)
}

export function fmt(ms: number): string {
  return `${ms.toFixed(1)} ms`
}

// ---------------------------------------------------------------------------------------
// Prometheus text from the ops plane.

export async function scrape(opsUrl: string): Promise<string> {
  const res = await fetch(`${opsUrl}/metrics`)
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
  return res.text()
}

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of s.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]!] = m[2]!.replace(/\\(.)/g, '$1')
  return out
}

/**
 * The sum of every sample of `name` whose labels include `labels`; 0 when none matches, so a
 * counter never incremented reads 0.
 */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([^ ]+)/.exec(line)
    if (!m || m[1] !== name) continue
    const have = parseLabels(m[2] ?? '')
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3])
  }
  return sum
}

/** Value of one labelled gauge sample, or undefined when the series does not exist yet. */
export function gauge(text: string, name: string, labels: Record<string, string>): number | undefined {
  let found: number | undefined
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([^ ]+)/.exec(line)
    if (!m || m[1] !== name) continue
    const have = parseLabels(m[2] ?? '')
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) found = Number(m[3])
  }
  return found
}

// ---------------------------------------------------------------------------------------
// Sockets and server-side client counts.

/** Established TCP connections whose local port is `port` (server side of `port`), from `ss`. */
export async function establishedOnPort(port: number): Promise<number> {
  const { stdout } = await run('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`])
  return stdout.split('\n').filter((l) => l.trim() !== '').length
}

/** `connected_clients` of a redis-server, minus the helper's own INFO connection. */
export async function connectedClients(server: { info(section?: string): Promise<string> }): Promise<number> {
  const m = /connected_clients:(\d+)/.exec(await server.info('clients'))
  return Number(m?.[1]) - 1
}
