// ClusterTopology: unit cases on a fake clock with a fake send(), then a real 3-shard
// cluster (test/helpers/redis-cluster.ts) asked through the gateway's own RespConnection.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Arg } from '../core/command.js'
import type { RawReply } from '../core/reply.js'
import { parseClusterShards, SLOT_COUNT, keySlot } from '../routing/cluster-slots.js'
import { RespConnection } from './resp-connection.js'
import {
  CLUSTER_TOPOLOGY_DEFAULTS,
  ClusterTopology,
  primaryAddress,
  type ClusterEndpoint,
  type ClusterTopologyClock,
  type ClusterTopologyOptions,
  type ClusterTopologyState,
  type RefusedNode,
} from './cluster-topology.js'
import { startCluster, type RedisCluster } from '../../test/helpers/redis-cluster.js'

// ---------------------------------------------------------------------------------------------
// Fakes

class FakeClock implements ClusterTopologyClock {
  t = 0
  private timers: { at: number; fn: () => void; live: boolean }[] = []

  now(): number {
    return this.t
  }

  schedule(fn: () => void, ms: number): () => void {
    const timer = { at: this.t + ms, fn, live: true }
    this.timers.push(timer)
    return () => {
      timer.live = false
    }
  }

  get live(): number {
    return this.timers.filter((t) => t.live).length
  }

  /** Moves time forward, running due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms
    for (;;) {
      await settle()
      const due = this.timers.filter((t) => t.live && t.at <= end).sort((a, b) => a.at - b.at)[0]
      if (due === undefined) break
      due.live = false
      this.t = Math.max(this.t, due.at)
      due.fn()
    }
    this.t = end
    this.timers = this.timers.filter((t) => t.live)
    await settle()
  }
}

/** Lets every pending promise callback run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

const id = (c: string): string => c.repeat(40)
const HOST = '127.0.0.1'

interface FakeNode {
  readonly id: string
  readonly host: string
  readonly port: number
  readonly role: 'master' | 'replica'
  readonly endpoint?: string
  readonly health?: string
}

interface FakeShard {
  readonly slots: readonly [number, number][]
  readonly nodes: readonly FakeNode[]
}

function shardsReply(shards: readonly FakeShard[]): RawReply {
  return shards.map((s) => [
    'slots',
    s.slots.flat().map(String),
    'nodes',
    s.nodes.map((n) => [
      'id',
      n.id,
      'port',
      n.port,
      'ip',
      n.host,
      'endpoint',
      n.endpoint ?? n.host,
      'role',
      n.role,
      'replication-offset',
      100,
      'health',
      n.health ?? 'online',
    ]),
  ])
}

function slotsReply(shards: readonly FakeShard[]): RawReply {
  const out: RawReply[] = []
  for (const s of shards) {
    const primary = s.nodes.find((n) => n.role === 'master')!
    const replicas = s.nodes.filter((n) => n.role === 'replica')
    for (const [a, b] of s.slots) {
      out.push([a, b, ...[primary, ...replicas].map((n) => [n.endpoint ?? n.host, n.port, n.id, []] as RawReply[])])
    }
  }
  return out
}

/** 3 shards: primaries on 7000-7002 (ids a, b, c), replicas on 7003-7005 (ids d, e, f). */
function topology(overrides: { primary2?: Partial<FakeNode>; primaryOf0?: 'a' | 'd'; endpoint?: string } = {}): FakeShard[] {
  const node = (c: string, port: number, role: 'master' | 'replica', extra: Partial<FakeNode> = {}): FakeNode => ({
    id: id(c),
    host: HOST,
    port,
    role,
    ...(overrides.endpoint !== undefined ? { endpoint: overrides.endpoint } : {}),
    ...extra,
  })
  const promoted = overrides.primaryOf0 === 'd'
  return [
    {
      slots: [[0, 5460]],
      nodes: promoted
        ? [node('d', 7003, 'master'), node('a', 7000, 'master', { health: 'failed' })]
        : [node('a', 7000, 'master'), node('d', 7003, 'replica')],
    },
    { slots: [[5461, 10922]], nodes: [node('b', 7001, 'master'), node('e', 7004, 'replica')] },
    { slots: [[10923, 16383]], nodes: [node('c', 7002, 'master', overrides.primary2), node('f', 7005, 'replica')] },
  ]
}

const ALL: ClusterEndpoint[] = [7000, 7001, 7002, 7003, 7004, 7005].map((port) => ({ host: HOST, port }))

type Handler = (e: ClusterEndpoint, args: readonly Arg[]) => Promise<RawReply> | RawReply

interface Harness {
  readonly topo: ClusterTopology
  readonly clock: FakeClock
  /** `host:port COMMAND SUB` per send, in order. */
  readonly calls: string[]
  readonly changes: [ClusterTopologyState, ClusterTopologyState | null][]
  readonly errors: Error[]
  readonly refused: (readonly RefusedNode[])[]
  handler: Handler
}

function harness(handler: Handler, opts: Partial<ClusterTopologyOptions> = {}): Harness {
  const clock = new FakeClock()
  const h: Harness = {
    clock,
    calls: [],
    changes: [],
    errors: [],
    refused: [],
    handler,
    topo: undefined as unknown as ClusterTopology,
  }
  const topo = new ClusterTopology({
    name: 'orders',
    endpoints: ALL,
    clock,
    send: async (e, args) => {
      h.calls.push(`${e.host}:${e.port} ${args.join(' ')}`)
      return h.handler(e, args)
    },
    onChange: (s, p) => h.changes.push([s, p]),
    onError: (e) => h.errors.push(e),
    onRefused: (r) => h.refused.push(r),
    ...opts,
  })
  ;(h as { topo: ClusterTopology }).topo = topo
  return h
}

const shardsOk =
  (shards: FakeShard[] = topology()): Handler =>
  (_e, args) => {
    if (args[1] === 'SHARDS') return shardsReply(shards)
    return slotsReply(shards)
  }

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}

// ---------------------------------------------------------------------------------------------
// Unit cases

describe('ClusterTopology (fake clock, fake send)', () => {
  it('documents its defaults, and does no I/O and arms no timer when constructed', async () => {
    expect(CLUSTER_TOPOLOGY_DEFAULTS).toMatchObject({ minIntervalMs: 100, periodicMs: 5_000, allowUndiscoveredNodes: false })
    const h = harness(shardsOk())
    await settle()
    expect(h.calls).toEqual([])
    expect(h.clock.live).toBe(0)
    expect(h.topo.state).toBeNull()
    expect(() => new ClusterTopology({ name: 'x', endpoints: [], send: async () => null, minIntervalMs: -1 })).toThrow(RangeError)
  })

  it('learns the map from the first seed and swaps it in whole', async () => {
    const h = harness(shardsOk())
    const r = await h.topo.refresh('test')
    expect(r.ok).toBe(true)
    expect(r.changed).toBe(true)
    expect(h.calls).toEqual(['127.0.0.1:7000 CLUSTER SHARDS'])
    const s = h.topo.state!
    expect(s.command).toBe('CLUSTER SHARDS')
    expect(s.map.coveredSlots).toBe(SLOT_COUNT)
    expect(s.servedSlots).toBe(SLOT_COUNT)
    expect(s.refused).toEqual([])
    expect(primaryAddress(s, 0)).toEqual({ id: id('a'), host: HOST, port: 7000 })
    expect(primaryAddress(s, 16383)).toEqual({ id: id('c'), host: HOST, port: 7002 })
    expect(h.changes).toHaveLength(1)
    expect(h.changes[0]![1]).toBeNull()
    // The same topology again: no change reported, the state object is kept.
    await h.clock.advance(100)
    const again = await h.topo.refresh('test')
    expect(again.changed).toBe(false)
    expect(h.topo.state).toBe(s)
    expect(h.changes).toHaveLength(1)
  })

  it('is single-flight: concurrent refresh() calls share one run', async () => {
    const d = deferred<RawReply>()
    const h = harness(() => d.promise)
    const p1 = h.topo.refresh('moved')
    const p2 = h.topo.refresh('moved')
    const p3 = h.topo.refresh('endpoints')
    expect(p2).toBe(p1)
    expect(p3).toBe(p1)
    await settle()
    expect(h.calls).toHaveLength(1)
    d.resolve(shardsReply(topology()))
    const [r1, r2, r3] = await Promise.all([p1, p2, p3])
    expect(r1).toBe(r2)
    expect(r1).toBe(r3)
    expect(r1.ok).toBe(true)
    expect(r1.reasons).toEqual(['moved', 'endpoints'])
    expect(h.calls).toHaveLength(1)
  })

  it('starts runs at least minIntervalMs apart: a MOVED storm makes one CLUSTER SHARDS', async () => {
    const h = harness(shardsOk())
    await h.topo.refresh('first')
    expect(h.calls).toHaveLength(1)
    await h.clock.advance(10)
    const storm = Array.from({ length: 50 }, () => h.topo.refresh('moved'))
    expect(new Set(storm).size).toBe(1)
    await h.clock.advance(89)
    expect(h.calls).toHaveLength(1)
    await h.clock.advance(1)
    const results = await Promise.all(storm)
    expect(h.calls).toHaveLength(2)
    expect(results[0]!.ok).toBe(true)
    // Long after the last run, a refresh starts at once.
    await h.clock.advance(1_000)
    await h.topo.refresh('later')
    expect(h.calls).toHaveLength(3)
  })

  it("falls back to CLUSTER SLOTS when SHARDS is an unknown subcommand, and remembers it", async () => {
    const shards = topology()
    for (const reject of [false, true]) {
      const h = harness((_e, args) => {
        if (args[1] === 'SHARDS') {
          const err = new Error("ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.")
          if (reject) throw err
          return err
        }
        return slotsReply(shards)
      })
      const r = await h.topo.refresh('test')
      expect(r.ok).toBe(true)
      expect(h.calls).toEqual(['127.0.0.1:7000 CLUSTER SHARDS', '127.0.0.1:7000 CLUSTER SLOTS'])
      const s = h.topo.state!
      expect(s.command).toBe('CLUSTER SLOTS')
      expect(s.servedSlots).toBe(SLOT_COUNT)
      expect(s.map.shards.map((x) => x.primary.id)).toEqual([id('a'), id('b'), id('c')])
      expect(s.map.shards.map((x) => x.replicas.map((n) => n.id))).toEqual([[id('d')], [id('e')], [id('f')]])
      await h.clock.advance(100)
      await h.topo.refresh('again')
      expect(h.calls.slice(2)).toEqual(['127.0.0.1:7000 CLUSTER SLOTS'])
    }
  })

  it('does not fall back to SLOTS on other errors: the next seed is asked', async () => {
    const h = harness((e, args) => (e.port === 7000 ? new Error('ERR This instance has cluster support disabled') : shardsOk()(e, args)))
    const r = await h.topo.refresh('test')
    expect(r.ok).toBe(true)
    expect(h.calls).toEqual(['127.0.0.1:7000 CLUSTER SHARDS', '127.0.0.1:7001 CLUSTER SHARDS'])
  })

  it('tries the seeds one at a time, in order, each within the timeout', async () => {
    const h = harness(
      (e, args) => {
        if (e.port === 7000) throw new Error('connect ECONNREFUSED 127.0.0.1:7000')
        if (e.port === 7001) return new Promise<RawReply>(() => {}) // never answers
        return shardsOk()(e, args)
      },
      { refreshTimeoutMs: 1_500 },
    )
    const p = h.topo.refresh('test')
    await h.clock.advance(1_499)
    expect(h.calls).toEqual(['127.0.0.1:7000 CLUSTER SHARDS', '127.0.0.1:7001 CLUSTER SHARDS'])
    await h.clock.advance(1)
    const r = await p
    expect(r.ok).toBe(true)
    expect(h.calls).toEqual(['127.0.0.1:7000 CLUSTER SHARDS', '127.0.0.1:7001 CLUSTER SHARDS', '127.0.0.1:7002 CLUSTER SHARDS'])
    expect(r.attempts.map((a) => [a.endpoint.port, a.error?.message ?? null])).toEqual([
      [7000, 'connect ECONNREFUSED 127.0.0.1:7000'],
      [7001, 'CLUSTER SHARDS did not answer within 1500 ms'],
      [7002, null],
    ])
    expect(h.topo.state!.from).toEqual({ host: HOST, port: 7002 })
  })

  it('asks the nodes of the last known map after the discovered endpoints', async () => {
    const shards = topology()
    const h = harness(shardsOk(shards), { endpoints: [{ host: HOST, port: 7000 }], allowUndiscoveredNodes: true })
    await h.topo.refresh('first')
    h.calls.length = 0
    h.handler = (e, args) => (e.port === 7000 || e.port === 7001 ? Promise.reject(new Error('down')) : shardsOk(shards)(e, args))
    await h.clock.advance(100)
    const r = await h.topo.refresh('moved')
    expect(r.ok).toBe(true)
    // 7000 (discovered), then the map's primaries in shard order (7000 already asked), then the rest.
    expect(h.calls).toEqual(['127.0.0.1:7000 CLUSTER SHARDS', '127.0.0.1:7001 CLUSTER SHARDS', '127.0.0.1:7002 CLUSTER SHARDS'])
  })

  it('when every seed fails, keeps the old map and reports the error', async () => {
    const h = harness(shardsOk())
    await h.topo.refresh('first')
    const before = h.topo.state
    h.handler = () => Promise.reject(new Error('down'))
    await h.clock.advance(100)
    const r = await h.topo.refresh('moved')
    expect(r.ok).toBe(false)
    expect(r.state).toBe(before)
    expect(h.topo.state).toBe(before)
    expect(h.errors).toHaveLength(1)
    expect(h.errors[0]!.message).toMatch(/no seed gave a usable map.*127\.0\.0\.1:7005 CLUSTER SHARDS: down/)
  })

  it('rejects a hostile reply and keeps the old map', async () => {
    const h = harness(shardsOk())
    await h.topo.refresh('first')
    const before = h.topo.state!
    // Every node claims slots 0-16383 for shard c too: overlapping ranges.
    const hostile = topology().map((sh, i): FakeShard => (i === 2 ? { ...sh, slots: [[0, 16383]] } : sh))
    h.handler = () => shardsReply(hostile)
    await h.clock.advance(100)
    const r = await h.topo.refresh('moved')
    expect(r.ok).toBe(false)
    expect(r.attempts).toHaveLength(ALL.length)
    expect(r.attempts[0]!.error!.message).toMatch(/served by two shards/)
    expect(h.topo.state).toBe(before)
    expect(h.changes).toHaveLength(1)
    expect(h.errors).toHaveLength(1)

    // Other hostile shapes: a reply that is not an array, a slot out of range, an empty map.
    for (const bad of [Buffer.from('OK'), shardsReply([{ slots: [[0, 99_999]], nodes: topology()[0]!.nodes }]), []] as RawReply[]) {
      h.handler = () => bad
      await h.clock.advance(100)
      const res = await h.topo.refresh('moved')
      expect(res.ok).toBe(false)
      expect(h.topo.state).toBe(before)
    }
    expect(h.changes).toHaveLength(1)

    // A hostile first seed does not stop a good second one.
    h.handler = (e, args) => (e.port === 7000 ? shardsReply(hostile) : shardsOk()(e, args))
    await h.clock.advance(100)
    const good = await h.topo.refresh('moved')
    expect(good.ok).toBe(true)
    expect(good.attempts.map((a) => a.error === null)).toEqual([false, true])
  })

  it('refuses nodes that are not discovered (SSRF): reported, their slots uncovered, never asked', async () => {
    const outside = topology({ primary2: { host: '10.0.0.9', port: 6379 } })
    const h = harness(shardsOk(outside), { endpoints: ALL.filter((e) => e.port !== 7002) })
    const r = await h.topo.refresh('test')
    expect(r.ok).toBe(true)
    const s = h.topo.state!
    expect(s.refused).toHaveLength(1)
    expect(s.refused[0]).toMatchObject({ id: id('c'), host: '10.0.0.9', port: 6379, role: 'primary', slots: 16383 - 10923 + 1 })
    expect(s.refused[0]!.reason).toMatch(/not one of the instance's discovered endpoints/)
    expect(h.refused).toEqual([s.refused])
    expect(s.map.coveredSlots).toBe(SLOT_COUNT)
    expect(s.servedSlots).toBe(10923)
    expect(primaryAddress(s, 16383)).toBeNull()
    expect(primaryAddress(s, 0)).not.toBeNull()
    expect(s.addresses.has(id('c'))).toBe(false)
    expect(s.addresses.has(id('f'))).toBe(true)

    // When the discovered endpoints fail, the refused node is not tried as a seed.
    h.calls.length = 0
    h.handler = () => Promise.reject(new Error('down'))
    await h.clock.advance(100)
    await h.topo.refresh('moved')
    expect(h.calls.some((c) => c.startsWith('10.0.0.9'))).toBe(false)
    expect(h.calls).toHaveLength(5)

    // The documented opt-in, or the caller's predicate, accepts it.
    for (const opts of [{ allowUndiscoveredNodes: true }, { allowedNode: (host: string, port: number) => host === '10.0.0.9' && port === 6379 }]) {
      const ok = harness(shardsOk(outside), { endpoints: ALL.filter((e) => e.port !== 7002), ...opts })
      await ok.topo.refresh('test')
      expect(ok.topo.state!.refused).toEqual([])
      expect(ok.topo.state!.servedSlots).toBe(SLOT_COUNT)
      expect(primaryAddress(ok.topo.state!, 16383)).toEqual({ id: id('c'), host: '10.0.0.9', port: 6379 })
    }
  })

  it("takes an announced endpoint of '' or '?' as the host that was asked", async () => {
    for (const endpoint of ['', '?']) {
      const h = harness(shardsOk(topology({ endpoint })), { endpoints: ALL.map((e) => ({ host: 'localhost', port: e.port })) })
      await h.topo.refresh('test')
      const s = h.topo.state!
      expect(s.refused).toEqual([])
      expect(primaryAddress(s, 0)).toEqual({ id: id('a'), host: 'localhost', port: 7000 })
      expect(primaryAddress(s, 16383)).toEqual({ id: id('c'), host: 'localhost', port: 7002 })
    }
  })

  it('follows a failover: onChange with the new state and the previous one', async () => {
    const h = harness(shardsOk())
    await h.topo.refresh('first')
    h.handler = shardsOk(topology({ primaryOf0: 'd' }))
    await h.clock.advance(100)
    const r = await h.topo.refresh('moved')
    expect(r.changed).toBe(true)
    expect(h.changes).toHaveLength(2)
    const [now, prev] = h.changes[1]!
    expect(prev?.map.shardOf(0)?.primary.id).toBe(id('a'))
    expect(now.map.shardOf(0)?.primary.id).toBe(id('d'))
    expect(primaryAddress(now, 0)).toEqual({ id: id('d'), host: HOST, port: 7003 })
  })

  it('start() refreshes and arms the periodic refresh; stop() disarms it for good', async () => {
    const h = harness(shardsOk(), { periodicMs: 5_000 })
    const r = await h.topo.start()
    expect(r.ok).toBe(true)
    expect(h.calls).toHaveLength(1)
    await h.clock.advance(4_999)
    expect(h.calls).toHaveLength(1)
    await h.clock.advance(1)
    expect(h.calls).toHaveLength(2)
    await h.clock.advance(5_000)
    expect(h.calls).toHaveLength(3)
    h.topo.stop()
    expect(h.clock.live).toBe(0)
    await h.clock.advance(20_000)
    expect(h.calls).toHaveLength(3)
    const after = await h.topo.refresh('moved')
    expect(after.ok).toBe(false)
    expect(h.calls).toHaveLength(3)
  })

  it('setEndpoints: refreshes when the set changes (after start), and updates what is allowed', async () => {
    const outside = topology({ primary2: { host: '10.0.0.9', port: 6379 } })
    const h = harness(shardsOk(outside), { endpoints: ALL.filter((e) => e.port !== 7002), periodicMs: 0 })
    await h.topo.start()
    expect(h.topo.state!.refused).toHaveLength(1)
    h.topo.setEndpoints(ALL.filter((e) => e.port !== 7002)) // the same set: nothing happens
    await h.clock.advance(1_000)
    expect(h.calls).toHaveLength(1)
    h.topo.setEndpoints([...ALL.filter((e) => e.port !== 7002), { host: '10.0.0.9', port: 6379 }])
    await h.clock.advance(1_000)
    expect(h.calls).toHaveLength(2)
    expect(h.topo.state!.refused).toEqual([])
    h.topo.stop()
  })

  it('a throwing onChange goes to onError, not into the run', async () => {
    const errors: Error[] = []
    const topo = new ClusterTopology({
      name: 'x',
      endpoints: ALL,
      clock: new FakeClock(),
      send: async () => shardsReply(topology()),
      onChange: () => {
        throw new Error('boom')
      },
      onError: (e) => errors.push(e),
    })
    const r = await topo.refresh('test')
    expect(r.ok).toBe(true)
    expect(errors.map((e) => e.message)).toEqual(['boom'])
  })
})

// ---------------------------------------------------------------------------------------------
// A real cluster, asked through the gateway's RespConnection

/** Opens a RespConnection, sends one command, closes it. */
function respSend(endpoint: ClusterEndpoint, args: readonly Arg[]): Promise<RawReply> {
  return new Promise<RawReply>((resolve, reject) => {
    let done = false
    const finish = (fn: () => void): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      conn.stop()
      fn()
    }
    const timer = setTimeout(() => finish(() => reject(new Error(`${endpoint.host}:${endpoint.port}: no reply within 3000 ms`))), 3_000)
    const conn = new RespConnection(
      { host: endpoint.host, port: endpoint.port, username: '', password: '', tls: false, connectTimeoutMs: 2_000, retryDelayMs: () => 60_000, readyCheck: false },
      {
        onReady: () => {
          const sent = conn.command(args, {
            reply: (v) => finish(() => (v instanceof Error ? reject(v) : resolve(v as RawReply))),
            lost: (err) => finish(() => reject(err)),
          })
          if (!sent) finish(() => reject(new Error('not ready')))
        },
        onClose: (reason) => finish(() => reject(new Error(`${endpoint.host}:${endpoint.port}: ${reason}`))),
      },
    )
    conn.start()
  })
}

/** Shards as comparable text: ranges > primary id [replica ids]. */
function describeShards(shards: readonly { ranges: readonly (readonly [number, number])[]; primary: { id: string }; replicas: readonly { id: string }[] }[]): string[] {
  return shards.map((s) => `${s.ranges.map(([a, b]) => `${a}-${b}`).join(',')} > ${s.primary.id} [${s.replicas.map((r) => r.id).sort().join(' ')}]`)
}

describe('ClusterTopology (real 3-shard cluster)', () => {
  let cluster: RedisCluster
  let topo: ClusterTopology
  const changes: ClusterTopologyState[] = []
  const errors: Error[] = []

  beforeAll(async () => {
    cluster = await startCluster({ shards: 3, replicasPerShard: 1, nodeTimeoutMs: 2_000 })
    topo = new ClusterTopology({
      name: 'cluster',
      endpoints: cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
      send: respSend,
      // The tests refresh by hand: a periodic refresh during the failover wait would see the new
      // primary first and leave the test's own refresh nothing to change.
      periodicMs: 0,
      onChange: (s) => changes.push(s),
      onError: (e) => errors.push(e),
    })
  }, 60_000)
  afterAll(async () => {
    topo?.stop()
    await cluster?.stop()
  })

  it('learns a map that covers 16384 slots and matches every node\'s CLUSTER SHARDS', async () => {
    const r = await topo.start()
    expect(r.error).toBeNull()
    expect(r.ok).toBe(true)
    const s = topo.state!
    expect(s.command).toBe('CLUSTER SHARDS')
    expect(s.map.coveredSlots).toBe(SLOT_COUNT)
    expect(s.servedSlots).toBe(SLOT_COUNT)
    expect(s.refused).toEqual([])
    expect(s.map.shards).toHaveLength(3)
    const mine = describeShards(s.map.shards)
    for (const node of cluster.nodes) {
      const theirs = parseClusterShards(await respSend({ host: node.host, port: node.port }, ['CLUSTER', 'SHARDS']))
      expect(describeShards(theirs.shards)).toEqual(mine)
    }
    // And the helper's own view (CLUSTER NODES).
    expect(mine).toEqual(describeShards(cluster.shards().map((sh) => ({ ranges: sh.slots, primary: sh.primary, replicas: sh.replicas }))))
    for (const node of cluster.nodes) expect(s.addresses.get(node.id)).toEqual({ id: node.id, host: node.host, port: node.port })
    // A key's slot goes to the node that owns it.
    const slot = keySlot('user:1')
    expect(primaryAddress(s, slot)?.port).toBe(cluster.slotOwner(slot).port)
  })

  it('after a primary is killed and its replica promoted, a refresh shows the replica as the primary', async () => {
    const victim = cluster.slotOwner(0)
    await cluster.kill(victim)
    const { primary: promoted } = await cluster.waitForFailover(victim.id, { timeoutMs: 30_000 })
    expect(promoted.id).not.toBe(victim.id)
    const before = changes.length
    // The killed node is the first seed when it was the first node: the refresh moves on past it.
    const r = await topo.refresh('test')
    expect(r.ok).toBe(true)
    if (cluster.nodes[0]!.id === victim.id) expect(r.attempts[0]!.error?.message).toMatch(/ECONNREFUSED|closed|no reply/i)
    const s = topo.state!
    const shard = s.map.shardOf(0)!
    expect(shard.primary.id).toBe(promoted.id)
    expect(primaryAddress(s, 0)).toEqual({ id: promoted.id, host: promoted.host, port: promoted.port })
    expect(s.map.coveredSlots).toBe(SLOT_COUNT)
    expect(changes.length).toBe(before + 1)
    // Redis 7.0 lists the dead former primary as a shard of its own, serving nothing (7.2+ keeps it
    // in its old shard): it routes nothing.
    const serving = s.map.shards.filter((sh) => sh.slotCount > 0)
    for (const idle of s.map.shards.filter((sh) => sh.slotCount === 0)) {
      expect(idle.primary.id).toBe(victim.id)
      expect(idle.primary.health).toBe('failed')
    }
    expect(describeShards(serving)).toEqual(
      describeShards(cluster.shards().map((sh) => ({ ranges: sh.slots, primary: sh.primary, replicas: sh.replicas.filter((n) => n.isRunning) }))),
    )
  }, 60_000)
})
