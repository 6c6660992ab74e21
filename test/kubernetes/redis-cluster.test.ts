// A Redis Cluster behind one Kubernetes Service, as a StatefulSet of cluster nodes would be: six
// redis-servers (3 primaries + 3 replicas, `--cluster-enabled yes`), each in its own network
// namespace with its own address (a pod IP), all on port 6379 (an EndpointSlice has one port list
// for all its endpoints), joined by `redis-cli --cluster create` run on the host. The namespaces
// share one bridge (createPodNetwork in helpers/netns.ts), so the nodes reach each other on the
// cluster bus (port 16379) as pods do, without touching the host's forwarding settings.
//
// Against a real kube-apiserver + etcd and the gateway's Kubernetes discovery:
// 1. redis-system/redis-orders, whose EndpointSlice lists the six nodes, is served as a cluster
//    without any annotation: keys of every shard are written and read through the gateway and
//    found on the node that owns their slot;
// 2. /admin/routes shows it as a cluster of 3 shards serving 16384 slots, nothing refused (the
//    nodes announce the addresses the EndpointSlice lists);
// 3. SSRF rule: redis-partial, whose EndpointSlice lists one primary only, refuses the other five
//    nodes the cluster announces; its shard works, the other shards' keys get 503;
// 4. a node removed from redis-orders' EndpointSlice is refused (not routed to) once the change
//    arrives, and used again once it is back.
//
// The tests run in order and share one control plane, one cluster and one gateway.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keySlot, SLOT_COUNT } from '../../src/routing/cluster-slots.js'
import { ADMIN_TOKEN } from '../helpers/gateway.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { startCluster, type KubeCluster } from './helpers/cluster.js'
import {
  command,
  directly,
  elapsedUntil,
  grantDiscovery,
  ok,
  service,
  slicePath,
  startKubeGateway,
  svcPath,
  waitUntil,
  type KubeGateway,
} from './helpers/kube-gateway.js'
import { createPodNetwork, type PodNetwork, leftBehind } from './helpers/netns.js'

const execFileAsync = promisify(execFile)

const SYSTEM = 'redis-system'
/** Every node's port, in its own netns (bus port 16379). */
const PORT = 6379
const NODE_TIMEOUT_MS = 2_000
const CLUSTER_ARGS = [
  '--cluster-enabled', 'yes',
  // Relative to the server's --dir (its own temp dir): <dir>/nodes.conf.
  '--cluster-config-file', 'nodes.conf',
  '--cluster-node-timeout', String(NODE_TIMEOUT_MS),
]

/** Measured propagation times (ms from the API write), printed at the end. */
const timings: Record<string, number> = {}

// ---------------------------------------------------------------------------------------------
// The cluster as its nodes report it.

interface Shard {
  /** Inclusive [first, last] slot ranges. */
  slots: [number, number][]
  slotCount: number
  primary: string
  replicas: string[]
}

/** A RESP map as ioredis returns it (a flat [key, value, ...] array) as an object. */
function pairs(flat: unknown): Record<string, unknown> {
  const list = flat as unknown[]
  const out: Record<string, unknown> = {}
  for (let i = 0; i + 1 < list.length; i += 2) out[String(list[i])] = list[i + 1]
  return out
}

/** CLUSTER SHARDS of one node, as shards with slots, sorted by first slot. */
async function readShards(node: RedisServer): Promise<Shard[]> {
  const reply = (await directly(node, (c) => c.call('CLUSTER', 'SHARDS'))) as unknown[]
  const shards: Shard[] = []
  for (const raw of reply) {
    const s = pairs(raw)
    const flat = (s['slots'] as number[]).map(Number)
    const slots: [number, number][] = []
    for (let i = 0; i + 1 < flat.length; i += 2) slots.push([flat[i]!, flat[i + 1]!])
    let primary = ''
    const replicas: string[] = []
    for (const n of s['nodes'] as unknown[]) {
      const node = pairs(n)
      const id = `${String(node['ip'])}:${String(node['port'])}`
      if (node['role'] === 'master') primary = id
      else replicas.push(id)
    }
    if (slots.length === 0) continue
    shards.push({ slots, slotCount: slots.reduce((sum, [a, b]) => sum + b - a + 1, 0), primary, replicas })
  }
  return shards.sort((a, b) => a.slots[0]![0] - b.slots[0]![0])
}

/** A key whose slot the shard owns. */
function keyOn(shard: Shard, label: string): string {
  for (let i = 0; ; i++) {
    const key = `${label}:${i}`
    const slot = keySlot(key)
    if (shard.slots.some(([a, b]) => slot >= a && slot <= b)) return key
  }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes objects: one EndpointSlice listing several pods, all on PORT.

function podSlice(name: string, serviceName: string, addresses: readonly string[]): unknown {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    endpoints: addresses.map((address) => ({ addresses: [address], conditions: { ready: true } })),
    ports: [{ name: 'redis', port: PORT, protocol: 'TCP' }],
  }
}

/** The EndpointSlice first, then the Service (see createRedisService in kube-gateway.ts). */
async function createClusterService(name: string, addresses: readonly string[]): Promise<void> {
  await ok(kube, 'POST', slicePath(SYSTEM), podSlice(`${name}-1`, name, addresses))
  await ok(kube, 'POST', svcPath(SYSTEM), service(name))
}

/** Replaces the EndpointSlice's endpoints (merge patch: the list is replaced as a whole). */
async function setEndpoints(name: string, addresses: readonly string[]): Promise<void> {
  const { endpoints } = podSlice(`${name}-1`, name, addresses) as { endpoints: unknown }
  await ok(kube, 'PATCH', slicePath(SYSTEM, `${name}-1`), { endpoints }, 'application/merge-patch+json')
}

// ---------------------------------------------------------------------------------------------
// /admin/routes.

interface EndpointView {
  id: string
  host: string
  port: number
}
interface ClusterView {
  source: string | null
  learnedFrom: string | null
  slotsServed: number
  shards: { index: number; slots: [number, number][]; slotCount: number; primary: string | null; health: string; endpoints: EndpointView[] }[]
  /** slots: a refused primary's slot count (not served), 0 for a replica. */
  refused: { id: string; host: string; port: number | null; role: string; slots: number; reason: string }[]
}
interface InstanceView {
  name: string
  source: string
  mode: string
  health: string
  primary: string | null
  annotationErrors: unknown[]
  cluster: ClusterView | null
}

async function route(name: string): Promise<InstanceView | undefined> {
  const res = await fetch(`${gw.gateway.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  const body = (await res.json()) as { instances: InstanceView[] }
  return body.instances.find((i) => i.name === name)
}

/** Waits until the instance's cluster view satisfies `check`; returns it. */
async function clusterRoute(name: string, what: string, check: (c: ClusterView) => boolean, timeoutMs = 20_000): Promise<InstanceView> {
  let last: InstanceView | undefined
  try {
    await waitUntil(
      what,
      async () => {
        last = await route(name)
        return last?.cluster != null && check(last.cluster)
      },
      timeoutMs,
    )
  } catch (error) {
    throw new Error(`${(error as Error).message}; last /admin/routes entry: ${JSON.stringify(last)}`)
  }
  return last!
}

// ---------------------------------------------------------------------------------------------

let kube: KubeCluster
let net: PodNetwork
let nodes: RedisServer[]
/** Node address (`ip:port`) → its server. */
const byAddress = new Map<string, RedisServer>()
let shards: Shard[]
let gw: KubeGateway
let gatewayToken: string

function server(address: string): RedisServer {
  const s = byAddress.get(address)
  if (!s) throw new Error(`no node at ${address}`)
  return s
}

beforeAll(async () => {
  const [k, n] = await Promise.all([startCluster({ users: ['gateway'] }), createPodNetwork(6)])
  kube = k
  net = n
  gatewayToken = kube.tokenFor('gateway')
  nodes = await Promise.all(net.pods.map((pod) => pod.startRedis({ port: PORT, args: CLUSTER_ARGS })))
  for (const node of nodes) byAddress.set(`${node.host}:${node.port}`, node)

  // Formed from the host, which reaches every pod through the bridge; the nodes meet each other
  // over the bridge (cluster bus on 16379).
  await execFileAsync('redis-cli', ['--cluster', 'create', ...byAddress.keys(), '--cluster-replicas', '1', '--cluster-yes'], {
    timeout: 60_000,
  })
  await waitUntil(
    'every node sees a settled cluster (state ok, 6 nodes, 3 shards of a primary and a replica)',
    async () => {
      for (const node of nodes) {
        const info = String(await directly(node, (c) => c.call('CLUSTER', 'INFO')))
        if (!/cluster_state:ok/.test(info) || !/cluster_known_nodes:6\b/.test(info) || !/cluster_slots_ok:16384\b/.test(info)) return false
        const seen = await readShards(node)
        if (seen.length !== 3 || seen.some((s) => s.replicas.length !== 1)) return false
      }
      return true
    },
    30_000,
  )
  shards = await readShards(nodes[0]!)
  // Replicas synced, so that a failover-free run has every node healthy in the gateway's view.
  await waitUntil(
    'replicas in sync',
    async () => {
      for (const s of shards) {
        const info = await server(s.replicas[0]!).info('replication')
        if (!/master_link_status:up/.test(info)) return false
      }
      return true
    },
    30_000,
  )

  await ok(kube, 'POST', '/api/v1/namespaces', { metadata: { name: SYSTEM } })
  await grantDiscovery(kube, SYSTEM)
  await waitUntil(`RBAC grant in ${SYSTEM}`, async () => {
    const res = await kube.request('GET', slicePath(SYSTEM), undefined, { token: gatewayToken })
    return res.status === 200
  })
  gw = await startKubeGateway([SYSTEM], kube.kubeconfigFor(gatewayToken))
  await waitUntil('gateway /readyz', async () => (await fetch(`${gw.gateway.opsUrl}/readyz`)).status === 200)
}, 180_000)

afterAll(async () => {
  if (Object.keys(timings).length) console.log(`propagation times (ms): ${JSON.stringify(timings)}`)
  const pids = (nodes ?? []).map((n) => n.pid).filter((p): p is number => p !== undefined)
  const results = [
    await Promise.allSettled([gw?.stop()]),
    await Promise.allSettled([net?.destroy()]),
    await Promise.allSettled([kube?.stop()]),
  ].flat()
  const failures: unknown[] = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((f) => f.reason)
  // Nothing of this file's pod network is left: no process, netns, veth or bridge.
  if (net) {
    const left = leftBehind(net, pids)
    if (left !== null) failures.push(left)
  }
  if (failures.length) throw new AggregateError(failures, 'teardown failed')
})

describe('a Redis Cluster behind one Service', () => {
  it('the nodes announce their pod addresses, the ones the EndpointSlice will list', async () => {
    expect(shards).toHaveLength(3)
    expect(shards.reduce((sum, s) => sum + s.slotCount, 0)).toBe(SLOT_COUNT)
    const announced = shards.flatMap((s) => [s.primary, ...s.replicas]).sort()
    expect(announced).toEqual([...byAddress.keys()].sort())
    for (const address of announced) expect(address).toMatch(/^10\.214\.\d+\.\d+:6379$/)
  })

  it('is served as a cluster without any annotation: keys of all three shards, on the owning node', async () => {
    await createClusterService('redis-orders', net.pods.map((p) => p.address))
    const t0 = performance.now()
    const view = await clusterRoute('orders', 'orders served as a cluster with 16384 slots', (c) => c.slotsServed === SLOT_COUNT)
    timings['orders served as a cluster'] = Math.round(performance.now() - t0)
    expect(view.mode).toBe('auto') // no redis-gateway.io/mode annotation: detected
    expect(view.source).toBe(`kubernetes:${SYSTEM}/redis-orders`)
    expect(view.annotationErrors).toEqual([])

    for (const [i, shard] of shards.entries()) {
      const key = keyOn(shard, `orders-shard${i}`)
      const value = `v-${i}-${Date.now()}`
      expect(await command(gw, 'orders', ['SET', key, value]), `SET ${key} (slot ${keySlot(key)})`).toEqual({ status: 200, body: { result: 'OK' } })
      expect(await command(gw, 'orders', ['GET', key])).toEqual({ status: 200, body: { result: value } })
      // On the primary that owns the slot (any other node would answer MOVED).
      expect(await directly(server(shard.primary), (c) => c.get(key))).toBe(value)
      // And replicated to its replica (READONLY: a replica serves reads of its own slots).
      await waitUntil(`${key} on the replica ${shard.replicas[0]}`, () =>
        directly(server(shard.replicas[0]!), async (c) => {
          await c.call('READONLY')
          return (await c.get(key)) === value
        }),
      )
    }
    // A multi-slot command the gateway splits: MSET over three shards, MGET back.
    const keys = shards.map((s, i) => keyOn(s, `orders-multi${i}`))
    expect((await command(gw, 'orders', ['MSET', ...keys.flatMap((k) => [k, `m-${k}`])])).body).toEqual({ result: 'OK' })
    expect((await command(gw, 'orders', ['MGET', ...keys])).body).toEqual({ result: keys.map((k) => `m-${k}`) })
    for (const [i, s] of shards.entries()) expect(await directly(server(s.primary), (c) => c.get(keys[i]!))).toBe(`m-${keys[i]}`)
  })

  it('/admin/routes: a cluster of 3 shards serving 16384 slots, no node refused', async () => {
    const view = await clusterRoute('orders', '3 shards, each with its primary and replica', (c) =>
      c.shards.filter((s) => s.slotCount > 0).every((s) => s.endpoints.length === 2),
    )
    const c = view.cluster!
    expect(view.primary).toBeNull() // each shard has its own
    expect(c.source).toBe('CLUSTER SHARDS')
    expect(c.slotsServed).toBe(SLOT_COUNT)
    expect(c.refused).toEqual([])
    const serving = c.shards.filter((s) => s.slotCount > 0)
    expect(serving).toHaveLength(3)
    expect(serving.reduce((sum, s) => sum + s.slotCount, 0)).toBe(SLOT_COUNT)
    // The same shards the nodes report, at the addresses the EndpointSlice lists.
    expect(
      serving.map((s) => ({ slots: s.slots, primary: s.primary, endpoints: s.endpoints.map((e) => e.id) })),
    ).toEqual(shards.map((s) => ({ slots: s.slots, primary: s.primary, endpoints: [s.primary, ...s.replicas] })))
    await clusterRoute('orders', 'every shard up', (x) => x.shards.filter((s) => s.slotCount > 0).every((s) => s.health === 'up'))
  })

  it('SSRF rule: a Service listing one node only: the other five are refused, only its shard is served', async () => {
    const only = shards[0]!
    const onlyHost = only.primary.split(':')[0]!
    await createClusterService('redis-partial', [onlyHost])
    const view = await clusterRoute('partial', 'partial: the five undiscovered nodes refused', (c) => c.refused.length === 5)
    const c = view.cluster!
    const refused = c.refused.map((r) => `${r.host}:${r.port}`).sort()
    expect(refused).toEqual([...byAddress.keys()].filter((a) => a !== only.primary).sort())
    for (const r of c.refused) expect(r.reason).toMatch(/not one of the instance's discovered endpoints/)
    // The refused primaries' slots are not served; the listed node's are.
    expect(c.slotsServed).toBe(only.slotCount)
    // slots: a refused primary's slot count (now uncovered), 0 for a replica.
    const slotsOf = (address: string): number => shards.find((s) => s.primary === address)?.slotCount ?? 0
    expect(Object.fromEntries(c.refused.map((r) => [`${r.host}:${r.port}`, { role: r.role, slots: r.slots }]))).toEqual(
      Object.fromEntries(
        refused.map((a) => [a, { role: shards.some((s) => s.primary === a) ? 'primary' : 'replica', slots: slotsOf(a) }]),
      ),
    )
    const own = c.shards.find((s) => s.primary === only.primary)
    expect(own?.endpoints.map((e) => e.id)).toEqual([only.primary]) // its replica is refused too
    expect(view.health).toBe('down') // some slots have no primary the gateway may use

    // The listed node's shard works.
    const key = keyOn(only, 'partial-own')
    expect(await command(gw, 'partial', ['SET', key, 'mine'])).toEqual({ status: 200, body: { result: 'OK' } })
    expect(await command(gw, 'partial', ['GET', key])).toEqual({ status: 200, body: { result: 'mine' } })
    expect(await directly(server(only.primary), (c2) => c2.get(key))).toBe('mine')
    // The other shards' keys: 503, nothing sent to the refused nodes.
    for (const [i, shard] of shards.slice(1).entries()) {
      const other = keyOn(shard, `partial-other${i}`)
      const set = await command(gw, 'partial', ['SET', other, 'nope'])
      expect(set.status, `SET ${other} (slot ${keySlot(other)}): ${JSON.stringify(set.body)}`).toBe(503)
      expect(set.body.error).toMatch(/NOENDPOINT/)
      expect((await command(gw, 'partial', ['GET', other])).status).toBe(503)
      expect(await directly(server(shard.primary), (c2) => c2.exists(other))).toBe(0)
    }
    // The instance with the full Service is not affected.
    expect((await route('orders'))?.cluster?.refused).toEqual([])
  })

  it('a node removed from the EndpointSlice is refused once the change arrives, and used again once back', async () => {
    const shard = shards[2]!
    const removed = shard.primary
    const removedHost = removed.split(':')[0]!
    const all = net.pods.map((p) => p.address)
    const key = keyOn(shard, 'orders-moved')
    const otherKey = keyOn(shards[1]!, 'orders-stays')
    expect((await command(gw, 'orders', ['SET', key, 'before'])).status).toBe(200)

    const t0 = performance.now()
    await setEndpoints('redis-orders', all.filter((a) => a !== removedHost))
    const refusedMs = await elapsedUntil(
      t0,
      `${removed} refused for orders`,
      async () => ((await route('orders'))?.cluster?.refused ?? []).some((r) => `${r.host}:${r.port}` === removed),
    )
    timings['node removed → refused'] = Math.round(refusedMs)
    const c = (await route('orders'))!.cluster!
    expect(c.refused.map((r) => ({ node: `${r.host}:${r.port}`, role: r.role }))).toEqual([{ node: removed, role: 'primary' }])
    expect(c.slotsServed).toBe(SLOT_COUNT - shard.slotCount)
    expect(c.shards.flatMap((s) => s.endpoints.map((e) => e.id))).not.toContain(removed)
    // Not routed to any more: its slots answer 503, the other shards still work.
    const res = await command(gw, 'orders', ['GET', key])
    expect(res.status, JSON.stringify(res.body)).toBe(503)
    expect(await command(gw, 'orders', ['SET', otherKey, 'fine'])).toEqual({ status: 200, body: { result: 'OK' } })

    // Back in the Service: served again.
    const t1 = performance.now()
    await setEndpoints('redis-orders', all)
    timings['node back → served'] = Math.round(
      await elapsedUntil(t1, `${removed} served again`, async () => {
        const back = (await route('orders'))?.cluster
        return back?.refused.length === 0 && back.slotsServed === SLOT_COUNT
      }),
    )
    expect(await command(gw, 'orders', ['GET', key])).toEqual({ status: 200, body: { result: 'before' } })
  })
})
