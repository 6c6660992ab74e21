// buildRoutesView on real routing snapshots (RoutingTable.apply with specs parsed from
// annotations, as discovery builds them) and real EndpointStates, breakers and load trackers on
// an injected clock: what each endpoint is said to be (role, primary, serving and why), breaker
// and latency figures, replica lag, group shares as the router applies them, and that every
// state the view can show matches the documented JSON Schema.

import { describe, expect, it } from 'vitest'
import { LoadTracker } from '../balancer/least-request.js'
import { parseAnnotations } from '../discovery/annotations.js'
import { endpointId, type EndpointSpec, type GroupStrategy, type InstanceSpec } from '../core/topology.js'
import { CircuitBreaker } from '../resilience/breaker.js'
import { assertRoutesView } from '../../test/helpers/routes-schema.js'
import { EndpointState } from '../resilience/endpoint-state.js'
import { buildRoutesView, type LiveEndpoint, type RoutesView } from './routes-view.js'
import { RoutingTable } from '../routing/table.js'

const A = 'redis-gateway.io/'

function ep(port: number, extra: Partial<EndpointSpec> = {}): EndpointSpec {
  return { id: endpointId('10.0.0.1', port), host: '10.0.0.1', port, ready: true, ...extra }
}

function inst(name: string, endpoints: EndpointSpec[], annotations: Record<string, string> = {}): InstanceSpec {
  const { policy, errors } = parseAnnotations(annotations)
  return { name, source: 'static', endpoints, policy, annotationErrors: errors }
}

/** A world: routing table, endpoint states on one clock, and the view over them. */
function world(instances: InstanceSpec[], groups: Record<string, GroupStrategy> = {}) {
  const clock = { mono: 10_000, wall: Date.UTC(2030, 0, 1, 12, 0, 0) }
  const t = new RoutingTable()
  t.setGroupConfig(Object.fromEntries(Object.entries(groups).map(([g, strategy]) => [g, { strategy }])))
  t.apply({ type: 'reset', instances })
  const live = new Map<string, { state: EndpointState; connected: boolean }>()
  for (const i of instances) {
    for (const e of i.endpoints) {
      if (!live.has(e.id)) live.set(e.id, { state: new EndpointState(e.id, new CircuitBreaker({}, () => clock.mono)), connected: true })
    }
  }
  const loads = new Map<string, LoadTracker>()
  const view = (): RoutesView => {
    const v = buildRoutesView({
      snapshot: t.current,
      endpoint: (id): LiveEndpoint | undefined => live.get(id),
      instanceLoad: (name) => loads.get(name) ?? null,
      zone: null,
      monoNowMs: clock.mono,
      wallNowMs: clock.wall,
    })
    assertRoutesView(JSON.parse(JSON.stringify(v)))
    return v
  }
  const state = (port: number): EndpointState => live.get(endpointId('10.0.0.1', port))!.state
  const checked = (port: number, fields: Partial<EndpointState>): void => {
    Object.assign(state(port), { healthy: true, lastCheckMs: clock.wall - 250, ...fields })
  }
  return { t, live, loads, clock, view, state, checked }
}

const endpointOf = (v: RoutesView, instance: string, port: number) =>
  v.instances.find((i) => i.name === instance)!.endpoints.find((e) => e.port === port)!

describe('endpoints', () => {
  it('before any check: the first endpoint acts as primary (bootstrap), the others are not checked yet', () => {
    const w = world([inst('a', [ep(1), ep(2)])])
    const v = w.view()
    expect(v.version).toBe(1)
    expect(v.generatedAt).toBe('2030-01-01T12:00:00.000Z')
    const a = v.instances[0]!
    expect(a.primary).toBe('10.0.0.1:1')
    expect(a.endpoints.map((e) => [e.role, e.isPrimary, e.serving, e.reason, e.lastCheckAgoMs])).toEqual([
      ['unknown', true, true, null, null],
      ['unknown', false, false, 'not checked yet', null],
    ])
    expect(a.health).toBe('degraded')
  })

  it('roles, lag and replica eligibility as the router sees them', () => {
    const mib = 1_048_576
    const w = world([inst('a', [ep(1), ep(2), ep(3), ep(4)], { [`${A}max-replica-lag`]: '1KiB', [`${A}read-policy`]: 'replica' })])
    w.checked(1, { role: 'primary', offset: 5 * mib })
    w.checked(2, { role: 'replica', link: 'connected', offset: 5 * mib, primaryOffsetAtCheck: 5 * mib })
    w.checked(3, { role: 'replica', link: 'connected', offset: 5 * mib - 4000, primaryOffsetAtCheck: 5 * mib })
    w.checked(4, { role: 'replica', link: 'sync', offset: 0, primaryOffsetAtCheck: 5 * mib })
    const a = w.view().instances[0]!
    expect(a.primary).toBe('10.0.0.1:1')
    expect(a.maxReplicaLagBytes).toBe(1024)
    expect(a.readPolicy).toBe('replica')
    expect(a.endpoints.map((e) => ({ role: e.role, link: e.link, lag: e.lagBytes, serving: e.serving, reason: e.reason }))).toEqual([
      { role: 'primary', link: null, lag: null, serving: true, reason: null },
      { role: 'replica', link: 'connected', lag: 0, serving: true, reason: null },
      { role: 'replica', link: 'connected', lag: 4000, serving: false, reason: 'lagging' },
      { role: 'replica', link: 'sync', lag: 5 * mib, serving: false, reason: 'link sync' },
    ])
    expect(a.endpoints[0]!.lastCheckAgoMs).toBe(250)
    expect(a.health).toBe('degraded')
  })

  it('a replica counts as caught up by the offset its primary acknowledged, as routing does', () => {
    const w = world([inst('a', [ep(1), ep(2)], { [`${A}max-replica-lag`]: '0' })])
    w.checked(1, { role: 'primary', offset: 900, replicaAcks: new Map([['10.0.0.1:2', 900]]) })
    w.checked(2, { role: 'replica', link: 'connected', offset: 100, primaryOffsetAtCheck: 900 })
    expect(endpointOf(w.view(), 'a', 2)).toMatchObject({ lagBytes: 0, serving: true })
  })

  it('a primary whose checks fail: no primary, instance down, the error shown', () => {
    const w = world([inst('a', [ep(1), ep(2)])])
    w.checked(1, { role: 'primary', healthy: false, lastError: 'health check of 10.0.0.1:1 timed out after 1000 ms' })
    w.checked(2, { role: 'replica', link: 'connecting' })
    const a = w.view().instances[0]!
    expect(a.primary).toBeNull()
    expect(a.health).toBe('down')
    expect(a.endpoints[0]).toMatchObject({
      up: false,
      serving: false,
      reason: 'health check failing',
      lastError: 'health check of 10.0.0.1:1 timed out after 1000 ms',
    })
  })

  it('two endpoints claiming primary: the one the replica follows is primary, the other says why not', () => {
    const w = world([inst('a', [ep(1), ep(2), ep(3)])])
    w.checked(1, { role: 'primary', offset: 10 })
    w.checked(2, { role: 'primary', offset: 99 })
    w.checked(3, { role: 'replica', link: 'connected', primaryHost: '10.0.0.1', primaryPort: 1, offset: 10, primaryOffsetAtCheck: 10 })
    const a = w.view().instances[0]!
    expect(a.primary).toBe('10.0.0.1:1')
    expect(a.endpoints[1]).toMatchObject({ role: 'primary', isPrimary: false, serving: false })
    expect(a.endpoints[1]!.reason).toMatch(/another endpoint is the acting primary/)
  })

  it('discovery and connection state: not ready, terminating, not connected, not pooled', () => {
    const w = world([inst('a', [ep(1), ep(2, { ready: false }), ep(3, { ready: false, terminating: true }), ep(4), ep(5, { zone: 'z1' })])])
    w.checked(1, { role: 'primary' })
    w.live.get('10.0.0.1:4')!.connected = false
    w.live.delete('10.0.0.1:5')
    const a = w.view().instances[0]!
    expect(a.endpoints.map((e) => [e.ready, e.terminating, e.connected, e.reason])).toEqual([
      [true, false, true, null],
      [false, false, true, 'not ready in discovery'],
      [false, true, true, 'terminating'],
      [true, false, false, 'not connected'],
      [true, false, false, 'not connected'],
    ])
    expect(a.endpoints[4]!.zone).toBe('z1')
  })
})

describe('breaker and load', () => {
  it('shows closed with failures, open with the time to the probe, then half-open', () => {
    const w = world([inst('a', [ep(1), ep(2)])])
    w.checked(1, { role: 'primary' })
    w.checked(2, { role: 'replica', link: 'connected' })
    const b = w.state(2).breaker
    b.onFailure(false)
    b.onFailure(false)
    expect(endpointOf(w.view(), 'a', 2).breaker).toEqual({ state: 'closed', consecutiveFailures: 2, openings: 0, retryInMs: null })
    for (let i = 0; i < 3; i++) b.onFailure(false)
    w.clock.mono += 400
    const open = endpointOf(w.view(), 'a', 2)
    expect(open.breaker).toEqual({ state: 'open', consecutiveFailures: 0, openings: 1, retryInMs: 600 })
    expect(open).toMatchObject({ up: true, serving: false, reason: 'breaker open' })
    expect(w.view().instances[0]!.health).toBe('degraded')
    w.clock.mono += 600
    expect(endpointOf(w.view(), 'a', 2)).toMatchObject({ breaker: { state: 'half-open', openings: 1, retryInMs: null }, serving: true })
  })

  it('in-flight, waiting and peak-EWMA latency per endpoint and per instance', () => {
    const w = world([inst('a', [ep(1)])])
    w.checked(1, { role: 'primary' })
    expect(endpointOf(w.view(), 'a', 1)).toMatchObject({ inflight: 0, pending: 0, ewmaMs: null })
    expect(w.view().instances[0]).toMatchObject({ inflight: 0, ewmaMs: null })
    const s = w.state(1)
    s.load.start()
    s.load.finish(12.3456, w.clock.mono)
    s.load.start()
    s.load.start()
    s.pending = 4
    const load = new LoadTracker()
    load.start()
    load.finish(20, w.clock.mono)
    load.start()
    w.loads.set('a', load)
    const v = w.view()
    expect(endpointOf(v, 'a', 1)).toMatchObject({ inflight: 2, pending: 4, ewmaMs: 12.346 })
    expect(v.instances[0]).toMatchObject({ inflight: 1, ewmaMs: 20 })
  })

  it('reads state without changing it', () => {
    const w = world([inst('a', [ep(1), ep(2)])])
    w.checked(1, { role: 'primary', offset: 7 })
    w.checked(2, { role: 'replica', link: 'connected', offset: 7, primaryOffsetAtCheck: 7 })
    const snapshot = (): string =>
      JSON.stringify([...w.live.values()].map(({ state: s }) => [s.role, s.healthy, s.offset, s.pending, s.load.inflight, s.breaker.state]))
    const before = snapshot()
    const tableVersion = w.t.current.version
    const first = w.view()
    expect(w.view()).toEqual(first)
    expect(snapshot()).toBe(before)
    expect(w.t.current.version).toBe(tableVersion)
  })
})

describe('instances and groups', () => {
  it('carries the policy and every annotation error, instances sorted by name', () => {
    const w = world([
      inst('zeta', [ep(1)], {
        [`${A}maintenance`]: 'read-only',
        [`${A}hedge-after`]: '15ms',
        [`${A}strategy`]: 'Round-Robin',
        [`${A}wieght`]: '5',
        [`${A}port`]: 'redis-tls',
      }),
      inst('alpha', [ep(2)]),
    ])
    const v = w.view()
    expect(v.instances.map((i) => i.name)).toEqual(['alpha', 'zeta'])
    const z = v.instances[1]!
    expect(z).toMatchObject({ maintenance: 'read-only', hedgeAfterMs: 15, strategy: 'least-request', port: 'redis-tls', source: 'static' })
    expect(z.annotationErrors).toEqual([
      {
        key: `${A}strategy`,
        value: 'Round-Robin',
        message: `${A}strategy: "Round-Robin" is not one of least-request, round-robin, random, weighted, maglev (did you mean "round-robin"?); using least-request`,
      },
      { key: `${A}wieght`, value: '5', message: `${A}wieght: unknown annotation (did you mean ${A}weight?)` },
    ])
  })

  it('group members: shares by weight; draining, weight 0 and no-primary members take nothing', () => {
    const g = (groups: string, weight: number, more: Record<string, string> = {}) => ({ [`${A}groups`]: groups, [`${A}weight`]: String(weight), ...more })
    const w = world(
      [
        inst('a', [ep(1)], g('shop,rr,lr', 70)),
        inst('b', [ep(2)], g('shop,rr,lr', 30)),
        inst('c', [ep(3)], g('shop', 50, { [`${A}maintenance`]: 'drain' })),
        inst('d', [ep(4)], g('shop', 0)),
        inst('e', [ep(5)], g('shop,rr', 10)),
      ],
      { shop: 'weighted', rr: 'round-robin', lr: 'least-request', empty: 'sticky' },
    )
    for (const p of [1, 2, 3, 4]) w.checked(p, { role: 'primary' })
    // e: its only endpoint answers as a replica: no primary.
    w.checked(5, { role: 'replica', link: 'connected' })
    const v = w.view()
    expect(v.groups.map((x) => x.name)).toEqual(['empty', 'lr', 'rr', 'shop'])
    const shop = v.groups.find((x) => x.name === 'shop')!
    expect(shop.strategy).toBe('weighted')
    expect(shop.members.map((m) => [m.instance, m.weight, m.takingTraffic, m.share, m.reason])).toEqual([
      ['a', 70, true, 0.7, null],
      ['b', 30, true, 0.3, null],
      ['c', 50, false, null, 'draining'],
      ['d', 0, false, null, 'weight 0'],
      ['e', 10, false, null, 'no healthy primary'],
    ])
    expect(v.groups.find((x) => x.name === 'rr')!.members.map((m) => m.share)).toEqual([0.5, 0.5, null])
    expect(v.groups.find((x) => x.name === 'lr')!.members.map((m) => [m.takingTraffic, m.share])).toEqual([
      [true, null],
      [true, null],
    ])
    expect(v.groups.find((x) => x.name === 'empty')).toEqual({ name: 'empty', strategy: 'sticky', members: [] })
  })

  it('when no member has a primary, all eligible members stay candidates (they answer for themselves)', () => {
    const w = world([inst('a', [ep(1)], { [`${A}groups`]: 'g' }), inst('b', [ep(2)], { [`${A}groups`]: 'g' })])
    w.checked(1, { role: 'replica', link: 'connected' })
    w.checked(2, { role: 'replica', link: 'connected' })
    expect(w.view().groups[0]!.members.map((m) => [m.takingTraffic, m.share])).toEqual([
      [true, 0.5],
      [true, 0.5],
    ])
  })
})

describe('the documented schema', () => {
  it('rejects what the gateway must not send: unknown fields, wrong types, unknown states', () => {
    const w = world([inst('a', [ep(1)])])
    const good = JSON.parse(JSON.stringify(w.view())) as { instances: { endpoints: Record<string, unknown>[] }[] }
    expect(() => assertRoutesView(good)).not.toThrow()
    const variants: [string, (v: typeof good) => void][] = [
      ['an extra field', (v) => (v.instances[0]!.endpoints[0]!['password'] = 'x')],
      ['a wrong type', (v) => (v.instances[0]!.endpoints[0]!['inflight'] = '0')],
      ['an unknown breaker state', (v) => (v.instances[0]!.endpoints[0]!['breaker'] = { state: 'broken', consecutiveFailures: 0, openings: 0, retryInMs: null })],
      ['a missing field', (v) => delete v.instances[0]!.endpoints[0]!['role']],
    ]
    for (const [what, change] of variants) {
      const bad = structuredClone(good)
      change(bad)
      expect(() => assertRoutesView(bad), what).toThrow(/does not match/)
    }
  })
})
