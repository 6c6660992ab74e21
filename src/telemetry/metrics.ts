// Every Prometheus metric of the gateway, on one registry, fed by subscribing to gateway events.
// Labels are bounded: instance/group/endpoint names come from discovery, never from requests.
// No label is named like a Prometheus or Prometheus Operator target label (instance, job, endpoint,
// pod, namespace, service, container), which a scrape would overwrite: redis_instance, redis_endpoint.
// Node's default metrics keep their standard names (process_*, nodejs_*), no prefix.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { HotCounter, HotHistogram } from './hot-metrics.js'
import type { EventHub } from '../core/events.js'

// Sub-millisecond to seconds: Redis round trips are ~100 us on a LAN; timeouts are seconds.
export const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]

export class GatewayMetrics {
  readonly registry = new Registry()
  // The three updated on every request are hot-metrics.ts's (same registry, same output).
  readonly requests = new HotCounter({
    name: 'redis_gateway_requests_total',
    help: 'HTTP requests served, by target, command class, outcome and code',
    labelNames: ['redis_instance', 'group', 'class', 'outcome', 'code'],
    registry: this.registry,
  })
  readonly requestDuration = new HotHistogram({
    name: 'redis_gateway_request_duration_seconds',
    help: 'HTTP request duration, from the first byte read to the reply written',
    labelNames: ['redis_instance', 'class', 'outcome'],
    buckets: LATENCY_BUCKETS,
    registry: this.registry,
  })
  readonly upstreamDuration = new HotHistogram({
    name: 'redis_gateway_upstream_duration_seconds',
    help: 'Redis round-trip duration per endpoint',
    labelNames: ['redis_instance', 'redis_endpoint', 'role', 'outcome'],
    buckets: LATENCY_BUCKETS,
    registry: this.registry,
  })
  /** Requests being served now; read into the gauge at scrape time. */
  private inflightNow = 0
  readonly inflight: Gauge = new Gauge({
    name: 'redis_gateway_inflight_requests',
    help: 'HTTP requests being served now',
    registers: [this.registry],
    collect: (): void => this.inflight.set(this.inflightNow),
  })
  /** Event streams (SSE subscriptions, MONITOR) open now; read at scrape time. */
  private streamsNow: () => number = () => 0
  readonly sseStreams: Gauge = new Gauge({
    name: 'redis_gateway_sse_streams',
    help: 'Server-sent event streams (subscriptions, MONITOR) open now',
    registers: [this.registry],
    collect: (): void => this.sseStreams.set(this.streamsNow()),
  })
  readonly slowClients = new Counter({
    name: 'redis_gateway_slow_client_disconnects_total',
    help: 'Clients disconnected for being slow: sse_backlog (an event stream unread past its buffer), write_timeout (a reply unread past limits.writeTimeout), request_timeout (a request not received in time, 408)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })
  readonly endpointUp = new Gauge({
    name: 'redis_gateway_endpoint_up',
    help: '1 when the gateway holds a ready connection to the endpoint',
    labelNames: ['redis_instance', 'redis_endpoint'] as const,
    registers: [this.registry],
  })
  readonly replicaLag = new Gauge({
    name: 'redis_gateway_replica_lag_bytes',
    help: "Replica's distance behind its primary in bytes of replication offset, at the last health check of the replica or of its primary (which still sees a replica that stalled); absent when unknown",
    labelNames: ['redis_instance', 'redis_endpoint'] as const,
    registers: [this.registry],
  })
  readonly breakerState = new Gauge({
    name: 'redis_gateway_breaker_state',
    help: 'Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open',
    labelNames: ['redis_instance', 'redis_endpoint'] as const,
    registers: [this.registry],
  })
  readonly retries = new Counter({
    name: 'redis_gateway_retries_total',
    help: 'Reads retried on another endpoint after a transport failure, by the failure code',
    labelNames: ['redis_instance', 'code'] as const,
    registers: [this.registry],
  })
  readonly hedges = new Counter({
    name: 'redis_gateway_hedges_total',
    help: 'Hedged reads: sent (a second endpoint was asked) and won (the hedge answered first)',
    labelNames: ['redis_instance', 'result'] as const,
    registers: [this.registry],
  })
  readonly budgetExhausted = new Counter({
    name: 'redis_gateway_budget_exhausted_total',
    help: "Retries and hedges that were wanted but not sent because the instance's retry or hedge budget was spent",
    labelNames: ['redis_instance', 'budget'] as const,
    registers: [this.registry],
  })
  // Transition counters: a state that lasts less than a scrape interval (a 1 s breaker open, a
  // flapping endpoint, a failover) still shows as an increase().
  readonly breakerTransitions = new Counter({
    name: 'redis_gateway_breaker_transitions_total',
    help: 'Circuit breaker state changes per endpoint, by the state entered (open, half-open, closed)',
    labelNames: ['redis_instance', 'redis_endpoint', 'to'] as const,
    registers: [this.registry],
  })
  readonly endpointTransitions = new Counter({
    name: 'redis_gateway_endpoint_transitions_total',
    help: 'Endpoint health changes, by the state entered (up, down)',
    labelNames: ['redis_instance', 'redis_endpoint', 'to'] as const,
    registers: [this.registry],
  })
  readonly roleChanges = new Counter({
    name: 'redis_gateway_role_changes_total',
    help: 'Endpoint role changes seen by health checks (failovers), by the role entered (primary, replica)',
    labelNames: ['redis_instance', 'redis_endpoint', 'to'] as const,
    registers: [this.registry],
  })
  readonly maintenanceChanges = new Counter({
    name: 'redis_gateway_maintenance_changes_total',
    help: 'Instance maintenance mode changes, by the mode entered (off, drain, read-only)',
    labelNames: ['redis_instance', 'to'] as const,
    registers: [this.registry],
  })
  /**
   * Last known state per endpoint id, to start an endpoint's gauges right when another instance adds
   * it; kept only while some instance lists the endpoint (`endpointUsers`), so churning discovered
   * endpoints (pod IPs) leave nothing behind.
   */
  private readonly lastUp = new Map<string, number>()
  private readonly lastBreaker = new Map<string, number>()
  private readonly endpointUsers = new Map<string, Set<string>>()
  /** Per instance: the endpoints discovery lists, and the cluster nodes it uses besides (their series start and go like endpoints'). */
  private readonly listed = new Map<string, Set<string>>()
  private readonly clusterOnly = new Map<string, Set<string>>()
  /** Discovery sources seen (static, kubernetes). */
  private readonly sources = new Set<string>()

  readonly tableInstances = new Gauge({
    name: 'redis_gateway_routing_table_instances',
    help: 'Instances in the routing table',
    registers: [this.registry],
  })
  readonly discoveryEvents = new Counter({
    name: 'redis_gateway_discovery_events_total',
    help: 'Discovery events (config reloads, watch events), by source and outcome',
    labelNames: ['source', 'outcome'] as const,
    registers: [this.registry],
  })
  readonly discoveryLastSync = new Gauge({
    name: 'redis_gateway_discovery_last_sync_timestamp_seconds',
    help: 'Unix time of the last successful discovery sync',
    labelNames: ['source'] as const,
    registers: [this.registry],
  })

  readonly clusterShards = new Gauge({
    name: 'redis_gateway_cluster_shards',
    help: 'Redis Cluster instances: shards serving slots, as last learned',
    labelNames: ['redis_instance'] as const,
    registers: [this.registry],
  })
  readonly clusterSlots = new Gauge({
    name: 'redis_gateway_cluster_slots_served',
    help: 'Redis Cluster instances: hash slots served by a shard the gateway can reach (16384 when all)',
    labelNames: ['redis_instance'] as const,
    registers: [this.registry],
  })
  readonly clusterNodes = new Gauge({
    name: 'redis_gateway_cluster_nodes',
    help: 'Redis Cluster instances: nodes (primaries and replicas) the gateway uses',
    labelNames: ['redis_instance'] as const,
    registers: [this.registry],
  })
  readonly clusterTopology = new Counter({
    name: 'redis_gateway_cluster_topology_events_total',
    help: 'Redis Cluster slot maps learned (changed), refreshes that failed (error), and maps with refused nodes (refused)',
    labelNames: ['redis_instance', 'kind'] as const,
    registers: [this.registry],
  })
  readonly clusterRedirects = new Counter({
    name: 'redis_gateway_cluster_redirects_total',
    help: 'Redis Cluster redirections followed: moved, ask, tryagain, clusterdown',
    labelNames: ['redis_instance', 'kind'] as const,
    registers: [this.registry],
  })

  readonly faults = new Counter({
    name: 'redis_gateway_faults_total',
    help: 'Errors thrown, or protocol broken by a peer, while serving a request or reading a connection; each ended that request or connection, not the process',
    labelNames: ['where'] as const,
    registers: [this.registry],
  })

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry })
    for (const reason of SLOW_CLIENT_REASONS) this.slowClients.inc({ reason }, 0)
    // Refused for the memory budget before the target was known.
    this.requests.touch('', '', 'none', 'server_error', 'OVERLOADED')
  }

  /** Where sse_streams reads the number of open event streams at each scrape. */
  countStreams(open: () => number): void {
    this.streamsNow = open
  }

  /** Subscribes every metric to the gateway's events; returns the unsubscribe function. */
  subscribe(events: EventHub): () => void {
    const offs = [
      events.on('requestStart', () => {
        this.inflightNow++
      }),
      events.on('requestEnd', (e) => {
        this.inflightNow--
        const outcome = e.status < 400 ? 'success' : e.status < 500 ? 'client_error' : 'server_error'
        const instance = e.instance ?? ''
        this.requests.inc(instance, e.group ?? '', e.class, outcome, e.code)
        this.requestDuration.observe(e.durationS, instance, e.class, outcome)
      }),
      events.on('upstream', (e) => this.upstreamDuration.observe(e.durationS, e.instance, e.endpoint, e.role, e.outcome)),
      events.on('endpointState', (e) => {
        const labels = { redis_instance: e.instance, redis_endpoint: e.endpoint }
        if (this.endpointUsers.has(e.endpoint)) this.lastUp.set(e.endpoint, e.up ? 1 : 0)
        this.endpointUp.set(labels, e.up ? 1 : 0)
        this.endpointTransitions.inc({ ...labels, to: e.up ? 'up' : 'down' })
      }),
      events.on('endpointRole', (e) => {
        // Between known roles only: the first check learning an endpoint's role is no failover.
        if ((e.to !== 'primary' && e.to !== 'replica') || (e.from !== 'primary' && e.from !== 'replica')) return
        for (const instance of e.instances) this.roleChanges.inc({ redis_instance: instance, redis_endpoint: e.endpoint, to: e.to })
      }),
      events.on('replicaLag', (e) => {
        const labels = { redis_instance: e.instance, redis_endpoint: e.endpoint }
        if (e.bytes === null) this.replicaLag.remove(labels)
        else this.replicaLag.set(labels, e.bytes)
      }),
      events.on('discovery', (e) => {
        this.startSource(e.source)
        this.discoveryEvents.inc({ source: e.source, outcome: e.kind })
        if (e.kind === 'listed' || e.kind === 'reconciled' || e.kind === 'watching') {
          this.discoveryLastSync.set({ source: e.source }, Date.now() / 1000)
        }
      }),
      events.on('breaker', (e) => {
        const v = e.to === 'open' ? 2 : e.to === 'half-open' ? 1 : 0
        const to = e.to === 'open' || e.to === 'half-open' ? e.to : 'closed'
        if (this.endpointUsers.has(e.endpoint)) this.lastBreaker.set(e.endpoint, v)
        for (const instance of e.instances) {
          this.breakerState.set({ redis_instance: instance, redis_endpoint: e.endpoint }, v)
          this.breakerTransitions.inc({ redis_instance: instance, redis_endpoint: e.endpoint, to })
        }
      }),
      events.on('retry', (e) => this.retries.inc({ redis_instance: e.instance, code: e.reason })),
      events.on('hedge', (e) => this.hedges.inc({ redis_instance: e.instance, result: e.result })),
      events.on('budgetExhausted', (e) => this.budgetExhausted.inc({ redis_instance: e.instance, budget: e.budget })),
      events.on('slowClient', (e) => this.slowClients.inc({ reason: e.reason })),
      events.on('fault', (e) => this.faults.inc({ where: e.where })),
      events.on('table', (e) => this.tableInstances.set(e.instances)),
      events.on('clusterTopology', (e) => {
        this.clusterTopology.inc({ redis_instance: e.instance, kind: e.kind })
        if (e.kind !== 'changed') return
        this.followClusterNodes(e.instance, e.nodeIds)
        this.clusterShards.set({ redis_instance: e.instance }, e.shards)
        this.clusterSlots.set({ redis_instance: e.instance }, e.slots)
        this.clusterNodes.set({ redis_instance: e.instance }, e.nodes)
      }),
      events.on('clusterRedirect', (e) => this.clusterRedirects.inc({ redis_instance: e.instance, kind: e.kind })),
      // Series a panel or alert uses start at 0 when their instance or endpoint appears (ratios read
      // 0 %, rate() counts the first event) and go when it goes.
      events.on('instanceChange', (e) => {
        if (e.change === 'added') this.startInstance(e.instance)
        if (e.maintenance !== null) this.maintenanceChanges.inc({ redis_instance: e.instance, to: e.maintenance.to })
        const listed = this.listed.get(e.instance) ?? new Set<string>()
        this.listed.set(e.instance, listed)
        for (const endpoint of e.addedEndpoints) {
          listed.add(endpoint)
          if (!this.clusterOnly.get(e.instance)?.delete(endpoint)) this.startEndpoint(e.instance, endpoint)
        }
        for (const endpoint of e.removedEndpoints) {
          listed.delete(endpoint)
          this.dropEndpoint(e.instance, endpoint)
        }
        if (e.change === 'removed') this.dropInstance(e.instance)
      }),
      events.on('annotationError', (e) => {
        const source = e.source.split(':')[0] ?? 'static'
        this.startSource(source)
        this.discoveryEvents.inc({ source, outcome: 'bad_annotation' })
      }),
      events.on('configReload', (e) => {
        this.startSource('static')
        this.discoveryEvents.inc({ source: 'static', outcome: e.ok ? 'ok' : 'error' })
        if (e.ok) this.discoveryLastSync.set({ source: 'static' }, Date.now() / 1000)
      }),
    ]
    return () => offs.forEach((f) => f())
  }

  /** A discovery source's first event: the outcomes the shipped alert counts start at 0 (static: reloads too). */
  private startSource(source: string): void {
    if (this.sources.has(source)) return
    this.sources.add(source)
    for (const outcome of source === 'static' ? ['ok', 'error', 'bad_annotation'] : ['error', 'bad_annotation']) {
      this.discoveryEvents.inc({ source, outcome }, 0)
    }
  }

  /** Per instance: the request series the shipped alerts and dashboard divide by and count, retries, hedges, maintenance changes. */
  private startInstance(instance: string): void {
    for (const cls of START_CLASSES) {
      this.requests.touch(instance, '', cls, 'success', 'OK')
      this.requests.touch(instance, '', cls, 'server_error', 'NOENDPOINT')
      this.requests.touch(instance, '', cls, 'server_error', 'OVERLOADED')
    }
    // A request refused for the memory budget before its command was read has no class yet.
    this.requests.touch(instance, '', 'none', 'server_error', 'OVERLOADED')
    for (const code of RETRY_CODES) this.retries.inc({ redis_instance: instance, code }, 0)
    for (const result of ['sent', 'won']) this.hedges.inc({ redis_instance: instance, result }, 0)
    for (const budget of ['retry', 'hedge']) this.budgetExhausted.inc({ redis_instance: instance, budget }, 0)
    for (const to of MAINTENANCE) this.maintenanceChanges.inc({ redis_instance: instance, to }, 0)
  }

  /**
   * A cluster's slot map names nodes discovery may not list (redis.allowUndiscoveredClusterNodes):
   * their endpoint series start when the map first uses them and go when it stops.
   */
  private followClusterNodes(instance: string, nodeIds: readonly string[]): void {
    const listed = this.listed.get(instance)
    const before = this.clusterOnly.get(instance) ?? new Set<string>()
    const now = new Set<string>()
    for (const id of nodeIds) {
      if (listed?.has(id)) continue
      now.add(id)
      if (!before.has(id)) this.startEndpoint(instance, id)
    }
    for (const id of before) if (!now.has(id)) this.dropEndpoint(instance, id)
    this.clusterOnly.set(instance, now)
  }

  /** Every series of an instance that left, its endpoints' (a cluster's nodes included) too. */
  private dropInstance(instance: string): void {
    for (const endpoint of [...(this.listed.get(instance) ?? []), ...(this.clusterOnly.get(instance) ?? [])]) {
      this.forgetUser(instance, endpoint)
    }
    this.listed.delete(instance)
    this.clusterOnly.delete(instance)
    this.requests.removeFirst(instance)
    this.requestDuration.removeFirst(instance)
    this.upstreamDuration.removeFirst(instance)
    const perInstance = [
      this.endpointUp, this.replicaLag, this.breakerState, this.retries, this.hedges, this.budgetExhausted,
      this.breakerTransitions, this.endpointTransitions, this.roleChanges, this.maintenanceChanges,
      this.clusterShards, this.clusterSlots, this.clusterNodes, this.clusterTopology, this.clusterRedirects,
    ]
    for (const m of perInstance) removeMatching(m, { redis_instance: instance })
  }

  /** endpoint_up starts at the endpoint's last known health, 0 until a check passes; breaker_state at its state, 0 (closed) when new. */
  private startEndpoint(instance: string, endpoint: string): void {
    const labels = { redis_instance: instance, redis_endpoint: endpoint }
    const users = this.endpointUsers.get(endpoint) ?? new Set<string>()
    users.add(instance)
    this.endpointUsers.set(endpoint, users)
    this.endpointUp.set(labels, this.lastUp.get(endpoint) ?? 0)
    this.breakerState.set(labels, this.lastBreaker.get(endpoint) ?? 0)
    for (const to of ['open', 'half-open', 'closed']) this.breakerTransitions.inc({ ...labels, to }, 0)
    for (const to of ['up', 'down']) this.endpointTransitions.inc({ ...labels, to }, 0)
    for (const to of ['primary', 'replica']) this.roleChanges.inc({ ...labels, to }, 0)
  }

  /** `instance` no longer lists `endpoint`: its last known state is kept only while another does. */
  private forgetUser(instance: string, endpoint: string): void {
    const users = this.endpointUsers.get(endpoint)
    users?.delete(instance)
    if (users?.size === 0) {
      this.endpointUsers.delete(endpoint)
      this.lastUp.delete(endpoint)
      this.lastBreaker.delete(endpoint)
    }
  }

  private dropEndpoint(instance: string, endpoint: string): void {
    const labels = { redis_instance: instance, redis_endpoint: endpoint }
    this.forgetUser(instance, endpoint)
    this.endpointUp.remove(labels)
    this.replicaLag.remove(labels)
    this.breakerState.remove(labels)
    for (const m of [this.breakerTransitions, this.endpointTransitions, this.roleChanges]) removeMatching(m, labels)
  }
}

/** Request classes whose series start at 0 for every instance (what @upstash/redis sends: its auto-pipelining makes pipelines). */
const START_CLASSES = ['read', 'write', 'pipeline', 'multi'] as const
/** The failures a read is retried after (upstream/dispatch.ts isRetryable). */
const RETRY_CODES = ['TIMEOUT', 'UPSTREAMRESET', 'NOENDPOINT'] as const
const SLOW_CLIENT_REASONS = ['sse_backlog', 'write_timeout', 'request_timeout'] as const
const MAINTENANCE = ['off', 'drain', 'read-only'] as const

/**
 * Removes every series of `m` whose labels include `labels`. prom-client's public API lists series
 * only asynchronously (get()), so this reads its per-metric series map (`hashMap`, prom-client 15);
 * an upgrade that renames it fails here loudly (the metrics tests remove instances), never silently.
 */
function removeMatching(m: Counter<string> | Gauge<string>, labels: Record<string, string>): void {
  const hashMap = (m as unknown as { hashMap?: Record<string, { labels: Record<string, string> }> }).hashMap
  if (hashMap === undefined || hashMap === null || typeof hashMap !== 'object') {
    throw new Error('prom-client no longer keeps its series in hashMap: update removeMatching() in src/telemetry/metrics.ts')
  }
  for (const v of Object.values(hashMap)) {
    if (Object.entries(labels).every(([k, x]) => v.labels[k] === x)) m.remove(v.labels)
  }
}
