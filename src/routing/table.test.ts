// Tests for the routing table: level-based updates (reset/upsert/remove), immutable snapshots
// swapped atomically, object reuse for unchanged instances, and groups built from annotations
// plus the config file's group strategies.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DEFAULT_POLICY } from '../discovery/annotations.js'
import type { InstancePolicy, InstanceSpec, InstanceUpdate } from '../core/topology.js'
import { RoutingTable, type RoutingSnapshot, type TableChange } from './table.js'

function inst(name: string, opts: { port?: number; policy?: Partial<InstancePolicy> } = {}): InstanceSpec {
  const port = opts.port ?? 6379
  return {
    name,
    source: 'static',
    endpoints: [{ id: `127.0.0.1:${port}`, host: '127.0.0.1', port, ready: true }],
    policy: { ...DEFAULT_POLICY, ...opts.policy },
    annotationErrors: [],
  }
}

const names = (s: RoutingSnapshot): string[] => [...s.instances.keys()].sort()

describe('RoutingTable.apply', () => {
  it('starts empty at version 0', () => {
    const t = new RoutingTable()
    expect(t.current.version).toBe(0)
    expect(t.current.instances.size).toBe(0)
    expect(t.current.groups.size).toBe(0)
  })

  it('reset replaces the whole set of instances', () => {
    const t = new RoutingTable()
    t.apply({ type: 'reset', instances: [inst('a'), inst('b')] })
    expect(names(t.current)).toEqual(['a', 'b'])
    t.apply({ type: 'reset', instances: [inst('b'), inst('c')] })
    expect(names(t.current)).toEqual(['b', 'c'])
    t.apply({ type: 'reset', instances: [] })
    expect(names(t.current)).toEqual([])
  })

  it('upsert adds or replaces one instance; remove deletes one', () => {
    const t = new RoutingTable()
    t.apply({ type: 'upsert', instance: inst('a') })
    t.apply({ type: 'upsert', instance: inst('b') })
    expect(names(t.current)).toEqual(['a', 'b'])
    const changed = inst('a', { port: 7000 })
    t.apply({ type: 'upsert', instance: changed })
    expect(t.current.instances.get('a')?.spec).toEqual(changed)
    t.apply({ type: 'remove', name: 'a' })
    expect(names(t.current)).toEqual(['b'])
  })

  it('every effective change bumps the version', () => {
    const t = new RoutingTable()
    t.apply({ type: 'reset', instances: [inst('a')] })
    const v1 = t.current.version
    t.apply({ type: 'upsert', instance: inst('b') })
    const v2 = t.current.version
    t.apply({ type: 'upsert', instance: inst('b', { port: 1 }) })
    const v3 = t.current.version
    t.apply({ type: 'remove', name: 'b' })
    const v4 = t.current.version
    expect(v1).toBeGreaterThan(0)
    expect(v2).toBeGreaterThan(v1)
    expect(v3).toBeGreaterThan(v2)
    expect(v4).toBeGreaterThan(v3)
  })

  it('an upsert with an unchanged spec changes nothing: same snapshot, same version, no notification', () => {
    const t = new RoutingTable()
    t.apply({ type: 'upsert', instance: inst('a', { policy: { groups: ['g'] } }) })
    const before = t.current
    let calls = 0
    t.onChange(() => calls++)
    // A structurally equal but distinct object.
    t.apply({ type: 'upsert', instance: inst('a', { policy: { groups: ['g'] } }) })
    expect(t.current).toBe(before)
    expect(t.current.version).toBe(before.version)
    expect(calls).toBe(0)
  })

  it('removing an unknown instance changes nothing', () => {
    const t = new RoutingTable()
    t.apply({ type: 'reset', instances: [inst('a')] })
    const before = t.current
    t.apply({ type: 'remove', name: 'zzz' })
    expect(t.current).toBe(before)
  })
})

describe('RoutingTable snapshots', () => {
  it('an old snapshot is unchanged by later updates', () => {
    const t = new RoutingTable()
    t.apply({ type: 'reset', instances: [inst('a'), inst('b', { policy: { groups: ['g'] } })] })
    const old = t.current
    const oldA = old.instances.get('a')
    const oldGroups = old.groups
    const oldG = old.groups.get('g')

    t.apply({ type: 'upsert', instance: inst('a', { port: 7000 }) })
    t.apply({ type: 'upsert', instance: inst('c', { policy: { groups: ['g'] } }) })
    t.apply({ type: 'remove', name: 'b' })
    t.apply({ type: 'reset', instances: [inst('z')] })

    expect(names(old)).toEqual(['a', 'b'])
    expect(old.instances.get('a')).toBe(oldA)
    expect(old.instances.get('a')?.spec.endpoints[0]?.port).toBe(6379)
    expect(old.groups).toBe(oldGroups)
    expect(old.groups.get('g')).toBe(oldG)
    expect(old.groups.get('g')?.members).toEqual(['b'])
    expect(names(t.current)).toEqual(['z'])
    expect(t.current).not.toBe(old)
  })

  it('updating one instance keeps every other instance object identical (===)', () => {
    const t = new RoutingTable()
    t.apply({ type: 'reset', instances: [inst('a'), inst('b'), inst('c')] })
    const s1 = t.current
    t.apply({ type: 'upsert', instance: inst('b', { policy: { weight: 5 } }) })
    const s2 = t.current
    expect(s2.instances.get('a')).toBe(s1.instances.get('a'))
    expect(s2.instances.get('c')).toBe(s1.instances.get('c'))
    expect(s2.instances.get('b')).not.toBe(s1.instances.get('b'))
    expect(s2.instances.get('b')?.spec.policy.weight).toBe(5)

    t.apply({ type: 'remove', name: 'c' })
    expect(t.current.instances.get('a')).toBe(s1.instances.get('a'))
    expect(t.current.instances.get('b')).toBe(s2.instances.get('b'))
  })

  it('a reset reuses the objects of instances whose spec did not change', () => {
    const t = new RoutingTable()
    t.apply({ type: 'reset', instances: [inst('a'), inst('b')] })
    const s1 = t.current
    t.apply({ type: 'reset', instances: [inst('a'), inst('b', { port: 7001 }), inst('c')] })
    const s2 = t.current
    expect(s2.instances.get('a')).toBe(s1.instances.get('a'))
    expect(s2.instances.get('b')).not.toBe(s1.instances.get('b'))
    expect(s2.instances.get('c')?.spec.name).toBe('c')
  })

  it('onChange listeners receive (new snapshot, previous snapshot)', () => {
    const t = new RoutingTable()
    const seen: [RoutingSnapshot, RoutingSnapshot][] = []
    t.onChange((next, prev) => seen.push([next, prev]))
    const s0 = t.current
    t.apply({ type: 'upsert', instance: inst('a') })
    const s1 = t.current
    t.apply({ type: 'remove', name: 'a' })
    const s2 = t.current
    expect(seen).toHaveLength(2)
    expect(seen[0]?.[0]).toBe(s1)
    expect(seen[0]?.[1]).toBe(s0)
    expect(seen[1]?.[0]).toBe(s2)
    expect(seen[1]?.[1]).toBe(s1)
  })

  it('a listener already sees the new snapshot as current', () => {
    const t = new RoutingTable()
    let currentInListener: RoutingSnapshot | undefined
    t.onChange((next) => {
      currentInListener = t.current
      expect(next).toBe(t.current)
    })
    t.apply({ type: 'upsert', instance: inst('a') })
    expect(currentInListener).toBe(t.current)
  })
})

describe('RoutingTable groups', () => {
  it('builds groups from the groups policy of instances, members sorted, default strategy weighted', () => {
    const t = new RoutingTable()
    t.apply({
      type: 'reset',
      instances: [
        inst('zeta', { policy: { groups: ['web', 'all'] } }),
        inst('alpha', { policy: { groups: ['all'] } }),
        inst('mid', { policy: { groups: ['web'] } }),
        inst('solo'),
      ],
    })
    const g = t.current.groups
    expect([...g.keys()].sort()).toEqual(['all', 'web'])
    expect(g.get('all')).toEqual({ name: 'all', strategy: 'weighted', members: ['alpha', 'zeta'] })
    expect(g.get('web')).toEqual({ name: 'web', strategy: 'weighted', members: ['mid', 'zeta'] })
  })

  it('takes group strategies from the config', () => {
    const t = new RoutingTable()
    t.setGroupConfig({ sessions: { strategy: 'sticky' }, web: { strategy: 'round-robin' } })
    t.apply({ type: 'reset', instances: [inst('a', { policy: { groups: ['sessions', 'other'] } })] })
    expect(t.current.groups.get('sessions')?.strategy).toBe('sticky')
    expect(t.current.groups.get('other')?.strategy).toBe('weighted')
  })

  it('a configured group without members exists with members []', () => {
    const t = new RoutingTable()
    t.setGroupConfig({ web: { strategy: 'round-robin' } })
    expect(t.current.groups.get('web')).toEqual({ name: 'web', strategy: 'round-robin', members: [] })
    t.apply({ type: 'reset', instances: [inst('a')] })
    expect(t.current.groups.get('web')).toEqual({ name: 'web', strategy: 'round-robin', members: [] })
  })

  it('changing the group config after instances exist re-derives strategies and keeps members', () => {
    const t = new RoutingTable()
    t.apply({ type: 'reset', instances: [inst('a', { policy: { groups: ['g'] } })] })
    expect(t.current.groups.get('g')?.strategy).toBe('weighted')
    t.setGroupConfig({ g: { strategy: 'least-request' } })
    expect(t.current.groups.get('g')).toEqual({ name: 'g', strategy: 'least-request', members: ['a'] })
    t.setGroupConfig({})
    expect(t.current.groups.get('g')?.strategy).toBe('weighted')
  })

  it('follows upserts and removes that change membership', () => {
    const t = new RoutingTable()
    t.apply({ type: 'upsert', instance: inst('b', { policy: { groups: ['g'] } }) })
    t.apply({ type: 'upsert', instance: inst('a', { policy: { groups: ['g'] } }) })
    expect(t.current.groups.get('g')?.members).toEqual(['a', 'b'])
    // b leaves the group
    t.apply({ type: 'upsert', instance: inst('b') })
    expect(t.current.groups.get('g')?.members).toEqual(['a'])
    // a is removed: the unconfigured group disappears
    t.apply({ type: 'remove', name: 'a' })
    expect(t.current.groups.has('g')).toBe(false)
  })

  it('an upsert that keeps membership keeps the members', () => {
    const t = new RoutingTable()
    t.apply({ type: 'reset', instances: [inst('a', { policy: { groups: ['g'] } }), inst('b', { policy: { groups: ['g'] } })] })
    t.apply({ type: 'upsert', instance: inst('a', { policy: { groups: ['g'], weight: 1 } }) })
    expect(t.current.groups.get('g')?.members).toEqual(['a', 'b'])
    expect(t.current.instances.get('a')?.spec.policy.weight).toBe(1)
  })
})

describe('RoutingTable.apply: a reset scoped to one source', () => {
  it('replaces only that source and keeps instances from other sources', () => {
    const t = new RoutingTable()
    const k8s = { ...inst('orders', { port: 7000 }), source: 'kubernetes:redis-system/redis-orders' }
    t.apply({ type: 'upsert', instance: k8s })
    t.apply({ type: 'reset', source: 'static', instances: [inst('a'), inst('b')] })
    expect(names(t.current)).toEqual(['a', 'b', 'orders'])
    const ordersRoute = t.current.instances.get('orders')
    t.apply({ type: 'reset', source: 'static', instances: [inst('b')] })
    expect(names(t.current)).toEqual(['b', 'orders'])
    // The other source's route object is untouched.
    expect(t.current.instances.get('orders')).toBe(ordersRoute)
  })
})

describe('RoutingTable change notifications', () => {
  it('tells listeners which routes were added and removed', () => {
    const t = new RoutingTable()
    const seen: TableChange[] = []
    t.onChange((_n, _p, change) => seen.push(change))
    t.apply({ type: 'upsert', instance: inst('a') })
    const a1 = t.current.instances.get('a')!
    t.apply({ type: 'upsert', instance: inst('a', { port: 7000 }) })
    const a2 = t.current.instances.get('a')!
    t.apply({ type: 'remove', name: 'a' })
    expect(seen[0]).toEqual({ added: [a1], removed: [], groups: false })
    expect(seen[1]?.added).toEqual([a2])
    expect(seen[1]?.removed[0]).toBe(a1)
    expect(seen[2]).toEqual({ added: [], removed: [a2], groups: false })
  })

  it('a reset reports only what differs', () => {
    const t = new RoutingTable()
    t.apply({ type: 'reset', instances: [inst('a'), inst('b'), inst('c')] })
    const before = t.current
    let change: TableChange | undefined
    t.onChange((_n, _p, c) => (change = c))
    t.apply({ type: 'reset', instances: [inst('a'), inst('b', { port: 7001 }), inst('d')] })
    expect(change?.added.map((r) => r.name).sort()).toEqual(['b', 'd'])
    expect(change?.removed.map((r) => r.name).sort()).toEqual(['b', 'c'])
    expect(change?.removed.find((r) => r.name === 'b')).toBe(before.instances.get('b'))
  })
})

describe('RoutingTable at scale', () => {
  it('keeps every snapshot consistent through many upserts and removes (persistent map)', () => {
    const t = new RoutingTable()
    const n = 3000
    for (let i = 0; i < n; i++) t.apply({ type: 'upsert', instance: inst(`i${i}`, { port: 1000 + (i % 50) }) })
    const mid = t.current
    expect(mid.instances.size).toBe(n)
    for (let i = 0; i < n; i += 3) t.apply({ type: 'remove', name: `i${i}` })
    for (let i = 1; i < n; i += 3) t.apply({ type: 'upsert', instance: inst(`i${i}`, { port: 9000 }) })
    // The old snapshot is untouched.
    expect(mid.instances.size).toBe(n)
    expect(mid.instances.get('i0')?.spec.endpoints[0]?.port).toBe(1000)
    expect(mid.instances.get('i1')?.spec.endpoints[0]?.port).toBe(1001)
    // The new one has exactly what was applied.
    const cur = t.current.instances
    expect(cur.size).toBe(n - Math.ceil(n / 3))
    expect(cur.has('i0')).toBe(false)
    expect(cur.get('i1')?.spec.endpoints[0]?.port).toBe(9000)
    expect(cur.get('i2')?.spec.endpoints[0]?.port).toBe(1002)
    expect([...cur.keys()].length).toBe(cur.size)
    expect(new Set([...cur.values()].map((r) => r.name)).size).toBe(cur.size)
    let count = 0
    cur.forEach((route, name) => {
      expect(route.name).toBe(name)
      count++
    })
    expect(count).toBe(cur.size)
    expect(new Map(cur).size).toBe(cur.size)
  })

  it('updates group membership incrementally to the same result as a full rebuild', () => {
    const groups = ['g0', 'g1', 'g2', 'g3']
    const t = new RoutingTable()
    t.setGroupConfig({ g3: { strategy: 'sticky' } })
    let seed = 7
    const rand = (m: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0
      return seed % m
    }
    const live = new Map<string, readonly string[]>()
    for (let step = 0; step < 2000; step++) {
      const name = `m${rand(60)}`
      if (rand(5) === 0) {
        t.apply({ type: 'remove', name })
        live.delete(name)
      } else {
        const mine = groups.filter(() => rand(3) === 0)
        t.apply({ type: 'upsert', instance: inst(name, { policy: { groups: mine } }) })
        live.set(name, mine)
      }
      if (step % 100 === 0 || step === 1999) {
        const expected = new Map<string, string[]>()
        for (const [n, gs] of live) for (const g of gs) expected.set(g, [...(expected.get(g) ?? []), n])
        const got = t.current.groups
        for (const g of groups) {
          const members = (expected.get(g) ?? []).sort()
          if (members.length === 0 && g !== 'g3') expect(got.has(g)).toBe(false)
          else expect(got.get(g)).toEqual({ name: g, strategy: g === 'g3' ? 'sticky' : 'weighted', members })
        }
      }
    }
  })
})

describe('RoutingTable.apply: a batch', () => {
  const update = fc.oneof(
    fc.record({
      type: fc.constant('upsert' as const),
      name: fc.constantFrom('a', 'b', 'c', 'd', 'e'),
      port: fc.constantFrom(6379, 6380),
      groups: fc.subarray(['g1', 'g2']),
    }),
    fc.record({ type: fc.constant('remove' as const), name: fc.constantFrom('a', 'b', 'c', 'd', 'e') }),
  )
  const asUpdate = (u: { type: 'upsert'; name: string; port: number; groups: string[] } | { type: 'remove'; name: string }): InstanceUpdate =>
    u.type === 'upsert' ? { type: 'upsert', instance: inst(u.name, { port: u.port, policy: { groups: u.groups } }) } : { type: 'remove', name: u.name }

  it('ends where the same updates one by one end, in one change that reports the net difference', () => {
    fc.assert(
      fc.property(fc.array(update, { maxLength: 8 }), fc.array(update, { minLength: 2, maxLength: 12 }), (before, batch) => {
        const one = new RoutingTable()
        const all = new RoutingTable()
        for (const t of [one, all]) {
          t.setGroupConfig({ g2: { strategy: 'sticky' } })
          for (const u of before) t.apply(asUpdate(u))
        }
        const start = all.current
        const changes: TableChange[] = []
        all.onChange((_s, _p, c) => changes.push(c))
        for (const u of batch) one.apply(asUpdate(u))
        all.apply({ type: 'batch', updates: batch.map(asUpdate) })

        const specs = (s: RoutingSnapshot): [string, unknown][] => [...s.instances].map(([n, r]) => [n, r.spec] as [string, unknown]).sort((x, y) => x[0].localeCompare(y[0]))
        expect(specs(all.current)).toEqual(specs(one.current))
        expect(new Map(all.current.groups)).toEqual(new Map(one.current.groups))
        // One change at most, none when nothing differs; it names what differs from before the batch.
        const differs = specs(start).length !== specs(all.current).length || JSON.stringify(specs(start)) !== JSON.stringify(specs(all.current))
        expect(changes).toHaveLength(differs ? 1 : 0)
        if (!differs) {
          expect(all.current).toBe(start)
          return
        }
        const c = changes[0]!
        const gone = [...start.instances.values()].filter((r) => all.current.instances.get(r.name) !== r)
        const come = [...all.current.instances.values()].filter((r) => start.instances.get(r.name) !== r)
        expect(new Set(c.removed)).toEqual(new Set(gone))
        expect(new Set(c.added)).toEqual(new Set(come))
        // Unchanged instances keep their objects.
        for (const [name, r] of start.instances) if (!gone.includes(r)) expect(all.current.instances.get(name)).toBe(r)
      }),
      { numRuns: 300 },
    )
  })

  it('a batch of one is that update (groups updated incrementally)', () => {
    const t = new RoutingTable()
    t.apply({ type: 'batch', updates: [{ type: 'upsert', instance: inst('a', { policy: { groups: ['g'] } }) }] })
    expect(t.current.groups.get('g')?.members).toEqual(['a'])
    t.apply({ type: 'batch', updates: [{ type: 'remove', name: 'a' }] })
    expect(t.current.instances.size).toBe(0)
    expect(t.current.groups.has('g')).toBe(false)
  })
})
