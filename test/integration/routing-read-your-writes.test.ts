// Read-your-writes with `upstash-sync-token`, on a real primary and
// two real replicas, through one gateway and through two gateway processes (A in-process, B a
// separate `node src/main.ts`), and with the @upstash/redis SDK's default readYourWrites.
//
// To make the test meaningful, replica r1 lags for the whole file: `CLIENT PAUSE <ms> WRITE` on it
// (Redis 7.0 then receives the replication stream but applies none of it, while it stays healthy,
// linked, and answers reads with old data; see routing-replica-health.test.ts). Its lag stays far
// below the default max-replica-lag (1 MiB), so without a token r1 IS used and serves stale
// reads (the control tests show it, with commandstats); with the token no read may be stale.
// Reads use the round-robin strategy so that token-less reads reliably alternate over r1 and r2.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { Redis } from '@upstash/redis'
import type { Redis as IORedis } from 'ioredis'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import type { TestInstance } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'
import {
  HEALTH,
  MAX_INTERVAL_MS,
  measure,
  resultOf,
  send,
  spawnGateway,
  startTopology,
  waitForRoles,
  type GatewayProcess,
  type Topology,
} from './replication-env.js'

const ROUNDS = 200

let topo: Topology
let a: TestGateway
let b: GatewayProcess
let r1c: IORedis

function instances(urls: string[]): TestInstance[] {
  const rr = { 'redis-gateway.io/strategy': 'round-robin' }
  return [
    { name: 'ryw-rep', endpoints: urls, annotations: { ...rr, 'redis-gateway.io/read-policy': 'replica' } },
    { name: 'ryw-prefer', endpoints: urls, annotations: { ...rr, 'redis-gateway.io/read-policy': 'prefer-replica' } },
    // The default balancer (least-request), for the SDK.
    { name: 'ryw-lr', endpoints: urls, annotations: { 'redis-gateway.io/read-policy': 'replica' } },
  ]
}

beforeAll(async () => {
  topo = await startTopology()
  ;[a, b] = await Promise.all([
    startGateway({ instances: instances(topo.urls), extra: HEALTH }),
    spawnGateway({ instances: instances(topo.urls), extra: HEALTH }),
  ])
  await waitForRoles(a, [
    { server: topo.primary, role: 'primary' },
    { server: topo.r1, role: 'replica' },
    { server: topo.r2, role: 'replica' },
  ])
  // Process B: ready once its replica-only reads succeed on both replicas.
  await waitFor(
    async () => {
      const got = await measure(topo.all, ['get'], async () => {
        for (let i = 0; i < 10; i++) resultOf(await send(b.base('ryw-rep'), ['GET', 'ryw:none']))
      })
      return got['get']![1]! > 0 && got['get']![2]! > 0
    },
    { timeoutMs: 15_000, message: 'gateway process B to route to both replicas' },
  )
  r1c = topo.r1.client()
  await r1c.call('CLIENT', 'PAUSE', '120000', 'WRITE')
})

afterAll(async () => {
  await r1c?.call('CLIENT', 'UNPAUSE').catch(() => {})
  await Promise.all([a?.stop(), b?.stop()])
  await topo?.stop()
})

interface Round {
  written: number
  read: number
}

/** INCR through `writeBase`, then GET through `readBase`, with or without the write's token. */
async function rounds(
  key: string,
  writeBase: string,
  readBase: string,
  withToken: boolean,
  n = ROUNDS,
): Promise<Round[]> {
  const out: Round[] = []
  for (let i = 0; i < n; i++) {
    const w = await send(writeBase, ['INCR', key])
    const written = Number(resultOf(w))
    expect(w.syncToken).toBeTruthy()
    const r = await send(readBase, ['GET', key], withToken ? { syncToken: w.syncToken } : {})
    out.push({ written, read: Number(resultOf(r)) })
  }
  return out
}

const stale = (rs: readonly Round[]): Round[] => rs.filter((r) => r.read !== r.written)

describe('control: without a token, a replica read can be stale', () => {
  test('one gateway: INCR then GET without the header; r1 (lagging) serves some reads, and those are stale', async () => {
    let rs: Round[] = []
    const got = await measure(topo.all, ['get'], async () => {
      rs = await rounds('ryw:ctl:a', a.base('ryw-rep'), a.base('ryw-rep'), false, 100)
    })
    console.log(`no token, one gateway: ${stale(rs).length}/100 stale; GETs [primary, r1, r2]:`, got['get'])
    expect(got['get']![0]).toBe(0)
    expect(got['get']![1]).toBeGreaterThan(0)
    expect(stale(rs).length).toBeGreaterThan(0)
    // Never newer than the write, of course.
    for (const r of rs) expect(r.read).toBeLessThanOrEqual(r.written)
  })

  test('two processes: INCR through A, GET through B without the header: some reads are stale', async () => {
    const rs = await rounds('ryw:ctl:ab', a.base('ryw-rep'), b.base('ryw-rep'), false, 100)
    console.log(`no token, A -> B: ${stale(rs).length}/100 stale`)
    expect(stale(rs).length).toBeGreaterThan(0)
  })
})

describe('with the upstash-sync-token of the write, a read always sees it', () => {
  test.each(['ryw-rep', 'ryw-prefer'])('one gateway (%s): 200 x INCR then GET with the token, none stale, r1 never used', async (instance) => {
    let rs: Round[] = []
    const got = await measure(topo.all, ['get'], async () => {
      rs = await rounds(`ryw:one:${instance}`, a.base(instance), a.base(instance), true)
    })
    console.log(`token, one gateway, ${instance}: GETs [primary, r1, r2]:`, got['get'])
    expect(stale(rs)).toEqual([])
    // r1 never reached any of these tokens, so it must not have served one of the reads.
    expect(got['get']![1]).toBe(0)
    expect(got['get']!.reduce((x, y) => x + y, 0)).toBe(ROUNDS)
  })

  test('two processes: INCR through A, GET through B with the token (and the other way round), none stale', async () => {
    const ab = await rounds('ryw:two:ab', a.base('ryw-rep'), b.base('ryw-rep'), true)
    const ba = await rounds('ryw:two:ba', b.base('ryw-rep'), a.base('ryw-rep'), true)
    expect(stale(ab)).toEqual([])
    expect(stale(ba)).toEqual([])
  })

  test('two processes, chained: write via A, read via B with it, then read via A with the token B returned', async () => {
    for (let i = 0; i < 100; i++) {
      const w = await send(a.base('ryw-rep'), ['INCR', 'ryw:chain'])
      const written = resultOf(w)
      const r1 = await send(b.base('ryw-rep'), ['GET', 'ryw:chain'], { syncToken: w.syncToken })
      expect(resultOf(r1)).toBe(String(written))
      expect(r1.syncToken).toBeTruthy()
      const r2 = await send(a.base('ryw-rep'), ['GET', 'ryw:chain'], { syncToken: r1.syncToken })
      expect(resultOf(r2)).toBe(String(written))
    }
  })

  test('pipelines and transactions: a token from /pipeline or /multi-exec covers the next read', async () => {
    const base = a.base('ryw-rep')
    for (let i = 1; i <= 100; i++) {
      const atomic = i % 2 === 0
      const w = await send(base, [['INCR', 'ryw:pipe'], ['SET', 'ryw:pipe:last', String(i)]], { path: atomic ? '/multi-exec' : '/pipeline' })
      expect(w.status).toBe(200)
      const written = (w.body as { result: unknown }[])[0]!.result
      const r = await send(base, [['GET', 'ryw:pipe'], ['GET', 'ryw:pipe:last']], { path: '/pipeline', syncToken: w.syncToken })
      expect(r.body).toEqual([{ result: String(written) }, { result: String(i) }])
    }
  })

  test('the token is an offset, not "always the primary": once r2 is known to have reached it, r2 serves it, r1 never', async () => {
    const w = await send(a.base('ryw-rep'), ['INCR', 'ryw:known'])
    const written = String(resultOf(w))
    const t0 = Date.now()
    await waitFor(
      async () => {
        const got = await measure(topo.all, ['get'], async () => {
          for (let i = 0; i < 20; i++) {
            expect(resultOf(await send(a.base('ryw-rep'), ['GET', 'ryw:known'], { syncToken: w.syncToken }))).toBe(written)
          }
        })
        return got['get']![0] === 0 && got['get']![1] === 0 && got['get']![2] === 20
      },
      { timeoutMs: 2 * MAX_INTERVAL_MS + 500, intervalMs: 20, message: 'token reads to be served by r2 alone' },
    )
    console.log(`a token became servable by the caught-up replica after ${Date.now() - t0} ms`)
    // Through process B too (its own health checks).
    const got = await measure(topo.all, ['get'], async () => {
      await waitFor(async () => resultOf(await send(b.base('ryw-rep'), ['GET', 'ryw:known'], { syncToken: w.syncToken })) === written, {
        timeoutMs: 2 * MAX_INTERVAL_MS + 500,
      })
      for (let i = 0; i < 20; i++) {
        expect(resultOf(await send(b.base('ryw-rep'), ['GET', 'ryw:known'], { syncToken: w.syncToken }))).toBe(written)
      }
    })
    expect(got['get']![1]).toBe(0)
  })
})

describe('the @upstash/redis SDK (default readYourWrites) sees its own writes', () => {
  const sdk = (instance: string, readYourWrites?: boolean): Redis =>
    new Redis({
      url: a.base(instance),
      token: WRITE_TOKEN,
      retry: false,
      enableTelemetry: false,
      ...(readYourWrites === undefined ? {} : { readYourWrites }),
    })

  test.each(['ryw-rep', 'ryw-lr'])('%s: 200 x set then get (twice), every get sees the set; r1 never serves', async (instance) => {
    const c = sdk(instance)
    const got = await measure(topo.all, ['get', 'set'], async () => {
      for (let i = 0; i < ROUNDS; i++) {
        expect(await c.set(`ryw:sdk:${instance}`, i)).toBe('OK')
        expect(await c.get(`ryw:sdk:${instance}`)).toBe(i)
        // The second read carries the token the first read returned.
        expect(await c.get(`ryw:sdk:${instance}`)).toBe(i)
      }
    })
    console.log(`SDK readYourWrites ${instance}: GETs [primary, r1, r2]:`, got['get'])
    expect(got['get']![1]).toBe(0)
    expect(got['set']![0]).toBe(ROUNDS)
  })

  test('control: the SDK with readYourWrites: false does read stale data from the lagging replica', async () => {
    const c = sdk('ryw-rep', false)
    let staleReads = 0
    for (let i = 0; i < 100; i++) {
      await c.set('ryw:sdk:off', i)
      if ((await c.get('ryw:sdk:off')) !== i) staleReads++
    }
    console.log(`SDK readYourWrites: false: ${staleReads}/100 stale`)
    expect(staleReads).toBeGreaterThan(0)
  })
})
