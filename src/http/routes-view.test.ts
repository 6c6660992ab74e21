// buildRoutesView on real routing snapshots (RoutingTable.apply with specs parsed from
// annotations, as discovery builds them) and real EndpointStates, breakers and load trackers on
// an injected clock: what each endpoint is said to be (role, primary, serving and why), breaker
// and latency figures, replica lag, group shares as the router applies them, and that every
// state the view can show matches the documented JSON Schema. Queries: pages through the cursor,
// filters, the health counts (the same health as the full view says), groups of a page, and the
// parameters' validation.

import { describe, expect, it } from 'vitest'
import { LoadTracker } from '../balancer/least-request.js'
import { parseAnnotations } from '../discovery/annotations.js'
import { endpointId, type EndpointSpec, type GroupStrategy, type InstanceSpec } from '../core/topology.js'
import { CircuitBreaker } from '../resilience/breaker.js'
import { assertRoutesView } from '../../test/helpers/routes-schema.js'
import { EndpointState } from '../resilience/endpoint-state.js'
import {
  buildRoutesView,
  fullViewPieces,
  parseRoutesQuery,
  ROUTES_QUERY_LIMITS,
  type LiveCluster,
  type LiveEndpoint,
  type RoutesQuery,
  type RoutesView,
  type RoutesViewInput,
} from './routes-view.js'
import { RoutingTable } from '../routing/table.js'
import { BadRequestError } from '../core/errors.js'

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
  const live = new Map<string, { state: EndpointState; connected: boolean; queued?: number }>()
  const add = (specs: readonly EndpointSpec[]): void => {
    for (const e of specs) {
      if (!live.has(e.id)) live.set(e.id, { state: new EndpointState(e.id, new CircuitBreaker({}, () => clock.mono)), connected: true })
    }
  }
  for (const i of instances) add(i.endpoints)
  const loads = new Map<string, LoadTracker>()
  const clusters = new Map<string, LiveCluster>()
  const input = (): RoutesViewInput => ({
    snapshot: t.current,
    endpoint: (id): LiveEndpoint | undefined => live.get(id),
    instanceLoad: (name) => loads.get(name) ?? null,
    zone: null,
    monoNowMs: clock.mono,
    wallNowMs: clock.wall,
    cluster: (name) => clusters.get(name),
  })
  const view = (): RoutesView => {
    const v = buildRoutesView(input())
    assertRoutesView(JSON.parse(JSON.stringify(v)), { paged: false })
    return v
  }
  const paged = (q: Partial<RoutesQuery>): RoutesView => {
    const v = buildRoutesView(input(), { instances: null, q: null, health: null, after: null, limit: null, groups: 'page', ...q })
    assertRoutesView(JSON.parse(JSON.stringify(v)), { paged: true })
    return v
  }
  const state = (port: number): EndpointState => live.get(endpointId('10.0.0.1', port))!.state
  const checked = (port: number, fields: Partial<EndpointState>): void => {
    Object.assign(state(port), { healthy: true, lastCheckMs: clock.wall - 250, ...fields })
  }
  return { t, live, loads, clusters, clock, view, paged, state, checked, add, input }
}

/** The live entry of endpoint 10.0.0.1:`port` in world `w`. */
const liveOf = (w: ReturnType<typeof world>, port: number) => w.live.get(endpointId('10.0.0.1', port))!
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
    expect(endpointOf(w.view(), 'a', 1)).toMatchObject({ inflight: 0, pending: 0, queued: 0, ewmaMs: null })
    expect(w.view().instances[0]).toMatchObject({ inflight: 0, ewmaMs: null })
    const s = w.state(1)
    s.load.start()
    s.load.finish(12.3456, w.clock.mono)
    s.load.start()
    s.load.start()
    s.pending = 4
    liveOf(w, 1).queued = 7
    const load = new LoadTracker()
    load.start()
    load.finish(20, w.clock.mono)
    load.start()
    w.loads.set('a', load)
    const v = w.view()
    expect(endpointOf(v, 'a', 1)).toMatchObject({ inflight: 2, pending: 4, queued: 7, ewmaMs: 12.346 })
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

describe('queries: one page of the table', () => {
  const g = (groups: string) => ({ [`${A}groups`]: groups })
  /** alpha up, bravo degraded (a lagging replica), charlie down (failing checks), delta down (breaker open), echo up; hotel not checked. */
  function incident() {
    const w = world(
      [
        inst('echo', [ep(7)], g('web')),
        inst('alpha', [ep(1)], g('web,all')),
        inst('bravo', [ep(2), ep(3)], { ...g('all'), [`${A}max-replica-lag`]: '1KiB' }),
        inst('charlie', [ep(4)], g('all')),
        inst('delta', [ep(5)], g('all')),
        inst('hotel', [ep(8), ep(9)]),
      ],
      { web: 'weighted', all: 'round-robin', spare: 'sticky' },
    )
    for (const p of [1, 2, 5, 7]) w.checked(p, { role: 'primary', offset: 10_000 })
    w.checked(3, { role: 'replica', link: 'connected', offset: 1000, primaryOffsetAtCheck: 10_000 })
    w.checked(4, { role: 'primary', healthy: false, lastError: 'timed out' })
    for (let i = 0; i < 5; i++) w.state(5).breaker.onFailure(false)
    return w
  }
  const names = (v: RoutesView): string[] => v.instances.map((i) => i.name)
  const healthOf = (v: RoutesView): Record<string, string> => Object.fromEntries(v.instances.map((i) => [i.name, i.health]))

  it('the full view is what it was: no page, every instance and group', () => {
    const v = incident().view()
    expect(v.page).toBeUndefined()
    expect(Object.keys(v)).toEqual(['version', 'generatedAt', 'tableVersion', 'zone', 'instances', 'groups'])
    expect(names(v)).toEqual(['alpha', 'bravo', 'charlie', 'delta', 'echo', 'hotel'])
    expect(v.groups.map((x) => x.name)).toEqual(['all', 'spare', 'web'])
  })

  it('a query without a limit builds the same instance and group views as the full view, plus the page', () => {
    const w = incident()
    const full = w.view()
    const { page, groups, ...rest } = w.paged({ groups: 'all' })
    expect(rest).toEqual({ ...full, groups: undefined })
    // Every group, every member, and how many there are.
    expect(groups.map(({ memberCount, membersTakingTraffic, ...g }) => [g, memberCount, membersTakingTraffic])).toEqual(
      full.groups.map((g) => [g, g.members.length, g.members.filter((m) => m.takingTraffic).length]),
    )
    expect(page).toEqual({ total: 6, matched: 6, offset: 0, returned: 6, next: null, health: { up: 2, degraded: 2, down: 2 } })
  })

  it('counts health as the full view says it, in one pass, whatever the filter', () => {
    const w = incident()
    const full = healthOf(w.view())
    expect(full).toEqual({ alpha: 'up', bravo: 'degraded', charlie: 'down', delta: 'down', echo: 'up', hotel: 'degraded' })
    const count = (h: string) => Object.values(full).filter((x) => x === h).length
    const expected = { up: count('up'), degraded: count('degraded'), down: count('down') }
    for (const q of [{ limit: 1 }, { q: 'zzz' }, { health: ['down' as const] }, { instances: ['alpha'] }]) {
      expect(w.paged(q).page!.health, JSON.stringify(q)).toEqual(expected)
    }
    // Each instance alone: the health of the filter agrees with the view's own.
    for (const [name, h] of Object.entries(full)) {
      expect(w.paged({ health: [h as 'up'], instances: [name] }).page!.matched, name).toBe(1)
    }
    // The breaker closes again after its open time: the counts follow.
    w.clock.mono += 1000
    expect(w.paged({ limit: 1 }).page!.health).toEqual({ up: 3, degraded: 2, down: 1 })
    expect(healthOf(w.view())['delta']).toBe('up')
  })

  it('health of a Redis Cluster in the counts is the one its view shows', () => {
    const w = incident()
    const shard = (index: number, ranges: [number, number][], primary: string | null, endpoints: EndpointSpec[]) =>
      ({ index, ranges, slotCount: ranges.reduce((n, [a, b]) => n + b - a + 1, 0), primary, endpoints })
    const c1 = ep(11)
    const c2 = ep(12)
    w.t.apply({ type: 'upsert', instance: inst('kilo', [c1, c2]) })
    w.add([c1, c2])
    w.checked(11, { role: 'primary' })
    w.checked(12, { role: 'primary' })
    const cluster: LiveCluster = { source: 'CLUSTER SHARDS', learnedFrom: c1.id, changedAt: 0, shards: [shard(0, [[0, 8191]], c1.id, [c1]), shard(1, [[8192, 16383]], c2.id, [c2])], refused: [] }
    w.clusters.set('kilo', cluster)
    const check = (want: string) => {
      expect(healthOf(w.view())['kilo']).toBe(want)
      expect(w.paged({ instances: ['kilo'], health: [want as 'up'] }).page!.matched).toBe(1)
    }
    check('up')
    w.checked(12, { role: 'primary', healthy: false })
    check('down')
    w.clusters.set('kilo', { ...cluster, shards: [shard(0, [[0, 16383]], c1.id, [c1]), shard(1, [], null, [c2])] })
    check('up')
  })

  it('pages by name with the cursor: every instance once, in order, with offset and next', () => {
    const w = incident()
    const p1 = w.paged({ limit: 2 })
    expect(names(p1)).toEqual(['alpha', 'bravo'])
    expect(p1.page).toMatchObject({ total: 6, matched: 6, offset: 0, returned: 2, next: 'bravo' })
    const p2 = w.paged({ limit: 2, after: p1.page!.next })
    expect(names(p2)).toEqual(['charlie', 'delta'])
    expect(p2.page).toMatchObject({ offset: 2, returned: 2, next: 'delta' })
    const p3 = w.paged({ limit: 2, after: p2.page!.next })
    expect(names(p3)).toEqual(['echo', 'hotel'])
    // Exactly full: no next (no empty page after it).
    expect(p3.page).toMatchObject({ offset: 4, returned: 2, next: null })
    expect(w.paged({ limit: 6 }).page!.next).toBeNull()
    expect(w.paged({ limit: 5 }).page!.next).toBe('echo')
    // A name that is not in the table is a cursor too: the page starts after where it would sort.
    expect(names(w.paged({ limit: 2, after: 'bz' }))).toEqual(['charlie', 'delta'])
    const past = w.paged({ limit: 2, after: 'zulu' })
    expect(past.instances).toEqual([])
    expect(past.page).toMatchObject({ matched: 6, offset: 6, returned: 0, next: null })
  })

  it('a cursor survives table changes between pages: nothing repeats, a new instance before it is counted', () => {
    const w = incident()
    const p1 = w.paged({ limit: 3 })
    expect(names(p1)).toEqual(['alpha', 'bravo', 'charlie'])
    w.t.apply({ type: 'upsert', instance: inst('aaron', [ep(1)]) })
    w.t.apply({ type: 'remove', name: 'delta' })
    const p2 = w.paged({ limit: 3, after: p1.page!.next })
    expect(names(p2)).toEqual(['echo', 'hotel'])
    expect(p2.page).toMatchObject({ total: 6, matched: 6, offset: 4, next: null })
  })

  it('filters: q (substring, any case), health (several), exact instance names; all combine', () => {
    const w = incident()
    expect(names(w.paged({ q: 'HA' }))).toEqual(['alpha', 'charlie'])
    expect(names(w.paged({ q: '' }))).toEqual(['alpha', 'bravo', 'charlie', 'delta', 'echo', 'hotel'])
    expect(names(w.paged({ health: ['down'] }))).toEqual(['charlie', 'delta'])
    const problems = w.paged({ health: ['degraded', 'down'], limit: 2 })
    expect(names(problems)).toEqual(['bravo', 'charlie'])
    expect(problems.page).toMatchObject({ total: 6, matched: 4, offset: 0, returned: 2, next: 'charlie' })
    const rest = w.paged({ health: ['degraded', 'down'], limit: 2, after: 'charlie' })
    expect(names(rest)).toEqual(['delta', 'hotel'])
    expect(rest.page).toMatchObject({ matched: 4, offset: 2, next: null })
    expect(names(w.paged({ q: 'a', health: ['up'] }))).toEqual(['alpha'])
    const exact = w.paged({ instances: ['echo', 'alpha', 'nope', 'alpha'] })
    expect(names(exact)).toEqual(['alpha', 'echo'])
    expect(exact.page).toMatchObject({ total: 6, matched: 2 })
    expect(names(w.paged({ instances: ['echo', 'alpha'], health: ['down'] }))).toEqual([])
    // The instance views on a page are the full view's.
    const full = w.view()
    expect(w.paged({ q: 'bravo' }).instances).toEqual(full.instances.filter((i) => i.name === 'bravo'))
  })

  it('groups: by default those of the page, listing its members only (shares over the whole group); every one; or none', () => {
    const w = incident()
    const full = w.view()
    const group = (name: string) => full.groups.find((x) => x.name === name)!
    const only = (name: string, members: string[]) => {
      const g = group(name)
      return { ...g, members: g.members.filter((m) => members.includes(m.instance)), memberCount: g.members.length, membersTakingTraffic: g.members.filter((m) => m.takingTraffic).length }
    }
    // echo is only in web; web's other member (alpha) is not on the page, but counts for the share.
    expect(w.paged({ instances: ['echo'] }).groups).toEqual([only('web', ['echo'])])
    expect(only('web', ['echo']).members).toEqual([{ instance: 'echo', weight: 100, maintenance: 'off', takingTraffic: true, reason: null, share: 0.5 }])
    expect(w.paged({ instances: ['hotel'] }).groups).toEqual([])
    // all: round-robin among the members with a primary; charlie (no primary) takes nothing.
    expect(group('all').members.map((m) => [m.instance, m.takingTraffic, m.share])).toEqual([
      ['alpha', true, 0.3333],
      ['bravo', true, 0.3333],
      ['charlie', false, null],
      ['delta', true, 0.3333],
    ])
    expect(w.paged({ limit: 1 }).groups).toEqual([only('all', ['alpha']), only('web', ['alpha'])])
    expect(w.paged({ health: ['down'] }).groups).toEqual([only('all', ['charlie', 'delta'])])
    expect(w.paged({ limit: 1, groups: 'all' }).groups).toEqual(full.groups.map((g) => only(g.name, g.members.map((m) => m.instance))))
    expect(w.paged({ groups: 'none' }).groups).toEqual([])
  })
})

describe('query parameters', () => {
  const parse = (qs: string): RoutesQuery | null => parseRoutesQuery(new URLSearchParams(qs))
  const none = { instances: null, q: null, health: null, after: null, limit: null, groups: 'page' }

  it('none (or only the page token): the full view', () => {
    expect(parse('')).toBeNull()
    expect(parse('_token=secret')).toBeNull()
  })

  it('reads each parameter', () => {
    expect(parse('limit=100')).toEqual({ ...none, limit: 100 })
    expect(parse('limit=1000&after=inst-0099&_token=x')).toEqual({ ...none, limit: 1000, after: 'inst-0099' })
    expect(parse('q=Ord&groups=none')).toEqual({ ...none, q: 'Ord', groups: 'none' })
    expect(parse('health=degraded,down&health=up')).toEqual({ ...none, health: ['degraded', 'down', 'up'] })
    expect(parse('instance=a&instance=b')).toEqual({ ...none, instances: ['a', 'b'] })
    expect(parse('groups=all')).toEqual({ ...none, groups: 'all' })
    expect(parse('q=')).toEqual({ ...none, q: '' })
    expect(parse('after=')).toEqual({ ...none, after: '' })
  })

  it('refuses what it cannot honour, naming the parameter', () => {
    const { maxLimit, maxValueChars, maxInstances } = ROUTES_QUERY_LIMITS
    const cases: [string, RegExp][] = [
      ['limit=0', /^limit must be an integer from 1 to 1000, got "0"$/],
      [`limit=${maxLimit + 1}`, /^limit must be an integer from 1 to 1000, got "1001"$/],
      ['limit=ten', /^limit must be an integer from 1 to 1000, got "ten"$/],
      ['limit=1.5', /^limit must be an integer/],
      ['limit=-1', /^limit must be an integer/],
      ['limit=', /^limit must be an integer/],
      ['limit=1&limit=2', /^limit is given 2 times; give it once$/],
      ['after=a&after=b', /^after is given 2 times/],
      ['q=a&q=b', /^q is given 2 times/],
      ['health=broken', /^health must be up, degraded or down .*got "broken"$/],
      ['health=', /^health must be up, degraded or down/],
      ['health=down,', /^health must be up, degraded or down/],
      ['groups=some', /^groups must be page, all or none, got "some"$/],
      ['instance=', /^instance must be an instance name, got an empty value$/],
      ['helth=down', /^unknown parameter "helth" of \/admin\/routes; known: instance, q, health, limit, after, groups/],
      [`q=${'x'.repeat(maxValueChars + 1)}`, /^q is longer than 256 characters$/],
      [Array.from({ length: maxInstances + 1 }, (_, i) => `instance=i${i}`).join('&'), /^at most 1000 instance parameters, got 1001$/],
    ]
    for (const [qs, message] of cases) {
      let error: unknown
      try {
        parse(qs)
      } catch (e) {
        error = e
      }
      expect(error, qs.slice(0, 40)).toBeInstanceOf(BadRequestError)
      expect((error as Error).message, qs.slice(0, 40)).toMatch(message)
    }
    expect(parse(`q=${'x'.repeat(maxValueChars)}`)!.q).toHaveLength(maxValueChars)
  })
})

describe('the full view in pieces (GET /admin/routes without a query)', () => {
  /** Seven instances, two groups (one weighted), a drained one, a bad annotation, checked and unchecked endpoints. */
  function busyWorld() {
    const w = world(
      [
        inst('orders', [ep(1), ep(2), ep(3)], { [`${A}groups`]: 'shop', [`${A}read-policy`]: 'prefer-replica' }),
        inst('legacy', [ep(4)], { [`${A}groups`]: 'shop', [`${A}maintenance`]: 'drain', [`${A}weight`]: 'lots' }),
        inst('carts', [ep(5), ep(6)], { [`${A}groups`]: 'shop', [`${A}weight`]: '3' }),
        inst('a', [ep(7)]),
        inst('b', [ep(8)], { [`${A}groups`]: 'solo' }),
        inst('c', [ep(9), ep(10)]),
        inst('d', []),
      ],
      { shop: 'weighted' },
    )
    w.checked(1, { role: 'primary' })
    w.checked(2, { role: 'replica' })
    w.checked(5, { role: 'primary' })
    liveOf(w, 6).connected = false
    return w
  }

  it('is the text JSON.stringify gives for the whole view, whatever the slice', async () => {
    const w = busyWorld()
    const view = buildRoutesView(w.input())
    expect(view.groups.map((g) => g.name)).toEqual(['shop', 'solo'])
    expect(view.instances.find((i) => i.name === 'legacy')!.annotationErrors).not.toEqual([])
    const whole = JSON.stringify(view)
    for (const slice of [1, 2, 3, 7, 250]) {
      const pieces = await fullViewPieces(w.input(), slice)
      expect(pieces.join(''), `slice ${slice}`).toBe(whole)
      expect(pieces.length, `slice ${slice}`).toBe(2 + Math.ceil(7 / slice))
    }
    assertRoutesView(JSON.parse((await fullViewPieces(w.input(), 2)).join('')), { paged: false })
  })

  it('an empty table: the head, no instances, no groups', async () => {
    const w = world([])
    expect((await fullViewPieces(w.input(), 2)).join('')).toBe(JSON.stringify(buildRoutesView(w.input())))
  })

  it('builds a slice per turn of the event loop: what waits for the next turn runs in between', async () => {
    const w = busyWorld()
    const order: string[] = []
    setImmediate(() => order.push('a turn'))
    await fullViewPieces(w.input(), 250).then(() => order.push('built in one slice'))
    expect(order).toEqual(['built in one slice'])
    await new Promise((r) => setImmediate(r))
    order.length = 0
    setImmediate(() => order.push('a turn'))
    await fullViewPieces(w.input(), 2).then(() => order.push('built in four slices'))
    expect(order).toEqual(['a turn', 'built in four slices'])
  })
})
