// What a health check's outcome changes and tells: endpoint up or down and role changes become
// events for every instance that lists the endpoint (telemetry logs and counts them); a role change
// resets the endpoint's breaker; each successful check of a replica records the lag baseline and
// reports the lag per instance, and so does each check of a primary for the replicas it lists.

import type { EventHub } from '../core/events.js'
import type { HealthChange } from '../resilience/health-checker.js'
import type { RoutingTable } from '../routing/table.js'
import type { Router } from '../selection/router.js'
import { replicaOffset, type EndpointRef } from '../selection/select.js'
import type { PooledEndpoint, UpstreamPool } from './pool.js'
import type { ClusterManager } from './cluster.js'

export interface HealthEventDeps {
  readonly pool: UpstreamPool
  readonly table: RoutingTable
  readonly router: Router<PooledEndpoint>
  readonly events: EventHub
  /** Cluster instances: a node's lag is measured against its own shard's primary. */
  readonly clusters?: Pick<ClusterManager, 'get'>
}

/** Applies and reports one health change of endpoint `id` (HealthCheckerOptions.onChange). */
export function onHealthChange(deps: HealthEventDeps, id: string, change: HealthChange): void {
  const ep = deps.pool.get(id)
  if (!ep) return
  switch (change.kind) {
    case 'up':
    case 'down':
      for (const instance of instancesOf(ep)) {
        deps.events.emit('endpointState', {
          instance,
          endpoint: id,
          up: change.kind === 'up',
          reason: change.kind === 'up' ? 'health check passed' : change.reason,
        })
      }
      break
    case 'role': {
      // Failures seen under the old role (READONLY on writes to a demoted primary) say nothing
      // about the endpoint in its new role.
      ep.state.breaker.reset('role-changed')
      const instances = instancesOf(ep)
      deps.events.emit('endpointRole', { instances, endpoint: id, from: change.from, to: change.to })
      // A promoted replica has no lag any more (a demoted primary gets one at its next check).
      if (change.to !== 'replica') {
        for (const instance of instances) deps.events.emit('replicaLag', { instance, endpoint: id, bytes: null })
      }
      break
    }
    case 'checked':
      // Every check of every endpoint comes here: no array per check.
      for (const instance of ep.instances) checked(deps, ep, instance)
      for (const instance of ep.clusters) if (!ep.instances.has(instance)) checked(deps, ep, instance)
      break
  }
}

/** Instances an endpoint serves: those that list it, and the clusters that use it as a node. */
function instancesOf(ep: PooledEndpoint): string[] {
  return ep.clusters.size === 0 ? [...ep.instances] : [...new Set([...ep.instances, ...ep.clusters])]
}

/** A successful check of `ep`, for one instance that uses it: the replication lag it tells. */
function checked(deps: HealthEventDeps, ep: PooledEndpoint, instance: string): void {
  const id = ep.id
  const cluster = deps.clusters?.get(instance)
  const route = cluster !== undefined ? cluster.shardOfNode(id)?.route : deps.table.current.instances.get(instance)
  const primary = route ? deps.router.primaryOf(route) : null
  if (!route || !primary) return
  if (ep.state.role === 'replica') {
    // Lag is measured at check time (see EndpointState.primaryOffsetAtCheck).
    ep.state.primaryOffsetAtCheck = primary.state.offset
    deps.events.emit('replicaLag', { instance, endpoint: id, bytes: lagBytes({ spec: ep.client.spec, state: ep.state }, primary, primary.state.offset) })
  } else if (primary.pooled === ep) {
    // The primary's view, from the same ROLE reply as its offset: a replica that stalls stops
    // answering its own checks, but its primary still lists it, further and further behind.
    for (const r of deps.router.endpointsOf(route)) {
      if (r.pooled === ep || r.state.role !== 'replica') continue
      const listed = ep.state.replicaAcks.has(r.spec.id)
      if (listed || r.state.healthy) {
        deps.events.emit('replicaLag', { instance, endpoint: r.spec.id, bytes: lagBytes(r, primary, ep.state.offset) })
      } else {
        deps.events.emit('replicaLag', { instance, endpoint: r.spec.id, bytes: null })
      }
    }
  }
}

/** Bytes the replica is behind `primaryOffset`, by the best offset known for it (its own or its primary's ack). */
function lagBytes(replica: EndpointRef, primary: EndpointRef, primaryOffset: number): number {
  return Math.max(0, primaryOffset - replicaOffset(replica, primary))
}
