// Keeps exactly one EndpointClient (plus a lazily-connected PubSubHub and the endpoint's
// EndpointState) per endpoint the routing table names, creating them for new endpoints and
// closing those no instance uses any more. An endpoint is pooled as soon as the table that names
// it is applied (the router looks it up then); its connect attempts go through the start queue
// (start-queue.ts), a bounded number at a time, and its command table is shared with every
// endpoint that reports the same one.

import { performance } from 'node:perf_hooks'
import type { EndpointSpec } from '../core/topology.js'
import { CircuitBreaker, type BreakerOptions } from '../resilience/breaker.js'
import { EndpointState } from '../resilience/endpoint-state.js'
import type { RoutingSnapshot, TableChange } from '../routing/table.js'
import { EndpointClient, SharedTables, type UpstreamOptions } from './endpoint-client.js'
import { START_CONCURRENCY, StartQueue } from './start-queue.js'
import { PubSubHub } from './pubsub.js'
import { aclSettings, type AclSettings, type AclState } from './acl-users.js'
import { GATEWAY_IDENTITY, type Identity } from '../core/identity.js'
import { ForbiddenError, NoEndpointError, OverloadedError } from '../core/errors.js'
import type { LearnedTable } from '../routing/command-table.js'
import { DEFAULTS } from '../config/schema.js'
import { Deadlines, type DeadlineClock } from './deadlines.js'
import { SlotQueue } from './slot-queue.js'

export interface PooledEndpoint {
  readonly id: string
  readonly client: EndpointClient
  /** The subscriber of the gateway's own user: SSE streams of every token not bound to an operator's Redis user. */
  readonly pubsub: PubSubHub
  /** The subscriber that SSE streams of `id` use: an operator-managed user subscribes as itself. */
  pubsubFor(id: Identity): PubSubHub
  readonly state: EndpointState
  /** Instances that list this endpoint (one server may back several names). */
  readonly instances: Set<string>
  /**
   * Cluster instances that use this endpoint as a node of their topology (upstream/cluster.ts),
   * whether discovery lists it or not; it stays pooled while any instance lists or uses it.
   */
  readonly clusters: Set<string>
  /** Subscribers of operator-managed users, by identity key. */
  readonly userHubs: Map<string, PubSubHub>
  /** Its in-flight slots and the requests waiting for one (slot-queue.ts, dispatch.ts). */
  readonly slots: SlotQueue
}

/** What the pool gives each endpoint beyond its connections. */
export interface PoolLimits {
  /** limits.maxInflightPerEndpoint: attempts in flight on one endpoint at once; more wait (slot-queue.ts). */
  readonly maxInflightPerEndpoint: number
  /** The clock (and timers) on which waiting requests' budgets expire: the attempt timers' (deadlines.ts). */
  readonly clock: DeadlineClock
}

export interface PoolHooks {
  /** A connection became ready: a good moment for an immediate health check. */
  ready(ep: PooledEndpoint): void
  /** A connection closed unexpectedly (or could not be made), and why. */
  closed(ep: PooledEndpoint, reason: string): void
  /** The endpoint left the pool (no instance names it any more). */
  removed(ep: PooledEndpoint): void
  /** The endpoint joined the pool. */
  added(ep: PooledEndpoint): void
  /** The endpoint's circuit breaker changed state. */
  breaker(ep: PooledEndpoint, from: string, to: string, reason: string): void
  /** A connection to the endpoint was reset: something was thrown, or Redis broke the protocol. */
  fault?(ep: PooledEndpoint, err: Error): void
  /**
   * The same on a subscriber connection (pubsub.ts), or a message dropped there (over
   * limits.maxReply, nested too deep); when absent, these go to fault().
   */
  subscriberFault?(ep: PooledEndpoint, err: Error): void
  /** The connection of a Redis user that tokens run as closed or could not be made. */
  userClosed?(ep: PooledEndpoint, user: string, reason: string): void
  /** The endpoint's ACL users became managed, or cannot be (reason). */
  acl?(ep: PooledEndpoint, state: AclState): void
  /** The endpoint's command table was learned or changed (COMMAND INFO), or could not be read. */
  commands?(ep: PooledEndpoint, table: LearnedTable | null, error: Error | null): void
  /** After each connect: whether the endpoint runs in cluster mode. */
  clusterMode?(ep: PooledEndpoint, enabled: boolean): void
}

const NO_HOOKS: PoolHooks = { ready() {}, closed() {}, removed() {}, added() {}, breaker() {} }

/** Connections of the users tokens run as are closed after one to two of these periods unused. */
export const USER_CONNECTION_IDLE_MS = 60_000

export class UpstreamPool {
  private readonly endpoints = new Map<string, PooledEndpoint>()
  private started = false
  private readonly acl: AclSettings
  private sweep: NodeJS.Timeout | null = null
  /** Connect attempts of the endpoints' own connections, a bounded number at a time. */
  readonly starts: StartQueue<PooledEndpoint>
  private readonly tables: SharedTables

  constructor(
    private readonly opts: UpstreamOptions,
    private readonly hooks: PoolHooks = NO_HOOKS,
    private readonly breakerOptions: Partial<BreakerOptions> = {},
    startConcurrency = START_CONCURRENCY,
    private readonly limits: PoolLimits = { maxInflightPerEndpoint: DEFAULTS.limits.maxInflightPerEndpoint, clock: new Deadlines().clock },
  ) {
    this.acl = aclSettings(opts.aclUsers === true)
    this.tables = new SharedTables(opts.background)
    // Connect, ready check, command table and ACL users take at most about this long when the
    // server answers at all (each step has its own timeout).
    this.starts = new StartQueue({ concurrency: startConcurrency, holdMs: opts.connectTimeoutMs + 2 * opts.commandTimeoutMs })
  }

  get(id: string): PooledEndpoint | undefined {
    return this.endpoints.get(id)
  }

  get size(): number {
    return this.endpoints.size
  }

  all(): IterableIterator<PooledEndpoint> {
    return this.endpoints.values()
  }

  start(): void {
    this.started = true
    for (const e of this.endpoints.values()) e.client.start()
    this.sweep = setInterval(() => {
      for (const e of this.endpoints.values()) e.client.sweepIdle()
    }, USER_CONNECTION_IDLE_MS)
    this.sweep.unref()
  }

  /**
   * Brings the pool in line with a routing snapshot, from scratch: O(all endpoints). For the first
   * snapshot and tests; the gateway applies each table change with apply().
   */
  sync(snapshot: RoutingSnapshot): void {
    const wanted = new Map<string, { spec: EndpointSpec; instances: Set<string> }>()
    for (const inst of snapshot.instances.values()) {
      for (const ep of inst.spec.endpoints) {
        let w = wanted.get(ep.id)
        if (!w) wanted.set(ep.id, (w = { spec: ep, instances: new Set() }))
        w.instances.add(inst.name)
      }
    }
    for (const [id, e] of this.endpoints) {
      if (wanted.has(id)) continue
      e.instances.clear()
      if (this.unused(e)) this.remove(e)
    }
    for (const [id, w] of wanted) {
      const have = this.endpoints.get(id)
      if (have) {
        have.instances.clear()
        for (const i of w.instances) have.instances.add(i)
      } else this.add(w.spec, w.instances)
    }
  }

  /**
   * Applies one routing-table change: only the endpoints of the routes it adds and removes are
   * touched, so a Kubernetes event costs the same with 10 or 10,000 instances (a full sync per
   * event made start-up quadratic).
   */
  apply(change: TableChange): void {
    const touched: PooledEndpoint[] = []
    for (const route of change.removed) {
      for (const ep of route.spec.endpoints) {
        const e = this.endpoints.get(ep.id)
        if (e && e.instances.delete(route.name)) touched.push(e)
      }
    }
    for (const route of change.added) {
      for (const ep of route.spec.endpoints) {
        const e = this.endpoints.get(ep.id)
        if (e) e.instances.add(route.name)
        else this.add(ep, new Set([route.name]))
      }
    }
    for (const e of touched) if (this.unused(e) && this.endpoints.get(e.id) === e) this.remove(e)
  }

  private unused(e: PooledEndpoint): boolean {
    return e.instances.size === 0 && e.clusters.size === 0
  }

  /**
   * A cluster instance uses `spec` as a node (announced by the cluster, and allowed): pooled,
   * connected and health checked like a discovered endpoint, until detach(). Its connect attempt
   * does not wait in the start queue: the cluster's slot map waits for it.
   */
  attach(spec: EndpointSpec, cluster: string): PooledEndpoint {
    let e = this.endpoints.get(spec.id)
    if (e === undefined) {
      this.add(spec, new Set(), cluster)
      e = this.endpoints.get(spec.id)!
    } else e.clusters.add(cluster)
    this.starts.promote(e)
    return e
  }

  /** The cluster instance no longer uses the node; it leaves the pool unless something else uses it. */
  detach(id: string, cluster: string): void {
    const e = this.endpoints.get(id)
    if (e === undefined || !e.clusters.delete(cluster)) return
    if (this.unused(e)) this.remove(e)
  }

  private remove(e: PooledEndpoint): void {
    this.endpoints.delete(e.id)
    this.starts.leave(e)
    // Requests still waiting for a slot are answered now (503, never sent), not at their deadline.
    e.slots.close()
    e.pubsub.stop('endpoint removed from discovery')
    for (const hub of e.userHubs.values()) hub.stop('endpoint removed from discovery')
    void e.client.stop()
    this.hooks.removed(e)
  }

  private add(spec: EndpointSpec, instances: Set<string>, cluster: string | null = null): void {
    const id = spec.id
    const hooks = this.hooks
    let entry: PooledEndpoint | undefined
    const starts = this.starts
    const client = new EndpointClient(
      spec,
      this.opts,
      {
        onReady: () => entry && hooks.ready(entry),
        onClose: (reason) => {
          if (entry === undefined) return
          starts.done(entry)
          hooks.closed(entry, reason)
        },
        onFault: (err) => entry && hooks.fault?.(entry, err),
        onUserClose: (user, reason) => entry && hooks.userClosed?.(entry, user, reason),
        onAclState: (state) => entry && hooks.acl?.(entry, state),
        onCommands: (table, error) => entry && hooks.commands?.(entry, table, error),
        onClusterMode: (enabled) => entry && hooks.clusterMode?.(entry, enabled),
        onSettled: () => entry && starts.done(entry),
        onWanted: () => entry && starts.promote(entry),
      },
      this.acl,
      { admit: (connect) => (entry === undefined ? connect() : starts.enter(entry, connect)), tables: this.tables },
    )
    const breaker = new CircuitBreaker(
      this.breakerOptions,
      () => performance.now(),
      (from, to, reason) => entry && hooks.breaker(entry, from, to, reason),
    )
    const pubsubHooks = {
      onFault: (err: Error): void => {
        if (entry === undefined) return
        if (hooks.subscriberFault !== undefined) hooks.subscriberFault(entry, err)
        else hooks.fault?.(entry, err)
      },
    }
    const pubsub = new PubSubHub(spec, this.opts, pubsubHooks)
    // Operator-managed users subscribe as themselves: Redis then applies their channel patterns.
    const userHubs = new Map<string, PubSubHub>()
    entry = {
      id,
      client,
      pubsub,
      pubsubFor: (who) => {
        if (who.kind !== 'user') return pubsub
        let hub = userHubs.get(who.key)
        if (hub === undefined) {
          hub = new PubSubHub(spec, { ...this.opts, username: who.user, password: who.password }, pubsubHooks)
          userHubs.set(who.key, hub)
        }
        return hub
      },
      userHubs,
      state: new EndpointState(id, breaker),
      slots: new SlotQueue(this.limits.maxInflightPerEndpoint, this.limits.clock),
      instances,
      clusters: new Set(cluster === null ? [] : [cluster]),
    }
    this.endpoints.set(id, entry)
    this.hooks.added(entry)
    if (this.started) client.start()
  }

  async stop(): Promise<void> {
    this.started = false
    if (this.sweep !== null) clearInterval(this.sweep)
    this.sweep = null
    const all = [...this.endpoints.values()]
    this.endpoints.clear()
    for (const e of all) {
      this.starts.leave(e)
      e.slots.close()
      e.pubsub.stop('gateway shutting down')
      for (const hub of e.userHubs.values()) hub.stop('gateway shutting down')
    }
    await Promise.all(all.map((e) => e.client.stop()))
  }
}

/**
 * Requests waiting for the endpoint now: for its connection (EndpointState.pending) or for one of
 * its in-flight slots (slot-queue.ts). limits.maxPendingPerEndpoint bounds this number.
 */
export function waitingFor(ep: PooledEndpoint): number {
  return ep.state.pending + ep.slots.waiting
}

/**
 * Waits (at most the connect timeout) for the chosen endpoint's connection, else 503. At most
 * `maxPending` requests wait per endpoint, for its connection or for one of its in-flight slots
 * (waitingFor); beyond that the answer is 503 OVERLOADED at once (and the connection closes after
 * it), so a down endpoint cannot make the gateway hold an unbounded number of requests in memory.
 */
export function whenConnected(
  instance: string,
  ep: PooledEndpoint,
  maxPending = Infinity,
  identity: Identity = GATEWAY_IDENTITY,
  scripted = false,
): PooledEndpoint | Promise<PooledEndpoint> {
  if (ep.client.upFor(identity)) return admitted(ep, identity, scripted)
  // Refuse before registering a waiter: a refused request must not leave a listener or timer behind.
  if (waitingFor(ep) >= maxPending) {
    // The client's connection closes after the reply, as when the slot queue is full (dispatch.ts).
    throw new OverloadedError(
      `instance '${instance}': ${maxPending} requests already wait for endpoint ${ep.id} (limits.maxPendingPerEndpoint)`,
      { retryAfterS: 1, closeConnection: true },
    )
  }
  const ready = ep.client.whenReadyFor(identity)
  if (ready === true) return admitted(ep, identity, scripted)
  ep.state.pending++
  return ready.then((ok) => {
    ep.state.pending--
    if (ok) return admitted(ep, identity, scripted)
    throw new NoEndpointError(`instance '${instance}': endpoint ${ep.id} is not connected`, { retryAfterS: 1 })
  })
}

/** The endpoint, unless a script would run there as a user the gateway could not restrict. */
function admitted(ep: PooledEndpoint, identity: Identity, scripted: boolean): PooledEndpoint {
  if (!scripted) return ep
  const why = ep.client.scriptRefusal(identity)
  if (why === null) return ep
  throw new ForbiddenError(
    `scripts and functions run as a Redis ACL user that only the gateway can restrict to the token's rights, and it cannot create one on endpoint ${ep.id}: ${why}`,
  )
}
