// Resolves a request's target (instance or group) on one routing snapshot and picks the endpoint
// that serves it. This first version routes every command to the instance's primary, taken as
// the first discovered endpoint; role-aware selection and balancing replace `pickEndpoint`.

import { DrainingError, NoEndpointError, NotFoundError, ReadOnlyError } from '../errors.js'
import type { InstanceRoute, RoutingSnapshot } from './table.js'
import type { PooledEndpoint, UpstreamPool } from '../upstream/pool.js'
import type { TargetKind } from '../http/request-parse.js'

export interface Resolved {
  readonly instance: InstanceRoute
  readonly group: string | null
}

export type Rand = () => number

export function resolveTarget(snap: RoutingSnapshot, kind: TargetKind, name: string, rand: Rand = Math.random): Resolved {
  if (kind === 'instance') {
    const instance = snap.instances.get(name)
    if (!instance) throw new NotFoundError(`unknown instance '${name}'`)
    if (instance.spec.policy.maintenance === 'drain') {
      throw new DrainingError(`instance '${name}' is draining for maintenance`, { retryAfterS: 5 })
    }
    return { instance, group: null }
  }
  const group = snap.groups.get(name)
  if (!group) throw new NotFoundError(`unknown group '${name}'`)
  // Weighted pick over members that take new traffic (weight > 0, not draining).
  let total = 0
  const live: InstanceRoute[] = []
  for (const m of group.members) {
    const inst = snap.instances.get(m)
    if (!inst || inst.spec.policy.maintenance === 'drain' || inst.spec.policy.weight <= 0) continue
    live.push(inst)
    total += inst.spec.policy.weight
  }
  if (live.length === 0) throw new NoEndpointError(`group '${name}' has no instance taking traffic`, { retryAfterS: 5 })
  let r = rand() * total
  for (const inst of live) {
    r -= inst.spec.policy.weight
    if (r < 0) return { instance: inst, group: name }
  }
  return { instance: live[live.length - 1]!, group: name }
}

/** Refuses writes to a read-only instance. */
export function checkWritable(instance: InstanceRoute): void {
  if (instance.spec.policy.maintenance === 'read-only') {
    throw new ReadOnlyError(`instance '${instance.name}' is read-only for maintenance; writes are refused`, {
      retryAfterS: 5,
    })
  }
}

/**
 * The endpoint for a request, connected. While its connection is being (re)established the
 * request waits at most the connect timeout, then fails with 503 NOENDPOINT.
 */
export function pickEndpoint(instance: InstanceRoute, pool: UpstreamPool, _write: boolean): PooledEndpoint | Promise<PooledEndpoint> {
  const spec = instance.spec.endpoints[0]
  const ep = spec && spec.ready ? pool.get(spec.id) : undefined
  if (!ep) throw new NoEndpointError(`instance '${instance.name}' has no ready endpoint`, { retryAfterS: 1 })
  const ready = ep.client.whenReady()
  if (ready === true) return ep
  return ready.then((ok) => {
    if (ok) return ep
    throw new NoEndpointError(`instance '${instance.name}': endpoint ${ep.client.id} is not connected`, {
      retryAfterS: 1,
    })
  })
}
