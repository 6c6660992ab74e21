// Every Prometheus metric of the gateway, on one registry, fed by subscribing to gateway events.
// Labels are bounded: instance/group/endpoint names come from discovery, never from requests.
// No label is named like a Prometheus or Prometheus Operator target label (instance, job, endpoint,
// pod, namespace, service, container), which a scrape would overwrite: redis_instance, redis_endpoint.
// Node's default metrics keep their standard names (process_*, nodejs_*), no prefix.

import { Counter, Gauge, collectDefaultMetrics } from 'prom-client'
import { HotCounter, HotGauge, HotHistogram } from './hot-metrics.js'
import { MetricsRegistry } from './metrics-registry.js'
import type { EventHub } from '../core/events.js'

// Sub-millisecond to seconds: Redis round trips are ~100 us on a LAN; timeouts are seconds.
export const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]

export class GatewayMetrics {
  readonly registry = new MetricsRegistry()
  // The three updated on every request, and every metric with a series per instance or endpoint, are
  // hot-metrics.ts's (same registry, same output; cheap to update, to start, and to print in slices).
  // Series a panel or alert uses exist at 0 from the moment their instance or endpoint appears
  // (ratios read 0 %, rate() counts the first event) until it goes: the `zeros` of start().
  readonly requests = new HotCounter({
    name: 'redis_gateway_requests_total',
    help: 'HTTP requests served, by target, command class, outcome and code',
    labelNames: ['redis_instance', 'group', 'class', 'outcome', 'code'],
    registry: this.registry,
    zeros: [
      ...START_CLASSES.flatMap((cls) => [
        ['', cls, 'success', 'OK'],
        ['', cls, 'server_error', 'NOENDPOINT'],
        ['', cls, 'server_error', 'OVERLOADED'],
      ]),
      // A request refused for the memory budget before its command was read has no class yet.
      ['', 'none', 'server_error', 'OVERLOADED'],
    ],
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
  /** Requests waiting for a Redis endpoint now (its connection or an in-flight slot); read at scrape time. */
  private waitingNow: () => number = () => 0
  readonly waiting: Gauge = new Gauge({
    name: 'redis_gateway_waiting_requests',
    help: 'Requests waiting for a Redis endpoint: for its connection or for an in-flight slot (limits.maxPendingPerEndpoint bounds them per endpoint)',
    registers: [this.registry],
    collect: (): void => this.waiting.set(this.waitingNow()),
  })
  readonly slowClients = new Counter({
    name: 'redis_gateway_slow_client_disconnects_total',
    help: 'Clients disconnected for being slow: sse_backlog (an event stream unread past its buffer), write_timeout (a reply unread past limits.writeTimeout), request_timeout (a request not received in time, 408)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })
  readonly endpointUp = new HotGauge({
    name: 'redis_gateway_endpoint_up',
    help: '1 when the gateway holds a ready connection to the endpoint',
    labelNames: ['redis_instance', 'redis_endpoint'],
    registry: this.registry,
  })
  readonly replicaLag = new HotGauge({
    name: 'redis_gateway_replica_lag_bytes',
    help: "Replica's distance behind its primary in bytes of replication offset, at the last health check of the replica or of its primary (which still sees a replica that stalled); absent when unknown",
    labelNames: ['redis_instance', 'redis_endpoint'],
    registry: this.registry,
  })
  readonly breakerState = new HotGauge({
    name: 'redis_gateway_breaker_state',
    help: 'Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open',
    labelNames: ['redis_instance', 'redis_endpoint'],
    registry: this.registry,
  })
  readonly retries = new HotCounter({
    name: 'redis_gateway_retries_total',
    help: 'Reads retried on another endpoint after a transport failure, by the failure code',
    labelNames: ['redis_instance', 'code'],
    registry: this.registry,
    zeros: RETRY_CODES.map((code) => [code]),
  })
  readonly hedges = new HotCounter({
    name: 'redis_gateway_hedges_total',
    help: 'Hedged reads: sent (a second endpoint was asked) and won (the hedge answered first)',
    labelNames: ['redis_instance', 'result'],
    registry: this.registry,
    zeros: [['sent'], ['won']],
  })
  readonly budgetExhausted = new HotCounter({
    name: 'redis_gateway_budget_exhausted_total',
    help: "Retries and hedges that were wanted but not sent because the instance's retry or hedge budget was spent",
    labelNames: ['redis_instance', 'budget'],
    registry: this.registry,
    zeros: [['retry'], ['hedge']],
  })
  // Transition counters: a state that lasts less than a scrape interval (a 1 s breaker open, a
  // flapping endpoint, a failover) still shows as an increase().
  readonly breakerTransitions = new HotCounter({
    name: 'redis_gateway_breaker_transitions_total',
    help: 'Circuit breaker state changes per endpoint, by the state entered (open, half-open, closed)',
    labelNames: ['redis_instance', 'redis_endpoint', 'to'],
    registry: this.registry,
    zeros: [['open'], ['half-open'], ['closed']],
  })
  readonly endpointTransitions = new HotCounter({
    name: 'redis_gateway_endpoint_transitions_total',
    help: 'Endpoint health changes, by the state entered (up, down)',
    labelNames: ['redis_instance', 'redis_endpoint', 'to'],
    registry: this.registry,
    zeros: [['up'], ['down']],
  })
  readonly roleChanges = new HotCounter({
    name: 'redis_gateway_role_changes_total',
    help: 'Endpoint role changes seen by health checks (failovers), by the role entered (primary, replica)',
    labelNames: ['redis_instance', 'redis_endpoint', 'to'],
    registry: this.registry,
    zeros: [['primary'], ['replica']],
  })
  readonly maintenanceChanges = new HotCounter({
    name: 'redis_gateway_maintenance_changes_total',
    help: 'Instance maintenance mode changes, by the mode entered (off, drain, read-only)',
    labelNames: ['redis_instance', 'to'],
    registry: this.registry,
    zeros: MAINTENANCE.map((to) => [to]),
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

  readonly clusterShards = new HotGauge({
    name: 'redis_gateway_cluster_shards',
    help: 'Redis Cluster instances: shards serving slots, as last learned',
    labelNames: ['redis_instance'],
    registry: this.registry,
  })
  readonly clusterSlots = new HotGauge({
    name: 'redis_gateway_cluster_slots_served',
    help: 'Redis Cluster instances: hash slots served by a shard the gateway can reach (16384 when all)',
    labelNames: ['redis_instance'],
    registry: this.registry,
  })
  readonly clusterNodes = new HotGauge({
    name: 'redis_gateway_cluster_nodes',
    help: 'Redis Cluster instances: nodes (primaries and replicas) the gateway uses',
    labelNames: ['redis_instance'],
    registry: this.registry,
  })
  readonly clusterTopology = new HotCounter({
    name: 'redis_gateway_cluster_topology_events_total',
    help: 'Redis Cluster slot maps learned (changed), refreshes that failed (error), and maps with refused nodes (refused)',
    labelNames: ['redis_instance', 'kind'],
    registry: this.registry,
  })
  readonly clusterRedirects = new HotCounter({
    name: 'redis_gateway_cluster_redirects_total',
    help: 'Redis Cluster redirections followed: moved, ask, tryagain, clusterdown',
    labelNames: ['redis_instance', 'kind'],
    registry: this.registry,
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

  /** Where waiting_requests reads the number of requests waiting for endpoints at each scrape. */
  countWaiting(waiting: () => number): void {
    this.waitingNow = waiting
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
        if (this.endpointUsers.has(e.endpoint)) this.lastUp.set(e.endpoint, e.up ? 1 : 0)
        this.endpointUp.set(e.up ? 1 : 0, e.instance, e.endpoint)
        this.endpointTransitions.inc(e.instance, e.endpoint, e.up ? 'up' : 'down')
      }),
      events.on('endpointRole', (e) => {
        // Between known roles only: the first check learning an endpoint's role is no failover.
        if ((e.to !== 'primary' && e.to !== 'replica') || (e.from !== 'primary' && e.from !== 'replica')) return
        for (const instance of e.instances) this.roleChanges.inc(instance, e.endpoint, e.to)
      }),
      events.on('replicaLag', (e) => {
        if (e.bytes === null) this.replicaLag.removeWhere(e.instance, e.endpoint)
        else this.replicaLag.set(e.bytes, e.instance, e.endpoint)
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
          this.breakerState.set(v, instance, e.endpoint)
          this.breakerTransitions.inc(instance, e.endpoint, to)
        }
      }),
      events.on('retry', (e) => this.retries.inc(e.instance, e.reason)),
      events.on('hedge', (e) => this.hedges.inc(e.instance, e.result)),
      events.on('budgetExhausted', (e) => this.budgetExhausted.inc(e.instance, e.budget)),
      events.on('slowClient', (e) => this.slowClients.inc({ reason: e.reason })),
      events.on('fault', (e) => this.faults.inc({ where: e.where })),
      events.on('table', (e) => this.tableInstances.set(e.instances)),
      events.on('clusterTopology', (e) => {
        this.clusterTopology.inc(e.instance, e.kind)
        if (e.kind !== 'changed') return
        this.followClusterNodes(e.instance, e.nodeIds)
        this.clusterShards.set(e.shards, e.instance)
        this.clusterSlots.set(e.slots, e.instance)
        this.clusterNodes.set(e.nodes, e.instance)
      }),
      events.on('clusterRedirect', (e) => this.clusterRedirects.inc(e.instance, e.kind)),
      events.on('instanceChange', (e) => {
        if (e.change === 'added') this.startInstance(e.instance)
        if (e.maintenance !== null) this.maintenanceChanges.inc(e.instance, e.maintenance.to)
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

  /** An instance's zero series: requests the shipped alerts and dashboard divide by and count, retries, hedges, budgets, maintenance changes. */
  private startInstance(instance: string): void {
    for (const m of [this.requests, this.retries, this.hedges, this.budgetExhausted, this.maintenanceChanges]) m.start(instance)
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
    const perInstance = [
      this.requests, this.requestDuration, this.upstreamDuration,
      this.endpointUp, this.replicaLag, this.breakerState, this.retries, this.hedges, this.budgetExhausted,
      this.breakerTransitions, this.endpointTransitions, this.roleChanges, this.maintenanceChanges,
      this.clusterShards, this.clusterSlots, this.clusterNodes, this.clusterTopology, this.clusterRedirects,
    ]
    for (const m of perInstance) m.removeWhere(instance)
  }

  /** endpoint_up starts at the endpoint's last known health, 0 until a check passes; breaker_state at its state, 0 (closed) when new. */
  private startEndpoint(instance: string, endpoint: string): void {
    const users = this.endpointUsers.get(endpoint) ?? new Set<string>()
    users.add(instance)
    this.endpointUsers.set(endpoint, users)
    this.endpointUp.set(this.lastUp.get(endpoint) ?? 0, instance, endpoint)
    this.breakerState.set(this.lastBreaker.get(endpoint) ?? 0, instance, endpoint)
    for (const m of [this.breakerTransitions, this.endpointTransitions, this.roleChanges]) m.start(instance, endpoint)
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
    this.forgetUser(instance, endpoint)
    const perEndpoint = [this.endpointUp, this.replicaLag, this.breakerState, this.breakerTransitions, this.endpointTransitions, this.roleChanges]
    for (const m of perEndpoint) m.removeWhere(instance, endpoint)
  }
}

/** Request classes whose series start at 0 for every instance (what @upstash/redis sends: its auto-pipelining makes pipelines). */
const START_CLASSES = ['read', 'write', 'pipeline', 'multi'] as const
/** The failures a read is retried after (upstream/dispatch.ts isRetryable). */
const RETRY_CODES = ['TIMEOUT', 'UPSTREAMRESET', 'NOENDPOINT'] as const
const SLOW_CLIENT_REASONS = ['sse_backlog', 'write_timeout', 'request_timeout'] as const
const MAINTENANCE = ['off', 'drain', 'read-only'] as const
