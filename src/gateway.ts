// The gateway as one object, and its composition root: config in, listeners and upstream
// connections out. This file builds the parts and wires them together; what they do is in their
// own modules (listeners in http/listener.ts, readiness in http/lifecycle.ts, the stop in
// http/shutdown.ts, health check outcomes in upstream/health-events.ts, reload warnings in
// config/restart-only.ts). Construction does no I/O; start() listens and connects; stop() drains
// and closes. main.ts (the process) and the tests both use this. Everything requests share and
// remember is a field of the gateway, so two gateways in one process share nothing.

import type { AddressInfo } from 'node:net'
import type { Tracer } from '@opentelemetry/api'
import type { Logger } from 'pino'
import type { GatewayConfig } from './config/schema.js'
import { ConfigWatcher } from './config/watch.js'
import { STATIC_SOURCE, staticInstances } from './discovery/static.js'
import { instanceUpdates, type InstanceSpec } from './core/topology.js'
import type { KubernetesSource } from './discovery/kubernetes/source.js'
import type { RuntimeEnv } from './config/load.js'
import { EventHub, type ClusterTopologyEvent, type SlowClientReason } from './core/events.js'
import { TokenStore } from './http/auth.js'
import { acceptFast, createDataApp, createFastDataHandler, type DataPlaneDeps } from './http/data-plane.js'
import { listen, type HttpListener } from './http/listener.js'
import { corsPolicy } from './http/cors.js'
import { createOpsApp } from './http/ops-plane.js'
import { EventStreams } from './http/sse.js'
import { Lifecycle } from './http/lifecycle.js'
import { Shutdown, type StopOptions } from './http/shutdown.js'
import { RoutingTable } from './routing/table.js'
import { createLogger } from './telemetry/logger.js'
import { GatewayMetrics } from './telemetry/metrics.js'
import { subscribeLogs } from './telemetry/log-events.js'
import { subscribeTracing } from './telemetry/tracing.js'
import { UpstreamPool, waitingFor, type PooledEndpoint } from './upstream/pool.js'
import { HEALTH_DEFAULTS, HealthChecker } from './resilience/health-checker.js'
import { Router } from './selection/router.js'
import { diffInstances } from './routing/table-diff.js'
import { RESILIENCE_DEFAULTS } from './resilience/defaults.js'
import { CommandViews } from './routing/command-table.js'
import { ScriptShas } from './routing/scripts.js'
import { SyncTokens } from './routing/sync-token.js'
import { warnRestartOnly } from './config/restart-only.js'
import { healthTarget } from './upstream/health-probe.js'
import { onHealthChange } from './upstream/health-events.js'
import { PoolLogs } from './telemetry/pool-logs.js'
import { Deadlines } from './upstream/deadlines.js'
import { liveRoutes } from './http/routes-view.js'
import { ByteBudget } from './resilience/byte-budget.js'
import { ClusterManager, type ClusterInstance } from './upstream/cluster.js'
import { SlicedQueue } from './core/sliced.js'

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
  /**
   * The files `config` was read from, with their SHA-256 (loadConfig's onFileRead): the watcher then
   * parses the file again at start only if one changed since (a 5,000-instance file takes a while).
   */
  readonly configFiles?: ReadonlyMap<string, string | null>
  readonly logger?: Logger
  /** Extra environment for config reloads (tests); defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv
  /** Trace requests with this tracer (docs/observability.md, "Traces"); absent = tracing off, at no cost. */
  readonly tracer?: Tracer
}

/**
 * Milliseconds of background work per turn of the event loop (Gateway.background), about: what the
 * command tables' reads had alone (10 made the static start's longest turns 73-101 ms against
 * 65). A reconcile chunk is sized to about one slice.
 */
const BACKGROUND_SLICE_MS = 5

export class Gateway {
  readonly events = new EventHub()
  readonly table = new RoutingTable()
  readonly metrics: GatewayMetrics
  readonly logger: Logger
  readonly pool: UpstreamPool
  readonly router: Router<PooledEndpoint>
  /** Memory held by all requests together (limits.inflightBytes). */
  readonly budget: ByteBudget
  // What requests share and remember (see DataPlaneDeps).
  readonly commandViews = new CommandViews()
  readonly scripts = new ScriptShas()
  readonly streams = new EventStreams()
  readonly syncTokens = new SyncTokens()
  readonly deadlines = new Deadlines()
  /**
   * Start-up work that must not hold the event loop: the command tables' reads, and Kubernetes
   * discovery's reconcile chunks and the reports of what its lists brought. One budget per turn
   * for all of them, where each with a slice of its own made turns of their sum.
   */
  readonly background = new SlicedQueue({ sliceMs: BACKGROUND_SLICE_MS })
  /** Instances served as Redis Clusters (upstream/cluster.ts). */
  readonly clusters: ClusterManager
  readonly lifecycle: Lifecycle
  private readonly shutdown: Shutdown
  private readonly health: HealthChecker
  private config: GatewayConfig
  private tokens: TokenStore
  private dataServer: HttpListener | null = null
  private opsServer: HttpListener | null = null
  private watcher: ConfigWatcher | null = null
  private kubernetes: KubernetesSource | null = null

  constructor(private readonly opts: GatewayOptions) {
    this.config = opts.config
    this.logger = opts.logger ?? createLogger(opts.config.log.level)
    this.tokens = new TokenStore(opts.config.auth.tokens)
    this.budget = new ByteBudget(opts.config.limits.inflightBytes)
    const health = opts.config.health
    this.health = new HealthChecker({
      ...HEALTH_DEFAULTS,
      intervalMs: health.intervalMs,
      // Read at each scheduling: a reload applies at once.
      maxChecksPerSecond: () => this.config.health.maxChecksPerSecond,
      random: Math.random,
      now: () => Date.now(),
      onChange: (t, change) => onHealthChange(this, t.id, change),
    })
    const poolLogs = new PoolLogs(this.logger)
    this.pool = new UpstreamPool(
      {
        username: opts.config.redis.username,
        password: opts.config.redis.password,
        tls: opts.config.redis.tls,
        commandTimeoutMs: opts.config.redis.commandTimeoutMs,
        connectTimeoutMs: opts.config.redis.connectTimeoutMs,
        aclUsers: opts.config.redis.aclUsers,
        maxReplyBytes: opts.config.limits.maxReplyBytes,
        background: this.background,
      },
      {
        added: (ep) => this.health.add(healthTarget(ep, () => this.config.health.timeoutMs)),
        removed: (ep) => {
          poolLogs.removed(ep)
          this.health.remove(ep.id)
        },
        // Check at once on (re)connect, so roles are known before the first interval passes.
        ready: (ep) => {
          poolLogs.ready(ep)
          void this.health.checkNow(ep.id)
        },
        closed: (ep, reason) => {
          this.health.markDown(ep.id, `connection closed: ${reason}`)
          poolLogs.closed(ep, reason)
        },
        breaker: (ep, from, to, reason) => {
          // Requests fail there (READONLY after a failover, timeouts): what the endpoint is now
          // should not wait for its next scheduled check, which may be seconds away at scale.
          if (to === 'open') void this.health.checkNow(ep.id)
          this.events.emit('breaker', { instances: instancesUsing(ep), endpoint: ep.id, from, to, reason })
        },
        clusterMode: (ep, enabled) => this.clusters.clusterMode(ep, enabled),
        fault: (ep, error) => this.events.emit('fault', { where: 'redis_connection', error, endpoint: ep.id }),
        subscriberFault: (ep, error) => this.events.emit('fault', { where: 'redis_subscriber', error, endpoint: ep.id }),
        userClosed: (ep, user, reason) => poolLogs.userClosed(ep, user, reason),
        commands: (ep, table, error) => poolLogs.commands(ep, table, error),
        acl: (ep, state) => poolLogs.acl(ep, state),
      },
      {},
      undefined,
      { maxInflightPerEndpoint: opts.config.limits.maxInflightPerEndpoint, clock: this.deadlines.clock },
    )
    this.clusters = new ClusterManager({
      pool: this.pool,
      allowUndiscoveredNodes: opts.config.redis.allowUndiscoveredClusterNodes,
      tls: opts.config.redis.tls,
      onChange: (instance) => {
        const c = this.clusters.get(instance)
        if (c === undefined) return
        // Roles are known at once (a promoted replica takes writes without waiting for its check).
        for (const ep of c.nodes()) void this.health.checkNow(ep.id)
        this.events.emit('clusterTopology', { instance, kind: 'changed', ...clusterCounts(c), message: null })
      },
      onError: (instance, err) => {
        const c = this.clusters.get(instance)
        this.events.emit('clusterTopology', { instance, kind: 'error', ...(c ? clusterCounts(c) : NO_CLUSTER), message: err.message })
      },
      onRefused: (instance, refused) => {
        const c = this.clusters.get(instance)
        const message = refused.map((r) => `${r.id.slice(0, 8)} ${r.host}:${r.port ?? '?'}: ${r.reason}`).join('; ')
        this.events.emit('clusterTopology', { instance, kind: 'refused', ...(c ? clusterCounts(c) : NO_CLUSTER), message })
      },
    })
    this.router = new Router(this.pool, {
      // Selection prefers endpoints below it; the bound itself is the pool's slot queue.
      maxInflightPerEndpoint: opts.config.limits.maxInflightPerEndpoint,
      maxEjectionPercent: RESILIENCE_DEFAULTS.maxEjectionPercent,
      zone: opts.runtime?.zone ?? null,
    })
    // Metrics off: nothing subscribes, so requests build no metric events at all.
    this.metrics = new GatewayMetrics({ defaultMetrics: opts.config.metrics.enabled })
    if (opts.config.metrics.enabled) {
      this.metrics.subscribe(this.events)
      this.metrics.countStreams(() => this.streams.count)
      this.metrics.countWaiting(() => {
        let n = 0
        for (const ep of this.pool.all()) n += waitingFor(ep)
        return n
      })
    }
    this.streams.onSlowClient = () => this.events.emit('slowClient', { reason: 'sse_backlog' })
    subscribeLogs(this.events, this.logger)
    if (opts.tracer !== undefined) subscribeTracing(this.events, opts.tracer)
    this.table.onChange((snap, _prev, change) => {
      this.pool.apply(change)
      this.clusters.apply(snap, change)
      this.router.pruneChange(snap, change)
      if (this.events.has('instanceChange')) for (const e of diffInstances(change)) this.events.emit('instanceChange', e)
      this.events.emit('table', { instances: snap.instances.size, groups: snap.groups.size, version: snap.version })
    })
    this.lifecycle = new Lifecycle({
      kubernetesSynced: () => this.kubernetes?.synced ?? null,
      dataListening: () => this.dataServer?.listening === true,
    })
    this.shutdown = new Shutdown({
      logger: this.logger,
      lifecycle: this.lifecycle,
      streams: this.streams,
      settings: () => this.config.shutdown,
      data: () => this.dataServer,
      ops: () => this.opsServer,
      stopBackground: async () => {
        this.watcher?.stop()
        this.health.stop()
        await this.kubernetes?.stop()
      },
      stopRedis: () => {
        this.clusters.stop()
        return this.pool.stop()
      },
      redisEndpoints: () => this.pool.size,
    })
  }

  /** Bad annotation values were skipped (their defaults apply); each is reported. */
  private reportAnnotationErrors(spec: InstanceSpec): void {
    for (const e of spec.annotationErrors) {
      this.events.emit('annotationError', { instance: spec.name, source: spec.source, key: e.key, message: e.message })
    }
  }

  /**
   * Kubernetes discovery, when configured. Its module is loaded only then: with it comes
   * @kubernetes/client-node, ~0.37 s of start-up and ~20 MB of heap that a static config never uses.
   */
  private async startKubernetes(): Promise<void> {
    const k = this.config.discovery.kubernetes
    if (k === null) return
    const { KubernetesSource, loadKubeConfig } = await import('./discovery/kubernetes/source.js')
    const kubeConfig = loadKubeConfig(this.opts.runtime?.kubeconfig ?? null)
    this.kubernetes = new KubernetesSource({
      kubeConfig,
      namespaces: k.namespaces,
      servicePrefix: k.servicePrefix,
      labelSelector: k.labelSelector,
      optIn: k.optIn,
      operators: k.operators,
      apply: (u) => {
        this.table.apply(u)
        for (const one of instanceUpdates(u)) if (one.type === 'upsert') this.reportAnnotationErrors(one.instance)
      },
      onEvent: (e) => this.events.emit('discovery', { source: 'kubernetes', ...e }),
      onApiState: (state, reason) => this.events.emit('discovery', { source: 'kubernetes', kind: `api_${state}`, resource: 'apiserver', reason }),
      background: this.background,
    })
    // The scope a platform team configured, as the API server receives it ("" = every label).
    this.logger.info({ namespaces: k.namespaces, labelSelector: this.kubernetes.labelSelector }, 'kubernetes discovery: list and watch Services and EndpointSlices')
    this.kubernetes.start()
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

  /** Applies the parts of a config that can change live: tokens, groups, static instances; returns how many static instances it holds. */
  applyConfig(cfg: GatewayConfig): number {
    const prev = this.config
    this.config = cfg
    this.tokens = new TokenStore(cfg.auth.tokens)
    this.table.setGroupConfig(cfg.groups)
    const instances = staticInstances(cfg)
    this.table.apply({ type: 'reset', source: STATIC_SOURCE, instances })
    for (const spec of instances) this.reportAnnotationErrors(spec)
    warnRestartOnly(prev, cfg, this.logger)
    this.lifecycle.configApplied()
    return instances.length
  }

  async start(): Promise<void> {
    const items = this.applyConfig(this.config)
    // Static instances are discovered here, once (reloads report configReload): recorded like a
    // Kubernetes list, so discovery metrics and their last-sync time exist from the start.
    this.events.emit('discovery', { source: 'static', kind: 'listed', resource: 'config', items })
    this.pool.start()
    await this.startKubernetes()
    this.health.start()
    const dataDeps: DataPlaneDeps = {
      table: this.table,
      router: this.router,
      dispatch: {
        router: this.router,
        events: this.events,
        commandTimeoutMs: this.config.redis.commandTimeoutMs,
        deadlineMarginMs: DEADLINE_MARGIN_MS,
        maxPendingPerEndpoint: this.config.limits.maxPendingPerEndpoint,
        deadlines: this.deadlines,
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
      commandViews: this.commandViews,
      scripts: this.scripts,
      streams: this.streams,
      syncTokens: this.syncTokens,
      clusters: this.clusters,
    }
    const cors = corsPolicy(this.config.http.cors.origins, this.config.http.clientIdHeader)
    const dataApp = createDataApp(dataDeps, cors)
    const opsApp = createOpsApp({
      registry: this.config.metrics.enabled ? this.metrics.registry : null,
      readiness: this.lifecycle,
      routes: liveRoutes({ table: this.table, pool: this.pool, router: this.router, zone: this.opts.runtime?.zone ?? null, clusters: this.clusters }),
      // Both read per request: a reload's tokens and ops.auth apply at once.
      access: { mode: () => this.config.ops.auth, tokens: () => this.tokens },
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
    const onSlowClient = (reason: SlowClientReason): void => this.events.emit('slowClient', { reason })
    this.dataServer = await listen(this.config.listen.data, dataApp.fetch, { ...limits, onSlowClient }, fastLane, cors)
    this.opsServer = await listen(this.config.listen.ops, opsApp.fetch, limits, null, null)
    if (this.opts.configPath) {
      this.watcher = new ConfigWatcher({
        path: this.opts.configPath,
        ...(this.opts.env ? { env: this.opts.env } : {}),
        logger: this.logger,
        initial: this.config,
        ...(this.opts.configFiles ? { initialFiles: this.opts.configFiles } : {}),
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
   * Graceful shutdown (http/shutdown.ts, README "Graceful shutdown"), with the configured
   * `shutdown.*` unless `opts` says otherwise. Calling it again returns the same promise;
   * hurryShutdown() is the second signal.
   */
  stop(opts: StopOptions = {}): Promise<void> {
    return this.shutdown.stop(opts)
  }

  /** An operator's second SIGTERM/SIGINT (Shutdown.hurry). */
  hurryShutdown(): ReturnType<Shutdown['hurry']> {
    return this.shutdown.hurry()
  }
}

/** Instances an endpoint serves: those that list it, and the clusters that use it as a node. */
function instancesUsing(ep: PooledEndpoint): string[] {
  if (ep.clusters.size === 0) return [...ep.instances]
  return [...new Set([...ep.instances, ...ep.clusters])]
}

type ClusterCounts = Pick<ClusterTopologyEvent, 'shards' | 'slots' | 'nodes' | 'nodeIds'>
const NO_CLUSTER: ClusterCounts = { shards: 0, slots: 0, nodes: 0, nodeIds: [] }

function clusterCounts(c: ClusterInstance): ClusterCounts {
  let slots = 0
  for (const s of c.serving()) slots += s.slotCount
  const nodeIds = c.nodes().map((n) => n.id)
  return { shards: c.serving().length, slots, nodes: nodeIds.length, nodeIds }
}
