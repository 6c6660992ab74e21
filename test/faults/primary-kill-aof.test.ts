// The primary is killed with SIGKILL while 30 clients INCR one key through the gateway, then
// restarted from its AOF (appendfsync always, so every write Redis acknowledged is on disk). A
// write is never sent twice, so every request ends in one of three ways:
// - 200: acknowledged; the increment must be in the final value;
// - 503 UPSTREAMRESET or 504 TIMEOUT: the outcome is unknown (the command may or may not have run);
// - any other 503 (NOENDPOINT, OVERLOADED): never sent, so never ran.
// Hence acked <= V <= acked + unknown for the final value V, and V <= attempts (no INCR ran twice:
// the gateway never re-sends a write). Also every 200 returned a distinct counter value, each <= V.

import { beforeAll, describe, expect, it } from 'vitest'
import type { TestGateway } from '../helpers/gateway.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { waitForRoles } from '../integration/replication-env.js'
import { backgroundLoad, faultBed, fmt, MAX_SETTLE_MS, maxMs, sleep, tally, type Result } from './fault-env.js'

const CONCURRENCY = 30
const KEY = 'counter'

const bed = faultBed()
const { client } = bed
let primary: RedisServer
let gw: TestGateway

beforeAll(async () => {
  primary = await bed.redis({ appendOnly: true })
  gw = await bed.gateway({ instances: [{ name: 'aof', endpoints: [primary.url] }] })
  await waitForRoles(gw, [{ server: primary, role: 'primary' }])
})

describe('the primary killed during INCR load and restarted from its AOF', () => {
  it('keeps every acknowledged INCR and counts none twice', async () => {
    const base = gw.base('aof')
    const acked = (rs: readonly Result[]): number => rs.filter((r) => r.status === 200).length
    const load = backgroundLoad({ concurrency: CONCURRENCY }, async () => {
      const r = await client.post(base, ['INCR', KEY])
      // Pace the clients while the primary is down, so fast 503s do not spin the CPU.
      if (r.status !== 200) await sleep(10)
      return r
    })

    await waitFor(() => acked(load.results) >= 500, { timeoutMs: 20_000, message: '500 acknowledged INCRs before the kill' })
    await primary.kill('SIGKILL')
    const killedAt = load.results.length
    // Let the clients run into the outage for a while, then bring the primary back from its AOF.
    await waitFor(() => load.results.slice(killedAt).filter((r) => r.status !== 200).length >= 100, {
      timeoutMs: 10_000,
      message: '100 failed INCRs during the outage',
    })
    await primary.restart()
    const restartedAt = load.results.length
    await waitFor(() => acked(load.results.slice(restartedAt)) >= 500, {
      timeoutMs: 20_000,
      message: '500 acknowledged INCRs after the restart',
    })
    const results = await load.stop()

    const direct = primary.client()
    const final = Number(await direct.get(KEY))
    direct.disconnect()

    const ok = results.filter((r) => r.status === 200)
    const unknown = results.filter((r) => (r.status === 503 && r.code === 'UPSTREAMRESET') || r.status === 504)
    const notSent = results.filter((r) => r.status === 503 && r.code !== 'UPSTREAMRESET')
    const other = results.filter((r) => r.status !== 200 && r.status !== 503 && r.status !== 504)
    console.log(
      `[faults/primary-kill] attempts ${results.length}, acked ${ok.length}, unknown outcome ${unknown.length}, ` +
        `refused before sending ${notSent.length}, final value ${final}; outcomes ${JSON.stringify(tally(results))}; ` +
        `max latency ${fmt(maxMs(results))}`,
    )

    expect(other.slice(0, 5)).toEqual([])
    expect(final).toBeGreaterThanOrEqual(ok.length)
    expect(final).toBeLessThanOrEqual(ok.length + unknown.length)
    expect(final).toBeLessThanOrEqual(results.length)
    // Each acknowledged INCR saw its own value: no two replies claim the same increment.
    const values = ok.map((r) => Number(r.result))
    expect(new Set(values).size).toBe(values.length)
    expect(Math.max(...values)).toBeLessThanOrEqual(final)
    expect(maxMs(results)).toBeLessThan(MAX_SETTLE_MS)
  })
})
