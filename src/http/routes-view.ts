// The routing table as the ops plane shows it (`GET /admin/routes`, and the HTML page at `/`):
// one routing snapshot plus each endpoint's live state, flattened into plain JSON. Pure: state
// comes in, a new object goes out; nothing here changes routing, health or balancer state.
// The shape is documented (docs/admin-routes.md, docs/admin-routes.schema.json) and versioned:
// fields may be added within a version, never renamed, removed or retyped.
//
// What is left out on purpose: Redis passwords and usernames, tokens, replication ids and
// anything a request carried (keys, client ids). Endpoint ids are `host:port`, as in metrics.
//
// At scale (thousands of instances) the full view is megabytes: a query (`?q=`, `?health=`,
// `?limit=`, `?after=`...) builds the views of one page only. Its cost is a health pass over every
// instance (endpoint states read, no objects built: the page's counts), the page's views, and the
// groups touching the page. The full view itself is served as JSON text built a slice of instances
// per turn of the event loop (fullViewPieces): built in one go, 5,000 instances held the event loop
// for 60-90 ms per call.

import { performance } from 'node:perf_hooks'
import { setImmediate as nextTurn } from 'node:timers/promises'
import type { LoadTracker } from '../balancer/least-request.js'
import type { EndpointSpec, GroupStrategy, InstanceSpec, Maintenance, ReadPolicy, ServingMode, Strategy } from '../core/topology.js'
import { BadRequestError } from '../core/errors.js'
import type { ClusterManager } from '../upstream/cluster.js'
import type { SlotRange } from '../routing/cluster-slots.js'
import { EndpointState } from '../resilience/endpoint-state.js'
import { findPrimary, replicaOffset, replicaRejection, type EndpointRef } from '../selection/select.js'
import type { Router } from '../selection/router.js'
import type { GroupRoute, InstanceRoute, RoutingSnapshot, RoutingTable } from '../routing/table.js'
import type { PooledEndpoint, UpstreamPool } from '../upstream/pool.js'
import type { LearnedTable } from '../routing/command-table.js'
import type { LinkState, Role } from '../core/role.js'

/** Bumped only on an incompatible change (a field renamed, removed or retyped). */
export const ROUTES_VIEW_VERSION = 1

export interface RoutesView {
  readonly version: typeof ROUTES_VIEW_VERSION
  /** When this view was built (ISO 8601, UTC). */
  readonly generatedAt: string
  /** The routing snapshot's version: it rises with every change discovery or config makes. */
  readonly tableVersion: number
  /** This gateway's zone (GATEWAY_ZONE), or null. */
  readonly zone: string | null
  /** Sorted by name. */
  readonly instances: readonly InstanceView[]
  /** Sorted by name. */
  readonly groups: readonly GroupView[]
  /** Only in a reply to a query (RoutesQuery): which part of the table this is. */
  readonly page?: RoutesPage
}

/** Where a queried view sits in the table, and the table's health at a glance. */
export interface RoutesPage {
  /** Instances in the routing table. */
  readonly total: number
  /** Of those, how many match the filter (instance, q, health), on every page. */
  readonly matched: number
  /** Matching instances sorted before this page (at or before `after`). */
  readonly offset: number
  /** Instances in this reply. */
  readonly returned: number
  /** Pass as `after` for the next page; null on the last page. */
  readonly next: string | null
  /** Every instance of the table (not only the matching ones) by health. */
  readonly health: { readonly up: number; readonly degraded: number; readonly down: number }
}

/** Which groups a queried view carries. */
export type GroupsMode = 'page' | 'all' | 'none'

/** A query of `GET /admin/routes` (parseRoutesQuery); the filters combine (all must match). */
export interface RoutesQuery {
  /** Exact instance names; null = any. */
  readonly instances: readonly string[] | null
  /** Substring of the instance name, case-insensitive; null = any. */
  readonly q: string | null
  /** null = any. */
  readonly health: readonly InstanceHealth[] | null
  /** Only instances sorted after this name (the previous page's `next`); null = from the first. */
  readonly after: string | null
  /** At most this many instances; null = every matching one. */
  readonly limit: number | null
  /** page: the groups of the returned instances, listing those instances only; all: every group, every member; none. */
  readonly groups: GroupsMode
}

/** The largest `limit`, and the longest value and most `instance` parameters a query may have. */
export const ROUTES_QUERY_LIMITS = Object.freeze({ maxLimit: 1000, maxValueChars: 256, maxInstances: 1000 })

export type InstanceHealth = 'up' | 'degraded' | 'down'

export interface InstanceView {
  readonly name: string
  /** `static`, `kubernetes:<namespace>/<service>`, or `kubernetes:<namespace>/<kind>/<release>` (operators.ts). */
  readonly source: string
  /** up: every endpoint serving; degraded: a primary serves but some endpoint does not; down: no primary serves. */
  readonly health: InstanceHealth
  /** Id of the endpoint writes go to now, or null when there is none. */
  readonly primary: string | null
  readonly maintenance: Maintenance
  readonly weight: number
  readonly groups: readonly string[]
  readonly readPolicy: ReadPolicy
  readonly strategy: Strategy
  readonly maxReplicaLagBytes: number
  /** null = hedging off. */
  readonly hedgeAfterMs: number | null
  /** The `redis-gateway.io/port` annotation (name or number), or null. */
  readonly port: string | number | null
  /** Requests in flight on the instance as a whole (what least-request groups compare). */
  readonly inflight: number
  /** The instance's peak-EWMA latency in ms; null before its first request. */
  readonly ewmaMs: number | null
  readonly annotationErrors: readonly { readonly key: string; readonly value: string; readonly message: string }[]
  /** In discovery order. */
  readonly endpoints: readonly EndpointView[]
  /** The `redis-gateway.io/mode` annotation: auto (detect Redis Cluster), cluster or standalone. */
  readonly mode: ServingMode
  /**
   * Served as a Redis Cluster: its shards as the cluster announces them; null for an instance
   * served as standalone. For a cluster, `primary` is null (each shard has its own) and `health`
   * sums up the shards.
   */
  readonly cluster: ClusterView | null
}

export interface ClusterView {
  /** Where the slot map came from; null before the first one was learned. */
  readonly source: 'CLUSTER SHARDS' | 'CLUSTER SLOTS' | null
  /** The node that gave it (`host:port`); null before. */
  readonly learnedFrom: string | null
  /** ms since the slot map last changed; null before the first. */
  readonly changedAgoMs: number | null
  /** Slots served by a shard whose primary the gateway uses (16384 when all). */
  readonly slotsServed: number
  /** In slot order (shards serving no slot last). */
  readonly shards: readonly ShardView[]
  /** Nodes the cluster announces that the gateway does not use, and why (not discovered, no port). */
  readonly refused: readonly RefusedNodeView[]
}

export interface ShardView {
  readonly index: number
  /** Inclusive slot ranges. */
  readonly slots: readonly SlotRange[]
  readonly slotCount: number
  /** The primary the cluster announces (`host:port`); null when it is refused or failed. */
  readonly primary: string | null
  /** As for instances: up, degraded or down (no serving primary: its slots fail). */
  readonly health: InstanceHealth
  /** The shard's nodes the gateway uses, primary first. */
  readonly endpoints: readonly EndpointView[]
}

export interface RefusedNodeView {
  /** The cluster's node id. */
  readonly id: string
  readonly host: string
  readonly port: number | null
  readonly role: 'primary' | 'replica'
  /** Slots it serves (a refused primary's slots are not served). */
  readonly slots: number
  readonly reason: string
}

/** What the view needs of a cluster instance. */
export interface LiveCluster {
  readonly source: 'CLUSTER SHARDS' | 'CLUSTER SLOTS' | null
  readonly learnedFrom: string | null
  /** performance.now() time of the last change; null before. */
  readonly changedAt: number | null
  readonly shards: readonly { readonly index: number; readonly ranges: readonly SlotRange[]; readonly slotCount: number; readonly primary: string | null; readonly endpoints: readonly EndpointSpec[] }[]
  readonly refused: readonly RefusedNodeView[]
}

export type BreakerView = {
  readonly state: 'closed' | 'open' | 'half-open'
  /** Transport failures in a row (closed only; 0 otherwise). */
  readonly consecutiveFailures: number
  /** Consecutive openings without a successful probe (open and half-open; 0 when closed). */
  readonly openings: number
  /** Open only: ms until it admits a probe; null otherwise. */
  readonly retryInMs: number | null
}

export interface EndpointView {
  /** `host:port` (IPv6 hosts in brackets): the same id as the metrics' `endpoint` label. */
  readonly id: string
  readonly host: string
  readonly port: number
  readonly zone: string | null
  /** Discovery says ready (static endpoints always are). */
  readonly ready: boolean
  readonly terminating: boolean
  /** The gateway's connection to it is up. */
  readonly connected: boolean
  /** The role the endpoint's own ROLE reply reported; unknown before the first check. */
  readonly role: Role
  /** Writes go here (the instance's `primary`). */
  readonly isPrimary: boolean
  /** The last health check passed (the metric endpoint_up). */
  readonly up: boolean
  /** Could take requests of its role now (health, replication link and lag, breaker). */
  readonly serving: boolean
  /** Why it is not serving; null when it is. */
  readonly reason: string | null
  /** The last health-check failure (or "connection closed"); null after a check passes. */
  readonly lastError: string | null
  /** ms since the last health check finished; null before the first. */
  readonly lastCheckAgoMs: number | null
  /** Replicas: the link to the primary as ROLE reports it; null for other roles. */
  readonly link: LinkState | null
  /** Replication offset (primary: master_repl_offset; replica: processed offset). */
  readonly offset: number
  /** Replicas: bytes of replication offset behind the primary at the last check; null otherwise. */
  readonly lagBytes: number | null
  readonly breaker: BreakerView
  /** Requests sent and not yet answered. */
  readonly inflight: number
  /** Requests waiting for its connection to be (re)established. */
  readonly pending: number
  /**
   * Requests waiting for one of its in-flight slots (all limits.maxInflightPerEndpoint taken),
   * first come first served (README "Overload and deadlines").
   */
  readonly queued: number
  /** Peak-EWMA round-trip estimate in ms; null before the first request. */
  readonly ewmaMs: number | null
  /** The Redis ACL users tokens run as on this endpoint (README "Tokens and Redis ACL users"). */
  readonly aclUsers: AclUsersView
  /** The command table learned from it (README "How commands are classified"). */
  readonly commands: CommandsView
}

export interface CommandsView {
  /** learned: read with COMMAND INFO; pending: not (yet): the built-in table applies. */
  readonly state: 'learned' | 'pending'
  /** Commands in it; null while pending. */
  readonly count: number | null
  /** Of those, registered by modules (FT.*, JSON.*...); null while pending. */
  readonly moduleCommands: number | null
  /** Equal for endpoints whose tables are equal; null while pending. */
  readonly fingerprint: string | null
}

export interface AclUsersView {
  /** managed: provisioned; unmanaged: the gateway cannot (scripts refused below admin); pending: not known yet. */
  readonly state: 'managed' | 'unmanaged' | 'pending'
  /** Why unmanaged; null otherwise. */
  readonly reason: string | null
  /** Connections open for users tokens run as (opened on first use, closed when idle). */
  readonly connections: number
}

export interface GroupView {
  readonly name: string
  readonly strategy: GroupStrategy
  /** Sorted by instance name. In a queried view with groups=page: only the members on the page. */
  readonly members: readonly GroupMemberView[]
  /** Queried views only: members the group has (listed or not). */
  readonly memberCount?: number
  /** Queried views only: of those, how many take new group traffic now. */
  readonly membersTakingTraffic?: number
}

export interface GroupMemberView {
  readonly instance: string
  readonly weight: number
  readonly maintenance: Maintenance
  /** The member gets new group traffic now. */
  readonly takingTraffic: boolean
  /** Why it gets none; null when it does. */
  readonly reason: string | null
  /**
   * Expected share of new group traffic, 0..1: by weight for `weighted` and `sticky`, equal for
   * `round-robin`; null for `least-request` (it follows load) and for members taking none.
   */
  readonly share: number | null
}

/** An endpoint's live state as the view needs it. */
export interface LiveEndpoint {
  readonly state: EndpointState
  readonly connected: boolean
  /** Requests waiting for an in-flight slot (EndpointView.queued); 0 when absent. */
  readonly queued?: number
  readonly aclUsers?: AclUsersView
  readonly commands?: CommandsView
}

export interface RoutesViewInput {
  readonly snapshot: RoutingSnapshot
  /** Live state of a pooled endpoint by id; undefined when the pool does not hold it (yet). */
  readonly endpoint: (id: string) => LiveEndpoint | undefined
  /** An instance's aggregate load, or null before its first request. */
  readonly instanceLoad: (name: string) => LoadTracker | null
  readonly zone: string | null
  /** The clock of breakers and latency estimates (performance.now()). */
  readonly monoNowMs: number
  /** The wall clock (Date.now()), of generatedAt and health-check times. */
  readonly wallNowMs: number
  /** The instance's cluster, when it is served as one. */
  readonly cluster?: (name: string) => LiveCluster | undefined
  /**
   * An endpoint's state and connection only, for the health pass over every instance of a
   * queried view (cheaper than `endpoint`, which also reads ACL and command-table state);
   * defaults to `endpoint`.
   */
  readonly endpointState?: (id: string) => { readonly state: EndpointState; readonly connected: boolean } | undefined
}

/**
 * The live view source for the ops plane: each call reads the current snapshot and state. A page
 * for a query; the full view only in pieces (fullViewPieces), never built in one turn.
 */
export function liveRoutes(deps: {
  readonly table: RoutingTable
  readonly pool: UpstreamPool
  readonly router: Router<PooledEndpoint>
  readonly zone: string | null
  readonly clusters?: ClusterManager
}): { routes(query: RoutesQuery): RoutesView; fullView(): Promise<string[]> } {
  const input = (): RoutesViewInput => ({
    snapshot: deps.table.current,
    endpointState: (id) => {
      const ep = deps.pool.get(id)
      return ep === undefined ? undefined : { state: ep.state, connected: ep.client.up }
    },
    endpoint: (id) => {
      const ep = deps.pool.get(id)
      if (ep === undefined) return undefined
      const acl = ep.client.acls
      return {
        state: ep.state,
        connected: ep.client.up,
        queued: ep.slots.waiting,
        aclUsers: {
          state: acl.kind === 'unknown' ? 'pending' : acl.kind,
          reason: acl.kind === 'unmanaged' ? acl.reason : null,
          connections: ep.client.userConnectionsReady,
        },
        commands: commandsView(ep.client.commands),
      }
    },
    instanceLoad: (name) => deps.router.loadOf(name),
    cluster: (name) => {
      const c = deps.clusters?.get(name)
      if (c === undefined) return undefined
      const st = c.state
      return {
        source: st?.command ?? null,
        learnedFrom: st === null ? null : `${st.from.host}:${st.from.port}`,
        changedAt: st?.at ?? null,
        shards: c.shards.map((r) => ({ index: r.index, ranges: r.ranges, slotCount: r.slotCount, primary: r.primary, endpoints: r.route.spec.endpoints })),
        refused: (st?.refused ?? []).map((r) => ({ id: r.id, host: r.host, port: r.port, role: r.role, slots: r.slots, reason: r.reason })),
      }
    },
    zone: deps.zone,
    monoNowMs: performance.now(),
    wallNowMs: Date.now(),
  })
  return { routes: (query) => buildRoutesView(input(), query), fullView: () => fullViewPieces(input()) }
}

/** What the serving rules read of an endpoint. */
interface StateRef extends EndpointRef {
  readonly connected: boolean
}

interface Ref extends StateRef {
  readonly queued: number
  readonly aclUsers: AclUsersView
  readonly commands: CommandsView
}

const ACL_PENDING: AclUsersView = Object.freeze({ state: 'pending', reason: null, connections: 0 })
const COMMANDS_PENDING: CommandsView = Object.freeze({ state: 'pending', count: null, moduleCommands: null, fingerprint: null })

function commandsView(t: LearnedTable | null): CommandsView {
  return t === null ? COMMANDS_PENDING : { state: 'learned', count: t.specs.size, moduleCommands: t.moduleCommands, fingerprint: t.fingerprint }
}

/** The view: the whole table, or with a query one page of it (null/undefined: the whole table). */
export function buildRoutesView(input: RoutesViewInput, query?: RoutesQuery | null): RoutesView {
  if (query !== undefined && query !== null) return buildPage(input, query)
  const snap = input.snapshot
  const sorted = sortedOf(snap)
  const instances = sorted.instances.map((r) => instanceView(r, input))
  const byInstance = new Map(instances.map((i) => [i.name, factsOfView(i)]))
  const groups = sorted.groups.map((g) => groupView(g, (name) => byInstance.get(name)))
  return { ...viewHead(input), instances, groups }
}

/** Instances whose views fullViewPieces builds per turn of the event loop: ~2 ms each (5,000 instances: ~35 ms of CPU in 20 slices; bench/README.md, "Routes view at scale"). */
export const VIEW_SLICE_INSTANCES = 250

/**
 * The full view (buildRoutesView without a query) as JSON text in pieces, `sliceInstances` instances
 * per piece, each piece built in a turn of its own: the same text JSON.stringify gives for
 * buildRoutesView(input), field for field. The snapshot and the clock are read once, at the start;
 * endpoint state is read as each slice is built, so a view of thousands of instances is not one
 * instant (as for a scrape of /metrics).
 */
export async function fullViewPieces(input: RoutesViewInput, sliceInstances = VIEW_SLICE_INSTANCES): Promise<string[]> {
  const sorted = sortedOf(input.snapshot)
  // The head's fields, then the instances' array opened.
  const head = JSON.stringify(viewHead(input))
  const pieces: string[] = [`${head.slice(0, -1)},"instances":[`]
  const facts = new Map<string, MemberFacts>()
  const all = sorted.instances
  for (let from = 0; from < all.length; from += sliceInstances) {
    if (from > 0) await nextTurn()
    const parts: string[] = []
    for (let i = from; i < Math.min(all.length, from + sliceInstances); i++) {
      const view = instanceView(all[i]!, input)
      facts.set(view.name, factsOfView(view))
      parts.push(JSON.stringify(view))
    }
    pieces.push((from > 0 ? ',' : '') + parts.join(','))
  }
  const groups = sorted.groups.map((g) => groupView(g, (name) => facts.get(name)))
  pieces.push(`],"groups":${JSON.stringify(groups)}}`)
  return pieces
}

/** The fields every routes view starts with, the full one and a page alike. */
function viewHead(input: RoutesViewInput): Pick<RoutesView, 'version' | 'generatedAt' | 'tableVersion' | 'zone'> {
  return {
    version: ROUTES_VIEW_VERSION,
    generatedAt: new Date(input.wallNowMs).toISOString(),
    tableVersion: input.snapshot.version,
    zone: input.zone,
  }
}

const HEALTHS: readonly InstanceHealth[] = ['up', 'degraded', 'down']
const GROUPS_MODES: readonly GroupsMode[] = ['page', 'all', 'none']
const QUERY_PARAMS = ['instance', 'q', 'health', 'limit', 'after', 'groups'] as const

/**
 * The query of `GET /admin/routes` from its URL parameters; null when it has none (the full view,
 * as before queries existed). `_token` (the page's credential) is not a query parameter. Throws a
 * BadRequestError naming the parameter for an unknown one, a repeated single one, or a bad value:
 * a misspelt filter must not silently return the whole table.
 */
export function parseRoutesQuery(params: URLSearchParams): RoutesQuery | null {
  const { maxLimit, maxValueChars, maxInstances } = ROUTES_QUERY_LIMITS
  const seen = new Map<string, string[]>()
  for (const [key, value] of params) {
    if (key === '_token') continue
    if (!(QUERY_PARAMS as readonly string[]).includes(key)) {
      throw new BadRequestError(`unknown parameter ${quote(key)} of /admin/routes; known: ${QUERY_PARAMS.join(', ')} (docs/admin-routes.md)`)
    }
    if (value.length > maxValueChars) throw new BadRequestError(`${key} is longer than ${maxValueChars} characters`)
    const list = seen.get(key)
    if (list === undefined) seen.set(key, [value])
    else list.push(value)
  }
  if (seen.size === 0) return null
  const one = (key: string): string | null => {
    const list = seen.get(key)
    if (list === undefined) return null
    if (list.length > 1) throw new BadRequestError(`${key} is given ${list.length} times; give it once`)
    return list[0]!
  }
  const instances = seen.get('instance') ?? null
  if (instances !== null) {
    if (instances.length > maxInstances) throw new BadRequestError(`at most ${maxInstances} instance parameters, got ${instances.length}`)
    if (instances.includes('')) throw new BadRequestError('instance must be an instance name, got an empty value')
  }
  let health: InstanceHealth[] | null = null
  for (const value of seen.get('health') ?? []) {
    for (const h of value.split(',')) {
      if (!(HEALTHS as readonly string[]).includes(h)) {
        throw new BadRequestError(`health must be up, degraded or down (several: comma-separated or repeated), got ${quote(h)}`)
      }
      health ??= []
      health.push(h as InstanceHealth)
    }
  }
  const limitText = one('limit')
  let limit: number | null = null
  if (limitText !== null) {
    limit = /^[0-9]{1,7}$/.test(limitText) ? Number(limitText) : NaN
    if (!(limit >= 1 && limit <= maxLimit)) throw new BadRequestError(`limit must be an integer from 1 to ${maxLimit}, got ${quote(limitText)}`)
  }
  const groups = one('groups') ?? 'page'
  if (!(GROUPS_MODES as readonly string[]).includes(groups)) throw new BadRequestError(`groups must be page, all or none, got ${quote(groups)}`)
  return { instances, q: one('q'), health, after: one('after'), limit, groups: groups as GroupsMode }
}

/** A value as an error message shows it: quoted, escaped, at most 64 characters. */
function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}...` : s)
}

interface Sorted {
  readonly instances: readonly InstanceRoute[]
  /** The names in lower case, for `q`. */
  readonly lower: readonly string[]
  /** Name -> position in `instances`. */
  readonly index: ReadonlyMap<string, number>
  readonly groups: readonly GroupRoute[]
}

// A snapshot never changes, so its sorted lists are made once per table version, not per call.
const SORTED = new WeakMap<RoutingSnapshot, Sorted>()

function sortedOf(snap: RoutingSnapshot): Sorted {
  let s = SORTED.get(snap)
  if (s === undefined) {
    const instances = [...snap.instances.values()].sort(byName)
    s = {
      instances,
      lower: instances.map((r) => r.name.toLowerCase()),
      index: new Map(instances.map((r, i) => [r.name, i])),
      groups: [...snap.groups.values()].sort(byName),
    }
    SORTED.set(snap, s)
  }
  return s
}

function buildPage(input: RoutesViewInput, query: RoutesQuery): RoutesView {
  const snap = input.snapshot
  const sorted = sortedOf(snap)
  const wanted = query.instances === null ? null : new Set(query.instances)
  const q = query.q === null || query.q === '' ? null : query.q.toLowerCase()
  const healthWanted = query.health === null ? null : new Set(query.health)
  const after = query.after
  const limit = query.limit ?? Infinity
  const counts = { up: 0, degraded: 0, down: 0 }
  // Per instance (by position): whether it has a primary, which is what groups need of members.
  const hasPrimary = new Uint8Array(sorted.instances.length)
  const page: InstanceRoute[] = []
  let matched = 0
  let offset = 0
  let more = false
  // One pass over every instance: its health (for the counts and the filter) from endpoint states,
  // without building views; the views are built for the page only, below.
  for (let i = 0; i < sorted.instances.length; i++) {
    const route = sorted.instances[i]!
    const { health, primary } = assess(route, input)
    counts[health]++
    if (primary) hasPrimary[i] = 1
    if (wanted !== null && !wanted.has(route.name)) continue
    if (q !== null && !sorted.lower[i]!.includes(q)) continue
    if (healthWanted !== null && !healthWanted.has(health)) continue
    matched++
    if (after !== null && route.name <= after) offset++
    else if (page.length < limit) page.push(route)
    else more = true
  }
  const instances = page.map((r) => instanceView(r, input))
  const factsOf = (name: string): MemberFacts | undefined => {
    const i = sorted.index.get(name)
    if (i === undefined) return undefined
    const policy = sorted.instances[i]!.spec.policy
    return { weight: policy.weight, maintenance: policy.maintenance, hasPrimary: hasPrimary[i] === 1 }
  }
  return {
    ...viewHead(input),
    instances,
    groups: pageGroups(query.groups, sorted, instances, factsOf),
    page: { total: sorted.instances.length, matched, offset, returned: instances.length, next: more ? page[page.length - 1]!.name : null, health: counts },
  }
}

/**
 * The groups of a queried view. page: those the returned instances are in, listing only them as
 * members (bytes in proportion to the page, not to the groups' sizes); all: every group with every
 * member. Shares are over the whole group either way, and each group says how many members it has.
 */
function pageGroups(mode: GroupsMode, sorted: Sorted, views: readonly InstanceView[], factsOf: (name: string) => MemberFacts | undefined): GroupView[] {
  switch (mode) {
    case 'none':
      return []
    case 'all':
      return sorted.groups.map((g) => groupView(g, factsOf, { only: null }))
    case 'page': {
      const only = new Set(views.map((v) => v.name))
      const touched = new Set(views.flatMap((v) => v.groups))
      return sorted.groups.filter((g) => touched.has(g.name)).map((g) => groupView(g, factsOf, { only }))
    }
  }
}

/** What a group needs of a member: what the router's rule reads. */
interface MemberFacts {
  readonly weight: number
  readonly maintenance: Maintenance
  /** The view's `primary` is not null (never for a cluster). */
  readonly hasPrimary: boolean
}

function factsOfView(i: InstanceView): MemberFacts {
  return { weight: i.weight, maintenance: i.maintenance, hasPrimary: i.primary !== null }
}

/** An instance's health and whether it has a primary (a cluster never has one), by the rules of instanceView, from endpoint states only. */
function assess(route: InstanceRoute, input: RoutesViewInput): { health: InstanceHealth; primary: boolean } {
  const maxLag = route.spec.policy.maxReplicaLagBytes
  const live = input.cluster?.(route.name)
  if (live === undefined) return endpointsHealth(stateRefsOf(route.spec.endpoints, input), maxLag)
  let slotsServed = 0
  const shards = live.shards.map((s) => {
    if (s.primary !== null) slotsServed += s.slotCount
    return { slotCount: s.slotCount, health: s.primary === null ? ('down' as const) : endpointsHealth(stateRefsOf(s.endpoints, input), maxLag).health }
  })
  return { health: clusterHealth(shards, slotsServed), primary: false }
}

function endpointsHealth(refs: readonly StateRef[], maxLag: number): { health: InstanceHealth; primary: boolean } {
  const primary = findPrimary(refs) as StateRef | null
  let primaryServing = false
  let allServing = true
  for (const r of refs) {
    const serving = notServing(r, r === primary, primary, maxLag) === null && r.state.breaker.state.kind !== 'open'
    if (r === primary) primaryServing = serving
    allServing &&= serving
  }
  return { health: combinedHealth(primary !== null && primaryServing, allServing), primary: primary !== null }
}

function combinedHealth(primaryServing: boolean, allServing: boolean): InstanceHealth {
  return !primaryServing ? 'down' : allServing ? 'up' : 'degraded'
}

/** A cluster's health from its shards': down when some slot has no serving primary. */
function clusterHealth(shards: readonly { readonly slotCount: number; readonly health: InstanceHealth }[], slotsServed: number): InstanceHealth {
  const serving = shards.filter((s) => s.slotCount > 0)
  return slotsServed < 16_384 || serving.some((s) => s.health === 'down') ? 'down' : serving.every((s) => s.health === 'up') ? 'up' : 'degraded'
}

function stateRefsOf(specs: readonly EndpointSpec[], input: RoutesViewInput): StateRef[] {
  const read = input.endpointState ?? input.endpoint
  return specs.map((e) => {
    const live = read(e.id)
    return { spec: e, state: live?.state ?? new EndpointState(e.id), connected: live?.connected ?? false }
  })
}

function refsOf(specs: readonly EndpointSpec[], input: RoutesViewInput): Ref[] {
  return specs.map((e) => {
    const live = input.endpoint(e.id)
    // Not pooled (never the case once the table is published): a blank state, so the endpoint
    // still shows up, as not connected, with no role.
    return { spec: e, state: live?.state ?? new EndpointState(e.id), connected: live?.connected ?? false, queued: live?.queued ?? 0, aclUsers: live?.aclUsers ?? ACL_PENDING, commands: live?.commands ?? COMMANDS_PENDING }
  })
}

/** Endpoints with the acting primary among them, and how healthy they are together. */
function endpointsView(refs: Ref[], maxLag: number, input: RoutesViewInput): { endpoints: EndpointView[]; primary: Ref | null; health: InstanceHealth } {
  const primary = findPrimary(refs) as Ref | null
  const endpoints = refs.map((r) => endpointView(r, primary, maxLag, input))
  const primaryView = primary === null ? undefined : endpoints[refs.indexOf(primary)]
  const health = combinedHealth(primaryView?.serving === true, endpoints.every((e) => e.serving))
  return { endpoints, primary, health }
}

function clusterView(c: LiveCluster, maxLag: number, input: RoutesViewInput): ClusterView {
  let slotsServed = 0
  const shards = c.shards.map((s): ShardView => {
    const v = endpointsView(refsOf(s.endpoints, input), maxLag, input)
    if (s.primary !== null) slotsServed += s.slotCount
    return { index: s.index, slots: s.ranges.map(([a, b]) => [a, b] as const), slotCount: s.slotCount, primary: s.primary, health: s.primary === null ? 'down' : v.health, endpoints: v.endpoints }
  })
  return {
    source: c.source,
    learnedFrom: c.learnedFrom,
    changedAgoMs: c.changedAt === null ? null : Math.max(0, Math.round(input.monoNowMs - c.changedAt)),
    slotsServed,
    shards,
    refused: c.refused,
  }
}

function instanceView(route: InstanceRoute, input: RoutesViewInput): InstanceView {
  const spec: InstanceSpec = route.spec
  const policy = spec.policy
  const own = endpointsView(refsOf(spec.endpoints, input), policy.maxReplicaLagBytes, input)
  const endpoints = own.endpoints
  const live = input.cluster?.(route.name)
  const cluster = live === undefined ? null : clusterView(live, policy.maxReplicaLagBytes, input)
  const health = cluster === null ? own.health : clusterHealth(cluster.shards, cluster.slotsServed)
  const load = input.instanceLoad(route.name)
  return {
    name: route.name,
    source: spec.source,
    health,
    primary: cluster !== null ? null : (own.primary?.spec.id ?? null),
    maintenance: policy.maintenance,
    weight: policy.weight,
    groups: [...policy.groups],
    readPolicy: policy.readPolicy,
    strategy: policy.strategy,
    maxReplicaLagBytes: policy.maxReplicaLagBytes,
    hedgeAfterMs: policy.hedgeAfterMs,
    port: policy.port,
    inflight: load?.inflight ?? 0,
    ewmaMs: load === null ? null : latencyMs(load, input.monoNowMs),
    annotationErrors: spec.annotationErrors.map((e) => ({ key: e.key, value: e.value, message: e.message })),
    endpoints,
    mode: policy.mode,
    cluster,
  }
}

function endpointView(ref: Ref, primary: Ref | null, maxLag: number, input: RoutesViewInput): EndpointView {
  const { spec, state } = ref
  const isPrimary = ref === primary
  const breaker = breakerView(state, input.monoNowMs)
  const reason = notServing(ref, isPrimary, primary, maxLag) ?? (breaker.state === 'open' ? 'breaker open' : null)
  const replica = state.role === 'replica'
  return {
    id: spec.id,
    host: spec.host,
    port: spec.port,
    zone: spec.zone ?? null,
    ready: spec.ready,
    terminating: spec.terminating === true,
    connected: ref.connected,
    role: state.role,
    isPrimary,
    up: state.healthy,
    serving: reason === null,
    reason,
    lastError: state.lastError,
    lastCheckAgoMs: state.lastCheckMs > 0 ? Math.max(0, Math.round(input.wallNowMs - state.lastCheckMs)) : null,
    link: replica ? state.link : null,
    offset: state.offset,
    // As the gateway measures it for routing (replica_lag_bytes also takes the primary's view).
    lagBytes: replica && primary !== null ? Math.max(0, state.primaryOffsetAtCheck - replicaOffset(ref, primary)) : null,
    breaker,
    inflight: state.load.inflight,
    pending: state.pending,
    queued: ref.queued,
    ewmaMs: latencyMs(state.load, input.monoNowMs),
    aclUsers: ref.aclUsers,
    commands: ref.commands,
  }
}

/** Why an endpoint cannot take requests of its role (breakers aside), or null. */
function notServing(ref: StateRef, isPrimary: boolean, primary: StateRef | null, maxLag: number): string | null {
  const { spec, state } = ref
  if (!spec.ready) return spec.terminating === true ? 'terminating' : 'not ready in discovery'
  if (!ref.connected) return 'not connected'
  // Before any role is known the first ready endpoint acts as primary (bootstrap), health unknown.
  if (isPrimary) return null
  if (!state.healthy) return state.lastCheckMs === 0 ? 'not checked yet' : 'health check failing'
  switch (state.role) {
    case 'unknown':
      return 'role unknown'
    case 'primary':
      return 'claims primary, but another endpoint is the acting primary'
    case 'replica':
      return replicaRejection(ref, primary, maxLag, null)
  }
}

function breakerView(state: EndpointState, now: number): BreakerView {
  // Reading the state applies what time alone changes (open -> half-open), exactly as the next
  // request would; it decides nothing.
  const s = state.breaker.state
  switch (s.kind) {
    case 'closed':
      return { state: 'closed', consecutiveFailures: s.consecutiveFailures, openings: 0, retryInMs: null }
    case 'open':
      return { state: 'open', consecutiveFailures: 0, openings: s.openings, retryInMs: Math.max(0, Math.round(s.until - now)) }
    case 'half-open':
      return { state: 'half-open', consecutiveFailures: 0, openings: s.openings, retryInMs: null }
  }
}

/**
 * `counted` (queried views): the group says how many members it has and how many take traffic, and
 * lists only the members in `only` (when not null).
 */
function groupView(group: GroupRoute, factsOf: (name: string) => MemberFacts | undefined, counted?: { readonly only: ReadonlySet<string> | null }): GroupView {
  const members = group.members.map((name) => ({ name, inst: factsOf(name) }))
  // The router's rule (Router.resolve): members draining or with weight 0 take nothing; members
  // without a primary take nothing while some member has one.
  const eligible = (i: MemberFacts | undefined): i is MemberFacts => i !== undefined && i.maintenance !== 'drain' && i.weight > 0
  const anyWithPrimary = members.some((m) => eligible(m.inst) && m.inst.hasPrimary)
  const taking = (i: MemberFacts | undefined): boolean => eligible(i) && (!anyWithPrimary || i.hasPrimary)
  const takers = members.filter((m) => taking(m.inst))
  const totalWeight = takers.reduce((sum, m) => sum + (m.inst?.weight ?? 0), 0)
  const only = counted?.only ?? null
  const listed = only === null ? members : members.filter((m) => only.has(m.name))
  const view: GroupView = {
    name: group.name,
    strategy: group.strategy,
    members: listed.map(({ name, inst }): GroupMemberView => {
      const takingTraffic = taking(inst)
      let reason: string | null = null
      if (inst === undefined) reason = 'unknown instance'
      else if (inst.maintenance === 'drain') reason = 'draining'
      else if (!(inst.weight > 0)) reason = 'weight 0'
      else if (!takingTraffic) reason = 'no healthy primary'
      return {
        instance: name,
        weight: inst?.weight ?? 0,
        maintenance: inst?.maintenance ?? 'off',
        takingTraffic,
        reason,
        share: takingTraffic ? share(group.strategy, inst?.weight ?? 0, totalWeight, takers.length) : null,
      }
    }),
  }
  return counted === undefined ? view : { ...view, memberCount: members.length, membersTakingTraffic: takers.length }
}

function share(strategy: GroupStrategy, weight: number, totalWeight: number, takers: number): number | null {
  switch (strategy) {
    case 'weighted':
    case 'sticky':
      return totalWeight > 0 ? round(weight / totalWeight, 4) : null
    case 'round-robin':
      return round(1 / takers, 4)
    case 'least-request':
      return null
  }
}

function latencyMs(load: LoadTracker, now: number): number | null {
  return load.latency.hasObservations ? round(load.latency.get(now), 3) : null
}

function round(x: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

function byName(a: { readonly name: string }, b: { readonly name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0
}
