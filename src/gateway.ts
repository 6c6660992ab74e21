// The gateway as one object: config in, listeners and upstream connections out.
// Construction does no I/O; start() listens and connects; stop() drains and closes.
// main.ts (the process) and the tests both use this.

import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
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
import { acceptFast, anyHost, createDataApp, createFastDataHandler, type DataPlaneDeps } from './http/data-plane.js'
import { installFastLane, type FastLaneOptions } from './http/fast-lane.js'
import { corsPolicy, type CorsPolicy } from './http/cors.js'
import { createOpsApp } from './http/ops-plane.js'
import { endSseStream, openStreamCount } from './http/sse.js'
import type { ConnectionTracker } from './http/drain.js'
import { createHttpServer } from './http/server.js'
import { RoutingTable } from './routing/table.js'
import { createLogger } from './telemetry/logger.js'
import { GatewayMetrics } from './telemetry/metrics.js'
import { subscribeLogs } from './telemetry/log-events.js'
import { subscribeTracing } from './telemetry/tracing.js'
import { UpstreamPool, type PooledEndpoint } from './upstream/pool.js'
import { HEALTH_DEFAULTS, HealthChecker, type HealthChange, type HealthTarget } from './resilience/health-checker.js'
import { Router } from './routing/router.js'
import { diffInstances } from './routing/table-diff.js'
import { RESILIENCE_DEFAULTS } from './resilience/defaults.js'
import { withTimer } from './timeout.js'
import { replicaOffset } from './routing/select.js'
import { liveRoutes } from './routing/routes-view.js'
import { ByteBudget } from './resilience/byte-budget.js'

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
  readonly metrics: GatewayMetrics
  readonly logger: Logger
  readonly pool: UpstreamPool
  readonly router: Router
  /** Memory held by all requests together (limits.inflightBytes). */
  readonly budget: ByteBudget
  private readonly health: HealthChecker
  private config: GatewayConfig
  private tokens: TokenStore
  /** Per endpoint, the last connection failure logged (until the connection is ready again). */
  private readonly connectFailures = new Map<string, string>()
  /** The same per endpoint for the connections of the Redis users tokens run as, by user. */
  private readonly userFailures = new Map<string, Map<string, string>>()
  private dataServer: Server | null = null
  private opsServer: Server | null = null
  private watcher: ConfigWatcher | null = null
  private shuttingDown = false
  private stopping: Promise<void> | null = null
  /** Ends the shutdown delay early; set only while the delay runs. */
  private endDelay: (() => void) | null = null
  /** The data connections being drained; set only during the drain. */
  private draining: ConnectionTracker | null = null
  private kubernetes: KubernetesSource | null = null
  private synced = false

  constructor(private readonly opts: GatewayOptions) {
    this.config = opts.config
    this.logger = opts.logger ?? createLogger(opts.config.log.level)
    this.tokens = new TokenStore(opts.config.auth.tokens)
    this.budget = new ByteBudget(opts.config.limits.inflightBytes)
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
        aclUsers: opts.config.redis.aclUsers,
        maxReplyBytes: opts.config.limits.maxReplyBytes,
      },
      {
        added: (ep) => this.health.add(this.healthTarget(ep)),
        removed: (ep) => {
          this.connectFailures.delete(ep.id)
          this.userFailures.delete(ep.id)
          this.health.remove(ep.id)
        },
        // Check at once on (re)connect, so roles are known before the first interval passes.
        ready: (ep) => {
          this.connectFailures.delete(ep.id)
          void this.health.checkNow(ep.id)
        },
        closed: (ep, reason) => {
          this.health.markDown(ep.id, `connection closed: ${reason}`)
          // Once per distinct reason while it lasts: a bad certificate or password says so in the
          // logs without a line per reconnect attempt.
          if (this.connectFailures.get(ep.id) === reason) return
          this.connectFailures.set(ep.id, reason)
          this.logger.warn({ endpoint: ep.id, reason }, 'Redis connection closed or could not be made; reconnecting')
        },
        breaker: (ep, from, to, reason) =>
          this.events.emit('breaker', { instances: [...ep.instances], endpoint: ep.id, from, to, reason }),
        fault: (ep, error) => this.events.emit('fault', { where: 'redis_connection', error, endpoint: ep.id }),
        subscriberFault: (ep, error) => this.events.emit('fault', { where: 'redis_subscriber', error, endpoint: ep.id }),
        userClosed: (ep, user, reason) => {
          let seen = this.userFailures.get(ep.id)
          if (seen === undefined) this.userFailures.set(ep.id, (seen = new Map()))
          if (seen.get(user) === reason) return
          seen.set(user, reason)
          this.logger.warn({ endpoint: ep.id, redisUser: user, reason }, 'Redis connection of a token user closed or could not be made; reconnecting')
        },
        // Learned command tables: one line per change, not per reconnect.
        commands: (ep, table, error) => {
          if (table !== null) {
            this.logger.info({ endpoint: ep.id, commands: table.specs.size, moduleCommands: table.moduleCommands, fingerprint: table.fingerprint }, 'learned the Redis command table')
          } else if (error !== null) {
            this.logger.warn({ endpoint: ep.id, reason: error.message }, 'cannot read the Redis command table (COMMAND INFO); commands are classified with the built-in table')
          }
        },
        acl: (ep, state) => {
          if (state.kind === 'unmanaged') {
            this.logger.warn(
              { endpoint: ep.id, reason: state.reason },
              'cannot create Redis ACL users on this endpoint: tokens run as the gateway user, and scripts and functions are refused to non-admin tokens',
            )
          } else if (state.kind === 'managed') {
            this.logger.info(
              { endpoint: ep.id, users: Object.values(state.users).map((u) => u.name) },
              'Redis ACL users for token levels are in place',
            )
          }
        },
      },
    )
    this.router = new Router(this.pool, {
      maxInflightPerEndpoint: RESILIENCE_DEFAULTS.maxInflightPerEndpoint,
      maxEjectionPercent: RESILIENCE_DEFAULTS.maxEjectionPercent,
      zone: opts.runtime?.zone ?? null,
    })
    // Metrics off: nothing subscribes, so requests build no metric events at all.
    this.metrics = new GatewayMetrics({ defaultMetrics: opts.config.metrics.enabled })
    if (opts.config.metrics.enabled) this.metrics.subscribe(this.events)
    subscribeLogs(this.events, this.logger)
    if (opts.tracer !== undefined) subscribeTracing(this.events, opts.tracer)
    this.table.onChange((snap, _prev, change) => {
      this.pool.apply(change)
      this.router.pruneChange(snap, change)
      if (this.events.has('instanceChange')) for (const e of diffInstances(change)) this.events.emit('instanceChange', e)
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
        const conn = ep.client.connection
        const reads = conn.reads
        const [role, repl] = await withTimer(Promise.all([ep.client.role(), ep.client.replication()]), timeoutMs, () => {
          // Nothing at all came back meanwhile: the connection is stalled; reset it (it reconnects).
          conn.timedOut(reads)
          return new Error(`health check of ${ep.id} timed out after ${timeoutMs} ms`)
        })
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
    if (prev.http.fastLane !== cfg.http.fastLane) {
      this.logger.warn({ key: 'http.fastLane' }, "config key 'http.fastLane' changed; it takes effect after a restart")
    }
    if (JSON.stringify(prev.http.cors) !== JSON.stringify(cfg.http.cors)) {
      this.logger.warn({ key: 'http.cors' }, "config key 'http.cors' changed; it takes effect after a restart")
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
    const dataDeps: DataPlaneDeps = {
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
      budget: this.budget,
      maxReplyBytes: this.config.limits.maxReplyBytes,
      knownEndpoint: (id) => this.pool.get(id) !== undefined,
      maxArgs: this.config.limits.maxArgs,
      maxCommands: this.config.limits.maxCommands,
    }
    const cors = corsPolicy(this.config.http.cors.origins, this.config.http.clientIdHeader)
    const dataApp = createDataApp(dataDeps, cors)
    const opsApp = createOpsApp({
      registry: this.config.metrics.enabled ? this.metrics.registry : null,
      readiness: this,
      routes: liveRoutes({ table: this.table, pool: this.pool, router: this.router, zone: this.opts.runtime?.zone ?? null }),
      flushEvents: this.events.flush,
    })
    const limits = this.config.limits
    const fastLane = this.config.http.fastLane
      ? {
          ...createFastDataHandler(dataDeps),
          accept: acceptFast,
          maxBodyBytes: limits.maxBodyBytes,
          cors,
          // A throw while handling a connection ended that connection; the lane serves on.
          onFault: (error: Error) => this.events.emit('fault', { where: 'http_connection', error, endpoint: null }),
        }
      : null
    this.dataServer = await listen(this.config.listen.data, dataApp.fetch, limits, fastLane, cors)
    this.opsServer = await listen(this.config.listen.ops, opsApp.fetch, limits, null, null)
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

  /**
   * Graceful shutdown (README "Graceful shutdown"). /readyz fails at once while the data plane
   * keeps serving for the delay (Kubernetes takes the pod out of the Service meanwhile); then the
   * data listener closes, responses on kept-alive connections carry `Connection: close`, SSE
   * streams end with final events, idle connections close after the keep-alive timeout, and
   * in-flight requests get at most the timeout before their connections are destroyed. Then health
   * checks, discovery and the config watch stop, Redis connections close, and the ops listener
   * last. Calling it again returns the same promise; hurryShutdown() is the second signal.
   */
  stop(opts: StopOptions = {}): Promise<void> {
    this.stopping ??= this.shutdown(opts)
    return this.stopping
  }

  /**
   * An operator's second SIGTERM/SIGINT: ends the shutdown delay at once or, during the drain,
   * closes idle connections at once (in-flight requests still get up to the timeout).
   */
  hurryShutdown(): 'delay skipped' | 'idle connections closed' | 'nothing to hurry' {
    if (this.endDelay) {
      this.endDelay()
      return 'delay skipped'
    }
    if (this.draining) {
      this.draining.closeIdleNow()
      return 'idle connections closed'
    }
    return 'nothing to hurry'
  }

  private async shutdown(opts: StopOptions): Promise<void> {
    const started = performance.now()
    const elapsedMs = (): number => Math.round(performance.now() - started)
    const legacy = opts.graceMs !== undefined
    // Read now, not at start: shutdown.* apply live from the watched config file.
    const delayMs = opts.delayMs ?? (legacy ? 0 : this.config.shutdown.delayMs)
    const timeoutMs = opts.timeoutMs ?? opts.graceMs ?? this.config.shutdown.timeoutMs
    const data = this.dataServer ? (trackers.get(this.dataServer) ?? null) : null
    const idleCloseMs = opts.idleCloseMs ?? (legacy ? 0 : (this.dataServer?.keepAliveTimeout ?? 5_000))
    const log = this.logger
    this.shuttingDown = true
    if (delayMs > 0) {
      log.info({ phase: 'delay', delayMs, inflight: data?.inflight ?? 0 }, 'shutdown: not ready; serving while endpoints update')
      const skipped = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          this.endDelay = null
          resolve(false)
        }, delayMs)
        this.endDelay = () => {
          clearTimeout(timer)
          this.endDelay = null
          resolve(true)
        }
      })
      if (skipped) log.info({ phase: 'delay', elapsedMs: elapsedMs() }, 'shutdown: delay cut short by a second signal')
    }
    if (data) {
      this.draining = data
      log.info(
        { phase: 'drain', timeoutMs, idleCloseMs, inflight: data.inflight, connections: data.connections, streams: openStreamCount() },
        'shutdown: stopped accepting; draining in-flight requests',
      )
      const r = await data.drain({ idleCloseMs, timeoutMs, onResponse: (res) => endSseStream(res, 'gateway shutting down') })
      this.draining = null
      if (r.cut > 0) log.warn({ phase: 'drain', ...r }, `shutdown: ${r.cut} request(s) still in flight after shutdown.timeout were cut`)
      else log.info({ phase: 'drain', ...r }, 'shutdown: in-flight requests done; data connections closed')
    }
    this.watcher?.stop()
    this.health.stop()
    await this.kubernetes?.stop()
    log.info({ phase: 'discovery' }, 'shutdown: health checks, discovery and config watch stopped')
    const endpoints = this.pool.size
    await this.pool.stop()
    log.info({ phase: 'redis', endpoints }, 'shutdown: Redis connections closed')
    const ops = this.opsServer ? trackers.get(this.opsServer) : undefined
    // Probes and scrapes are short; nobody waits on the ops port for long.
    await ops?.drain({ idleCloseMs: 0, timeoutMs: Math.min(timeoutMs, OPS_CLOSE_MS) })
    log.info({ phase: 'done', elapsedMs: elapsedMs() }, 'shutdown complete')
  }
}

export interface StopOptions {
  /** Not ready but still serving this long before the data listener closes; default `shutdown.delay`. */
  readonly delayMs?: number
  /** In-flight requests get at most this long once the listener is closed; default `shutdown.timeout`. */
  readonly timeoutMs?: number
  /** Idle connections close once idle this long; default the data server's keep-alive timeout (see http/drain.ts). */
  readonly idleCloseMs?: number
  /** The older form, for in-process tests: no delay, `timeoutMs = graceMs`, idle connections closed at once. */
  readonly graceMs?: number
}

/** Bound for the ops listener's last requests at the very end of a shutdown. */
const OPS_CLOSE_MS = 1_000

/** Connection bookkeeping of each listener, attached before it accepts anything. */
const trackers = new WeakMap<Server, ConnectionTracker>()

type FastLaneSetup = ReturnType<typeof createFastDataHandler> & Pick<FastLaneOptions, 'accept' | 'maxBodyBytes' | 'onFault' | 'cors'>

function listen(
  address: string,
  fetch: (req: Request, env: never) => Response | Promise<Response>,
  limits: GatewayConfig['limits'],
  fastLane: FastLaneSetup | null,
  cors: CorsPolicy | null,
): Promise<Server> {
  const { host, port } = parseListenAddress(address)
  return new Promise((resolve, reject) => {
    // A request the adapter cannot turn into a fetch Request (a backslash in the path...) gets a
    // JSON 400 like every other error, instead of the adapter's empty 400; any Host is taken.
    const listener = anyHost(getRequestListener(fetch as never, {
      errorHandler: (err) =>
        new Response(JSON.stringify({ error: `BADREQUEST ${err instanceof Error ? err.message : 'malformed request'}` }), {
          status: 400,
          headers: { 'content-type': 'application/json', 'upstash-sync-token': '' },
        }),
    }))
    const http = { maxHeaderBytes: limits.maxHeaderBytes, maxHeaders: limits.maxHeaders, writeTimeoutMs: limits.writeTimeoutMs }
    const { server, tracker } = createHttpServer(listener, cors === null ? http : { ...http, cors })
    server.listen(port, host)
    trackers.set(server, tracker)
    if (fastLane !== null) installFastLane(server, { ...fastLane, ...http, tracker })
    server.once('error', reject)
    server.once('listening', () => {
      server.off('error', reject)
      resolve(server)
    })
  })
}
