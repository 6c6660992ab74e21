// Redis Cluster instances (README "Redis Cluster"): an instance whose endpoints are cluster nodes
// is served through its slot map, learned from the cluster itself (cluster-topology.ts). Each shard
// becomes a route of its own (the instance's name and policy, the shard's nodes as endpoints,
// primary first), so picking an endpoint inside a shard is the same selection as inside a plain
// instance: writes to the primary, reads by the read policy to replicas, breakers, balancers and
// budgets as usual. The nodes the cluster announces join the upstream pool (connected and health
// checked like discovered endpoints) only when the SSRF rule allows them.
//
// ClusterManager decides which instances are clusters: the `redis-gateway.io/mode` annotation
// (`cluster`, `standalone`), else `auto`: an endpoint reported `cluster_enabled:1` after it
// connected (INFO cluster), or a reply said MOVED.

import { endpointId, type EndpointSpec, type InstanceSpec } from '../core/topology.js'
import type { RawReply } from '../core/reply.js'
import type { Arg } from '../core/command.js'
import { SLOT_COUNT, type ClusterShard, type SlotRange } from '../routing/cluster-slots.js'
import type { InstanceRoute, RoutingSnapshot, TableChange } from '../routing/table.js'
import type { LearnedTable } from '../routing/command-table.js'
import { ClusterTopology, type ClusterEndpoint, type ClusterTopologyState, type RefreshResult, type RefusedNode } from './cluster-topology.js'
import type { PooledEndpoint, UpstreamPool } from './pool.js'

/** One shard as a route: the instance's name and policy, the shard's usable nodes, primary first. */
export interface ShardRoute {
  /** Position in the slot map (shards serving slots first, by lowest slot). */
  readonly index: number
  readonly route: InstanceRoute
  readonly ranges: readonly SlotRange[]
  readonly slotCount: number
  /** Endpoint id of the primary the cluster announces; null when it is refused or failed. */
  readonly primary: string | null
  readonly shard: ClusterShard
}

export interface ClusterOptions {
  readonly pool: UpstreamPool
  /** Use nodes the cluster announces that discovery does not list (off: only discovered addresses). */
  readonly allowUndiscoveredNodes: boolean
  readonly tls: boolean
  /** A new slot map was adopted (nodes attached, routes rebuilt). */
  onChange?(instance: string, state: ClusterTopologyState, previous: ClusterTopologyState | null): void
  onError?(instance: string, err: Error): void
  onRefused?(instance: string, refused: readonly RefusedNode[]): void
  /** A refresh ran (any outcome), for metrics. */
  onRefresh?(instance: string, result: RefreshResult): void
  readonly random?: () => number
  /** Periodic refresh interval (ClusterTopology periodicMs). */
  readonly periodicMs?: number
}

const NO_SHARD = -1

export class ClusterInstance {
  readonly name: string
  private discovered: InstanceRoute
  private readonly topology: ClusterTopology
  private routes: readonly ShardRoute[] = []
  /** Shard index per slot (the map's, with MOVED replies applied until the next refresh). */
  private readonly slots = new Int16Array(SLOT_COUNT).fill(NO_SHARD)
  /** Endpoint ids of the nodes this instance attached to the pool. */
  private attached = new Set<string>()
  /** One-node routes for ASK redirections, by endpoint id. */
  private nodeRoutes = new Map<string, InstanceRoute>()
  private stopped = false
  private readonly random: () => number

  constructor(
    route: InstanceRoute,
    private readonly opts: ClusterOptions,
  ) {
    this.name = route.name
    this.discovered = route
    this.random = opts.random ?? Math.random
    this.topology = new ClusterTopology({
      name: route.name,
      endpoints: seedsOf(route),
      send: (e, args) => this.send(e, args),
      allowUndiscoveredNodes: opts.allowUndiscoveredNodes,
      tls: opts.tls,
      ...(opts.periodicMs !== undefined ? { periodicMs: opts.periodicMs } : {}),
      onChange: (state, previous) => {
        this.adopt(state)
        opts.onChange?.(this.name, state, previous)
      },
      onError: (err) => opts.onError?.(this.name, err),
      onRefused: (refused) => opts.onRefused?.(this.name, refused),
    })
  }

  /** Asks a seed on its pooled connection (discovered endpoints and attached nodes are pooled). */
  private async send(e: ClusterEndpoint, args: readonly Arg[]): Promise<RawReply> {
    const ep = this.opts.pool.get(endpointId(e.host, e.port))
    if (ep === undefined) throw new Error(`endpoint ${endpointId(e.host, e.port)} is not pooled`)
    const ready = ep.client.whenReady()
    if (ready !== true && !(await ready)) throw new Error(`endpoint ${ep.id} is not connected`)
    return ep.client.send(args)
  }

  start(): Promise<RefreshResult> {
    return this.topology.start().then((r) => this.refreshed(r))
  }

  private refreshed(r: RefreshResult): RefreshResult {
    this.opts.onRefresh?.(this.name, r)
    return r
  }

  /** Learns the slot map again (single-flight, at most every 100 ms); never rejects. */
  refresh(reason: string): Promise<RefreshResult> {
    return this.topology.refresh(reason).then((r) => this.refreshed(r))
  }

  /** Discovery changed the instance: its endpoints are the seeds and always-allowed nodes. */
  update(route: InstanceRoute): void {
    this.discovered = route
    this.topology.setEndpoints(seedsOf(route))
    // The shard routes carry the instance's policy: rebuild them with the new one.
    const state = this.topology.state
    if (state !== null) this.adopt(state)
  }

  get route(): InstanceRoute {
    return this.discovered
  }

  get state(): ClusterTopologyState | null {
    return this.topology.state
  }

  /** The shards, in slot-map order. */
  get shards(): readonly ShardRoute[] {
    return this.routes
  }

  get mapped(): boolean {
    return this.topology.state !== null
  }

  /** The shard serving `slot`, or null (uncovered, or its primary refused). */
  shardOf(slot: number): ShardRoute | null {
    const i = this.slots[slot]!
    return i === NO_SHARD ? null : (this.routes[i] ?? null)
  }

  /** Shards that serve slots and have a usable primary. */
  serving(): ShardRoute[] {
    return this.routes.filter((r) => r.slotCount > 0 && r.primary !== null)
  }

  /** A shard for a keyless command: one that serves slots, picked at random. */
  anyShard(): ShardRoute | null {
    const list = this.serving()
    if (list.length === 0) return null
    return list[Math.floor(this.random() * list.length)] ?? list[0]!
  }

  /**
   * A MOVED reply: the slot is served by `host:port` now. When that node is a known shard's primary
   * the slot points there at once; a refresh follows either way (a storm of them is one refresh).
   * True when the slot now points at another shard than before.
   */
  moved(slot: number, host: string, port: number): boolean {
    void this.refresh('moved')
    const id = endpointId(host, port)
    const to = this.routes.find((r) => r.primary === id)
    if (to === undefined || this.slots[slot] === to.index) return false
    this.slots[slot] = to.index
    return true
  }

  /** The route of one node (an ASK redirection's importing node), when it is attached; else null. */
  nodeRoute(host: string, port: number): InstanceRoute | null {
    const id = endpointId(host, port)
    if (!this.attached.has(id)) return null
    let r = this.nodeRoutes.get(id)
    if (r === undefined) {
      const ep = this.opts.pool.get(id)
      if (ep === undefined) return null
      r = { name: this.name, spec: { ...this.discovered.spec, endpoints: [ep.client.spec] } }
      this.nodeRoutes.set(id, r)
    }
    return r
  }

  /** The command table to find keys with: the first node's that has one. */
  commandTable(): LearnedTable | null {
    for (const r of this.routes) {
      for (const spec of r.route.spec.endpoints) {
        const t = this.opts.pool.get(spec.id)?.client.commands
        if (t) return t
      }
    }
    for (const spec of this.discovered.spec.endpoints) {
      const t = this.opts.pool.get(spec.id)?.client.commands
      if (t) return t
    }
    return null
  }

  /** Every node this instance uses, pooled. */
  nodes(): PooledEndpoint[] {
    const out: PooledEndpoint[] = []
    for (const id of this.attached) {
      const ep = this.opts.pool.get(id)
      if (ep) out.push(ep)
    }
    return out
  }

  /** The shard whose nodes include `id`, or null. */
  shardOfNode(id: string): ShardRoute | null {
    for (const r of this.routes) if (r.route.spec.endpoints.some((e) => e.id === id)) return r
    return null
  }

  private adopt(state: ClusterTopologyState): void {
    if (this.stopped) return
    const discovered = new Map<string, EndpointSpec>()
    for (const e of this.discovered.spec.endpoints) discovered.set(e.id, e)
    const routes: ShardRoute[] = []
    const used = new Set<string>()
    for (const shard of state.map.shards) {
      const endpoints: EndpointSpec[] = []
      let primary: string | null = null
      // The primary first: before health checks know roles, selection takes the first endpoint.
      for (const node of [shard.primary, ...shard.replicas]) {
        if (node.health === 'failed') continue
        const a = state.addresses.get(node.id)
        if (a === undefined) continue
        const id = endpointId(a.host, a.port)
        const spec = discovered.get(id) ?? { id, host: a.host, port: a.port, ready: true }
        const ep = this.opts.pool.attach(spec, this.name)
        // READONLY on every node (harmless on a primary, and roles change in a failover).
        if (this.discovered.spec.policy.readPolicy !== 'primary') ep.client.enableClusterReads()
        used.add(id)
        endpoints.push(spec)
        if (node === shard.primary) primary = id
      }
      routes.push(
        Object.freeze({
          index: shard.index,
          route: { name: this.name, spec: { ...this.discovered.spec, endpoints } },
          ranges: shard.ranges,
          slotCount: shard.slotCount,
          primary,
          shard,
        }),
      )
    }
    this.slots.fill(NO_SHARD)
    for (const r of routes) {
      if (r.primary === null) continue
      for (const [a, b] of r.ranges) this.slots.fill(r.index, a, b + 1)
    }
    this.routes = routes
    this.nodeRoutes = new Map()
    const before = this.attached
    this.attached = used
    for (const id of before) if (!used.has(id)) this.opts.pool.detach(id, this.name)
  }

  stop(): void {
    if (this.stopped) return
    this.stopped = true
    this.topology.stop()
    for (const id of this.attached) this.opts.pool.detach(id, this.name)
    this.attached = new Set()
    this.routes = []
    this.slots.fill(NO_SHARD)
  }
}

function seedsOf(route: InstanceRoute): ClusterEndpoint[] {
  return route.spec.endpoints.map((e) => ({ host: e.host, port: e.port }))
}

/** Which instances are served as clusters, and their ClusterInstance. */
export class ClusterManager {
  private readonly clusters = new Map<string, ClusterInstance>()
  private snap: RoutingSnapshot | null = null

  constructor(private readonly opts: ClusterOptions) {}

  /** The instance's cluster, when it is served as one. */
  get(name: string): ClusterInstance | undefined {
    return this.clusters.get(name)
  }

  all(): IterableIterator<ClusterInstance> {
    return this.clusters.values()
  }

  /** A routing-table change: clusters follow their instances (new seeds, new policy, removal, mode). */
  apply(snap: RoutingSnapshot, change: TableChange): void {
    this.snap = snap
    for (const r of change.removed) {
      const now = snap.instances.get(r.name)
      const c = this.clusters.get(r.name)
      if (now === undefined || now.spec.policy.mode === 'standalone') {
        if (c !== undefined) this.drop(r.name)
      }
    }
    for (const r of change.added) {
      const c = this.clusters.get(r.name)
      if (c !== undefined) c.update(r)
      else if (wantsCluster(r.spec, this.opts.pool)) this.create(r)
    }
  }

  /** An endpoint reported its mode after connecting: its `auto` instances become clusters. */
  clusterMode(ep: PooledEndpoint, enabled: boolean): void {
    if (!enabled || this.snap === null) return
    for (const name of ep.instances) {
      const route = this.snap.instances.get(name)
      if (route !== undefined && route.spec.policy.mode === 'auto' && !this.clusters.has(name)) this.create(route)
    }
  }

  /**
   * A reply from an instance served as standalone said MOVED or ASK: it is a cluster whose mode
   * was not known yet. Returns its cluster, or undefined when its mode is pinned to standalone.
   */
  suspect(route: InstanceRoute): ClusterInstance | undefined {
    const have = this.clusters.get(route.name)
    if (have !== undefined) return have
    if (route.spec.policy.mode === 'standalone') return undefined
    return this.create(route)
  }

  private create(route: InstanceRoute): ClusterInstance {
    const c = new ClusterInstance(route, this.opts)
    this.clusters.set(route.name, c)
    void c.start()
    return c
  }

  private drop(name: string): void {
    const c = this.clusters.get(name)
    if (c === undefined) return
    this.clusters.delete(name)
    c.stop()
  }

  stop(): void {
    for (const name of [...this.clusters.keys()]) this.drop(name)
  }
}

function wantsCluster(spec: InstanceSpec, pool: UpstreamPool): boolean {
  if (spec.policy.mode === 'cluster') return true
  if (spec.policy.mode === 'standalone') return false
  return spec.endpoints.some((e) => pool.get(e.id)?.client.clusterEnabled === true)
}
