// Replicas that must not serve reads are avoided, on real
// servers, proven with INFO commandstats: a replica behind by more than max-replica-lag (but
// healthy), a replica whose replication link is broken, a frozen replica (SIGSTOP) and a killed
// one (SIGKILL). Each comes back (or the others carry on) without any config change. And the
// converse: a replica that has in fact caught up is not skipped as lagging.
//
// How a replica is made to lag while staying healthy: `CLIENT PAUSE <ms> WRITE` on the replica.
// In Redis 7.0 a WRITE pause also postpones the commands of the replica's master client (it only
// exempts clients flagged as replicas, and the replication stream consists of writes), so the
// replica keeps receiving the stream (slave_read_repl_offset grows) but applies none of it
// (ROLE's processed offset stands still, reads return the old data) while it answers ROLE, INFO
// and GET at once, with master_link_status up: exactly a healthy replica that has fallen behind.
// Alternatives rejected: SIGSTOP or DEBUG SLEEP freeze the whole server, so it is unhealthy, not
// lagging; a busy Lua script makes ROLE answer BUSY; a broken link is tested separately.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { Redis as IORedis } from 'ioredis'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/ports.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import {
  allOk,
  HEALTH_INTERVAL_MS,
  load,
  MAX_INTERVAL_MS,
  measure,
  send,
  startTopology,
  waitForRoles,
  type Reply,
  type Topology,
  waitForStreaming,
} from './replication-env.js'

const HEALTH_TIMEOUT_MS = 300
/** Two (jittered) health intervals plus a margin for a loaded test machine. */
const TWO_INTERVALS_MS = 2 * MAX_INTERVAL_MS + 500

let topo: Topology
let gw: TestGateway
let r1c: IORedis
let r2c: IORedis | undefined
let pc: IORedis

beforeAll(async () => {
  topo = await startTopology()
  gw = await startGateway({
    instances: [
      { name: 'h-rep', endpoints: topo.urls, annotations: { 'redis-gateway.io/read-policy': 'replica' } },
      {
        name: 'h-rr',
        endpoints: topo.urls,
        annotations: { 'redis-gateway.io/read-policy': 'replica', 'redis-gateway.io/strategy': 'round-robin' },
      },
      {
        // Round-robin, so that 40 reads reach every eligible replica: under least-request a replica
        // that answered one read slowly on a busy machine can go unpicked for seconds.
        name: 'h-lag',
        endpoints: topo.urls,
        annotations: {
          'redis-gateway.io/read-policy': 'replica',
          'redis-gateway.io/max-replica-lag': '100',
          'redis-gateway.io/strategy': 'round-robin',
        },
      },
    ],
    extra: { health: { interval: `${HEALTH_INTERVAL_MS}ms`, timeout: `${HEALTH_TIMEOUT_MS}ms` } },
  })
  await waitForRoles(gw, [
    { server: topo.primary, role: 'primary' },
    { server: topo.r1, role: 'replica' },
    { server: topo.r2, role: 'replica' },
  ])
  r1c = topo.r1.client()
  pc = topo.primary.client()
  await pc.set('hl:k', 'v0')
})

afterAll(async () => {
  await r1c?.call('CLIENT', 'UNPAUSE').catch(() => {})
  if (topo?.r1.isPaused) topo.r1.resume()
  await gw?.stop()
  await topo?.stop()
})

const reads = (instance: string, n: number, concurrency = 8): Promise<Reply[]> =>
  load(n, concurrency, () => send(gw.base(instance), ['GET', 'hl:k']))

/** [primary, r1, r2] GETs for `n` reads of `instance`, all of which must succeed. */
async function shares(instance: string, n: number, servers: readonly RedisServer[] = topo.all): Promise<number[]> {
  const got = await measure(servers, ['get'], async () => allOk(await reads(instance, n)))
  return got['get']!
}

/** Waits until `n` reads of `instance` land as `want` says; returns how long that took. */
async function until(instance: string, what: string, want: (s: number[]) => boolean, timeoutMs: number, servers = topo.all): Promise<number> {
  const t0 = Date.now()
  await waitFor(async () => want(await shares(instance, 40, servers)), { timeoutMs, intervalMs: 20, message: what })
  return Date.now() - t0
}

describe('a replica behind by more than max-replica-lag is avoided', () => {
  test('but a caught-up replica is not taken for a lagging one: right after a write bigger than the limit, both replicas serve h-lag', async () => {
    // Each round: one 1 KiB write (10x h-lag's 100 byte limit) through the gateway; both replicas
    // apply it (checked directly: their real lag is 0); then one read through h-lag. The replicas
    // are as far as the primary, so the read must be served by one of them.
    const failures: string[] = []
    const got = await measure(topo.all, ['get'], async () => {
      for (let i = 0; i < 20; i++) {
        const value = `${i}:${'y'.repeat(1024)}`
        expect((await send(gw.base('h-lag'), ['SET', 'hl:caught', value])).status).toBe(200)
        for (const r of [topo.r1, topo.r2]) {
          const c = r === topo.r1 ? r1c : (r2c ??= topo.r2.client())
          await waitFor(async () => (await c.get('hl:caught')) === value, { message: `replica ${r.port} to apply write ${i}` })
        }
        const read = await send(gw.base('h-lag'), ['GET', 'hl:caught'])
        if (read.status !== 200) failures.push(`round ${i}: ${read.status} ${JSON.stringify(read.body)}`)
        else expect((read.body as { result: unknown }).result).toBe(value)
      }
    })
    console.log(`caught-up replicas right after a write: ${failures.length}/20 reads refused`, failures.slice(0, 2), 'GETs on the primary', got['get']![0])
    expect(failures).toEqual([])
    expect(got['get']![0]).toBe(0)
  })

  test('CLIENT PAUSE WRITE on r1: r1 stays healthy but falls behind; h-lag (100 bytes) stops using it, then takes it back', async () => {
    // Before: both replicas take h-lag reads (once the gateway has seen them after earlier writes).
    await until('h-lag', 'both replicas to take h-lag reads', (s) => s[0] === 0 && s[1]! > 0 && s[2]! > 0, TWO_INTERVALS_MS)

    await r1c.call('CLIENT', 'PAUSE', '30000', 'WRITE')
    let detectMs: number
    try {
      // One 1 KiB write: r2 applies it, r1 receives it but cannot apply it.
      const big = 'x'.repeat(1024)
      expect((await send(gw.base('h-lag'), ['SET', 'hl:k', big])).status).toBe(200)
      const primaryOffset = Number(((await pc.role()) as unknown[])[1])
      // r1 is healthy but behind: ROLE answers, link connected, its processed offset lags, data is stale.
      r2c ??= topo.r2.client()
      await waitFor(async () => (await r2c!.get('hl:k')) === big, { message: 'r2 to apply the write' })
      const role = (await r1c.role()) as unknown[]
      expect(role[0]).toBe('slave')
      expect(role[3]).toBe('connected')
      expect(primaryOffset - Number(role[4])).toBeGreaterThan(1024)
      expect(await r1c.get('hl:k')).toBe('v0')

      detectMs = await until('h-lag', 'h-lag reads to avoid the lagging r1', (s) => s[0] === 0 && s[1] === 0 && s[2] === 40, TWO_INTERVALS_MS)
      console.log(`lagging replica avoided after ${detectMs} ms (interval ${HEALTH_INTERVAL_MS} ms)`)
      // Steady state: every h-lag read on r2, and they all see the write.
      const got = await measure(topo.all, ['get'], async () => {
        const replies = await reads('h-lag', 200)
        allOk(replies)
        for (const r of replies) expect((r.body as { result: unknown }).result).toBe(big)
      })
      expect(got['get']).toEqual([0, 0, 200])

      // Control: the same replica under the default max-replica-lag (1 MiB) is still used, and the
      // reads it serves are stale. The threshold, not health, is what kept h-lag away from it.
      // (h-rr: same policy and strategy as h-lag, default lag.)
      const ctl = await measure(topo.all, ['get'], async () => {
        const replies = await reads('h-rep', 200)
        allOk(replies)
        const stale = replies.filter((r) => (r.body as { result: unknown }).result === 'v0').length
        expect(stale).toBeGreaterThan(0)
      })
      expect(ctl['get']![0]).toBe(0)
      expect(ctl['get']![1]).toBeGreaterThan(0)
    } finally {
      await r1c.call('CLIENT', 'UNPAUSE')
    }
    // Caught up again: r1 comes back into h-lag within two intervals.
    const backMs = await until('h-lag', 'r1 to take h-lag reads again', (s) => s[0] === 0 && s[1]! > 0 && s[2]! > 0, TWO_INTERVALS_MS)
    console.log(`caught-up replica back after ${backMs} ms`)
  })
})

describe('a replica with a broken replication link is avoided', () => {
  test('REPLICAOF <dead port> on r1: its share goes to 0, r2 takes the reads; REPLICAOF <primary> brings it back', async () => {
    // Both replicas eligible to begin with (h-rr shows the whole set: same endpoints and policy).
    expect(await shares('h-rr', 200)).toEqual([0, 100, 100])

    const deadPort = await freePort()
    await r1c.call('REPLICAOF', '127.0.0.1', String(deadPort))
    const role = (await r1c.role()) as unknown[]
    expect(role[0]).toBe('slave')
    expect(role[3]).not.toBe('connected')

    const detectMs = await until('h-rep', 'reads to avoid the unlinked r1', (s) => s[0] === 0 && s[1] === 0 && s[2] === 40, TWO_INTERVALS_MS)
    console.log(`unlinked replica avoided after ${detectMs} ms`)
    expect(await shares('h-rep', 200)).toEqual([0, 0, 200])

    await r1c.call('REPLICAOF', topo.primary.host, String(topo.primary.port))
    await topo.r1.waitForSync()
    const backMs = await until('h-rep', 'relinked r1 to take reads again', (s) => s[0] === 0 && s[1]! > 0 && s[2]! > 0, TWO_INTERVALS_MS)
    console.log(`relinked replica back after ${backMs} ms (after its sync finished)`)
  })
})

describe('a killed replica is avoided and reads keep succeeding', () => {
  test('SIGKILL r2 under read load: r1 takes every read', async () => {
    // Both replicas eligible to begin with (h-rr shows the whole set: same endpoints and policy).
    expect(await shares('h-rr', 200)).toEqual([0, 100, 100])

    // Background read load across the kill.
    let stop = false
    const outcomes: { at: number; status: number; body: unknown }[] = []
    const loop = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop) {
          const r = await send(gw.base('h-rep'), ['GET', 'hl:k'])
          outcomes.push({ at: Date.now(), status: r.status, body: r.body })
        }
      }),
    )
    let killedAt = 0
    try {
      await waitFor(() => outcomes.length >= 50, { message: 'read load to start' })
      killedAt = Date.now()
      await topo.r2.kill('SIGKILL')
      // Reads keep going: wait for 200 more after the kill, then look at all of them.
      await waitFor(() => outcomes.filter((o) => o.at > killedAt).length >= 200, { message: '200 reads after the kill' })
    } finally {
      stop = true
      await loop
    }
    const after = outcomes.filter((o) => o.at >= killedAt)
    const failed = after.filter((o) => o.status !== 200)
    console.log(
      `killed replica: ${after.length} reads after the kill, ${failed.length} failed`,
      failed.slice(0, 3).map((f) => `+${f.at - killedAt} ms: ${f.status} ${JSON.stringify(f.body)}`),
    )
    // A read racing the kill may fail; once the gateway has seen the
    // connection close (at once: no health interval needed), none may.
    for (const f of failed) expect(f.at - killedAt).toBeLessThan(MAX_INTERVAL_MS)
    expect(failed.length).toBeLessThanOrEqual(4)
    // Every read now on r1.
    expect(await shares('h-rep', 200, [topo.primary, topo.r1])).toEqual([0, 200])

    // Restarted (same port, still --replicaof the primary): it is used again, no config change.
    await topo.r2.restart()
    await topo.r2.waitForSync()
    await waitForStreaming(topo.primary, [topo.r2])
    const backMs = await until('h-rr', 'the restarted r2 to take reads again', (s) => s[0] === 0 && s[1]! > 0 && s[2]! > 0, TWO_INTERVALS_MS)
    console.log(`restarted replica back after ${backMs} ms (after its sync finished)`)
  })
})

describe('a frozen replica is avoided', () => {
  // Round-robin here: least-request would (rightly) keep away from r1 for a long time after the
  // 2 s timeouts it recorded as peak latency, which is balancing, not health. See the report.
  test('SIGSTOP r1: once its health check times out it gets no reads; SIGCONT brings it back', async () => {
    const before = await shares('h-rr', 200)
    expect(before).toEqual([0, 100, 100])
    const ep = [...gw.gateway.pool.all()].find((e) => e.client.spec.port === topo.r1.port)!
    topo.r1.pause()
    try {
      // No reads while waiting: one sent to the stopped r1 would hang for the command timeout.
      // The gateway's own view says when its health check gave up on r1...
      const t0 = Date.now()
      await waitFor(() => !ep.state.healthy, {
        timeoutMs: HEALTH_TIMEOUT_MS + TWO_INTERVALS_MS,
        intervalMs: 10,
        message: 'the health check to mark the frozen r1 down',
      })
      console.log(`frozen replica marked down after ${Date.now() - t0} ms (health timeout ${HEALTH_TIMEOUT_MS} ms)`)
      // ...and from then on no read goes there (r1 cannot answer INFO while stopped, so count on
      // the others: every read must have landed on r2, and all of them answered at once).
      const started = Date.now()
      expect(await shares('h-rr', 200, [topo.primary, topo.r2])).toEqual([0, 200])
      expect(Date.now() - started).toBeLessThan(1_500)
    } finally {
      topo.r1.resume()
    }
    const backMs = await until('h-rr', 'resumed r1 to take reads again', (s) => s[0] === 0 && s[1]! > 0 && s[2]! > 0, TWO_INTERVALS_MS)
    console.log(`resumed replica back after ${backMs} ms`)
  })
})
