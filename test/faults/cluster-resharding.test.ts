// Live resharding and scaling out of a Redis Cluster under load, through the same gateway all along.
//
// 1. 1000 slots move from one primary to another (`redis-cli --cluster reshard`, keys migrated
//    with MIGRATE while the slots are MIGRATING/IMPORTING) while ten closed-loop clients run SET,
//    GET, MGET across slots and pipelines (POST /pipeline with SET, GET, MGET, INCR) on keys in the
//    moving slots (and a few outside). The moving slots carry 20 more keys each, so the migration
//    takes a while. The gateway must follow ASK (key already on the importing node) and MOVED (slot
//    gone) without a single failed request: every reply 200, every item without error, every value
//    the one its client wrote last.
// 2. A fifth, empty primary joins (`--cluster add-node`) and `--cluster rebalance
//    --cluster-use-empty-masters` gives it a share of the slots under light load: the gateway uses
//    it without a restart (a key whose slot moved there is written and read through the gateway,
//    the node is in the routes view and counted by redis_gateway_cluster_nodes). Static discovery
//    lists only the original nodes, so the new one is accepted through
//    redis.allowUndiscoveredClusterNodes.
// Timings are printed, never asserted.

import { performance } from 'node:perf_hooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN, startGateway, type TestGateway } from '../helpers/gateway.js'
import { addNode, keySlot, rebalance, reshard, slotsToMove, startCluster, SLOT_COUNT, type ClusterNode, type RedisCluster } from '../helpers/redis-cluster.js'
import { post } from '../helpers/rest.js'
import { CLUSTER_TOPOLOGY_DEFAULTS } from '../../src/upstream/cluster-topology.js'
import { waitFor } from '../helpers/wait.js'
import { fmt, gauge, metric, percentile, scrape, sleep } from './fault-env.js'

const MOVE_SLOTS = 1_000
const FILL_PER_SLOT = 20
/** Fill keys in the slots the load uses: their migration takes long enough for the load to meet it (ASK). */
const HEAVY_FILL_PER_SLOT = 1_000
const WORKERS = 10
/** Keys per worker in the moving slots, each in a slot of its own. */
const MOVING_KEYS = 6

let cluster: RedisCluster
let gw: TestGateway

beforeAll(async () => {
  cluster = await startCluster({ shards: 3, replicasPerShard: 1, nodeTimeoutMs: 2_000 })
  gw = await startGateway({
    instances: [{ name: 'c', endpoints: [...cluster.seeds] }],
    // Only the seeds are discovered: the node added in the second test is accepted by this opt-in.
    extra: { redis: { commandTimeout: '2s', connectTimeout: '1s', allowUndiscoveredClusterNodes: true } },
  })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

/** A hash tag per slot: `{tag}` hashes to the slot, so `{tag}:anything` lands there. */
const TAGS: string[] = (() => {
  const tags = new Array<string>(SLOT_COUNT)
  let missing = SLOT_COUNT
  for (let i = 0; missing > 0; i++) {
    const t = `t${i.toString(36)}`
    const s = keySlot(t)
    if (tags[s] === undefined) {
      tags[s] = t
      missing--
    }
  }
  return tags
})()
const keyIn = (slot: number, name: string): string => `{${TAGS[slot]!}}:${name}`

interface Outcome {
  readonly what: string
  readonly status: number
  /** Why it counts as failed (status, an item's error, a wrong value); null when it did not. */
  readonly failure: string | null
  readonly ms: number
}

const slotMetric = async (): Promise<Record<string, number>> => {
  const text = await scrape(gw.opsUrl)
  return Object.fromEntries(['moved', 'ask', 'tryagain', 'clusterdown'].map((kind) => [kind, metric(text, 'redis_gateway_cluster_redirects_total', { redis_instance: 'c', kind })]))
}

/** POSTs and checks the reply: `check` returns why the body is wrong, or null. */
async function request(url: string, body: unknown, what: string, check: (json: unknown) => string | null): Promise<Outcome> {
  const started = performance.now()
  let status = 0
  let failure: string | null
  try {
    const r = await post(url, body, { timeoutMs: 10_000 })
    status = r.status
    failure = r.status !== 200 ? `HTTP ${r.status}: ${r.text.slice(0, 200)}` : check(r.json)
  } catch (err) {
    failure = `client: ${err instanceof Error ? err.message : String(err)}`
  }
  return { what, status, failure, ms: performance.now() - started }
}

const same = (got: unknown, want: unknown): boolean => JSON.stringify(got) === JSON.stringify(want)

describe('a cluster resharded and scaled out under load', () => {
  it('moves 1000 slots under SET, GET, MGET and pipeline load without a failed request', async () => {
    const base = gw.base('c')
    await waitFor(async () => (await post(base, ['SET', 'rs:warm', '1'])).status === 200, { message: 'the gateway to serve the cluster' })
    await cluster.refresh()
    const [from, to, other] = cluster.shards().map((s) => s.primary) as [ClusterNode, ClusterNode, ClusterNode]
    const moving = slotsToMove(from, MOVE_SLOTS)
    expect(moving).toHaveLength(MOVE_SLOTS)
    const movingSet = new Set(moving)

    // Worker w: MOVING_KEYS keys in distinct moving slots spread over the range, one in a slot of
    // the source that stays, one on the third shard; and a counter in a moving slot.
    const stride = Math.floor(MOVE_SLOTS / (WORKERS * MOVING_KEYS))
    const stays = from.slots.flatMap(([a, b]) => (b > moving.at(-1)! ? [Math.max(a, moving.at(-1)! + 1)] : []))[0]!
    const workers = Array.from({ length: WORKERS }, (_, w) => {
      const keys = Array.from({ length: MOVING_KEYS }, (_, j) => keyIn(moving[(w * MOVING_KEYS + j) * stride]!, `w${w}:${j}`))
      keys.push(keyIn(stays + w, `w${w}:stays`), keyIn(other.slots[0]![0] + w, `w${w}:other`))
      return { w, keys, counter: keyIn(moving[(w * MOVING_KEYS) * stride + 1]!, `w${w}:counter`), values: new Map<string, string | null>(), count: 0 as number | null, seq: 0 }
    })
    for (const wk of workers) {
      const slots = new Set(wk.keys.map(keySlot))
      expect(slots.size).toBe(wk.keys.length) // MGET across slots, one key per slot
    }

    // Bulk keys in every moving slot, written on the source directly, so that MIGRATE has work;
    // many more in the slots the load uses, so the load meets them half migrated.
    const heavy = new Set(workers.flatMap((wk) => [...wk.keys.slice(0, MOVING_KEYS), wk.counter].map(keySlot)))
    const src = cluster.client(from)
    const fill = src.pipeline()
    let filled = 0
    for (const slot of moving) {
      const n = heavy.has(slot) ? HEAVY_FILL_PER_SLOT : FILL_PER_SLOT
      for (let first = 0; first < n; first += 100) {
        const kv: string[] = []
        for (let i = first; i < Math.min(n, first + 100); i++) kv.push(keyIn(slot, `fill:${i}`), `fill-${slot}-${i}-${'x'.repeat(64)}`)
        fill.mset(...kv)
      }
      filled += n
    }
    await fill.exec()

    const outcomes: Outcome[] = []
    let stopped = false
    const run = async (wk: (typeof workers)[number]): Promise<void> => {
      const pipeUrl = `${base}/pipeline`
      while (!stopped) {
        const step = wk.seq++
        const key = wk.keys[step % wk.keys.length]!
        const value = `${wk.w}:${step}`
        let o: Outcome
        switch (step % 4) {
          case 0:
            o = await request(base, ['SET', key, value], 'SET', (j) => (same(j, { result: 'OK' }) ? null : `SET ${key} answered ${JSON.stringify(j)}`))
            wk.values.set(key, o.failure === null ? value : null)
            break
          case 1: {
            const want = wk.values.get(key)
            o = await request(base, ['GET', key], 'GET', (j) => (want === null || same(j, { result: want ?? null }) ? null : `GET ${key} answered ${JSON.stringify(j)}, expected ${want}`))
            break
          }
          case 2: {
            const want = wk.keys.map((k) => wk.values.get(k))
            o = await request(base, ['MGET', ...wk.keys], 'MGET', (j) => {
              const got = (j as { result?: unknown }).result
              if (!Array.isArray(got) || got.length !== want.length) return `MGET answered ${JSON.stringify(j)}`
              const bad = want.findIndex((v, i) => v !== null && got[i] !== (v ?? null))
              return bad === -1 ? null : `MGET ${wk.keys[bad]} read ${JSON.stringify(got[bad])}, expected ${want[bad]}`
            })
            break
          }
          default: {
            const k2 = wk.keys[(step + 3) % wk.keys.length]!
            const mkeys = [wk.keys[0]!, wk.keys[3]!, wk.keys[6]!, wk.keys[7]!]
            const want = mkeys.map((k) => (k === key ? value : wk.values.get(k)))
            const wantCount = wk.count === null ? null : wk.count + 1
            o = await request(pipeUrl, [['SET', key, value], ['GET', key], ['MGET', ...mkeys], ['INCR', wk.counter], ['GET', k2]], 'PIPELINE', (j) => {
              if (!Array.isArray(j) || j.length !== 5) return `pipeline answered ${JSON.stringify(j)}`
              const items = j as { result?: unknown; error?: string }[]
              const err = items.findIndex((it) => it.error !== undefined)
              if (err !== -1) return `pipeline item ${err + 1}: ${items[err]!.error}`
              if (items[0]!.result !== 'OK') return `pipeline SET answered ${JSON.stringify(items[0])}`
              if (items[1]!.result !== value) return `pipeline GET ${key} read ${JSON.stringify(items[1]!.result)}, expected ${value}`
              const got = items[2]!.result as unknown[]
              const bad = want.findIndex((v, i) => v !== null && got[i] !== (v ?? null))
              if (bad !== -1) return `pipeline MGET ${mkeys[bad]} read ${JSON.stringify(got[bad])}, expected ${want[bad]}`
              if (wantCount !== null && items[3]!.result !== wantCount) return `pipeline INCR ${wk.counter} answered ${JSON.stringify(items[3]!.result)}, expected ${wantCount}`
              const w2 = wk.values.get(k2)
              if (k2 !== key && w2 !== null && items[4]!.result !== (w2 ?? null)) return `pipeline GET ${k2} read ${JSON.stringify(items[4]!.result)}, expected ${w2}`
              return null
            })
            wk.values.set(key, o.failure === null ? value : null)
            // A failed pipeline may or may not have run its INCR.
            wk.count = o.failure === null ? wantCount : null
            break
          }
        }
        outcomes.push(o)
        if (o.failure !== null) await sleep(20)
      }
    }

    const redirectsBefore = await slotMetric()
    const loops = workers.map(run)
    let reshardMs = 0
    let duringReshard = 0
    try {
      await waitFor(() => outcomes.length >= 400, { timeoutMs: 20_000, message: '400 requests before the reshard' })
      const startedAt = outcomes.length
      const moved = await reshard(cluster, { from, to, slots: MOVE_SLOTS, timeoutMs: 45_000 })
      reshardMs = moved.ms
      duringReshard = outcomes.length - startedAt
      // And a while longer on the new layout.
      const after = outcomes.length
      await waitFor(() => outcomes.length >= after + 400, { timeoutMs: 20_000, message: '400 requests after the reshard' })
    } finally {
      stopped = true
      await Promise.all(loops)
    }
    const redirects = await slotMetric()
    const delta = Object.fromEntries(Object.entries(redirects).map(([k, v]) => [k, v - (redirectsBefore[k] ?? 0)]))

    const failed = outcomes.filter((o) => o.failure !== null)
    const byWhat = Object.fromEntries(['SET', 'GET', 'MGET', 'PIPELINE'].map((w) => [w, outcomes.filter((o) => o.what === w).length]))
    const ms = outcomes.map((o) => o.ms)
    console.log(
      `[faults/cluster-resharding] moved ${MOVE_SLOTS} slots (${moving[0]}-${moving.at(-1)}, ${filled} keys: ${FILL_PER_SLOT} per slot, ${HEAVY_FILL_PER_SLOT} in the ${heavy.size} the load uses) ${from.address} -> ${to.address} ` +
        `in ${fmt(reshardMs)} (redis-cli); ${outcomes.length} requests ${JSON.stringify(byWhat)}, ${duringReshard} during the reshard, ` +
        `${failed.length} failed; redirects followed ${JSON.stringify(delta)}; p99 ${fmt(percentile(ms, 0.99))}, max ${fmt(Math.max(...ms))}`,
    )
    for (const f of failed.slice(0, 10)) console.log(`[faults/cluster-resharding]   failed ${f.what} after ${fmt(f.ms)}: ${f.failure}`)

    // The load's keys were in the moving slots: they are on the target now.
    for (const wk of workers) {
      for (const k of wk.keys.slice(0, MOVING_KEYS)) expect(movingSet.has(keySlot(k)) && cluster.slotOwner(keySlot(k)).id).toBe(to.id)
    }
    expect(duringReshard).toBeGreaterThan(0)
    expect(failed.map((f) => `${f.what}: ${f.failure}`).slice(0, 10)).toEqual([])
    // The gateway did have to follow the slots (MOVED at least once per moved slot it used).
    expect(delta['moved']).toBeGreaterThan(0)

    // Every key has the value its worker wrote last, read through the gateway after the move.
    for (const wk of workers) {
      const want = wk.keys.map((k) => wk.values.get(k) ?? null)
      const r = await post(base, ['MGET', ...wk.keys])
      expect(r.status).toBe(200)
      expect((r.json as { result: unknown }).result).toEqual(want)
    }
    // The bulk keys moved with their slots.
    const dst = cluster.client(to)
    expect(await dst.call('CLUSTER', 'COUNTKEYSINSLOT', String(moving[0]))).toBeGreaterThanOrEqual(FILL_PER_SLOT)
    expect(await post(base, ['GET', keyIn(moving.at(-1)!, 'fill:0')])).toMatchObject({ status: 200, json: { result: `fill-${moving.at(-1)}-0-${'x'.repeat(64)}` } })
  }, 60_000)

  it('adds an empty primary, rebalances onto it under light load, and serves its slots without a restart', async () => {
    const base = gw.base('c')
    // The first test's bulk keys would only make the rebalance's MIGRATEs longer.
    await Promise.all(cluster.primaries().map((p) => cluster.client(p).flushall()))
    const nodesBefore = gauge(await scrape(gw.opsUrl), 'redis_gateway_cluster_nodes', { redis_instance: 'c' })
    const outcomes: Outcome[] = []
    let stopped = false
    // Light load: three clients writing and reading their own keys spread over all slots.
    const keys = Array.from({ length: 3 }, (_, c) => Array.from({ length: 40 }, (_, i) => `rb:${c}:${i}`))
    const light = keys.map(async (mine, c) => {
      const last = new Map<string, string>()
      for (let step = 0; !stopped; step++) {
        const key = mine[Math.floor(step / 2) % mine.length]!
        if (step % 2 === 0) {
          const value = `${c}:${step}`
          const o = await request(base, ['SET', key, value], 'SET', (j) => (same(j, { result: 'OK' }) ? null : `SET answered ${JSON.stringify(j)}`))
          if (o.failure === null) last.set(key, value)
          else last.delete(key)
          outcomes.push(o)
        } else {
          const want = last.get(key)
          outcomes.push(await request(base, ['GET', key], 'GET', (j) => (want === undefined || same(j, { result: want }) ? null : `GET ${key} answered ${JSON.stringify(j)}, expected ${want}`)))
        }
        await sleep(5)
      }
    })

    let added: ClusterNode
    let rebalanceMs = 0
    try {
      added = await addNode(cluster)
      const r = await rebalance(cluster, { useEmptyMasters: true, timeoutMs: 45_000 })
      rebalanceMs = r.ms
    } finally {
      stopped = true
      await Promise.all(light)
    }
    await cluster.refresh()
    expect(added.slots.length).toBeGreaterThan(0)
    const [a] = added.slots[0]!
    const key = keyIn(a, 'on-the-new-node')
    expect(cluster.slotOwner(keySlot(key)).id).toBe(added.id)

    // Served through the gateway (it learns the new map on the MOVED, at the latest).
    const w = await post(base, ['SET', key, 'fresh'])
    const rd = await post(base, ['GET', key])
    // Written on the new node itself, not somewhere else.
    const direct = await cluster.client(added).get(key)

    // The gateway sees the node: in the routes view as a shard's primary with all its slots (the
    // map is learned again on MOVED, at the latest by the periodic refresh), and in the node count.
    const owned = added.slots.reduce((n, [x, y]) => n + y - x + 1, 0)
    type Routes = { instances: { name: string; cluster: { slotsServed: number; shards: { primary: string | null; slotCount: number; endpoints: { id: string }[] }[] } | null }[] }
    const routesOf = async (): Promise<{ status: number; view: NonNullable<Routes['instances'][number]['cluster']> | null }> => {
      const res = await fetch(`${gw.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      const body = (await res.json()) as Routes
      return { status: res.status, view: body.instances.find((i) => i.name === 'c')?.cluster ?? null }
    }
    const converged = performance.now()
    let routes = await routesOf()
    try {
      await waitFor(
        async () => {
          routes = await routesOf()
          return routes.view?.shards.find((s) => s.primary === added.address)?.slotCount === owned
        },
        { timeoutMs: CLUSTER_TOPOLOGY_DEFAULTS.periodicMs + 2_000, message: `the routes view to show ${added.address} with its ${owned} slots` },
      )
    } catch {
      // Asserted below, with what the view showed.
    }
    const convergedMs = performance.now() - converged
    const view = routes.view
    const shardOfNew = view?.shards.find((s) => s.primary === added.address)
    const metrics = await scrape(gw.opsUrl)
    const nodesAfter = gauge(metrics, 'redis_gateway_cluster_nodes', { redis_instance: 'c' })
    const failed = outcomes.filter((o) => o.failure !== null)
    console.log(
      `[faults/cluster-resharding] added ${added.address}, rebalanced in ${fmt(rebalanceMs)} (redis-cli): it owns ${added.slots.reduce((n, [x, y]) => n + y - x + 1, 0)} slots; ` +
        `light load ${outcomes.length} requests, ${failed.length} failed, max ${fmt(Math.max(0, ...outcomes.map((o) => o.ms)))}; ` +
        `SET/GET on slot ${a}: ${w.status}/${rd.status} ${rd.text}; routes view: shard ${shardOfNew ? `${shardOfNew.primary} with ${shardOfNew.slotCount} slots` : 'missing'} (seen ${fmt(convergedMs)} after the first look), ` +
        `slots served ${view?.slotsServed}; redis_gateway_cluster_nodes ${nodesBefore} -> ${nodesAfter}`,
    )
    for (const f of failed.slice(0, 10)) console.log(`[faults/cluster-resharding]   failed ${f.what} after ${fmt(f.ms)}: ${f.failure}`)

    expect(w).toMatchObject({ status: 200, json: { result: 'OK' } })
    expect(rd).toMatchObject({ status: 200, json: { result: 'fresh' } })
    expect(direct).toBe('fresh')
    expect(routes.status).toBe(200)
    expect(shardOfNew?.slotCount).toBe(owned)
    expect(shardOfNew?.endpoints.map((e) => e.id)).toContain(added.address)
    expect(view?.slotsServed).toBe(SLOT_COUNT)
    expect(nodesAfter).toBe((nodesBefore ?? 0) + 1)
    // Light load through the add and the rebalance: nothing failed either.
    expect(failed.map((f) => `${f.what}: ${f.failure}`).slice(0, 10)).toEqual([])
  }, 60_000)
})
