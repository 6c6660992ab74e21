// The pure parts of the cluster executor: which error replies are redirections, and the position
// a cluster reply's sync token carries (routing/sync-token.ts). The request paths themselves run
// against real clusters (test/integration/cluster.test.ts, test/faults/cluster-*.test.ts).

import { describe, expect, it } from 'vitest'
import { clusterPosition, redirectOf, type ClusterCall } from './cluster-exec.js'
import type { ShardRoute } from './cluster.js'
import type { InstanceRoute } from '../routing/table.js'

describe('redirectOf', () => {
  it('reads MOVED and ASK with the slot and address, IPv6 and hostnames included', () => {
    expect(redirectOf('MOVED 3999 127.0.0.1:6381')).toEqual({ kind: 'moved', slot: 3999, host: '127.0.0.1', port: 6381 })
    expect(redirectOf('ASK 12 redis-1.redis:6379')).toEqual({ kind: 'ask', slot: 12, host: 'redis-1.redis', port: 6379 })
    expect(redirectOf('MOVED 7 ::1:7000')).toEqual({ kind: 'moved', slot: 7, host: '::1', port: 7000 })
  })
  it('TRYAGAIN and CLUSTERDOWN are waits; anything else is not a redirection', () => {
    expect(redirectOf('TRYAGAIN Multiple keys request during rehashing of slot')).toEqual({ kind: 'tryagain' })
    expect(redirectOf('CLUSTERDOWN The cluster is down')).toEqual({ kind: 'clusterdown' })
    for (const m of ['ERR wrong', 'MOVED', 'MOVED x 1.2.3.4:5', 'ASKING', 'CROSSSLOT Keys', 'MOVEDX 1 a:1', '']) expect(redirectOf(m), m).toBeNull()
  })
})

describe('clusterPosition', () => {
  // Shards known by their primaries' replication state; the router's primaryOf reads it.
  const primaries = new Map<InstanceRoute, { replId: string | null; offset: number }>()
  const shard = (i: number, replId: string | null, offset: number): ShardRoute => {
    const route = { name: 'c', spec: {} } as unknown as InstanceRoute
    primaries.set(route, { replId, offset })
    return { index: i, route } as unknown as ShardRoute
  }
  const call = (shards: ShardRoute[], token: Map<string, number> | null, touched: ShardRoute[]): ClusterCall =>
    ({
      cluster: { name: 'c', shards },
      dispatch: { router: { primaryOf: (r: InstanceRoute) => ({ state: primaries.get(r)! }) } },
      token: token === null ? null : { instance: 'c', shards: token },
      touched: new Set(touched),
    }) as unknown as ClusterCall

  const A = 'a'.repeat(40)
  const B = 'b'.repeat(40)
  const C = 'c'.repeat(40)
  const id = (r: string): string => r.slice(0, 16)

  it("touched shards at their primary's offset; untouched ones only when the client's token had them", () => {
    const s = [shard(0, A, 100), shard(1, B, 200), shard(2, C, 300)]
    expect([...clusterPosition(call(s, null, [s[1]!])).shards]).toEqual([[id(B), 200]])
    expect([...clusterPosition(call(s, new Map([[id(C), 250]]), [s[0]!])).shards]).toEqual([
      [id(C), 250],
      [id(A), 100],
    ])
  })

  it('never goes back: a touched shard keeps the client\'s offset when it is ahead of what the gateway knows', () => {
    const s = [shard(0, A, 100)]
    expect([...clusterPosition(call(s, new Map([[id(A), 150]]), [s[0]!])).shards]).toEqual([[id(A), 150]])
  })

  it('drops the entry of a shard that failed over (its primary has a new replication id) or is gone', () => {
    const s = [shard(0, A, 10), shard(1, 'd'.repeat(40), 5)]
    const p = clusterPosition(call(s, new Map([[id(A), 7], [id(B), 99], ['0123456789abcdef', 1]]), []))
    expect([...p.shards]).toEqual([[id(A), 7]])
  })

  it('a shard whose primary is not known yet adds nothing', () => {
    const s = [shard(0, null, 0)]
    expect(clusterPosition(call(s, null, [s[0]!])).shards.size).toBe(0)
  })
})
