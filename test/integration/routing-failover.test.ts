// A failover done on the servers alone (no annotation, no config
// change) is followed within two health intervals. Real primary and two replicas; where each
// write and read ran is read from INFO commandstats (writes are INCRBYFLOAT, propagated to
// replicas as SET, so `incrbyfloat` counts only where the gateway sent it).
//
// Failover as an operator (or Sentinel) does it: REPLICAOF NO ONE on the replica to promote,
// then REPLICAOF <new primary> on the old primary and on the other replica.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { Redis as IORedis } from 'ioredis'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import {
  allOk,
  HEALTH,
  HEALTH_INTERVAL_MS,
  landed,
  load,
  MAX_INTERVAL_MS,
  measure,
  resultOf,
  send,
  startTopology,
  waitForRoles,
  waitForStreaming,
  type Reply,
  type Topology,
} from './replication-env.js'

/** Two jittered health intervals, plus a small margin for the probe round trips and a busy machine. */
const DEADLINE_MS = 2 * MAX_INTERVAL_MS + 250

let topo: Topology
let gw: TestGateway
const clients = new Map<RedisServer, IORedis>()
const direct = (s: RedisServer): IORedis => {
  let c = clients.get(s)
  if (!c) clients.set(s, (c = s.client()))
  return c
}

beforeAll(async () => {
  topo = await startTopology()
  gw = await startGateway({
    instances: [
      { name: 'fo-primary', endpoints: topo.urls },
      { name: 'fo-prefer', endpoints: topo.urls, annotations: { 'redis-gateway.io/read-policy': 'prefer-replica' } },
      { name: 'fo-replica', endpoints: topo.urls, annotations: { 'redis-gateway.io/read-policy': 'replica' } },
    ],
    extra: HEALTH,
  })
  await waitForRoles(gw, [
    { server: topo.primary, role: 'primary' },
    { server: topo.r1, role: 'replica' },
    { server: topo.r2, role: 'replica' },
  ])
})

afterAll(async () => {
  await gw?.stop()
  // Whoever is primary now goes last.
  const roles = await Promise.all(topo.all.map(async (s) => ((await direct(s).role()) as unknown[])[0]))
  await topo?.stop([...topo.all].sort((a, b) => Number(roles[topo.all.indexOf(a)] === 'master') - Number(roles[topo.all.indexOf(b)] === 'master')))
})

const write = (key: string): Promise<Reply> => send(gw.base('fo-primary'), ['INCRBYFLOAT', key, '1'])

/**
 * Promotes `next` and points every other server at it; then measures how long until a write
 * through the gateway succeeds and has landed on `next` (the gateway was not told anything).
 */
async function failover(next: RedisServer, key: string): Promise<{ ms: number; failedWrites: Reply[] }> {
  const others = topo.all.filter((s) => s !== next)
  await direct(next).call('REPLICAOF', 'NO', 'ONE')
  for (const s of others) await direct(s).call('REPLICAOF', next.host, String(next.port))
  const t0 = Date.now()
  const failedWrites: Reply[] = []
  const before = (await landed([next], 'incrbyfloat'))[0]!
  await waitFor(
    async () => {
      const r = await write(key)
      if (r.status !== 200) {
        failedWrites.push(r)
        return false
      }
      return (await landed([next], 'incrbyfloat'))[0]! > before
    },
    { timeoutMs: DEADLINE_MS, intervalMs: 5, message: `writes to land on the new primary ${next.port}` },
  )
  return { ms: Date.now() - t0, failedWrites }
}

describe('a failover is followed within two health intervals, with no config change', () => {
  test('writes on P; promote R1, demote P, repoint R2: writes land on R1, reads follow the policy', async () => {
    const { primary: p, r1, r2 } = topo
    // Before: every write on P.
    let got = await measure(topo.all, ['incrbyfloat'], async () => allOk(await load(30, 4, () => write('fo:k'))))
    expect(got['incrbyfloat']).toEqual([30, 0, 0])

    const { ms, failedWrites } = await failover(r1, 'fo:k')
    console.log(
      `failover to r1 followed after ${ms} ms (interval ${HEALTH_INTERVAL_MS} ms, deadline ${DEADLINE_MS} ms);`,
      `${failedWrites.length} writes failed meanwhile:`,
      [...new Set(failedWrites.map((r) => `${r.status} ${JSON.stringify(r.body)}`))].slice(0, 3),
    )
    // Writes sent to the demoted P meanwhile were refused by it, never applied twice or lost silently.
    for (const r of failedWrites) expect(r.status).toBeGreaterThanOrEqual(400)

    // Steady state: every write succeeds on R1, none on P or R2.
    got = await measure(topo.all, ['incrbyfloat'], async () => allOk(await load(50, 4, () => write('fo:k'))))
    expect(got['incrbyfloat']).toEqual([0, 50, 0])
    // The value is consistent: 30 before + the successful probes + 50 after, all on one history.
    const value = Number(resultOf(await send(gw.base('fo-primary'), ['GET', 'fo:k'])))
    expect(value).toBeGreaterThanOrEqual(81)
    expect(await direct(r1).get('fo:k')).toBe(String(value))

    // Reads follow the policy: 'primary' reads on R1; 'prefer-replica' reads on P and R2 (now
    // R1's replicas) once they have synced from R1, never on R1.
    got = await measure(topo.all, ['get'], async () => allOk(await load(100, 8, () => send(gw.base('fo-primary'), ['GET', 'fo:k']))))
    expect(got['get']).toEqual([0, 100, 0])
    await Promise.all([p, r2].map((s) => waitFor(async () => (await direct(s).get('fo:k')) === String(value), { message: `${s.port} to follow r1` })))
    const t1 = Date.now()
    await waitFor(
      async () => {
        const shares = (await measure(topo.all, ['get'], async () => allOk(await load(100, 8, () => send(gw.base('fo-prefer'), ['GET', 'fo:k'])))))['get']!
        return shares[1] === 0 && shares[0]! > 0 && shares[2]! > 0
      },
      { timeoutMs: DEADLINE_MS + 1_000, intervalMs: 20, message: 'prefer-replica reads on the new replicas (P and R2)' },
    )
    console.log(`prefer-replica reads on the new replicas ${Date.now() - t1} ms after their sync`)
  })

  test('and back: promote P again, demote R1, repoint R2', async () => {
    const { primary: p, r1, r2 } = topo
    await waitForStreaming(r1, [p, r2])
    const { ms, failedWrites } = await failover(p, 'fo:k2')
    console.log(`failover back to p followed after ${ms} ms; ${failedWrites.length} writes failed meanwhile`)
    const got = await measure(topo.all, ['incrbyfloat'], async () => allOk(await load(50, 4, () => write('fo:k2'))))
    expect(got['incrbyfloat']).toEqual([50, 0, 0])
  })

  test('six more failovers in a row (P -> R2 -> R1 -> P ...): each followed within the deadline', async () => {
    const order = [topo.r2, topo.r1, topo.primary, topo.r2, topo.r1, topo.primary]
    let current = topo.primary
    const times: number[] = []
    for (const [i, next] of order.entries()) {
      await waitForStreaming(current, topo.all.filter((s) => s !== current))
      const { ms } = await failover(next, `fo:rot:${i}`)
      times.push(ms)
      const got = await measure(topo.all, ['incrbyfloat'], async () => allOk(await load(20, 4, () => write(`fo:rot:${i}`))))
      expect(got['incrbyfloat']![topo.all.indexOf(next)]).toBe(20)
      expect(got['incrbyfloat']!.reduce((a, b) => a + b, 0)).toBe(20)
      current = next
    }
    console.log(`failover detection times (ms): ${times.join(', ')}; max ${Math.max(...times)}, deadline ${DEADLINE_MS}`)
  })
})

describe('a primary that restarts with a new replication history', () => {
  // Without persistence a restarted Redis starts a new replication history: new replication id,
  // offsets from 0. Its replicas full-sync and are exactly as far as it is. The gateway must
  // compare them with the primary's new offset, not with the one it remembered from before.
  test('after a restart of P (offsets from 0), its caught-up replicas serve reads again', async () => {
    const { primary: p, r1, r2 } = topo
    expect(((await direct(p).role()) as unknown[])[0]).toBe('master')
    // A history longer than the default max-replica-lag (1 MiB).
    await direct(p).set('fo:big', 'x'.repeat(2 * 1024 * 1024))
    await waitForStreaming(p, [r1, r2])
    const replicaReads = async (): Promise<number[]> =>
      (await measure(topo.all, ['get'], async () => allOk(await load(40, 4, () => send(gw.base('fo-replica'), ['GET', 'fo:k'])))))['get']!
    await waitFor(async () => {
      const s = await replicaReads()
      return s[0] === 0 && s[1]! > 0 && s[2]! > 0
    }, { message: 'both replicas to serve reads before the restart' })
    const offsetBefore = Number(((await direct(p).role()) as unknown[])[1])

    await p.restart()
    await Promise.all([r1.waitForSync(), r2.waitForSync()])
    await waitForStreaming(p, [r1, r2])
    const offsetAfter = Number(((await direct(p).role()) as unknown[])[1])
    expect(offsetAfter).toBeLessThan(offsetBefore - 1024 * 1024)

    const t0 = Date.now()
    let last: unknown
    await waitFor(
      async () => {
        const replies = await load(40, 4, () => send(gw.base('fo-replica'), ['GET', 'fo:k']))
        last = replies.find((r) => r.status !== 200)?.body ?? 'all 200'
        return replies.every((r) => r.status === 200)
      },
      { timeoutMs: 2 * MAX_INTERVAL_MS + 1_000, intervalMs: 20, message: 'replica reads to succeed after the primary restart' },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last failure: ${JSON.stringify(last)}`)
    })
    console.log(`replicas serve again ${Date.now() - t0} ms after the primary restart`)
    const s = await replicaReads()
    expect(s[0]).toBe(0)
    expect(s[1]! + s[2]!).toBe(40)
  })
})
