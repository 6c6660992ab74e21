// Redis Cluster instances end to end: one real 3-shard × 1-replica cluster for the whole file, the
// gateway in-process, real HTTP requests (fetch) and the @upstash/redis SDK as clients, every
// result checked against the cluster's nodes directly (ioredis on the node that owns the key).
//
// Gateways:
// - `gw`: instances on the same six nodes: `c` (all nodes, no annotation: detected as a cluster),
//   `crep` and `cprefer` (read-policy replica / prefer-replica), `std` (one primary, pinned to
//   `redis-gateway.io/mode: standalone`).
// - test 1 starts two more, each with one instance whose only endpoint is one primary: with
//   `redis.allowUndiscoveredClusterNodes: true`, and with the default (false: refused nodes).
//
// The keyspace test ends with FLUSHALL: it runs last.

import { createHash } from 'node:crypto'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { Redis as Sdk } from '@upstash/redis'
import type { Redis as IORedis } from 'ioredis'
import { keySlot, startCluster, type ClusterNode, type RedisCluster } from '../helpers/redis-cluster.js'
import { parseInfo } from '../helpers/redis-server.js'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { call, post } from '../helpers/rest.js'
import { readEventLines } from '../helpers/sse.js'
import { waitFor } from '../helpers/wait.js'

const RUN = Math.random().toString(36).slice(2, 8)
const HEALTH = { health: { interval: '200ms' } }

let cluster: RedisCluster
let gw: TestGateway
/** Primaries in slot order (shard 0 serves slot 0). */
let primaries: ClusterNode[]
/** The replica of each shard, same order. */
let replicas: ClusterNode[]
const clients = new Map<string, IORedis>()

/** A direct ioredis client on one node (replicas in READONLY mode). */
function node(n: ClusterNode): IORedis {
  let c = clients.get(n.id)
  if (c === undefined) {
    c = cluster.client(n, n.role === 'replica' ? { readOnly: true } : {})
    clients.set(n.id, c)
  }
  return c
}

/** The shard index (0..2) whose primary owns `key`. */
function shardOf(key: string): number {
  const owner = cluster.slotOwner(keySlot(key))
  return primaries.findIndex((p) => p.id === owner.id)
}

/** The direct client on the primary that owns `key`. */
function owner(key: string): IORedis {
  return node(cluster.slotOwner(keySlot(key)))
}

/** `perShard` keys `${prefix}<n>` on each of the three shards: result[shard][i]. */
function keysOn(prefix: string, perShard: number): string[][] {
  const out: string[][] = [[], [], []]
  for (let i = 0; out.some((l) => l.length < perShard); i++) {
    const k = `${prefix}${i}`
    const list = out[shardOf(k)]!
    if (list.length < perShard) list.push(k)
  }
  return out
}

function sdk(instance: string, token = WRITE_TOKEN, on: TestGateway = gw): Sdk {
  return new Sdk({ url: on.base(instance), token, retry: false, enableTelemetry: false })
}

/** Sum of every series of `name` whose labels include `labels`, from a Prometheus text page. */
function metric(page: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0
  for (const line of page.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const m = /^(\S+?)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = new Map<string, string>()
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have.set(k!, v!)
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) total += Number(m[3])
  }
  return total
}

async function metrics(on: TestGateway = gw): Promise<string> {
  return (await fetch(`${on.opsUrl}/metrics`)).text()
}

/** INFO commandstats of one node as { get: calls, ... }, plus rejected calls as `<cmd>!rejected`. */
async function commandStats(n: ClusterNode): Promise<Record<string, number>> {
  const info = parseInfo(await node(n).info('commandstats'))
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(info)) {
    if (!k.startsWith('cmdstat_')) continue
    const name = k.slice('cmdstat_'.length)
    out[name] = Number(/calls=(\d+)/.exec(v)?.[1] ?? 0)
    out[`${name}!rejected`] = Number(/rejected_calls=(\d+)/.exec(v)?.[1] ?? 0)
  }
  return out
}

/** Waits until every replica has the primary's replication offset (WAIT on each primary). */
async function replicated(): Promise<void> {
  for (const p of primaries) expect(await node(p).wait(1, 2_000)).toBe(1)
}

beforeAll(async () => {
  cluster = await startCluster({ shards: 3, replicasPerShard: 1 })
  primaries = cluster.shards().map((s) => s.primary)
  replicas = cluster.shards().map((s) => {
    expect(s.replicas).toHaveLength(1)
    return s.replicas[0]!
  })
  expect(primaries).toHaveLength(3)
  const all = [...cluster.seeds]
  gw = await startGateway({
    instances: [
      { name: 'c', endpoints: all },
      { name: 'crep', endpoints: all, annotations: { 'redis-gateway.io/read-policy': 'replica' } },
      { name: 'cprefer', endpoints: all, annotations: { 'redis-gateway.io/read-policy': 'prefer-replica' } },
      { name: 'std', endpoints: [primaries[0]!.address], annotations: { 'redis-gateway.io/mode': 'standalone' } },
    ],
    extra: HEALTH,
  })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

// ---------------------------------------------------------------------------------------------

test('1. detection without configuration; one seed with allowUndiscoveredClusterNodes; one seed without it refuses the other nodes (503 naming the slot)', async () => {
  // All nodes listed, no annotation: served as a cluster (keys of every shard readable and writable).
  const keys = keysOn(`t1:${RUN}:all:`, 2).flat()
  for (const k of keys) expect(await call(gw.base('c'), WRITE_TOKEN, ['SET', k, `v-${k}`])).toEqual({ status: 200, json: { result: 'OK' } })
  for (const k of keys) expect(await call(gw.base('c'), READ_TOKEN, ['GET', k])).toEqual({ status: 200, json: { result: `v-${k}` } })
  for (const k of keys) expect(await owner(k).get(k)).toBe(`v-${k}`)
  await waitFor(async () => {
    const page = await metrics()
    expect(metric(page, 'redis_gateway_cluster_shards', { redis_instance: 'c' })).toBe(3)
    expect(metric(page, 'redis_gateway_cluster_slots_served', { redis_instance: 'c' })).toBe(16384)
    expect(metric(page, 'redis_gateway_cluster_nodes', { redis_instance: 'c' })).toBe(6)
  })

  // One seed (a primary) and allowUndiscoveredClusterNodes: the announced nodes are used.
  const seed = primaries[0]!
  const one = await startGateway({
    instances: [{ name: 'one', endpoints: [seed.address] }],
    extra: { redis: { commandTimeout: '2s', connectTimeout: '1s', allowUndiscoveredClusterNodes: true } },
  })
  try {
    const ks = keysOn(`t1:${RUN}:one:`, 2).flat()
    for (const k of ks) expect(await call(one.base('one'), WRITE_TOKEN, ['SET', k, `w-${k}`])).toEqual({ status: 200, json: { result: 'OK' } })
    for (const k of ks) expect(await call(one.base('one'), WRITE_TOKEN, ['GET', k])).toEqual({ status: 200, json: { result: `w-${k}` } })
    for (const k of ks) expect(await owner(k).get(k)).toBe(`w-${k}`)
    // Every node of the cluster joined its pool.
    expect(one.gateway.pool.size).toBe(6)
    const page = await metrics(one)
    expect(metric(page, 'redis_gateway_cluster_topology_events_total', { redis_instance: 'one', kind: 'refused' })).toBe(0)
    expect(metric(page, 'redis_gateway_cluster_slots_served', { redis_instance: 'one' })).toBe(16384)
  } finally {
    await one.stop()
  }

  // One seed, default allowUndiscoveredClusterNodes (false): the other nodes are refused (no SSRF).
  const refusing = await startGateway({ instances: [{ name: 'one', endpoints: [seed.address] }] })
  try {
    const [mine, other1, other2] = keysOn(`t1:${RUN}:ref:`, 1).map((l) => l[0]!)
    // Keys on the seed's own shard work.
    expect(await call(refusing.base('one'), WRITE_TOKEN, ['SET', mine!, 'x'])).toEqual({ status: 200, json: { result: 'OK' } })
    expect(await call(refusing.base('one'), WRITE_TOKEN, ['GET', mine!])).toEqual({ status: 200, json: { result: 'x' } })
    expect(await node(seed).get(mine!)).toBe('x')
    for (const k of [other1!, other2!]) {
      const slot = keySlot(k)
      const r = await post(refusing.base('one'), ['SET', k, 'nope'], { token: WRITE_TOKEN })
      expect(r.status).toBe(503)
      expect(r.headers.get('retry-after')).toBe('1')
      const error = (r.json as { error: string }).error
      expect(error).toMatch(/^NOENDPOINT /)
      expect(error).toContain(`slot ${slot} `)
      expect(await owner(k).exists(k)).toBe(0)
    }
    // Only the seed was ever pooled.
    expect(refusing.gateway.pool.size).toBe(1)
    await waitFor(async () => {
      const page = await metrics(refusing)
      // One per slot map learned with refused nodes: a map that changes (a node's health in CLUSTER
      // SHARDS right after the cluster formed) counts again.
      expect(metric(page, 'redis_gateway_cluster_topology_events_total', { redis_instance: 'one', kind: 'refused' })).toBeGreaterThanOrEqual(1)
      // The seed's shard only.
      expect(metric(page, 'redis_gateway_cluster_slots_served', { redis_instance: 'one' })).toBe(cluster.shards()[0]!.slots.reduce((n, [a, b]) => n + b - a + 1, 0))
    })
  } finally {
    await refusing.stop()
  }
})

test('2. mode: standalone pins a plain instance: MOVED comes back as a 400, not followed', async () => {
  const [mine, other] = keysOn(`t2:${RUN}:`, 1).map((l) => l[0]!)
  // The pinned endpoint is primary 0: its own keys work.
  expect(await call(gw.base('std'), WRITE_TOKEN, ['SET', mine!, 'here'])).toEqual({ status: 200, json: { result: 'OK' } })
  expect(await call(gw.base('std'), WRITE_TOKEN, ['GET', mine!])).toEqual({ status: 200, json: { result: 'here' } })
  const otherOwner = cluster.slotOwner(keySlot(other!))
  expect(otherOwner.id).not.toBe(primaries[0]!.id)
  const moved = `MOVED ${keySlot(other!)} ${otherOwner.address}`
  expect(await call(gw.base('std'), WRITE_TOKEN, ['SET', other!, 'there'])).toEqual({ status: 400, json: { error: moved } })
  expect(await call(gw.base('std'), WRITE_TOKEN, ['GET', other!])).toEqual({ status: 400, json: { error: moved } })
  expect(await node(otherOwner).exists(other!)).toBe(0)
  // Not followed, and the instance did not become a cluster.
  expect(gw.gateway.clusters.get('std')).toBeUndefined()
  expect(metric(await metrics(), 'redis_gateway_cluster_redirects_total', { redis_instance: 'std' })).toBe(0)
})

test('3. slot routing: SET/GET on all three shards; hash-tagged keys on one node', async () => {
  const redis = sdk('c')
  const keys = keysOn(`t3:${RUN}:`, 3)
  for (const [shard, list] of keys.entries()) {
    for (const k of list) {
      expect(await redis.set(k, `val-${k}`)).toBe('OK')
      // On the shard's primary, nowhere else.
      expect(await node(primaries[shard]!).get(k)).toBe(`val-${k}`)
      // (Another primary would answer MOVED for the key: count its keys in the slot instead.)
      for (const p of primaries) if (p !== primaries[shard]) expect(await node(p).call('CLUSTER', 'COUNTKEYSINSLOT', String(keySlot(k)))).toBe(0)
    }
  }
  for (const k of keys.flat()) expect(await redis.get(k)).toBe(`val-${k}`)
  for (const k of keys.flat()) expect(await call(gw.base('c'), READ_TOKEN, ['GET', k])).toEqual({ status: 200, json: { result: `val-${k}` } })

  // Hash tags: only {user:1} is hashed.
  const a = `{user:1}:a:${RUN}`
  const b = `{user:1}:b:${RUN}`
  expect(keySlot(a)).toBe(keySlot('user:1'))
  expect(keySlot(b)).toBe(keySlot('user:1'))
  const tagOwner = cluster.slotOwner(keySlot('user:1'))
  expect(Number(await node(tagOwner).call('CLUSTER', 'KEYSLOT', a))).toBe(keySlot('user:1'))
  expect(await redis.set(a, 'A')).toBe('OK')
  expect(await redis.set(b, 'B')).toBe('OK')
  expect(await node(tagOwner).mget(a, b)).toEqual(['A', 'B'])
  // One slot: a plain multi-key command works too.
  expect(await call(gw.base('c'), WRITE_TOKEN, ['MGET', a, b])).toEqual({ status: 200, json: { result: ['A', 'B'] } })
  expect(await call(gw.base('c'), WRITE_TOKEN, ['RENAME', a, `{user:1}:c:${RUN}`])).toEqual({ status: 200, json: { result: 'OK' } })
  expect(await node(tagOwner).get(`{user:1}:c:${RUN}`)).toBe('A')
})

test('4. multi-key commands split by slot: MGET, MSET, DEL, UNLINK, EXISTS, TOUCH; MSETNX is CROSSSLOT', async () => {
  const url = gw.base('c')
  const [s0, s1, s2] = keysOn(`t4:${RUN}:`, 3)
  const [a0, b0, c0] = s0!
  const [a1, b1, c1] = s1!
  const [a2, b2, c2] = s2!
  const missing = `t4:${RUN}:missing`

  // MSET across the three shards.
  expect(await call(url, WRITE_TOKEN, ['MSET', a0!, 'A0', a1!, 'A1', a2!, 'A2', b0!, 'B0', b1!, 'B1', b2!, 'B2'])).toEqual({ status: 200, json: { result: 'OK' } })
  for (const [k, v] of [[a0, 'A0'], [a1, 'A1'], [a2, 'A2'], [b0, 'B0'], [b1, 'B1'], [b2, 'B2']] as const) {
    expect(await owner(k!).get(k!)).toBe(v)
    expect(await call(url, READ_TOKEN, ['GET', k!])).toEqual({ status: 200, json: { result: v } })
  }

  // MGET: values in request order (a repeated key included), null for missing keys.
  expect(await call(url, READ_TOKEN, ['MGET', a2!, missing, a0!, b1!, c0!, a1!, a2!, b2!])).toEqual({
    status: 200,
    json: { result: ['A2', null, 'A0', 'B1', null, 'A1', 'A2', 'B2'] },
  })
  expect(await sdk('c').mget(a0!, a1!, a2!, missing)).toEqual(['A0', 'A1', 'A2', null])

  // EXISTS counts a repeated key each time, as Redis does; TOUCH counts existing keys.
  expect(await call(url, READ_TOKEN, ['EXISTS', a0!, a1!, a2!, missing, a0!, c1!])).toEqual({ status: 200, json: { result: 4 } })
  expect(await call(url, WRITE_TOKEN, ['TOUCH', a0!, b1!, a2!, missing, c2!])).toEqual({ status: 200, json: { result: 3 } })
  // DEL / UNLINK: the deleted counts summed.
  expect(await call(url, WRITE_TOKEN, ['DEL', a0!, a1!, missing, c2!])).toEqual({ status: 200, json: { result: 2 } })
  expect(await owner(a0!).exists(a0!)).toBe(0)
  expect(await owner(a1!).exists(a1!)).toBe(0)
  expect(await call(url, WRITE_TOKEN, ['UNLINK', a2!, b0!, b1!, missing])).toEqual({ status: 200, json: { result: 3 } })
  for (const k of [a2!, b0!, b1!]) expect(await owner(k).exists(k)).toBe(0)
  expect(await owner(b2!).get(b2!)).toBe('B2')
  expect(await sdk('c').del(b2!, c0!, missing)).toBe(1)

  // MSETNX cannot be split (all or nothing): CROSSSLOT with the hash-tag hint; nothing written.
  const r = await call(url, WRITE_TOKEN, ['MSETNX', c0!, 'x', c1!, 'y'])
  expect(r.status).toBe(400)
  expect(r.json.error).toMatch(/^CROSSSLOT Keys in request don't hash to the same slot/)
  expect(r.json.error).toMatch(/hash tag/)
  expect(await owner(c0!).exists(c0!)).toBe(0)
  expect(await owner(c1!).exists(c1!)).toBe(0)
  // In one slot it runs.
  expect(await call(url, WRITE_TOKEN, ['MSETNX', `{t4${RUN}}:x`, '1', `{t4${RUN}}:y`, '2'])).toEqual({ status: 200, json: { result: 1 } })
  expect(await owner(`{t4${RUN}}:x`).mget(`{t4${RUN}}:x`, `{t4${RUN}}:y`)).toEqual(['1', '2'])
})

test('5. a 100-command pipeline over every shard: answers in request order, each correct', async () => {
  const url = gw.base('c')
  const keys = keysOn(`t5:${RUN}:`, 6).flat() // 18 keys, 6 per shard
  const counters = keysOn(`t5:${RUN}:n:`, 1).flat()
  const missing = `t5:${RUN}:missing`
  const model = new Map<string, string>()
  const commands: string[][] = []
  const expected: unknown[] = []
  const add = (cmd: string[], result: unknown): void => {
    commands.push(cmd)
    expected.push({ result })
  }
  for (let i = 0; commands.length < 100; i++) {
    const k = keys[i % keys.length]!
    const k2 = keys[(i * 7 + 3) % keys.length]!
    const k3 = keys[(i * 5 + 11) % keys.length]!
    switch (i % 8) {
      case 0:
      case 4:
        model.set(k, `p${i}`)
        add(['SET', k, `p${i}`], 'OK')
        break
      case 1:
        add(['GET', k2], model.get(k2) ?? null)
        break
      case 2:
        add(['PING'], 'PONG')
        break
      case 3:
        add(['ECHO', `echo ${i}`], `echo ${i}`)
        break
      case 5: {
        // Cross-slot MGET: split inside the pipeline.
        add(['MGET', k, k2, missing, k3], [model.get(k) ?? null, model.get(k2) ?? null, null, model.get(k3) ?? null])
        break
      }
      case 6: {
        const n = counters[i % 3]!
        const v = Number(model.get(n) ?? 0) + 1
        model.set(n, String(v))
        add(['INCR', n], v)
        break
      }
      case 7:
        add(['EXISTS', k, k2, missing, k3], [k, k2, k3].filter((x) => model.has(x)).length)
        break
    }
  }
  expect(commands).toHaveLength(100)
  // Every shard is used, and the MGETs really span slots.
  expect(new Set(commands.flatMap((c) => c.slice(1).filter((a) => a.startsWith('t5:')).map(shardOf)))).toEqual(new Set([0, 1, 2]))

  const before = await metrics()
  const r = await call(`${url}/pipeline`, WRITE_TOKEN, commands)
  expect(r.status).toBe(200)
  expect(r.json).toEqual(expected)
  // What the nodes hold is the model.
  for (const [k, v] of model) expect(await owner(k).get(k)).toBe(v)

  // The request counted as a success, nothing failed or was redirected on the way.
  await waitFor(async () => {
    const after = await metrics()
    const ok = (p: string) => metric(p, 'redis_gateway_requests_total', { redis_instance: 'c', class: 'pipeline', outcome: 'success', code: 'OK' })
    const failed = (p: string) =>
      metric(p, 'redis_gateway_requests_total', { redis_instance: 'c', class: 'pipeline', outcome: 'server_error' }) +
      metric(p, 'redis_gateway_requests_total', { redis_instance: 'c', class: 'pipeline', outcome: 'client_error' })
    expect(ok(after) - ok(before)).toBe(1)
    expect(failed(after) - failed(before)).toBe(0)
    expect(metric(after, 'redis_gateway_faults_total') - metric(before, 'redis_gateway_faults_total')).toBe(0)
    expect(metric(after, 'redis_gateway_cluster_redirects_total', { redis_instance: 'c' }) - metric(before, 'redis_gateway_cluster_redirects_total', { redis_instance: 'c' })).toBe(0)
  })

  // The SDK's pipeline too.
  const p = sdk('c').pipeline()
  for (const k of keys.slice(0, 6)) p.get(k)
  p.mset({ [keys[0]!]: 'm0', [keys[7]!]: 'm7', [keys[14]!]: 'm14' })
  p.mget(keys[0]!, keys[7]!, keys[14]!, missing)
  expect(await p.exec()).toEqual([...keys.slice(0, 6).map((k) => model.get(k) ?? null), 'OK', ['m0', 'm7', 'm14', null]])
})

test('6. transactions: one slot runs as MULTI/EXEC; across slots EXECABORT CROSSSLOT and nothing written', async () => {
  const url = gw.base('c')
  const tag = `{tx${RUN}}`
  const tagOwner = cluster.slotOwner(keySlot(tag))
  const before = await commandStats(tagOwner)
  const r = await call(`${url}/multi-exec`, WRITE_TOKEN, [
    ['SET', `${tag}:a`, '1'],
    ['INCR', `${tag}:a`],
    ['PING'],
    ['SET', `${tag}:b`, 'x'],
    ['GET', `${tag}:b`],
    ['MGET', `${tag}:a`, `${tag}:b`],
  ])
  expect(r).toEqual({ status: 200, json: [{ result: 'OK' }, { result: 2 }, { result: 'PONG' }, { result: 'OK' }, { result: 'x' }, { result: ['2', 'x'] }] })
  expect(await node(tagOwner).mget(`${tag}:a`, `${tag}:b`)).toEqual(['2', 'x'])
  // It ran as one MULTI/EXEC on the slot's primary.
  const after = await commandStats(tagOwner)
  expect((after['multi'] ?? 0) - (before['multi'] ?? 0)).toBe(1)
  expect((after['exec'] ?? 0) - (before['exec'] ?? 0)).toBe(1)

  // The SDK's multi().
  const tx = sdk('c').multi()
  tx.set(`${tag}:s`, 'one')
  tx.append(`${tag}:s`, '+two')
  tx.get(`${tag}:s`)
  expect(await tx.exec()).toEqual(['OK', 7, 'one+two'])

  // Keys in two slots: refused whole with Redis's EXECABORT + CROSSSLOT and the hash-tag hint.
  const [x, y] = keysOn(`t6:${RUN}:`, 1).map((l) => l[0]!)
  const statsBefore = await Promise.all(primaries.map(commandStats))
  const bad = await call(`${url}/multi-exec`, WRITE_TOKEN, [
    ['SET', x!, '1'],
    ['PING'],
    ['SET', y!, '2'],
  ])
  expect(bad.status).toBe(400)
  expect(Array.isArray(bad.json)).toBe(false)
  expect(bad.json.error).toMatch(/^EXECABORT Transaction discarded because of previous errors: CROSSSLOT /)
  expect(bad.json.error).toMatch(/hash tag/)
  expect(await owner(x!).exists(x!)).toBe(0)
  expect(await owner(y!).exists(y!)).toBe(0)
  // Nothing was even sent.
  const statsAfter = await Promise.all(primaries.map(commandStats))
  for (let i = 0; i < 3; i++) {
    expect(statsAfter[i]!['set'] ?? 0).toBe(statsBefore[i]!['set'] ?? 0)
    expect(statsAfter[i]!['multi'] ?? 0).toBe(statsBefore[i]!['multi'] ?? 0)
  }
})

test('7. scripts: EVAL in one slot; CROSSSLOT across two; SCRIPT LOAD on every primary, EVALSHA on every shard', async () => {
  const url = gw.base('c')
  const tag = `{ev${RUN}}`
  const script = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]); return redis.call('MGET', KEYS[1], KEYS[2])"
  expect(await call(url, WRITE_TOKEN, ['EVAL', script, '2', `${tag}:a`, `${tag}:b`, 'va', 'vb'])).toEqual({ status: 200, json: { result: ['va', 'vb'] } })
  expect(await owner(tag).mget(`${tag}:a`, `${tag}:b`)).toEqual(['va', 'vb'])

  const [x, y] = keysOn(`t7:${RUN}:`, 1).map((l) => l[0]!)
  const cross = await call(url, WRITE_TOKEN, ['EVAL', script, '2', x!, y!, '1', '2'])
  expect(cross.status).toBe(400)
  expect(cross.json.error).toMatch(/^CROSSSLOT /)
  expect(await owner(x!).exists(x!)).toBe(0)
  expect(await owner(y!).exists(y!)).toBe(0)

  // SCRIPT LOAD fans out to every primary.
  const body = `-- ${RUN}\nredis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1]) .. '!'`
  const sha = createHash('sha1').update(body).digest('hex')
  for (const p of primaries) expect(await node(p).script('EXISTS', sha)).toEqual([0])
  expect(await call(url, WRITE_TOKEN, ['SCRIPT', 'LOAD', body])).toEqual({ status: 200, json: { result: sha } })
  for (const p of primaries) expect(await node(p).script('EXISTS', sha)).toEqual([1])
  expect(await call(url, READ_TOKEN, ['SCRIPT', 'EXISTS', sha, '0'.repeat(40)])).toEqual({ status: 200, json: { result: [1, 0] } })
  const keys = keysOn(`t7:${RUN}:sha:`, 1).map((l) => l[0]!)
  for (const k of keys) {
    expect(await call(url, WRITE_TOKEN, ['EVALSHA', sha, '1', k, `v-${k}`])).toEqual({ status: 200, json: { result: `v-${k}!` } })
    expect(await owner(k).get(k)).toBe(`v-${k}`)
  }
  // The SDK's evalsha too.
  expect(await sdk('c').evalsha(sha, [keys[2]!], ['sdk'])).toBe('sdk!')
})

test('9. pub/sub: an SSE subscriber gets what is published through the gateway and on every node, whatever node it landed on; the SDK subscribe too', async () => {
  // One channel per shard (by its slot), so the subscriptions land on different nodes.
  const channels = keysOn(`t9:${RUN}:ch:`, 1).map((l) => l[0]!)
  const all = [...primaries, ...replicas]
  const numsub = async (ch: string): Promise<number[]> =>
    Promise.all(all.map(async (n) => Number(((await node(n).call('PUBSUB', 'NUMSUB', ch)) as [string, number])[1])))

  for (const chan of channels) {
    const ac = new AbortController()
    const res = await fetch(`${gw.base('c')}/subscribe/${encodeURIComponent(chan)}?_token=${READ_TOKEN}`, {
      headers: { accept: 'text/event-stream' },
      signal: ac.signal,
    })
    try {
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
      const lines = readEventLines(res.body!, ac.signal)
      await waitFor(() => lines.events.length >= 1, { message: `subscribe confirmation on ${chan}` })
      expect(lines.events).toEqual([`subscribe,${chan},1`])
      // Exactly one node holds the subscription.
      const subs = await numsub(chan)
      expect(subs.reduce((a, b) => a + b, 0)).toBe(1)

      // Through the gateway (PUBLISH goes to any node; its count is that node's subscribers).
      const r = await call(gw.base('c'), WRITE_TOKEN, ['PUBLISH', chan, 'via gateway'])
      expect(r.status).toBe(200)
      expect([0, 1]).toContain(r.json.result)
      // On every node directly: the cluster bus carries each to the subscribed node.
      let receivers = 0
      for (const [i, n] of all.entries()) receivers += await node(n).publish(chan, `from node ${i}`)
      expect(receivers).toBe(1)
      // Messages from different nodes take different paths (local, or over the cluster bus): their
      // order is not defined, so compare as sets; each arrives exactly once.
      const want = [`message,${chan},via gateway`, ...all.map((_, i) => `message,${chan},from node ${i}`)]
      await waitFor(() => lines.events.length >= 1 + want.length, { message: `messages on ${chan}` })
      expect(lines.events[0]).toBe(`subscribe,${chan},1`)
      expect(lines.events.slice(1).sort()).toEqual(want.sort())
      expect(lines.failed).toBe(false)
    } finally {
      ac.abort()
    }
    await waitFor(async () => (await numsub(chan)).every((n) => n === 0), { message: `unsubscribed from ${chan}` })
  }

  // The SDK's subscribe (its SSE client) and publish.
  const chan = channels[1]!
  const sub = sdk('c').subscribe([chan])
  try {
    const got: unknown[] = []
    const acks: number[] = []
    const errs: unknown[] = []
    sub.on('message', (m) => got.push(m))
    sub.on('subscribe', (n) => acks.push(n as number))
    sub.on('error', (e) => errs.push(e))
    await waitFor(() => acks.length === 1, { message: 'SDK subscribe confirmation' })
    expect(acks).toEqual([1])
    const publisher = sdk('c')
    expect([0, 1]).toContain(await publisher.publish(chan, 'hello from the SDK'))
    expect([0, 1]).toContain(await publisher.publish(chan, { kind: 'json', n: 1 }))
    await node(primaries[2]!).publish(chan, 'direct')
    await waitFor(() => got.length === 3, { message: 'three SDK messages' })
    expect(got).toEqual([
      { channel: chan, message: 'hello from the SDK' },
      { channel: chan, message: { kind: 'json', n: 1 } },
      { channel: chan, message: 'direct' },
    ])
    expect(errs).toEqual([])
  } finally {
    await sub.unsubscribe()
  }
  await waitFor(async () => (await numsub(chan)).every((n) => n === 0), { message: 'SDK unsubscribed' })
})

test('10. read-your-writes: rgc1 tokens, one entry per shard written; a read with the token sees the write', async () => {
  const url = gw.base('crep')
  const [k0, k1, k2] = keysOn(`t10:${RUN}:`, 1).map((l) => l[0]!)
  const replIds = await Promise.all(primaries.map(async (p) => parseInfo(await node(p).info('replication'))['master_replid']!.slice(0, 16)))

  // A write: a cluster token naming the shard written.
  const w = await post(url, ['SET', k0!, 'first'], { token: WRITE_TOKEN })
  expect(w.json).toEqual({ result: 'OK' })
  const tok = w.headers.get('upstash-sync-token')!
  expect(tok).toMatch(/^rgc1:crep:[0-9a-f]{16}\.\d+:[0-9a-z]+$/)
  const [, , entries] = tok.split(':')
  expect(entries!.split('.')[0]).toBe(replIds[0])
  expect(Number(entries!.split('.')[1])).toBeGreaterThan(0)

  // A read with that token sees the write, even while the shard's replica is not applying anything.
  const rep = node(replicas[0]!)
  expect(await rep.call('CLIENT', 'PAUSE', '4000', 'WRITE')).toBe('OK')
  try {
    const w2 = await post(url, ['SET', k0!, 'second'], { token: WRITE_TOKEN, headers: { 'upstash-sync-token': tok } })
    expect(w2.json).toEqual({ result: 'OK' })
    const tok2 = w2.headers.get('upstash-sync-token')!
    expect(tok2).toMatch(/^rgc1:crep:/)
    for (let i = 0; i < 5; i++) {
      const r = await post(url, ['GET', k0!], { token: READ_TOKEN, headers: { 'upstash-sync-token': tok2 } })
      expect(r.json).toEqual({ result: 'second' })
      // The token does not go backwards.
      expect(r.headers.get('upstash-sync-token')!.split(':')[2]).toBe(tok2.split(':')[2])
    }
  } finally {
    await rep.call('CLIENT', 'UNPAUSE')
  }

  // One pipeline writing on two shards: two entries, one per shard's primary.
  const p = await post(`${url}/pipeline`, [['SET', k1!, 'one'], ['GET', k1!], ['SET', k2!, 'two'], ['PING']], { token: WRITE_TOKEN })
  expect(p.json).toEqual([{ result: 'OK' }, { result: 'one' }, { result: 'OK' }, { result: 'PONG' }])
  const ptok = p.headers.get('upstash-sync-token')!
  expect(ptok).toMatch(/^rgc1:crep:[^:]+:[0-9a-z]+$/)
  const list = ptok.split(':')[2]!.split(',')
  expect(list).toHaveLength(2)
  expect(new Set(list.map((e) => e.split('.')[0]))).toEqual(new Set([replIds[1], replIds[2]]))
  for (const k of [k1!, k2!]) {
    expect(await post(url, ['GET', k], { token: READ_TOKEN, headers: { 'upstash-sync-token': ptok } }).then((r) => r.json)).toEqual({
      result: k === k1 ? 'one' : 'two',
    })
  }

  // prefer-replica: cluster tokens as well; the SDK (readYourWrites by default) reads its writes.
  const pw = await post(gw.base('cprefer'), ['SET', k2!, 'pref'], { token: WRITE_TOKEN })
  expect(pw.json).toEqual({ result: 'OK' })
  expect(pw.headers.get('upstash-sync-token')).toMatch(new RegExp(`^rgc1:cprefer:${replIds[2]}\\.\\d+:[0-9a-z]+$`))
  const s = sdk('cprefer')
  for (let i = 0; i < 10; i++) {
    expect(await s.set(k1!, `sdk-${i}`)).toBe('OK')
    expect(await s.get(k1!)).toBe(`sdk-${i}`)
  }
})

test('11. read-policy replica: GETs are served by the replicas (READONLY), with the replicated values', async () => {
  const url = gw.base('crep')
  const keys = keysOn(`t11:${RUN}:`, 5)
  for (const k of keys.flat()) expect(await owner(k).set(k, `r-${k}`)).toBe('OK')
  await replicated()
  // The gateway knows every node's role (health checks) before the reads.
  await waitFor(async () => {
    const view = (await (await fetch(`${gw.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { instances: { name: string; endpoints: { id: string; role: string; up: boolean }[] }[] }
    const eps = view.instances.find((i) => i.name === 'crep')!.endpoints
    for (const r of replicas) expect(eps.find((e) => e.id === r.address)).toMatchObject({ role: 'replica', up: true })
  })

  const repBefore = await Promise.all(replicas.map(commandStats))
  const priBefore = await Promise.all(primaries.map(commandStats))
  const replies = []
  for (const k of keys.flat()) replies.push(await call(url, READ_TOKEN, ['GET', k]))
  const s = sdk('crep', READ_TOKEN)
  for (const k of keys.flat()) replies.push(await s.get(k).then((v) => ({ status: 200, json: { result: v } }), (e: Error) => ({ status: 400, json: { error: e.message } })))
  const repAfter = await Promise.all(replicas.map(commandStats))
  const priAfter = await Promise.all(primaries.map(commandStats))
  const delta = (a: Record<string, number>[], b: Record<string, number>[], name: string) => a.map((x, i) => (x[name] ?? 0) - (b[i]![name] ?? 0))
  const replicaGets = delta(repAfter, repBefore, 'get')
  const primaryGets = delta(priAfter, priBefore, 'get')
  expect({
    replies,
    // 5 keys per shard, each read twice: none refused on a replica (READONLY took).
    replicaRejectedGets: delta(repAfter, repBefore, 'get!rejected'),
    served: replicaGets.map((n, i) => n + primaryGets[i]!),
  }).toEqual({
    replies: [...keys.flat(), ...keys.flat()].map((k) => ({ status: 200, json: { result: `r-${k}` } })),
    replicaRejectedGets: [0, 0, 0],
    served: [10, 10, 10],
  })
  // The plain reads carry no token: each shard's replica served all 5. The SDK's reads send back the
  // token of its previous reply (the primary's position then, as for a plain instance), so a read
  // may go to the primary until the gateway's health checks see the replica at that offset.
  for (const n of replicaGets) expect(n).toBeGreaterThanOrEqual(5)
})

/** Moves `slot` from `from` to `to` the way redis-cli --cluster reshard does, one key at a time. */
async function migrating(slot: number, from: ClusterNode, to: ClusterNode): Promise<{ move(keys: string[]): Promise<void>; finish(): Promise<void> }> {
  await node(to).call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', from.id)
  await node(from).call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', to.id)
  return {
    move: async (keys) => void (await node(from).call('MIGRATE', to.host, String(to.port), '', '0', '5000', 'KEYS', ...keys)),
    finish: async () => {
      for (const p of primaries) await node(p).call('CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id)
    },
  }
}

test('12. a slot migrating: ASK is followed to the importing node; TRYAGAIN waits until the migration ends; MOVED then; no error', async () => {
  const url = gw.base('c')
  const a = `{mig${RUN}}:a`
  const b = `{mig${RUN}}:b`
  const slot = keySlot(a)
  const source = cluster.slotOwner(slot)
  const target = primaries.find((p) => p.id !== source.id)!
  await node(source).mset(a, 'va', b, 'vb')
  const redirects = async (kind: string): Promise<number> => metric(await metrics(), 'redis_gateway_cluster_redirects_total', { redis_instance: 'c', kind })
  const before = { ask: await redirects('ask'), tryagain: await redirects('tryagain'), moved: await redirects('moved') }

  const m = await migrating(slot, source, target)
  await m.move([a])
  // `a` is on the importing node: the source answers ASK, the gateway sends ASKING + GET there.
  expect(await call(url, READ_TOKEN, ['GET', a])).toMatchObject({ status: 200, json: { result: 'va' } })
  // `b` is still on the source: served there.
  expect(await call(url, READ_TOKEN, ['GET', b])).toMatchObject({ status: 200, json: { result: 'vb' } })
  // Both in one command while they are split between the nodes: TRYAGAIN until the migration ends.
  const mget = call(url, READ_TOKEN, ['MGET', a, b])
  await new Promise((r) => setTimeout(r, 300))
  await m.move([b])
  await m.finish()
  expect(await mget).toMatchObject({ status: 200, json: { result: ['va', 'vb'] } })
  // The map follows (MOVED, or a refresh): a write lands on the new owner.
  expect(await call(url, WRITE_TOKEN, ['SET', a, 'va2'])).toMatchObject({ status: 200, json: { result: 'OK' } })
  expect(await node(target).get(a)).toBe('va2')
  const after = { ask: await redirects('ask'), tryagain: await redirects('tryagain'), moved: await redirects('moved') }
  expect(after.ask - before.ask).toBeGreaterThanOrEqual(1)
  expect(after.tryagain - before.tryagain).toBeGreaterThanOrEqual(1)

  // Back where it was, for the tests after this one.
  const back = await migrating(slot, target, source)
  await back.move([a, b])
  await back.finish()
  await waitFor(async () => (await call(url, READ_TOKEN, ['GET', a])).json.result === 'va2')
})

test('8. keyspace-wide: KEYS, DBSIZE, SCAN over every shard, RANDOMKEY, FLUSHALL (last)', async () => {
  const url = gw.base('c')
  // SCAN: a fresh prefix, keys on every shard, walked exactly once.
  const prefix = `t8:${RUN}:scan:`
  const written = keysOn(prefix, 20).flat()
  for (const k of written) await owner(k).set(k, '1')
  const seen: string[] = []
  let cursor = '0'
  let calls = 0
  do {
    const r = await call(url, READ_TOKEN, ['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '7'])
    expect(r.status).toBe(200)
    const [next, batch] = r.json.result as [string, string[]]
    expect(typeof next).toBe('string')
    seen.push(...batch)
    cursor = next
    expect(++calls).toBeLessThan(500)
  } while (cursor !== '0')
  expect(calls).toBeGreaterThan(3)
  expect(seen).toHaveLength(written.length)
  expect(new Set(seen)).toEqual(new Set(written))

  // KEYS (admin only): the union of every primary's keys.
  const direct = (await Promise.all(primaries.map((p) => node(p).keys('*')))).flat()
  expect(direct.length).toBeGreaterThan(60)
  expect(new Set(direct.map(shardOf))).toEqual(new Set([0, 1, 2]))
  expect((await call(url, WRITE_TOKEN, ['KEYS', '*'])).status).toBe(403)
  const keys = await call(url, ADMIN_TOKEN, ['KEYS', '*'])
  expect(keys.status).toBe(200)
  expect((keys.json.result as string[]).slice().sort()).toEqual(direct.slice().sort())
  expect(((await call(url, ADMIN_TOKEN, ['KEYS', `${prefix}*`])).json.result as string[]).slice().sort()).toEqual(written.slice().sort())

  // DBSIZE: the sum over the primaries.
  const sizes = await Promise.all(primaries.map((p) => node(p).dbsize()))
  expect(await call(url, READ_TOKEN, ['DBSIZE'])).toEqual({ status: 200, json: { result: sizes.reduce((a, b) => a + b, 0) } })
  expect(await sdk('c').dbsize()).toBe(direct.length)

  // RANDOMKEY: an existing key (of any shard).
  const shardsSeen = new Set<number>()
  for (let i = 0; i < 30; i++) {
    const r = await call(url, READ_TOKEN, ['RANDOMKEY'])
    expect(r.status).toBe(200)
    const k = r.json.result as string
    expect(typeof k).toBe('string')
    expect(await owner(k).exists(k)).toBe(1)
    shardsSeen.add(shardOf(k))
  }
  expect(shardsSeen.size).toBeGreaterThan(1)

  // FLUSHALL (admin only) empties every shard.
  expect((await call(url, WRITE_TOKEN, ['FLUSHALL'])).status).toBe(403)
  expect(await call(url, ADMIN_TOKEN, ['FLUSHALL'])).toEqual({ status: 200, json: { result: 'OK' } })
  for (const p of primaries) expect(await node(p).dbsize()).toBe(0)
  expect(await call(url, READ_TOKEN, ['DBSIZE'])).toEqual({ status: 200, json: { result: 0 } })
  expect(await call(url, READ_TOKEN, ['RANDOMKEY'])).toEqual({ status: 200, json: { result: null } })
  expect(await call(url, ADMIN_TOKEN, ['KEYS', '*'])).toEqual({ status: 200, json: { result: [] } })
  await replicated()
  for (const r of replicas) expect(await node(r).dbsize()).toBe(0)
})
