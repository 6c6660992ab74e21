// Endpoint selection rules with real balancers and a seeded random source.

import { describe, expect, test } from 'vitest'
import { createBalancer } from '../balancer/index.js'
import { createPrng } from '../balancer/prng.js'
import type { ReadPolicy } from '../core/topology.js'
import { NoEndpointError } from '../core/errors.js'
import { CircuitBreaker } from '../resilience/breaker.js'
import { EndpointState } from '../resilience/endpoint-state.js'
import { findPrimary, selectEndpoint, type EndpointRef, type SelectInput } from './select.js'

function ep(port: number, s: Partial<EndpointState> = {}, ready = true): EndpointRef {
  const state = new EndpointState(`10.0.0.1:${port}`)
  Object.assign(state, { healthy: true, ...s })
  return { spec: { id: state.id, host: '10.0.0.1', port, ready }, state }
}

function primary(port: number, offset = 1000, s: Partial<EndpointState> = {}): EndpointRef {
  return ep(port, { role: 'primary', offset, replId: 'aa', ...s })
}

/** A replica; `primaryAt` is the primary's offset when it was last checked (lag = primaryAt - offset). */
function replica(port: number, offset = 1000, s: Partial<EndpointState> = {}, primaryAt = offset): EndpointRef {
  return ep(port, {
    role: 'replica',
    offset,
    replId: 'aa',
    link: 'connected',
    primaryHost: '10.0.0.1',
    primaryPort: 1,
    primaryOffsetAtCheck: primaryAt,
    ...s,
  })
}

function input(endpoints: EndpointRef[], o: Partial<SelectInput> = {}): SelectInput {
  const prng = createPrng(7)
  return {
    instance: 'orders',
    endpoints,
    write: false,
    readPolicy: 'prefer-replica',
    maxReplicaLagBytes: 100,
    token: null,
    balancer: createBalancer('round-robin'),
    ctx: { clientId: null, random: prng.next },
    ...o,
  }
}

function counts(i: SelectInput, n = 300): Record<string, number> {
  const out: Record<string, number> = {}
  for (let k = 0; k < n; k++) {
    const s = selectEndpoint(i)
    out[s.endpoint.spec.port] = (out[s.endpoint.spec.port] ?? 0) + 1
  }
  return out
}

describe('findPrimary', () => {
  test('the healthy endpoint whose ROLE says master', () => {
    expect(findPrimary([replica(2), primary(1), replica(3)])?.spec.port).toBe(1)
  })
  test('bootstrap: first ready endpoint while no role is known', () => {
    expect(findPrimary([ep(5, { healthy: false }, false), ep(6, { healthy: false })])?.spec.port).toBe(6)
  })
  test('none when roles are known but no healthy primary', () => {
    expect(findPrimary([primary(1, 0, { healthy: false }), replica(2)])).toBeNull()
  })
  test('a replica checked before its primary: the unchecked endpoint it follows (start-up)', () => {
    // Port 1 not checked yet (role unknown, not healthy yet); the replica on 2 follows 10.0.0.1:1.
    const unchecked = ep(1, { healthy: false })
    expect(findPrimary([unchecked, replica(2)])).toBe(unchecked)
    expect(findPrimary([replica(2), unchecked])).toBe(unchecked)
    // Not when the replica's link is not up, it follows another endpoint, it is not healthy, or the
    // endpoint is not ready: then there is no primary, as before.
    expect(findPrimary([unchecked, replica(2, 1000, { link: 'connecting' })])).toBeNull()
    expect(findPrimary([unchecked, replica(2, 1000, { primaryPort: 9 })])).toBeNull()
    expect(findPrimary([unchecked, replica(2, 1000, { primaryHost: '10.0.0.2' })])).toBeNull()
    expect(findPrimary([unchecked, replica(2, 1000, { healthy: false })])).toBeNull()
    expect(findPrimary([ep(1, { healthy: false }, false), replica(2)])).toBeNull()
    // A checked endpoint that is not a primary any more is not taken for one.
    expect(findPrimary([ep(1, { role: 'replica', healthy: false }), replica(2)])).toBeNull()
    // And a write is sent there instead of failing.
    expect(selectEndpoint(input([unchecked, replica(2)], { write: true })).endpoint).toBe(unchecked)
  })
  test('two masters (failover in progress): the one the replicas follow', () => {
    const old = primary(1, 5000)
    const promoted = primary(2, 100)
    const r = replica(3, 100, { primaryPort: 2 })
    expect(findPrimary([old, promoted, r])?.spec.port).toBe(2)
  })
})

describe('selectEndpoint', () => {
  test('writes always go to the primary, whatever the read policy', () => {
    for (const readPolicy of ['primary', 'prefer-replica', 'replica', 'any'] as ReadPolicy[]) {
      const s = selectEndpoint(input([primary(1), replica(2)], { write: true, readPolicy }))
      expect(s.role).toBe('primary')
      expect(s.endpoint.spec.port).toBe(1)
    }
  })

  test('no primary: writes are 503 NOENDPOINT', () => {
    expect(() => selectEndpoint(input([replica(2)], { write: true }))).toThrow(NoEndpointError)
  })

  test('read-policy primary reads from the primary', () => {
    expect(counts(input([primary(1), replica(2), replica(3)], { readPolicy: 'primary' }))).toEqual({ 1: 300 })
  })

  test('prefer-replica spreads over healthy replicas only', () => {
    expect(counts(input([primary(1), replica(2), replica(3)]))).toEqual({ 2: 150, 3: 150 })
  })

  test('any includes the primary', () => {
    expect(counts(input([primary(1), replica(2), replica(3)], { readPolicy: 'any' }))).toEqual({ 1: 100, 2: 100, 3: 100 })
  })

  test('lagging, unlinked, unhealthy and unready replicas are skipped', () => {
    const eps = [
      primary(1, 10_000),
      replica(2, 10_000),
      replica(3, 10_000 - 101, {}, 10_000), // beyond max lag 100 at its last check
      replica(4, 10_000, { link: 'connecting' }),
      replica(5, 10_000, { healthy: false }),
      { ...replica(6, 10_000), spec: { id: 'x:6', host: '10.0.0.1', port: 6, ready: false } },
    ]
    expect(counts(input(eps))).toEqual({ 2: 300 })
  })

  test("the primary's view of a replica's acked offset counts", () => {
    const p = primary(1, 10_000)
    p.state.replicaAcks.set('10.0.0.1:2', 10_000)
    const r = replica(2, 0) // its own last ROLE is stale
    expect(counts(input([p, r]), 10)).toEqual({ 2: 10 })
  })

  test('prefer-replica falls back to the primary; replica policy fails instead', () => {
    const eps = [primary(1), replica(2, 1000, { healthy: false })]
    expect(selectEndpoint(input(eps)).endpoint.spec.port).toBe(1)
    expect(() => selectEndpoint(input(eps, { readPolicy: 'replica' }))).toThrow(/no eligible replica/)
  })

  test('read-your-writes: only replicas at the token offset, else the primary', () => {
    const eps = [primary(1, 5000), replica(2, 4990), replica(3, 5000)]
    const token = { instance: 'orders', replId: 'aa', offset: 5000 }
    expect(counts(input(eps, { token }), 20)).toEqual({ 3: 20 })
    const behind = [primary(1, 5000), replica(2, 4990)]
    const s = selectEndpoint(input(behind, { token, readPolicy: 'replica' }))
    expect(s.endpoint.spec.port).toBe(1)
    expect(s.reason).toMatch(/read-your-writes/)
  })

  test('a token from another replication id (after a failover) forces the primary', () => {
    const eps = [primary(1, 5000), replica(2, 5000)]
    const s = selectEndpoint(input(eps, { token: { instance: 'orders', replId: 'bb', offset: 1 } }))
    expect(s.endpoint.spec.port).toBe(1)
  })
})

describe('sticky (maglev) selection with read-your-writes', () => {
  test('keeps the health-eligible list and sends a behind pick to the primary', () => {
    const eps = [primary(1, 5000), replica(2, 4990), replica(3, 5000)]
    const token = { instance: 'orders', replId: 'aa', offset: 5000 }
    const balancer = createBalancer('maglev', { maglevTableSize: 251 })
    const seen = new Set<number>()
    for (let i = 0; i < 200; i++) {
      const s = selectEndpoint(input(eps, { token, balancer, sticky: true, ctx: { clientId: `c${i}`, random: () => 0.5 } }))
      seen.add(s.endpoint.spec.port)
      // Never the replica behind the token.
      expect(s.endpoint.spec.port).not.toBe(2)
    }
    // Clients hashed to the behind replica went to the primary; the others stayed on replica 3.
    expect([...seen].sort()).toEqual([1, 3])
  })
})

describe('lag is measured at check time', () => {
  test('a caught-up replica is not lagging just because the primary moved on since its check', () => {
    // The primary has taken writes since the replica's check (offset 50_000 now), but at the
    // check the replica was level with it.
    const eps = [primary(1, 50_000), replica(2, 10_000, {}, 10_000)]
    expect(selectEndpoint(input(eps)).endpoint.spec.port).toBe(2)
  })
  test('a replica that was behind at its check is lagging', () => {
    const eps = [primary(1, 50_000), replica(2, 10_000, {}, 10_200)]
    expect(selectEndpoint(input(eps)).endpoint.spec.port).toBe(1)
  })
  test('a token is only satisfied within the same replication history', () => {
    const token = { instance: 'orders', replId: 'aa', offset: 100 }
    // Replica 2 still reports the old history's (large) offset under another replid.
    const eps = [primary(1, 500), replica(2, 9_999, { replId: 'old' }), replica(3, 200)]
    for (let i = 0; i < 20; i++) expect(selectEndpoint(input(eps, { token })).endpoint.spec.port).toBe(3)
  })
})

describe('breakers, ejection cap and overload', () => {
  function openBreaker(e: EndpointRef): void {
    for (let i = 0; i < 5; i++) e.state.breaker.onFailure(false)
    expect(e.state.breaker.state.kind).toBe('open')
  }

  test('a replica with an open breaker is skipped when the cap allows (1 of 2 replicas)', () => {
    const eps = [primary(1), replica(2), replica(3)]
    openBreaker(eps[1]!)
    expect(counts(input(eps), 50)).toEqual({ 3: 50 })
  })

  test('never more than half the replicas are ejected: the later-tripped one keeps serving', () => {
    const eps = [primary(1), replica(2), replica(3)]
    openBreaker(eps[1]!)
    openBreaker(eps[2]!)
    // Both breakers are open but only floor(2 * 50%) = 1 replica may be ejected.
    const c = counts(input(eps), 50)
    expect(Object.keys(c)).toHaveLength(1)
    expect(c[1]).toBeUndefined()
  })

  test('a primary with an open breaker: writes fail at once with Retry-After from the breaker', () => {
    const eps = [primary(1), replica(2)]
    openBreaker(eps[0]!)
    let err: unknown
    try {
      selectEndpoint(input(eps, { write: true }))
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(NoEndpointError)
    expect((err as NoEndpointError).retryAfterS).toBeGreaterThanOrEqual(1)
  })

  test('half-open admits one probe; the next request goes elsewhere', () => {
    let now = 0
    const clock = (): number => now
    const p = primary(1)
    const r2 = replica(2)
    const r3 = replica(3)
    const breaker = new CircuitBreaker({}, clock)
    Object.defineProperty(r2.state, 'breaker', { value: breaker })
    for (let i = 0; i < 5; i++) breaker.onFailure(false)
    now = 1500 // past the 1 s open time: half-open
    const first = selectEndpoint(input([p, r2, r3], { balancer: createBalancer('round-robin') }))
    const second = selectEndpoint(input([p, r2, r3], { balancer: createBalancer('round-robin') }))
    const probes = [first, second].filter((s) => s.probe)
    expect(probes.length).toBeLessThanOrEqual(1)
    if (probes.length === 1) expect(probes[0]!.endpoint.spec.port).toBe(2)
  })

  test('an endpoint at its in-flight bound is passed over while another can take the request', () => {
    const eps = [primary(1), replica(2), replica(3)]
    eps[1]!.state.load.inflight = 10
    expect(counts(input(eps, { maxInflight: 10 }), 20)).toEqual({ 3: 20 })
    // Both replicas at the bound: prefer-replica falls back to the primary, which is not.
    eps[2]!.state.load.inflight = 10
    expect(counts(input(eps, { maxInflight: 10 }), 20)).toEqual({ 1: 20 })
  })

  test('all at the bound is no refusal: the request is routed as usual and waits for a slot there (dispatch.ts)', () => {
    const eps = [primary(1), replica(2), replica(3)]
    for (const e of eps) e.state.load.inflight = 10
    // Writes and read-policy primary: the primary.
    expect(selectEndpoint(input(eps, { maxInflight: 10, write: true })).endpoint.spec.port).toBe(1)
    expect(selectEndpoint(input(eps, { maxInflight: 10, readPolicy: 'primary' })).endpoint.spec.port).toBe(1)
    // Reads that prefer replicas wait on a replica rather than on the busy primary.
    const c = counts(input(eps, { maxInflight: 10 }), 20)
    expect(c[1]).toBeUndefined()
    expect((c[2] ?? 0) + (c[3] ?? 0)).toBe(20)
    expect(counts(input(eps, { maxInflight: 10, readPolicy: 'replica' }), 20)[1]).toBeUndefined()
    // read-policy any: every endpoint is a candidate.
    expect(Object.keys(counts(input(eps, { maxInflight: 10, readPolicy: 'any' }), 30)).sort()).toEqual(['1', '2', '3'])
    // Only a busy endpoint with an open breaker is out.
    openBreaker(eps[2]!)
    expect(counts(input(eps, { maxInflight: 10, readPolicy: 'replica' }), 20)).toEqual({ 2: 20 })
    const s = selectEndpoint(input(eps, { maxInflight: 10, readPolicy: 'replica' }))
    expect(s.reason).toMatch(/in-flight bound/)
  })

  test('a busy primary still takes what only it may answer (a sync token no replica has reached)', () => {
    const eps = [primary(1, 2000), replica(2, 1000), replica(3, 1000)]
    for (const e of eps) e.state.load.inflight = 10
    const token = { instance: 'orders', replId: 'aa', offset: 1500 }
    expect(selectEndpoint(input(eps, { maxInflight: 10, token })).endpoint.spec.port).toBe(1)
  })

  test('a primary with an open breaker at its bound is still refused with NOENDPOINT', () => {
    const eps = [primary(1)]
    eps[0]!.state.load.inflight = 10
    openBreaker(eps[0]!)
    expect(() => selectEndpoint(input(eps, { maxInflight: 10, write: true }))).toThrow(NoEndpointError)
    expect(() => selectEndpoint(input(eps, { maxInflight: 10 }))).toThrow(NoEndpointError)
  })

  test('excluded endpoints (already tried) are not picked again', () => {
    const eps = [primary(1), replica(2), replica(3)]
    expect(counts(input(eps, { exclude: [eps[1]!.state] }), 20)).toEqual({ 3: 20 })
    // With every replica tried, prefer-replica falls back to the primary.
    expect(selectEndpoint(input(eps, { exclude: [eps[1]!.state, eps[2]!.state] })).endpoint.spec.port).toBe(1)
  })
})

describe('zone-aware reads', () => {
  function zoned(r: EndpointRef, zone: string, forZones?: string[]): EndpointRef {
    return { ...r, spec: { ...r.spec, zone, ...(forZones ? { forZones } : {}) } }
  }
  test('reads prefer same-zone replicas while enough of them are eligible', () => {
    const eps = [zoned(primary(1), 'a'), zoned(replica(2), 'a'), zoned(replica(3), 'b'), zoned(replica(4), 'b')]
    expect(counts(input(eps, { zone: 'a' }), 30)).toEqual({ 2: 30 })
    expect(counts(input(eps, { zone: 'b' }), 30)).toEqual({ 3: 15, 4: 15 })
  })
  test('when less than half of the same-zone replicas are eligible, every zone is used', () => {
    const eps = [
      zoned(primary(1), 'a'),
      zoned(replica(2), 'a'),
      zoned(replica(3, 1000, { healthy: false }), 'a'),
      zoned(replica(4, 1000, { healthy: false }), 'a'),
      zoned(replica(5), 'b'),
    ]
    expect(counts(input(eps, { zone: 'a' }), 30)).toEqual({ 2: 15, 5: 15 })
  })
  test('EndpointSlice hints (forZones) win over the endpoint zone', () => {
    const eps = [zoned(primary(1), 'a'), zoned(replica(2), 'b', ['a']), zoned(replica(3), 'a', ['b'])]
    expect(counts(input(eps, { zone: 'a' }), 20)).toEqual({ 2: 20 })
  })
  test('writes ignore zones', () => {
    const eps = [zoned(primary(1), 'b'), zoned(replica(2), 'a')]
    expect(selectEndpoint(input(eps, { zone: 'a', write: true })).endpoint.spec.port).toBe(1)
  })
})
