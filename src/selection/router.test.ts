// Router.resolve and Router.select on real routing snapshots (RoutingTable.apply with specs parsed
// from annotations, as static and Kubernetes discovery build them), real balancers and a seeded
// random source: group strategies (weighted canary, sticky, round-robin, least-request), weight 0,
// maintenance (drain, read-only), unknown names, and one consistent snapshot per request.

import { afterEach, describe, expect, it } from 'vitest'
import { createPrng } from '../balancer/prng.js'
import { parseAnnotations } from '../discovery/annotations.js'
import { endpointId, type GroupStrategy, type InstanceSpec } from '../core/topology.js'
import { DrainingError, GatewayError, NoEndpointError, NotFoundError, ReadOnlyError, statusOf } from '../core/errors.js'
import { UpstreamPool, type PooledEndpoint } from '../upstream/pool.js'
import { Router } from './router.js'
import { RoutingTable, type RoutingSnapshot } from '../routing/table.js'

const A = 'redis-gateway.io/'

let nextPort = 7000
const ports = new Map<string, number>()

/** An instance as discovery would produce it: one endpoint, policy parsed from its annotations. */
function spec(name: string, annotations: Record<string, string> = {}): InstanceSpec {
  let port = ports.get(name)
  if (port === undefined) ports.set(name, (port = nextPort++))
  const { policy, errors } = parseAnnotations(annotations)
  expect(errors, `annotations of ${name}`).toEqual([])
  return {
    name,
    source: 'static',
    endpoints: [{ id: endpointId('127.0.0.1', port), host: '127.0.0.1', port, ready: true }],
    policy,
    annotationErrors: errors,
  }
}

/** A group member with the given weight (and more annotations). */
function member(name: string, groups: string, weight?: number, more: Record<string, string> = {}): InstanceSpec {
  return spec(name, { [`${A}groups`]: groups, ...(weight === undefined ? {} : { [`${A}weight`]: String(weight) }), ...more })
}

function table(groups: Record<string, GroupStrategy>, instances: InstanceSpec[]): RoutingTable {
  const t = new RoutingTable()
  t.setGroupConfig(Object.fromEntries(Object.entries(groups).map(([g, strategy]) => [g, { strategy }])))
  t.apply({ type: 'reset', instances })
  return t
}

const pools: UpstreamPool[] = []
afterEach(async () => {
  for (const p of pools.splice(0)) await p.stop()
})

/** A router over a pool synced to the table (no connections: the pool is never started). */
function router(t: RoutingTable, seed = 1): Router<PooledEndpoint> {
  const pool = new UpstreamPool({ username: '', password: '', tls: false, commandTimeoutMs: 1000, connectTimeoutMs: 1000 })
  pools.push(pool)
  pool.sync(t.current)
  t.onChange((s) => pool.sync(s))
  return new Router(pool, { random: createPrng(seed).next, now: () => 0 })
}

function counts(r: Router<PooledEndpoint>, snap: RoutingSnapshot, group: string, n: number, clientId: (i: number) => string | null = () => null): Record<string, number> {
  const out: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const name = r.resolve(snap, 'group', group, clientId(i)).instance.name
    out[name] = (out[name] ?? 0) + 1
  }
  return out
}

const CLIENTS = Array.from({ length: 10_000 }, (_, i) => `client-${i}`)

function assign(r: Router<PooledEndpoint>, snap: RoutingSnapshot, group: string): string[] {
  return CLIENTS.map((id) => r.resolve(snap, 'group', group, id).instance.name)
}

function catchError(fn: () => unknown): GatewayError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }
  throw new Error('expected a GatewayError, got a result')
}

describe('Router.resolve: instances and unknown names', () => {
  it('an instance URL resolves to that instance, without a group', () => {
    const t = table({}, [spec('orders'), spec('users')])
    const r = router(t)
    const res = r.resolve(t.current, 'instance', 'orders', null)
    expect(res.instance.name).toBe('orders')
    expect(res.group).toBeNull()
    expect(res.instance).toBe(t.current.instances.get('orders'))
  })

  it('unknown instance and unknown group: NotFoundError (404)', () => {
    const t = table({ configured: 'weighted' }, [member('a', 'g')])
    const r = router(t)
    for (const [kind, name] of [
      ['instance', 'nope'],
      ['group', 'nope'],
      ['instance', 'g'], // a group name is not an instance
      ['group', 'a'], // nor the other way round
    ] as const) {
      const err = catchError(() => r.resolve(t.current, kind, name, null))
      expect(err).toBeInstanceOf(NotFoundError)
      expect(statusOf(err.code)).toBe(404)
      expect(err.message).toContain(name)
    }
  })

  it('drain on the instance URL: DrainingError (503 DRAINING) with a Retry-After', () => {
    const t = table({}, [spec('orders', { [`${A}maintenance`]: 'drain' })])
    const err = catchError(() => router(t).resolve(t.current, 'instance', 'orders', null))
    expect(err).toBeInstanceOf(DrainingError)
    expect(err.code).toBe('DRAINING')
    expect(statusOf(err.code)).toBe(503)
    expect(err.retryAfterS).toBeGreaterThanOrEqual(1)
  })

  it('read-only: resolves; writes are refused with ReadOnlyError (503), reads are routed', () => {
    const t = table({ g: 'weighted' }, [member('orders', 'g', 100, { [`${A}maintenance`]: 'read-only' })])
    const r = router(t)
    for (const [kind, name] of [['instance', 'orders'], ['group', 'g']] as const) {
      const res = r.resolve(t.current, kind, name, null)
      expect(res.instance.name).toBe('orders')
      const err = catchError(() => r.select(res, 'write', null, null))
      expect(err).toBeInstanceOf(ReadOnlyError)
      expect(statusOf(err.code)).toBe(503)
      expect(err.retryAfterS).toBeGreaterThanOrEqual(1)
      const id = t.current.instances.get('orders')!.spec.endpoints[0]!.id
      expect(r.select(res, 'read', null, null).endpoint.spec.id).toBe(id)
      // Subscribing is reading: allowed, on the primary.
      expect(r.select(res, 'subscribe', null, null).endpoint.spec.id).toBe(id)
    }
  })

  it('select after a group pick uses the picked instance\'s endpoints', () => {
    const t = table({ g: 'weighted' }, [member('a', 'g', 1), member('b', 'g', 1)])
    const r = router(t)
    for (let i = 0; i < 10; i++) {
      const res = r.resolve(t.current, 'group', 'g', null)
      const sel = r.select(res, 'write', null, null)
      expect(sel.endpoint.spec).toBe(res.instance.spec.endpoints[0])
      expect(sel.endpoint.pooled.id).toBe(res.instance.spec.endpoints[0]!.id)
    }
  })
})

describe('Router.countRequest', () => {
  it('counts one request in both of the instance budgets with one clock read, and returns them', () => {
    const t = table({}, [spec('orders')])
    const pool = new UpstreamPool({ username: '', password: '', tls: false, commandTimeoutMs: 1000, connectTimeoutMs: 1000 })
    pools.push(pool)
    pool.sync(t.current)
    let reads = 0
    const r = new Router(pool, {
      now: () => {
        reads++
        return 0
      },
      retryBudget: { minPerSecond: 0 },
      hedgeBudget: { minPerSecond: 0 },
    })
    const route = t.current.instances.get('orders')!
    const b = r.countRequest(route)
    reads = 0
    // The same pair every time: one retry and one hedge budget per instance.
    for (let i = 0; i < 99; i++) expect(r.countRequest(route)).toBe(b)
    expect(reads).toBe(99)
    // 100 requests: the retry budget's 20 % and the hedge budget's share of them.
    expect(b.retry.available()).toBe(20)
    expect(b.hedge.available()).toBe(Math.floor(100 * b.hedge.options.ratio + 1e-9))
  })
})

describe('Router.resolve: one consistent snapshot per request', () => {
  it('a request holding an older snapshot is routed by it, while new requests see the new one', () => {
    const t = table({ g: 'weighted' }, [member('a', 'g', 100), member('b', 'g', 100)])
    const r = router(t)
    const before = t.current
    t.apply({ type: 'upsert', instance: member('a', 'g', 100, { [`${A}maintenance`]: 'drain' }) })
    const after = t.current
    expect(r.resolve(before, 'instance', 'a', null).instance.spec.policy.maintenance).toBe('off')
    expect(() => r.resolve(after, 'instance', 'a', null)).toThrow(DrainingError)
    expect(new Set(Object.keys(counts(r, before, 'g', 50)))).toEqual(new Set(['a', 'b']))
    expect(counts(r, after, 'g', 50)).toEqual({ b: 50 })
  })

  it("updating one instance keeps the other instances' routes (and the router's cached endpoints)", () => {
    const t = table({ g: 'weighted' }, [member('a', 'g', 100), member('b', 'g', 100)])
    const r = router(t)
    const aRoute = t.current.instances.get('a')!
    const aRefs = r.endpointsOf(aRoute)
    t.apply({ type: 'upsert', instance: member('b', 'g', 5) })
    expect(t.current.instances.get('a')).toBe(aRoute)
    expect(r.endpointsOf(t.current.instances.get('a')!)).toBe(aRefs)
    expect(t.current.instances.get('b')!.spec.policy.weight).toBe(5)
    // A reset listing the same specs again (a config reload) keeps every route object.
    const bRoute = t.current.instances.get('b')!
    t.apply({ type: 'reset', instances: [member('a', 'g', 100), member('b', 'g', 5)] })
    expect(t.current.instances.get('a')).toBe(aRoute)
    expect(t.current.instances.get('b')).toBe(bRoute)
  })
})

describe('weighted groups (canary)', () => {
  it('weights 9000/1000: 90/10 over 20k picks, within 2%', () => {
    const t = table({ canary: 'weighted' }, [member('stable', 'canary', 9000), member('next', 'canary', 1000)])
    const c = counts(router(t), t.current, 'canary', 20_000)
    expect(Math.abs(c.stable! / 20_000 - 0.9)).toBeLessThan(0.02)
    expect(Math.abs(c.next! / 20_000 - 0.1)).toBeLessThan(0.02)
  })

  it('weighted is the default strategy of a group not named in the config, and follows weights with three members', () => {
    const t = table({}, [member('a', 'g', 5000), member('b', 'g', 3000), member('c', 'g', 2000)])
    expect(t.current.groups.get('g')?.strategy).toBe('weighted')
    const c = counts(router(t), t.current, 'g', 20_000)
    expect(c.a! / 20_000).toBeCloseTo(0.5, 1)
    expect(Math.abs(c.b! / 20_000 - 0.3)).toBeLessThan(0.02)
    expect(Math.abs(c.c! / 20_000 - 0.2)).toBeLessThan(0.02)
  })

  it('a weight change applies from the next snapshot: 9000/1000 -> 5000/5000', () => {
    const t = table({ canary: 'weighted' }, [member('stable', 'canary', 9000), member('next', 'canary', 1000)])
    const r = router(t)
    counts(r, t.current, 'canary', 1_234)
    t.apply({ type: 'upsert', instance: member('next', 'canary', 9000) })
    const c = counts(r, t.current, 'canary', 20_000)
    expect(Math.abs(c.next! / 20_000 - 0.5)).toBeLessThan(0.02)
  })

  it('weight 0 gets nothing, even as the only other member drains... then 503', () => {
    const t = table({ canary: 'weighted' }, [member('stable', 'canary', 10_000), member('off', 'canary', 0)])
    const r = router(t)
    expect(counts(r, t.current, 'canary', 10_000)).toEqual({ stable: 10_000 })
    t.apply({ type: 'upsert', instance: member('stable', 'canary', 10_000, { [`${A}maintenance`]: 'drain' }) })
    const err = catchError(() => r.resolve(t.current, 'group', 'canary', null))
    expect(err).toBeInstanceOf(NoEndpointError)
    expect(statusOf(err.code)).toBe(503)
  })

  it('draining members are skipped', () => {
    const t = table({ g: 'weighted' }, [
      member('a', 'g', 100, { [`${A}maintenance`]: 'drain' }),
      member('b', 'g', 100),
      member('c', 'g', 100, { [`${A}maintenance`]: 'read-only' }),
    ])
    const c = counts(router(t), t.current, 'g', 3_000)
    expect(c.a).toBeUndefined()
    expect(c.b).toBe(1_500)
    expect(c.c).toBe(1_500)
  })

  it.each<GroupStrategy>(['weighted', 'sticky', 'round-robin', 'least-request'])(
    '%s: every member draining or weight 0 -> NoEndpointError 503 with Retry-After (with or without client id)',
    (strategy) => {
      const t = table({ g: strategy }, [member('a', 'g', 0), member('b', 'g', 100, { [`${A}maintenance`]: 'drain' })])
      const r = router(t)
      for (const clientId of [null, 'client-1']) {
        const err = catchError(() => r.resolve(t.current, 'group', 'g', clientId))
        expect(err).toBeInstanceOf(NoEndpointError)
        expect(statusOf(err.code)).toBe(503)
        expect(err.retryAfterS).toBeGreaterThanOrEqual(1)
      }
    },
  )

  it('a configured group with no members yet is 503, not 404', () => {
    const t = table({ empty: 'sticky' }, [spec('a')])
    const err = catchError(() => router(t).resolve(t.current, 'group', 'empty', null))
    expect(err).toBeInstanceOf(NoEndpointError)
  })

  it('membership comes from the groups annotation; an instance may be in several groups', () => {
    const t = table({}, [member('a', 'x, y'), member('b', 'y'), spec('c')])
    expect(t.current.groups.get('x')?.members).toEqual(['a'])
    expect(t.current.groups.get('y')?.members).toEqual(['a', 'b'])
    const r = router(t)
    expect(counts(r, t.current, 'x', 10)).toEqual({ a: 10 })
    expect(counts(r, t.current, 'y', 10)).toEqual({ a: 5, b: 5 })
  })

  it('a changed group strategy (config file) takes effect: weighted -> round-robin ignores weights', () => {
    const t = table({ g: 'weighted' }, [member('a', 'g', 9000), member('b', 'g', 1000)])
    const r = router(t)
    expect(counts(r, t.current, 'g', 1_000)).toEqual({ a: 900, b: 100 })
    t.setGroupConfig({ g: { strategy: 'round-robin' } })
    expect(counts(r, t.current, 'g', 1_000)).toEqual({ a: 500, b: 500 })
  })
})

describe('sticky groups', () => {
  const three = (): InstanceSpec[] => [member('a', 's'), member('b', 's'), member('c', 's')]

  it('the same client id gets the same instance on every request', () => {
    const t = table({ s: 'sticky' }, three())
    const r = router(t)
    const first = assign(r, t.current, 's')
    expect(assign(r, t.current, 's')).toEqual(first)
    const share = counts(r, t.current, 's', CLIENTS.length, (i) => CLIENTS[i]!)
    for (const n of ['a', 'b', 'c']) expect(Math.abs(share[n]! / CLIENTS.length - 1 / 3)).toBeLessThan(0.03)
  })

  it('process independence: two separate routers and tables (other seed, other listing order) agree on every client id', () => {
    const t1 = table({ s: 'sticky' }, three())
    const t2 = table({ s: 'sticky' }, three().reverse())
    const r1 = router(t1, 1)
    const r2 = router(t2, 987654)
    // Some unrelated traffic on the second router first: balancer state must not matter.
    counts(r2, t2.current, 's', 777)
    expect(assign(r2, t2.current, 's')).toEqual(assign(r1, t1.current, 's'))
  })

  it('a member joins: ids move only to the new member, about 1/(N+1) of them', () => {
    const t = table({ s: 'sticky' }, three())
    const r = router(t)
    const before = assign(r, t.current, 's')
    t.apply({ type: 'upsert', instance: member('d', 's') })
    const after = assign(r, t.current, 's')
    let moved = 0
    for (let i = 0; i < CLIENTS.length; i++) {
      if (after[i] === before[i]) continue
      moved++
      expect(after[i], `${CLIENTS[i]} moved from ${before[i]}`).toBe('d')
    }
    expect(Math.abs(moved / CLIENTS.length - 1 / 4)).toBeLessThan(0.03)
  })

  it('an unrelated instance (not a member) joins or changes: no id moves', () => {
    const t = table({ s: 'sticky' }, three())
    const r = router(t)
    const before = assign(r, t.current, 's')
    t.apply({ type: 'upsert', instance: member('z', 'other') })
    t.apply({ type: 'upsert', instance: spec('plain', { [`${A}weight`]: '7' }) })
    expect(assign(r, t.current, 's')).toEqual(before)
  })

  it('a member drains: only its ids move; when it is back, every id returns', () => {
    const t = table({ s: 'sticky' }, three())
    const r = router(t)
    const before = assign(r, t.current, 's')
    t.apply({ type: 'upsert', instance: member('b', 's', undefined, { [`${A}maintenance`]: 'drain' }) })
    const during = assign(r, t.current, 's')
    for (let i = 0; i < CLIENTS.length; i++) {
      if (before[i] === 'b') expect(during[i]).not.toBe('b')
      else expect(during[i]).toBe(before[i])
    }
    t.apply({ type: 'upsert', instance: member('b', 's') })
    expect(assign(r, t.current, 's')).toEqual(before)
  })

  it('weights are respected: 300/100/100 -> 60/20/20 of client ids (within 2%)', () => {
    const t = table({ s: 'sticky' }, [member('a', 's', 300), member('b', 's', 100), member('c', 's', 100)])
    const c = counts(router(t), t.current, 's', CLIENTS.length, (i) => CLIENTS[i]!)
    expect(Math.abs(c.a! / CLIENTS.length - 0.6)).toBeLessThan(0.02)
    expect(Math.abs(c.b! / CLIENTS.length - 0.2)).toBeLessThan(0.02)
    expect(Math.abs(c.c! / CLIENTS.length - 0.2)).toBeLessThan(0.02)
  })

  it("raising one member's weight moves ids only to that member", () => {
    const t = table({ s: 'sticky' }, three())
    const r = router(t)
    const before = assign(r, t.current, 's')
    t.apply({ type: 'upsert', instance: member('a', 's', 300) })
    const after = assign(r, t.current, 's')
    let moved = 0
    for (let i = 0; i < CLIENTS.length; i++) {
      if (after[i] !== before[i]) {
        moved++
        expect(after[i]).toBe('a')
      }
    }
    expect(moved).toBeGreaterThan(0)
  })

  it('weight 0 (canary off) gets no client ids; without a client id, picks are weighted random', () => {
    const t = table({ s: 'sticky' }, [member('a', 's', 9000), member('b', 's', 1000), member('c', 's', 0)])
    const r = router(t)
    const sticky = counts(r, t.current, 's', CLIENTS.length, (i) => CLIENTS[i]!)
    expect(sticky.c).toBeUndefined()
    const anon = counts(r, t.current, 's', 20_000)
    expect(anon.c).toBeUndefined()
    expect(Math.abs(anon.a! / 20_000 - 0.9)).toBeLessThan(0.02)
  })
})

describe('round-robin groups', () => {
  it('strict rotation over members taking traffic; weight magnitude ignored, weight 0 and drained skipped', () => {
    const t = table({ rr: 'round-robin' }, [
      member('a', 'rr', 9000),
      member('b', 'rr', 1),
      member('c', 'rr', 0),
      member('d', 'rr', 100, { [`${A}maintenance`]: 'drain' }),
      member('e', 'rr', 50),
    ])
    const r = router(t)
    const seq = Array.from({ length: 30 }, () => r.resolve(t.current, 'group', 'rr', null).instance.name)
    expect(new Set(seq)).toEqual(new Set(['a', 'b', 'e']))
    // Every window of 3 consecutive picks holds each member once.
    for (let i = 0; i + 3 <= seq.length; i++) expect(new Set(seq.slice(i, i + 3)).size).toBe(3)
  })
})

describe('least-request groups', () => {
  it('traffic moves away from a member with requests piling up (instance-level in-flight)', () => {
    const t = table({ lr: 'least-request' }, [member('a', 'lr'), member('b', 'lr')])
    const r = router(t)
    // Five requests stuck on a (via its instance URL or the group: one load per instance), never finished.
    const aLoad = r.resolve(t.current, 'instance', 'a', null).load
    for (let i = 0; i < 5; i++) aLoad.start()
    expect(counts(r, t.current, 'lr', 200)).toEqual({ b: 200 })
    // They finish (slowly): a's estimate is now high, so b still gets everything.
    for (let i = 0; i < 5; i++) aLoad.finish(200, 0)
    const c = counts(r, t.current, 'lr', 1_000)
    expect(c.b).toBe(1_000)
  })

  it('traffic moves away from a slow member (peak-EWMA latency), and weight 0 gets nothing', () => {
    const t = table({ lr: 'least-request' }, [member('a', 'lr'), member('b', 'lr'), member('z', 'lr', 0)])
    const r = router(t)
    const rtt: Record<string, number> = { a: 40, b: 1, z: 1 }
    const got: Record<string, number> = {}
    for (let i = 0; i < 2_000; i++) {
      const res = r.resolve(t.current, 'group', 'lr', null)
      const name = res.instance.name
      got[name] = (got[name] ?? 0) + 1
      res.load.start()
      res.load.finish(rtt[name]!, 0)
    }
    expect(got.z).toBeUndefined()
    expect(got.b! / 2_000).toBeGreaterThan(0.95)
  })

  it('equal members with equal load share traffic about equally', () => {
    const t = table({ lr: 'least-request' }, [member('a', 'lr'), member('b', 'lr'), member('c', 'lr')])
    const c = counts(router(t), t.current, 'lr', 9_000)
    for (const n of ['a', 'b', 'c']) expect(Math.abs(c[n]! / 9_000 - 1 / 3)).toBeLessThan(0.03)
  })
})
