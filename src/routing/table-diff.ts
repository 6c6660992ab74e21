// What a routing table change means per instance, for logs and metrics: which instances joined
// or left, whose maintenance mode or weight changed, which endpoints they dropped or gained.
// Pure; fed the change a RoutingTable listener receives.

import type { InstanceChangeEvent } from '../core/events.js'
import type { InstanceRoute, TableChange } from './table.js'

function endpointIds(r: InstanceRoute | undefined): string[] {
  return r === undefined ? [] : r.spec.endpoints.map((e) => e.id)
}

export function diffInstances(change: TableChange): InstanceChangeEvent[] {
  const before = new Map<string, InstanceRoute>()
  for (const r of change.removed) before.set(r.name, r)
  const out: InstanceChangeEvent[] = []
  const seen = new Set<string>()
  for (const now of change.added) {
    seen.add(now.name)
    const old = before.get(now.name)
    const was = endpointIds(old)
    const is = endpointIds(now)
    const mFrom = old?.spec.policy.maintenance ?? null
    const wFrom = old?.spec.policy.weight ?? null
    const maintenance = mFrom !== null && mFrom !== now.spec.policy.maintenance ? { from: mFrom, to: now.spec.policy.maintenance } : null
    const weight = wFrom !== null && wFrom !== now.spec.policy.weight ? { from: wFrom, to: now.spec.policy.weight } : null
    const removedEndpoints = was.filter((id) => !is.includes(id))
    const addedEndpoints = old === undefined ? is : is.filter((id) => !was.includes(id))
    if (old !== undefined && maintenance === null && weight === null && removedEndpoints.length === 0 && addedEndpoints.length === 0) continue
    out.push({ instance: now.name, change: old === undefined ? 'added' : 'updated', maintenance, weight, removedEndpoints, addedEndpoints })
  }
  for (const old of change.removed) {
    if (seen.has(old.name)) continue
    out.push({ instance: old.name, change: 'removed', maintenance: null, weight: null, removedEndpoints: endpointIds(old), addedEndpoints: [] })
  }
  return out
}
