// The routing table: immutable snapshots of instances and groups, swapped atomically.
// A request reads `table.current` once and uses that snapshot throughout, so it always sees
// one consistent view. Updating one instance reuses every other instance's objects.
//
// Cost of an update: a Kubernetes watch event is one `upsert` or `remove`, and a cluster may have
// thousands of instances, so one instance's update must not copy the whole table. Instances are
// kept in a persistent hashed map (RouteMap below): an update copies one bucket of about 32
// entries and the bucket array, not every entry, and old snapshots stay valid and unchanged.
// Group membership is updated for the groups the instance joins or leaves only. Listeners get
// the change itself (which routes were added, replaced or removed), so they can stay incremental
// too. A `reset` (static config reload) is O(n) by nature.

import type { GroupStrategy, InstanceSpec, TopologyUpdate } from '../core/topology.js'

export interface InstanceRoute {
  readonly name: string
  readonly spec: InstanceSpec
}

export interface GroupRoute {
  readonly name: string
  readonly strategy: GroupStrategy
  /** Member instance names, sorted, from each instance's `groups` annotation. */
  readonly members: readonly string[]
}

export interface RoutingSnapshot {
  readonly version: number
  readonly instances: ReadonlyMap<string, InstanceRoute>
  readonly groups: ReadonlyMap<string, GroupRoute>
}

/** What one published snapshot changed, relative to the previous one. */
export interface TableChange {
  /** Routes that are new in this snapshot (added instances, and the new route of replaced ones). */
  readonly added: readonly InstanceRoute[]
  /** Routes that are gone from this snapshot (removed instances, and the old route of replaced ones). */
  readonly removed: readonly InstanceRoute[]
  /** The group map changed (membership or strategies). */
  readonly groups: boolean
}

export type GroupConfig = Readonly<Record<string, { readonly strategy: GroupStrategy }>>

export type TableListener = (s: RoutingSnapshot, prev: RoutingSnapshot, change: TableChange) => void

// ---------------------------------------------------------------------------------------------
// A persistent string-keyed map: 2^k buckets (plain Maps), chosen by a hash of the key. `with` and
// `without` return a new map that shares every bucket but the one they touch. The bucket count
// doubles (one O(n) rebuild) when buckets average more than MAX_BUCKET_LOAD entries, so the
// copy per update stays about 32 entries whatever the size. Iteration order is by bucket, not by
// insertion (nobody relies on insertion order: views sort by name).

const MAX_BUCKET_LOAD = 64
const TARGET_BUCKET_LOAD = 32

/** FNV-1a over UTF-16 code units. Names are short DNS labels, so this is a few ns. */
function hashKey(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

function bucketCountFor(n: number): number {
  let b = 1
  while (b * TARGET_BUCKET_LOAD < n) b *= 2
  return b
}

export class RouteMap<V> implements ReadonlyMap<string, V> {
  private constructor(
    private readonly buckets: readonly ReadonlyMap<string, V>[],
    readonly size: number,
  ) {}

  static empty<V>(): RouteMap<V> {
    return new RouteMap<V>([new Map()], 0)
  }

  static from<V>(entries: Iterable<readonly [string, V]>): RouteMap<V> {
    const list = [...entries]
    const count = bucketCountFor(list.length)
    const buckets: Map<string, V>[] = Array.from({ length: count }, () => new Map())
    const mask = count - 1
    for (const [k, v] of list) buckets[hashKey(k) & mask]!.set(k, v)
    let size = 0
    for (const b of buckets) size += b.size
    return new RouteMap(buckets, size)
  }

  private bucketOf(key: string): number {
    return hashKey(key) & (this.buckets.length - 1)
  }

  get(key: string): V | undefined {
    return this.buckets[this.bucketOf(key)]!.get(key)
  }

  has(key: string): boolean {
    return this.buckets[this.bucketOf(key)]!.has(key)
  }

  /** A map with `key` set to `value`; this one is unchanged. */
  with(key: string, value: V): RouteMap<V> {
    const i = this.bucketOf(key)
    const old = this.buckets[i]!
    const grows = !old.has(key)
    if (grows && this.size + 1 > this.buckets.length * MAX_BUCKET_LOAD) {
      return RouteMap.from<V>([...this.entries(), [key, value]])
    }
    const bucket = new Map(old)
    bucket.set(key, value)
    const buckets = this.buckets.slice()
    buckets[i] = bucket
    return new RouteMap(buckets, this.size + (grows ? 1 : 0))
  }

  /** A map without `key` (this one when it has no such key). */
  without(key: string): RouteMap<V> {
    const i = this.bucketOf(key)
    const old = this.buckets[i]!
    if (!old.has(key)) return this
    const bucket = new Map(old)
    bucket.delete(key)
    const buckets = this.buckets.slice()
    buckets[i] = bucket
    return new RouteMap(buckets, this.size - 1)
  }

  *entries(): MapIterator<[string, V]> {
    for (const b of this.buckets) yield* b.entries()
  }

  *keys(): MapIterator<string> {
    for (const b of this.buckets) yield* b.keys()
  }

  *values(): MapIterator<V> {
    for (const b of this.buckets) yield* b.values()
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries()
  }

  forEach(fn: (value: V, key: string, map: ReadonlyMap<string, V>) => void, thisArg?: unknown): void {
    for (const b of this.buckets) for (const [k, v] of b) fn.call(thisArg, v, k, this)
  }

  get [Symbol.toStringTag](): string {
    return 'RouteMap'
  }
}

// ---------------------------------------------------------------------------------------------

const EMPTY: RoutingSnapshot = { version: 0, instances: RouteMap.empty<InstanceRoute>(), groups: new Map() }
const NO_ROUTES: readonly InstanceRoute[] = Object.freeze([])

export class RoutingTable {
  private snapshot: RoutingSnapshot = EMPTY
  private routes: RouteMap<InstanceRoute> = RouteMap.empty()
  private groupConfig: GroupConfig = {}
  private readonly listeners: TableListener[] = []

  get current(): RoutingSnapshot {
    return this.snapshot
  }

  /** Called after each change with (new snapshot, previous snapshot, what changed). */
  onChange(fn: TableListener): void {
    this.listeners.push(fn)
  }

  /** Group strategies from the config file (`groups:`); groups not listed default to weighted. */
  setGroupConfig(cfg: GroupConfig): void {
    this.groupConfig = cfg
    this.publish(this.routes, buildGroups(this.routes, cfg), { added: NO_ROUTES, removed: NO_ROUTES, groups: true })
  }

  apply(update: TopologyUpdate): void {
    const prev = this.routes
    switch (update.type) {
      case 'reset': {
        const entries: [string, InstanceRoute][] = []
        const added: InstanceRoute[] = []
        const removed: InstanceRoute[] = []
        const kept = new Set<string>()
        if (update.source !== undefined) {
          // Keep what other sources provide.
          for (const [name, route] of prev) {
            if (route.spec.source !== update.source) {
              entries.push([name, route])
              kept.add(name)
            }
          }
        }
        for (const spec of update.instances) {
          const old = prev.get(spec.name)
          let route: InstanceRoute
          if (old && sameSpec(old.spec, spec)) route = old
          else {
            route = { name: spec.name, spec }
            added.push(route)
          }
          if (kept.has(spec.name)) {
            // The named source replaces another source's instance of the same name.
            const at = entries.findIndex(([n]) => n === spec.name)
            entries[at] = [spec.name, route]
          } else entries.push([spec.name, route])
          kept.add(spec.name)
        }
        const next = RouteMap.from(entries)
        for (const route of prev.values()) if (next.get(route.name) !== route) removed.push(route)
        // A reset always publishes (even when nothing changed), as a full resync should.
        this.publish(next, buildGroups(next, this.groupConfig), {
          added: added.filter((r) => next.get(r.name) === r),
          removed,
          groups: true,
        })
        return
      }
      case 'upsert': {
        const spec = update.instance
        const old = prev.get(spec.name)
        if (old && sameSpec(old.spec, spec)) return
        const route: InstanceRoute = { name: spec.name, spec }
        const next = prev.with(spec.name, route)
        const oldGroups = old?.spec.policy.groups ?? []
        const touched = !sameList(oldGroups, spec.policy.groups)
        const groups = touched ? this.regroup(spec.name, oldGroups, spec.policy.groups) : this.snapshot.groups
        this.publish(next, groups, { added: [route], removed: old ? [old] : NO_ROUTES, groups: touched })
        return
      }
      case 'remove': {
        const old = prev.get(update.name)
        if (!old) return
        const oldGroups = old.spec.policy.groups
        const touched = oldGroups.length > 0
        const groups = touched ? this.regroup(update.name, oldGroups, []) : this.snapshot.groups
        this.publish(prev.without(update.name), groups, { added: NO_ROUTES, removed: [old], groups: touched })
        return
      }
      case 'batch': {
        if (update.updates.length === 1) return this.apply(update.updates[0]!)
        let next = prev
        let touched = false
        const names = new Set<string>()
        for (const u of update.updates) {
          if (u.type === 'upsert') {
            const spec = u.instance
            const old = next.get(spec.name)
            if (old && sameSpec(old.spec, spec)) continue
            next = next.with(spec.name, { name: spec.name, spec })
            names.add(spec.name)
            touched ||= !sameList(old?.spec.policy.groups ?? [], spec.policy.groups)
          } else {
            const old = next.get(u.name)
            if (!old) continue
            next = next.without(u.name)
            names.add(u.name)
            touched ||= old.spec.policy.groups.length > 0
          }
        }
        // What the batch changed, from before it to after it (an instance updated twice counts once).
        const added: InstanceRoute[] = []
        const removed: InstanceRoute[] = []
        for (const name of names) {
          const before = prev.get(name)
          const after = next.get(name)
          if (before === after) continue
          // Changed and changed back: the instance keeps its object (and its state).
          if (before && after && sameSpec(before.spec, after.spec)) {
            next = next.with(name, before)
            continue
          }
          if (before) removed.push(before)
          if (after) added.push(after)
        }
        if (added.length === 0 && removed.length === 0) return
        // Many instances at once (a namespace's first list): the groups are rebuilt once, O(n).
        this.publish(next, touched ? buildGroups(next, this.groupConfig) : this.snapshot.groups, { added, removed, groups: touched })
        return
      }
    }
  }

  /** The group map after `name` leaves `from` and joins `to`: only those groups are rebuilt. */
  private regroup(name: string, from: readonly string[], to: readonly string[]): Map<string, GroupRoute> {
    const out = new Map(this.snapshot.groups)
    for (const g of from) {
      if (to.includes(g)) continue
      const cur = out.get(g)
      if (!cur) continue
      const members = cur.members.filter((m) => m !== name)
      // A configured group with no members still exists (and answers 503, not 404).
      if (members.length === 0 && this.groupConfig[g] === undefined) out.delete(g)
      else out.set(g, { name: g, strategy: cur.strategy, members })
    }
    for (const g of to) {
      if (from.includes(g)) continue
      const cur = out.get(g)
      const members = cur ? insertSorted(cur.members, name) : [name]
      out.set(g, { name: g, strategy: cur?.strategy ?? this.groupConfig[g]?.strategy ?? 'weighted', members })
    }
    return out
  }

  private publish(routes: RouteMap<InstanceRoute>, groups: ReadonlyMap<string, GroupRoute>, change: TableChange): void {
    const prev = this.snapshot
    this.routes = routes
    this.snapshot = { version: prev.version + 1, instances: routes, groups }
    for (const fn of this.listeners) fn(this.snapshot, prev, change)
  }
}

function insertSorted(list: readonly string[], name: string): string[] {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (list[mid]! < name) lo = mid + 1
    else hi = mid
  }
  if (list[lo] === name) return list.slice()
  return [...list.slice(0, lo), name, ...list.slice(lo)]
}

function buildGroups(instances: ReadonlyMap<string, InstanceRoute>, cfg: GroupConfig): Map<string, GroupRoute> {
  const members = new Map<string, string[]>()
  for (const inst of instances.values()) {
    for (const g of inst.spec.policy.groups) {
      let list = members.get(g)
      if (!list) members.set(g, (list = []))
      list.push(inst.name)
    }
  }
  const out = new Map<string, GroupRoute>()
  for (const [name, list] of members) {
    list.sort()
    out.set(name, { name, strategy: cfg[name]?.strategy ?? 'weighted', members: list })
  }
  // A configured group with no members yet still exists (and answers 503, not 404).
  for (const [name, g] of Object.entries(cfg)) {
    if (!out.has(name)) out.set(name, { name, strategy: g.strategy, members: [] })
  }
  return out
}

function sameList(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/** Structural equality of two specs, so unchanged instances keep their objects (and state). */
export function sameSpec(a: InstanceSpec, b: InstanceSpec): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b)
}
