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
  readonly endpointUp = new Gauge({
    name: 'redis_gateway_endpoint_up',
    help: '1 when the gateway holds a ready connection to the endpoint',
    labelNames: ['redis_instance', 'redis_endpoint'] as const,
    registers: [this.registry],
  })
  readonly replicaLag = new Gauge({
    name: 'redis_gateway_replica_lag_bytes',
    help: "Replica's distance behind its primary, in bytes of replication offset, at the last health check",
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
      events.on('endpointState', (e) => this.endpointUp.set({ redis_instance: e.instance, redis_endpoint: e.endpoint }, e.up ? 1 : 0)),
      events.on('replicaLag', (e) => this.replicaLag.set({ redis_instance: e.instance, redis_endpoint: e.endpoint }, e.bytes)),
      events.on('discovery', (e) => {
        this.discoveryEvents.inc({ source: e.source, outcome: e.kind })
        if (e.kind === 'listed' || e.kind === 'reconciled' || e.kind === 'watching') {
          this.discoveryLastSync.set({ source: e.source }, Date.now() / 1000)
        }
      }),
      events.on('breaker', (e) => {
        const v = e.to === 'open' ? 2 : e.to === 'half-open' ? 1 : 0
        for (const instance of e.instances) this.breakerState.set({ redis_instance: instance, redis_endpoint: e.endpoint }, v)
      }),
      events.on('retry', (e) => this.retries.inc({ redis_instance: e.instance, code: e.reason })),
      events.on('hedge', (e) => this.hedges.inc({ redis_instance: e.instance, result: e.result })),
      events.on('fault', (e) => this.faults.inc({ where: e.where })),
      events.on('table', (e) => this.tableInstances.set(e.instances)),
      events.on('clusterTopology', (e) => {
        this.clusterTopology.inc({ redis_instance: e.instance, kind: e.kind })
        if (e.kind !== 'changed') return
        this.clusterShards.set({ redis_instance: e.instance }, e.shards)
        this.clusterSlots.set({ redis_instance: e.instance }, e.slots)
        this.clusterNodes.set({ redis_instance: e.instance }, e.nodes)
      }),
      events.on('clusterRedirect', (e) => this.clusterRedirects.inc({ redis_instance: e.instance, kind: e.kind })),
      // An endpoint an instance no longer lists drops its gauges (counters keep their totals).
      events.on('instanceChange', (e) => {
        for (const endpoint of e.removedEndpoints) {
          const labels = { redis_instance: e.instance, redis_endpoint: endpoint }
          this.endpointUp.remove(labels)
          this.replicaLag.remove(labels)
          this.breakerState.remove(labels)
        }
      }),
      events.on('annotationError', (e) =>
        this.discoveryEvents.inc({ source: e.source.split(':')[0] ?? 'static', outcome: 'bad_annotation' }),
      ),
      events.on('configReload', (e) => {
        this.discoveryEvents.inc({ source: 'static', outcome: e.ok ? 'ok' : 'error' })
        if (e.ok) this.discoveryLastSync.set({ source: 'static' }, Date.now() / 1000)
      }),
    ]
    return () => offs.forEach((f) => f())
  }
}
