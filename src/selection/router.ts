// Resolves a request's target (instance, or an instance picked by its group's strategy) on one
// routing snapshot, and picks the endpoint inside the instance by role, read policy, replica
// health, read-your-writes and the instance's balancer. Balancer state (cursors, maglev tables,
// load) lives here, keyed by instance and group name; the routing snapshot stays immutable.

import { performance } from 'node:perf_hooks'
import { createBalancer, createGroupBalancer } from '../balancer/index.js'
import { LoadTracker } from '../balancer/least-request.js'
import type { Balancer, Candidate, PickContext } from '../balancer/types.js'
import type { GroupStrategy, Strategy, TargetKind } from '../core/topology.js'
import { DrainingError, NoEndpointError, NotFoundError, ReadOnlyError } from '../core/errors.js'
import { findPrimary, selectEndpoint, type EndpointRef, type Selection } from './select.js'
import type { SyncPosition } from '../routing/sync-token.js'
import type { EndpointState } from '../resilience/endpoint-state.js'
import { HedgeBudget, RetryBudget, type BudgetOptions } from '../resilience/budget.js'
import type { InstanceRoute, RoutingSnapshot, TableChange } from '../routing/table.js'

export interface Resolved {
  readonly instance: InstanceRoute
  readonly group: string | null
  /** Instance-level load (for least-request groups); the caller starts/finishes it. */
  readonly load: LoadTracker
}

/**
 * What the router picks among: anything that carries an endpoint's live state. The upstream
 * pool's endpoints are; the router needs nothing else of them, so it does not depend on the layer
 * that executes commands.
 */
export interface Selectable {
  readonly state: EndpointState
}

/** Where the router finds the live endpoint for a discovered endpoint id (the upstream pool). */
export interface EndpointLookup<E extends Selectable> {
  get(id: string): E | undefined
}

export interface PooledRef<E extends Selectable = Selectable> extends EndpointRef {
  readonly pooled: E
}

export interface Routed<E extends Selectable = Selectable> extends Selection {
  readonly endpoint: PooledRef<E>
}

export interface RouterOptions {
  readonly random?: () => number
  readonly now?: () => number
  /**
   * limits.maxInflightPerEndpoint: an endpoint with this many requests in flight is picked only
   * when no other candidate is left (the request then waits for a slot: upstream/slot-queue.ts).
   */
  readonly maxInflightPerEndpoint?: number
  readonly maxEjectionPercent?: number
  readonly retryBudget?: Partial<BudgetOptions>
  readonly hedgeBudget?: Partial<BudgetOptions>
  /** This gateway's zone, for zone-aware reads. */
  readonly zone?: string | null
}

interface InstanceRuntime {
  strategy: Strategy
  balancer: Balancer
  readonly load: LoadTracker
  readonly budgets: Budgets
}

/** An instance's retry and hedge budgets. */
export interface Budgets {
  readonly retry: RetryBudget
  readonly hedge: HedgeBudget
}

interface GroupRuntime {
  strategy: GroupStrategy
  balancer: Balancer
}

class MemberCandidate implements Candidate {
  constructor(
    readonly route: InstanceRoute,
    readonly load: LoadTracker,
  ) {}
  get id(): string {
    return this.route.name
  }
  get weight(): number {
    return this.route.spec.policy.weight
  }
}

export class Router<E extends Selectable = Selectable> {
  private readonly random: () => number
  private readonly now: () => number
  private readonly instances = new Map<string, InstanceRuntime>()
  private readonly groups = new Map<string, GroupRuntime>()
  private readonly refs = new WeakMap<InstanceRoute, PooledRef<E>[]>()
  private readonly members = new WeakMap<InstanceRoute, MemberCandidate>()
  private readonly scratch: Candidate[] = []

  constructor(
    private readonly pool: EndpointLookup<E>,
    private readonly opts: RouterOptions = {},
  ) {
    this.random = opts.random ?? Math.random
    this.now = opts.now ?? (() => performance.now())
  }

  /**
   * Counts one client request in both of the instance's budgets (one clock read) and returns them
   * (one of each per instance).
   */
  countRequest(route: InstanceRoute): Budgets {
    const b = this.runtime(route).budgets
    const now = this.now()
    b.retry.recordRequest(now)
    b.hedge.recordRequest(now)
    return b
  }

  /** The instance's budgets, without counting a request (cluster redirections spend its retries). */
  budgetsOf(route: InstanceRoute): Budgets {
    return this.runtime(route).budgets
  }

  /**
   * The instance's aggregate load (what least-request groups balance on), or null before its
   * first request. Read-only, for the admin view: unlike runtime() it never creates state.
   */
  loadOf(name: string): LoadTracker | null {
    return this.instances.get(name)?.load ?? null
  }

  /** Forgets balancer state of instances and groups that are gone. */
  prune(snap: RoutingSnapshot): void {
    for (const name of this.instances.keys()) if (!snap.instances.has(name)) this.instances.delete(name)
    for (const name of this.groups.keys()) if (!snap.groups.has(name)) this.groups.delete(name)
  }

  /** prune() for one table change: only the removed names are looked at (groups when they changed). */
  pruneChange(snap: RoutingSnapshot, change: TableChange): void {
    for (const r of change.removed) if (!snap.instances.has(r.name)) this.instances.delete(r.name)
    if (change.groups) for (const name of this.groups.keys()) if (!snap.groups.has(name)) this.groups.delete(name)
  }

  private runtime(route: InstanceRoute): InstanceRuntime {
    const strategy = route.spec.policy.strategy
    let rt = this.instances.get(route.name)
    if (!rt) {
      rt = {
        strategy,
        balancer: createBalancer(strategy, { now: this.now }),
        load: new LoadTracker(),
        budgets: {
          retry: new RetryBudget(this.opts.retryBudget ?? {}, this.now),
          hedge: new HedgeBudget(this.opts.hedgeBudget ?? {}, this.now),
        },
      }
      this.instances.set(route.name, rt)
    } else if (rt.strategy !== strategy) {
      rt.strategy = strategy
      rt.balancer = createBalancer(strategy, { now: this.now })
    }
    return rt
  }

  resolve(snap: RoutingSnapshot, kind: TargetKind, name: string, clientId: string | null): Resolved {
    if (kind === 'instance') {
      const instance = snap.instances.get(name)
      if (!instance) throw new NotFoundError(`unknown instance '${name}'`)
      if (instance.spec.policy.maintenance === 'drain') {
        throw new DrainingError(`instance '${name}' is draining for maintenance`, { retryAfterS: 5 })
      }
      return { instance, group: null, load: this.runtime(instance).load }
    }
    const group = snap.groups.get(name)
    if (!group) throw new NotFoundError(`unknown group '${name}'`)
    let g = this.groups.get(name)
    if (!g || g.strategy !== group.strategy) {
      g = { strategy: group.strategy, balancer: createGroupBalancer(group.strategy, { now: this.now }) }
      this.groups.set(name, g)
    }
    // Members that take new traffic: not draining, weight > 0 (weight 0 = canary off), and with a
    // healthy primary, unless none has one (then all stay candidates and answer for themselves).
    const list = this.scratch
    list.length = 0
    let withPrimary = 0
    for (const m of group.members) {
      const inst = snap.instances.get(m)
      if (!inst || inst.spec.policy.maintenance === 'drain' || !(inst.spec.policy.weight > 0)) continue
      let c = this.members.get(inst)
      if (!c) this.members.set(inst, (c = new MemberCandidate(inst, this.runtime(inst).load)))
      if (this.primaryOf(inst) !== null) {
        // Healthy members first: swap it in front of the unhealthy ones already listed.
        list.splice(withPrimary++, 0, c)
      } else list.push(c)
    }
    if (withPrimary > 0) list.length = withPrimary
    const picked = g.balancer.pick(list, { clientId, random: this.random }) as MemberCandidate | null
    list.length = 0
    if (picked === null) throw new NoEndpointError(`group '${name}' has no instance taking traffic`, { retryAfterS: 5 })
    return { instance: picked.route, group: name, load: picked.load }
  }

  /** The instance's endpoints with their live state, in discovery order (cached per route). */
  endpointsOf(route: InstanceRoute): PooledRef<E>[] {
    let refs = this.refs.get(route)
    if (!refs) {
      refs = []
      for (const spec of route.spec.endpoints) {
        const pooled = this.pool.get(spec.id)
        if (pooled) refs.push({ spec, state: pooled.state, pooled })
      }
      this.refs.set(route, refs)
    }
    return refs
  }

  primaryOf(route: InstanceRoute): PooledRef<E> | null {
    return findPrimary(this.endpointsOf(route)) as PooledRef<E> | null
  }

  /**
   * The endpoint for a request: `write` (also transactions and pipelines with a write), `read`,
   * or `subscribe` (the primary, allowed on read-only instances).
   */
  select(
    r: Resolved,
    kind: 'read' | 'write' | 'subscribe',
    token: SyncPosition | null,
    clientId: string | null,
    exclude?: readonly EndpointState[],
  ): Routed<E> {
    const route = r.instance
    const policy = route.spec.policy
    const write = kind !== 'read'
    if (kind === 'write' && policy.maintenance === 'read-only') {
      throw new ReadOnlyError(`instance '${route.name}' is read-only for maintenance; writes are refused`, {
        retryAfterS: 5,
      })
    }
    const ctx: PickContext = { clientId, random: this.random }
    return selectEndpoint({
      instance: route.name,
      endpoints: this.endpointsOf(route),
      write,
      readPolicy: policy.readPolicy,
      maxReplicaLagBytes: policy.maxReplicaLagBytes,
      token: token !== null && token.instance === route.name ? token : null,
      balancer: this.runtime(route).balancer,
      ctx,
      sticky: policy.strategy === 'maglev',
      now: this.now,
      zone: this.opts.zone ?? null,
      // Absent is undefined here (one object shape, no spreads: this runs for every request).
      exclude,
      maxInflight: this.opts.maxInflightPerEndpoint,
      maxEjectionPercent: this.opts.maxEjectionPercent,
    }) as Routed<E>
  }
}
