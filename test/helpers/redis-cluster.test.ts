// Tests for the Redis Cluster test helper: a real 3-shard cluster with one replica per shard
// starts, covers every slot, routes (MOVED), replicates, fails over, and leaves no process behind.

import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keySlot, SLOT_COUNT, startCluster, type RedisCluster } from './redis-cluster.js'

/** pid and args of every running redis-server, from ps. */
function redisServerProcesses(): { pid: number; args: string }[] {
  const out = execFileSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' })
  return out
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null && !m[2]?.startsWith('Z') && /redis-server/.test(m[3] ?? ''))
    .map((m) => ({ pid: Number(m[1]), args: m[3] ?? '' }))
}

describe('startCluster', () => {
  let cluster: RedisCluster

  beforeAll(async () => {
    const started = Date.now()
    cluster = await startCluster({ shards: 3, replicasPerShard: 1, nodeTimeoutMs: 2_000 })
    const t = cluster.timings
    console.log(
      `3×1 cluster up in ${Date.now() - started} ms (servers ${t.serversMs} ms, redis-cli create ${t.createMs} ms, settle ${t.settleMs} ms); ports ${cluster.seeds.join(' ')}`,
    )
  })
  afterAll(async () => {
    await cluster?.stop()
  })

  it('has 3 primaries with one replica each, on ports whose bus port fits', () => {
    expect(cluster.nodes).toHaveLength(6)
    expect(cluster.seeds).toEqual(cluster.nodes.map((n) => `127.0.0.1:${n.port}`))
    for (const node of cluster.nodes) {
      expect(node.port).toBeLessThan(55_536)
      expect(node.id).toMatch(/^[0-9a-f]{40}$/)
    }
    // redis-cli makes the first `shards` addresses the primaries.
    expect(cluster.primaries().map((n) => n.id).sort()).toEqual(cluster.nodes.slice(0, 3).map((n) => n.id).sort())
    for (const primary of cluster.primaries()) {
      const replicas = cluster.replicasOf(primary.id)
      expect(replicas).toHaveLength(1)
      expect(replicas[0]?.role).toBe('replica')
      expect(replicas[0]?.primaryId).toBe(primary.id)
    }
  })

  it('covers all 16384 slots, once each, as every node reports', async () => {
    const owned = new Array<number>(SLOT_COUNT).fill(0)
    for (const { slots } of cluster.shards()) for (const [a, b] of slots) for (let s = a; s <= b; s++) owned[s] = (owned[s] ?? 0) + 1
    expect(owned.every((n) => n === 1)).toBe(true)
    for (const node of cluster.nodes) {
      const info = String(await cluster.client(node).call('CLUSTER', 'INFO'))
      expect(info).toContain('cluster_state:ok')
      expect(info).toContain(`cluster_slots_assigned:${SLOT_COUNT}`)
      expect(info).toContain('cluster_known_nodes:6')
    }
  })

  it('computes key slots as Redis does', async () => {
    const redis = cluster.client(cluster.nodes[0]!)
    for (const key of ['foo', 'user:1000', '{user1000}.following', 'a{}b', '{}{x}', 'ü€', '']) {
      expect(keySlot(key), key).toBe(await redis.call('CLUSTER', 'KEYSLOT', key))
    }
  })

  it('serves a key from its owner and its replica (READONLY); other nodes answer MOVED', async () => {
    const key = 'cluster-helper:key'
    const owner = cluster.slotOwner(keySlot(key))
    const replica = cluster.replicasOf(owner.id)[0]!
    const primaryClient = cluster.client(owner)
    expect(await primaryClient.set(key, 'v1')).toBe('OK')
    expect(await primaryClient.get(key)).toBe('v1')
    expect(await primaryClient.call('WAIT', '1', '5000')).toBe(1)

    expect(await cluster.client(replica, { readOnly: true }).get(key)).toBe('v1')
    // Without READONLY the replica redirects to its primary.
    await expect(cluster.client(replica).get(key)).rejects.toThrow(`MOVED ${keySlot(key)} ${owner.address}`)
    for (const other of cluster.primaries().filter((n) => n.id !== owner.id)) {
      await expect(cluster.client(other).get(key)).rejects.toThrow(`MOVED ${keySlot(key)} ${owner.address}`)
    }
  })

  it('promotes the replica of a killed primary within a few node timeouts, and the old primary rejoins as its replica', async () => {
    const key = 'cluster-helper:failover'
    const victim = cluster.slotOwner(keySlot(key))
    const replica = cluster.replicasOf(victim.id)[0]!
    const victimClient = cluster.client(victim)
    await victimClient.set(key, 'before')
    expect(await victimClient.call('WAIT', '1', '5000')).toBe(1)

    const killedAt = Date.now()
    await cluster.kill(victim)
    expect(victim.isRunning).toBe(false)
    const { primary, waitedMs } = await cluster.waitForFailover(victim.id)
    const failoverMs = Date.now() - killedAt
    console.log(`failover: replica ${primary.address} promoted ${failoverMs} ms after SIGKILL of ${victim.address} (node timeout ${cluster.nodeTimeoutMs} ms; waited ${waitedMs} ms)`)

    expect(primary.id).toBe(replica.id)
    expect(primary.role).toBe('primary')
    expect(cluster.slotOwner(keySlot(key)).id).toBe(replica.id)
    expect(failoverMs).toBeLessThan(cluster.nodeTimeoutMs * 5)
    expect(await cluster.client(primary).get(key)).toBe('before')
    expect(await cluster.client(primary).set(key, 'after')).toBe('OK')

    const restartedAt = Date.now()
    await cluster.restart(victim)
    console.log(`restart: ${victim.address} rejoined as a replica of ${primary.address} in ${Date.now() - restartedAt} ms`)
    expect(victim.isRunning).toBe(true)
    expect(victim.role).toBe('replica')
    expect(victim.primaryId).toBe(primary.id)
    expect(cluster.replicasOf(primary.id).map((n) => n.id)).toEqual([victim.id])
    expect(await cluster.client(victim, { readOnly: true }).get(key)).toBe('after')
    expect(cluster.primaries()).toHaveLength(3)
  })

  it('stop() leaves no redis-server process and no dir behind', async () => {
    const pids = cluster.nodes.map((n) => n.server.pid)
    expect(pids.every((pid) => pid !== undefined)).toBe(true)
    const ours = (p: { pid: number; args: string }): boolean =>
      pids.includes(p.pid) || cluster.seeds.some((seed) => p.args.includes(seed))
    expect(redisServerProcesses().filter(ours)).toHaveLength(6)

    await cluster.stop()
    expect(redisServerProcesses().filter(ours)).toEqual([])
    for (const node of cluster.nodes) {
      expect(node.isRunning).toBe(false)
      expect(existsSync(node.dir)).toBe(false)
    }
  })
})
