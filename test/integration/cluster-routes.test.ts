// The ops plane's view of a Redis Cluster instance (GET /admin/routes, docs/admin-routes.md): its
// shards with their slots and nodes as the cluster announces them, validated against the
// published schema, and the nodes the gateway refuses to use (announced but not discovered).

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startCluster, type RedisCluster } from '../helpers/redis-cluster.js'
import { startGateway, ADMIN_TOKEN, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { assertRoutesView } from '../helpers/routes-schema.js'
import { call } from '../helpers/rest.js'
import { waitFor } from '../helpers/wait.js'
import type { InstanceView, RoutesView } from '../../src/http/routes-view.js'
import { launchChromium } from '../helpers/chromium.js'

let cluster: RedisCluster
let gw: TestGateway

beforeAll(async () => {
  cluster = await startCluster({ shards: 3, replicasPerShard: 1 })
  gw = await startGateway({
    instances: [
      // Every node discovered: all are used.
      { name: 'all', endpoints: [...cluster.seeds] },
      // One seed and the default (announced nodes must be discovered): the rest are refused.
      { name: 'seed', endpoints: [cluster.seeds[0]!] },
      // Pinned standalone: no cluster view, whatever the node says.
      { name: 'pinned', endpoints: [cluster.seeds[0]!], annotations: { 'redis-gateway.io/mode': 'standalone' } },
    ],
  })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

async function routes(): Promise<RoutesView> {
  const res = await fetch(`${gw.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  expect(res.status).toBe(200)
  const view = (await res.json()) as RoutesView
  assertRoutesView(view)
  return view
}

const instance = (v: RoutesView, name: string): InstanceView => v.instances.find((i) => i.name === name)!

describe('/admin/routes for a Redis Cluster instance', () => {
  test('shows every shard with its slots, primary first, and all slots served', async () => {
    // Roles come from health checks after the map is learned: wait until every shard is up.
    const view = await waitFor(async () => {
      const v = await routes()
      const c = instance(v, 'all').cluster
      return c !== null && c.shards.length === 3 && c.shards.every((s) => s.health === 'up') ? v : null
    }, { timeoutMs: 15_000 })
    const inst = instance(view, 'all')
    expect(inst.mode).toBe('auto')
    expect(inst.primary).toBeNull()
    expect(inst.health).toBe('up')
    const c = inst.cluster!
    expect(c.source).toBe('CLUSTER SHARDS')
    expect(c.slotsServed).toBe(16_384)
    expect(c.refused).toEqual([])
    await cluster.refresh()
    for (const shard of c.shards) {
      const owner = cluster.slotOwner(shard.slots[0]![0])
      expect(shard.primary).toBe(owner.address)
      expect(shard.endpoints.map((e) => e.id)).toEqual([owner.address, ...cluster.replicasOf(owner.id).map((r) => r.address)])
      expect(shard.endpoints[0]!.role).toBe('primary')
      expect(shard.endpoints[0]!.isPrimary).toBe(true)
      expect(shard.endpoints[1]!.role).toBe('replica')
    }
    expect(c.shards.reduce((n, s) => n + s.slotCount, 0)).toBe(16_384)
  })

  test('a single seed: the nodes it did not discover are listed as refused, their slots unserved', async () => {
    // A command makes sure the instance was detected (it is, at connect; this also waits for it).
    await call(gw.base('seed'), WRITE_TOKEN, ['PING'])
    const view = await waitFor(async () => {
      const v = await routes()
      return instance(v, 'seed').cluster?.source != null ? v : null
    }, { timeoutMs: 10_000 })
    const c = instance(view, 'seed').cluster!
    expect(c.refused.length).toBe(5)
    for (const r of c.refused) expect(r.reason).toMatch(/not one of the instance's discovered endpoints/)
    const seedOwner = c.shards.find((s) => s.primary === cluster.seeds[0])
    expect(c.slotsServed).toBe(seedOwner?.slotCount ?? 0)
    expect(instance(view, 'seed').health).toBe('down')
  })

  test('mode standalone: no cluster view', async () => {
    const view = await routes()
    const inst = instance(view, 'pinned')
    expect(inst.mode).toBe('standalone')
    expect(inst.cluster).toBeNull()
  })
})

describe('the routes page (/) for a Redis Cluster instance, in Chromium', () => {
  test('one row per shard with its slots and health, each shard\'s nodes below it, refused nodes listed', async () => {
    const browser = await launchChromium()
    try {
      const page = await browser.newPage()
      page.setDefaultTimeout(10_000)
      await page.goto(`${gw.opsUrl}/?_token=${ADMIN_TOKEN}`)
      await page.waitForSelector('tr.shard[data-instance="all"][data-shard="2"]')
      const text = async (sel: string): Promise<string[]> => page.$$eval(sel, (els) => els.map((e) => (e as unknown as { textContent: string }).textContent))
      const shards = await text('tr.shard[data-instance="all"]')
      expect(shards).toHaveLength(3)
      expect(shards[0]).toMatch(/shard 0: up\s+slots 0-5460 \(5461\)/)
      expect(await text('tr[data-instance="all"] td[data-field="cluster"]')).toEqual([expect.stringMatching(/^Redis Cluster: 3 shards, 16384 of 16384 slots served/)])
      // Every node once, as an endpoint row of the cluster instance.
      const nodes = await page.$$eval('tr.ep-row[data-instance="all"]', (els) => els.map((e) => (e as unknown as { getAttribute(n: string): string }).getAttribute('data-endpoint')))
      expect(new Set(nodes)).toEqual(new Set(cluster.seeds))
      expect(nodes).toHaveLength(6)
      const refused = await text('tr[data-instance="seed"] td[data-field="refused-node"]')
      expect(refused).toHaveLength(5)
      for (const r of refused) expect(r).toMatch(/not used: 127\.0\.0\.1:\d+ \((primary|replica)\) .*not one of the instance's discovered endpoints/)
    } finally {
      await browser.close()
    }
  }, 30_000)
})
