// The routing table: immutable snapshots of instances and groups, swapped atomically.
// A request reads `table.current` once and uses that snapshot throughout, so it always sees
// one consistent view. Updating one instance reuses every other instance's objects.

import type { GroupStrategy, InstanceSpec, TopologyUpdate } from '../discovery/topology.js'

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

export type GroupConfig = Readonly<Record<string, { readonly strategy: GroupStrategy }>>

const EMPTY: RoutingSnapshot = { version: 0, instances: new Map(), groups: new Map() }

export class RoutingTable {
  private snapshot: RoutingSnapshot = EMPTY
  private groupConfig: GroupConfig = {}
  private readonly listeners: ((s: RoutingSnapshot, prev: RoutingSnapshot) => void)[] = []

  get current(): RoutingSnapshot {
    return this.snapshot
  }

  onChange(fn: (s: RoutingSnapshot, prev: RoutingSnapshot) => void): void {
    this.listeners.push(fn)
  }

  /** Group strategies from the config file (`groups:`); groups not listed default to weighted. */
  setGroupConfig(cfg: GroupConfig): void {
    this.groupConfig = cfg
    this.publish(this.snapshot.instances, true)
  }

  apply(update: TopologyUpdate): void {
    const prev = this.snapshot.instances
    let next: Map<string, InstanceRoute>
    let groupsTouched = false
    switch (update.type) {
      case 'reset': {
        next = new Map()
        if (update.source !== undefined) {
          // Keep what other sources provide.
          for (const [name, route] of prev) if (route.spec.source !== update.source) next.set(name, route)
        }
        for (const spec of update.instances) {
          const old = prev.get(spec.name)
          next.set(spec.name, old && sameSpec(old.spec, spec) ? old : { name: spec.name, spec })
        }
        groupsTouched = true
        break
      }
      case 'upsert': {
        const old = prev.get(update.instance.name)
        if (old && sameSpec(old.spec, update.instance)) return
        next = new Map(prev)
        next.set(update.instance.name, { name: update.instance.name, spec: update.instance })
        groupsTouched = !old || !sameList(old.spec.policy.groups, update.instance.policy.groups)
        break
      }
      case 'remove': {
        const old = prev.get(update.name)
        if (!old) return
        next = new Map(prev)
        next.delete(update.name)
        groupsTouched = old.spec.policy.groups.length > 0
        break
      }
    }
    this.publish(next, groupsTouched)
  }

  private publish(instances: ReadonlyMap<string, InstanceRoute>, rebuildGroups: boolean): void {
    const prev = this.snapshot
    const groups = rebuildGroups ? buildGroups(instances, this.groupConfig) : prev.groups
    this.snapshot = { version: prev.version + 1, instances, groups }
    for (const fn of this.listeners) fn(this.snapshot, prev)
  }
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
  return JSON.stringify(a) === JSON.stringify(b)
}
