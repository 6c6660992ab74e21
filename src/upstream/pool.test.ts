// UpstreamPool.apply (one table change at a time) must end where a full sync would, whatever the
// sequence of upserts, removes and resets: same endpoints, same instance names per endpoint, the
// same objects kept for endpoints that stayed, and a removal hook for each one that left.
// The pool is never started, so no connection is made.
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_POLICY } from '../discovery/annotations.js'
import type { InstanceSpec, TopologyUpdate } from '../core/topology.js'
import { RoutingTable } from '../routing/table.js'
import { UpstreamPool, type PooledEndpoint } from './pool.js'

const OPTS = { username: '', password: '', tls: false, commandTimeoutMs: 1000, connectTimeoutMs: 1000 }
const pools: UpstreamPool[] = []
afterEach(async () => {
  for (const p of pools.splice(0)) await p.stop()
})

function spec(name: string, ports: number[]): InstanceSpec {
  return {
    name,
    source: 'static',
    endpoints: ports.map((port) => ({ id: `10.0.0.1:${port}`, host: '10.0.0.1', port, ready: true })),
    policy: { ...DEFAULT_POLICY },
    annotationErrors: [],
  }
}

const NAMES = ['a', 'b', 'c', 'd']
const arbSpec = fc.record({ name: fc.constantFrom(...NAMES), ports: fc.uniqueArray(fc.integer({ min: 1, max: 6 }), { maxLength: 3 }) })
const arbUpdate: fc.Arbitrary<TopologyUpdate> = fc.oneof(
  arbSpec.map((s) => ({ type: 'upsert' as const, instance: spec(s.name, s.ports) })),
  fc.constantFrom(...NAMES).map((name) => ({ type: 'remove' as const, name })),
  fc
    .uniqueArray(arbSpec, { selector: (s) => s.name, maxLength: 4 })
    .map((list) => ({ type: 'reset' as const, instances: list.map((s) => spec(s.name, s.ports)) })),
)

function view(pool: UpstreamPool): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const e of pool.all()) out[e.id] = [...e.instances].sort()
  return out
}

describe('UpstreamPool.apply', () => {
  it('matches a full sync after any sequence of table changes, keeping endpoints that stay', () => {
    fc.assert(
      fc.property(fc.array(arbUpdate, { maxLength: 25 }), (updates) => {
        const table = new RoutingTable()
        const removed: string[] = []
        const incremental = new UpstreamPool(OPTS, {
          ready() {},
          closed() {},
          added() {},
          breaker() {},
          removed: (e) => removed.push(e.id),
        })
        pools.push(incremental)
        let before = new Map<string, PooledEndpoint>()
        table.onChange((snap, _prev, change) => {
          before = new Map([...incremental.all()].map((e) => [e.id, e]))
          incremental.apply(change)
          const full = new UpstreamPool(OPTS)
          pools.push(full)
          full.sync(snap)
          expect(view(incremental)).toEqual(view(full))
          // Endpoints that stayed are the same objects (connections and state kept).
          for (const e of incremental.all()) if (before.has(e.id)) expect(before.get(e.id)).toBe(e)
          for (const id of before.keys()) if (incremental.get(id) === undefined) expect(removed).toContain(id)
        })
        for (const u of updates) table.apply(u)
      }),
      { numRuns: 200, seed: 20261127 },
    )
  })
})

describe('UpstreamPool: start queue', () => {
  it('an endpoint is pooled as soon as the table that lists it is applied; its connect waits in the start queue', async () => {
    const table = new RoutingTable()
    const closed: string[] = []
    const pool = new UpstreamPool(OPTS, { ready() {}, removed() {}, added() {}, breaker() {}, closed: (e) => closed.push(e.id) }, {}, 2)
    pools.push(pool)
    table.onChange((_snap, _prev, change) => pool.apply(change))
    pool.start()
    // Nothing listens on these ports of 127.0.0.1: each attempt is refused at once.
    const refused = (i: number): InstanceSpec => ({ ...spec(`i${i}`, []), endpoints: [{ id: `127.0.0.1:${i}`, host: '127.0.0.1', port: i, ready: true }] })
    table.apply({ type: 'reset', instances: [1, 2, 3, 4, 5].map(refused) })
    for (const i of [1, 2, 3, 4, 5]) expect(pool.get(`127.0.0.1:${i}`)?.instances.has(`i${i}`)).toBe(true)
    expect([pool.starts.active, pool.starts.queued]).toEqual([0, 5])
    await new Promise((r) => setImmediate(r))
    expect([pool.starts.active, pool.starts.queued]).toEqual([2, 3])
    // Each refusal frees a place for the next.
    await new Promise<void>((resolve) => {
      const check = (): void => (closed.length >= 5 ? resolve() : void setTimeout(check, 10))
      check()
    })
    expect(new Set(closed).size).toBe(5)
  })
})
