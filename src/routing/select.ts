// Endpoint selection inside one instance (spec §3 rules 2-4): the command class picks the role,
// the read policy and replica health narrow the candidates, read-your-writes may force the
// primary, and the instance's balancer picks among what is left. Pure: state comes in, a choice
// (or a NoEndpointError saying why not) comes out.

import type { Balancer, PickContext } from '../balancer/types.js'
import type { EndpointSpec, ReadPolicy } from '../discovery/topology.js'
import { NoEndpointError } from '../errors.js'
import type { EndpointState } from './endpoint-state.js'
import type { SyncPosition } from './sync-token.js'

export interface EndpointRef {
  readonly spec: EndpointSpec
  readonly state: EndpointState
}

export interface SelectInput {
  readonly instance: string
  /** The instance's endpoints in discovery order, with their state. */
  readonly endpoints: readonly EndpointRef[]
  readonly write: boolean
  readonly readPolicy: ReadPolicy
  readonly maxReplicaLagBytes: number
  /** Sync token sent with a read, already checked to name this instance; null = none. */
  readonly token: SyncPosition | null
  readonly balancer: Balancer
  readonly ctx: PickContext
  /**
   * Sticky balancers (maglev) see the health-eligible replicas whatever the token says, so a
   * client keeps its replica and the lookup table is not rebuilt for every token-narrowed list;
   * a pick that is behind the token goes to the primary instead.
   */
  readonly sticky?: boolean
}

export interface Selection {
  readonly endpoint: EndpointRef
  readonly role: 'primary' | 'replica'
  /** Why this endpoint, for logs and spans. */
  readonly reason: string
}

/**
 * The instance's primary: the healthy endpoint whose ROLE says master. With several (a split
 * brain, or a demoted primary not yet checked), the one the healthy replicas follow, else the
 * highest offset. Before any endpoint's role is known, the first ready endpoint (bootstrap).
 */
export function findPrimary(endpoints: readonly EndpointRef[]): EndpointRef | null {
  let found: EndpointRef | null = null
  let count = 0
  let anyKnown = false
  for (const e of endpoints) {
    if (e.state.role !== 'unknown') anyKnown = true
    if (e.spec.ready && e.state.healthy && e.state.role === 'primary') {
      count++
      if (found === null || e.state.offset > found.state.offset) found = e
    }
  }
  if (count > 1) {
    for (const e of endpoints) {
      if (e.state.role !== 'primary' || !e.state.healthy) continue
      const followed = endpoints.some(
        (r) =>
          r.state.role === 'replica' &&
          r.state.healthy &&
          r.state.link === 'connected' &&
          r.state.primaryPort === e.spec.port &&
          r.state.primaryHost === e.spec.host,
      )
      if (followed) return e
    }
  }
  if (found !== null) return found
  if (!anyKnown) {
    for (const e of endpoints) if (e.spec.ready) return e
  }
  return null
}

/** Replication offset a replica is known to have reached, from its own ROLE or the primary's. */
export function replicaOffset(replica: EndpointRef, primary: EndpointRef | null): number {
  const acked = primary?.state.replicaAcks.get(`${replica.spec.host}:${replica.spec.port}`) ?? 0
  return Math.max(replica.state.offset, acked)
}

/** Why a replica may not serve a read, or null when it may. */
export function replicaRejection(
  r: EndpointRef,
  primary: EndpointRef | null,
  maxLag: number,
  need: { readonly replId: string; readonly offset: number } | null,
): string | null {
  if (!r.spec.ready) return 'not ready'
  if (r.state.role !== 'replica') return 'not a replica'
  if (!r.state.healthy) return 'unhealthy'
  if (r.state.link !== 'connected') return `link ${r.state.link}`
  const off = replicaOffset(r, primary)
  if (primary !== null && r.state.primaryOffsetAtCheck - off > maxLag) return 'lagging'
  // Offsets only compare within one replication history (the replica's replid is its primary's).
  if (need !== null && (r.state.replId !== need.replId || off < need.offset)) return 'behind sync token'
  return null
}

export function selectEndpoint(input: SelectInput, scratch: EndpointState[] = []): Selection {
  const { endpoints, instance } = input
  const primary = findPrimary(endpoints)
  if (input.write || input.readPolicy === 'primary') {
    if (primary === null) {
      throw new NoEndpointError(`instance '${instance}' has no healthy primary`, { retryAfterS: 1 })
    }
    return { endpoint: primary, role: 'primary', reason: input.write ? 'write' : 'read-policy primary' }
  }
  // Read-your-writes: a token from another replication history cannot be compared: primary only.
  let need: { replId: string; offset: number } | null = null
  let tokenForcesPrimary = false
  if (input.token !== null) {
    if (primary !== null && primary.state.replId !== null && input.token.replId === primary.state.replId) {
      need = { replId: input.token.replId, offset: input.token.offset }
    } else tokenForcesPrimary = true
  }
  scratch.length = 0
  let tokenExcluded = false
  const filterNeed = input.sticky ? null : need
  if (!tokenForcesPrimary) {
    for (const e of endpoints) {
      if (e === primary) continue
      const why = replicaRejection(e, primary, input.maxReplicaLagBytes, filterNeed)
      if (why === null) scratch.push(e.state)
      else if (why === 'behind sync token') tokenExcluded = true
    }
  }
  const forced = tokenForcesPrimary || (tokenExcluded && scratch.length === 0)
  if (scratch.length === 0) {
    if (primary !== null && (input.readPolicy !== 'replica' || forced)) {
      return {
        endpoint: primary,
        role: 'primary',
        reason: forced ? 'read-your-writes: no replica has reached the token' : 'no eligible replica',
      }
    }
    throw new NoEndpointError(
      `instance '${instance}' has no eligible ${input.readPolicy === 'replica' ? 'replica' : 'endpoint'} (replicas must be healthy, linked and within ${input.maxReplicaLagBytes} bytes of the primary)`,
      { retryAfterS: 1 },
    )
  }
  if (input.readPolicy === 'any' && primary !== null) scratch.push(primary.state)
  const picked = input.balancer.pick(scratch, input.ctx) as EndpointState
  scratch.length = 0
  const ref = endpoints.find((e) => e.state === picked)!
  if (need !== null && primary !== null && ref !== primary && replicaRejection(ref, primary, Infinity, need) !== null) {
    return { endpoint: primary, role: 'primary', reason: 'read-your-writes: sticky replica has not reached the token' }
  }
  return { endpoint: ref, role: ref === primary ? 'primary' : 'replica', reason: `read-policy ${input.readPolicy}` }
}
