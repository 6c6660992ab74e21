// The gateway as one object: config in, listeners and upstream connections out.
// Construction does no I/O; start() listens and connects; stop() drains and closes.
// main.ts (the process) and the tests both use this.

import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import type { Tracer } from '@opentelemetry/api'
import type { Logger } from 'pino'
import { parseListenAddress, type GatewayConfig } from './config/schema.js'
import { ConfigWatcher } from './config/watch.js'
import { STATIC_SOURCE, staticInstances } from './discovery/static.js'
import { KubernetesSource, loadKubeConfig } from './discovery/kubernetes/source.js'
import type { RuntimeEnv } from './config/load.js'
import { EventHub } from './events.js'
import { TokenStore } from './http/auth.js'
import { createDataApp } from './http/data-plane.js'
import { createOpsApp } from './http/ops-plane.js'
import { openStreams } from './http/sse.js'
import { RoutingTable } from './routing/table.js'
import { createLogger } from './telemetry/logger.js'
import { GatewayMetrics } from './telemetry/metrics.js'
import { subscribeLogs } from './telemetry/log-events.js'
import { UpstreamPool, type PooledEndpoint } from './upstream/pool.js'
import { HEALTH_DEFAULTS, HealthChecker, type HealthChange, type HealthTarget } from './resilience/health-checker.js'
import { Router } from './routing/router.js'
import { RESILIENCE_DEFAULTS } from './resilience/defaults.js'
import { withTimer } from './timeout.js'
import { replicaOffset } from './routing/select.js'

/**
 * A request ends at most this long after its command timeout: covers the connect wait and a
 * command queued behind a stalled auto-pipeline batch (whose own timer starts only when sent).
 */
const DEADLINE_MARGIN_MS = 250

export interface GatewayOptions {
  readonly config: GatewayConfig
  /** Process settings outside the config file (zone, kubeconfig); default: none. */
  readonly runtime?: RuntimeEnv
  /** Watch this config file and apply valid edits live. */
  readonly configPath?: string
  readonly logger?: Logger
  /** Extra environment for config reloads (tests); defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv
  /** Trace requests with this tracer (spec §7 spans); absent = tracing off, at no cost. */
  readonly tracer?: Tracer
}

export class Gateway {
  readonly events = new EventHub()
  readonly table = new RoutingTable()
  readonly metrics = new GatewayMetrics()
  readonly logger: Logger
  readonly pool: UpstreamPool
  readonly router: Router
  private readonly health: HealthChecker
  private config: GatewayConfig
  private tokens: TokenStore
  private dataServer: Server | null = null
  private opsServer: Server | null = null
  private watcher: ConfigWatcher | null = null
  private shuttingDown = false
  private kubernetes: KubernetesSource | null = null
  private synced = false

  constructor(private readonly opts: GatewayOptions) {
    this.config = opts.config
    this.logger = opts.logger ?? createLogger(opts.config.log.level)
    this.tokens = new TokenStore(opts.config.auth.tokens)
    const health = opts.config.health
    this.health = new HealthChecker({
      ...HEALTH_DEFAULTS,
      intervalMs: health.intervalMs,
      random: Math.random,
      now: () => Date.now(),
      onChange: (t, change) => this.onHealthChange(t.id, change),
    })
    this.pool = new UpstreamPool(
      {
        username: opts.config.redis.username,
        password: opts.config.redis.password,
        tls: opts.config.redis.tls,
        commandTimeoutMs: opts.config.redis.commandTimeoutMs,
        connectTimeoutMs: opts.config.redis.connectTimeoutMs,
      },
      {
        added: (ep) => this.health.add(this.healthTarget(ep)),
        removed: (ep) => this.health.remove(ep.id),
        // Check at once on (re)connect, so roles are known before the first interval passes.
        ready: (ep) => void this.health.checkNow(ep.id),
        closed: (ep) => this.health.markDown(ep.id, 'connection closed'),
        breaker: (ep, from, to, reason) =>
          this.events.emit('breaker', { instances: [...ep.instances], endpoint: ep.id, from, to, reason }),
      },
    )
    this.router = new Router(this.pool, {
      maxInflightPerEndpoint: RESILIENCE_DEFAULTS.maxInflightPerEndpoint,
      maxEjectionPercent: RESILIENCE_DEFAULTS.maxEjectionPercent,
      zone: opts.runtime?.zone ?? null,
    })
    this.metrics.subscribe(this.events)
    subscribeLogs(this.events, this.logger)
    if (opts.tracer !== undefined) subscribeTracing(this.events, opts.tracer)
    this.table.onChange((snap) => {
      this.pool.sync(snap)
      this.router.prune(snap)
      this.events.emit('table', { instances: snap.instances.size, groups: snap.groups.size, version: snap.version })
    })
  }

  private startKubernetes(): void {
    const k = this.config.discovery.kubernetes
    if (k === null) return
    const kubeConfig = loadKubeConfig(this.opts.runtime?.kubeconfig ?? null)
    this.kubernetes = new KubernetesSource({
      kubeConfig,
      namespaces: k.namespaces,
      servicePrefix: k.servicePrefix,
      apply: (u) => {
        this.table.apply(u)
        if (u.type === 'upsert') {
          for (const e of u.instance.annotationErrors) {
            this.events.emit('annotationError', { instance: u.instance.name, source: u.instance.source, key: e.key, message: e.message })
          }
        }
      },
      onEvent: (e) => this.events.emit('discovery', { source: 'kubernetes', ...e }),
    })
    this.kubernetes.start()
  }

  private healthTarget(ep: PooledEndpoint): HealthTarget {
    const timeoutMs = this.config.health.timeoutMs
    return {
      id: ep.id,
      state: ep.state,
      role: async () => {
        // ROLE for role, offset and link; INFO replication for the replication id (sync tokens).
        const [role, repl] = await withTimer(
          Promise.all([ep.client.role(), ep.client.replication()]),
          timeoutMs,
          () => new Error(`health check of ${ep.id} timed out after ${timeoutMs} ms`),
        )
        // A new replication history (restart without persistence, failover): offsets restart, so
        // the old ones must not linger as if they were ahead.
        if (repl.replId !== ep.state.replId) {
          ep.state.offset = 0
          ep.state.replicaAcks.clear()
        }
        ep.state.replId = repl.replId
        return role
      },
    }
  }

  private onHealthChange(id: string, change: HealthChange): void {
    const ep = this.pool.get(id)
    if (!ep) return
    const instances = [...ep.instances]
    switch (change.kind) {
      case 'up':
      case 'down':
        for (const instance of instances) {
          this.events.emit('endpointState', {
            instance,
            endpoint: id,
            up: change.kind === 'up',
            reason: change.kind === 'up' ? 'health check passed' : change.reason,
          })
        }
        break
      case 'role':
        // Failures seen under the old role (READONLY on writes to a demoted primary) say nothing
        // about the endpoint in its new role.
        ep.state.breaker.reset('role-changed')
        this.events.emit('endpointRole', { instances, endpoint: id, from: change.from, to: change.to })
        break
      case 'checked':
        if (ep.state.role !== 'replica') break
        for (const instance of instances) {
          const route = this.table.current.instances.get(instance)
          const primary = route ? this.router.primaryOf(route) : null
          if (!primary) continue
          // Lag is measured at check time (see EndpointState.primaryOffsetAtCheck).
          ep.state.primaryOffsetAtCheck = primary.state.offset
          const lag = Math.max(0, primary.state.offset - replicaOffset({ spec: ep.client.spec, state: ep.state }, primary))
          this.events.emit('replicaLag', { instance, endpoint: id, bytes: lag })
        }
        break
    }
  }

  get dataAddress(): AddressInfo {
    return this.dataServer?.address() as AddressInfo
  }

  get opsAddress(): AddressInfo {
    return this.opsServer?.address() as AddressInfo
  }

  get dataUrl(): string {
    const a = this.dataAddress
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
  }

  get opsUrl(): string {
    const a = this.opsAddress
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
  }

  currentConfig(): GatewayConfig {
    return this.config
  }

  /** Applies the parts of a config that can change live: tokens, groups, static instances. */
  applyConfig(cfg: GatewayConfig): void {
    const prev = this.config
    this.config = cfg
    this.tokens = new TokenStore(cfg.auth.tokens)
    this.table.setGroupConfig(cfg.groups)
    this.table.apply({ type: 'reset', source: STATIC_SOURCE, instances: staticInstances(cfg) })
    for (const spec of staticInstances(cfg)) {
      for (const e of spec.annotationErrors) {
        this.events.emit('annotationError', { instance: spec.name, source: spec.source, key: e.key, message: e.message })
      }
    }
    const restartOnly = ['listen', 'redis', 'limits', 'log'] as const
    for (const k of restartOnly) {
      if (JSON.stringify(prev[k]) !== JSON.stringify(cfg[k]) && prev !== cfg) {
        this.logger.warn({ key: k }, `config key '${k}' changed; it takes effect after a restart`)
      }
    }
    this.synced = true
  }

  notReadyReason(): string | null {
    if (this.shuttingDown) return 'shutting down'
    if (!this.synced) return 'first discovery sync not done'
    if (this.kubernetes !== null && !this.kubernetes.synced) return 'first Kubernetes sync not done'
    if (!this.dataServer?.listening) return 'data listener not up'
    return null
  }

  async start(): Promise<void> {
    this.applyConfig(this.config)
    this.pool.start()
    this.startKubernetes()
    this.health.start()
    const dataApp = createDataApp({
      table: this.table,
      router: this.router,
      dispatch: {
        router: this.router,
        events: this.events,
        commandTimeoutMs: this.config.redis.commandTimeoutMs,
        deadlineMarginMs: DEADLINE_MARGIN_MS,
        maxPendingPerEndpoint: RESILIENCE_DEFAULTS.maxPendingPerEndpoint,
      },
      clientIdHeader: this.config.http.clientIdHeader,
      tokens: () => this.tokens,
      events: this.events,
      logger: this.logger,
      maxBodyBytes: this.config.limits.maxBodyBytes,
    })
    const opsApp = createOpsApp({ registry: this.metrics.registry, readiness: this })
    this.dataServer = await listen(this.config.listen.data, dataApp.fetch, this.config.limits.maxHeaderBytes)
    this.opsServer = await listen(this.config.listen.ops, opsApp.fetch, this.config.limits.maxHeaderBytes)
    if (this.opts.configPath) {
      this.watcher = new ConfigWatcher({
        path: this.opts.configPath,
        ...(this.opts.env ? { env: this.opts.env } : {}),
        logger: this.logger,
        initial: this.config,
        onChange: (cfg) => {
          this.applyConfig(cfg)
          this.events.emit('configReload', { ok: true })
        },
        onReject: (err) => this.events.emit('configReload', { ok: false, error: err.message }),
      })
      this.watcher.start()
    }
    this.logger.info({ data: this.dataUrl, ops: this.opsUrl }, 'redis-gateway listening')
  }

  /** Stops accepting, ends SSE streams, waits for in-flight requests (bounded), closes Redis connections. */
  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    this.shuttingDown = true
    this.watcher?.stop()
    this.health.stop()
    await this.kubernetes?.stop()
    const grace = opts.graceMs ?? 10_000
    for (const s of [...openStreams]) s.end('gateway shutting down')
    await Promise.all([closeServer(this.dataServer, grace), closeServer(this.opsServer, grace)])
    await this.pool.stop()
  }
}

function listen(address: string, fetch: (req: Request, env: never) => Response | Promise<Response>, maxHeaderBytes: number): Promise<Server> {
  const { host, port } = parseListenAddress(address)
  return new Promise((resolve, reject) => {
    // A request the adapter cannot turn into a fetch Request (a backslash in the path, a bad Host
    // header...) gets a JSON 400 like every other error, instead of the adapter's empty 400.
    const listener = getRequestListener(fetch as never, {
      errorHandler: (err) =>
        new Response(JSON.stringify({ error: `BADREQUEST ${err instanceof Error ? err.message : 'malformed request'}` }), {
          status: 400,
          headers: { 'content-type': 'application/json', 'upstash-sync-token': '' },
        }),
    })
    const server = createServer({ maxHeaderSize: maxHeaderBytes }, listener)
    server.listen(port, host)
    // A request (headers and body) must arrive within 30 s, headers within 10 s: a client that
    // trickles bytes cannot hold a socket and its buffers for Node's default 5 minutes.
    server.requestTimeout = 30_000
    server.headersTimeout = 10_000
    trackSockets(server)
    const sockets = new Set<Socket>()
    socketsByServer.set(server, sockets)
    server.on('connection', (socket: Socket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
    server.once('error', reject)
    server.once('listening', () => {
      server.off('error', reject)
      resolve(server)
    })
    // Malformed requests and oversized headers get a JSON error like every other reply.
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy()
        return
      }
      const status =
        err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
      const message =
        status === 431
          ? `TOOLARGE request line and headers exceed the limit of ${maxHeaderBytes} bytes`
          : status === 408
            ? 'TIMEOUT request not received in time'
            : 'BADREQUEST malformed HTTP request'
      const body = JSON.stringify({ error: message })
      // A reply to HEAD has no body (the headers still say how long it would be).
      const head = (err as { rawPacket?: Buffer }).rawPacket?.toString('latin1', 0, 5) === 'HEAD '
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nupstash-sync-token: \r\nconnection: close\r\n\r\n${head ? '' : body}`,
      )
    })
  })
}

// Requests in flight per socket, so shutdown can close every socket the moment it has nothing in
// flight: Node's closeIdleConnections() misses sockets that never carried a request (clients such
// as undici open one ahead of need), which would hold server.close() for the whole grace period.
const inflightBySocket = new WeakMap<Socket, number>()
const stopping = new WeakSet<Server>()

function trackSockets(server: Server): void {
  server.on('connection', (socket: Socket) => inflightBySocket.set(socket, 0))
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket
    inflightBySocket.set(socket, (inflightBySocket.get(socket) ?? 0) + 1)
    // While stopping, tell keep-alive clients this connection ends with this reply.
    if (stopping.has(server)) res.setHeader('connection', 'close')
    res.once('close', () => {
      const n = (inflightBySocket.get(socket) ?? 1) - 1
      inflightBySocket.set(socket, n)
      if (n === 0 && stopping.has(server)) socket.destroySoon()
    })
  })
}

function closeServer(server: Server | null, graceMs: number): Promise<void> {
  if (!server) return Promise.resolve()
  return new Promise((resolve) => {
    stopping.add(server)
    const timer = setTimeout(() => server.closeAllConnections(), graceMs)
    timer.unref()
    server.close(() => {
      clearTimeout(timer)
      resolve()
    })
    // Ask keep-alive clients to go away, and drop sockets with nothing in flight now.
    server.closeIdleConnections()
    for (const socket of openSockets(server)) {
      if ((inflightBySocket.get(socket) ?? 0) === 0) socket.destroySoon()
    }
  })
}

const socketsByServer = new WeakMap<Server, Set<Socket>>()
function openSockets(server: Server): Set<Socket> {
  return socketsByServer.get(server) ?? new Set()
}
