// Read policies on a real primary and two real replicas, proven with each server's INFO
// commandstats. One gateway serves the same three servers under four instance names, one per
// read policy.
//
// Writes use INCRBYFLOAT (propagated to replicas as SET, so `incrbyfloat` only counts where the
// client sent it); reads use GET/MGET (never propagated). See replication-env.ts.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { Redis } from '@upstash/redis'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'
import {
  allOk,
  HEALTH,
  load,
  measure,
  resultOf,
  send,
  startTopology,
  waitForRoles,
  type Topology,
} from './replication-env.js'

// The read policy decides which endpoints are eligible; the strategy picks among them. These
// instances use round-robin, which visits every eligible endpoint in turn, so the shares below show
// the whole eligible set. Under the default least-request, an endpoint that answered one read
// slowly (a busy CI machine) keeps a high peak-EWMA estimate for seconds and can take no reads at
// all in a short run, which is that balancer working as designed, not a policy failure. The default
// strategy is checked separately (pol-replica-lr) for what the policy guarantees: none on the primary.
const RR = { 'redis-gateway.io/strategy': 'round-robin' }
const POLICIES = {
  'pol-primary': RR, // read-policy: the default
  'pol-prefer': { ...RR, 'redis-gateway.io/read-policy': 'prefer-replica' },
  'pol-replica': { ...RR, 'redis-gateway.io/read-policy': 'replica' },
  'pol-any': { ...RR, 'redis-gateway.io/read-policy': 'any' },
} as const
type PolicyInstance = keyof typeof POLICIES
/** The replica policy under the default strategy (least-request). */
const LR_INSTANCE = 'pol-replica-lr'

const N = 200
const CONCURRENCY = 8

let topo: Topology
let gw: TestGateway

beforeAll(async () => {
  topo = await startTopology()
  gw = await startGateway({
    instances: [
      ...Object.entries(POLICIES).map(([name, annotations]) => ({ name, endpoints: topo.urls, annotations })),
      { name: LR_INSTANCE, endpoints: topo.urls, annotations: { 'redis-gateway.io/read-policy': 'replica' } },
    ],
    extra: HEALTH,
  })
  await waitForRoles(gw, [
    { server: topo.primary, role: 'primary' },
    { server: topo.r1, role: 'replica' },
    { server: topo.r2, role: 'replica' },
  ])
  // Something to read.
  await topo.primary.client().mset('rr:a', '1', 'rr:b', '2')
  await waitFor2Replicas()
})

afterAll(async () => {
  await gw?.stop()
  await topo?.stop()
})

/** Both replicas have applied the seed keys. */
async function waitFor2Replicas(): Promise<void> {
  for (const r of [topo.r1, topo.r2]) {
    const c = r.client()
    await waitFor(async () => (await c.get('rr:b')) === '2', { message: `replica ${r.port} to have the seed keys` })
    c.disconnect()
  }
}

const reads = (instance: PolicyInstance, n = N): Promise<void> =>
  load(n, CONCURRENCY, () => send(gw.base(instance), ['GET', 'rr:a'])).then(allOk)

const writes = (instance: PolicyInstance, n = 50): Promise<void> =>
  load(n, CONCURRENCY, () => send(gw.base(instance), ['INCRBYFLOAT', `rr:w:${instance}`, '1'])).then(allOk)

/** [primary, r1, r2] GET counts while `instance` serves N reads. */
async function readShares(instance: PolicyInstance): Promise<number[]> {
  const got = await measure(topo.all, ['get'], () => reads(instance))
  console.log(`read shares ${instance} [primary, r1, r2]:`, got['get'])
  return got['get']!
}

describe('single commands: reads follow the read policy, writes go to the primary', () => {
  test("read-policy 'primary' (no annotation): every GET on the primary", async () => {
    expect(await readShares('pol-primary')).toEqual([N, 0, 0])
  })

  // Round-robin gives each eligible endpoint N/n reads on a stable table; the margins allow for a
  // replica briefly filtered out (a late health check on a busy machine), not for a missing one.
  test("read-policy 'prefer-replica': GETs spread over both replicas, none on the primary", async () => {
    const [p, r1, r2] = await readShares('pol-prefer')
    expect(p).toBe(0)
    expect(r1! + r2!).toBe(N)
    expect(r1).toBeGreaterThan(N / 4)
    expect(r2).toBeGreaterThan(N / 4)
  })

  test("read-policy 'replica': GETs spread over both replicas, none on the primary", async () => {
    const [p, r1, r2] = await readShares('pol-replica')
    expect(p).toBe(0)
    expect(r1! + r2!).toBe(N)
    expect(r1).toBeGreaterThan(N / 4)
    expect(r2).toBeGreaterThan(N / 4)
  })

  test("read-policy 'any': all three servers take GETs", async () => {
    const [p, r1, r2] = await readShares('pol-any')
    expect(p! + r1! + r2!).toBe(N)
    for (const share of [p, r1, r2]) expect(share).toBeGreaterThan(N / 6)
  })

  test("read-policy 'replica' under the default least-request: no GET on the primary", async () => {
    const got = await measure(topo.all, ['get'], () =>
      load(N, CONCURRENCY, () => send(gw.base(LR_INSTANCE), ['GET', 'rr:a'])).then(allOk),
    )
    console.log(`read shares ${LR_INSTANCE} [primary, r1, r2]:`, got['get'])
    expect(got['get']![0]).toBe(0)
    expect(got['get']![1]! + got['get']![2]!).toBe(N)
  })

  test.each(Object.keys(POLICIES) as PolicyInstance[])('%s: every write lands on the primary', async (instance) => {
    const got = await measure(topo.all, ['incrbyfloat', 'set'], () => writes(instance))
    expect(got['incrbyfloat']).toEqual([50, 0, 0])
    // Sanity: the replicas did apply them, through replication (as SET).
    expect(got['set']![0]).toBe(0)
    expect(got['set']![1]).toBeGreaterThan(0)
    expect(await topo.primary.client().get(`rr:w:${instance}`)).toMatch(/^\d+$/)
  })

  test('concurrent writes through all four instances: every one on the primary, none refused by a replica', async () => {
    const got = await measure(topo.all, ['incrbyfloat'], async () => {
      await Promise.all((Object.keys(POLICIES) as PolicyInstance[]).map((i) => writes(i, 20)))
    })
    expect(got['incrbyfloat']).toEqual([80, 0, 0])
  })
})

describe('pipelines and transactions', () => {
  const writePipeline = [
    ['GET', 'rr:a'],
    ['INCRBYFLOAT', 'rr:pw', '1'],
    ['MGET', 'rr:a', 'rr:b'],
  ]
  const readPipeline = [
    ['GET', 'rr:a'],
    ['MGET', 'rr:a', 'rr:b'],
    ['GET', 'rr:b'],
  ]

  test.each(Object.keys(POLICIES) as PolicyInstance[])(
    '%s: a pipeline with one write goes wholly to the primary',
    async (instance) => {
      const got = await measure(topo.all, ['get', 'mget', 'incrbyfloat'], async () => {
        const replies = await load(40, CONCURRENCY, () => send(gw.base(instance), writePipeline, { path: '/pipeline' }))
        allOk(replies)
        for (const r of replies) {
          const items = r.body as { result: unknown }[]
          expect(items).toHaveLength(3)
          expect(items[0]).toEqual({ result: '1' })
          expect(items[2]).toEqual({ result: ['1', '2'] })
        }
      })
      expect(got).toEqual({ get: [40, 0, 0], mget: [40, 0, 0], incrbyfloat: [40, 0, 0] })
    },
  )

  test.each([
    ['pol-primary', 'primary only'],
    ['pol-prefer', 'replicas only'],
    ['pol-replica', 'replicas only'],
    ['pol-any', 'all three'],
  ] as const)('%s: a read-only pipeline follows the read policy (%s)', async (instance, expected) => {
    const got = await measure(topo.all, ['get', 'mget'], async () => {
      const replies = await load(120, CONCURRENCY, () => send(gw.base(instance), readPipeline, { path: '/pipeline' }))
      allOk(replies)
      for (const r of replies) expect(r.body).toEqual([{ result: '1' }, { result: ['1', '2'] }, { result: '2' }])
    })
    console.log(`read-only pipelines ${instance} [primary, r1, r2]: get`, got['get'], 'mget', got['mget'])
    const [p, r1, r2] = got['mget']!
    expect(p! + r1! + r2!).toBe(120)
    // A pipeline runs on one endpoint: its two GETs went where its MGET went.
    expect(got['get']).toEqual(got['mget']!.map((x) => x * 2))
    if (expected === 'primary only') expect(got['mget']).toEqual([120, 0, 0])
    else if (expected === 'replicas only') {
      expect(p).toBe(0)
      expect(r1).toBeGreaterThan(120 / 4)
      expect(r2).toBeGreaterThan(120 / 4)
    } else for (const share of [p, r1, r2]) expect(share).toBeGreaterThan(120 / 6)
  })

  test.each(Object.keys(POLICIES) as PolicyInstance[])(
    '%s: /multi-exec goes to the primary, even when it only reads',
    async (instance) => {
      const got = await measure(topo.all, ['get', 'mget', 'exec', 'incrbyfloat'], async () => {
        const ro = await load(30, CONCURRENCY, () => send(gw.base(instance), readPipeline, { path: '/multi-exec' }))
        allOk(ro)
        const rw = await load(30, CONCURRENCY, () => send(gw.base(instance), writePipeline, { path: '/multi-exec' }))
        allOk(rw)
      })
      expect(got['exec']![0]).toBe(60)
      expect(got['get']).toEqual([30 * 2 + 30, 0, 0])
      expect(got['mget']).toEqual([60, 0, 0])
      expect(got['incrbyfloat']).toEqual([30, 0, 0])
    },
  )
})

describe('the @upstash/redis SDK, unchanged', () => {
  test("prefer-replica: SDK reads (auto-pipelined) land on the replicas, SDK writes on the primary", async () => {
    const sdk = (): Redis =>
      new Redis({ url: gw.base('pol-prefer'), token: WRITE_TOKEN, retry: false, enableTelemetry: false })
    const got = await measure(topo.all, ['get', 'incrbyfloat'], async () => {
      // Each SDK client starts without a sync token, so its reads are free to use replicas;
      // concurrent calls of one client are batched into read-only pipelines.
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          const c = sdk()
          const values = await Promise.all(Array.from({ length: 5 }, () => c.get<number>('rr:a')))
          expect(values).toEqual([1, 1, 1, 1, 1])
        }),
      )
      const w = sdk()
      for (let i = 0; i < 10; i++) await w.incrbyfloat('rr:sdk', 1)
    })
    console.log('SDK prefer-replica [primary, r1, r2]: get', got['get'], 'incrbyfloat', got['incrbyfloat'])
    expect(got['get']![0]).toBe(0)
    expect(got['get']![1]! + got['get']![2]!).toBe(100)
    expect(got['get']![1]).toBeGreaterThan(0)
    expect(got['get']![2]).toBeGreaterThan(0)
    expect(got['incrbyfloat']).toEqual([10, 0, 0])
    expect(resultOf(await send(gw.base('pol-primary'), ['GET', 'rr:sdk']))).toBe('10')
  })
})
