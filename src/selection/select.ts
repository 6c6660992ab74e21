// Endpoint selection inside one instance (README "Routing"): the command class picks the role,
// the read policy and replica health narrow the candidates, circuit breakers (capped by the
// outlier-ejection share) take broken endpoints out, endpoints at their in-flight bound are
// picked only when nothing else is left (the request then waits for a slot there), read-your-writes
// may force the primary, and the instance's balancer picks among what is left. Pure: state comes
// in, a choice (or an error saying why none) comes out.

import { performance } from 'node:perf_hooks'
import type { Balancer, PickContext } from '../balancer/types.js'
import type { EndpointSpec, ReadPolicy } from '../core/topology.js'
import { NoEndpointError } from '../core/errors.js'
import { retryAfterSeconds } from '../resilience/breaker.js'
import { maxEjectable } from '../resilience/outlier.js'
import type { EndpointState } from '../resilience/endpoint-state.js'
import type { SyncPosition } from '../routing/sync-token.js'

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
  /** Endpoints already tried for this request (retry, hedge): not picked again. */
  readonly exclude?: readonly EndpointState[]
  /** Share of the replicas outlier ejection may take out (default 50). */
  readonly maxEjectionPercent?: number
  /**
   * Requests in flight at which an endpoint is a last resort (default: no bound): picked only when
   * no candidate below it is left, and the request then waits for one of its slots (dispatch.ts).
   */
  readonly maxInflight?: number
  /** Clock for breaker Retry-After (default performance.now). */
  readonly now?: () => number
  /** This gateway's zone (GATEWAY_ZONE): reads prefer endpoints for it while enough are healthy. */
  readonly zone?: string | null
}

/** Is this endpoint meant for `zone`? EndpointSlice hints (forZones) win over the endpoint's own zone. */
export function servesZone(spec: EndpointSpec, zone: string): boolean {
  if (spec.forZones !== undefined && spec.forZones.length > 0) return spec.forZones.includes(zone)
  return spec.zone === zone
}

/**
 * Zone-aware preference: keep only same-zone candidates when at least one is eligible and at
 * least half of the instance's same-zone endpoints are (so a zone that lost most of its replicas
 * does not concentrate its reads on the survivors); otherwise leave every zone in.
 */
function preferZone(scratch: EndpointState[], endpoints: readonly EndpointRef[], zone: string): void {
  let total = 0
  for (const e of endpoints) if (e.spec.ready && servesZone(e.spec, zone)) total++
  if (total === 0) return
  let same = 0
  for (const s of scratch) {
    const ref = endpoints.find((e) => e.state === s)
    if (ref && servesZone(ref.spec, zone)) same++
  }
  if (same === 0 || same * 2 < total) return
  for (let i = scratch.length - 1; i >= 0; i--) {
    const ref = endpoints.find((e) => e.state === scratch[i])
    if (!ref || !servesZone(ref.spec, zone)) scratch.splice(i, 1)
  }
}

export interface Selection {
  readonly endpoint: EndpointRef
  readonly role: 'primary' | 'replica'
  /** Why this endpoint, for logs and spans. */
  readonly reason: string
  /** Admitted as a half-open breaker probe: report the outcome with probe = true. */
  readonly probe: boolean
  /** Endpoints the balancer chose among (1 when the role fixed the choice). */
  readonly candidates: number
}

/**
 * The instance's primary: the healthy endpoint whose ROLE says master. With several (a split
 * brain, or a demoted primary not yet checked), the one the healthy replicas follow, else the
 * highest offset. Before any endpoint's role is known, the first ready endpoint (bootstrap). With
 * roles known but no healthy primary among them, an endpoint not checked yet that a healthy replica
 * follows over a live link: at start-up a replica's first check can answer before its primary's,
 * and writes then went to no endpoint (503) for the few milliseconds in between.
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
    for (const e of endpoints) if (e.state.role === 'primary' && e.state.healthy && followedByReplica(endpoints, e)) return e
  }
  if (found !== null) return found
  if (!anyKnown) {
    for (const e of endpoints) if (e.spec.ready) return e
    return null
  }
  for (const e of endpoints) if (e.spec.ready && e.state.role === 'unknown' && followedByReplica(endpoints, e)) return e
  return null
}

/** Whether a healthy replica among `endpoints` follows `e` over a live link (its ROLE names e's address). */
function followedByReplica(endpoints: readonly EndpointRef[], e: EndpointRef): boolean {
  return endpoints.some(
    (r) =>
      r.state.role === 'replica' &&
      r.state.healthy &&
      r.state.link === 'connected' &&
      r.state.primaryPort === e.spec.port &&
      r.state.primaryHost === e.spec.host,
  )
}

/** Replication offset a replica is known to have reached, from its own ROLE or the primary's. */
export function replicaOffset(replica: EndpointRef, primary: EndpointRef | null): number {
  // The primary's list is keyed like endpoint ids (health-checker.ts): no string built per read.
  const acked = primary?.state.replicaAcks.get(replica.spec.id) ?? 0
  return Math.max(replica.state.offset, acked)
}

/** Why a replica may not serve a read (ignoring breakers and load), or null when it may. */
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

/** At its in-flight bound: still a candidate, the last resort (the request then waits for a slot). */
function atBound(e: EndpointRef, input: SelectInput): boolean {
  return input.maxInflight !== undefined && e.state.load.inflight >= input.maxInflight
}

/** Why the primary cannot take a request now (breaker, already tried), or null; `busy`: it can, at its in-flight bound. */
function primaryRefusal(p: EndpointRef, input: SelectInput): 'breaker' | 'excluded' | 'busy' | null {
  if (input.exclude !== undefined && input.exclude.includes(p.state)) return 'excluded'
  if (p.state.breaker.state.kind === 'open') return 'breaker'
  if (atBound(p, input)) return 'busy'
  return null
}

/** Retry-After for a 503: the earliest moment an open breaker lets a request through again. */
function breakerRetryAfterS(refs: readonly EndpointRef[], input: SelectInput): number {
  const now = (input.now ?? performance.now.bind(performance))()
  let earliest = Number.POSITIVE_INFINITY
  for (const r of refs) {
    if (r.state.breaker.state.kind === 'open') earliest = Math.min(earliest, r.state.breaker.nextAttemptAt())
  }
  return Number.isFinite(earliest) ? retryAfterSeconds(earliest, now) : 1
}

function unavailable(instance: string, what: string, refs: readonly EndpointRef[], input: SelectInput): Error {
  return new NoEndpointError(`instance '${instance}' has no ${what} that can take the request`, {
    retryAfterS: breakerRetryAfterS(refs, input),
  })
}

const BYPASS = { ok: true, probe: false } as const

function refOf(endpoints: readonly EndpointRef[], state: EndpointState): EndpointRef {
  for (let i = 0; i < endpoints.length; i++) if (endpoints[i]!.state === state) return endpoints[i]!
  throw new Error('selectEndpoint: the balancer picked an endpoint that is not a candidate')
}

/** A read's replicas (and the primary, read-policy any) by what they can do for it. */
interface ReadCandidates {
  readonly primary: EndpointRef | null
  /** The sync token's position, when replicas are compared with it. */
  readonly need: { readonly replId: string; readonly offset: number } | null
}

/**
 * The balancer's pick among `list` (emptied on return), whose breaker admits the request: a
 * half-open one admits a bounded number of probes, so a refusal re-picks among the rest. Null when
 * none admits it.
 */
function pickAmong(list: EndpointState[], input: SelectInput, c: ReadCandidates, reason: string): Selection | null {
  const { endpoints } = input
  const { primary, need } = c
  const candidates = list.length
  while (list.length > 0) {
    const picked = input.balancer.pick(list, input.ctx) as EndpointState
    const ref = refOf(endpoints, picked)
    if (need !== null && primary !== null && ref !== primary && replicaRejection(ref, primary, Infinity, need) !== null) {
      list.length = 0
      return acquirePrimary(primary, input, 'read-your-writes: sticky replica has not reached the token')
    }
    // An open breaker kept in rotation by the ejection cap is bypassed, not acquired.
    const admitted = picked.breaker.state.kind === 'open' ? BYPASS : picked.breaker.tryAcquire()
    if (admitted.ok) {
      list.length = 0
      return { endpoint: ref, role: ref === primary ? 'primary' : 'replica', reason, probe: admitted.probe, candidates }
    }
    list.splice(list.indexOf(picked), 1)
  }
  return null
}

export function selectEndpoint(input: SelectInput, scratch: EndpointState[] = []): Selection {
  const { endpoints, instance } = input
  const primary = findPrimary(endpoints)
  if (input.write || input.readPolicy === 'primary') {
    if (primary === null) {
      throw new NoEndpointError(`instance '${instance}' has no healthy primary`, { retryAfterS: 1 })
    }
    return acquirePrimary(primary, input, input.write ? 'write' : 'read-policy primary')
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
  // Candidates at their in-flight bound: picked only when no other one is left (the request then
  // waits there for a slot, dispatch.ts). Allocated only when there are some.
  let busy: EndpointState[] | null = null
  let open = 0
  let replicas = 0
  const filterNeed = input.sticky ? null : need
  if (!tokenForcesPrimary) {
    for (const e of endpoints) {
      if (e === primary) continue
      const why = replicaRejection(e, primary, input.maxReplicaLagBytes, filterNeed)
      if (why === 'behind sync token') tokenExcluded = true
      if (why !== null) continue
      replicas++
      if (input.exclude !== undefined && input.exclude.includes(e.state)) continue
      if (atBound(e, input)) {
        if (e.state.breaker.state.kind !== 'open') (busy ??= []).push(e.state)
        continue
      }
      if (e.state.breaker.state.kind === 'open') open++
      scratch.push(e.state)
    }
  }
  if (open > 0) capEjection(scratch, replicas, input.maxEjectionPercent ?? 50)
  if (input.readPolicy === 'any' && primary !== null) {
    const refusal = primaryRefusal(primary, input)
    if (refusal === null) scratch.push(primary.state)
    else if (refusal === 'busy') (busy ??= []).push(primary.state)
  }
  if (input.zone && scratch.length > 1) preferZone(scratch, endpoints, input.zone)
  const forced = tokenForcesPrimary || (tokenExcluded && scratch.length === 0)
  const c: ReadCandidates = { primary, need }
  const picked = pickAmong(scratch, input, c, `read-policy ${input.readPolicy}`)
  if (picked !== null) return picked
  if (primary !== null && (input.readPolicy !== 'replica' || forced) && input.readPolicy !== 'any') {
    // A primary at its bound too: the request waits on a replica rather than on the primary,
    // unless only the primary may answer it.
    if (forced || busy === null || !atBound(primary, input)) {
      return acquirePrimary(
        primary,
        input,
        forced ? 'read-your-writes: no replica has reached the token' : 'no eligible replica',
      )
    }
  }
  if (busy !== null) {
    const waiting = pickAmong(busy, input, c, `read-policy ${input.readPolicy}, every candidate at its in-flight bound`)
    if (waiting !== null) return waiting
  }
  throw input.readPolicy === 'replica'
    ? new NoEndpointError(
        `instance '${instance}' has no eligible replica (replicas must be healthy, linked, within ${input.maxReplicaLagBytes} bytes of the primary and not ejected)`,
        { retryAfterS: breakerRetryAfterS(endpoints, input) },
      )
    : unavailable(instance, 'endpoint', endpoints, input)
}

/** The primary, when its breaker admits the request; at its in-flight bound it still does (the request waits for a slot). */
function acquirePrimary(primary: EndpointRef, input: SelectInput, reason: string): Selection {
  const refusal = primaryRefusal(primary, input)
  if (refusal === 'excluded') {
    throw new NoEndpointError(`instance '${input.instance}': the primary already failed this request`, { retryAfterS: 1 })
  }
  const admitted = refusal === 'breaker' ? null : primary.state.breaker.tryAcquire()
  if (admitted === null || !admitted.ok) throw unavailable(input.instance, 'primary', [primary], input)
  return { endpoint: primary, role: 'primary', reason, probe: admitted.probe, candidates: 1 }
}

/**
 * Outlier ejection never removes more than maxPercent of the instance's (otherwise eligible)
 * replicas: when more breakers are open than that, the ones that tripped last keep serving
 * (their breaker is bypassed, not acquired), so at least the remaining share stays in rotation.
 */
function capEjection(scratch: EndpointState[], replicas: number, maxPercent: number): void {
  const open = scratch.filter((s) => s.breaker.state.kind === 'open')
  const cap = maxEjectable(replicas, maxPercent)
  open.sort((a, b) => (a.breaker.trippedAt ?? 0) - (b.breaker.trippedAt ?? 0) || (a.id < b.id ? -1 : 1))
  const ejected = new Set(open.slice(0, cap))
  for (let i = scratch.length - 1; i >= 0; i--) if (ejected.has(scratch[i]!)) scratch.splice(i, 1)
}
