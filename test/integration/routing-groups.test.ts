// Groups and maintenance on live traffic (README "Routing" and "Annotations"): one real
// redis-server per instance, so where a request landed is read from that server
// (`INFO commandstats` calls, or the value of a key the request incremented). Config changes are
// atomic rewrites of the watched file; every wait is a waitFor with a deadline. "Two gateway
// processes" means the in-process gateway plus `node --import tsx src/main.ts`.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { configObject, startGateway, WRITE_TOKEN, type TestGateway, type TestGatewayOptions, type TestInstance } from '../helpers/gateway.js'
import { freePort } from '../helpers/ports.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const A = 'redis-gateway.io/'
/** Annotation changes in the config file apply within one second. */
const APPLY_DEADLINE = { timeoutMs: 1_000, intervalMs: 10 }

let ra: RedisServer
let rb: RedisServer
let rc: RedisServer
let rd: RedisServer
let direct: Map<RedisServer, Redis>
const gateways: TestGateway[] = []

beforeAll(async () => {
  ;[ra, rb, rc, rd] = await Promise.all([startRedis(), startRedis(), startRedis(), startRedis()])
  direct = new Map([ra, rb, rc, rd].map((s) => [s, s.client()]))
})
afterAll(async () => {
  await Promise.all([ra, rb, rc, rd].map((s) => s?.stop()))
})
beforeEach(async () => {
  for (const [s, c] of direct) {
    await c.call('CLIENT', 'UNPAUSE')
    await c.flushall()
    await s.resetStats()
  }
})
afterEach(async () => {
  for (const c of direct.values()) await c.call('CLIENT', 'UNPAUSE')
  for (const g of gateways.splice(0)) await g.stop()
})

const redisOf = (s: RedisServer): Redis => direct.get(s)!

async function start(opts: Omit<TestGatewayOptions, 'watch'>): Promise<TestGateway> {
  const gw = await startGateway({ ...opts, watch: true })
  gateways.push(gw)
  return gw
}

interface Reply {
  status: number
  body: { result?: unknown; error?: string } & unknown[]
  headers: Headers
}

/** POSTs a command (or a pipeline / transaction body) to `/v1/{kind}/{name}{suffix}`. */
async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${WRITE_TOKEN}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
  return { status: res.status, body: (await res.json()) as Reply['body'], headers: res.headers }
}

const groupUrl = (gw: { url: string }, g: string): string => `${gw.url}/v1/groups/${g}`

/** Runs `n` tasks with at most `concurrency` at a time; resolves with their results in order. */
async function pool<T>(n: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n)
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) {
        const i = next++
        out[i] = await task(i)
      }
    }),
  )
  return out
}

async function calls(s: RedisServer, cmd: string): Promise<number> {
  return (await s.commandStats())[cmd] ?? 0
}

/** Every instance answers on its own URL (connected, role known). */
async function ready(gw: { url: string }, names: string[]): Promise<void> {
  for (const name of names) {
    await waitFor(
      async () => {
        const r = await post(`${gw.url}/v1/instances/${name}`, ['PING'])
        if (r.status !== 200) throw new Error(`${r.status} ${JSON.stringify(r.body)}`)
      },
      { message: `instance ${name} ready at ${gw.url}` },
    )
  }
}

function inst(name: string, server: RedisServer, annotations: Record<string, string> = {}): TestInstance {
  return { name, endpoints: [server.url], annotations }
}

function expectAllOk(replies: Reply[]): void {
  const bad = replies.filter((r) => r.status !== 200)
  expect(bad.map((r) => `${r.status} ${JSON.stringify(r.body)}`)).toEqual([])
}

describe('weighted group: canary on live traffic', () => {
  it('9000/1000 gives ~90/10; weight 0 stops new traffic within 1 s; a drained member is routed around while its URL says 503 DRAINING', async () => {
    const canary = (wa: number, wb: number, aMore: Record<string, string> = {}): Omit<TestGatewayOptions, 'watch'> => ({
      instances: [
        inst('a', ra, { [`${A}groups`]: 'canary', [`${A}weight`]: String(wa), ...aMore }),
        inst('b', rb, { [`${A}groups`]: 'canary', [`${A}weight`]: String(wb) }),
      ],
      groups: { canary: { strategy: 'weighted' } },
    })
    const gw = await start(canary(9000, 1000))
    await ready(gw, ['a', 'b'])
    await Promise.all([ra.resetStats(), rb.resetStats()])

    const N = 2_000
    expectAllOk(await pool(N, 20, (i) => post(groupUrl(gw, 'canary'), ['GET', `k${i}`])))
    const [ga, gb] = [await calls(ra, 'get'), await calls(rb, 'get')]
    expect(ga + gb).toBe(N)
    const share = ga / N
    console.info(`[routing-groups] canary 9000/1000 over ${N} requests: a ${(share * 100).toFixed(1)}%, b ${((gb / N) * 100).toFixed(1)}%`)
    expect(Math.abs(share - 0.9)).toBeLessThan(0.03)

    // Canary off: b to weight 0. Effective (b gets nothing new) within one second of the write.
    await gw.rewrite(canary(9000, 0))
    const t0 = Date.now()
    await waitFor(
      async () => {
        const before = await calls(rb, 'get')
        expectAllOk(await pool(20, 5, () => post(groupUrl(gw, 'canary'), ['GET', 'probe'])))
        return (await calls(rb, 'get')) === before
      },
      { ...APPLY_DEADLINE, message: 'b (weight 0) to get no new group traffic' },
    )
    console.info(`[routing-groups] weight 1000 -> 0 took effect after ${Date.now() - t0} ms`)
    const bBefore = await calls(rb, 'get')
    expectAllOk(await pool(500, 20, (i) => post(groupUrl(gw, 'canary'), ['GET', `k${i}`])))
    expect(await calls(rb, 'get')).toBe(bBefore)
    // Weight 0 only concerns the group: b's own URL still serves.
    expect((await post(gw.base('b'), ['GET', 'k'])).status).toBe(200)

    // Drain a (b back at 1000): the group sends everything to b; a's URL answers 503 DRAINING.
    await gw.rewrite(canary(9000, 1000, { [`${A}maintenance`]: 'drain' }))
    const t1 = Date.now()
    const drained = await waitFor(
      async () => {
        const r = await post(gw.base('a'), ['GET', 'k'])
        return r.status === 503 ? r : false
      },
      { ...APPLY_DEADLINE, message: "a's URL to answer 503 after drain" },
    )
    console.info(`[routing-groups] drain took effect after ${Date.now() - t1} ms`)
    expect(drained.body.error).toMatch(/^DRAINING /)
    expect(Number(drained.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    const aBefore = await calls(ra, 'get')
    const bStart = await calls(rb, 'get')
    expectAllOk(await pool(500, 20, (i) => post(groupUrl(gw, 'canary'), ['GET', `k${i}`])))
    expect(await calls(ra, 'get')).toBe(aBefore)
    expect((await calls(rb, 'get')) - bStart).toBe(500)
  })

  it('every member drained or at weight 0: the group answers 503 NOENDPOINT with Retry-After; an unknown group is 404', async () => {
    const gw = await start({
      instances: [
        inst('a', ra, { [`${A}groups`]: 'g', [`${A}weight`]: '0' }),
        inst('b', rb, { [`${A}groups`]: 'g', [`${A}maintenance`]: 'drain' }),
      ],
    })
    await ready(gw, ['a'])
    const r = await post(groupUrl(gw, 'g'), ['GET', 'k'])
    expect(r.status).toBe(503)
    expect(r.body.error).toMatch(/^NOENDPOINT /)
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    const nf = await post(groupUrl(gw, 'nope'), ['GET', 'k'])
    expect(nf.status).toBe(404)
    expect(nf.body.error).toMatch(/^NOTFOUND /)
  })

  it('round-robin group: strict alternation, weights ignored', async () => {
    const gw = await start({
      instances: [
        inst('a', ra, { [`${A}groups`]: 'rr', [`${A}weight`]: '9000' }),
        inst('b', rb, { [`${A}groups`]: 'rr', [`${A}weight`]: '1' }),
      ],
      groups: { rr: { strategy: 'round-robin' } },
    })
    await ready(gw, ['a', 'b'])
    await Promise.all([ra.resetStats(), rb.resetStats()])
    for (let i = 0; i < 100; i++) expect((await post(groupUrl(gw, 'rr'), ['GET', 'k'])).status).toBe(200)
    expect([await calls(ra, 'get'), await calls(rb, 'get')]).toEqual([50, 50])
  })

  it('least-request group: traffic goes around a member whose requests are stuck', async () => {
    const gw = await start({
      instances: [inst('a', ra, { [`${A}groups`]: 'lr' }), inst('b', rb, { [`${A}groups`]: 'lr' })],
      groups: { lr: { strategy: 'least-request' } },
      // A health check stuck behind the paused writes must not mark a down while the test holds it.
      extra: { health: { interval: '2s', timeout: '20s' } },
    })
    await ready(gw, ['a', 'b'])
    // Warm up both members' latency estimates.
    expectAllOk(await pool(100, 4, () => post(groupUrl(gw, 'lr'), ['INCR', 'warm'])))
    // Writes to a now hang: the gateway's connection to a is blocked behind the first paused write.
    await redisOf(ra).call('CLIENT', 'PAUSE', '10000', 'WRITE')
    // Requests the gateway has sent to a's endpoint and not had answered (execute.ts feeds this,
    // independently of the group's instance-level load): tells "stuck on a" from "done on b".
    const aEndpoint = gw.gateway.pool.get(`127.0.0.1:${ra.port}`)!
    expect(aEndpoint).toBeDefined()
    // Requests stuck on a through its own URL (the instance's load is shared with the group). Ten,
    // so that one slow reply from b (peak-EWMA keeps a peak for seconds) cannot outweigh them.
    const HELD = 10
    const pending = Array.from({ length: HELD }, () => post(gw.base('a'), ['INCR', 'direct']))
    await waitFor(() => aEndpoint.state.load.inflight === HELD, { message: 'requests held on a' })
    let stuck = 0
    const N = 40
    for (let i = 0; i < N; i++) {
      let settled = false
      pending.push(post(groupUrl(gw, 'lr'), ['INCR', `lr:${i}`]).finally(() => (settled = true)))
      await waitFor(() => settled || aEndpoint.state.load.inflight === HELD + stuck + 1, { timeoutMs: 5_000, intervalMs: 2 })
      if (!settled) stuck++
    }
    await redisOf(ra).call('CLIENT', 'UNPAUSE')
    expectAllOk(await Promise.all(pending))
    const onA = (await redisOf(ra).keys('lr:*')).length
    console.info(`[routing-groups] least-request: ${onA} of ${N} requests went to the stalled member`)
    expect(onA).toBe(stuck)
    expect((await redisOf(rb).keys('lr:*')).length).toBe(N - stuck)
    expect(await redisOf(ra).get('direct')).toBe(String(HELD))
    // Blind (random) picking would send ~N/2 there.
    expect(onA).toBeLessThanOrEqual(N / 4)
  })
})

describe('maintenance', () => {
  it.each(['drain', 'read-only'] as const)('in-flight requests finish untouched when the instance switches to %s mid-flight', async (mode) => {
    const cfg = (m: string): Omit<TestGatewayOptions, 'watch'> => ({
      instances: [
        inst('a', ra, { [`${A}groups`]: 'g', [`${A}maintenance`]: m }),
        inst('b', rb, { [`${A}groups`]: 'g', [`${A}weight`]: '0' }),
      ],
    })
    const gw = await start(cfg('off'))
    await ready(gw, ['a', 'b'])
    expect((await post(gw.base('a'), ['SET', 'warm', '1'])).status).toBe(200)

    // Hold a's writes: a batch through a's URL and through the group (all to a: b has weight 0).
    await redisOf(ra).call('CLIENT', 'PAUSE', '1500', 'WRITE')
    let settled = 0
    const batch = [
      ...Array.from({ length: 20 }, () => post(gw.base('a'), ['INCR', 'held'])),
      ...Array.from({ length: 20 }, () => post(groupUrl(gw, 'g'), ['INCR', 'held'])),
      post(`${gw.base('a')}/pipeline`, [['INCR', 'held'], ['GET', 'held']]),
      post(`${gw.base('a')}/multi-exec`, [['INCR', 'held'], ['INCR', 'held']]),
    ].map((p) => p.finally(() => settled++))

    await gw.rewrite(cfg(mode))
    const t0 = Date.now()
    // Watched in-process: a probe request sent before the change would itself be held by the pause.
    await waitFor(() => gw.gateway.table.current.instances.get('a')?.spec.policy.maintenance === mode, {
      ...APPLY_DEADLINE,
      message: `${mode} to take effect`,
    })
    const refused = await post(gw.base('a'), mode === 'drain' ? ['GET', 'x'] : ['SET', 'x', '1'])
    expect(refused.status).toBe(503)
    console.info(`[routing-groups] ${mode} took effect after ${Date.now() - t0} ms (with requests held in flight)`)
    expect(refused.body.error).toMatch(mode === 'drain' ? /^DRAINING / : /^READONLY /)
    // The batch was still in flight when the change took effect.
    expect(settled).toBe(0)

    await redisOf(ra).call('CLIENT', 'UNPAUSE')
    const replies = await Promise.all(batch)
    expectAllOk(replies)
    expect(replies.at(-2)!.body.map((x) => (x as { result: unknown }).result)).toEqual([expect.any(Number), expect.any(String)])
    expect(await redisOf(ra).get('held')).toBe(String(20 + 20 + 1 + 2))
  })

  it('read-only: writes 503 READONLY (command, pipeline with a write, transaction), reads served; back to off, writes work', async () => {
    const cfg = (m: string): Omit<TestGatewayOptions, 'watch'> => ({ instances: [inst('a', ra, { [`${A}maintenance`]: m })] })
    const gw = await start(cfg('off'))
    await ready(gw, ['a'])
    expect((await post(gw.base('a'), ['SET', 'ro:k', 'before'])).status).toBe(200)

    await gw.rewrite(cfg('read-only'))
    const refused = await waitFor(
      async () => {
        const r = await post(gw.base('a'), ['SET', 'ro:probe', 'during'])
        return r.status === 503 ? r : false
      },
      { ...APPLY_DEADLINE, message: 'read-only to take effect' },
    )
    expect(refused.body.error).toMatch(/^READONLY /)
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)

    const setsBefore = await calls(ra, 'set')
    const get = await post(gw.base('a'), ['GET', 'ro:k'])
    expect(get.status).toBe(200)
    expect(get.body.result).toBe('before')
    // The path form, as curl would send it.
    const pathGet = await fetch(`${gw.base('a')}/get/ro:k`, { headers: { authorization: `Bearer ${WRITE_TOKEN}` } })
    expect(pathGet.status).toBe(200)
    const readPipe = await post(`${gw.base('a')}/pipeline`, [['GET', 'ro:k'], ['EXISTS', 'ro:k']])
    expect(readPipe.status).toBe(200)
    expect(readPipe.body).toEqual([{ result: 'before' }, { result: 1 }])
    const writePipe = await post(`${gw.base('a')}/pipeline`, [['GET', 'ro:k'], ['SET', 'ro:k', 'pipe']])
    expect(writePipe.status).toBe(503)
    expect(writePipe.body.error).toMatch(/^READONLY /)
    const tx = await post(`${gw.base('a')}/multi-exec`, [['SET', 'ro:k', 'tx']])
    expect(tx.status).toBe(503)
    for (const args of [['DEL', 'ro:k'], ['INCR', 'n'], ['EXPIRE', 'ro:k', '10']]) {
      expect((await post(gw.base('a'), args)).status).toBe(503)
    }
    expect(await calls(ra, 'set')).toBe(setsBefore)
    expect(await redisOf(ra).get('ro:k')).toBe('before')

    await gw.rewrite(cfg('off'))
    await waitFor(async () => (await post(gw.base('a'), ['SET', 'ro:k', 'after'])).status === 200, {
      ...APPLY_DEADLINE,
      message: 'writes accepted again after read-only -> off',
    })
    expect(await redisOf(ra).get('ro:k')).toBe('after')
  })
})

// --- A second gateway as its own OS process -------------------------------------------------

interface Proc {
  child: ChildProcess
  output: () => string
  exited: Promise<void>
  done: boolean
}

async function spawnGateway(dir: string, opts: Omit<TestGatewayOptions, 'watch'>): Promise<{ proc: Proc; url: string }> {
  const [dataPort, opsPort] = [await freePort(), await freePort()]
  const file = path.join(dir, 'gateway.yaml')
  const cfg = configObject({ ...opts, extra: { ...opts.extra, listen: { data: `127.0.0.1:${dataPort}`, ops: `127.0.0.1:${opsPort}` } } })
  await writeFile(file, stringify(cfg))
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', GATEWAY_CONFIG: file },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()))
  const proc: Proc = {
    child,
    output: () => out,
    done: false,
    exited: new Promise((resolve) => child.once('exit', () => ((proc.done = true), resolve()))),
  }
  const opsUrl = `http://127.0.0.1:${opsPort}`
  await waitFor(
    async () => {
      if (proc.done) throw new Error(`spawned gateway exited early:\n${out}`)
      return (await fetch(`${opsUrl}/readyz`)).status === 200
    },
    { timeoutMs: 30_000, intervalMs: 100, message: 'spawned gateway ready' },
  )
  return { proc, url: `http://127.0.0.1:${dataPort}` }
}

describe('sticky group', () => {
  let dir: string
  let proc: Proc | null = null
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-sticky-'))
  })
  afterAll(async () => {
    if (proc && !proc.done) {
      proc.child.kill('SIGKILL')
      await proc.exited
    }
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('each x-client-id stays on one instance across requests and across two gateway processes; a new member takes ids only to itself', async () => {
    const servers = { a: ra, b: rb, c: rc, d: rd } as const
    const member = (name: keyof typeof servers): TestInstance => inst(name, servers[name], { [`${A}groups`]: 's' })
    const opts = { instances: [member('a'), member('b'), member('c')], groups: { s: { strategy: 'sticky' } } }
    const gw = await start(opts)
    const spawned = await spawnGateway(dir, opts)
    proc = spawned.proc
    await ready(gw, ['a', 'b', 'c'])
    await ready(spawned, ['a', 'b', 'c']).catch((err: Error) => {
      throw new Error(`${err.message}\nspawned gateway output:\n${proc!.output()}`)
    })

    // 200 client ids, two requests each through each gateway, interleaved.
    const ids = Array.from({ length: 200 }, (_, i) => `client-${i}`)
    const urls = [groupUrl(gw, 's'), groupUrl(spawned, 's'), groupUrl(gw, 's'), groupUrl(spawned, 's')]
    for (const url of urls) {
      expectAllOk(await pool(ids.length, 20, (i) => post(url, ['INCR', `sticky:${ids[i]}`], { 'x-client-id': ids[i]! })))
    }
    const where = new Map<string, string>()
    const perInstance: Record<string, number> = {}
    const values = await Promise.all(
      (['a', 'b', 'c', 'd'] as const).map(async (n) => [n, await redisOf(servers[n]).mget(ids.map((id) => `sticky:${id}`))] as const),
    )
    const problems: string[] = []
    ids.forEach((id, i) => {
      const hits = values.filter(([, v]) => v[i] !== null).map(([n, v]) => `${n}=${v[i]}`)
      if (hits.length !== 1 || !hits[0]!.endsWith('=4')) problems.push(`${id}: ${hits.join(' ')}`)
      else {
        const n = hits[0]!.split('=')[0]!
        where.set(id, n)
        perInstance[n] = (perInstance[n] ?? 0) + 1
      }
    })
    expect(problems, 'client ids not on exactly one instance (with all 4 requests)').toEqual([])
    console.info(`[routing-groups] sticky: 200 ids over a/b/c: ${JSON.stringify(perInstance)}`)
    for (const n of ['a', 'b', 'c']) expect(perInstance[n] ?? 0).toBeGreaterThan(200 * 0.2)
    expect(perInstance.d).toBeUndefined()

    // Without x-client-id: still served, spread over the members.
    expectAllOk(await pool(60, 10, () => post(groupUrl(gw, 's'), ['INCR', 'anon'])))
    expectAllOk(await pool(60, 10, () => post(groupUrl(spawned, 's'), ['INCR', 'anon'])))
    const anon = await Promise.all([ra, rb, rc].map(async (s) => Number((await redisOf(s).get('anon')) ?? 0)))
    expect(anon.reduce((x, y) => x + y, 0)).toBe(120)
    expect(anon.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2)

    // d joins the group (in-process gateway only): ids move only to d, about a quarter of them.
    await gw.rewrite({ ...opts, instances: [...opts.instances, member('d')] })
    await waitFor(async () => (await post(`${gw.base('d')}`, ['PING'])).status === 200, { ...APPLY_DEADLINE, message: 'd added' })
    await waitFor(() => gw.gateway.table.current.groups.get('s')?.members.includes('d') === true, APPLY_DEADLINE)
    expectAllOk(await pool(ids.length, 20, (i) => post(groupUrl(gw, 's'), ['INCR', `sticky:${ids[i]}`], { 'x-client-id': ids[i]! })))
    const after = await Promise.all(
      (['a', 'b', 'c', 'd'] as const).map(async (n) => [n, await redisOf(servers[n]).mget(ids.map((id) => `sticky:${id}`))] as const),
    )
    let moved = 0
    const wrong: string[] = []
    ids.forEach((id, i) => {
      const old = where.get(id)!
      const v = Object.fromEntries(after.map(([n, vals]) => [n, vals[i]]))
      if (v[old] === '5') return
      if (v[old] === '4' && v.d === '1') moved++
      else wrong.push(`${id} (was ${old}): ${JSON.stringify(v)}`)
    })
    expect(wrong, 'ids that moved somewhere other than the new member').toEqual([])
    console.info(`[routing-groups] sticky: d joined, ${moved} of 200 ids moved (all to d)`)
    expect(moved).toBeGreaterThan(200 * 0.1)
    expect(moved).toBeLessThan(200 * 0.4)

    // The spawned gateway (membership a, b, c) still sends every id where it always did.
    expectAllOk(await pool(ids.length, 20, (i) => post(groupUrl(spawned, 's'), ['INCR', `sticky:${ids[i]}`], { 'x-client-id': ids[i]! })))
    const third = await Promise.all(([ra, rb, rc] as const).map((s) => redisOf(s).mget(ids.map((id) => `sticky:${id}`))))
    const names = ['a', 'b', 'c']
    ids.forEach((id, i) => {
      const old = where.get(id)!
      const v = third[names.indexOf(old)]![i]
      expect([`${id}=5`, `${id}=6`]).toContain(`${id}=${v}`)
    })
  }, 90_000)
})

describe('routing table updates', () => {
  it("a burst of annotation updates to one instance never disturbs another instance's requests (or its route object)", async () => {
    const cfg = (i: number): Omit<TestGatewayOptions, 'watch'> => ({
      instances: [
        inst('a', ra, {
          [`${A}weight`]: String(i * 10),
          [`${A}maintenance`]: ['off', 'drain', 'read-only'][i % 3]!,
          [`${A}groups`]: i % 2 === 0 ? 'g' : 'g,h',
        }),
        inst('b', rb, { [`${A}groups`]: 'g' }),
      ],
    })
    const gw = await start(cfg(0))
    await ready(gw, ['a', 'b'])
    const bRoute = gw.gateway.table.current.instances.get('b')
    expect(bRoute).toBeDefined()

    let stop = false
    const replies: Reply[] = []
    const traffic = Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let n = 0; !stop; n++) {
          replies.push(await post(gw.base('b'), n % 2 === 0 ? ['INCR', `burst:${w}`] : ['GET', `burst:${w}`]))
        }
      }),
    )
    const UPDATES = 15
    for (let i = 1; i <= UPDATES; i++) {
      await gw.rewrite(cfg(i))
      await waitFor(() => gw.gateway.table.current.instances.get('a')?.spec.policy.weight === i * 10, {
        ...APPLY_DEADLINE,
        message: `update ${i} applied`,
      })
      expect(gw.gateway.table.current.instances.get('b')).toBe(bRoute)
    }
    stop = true
    await traffic
    console.info(`[routing-groups] ${replies.length} requests to b during ${UPDATES} updates of a`)
    expect(replies.length).toBeGreaterThan(UPDATES * 8)
    expectAllOk(replies)
    // a's last update is in force.
    const last = ['off', 'drain', 'read-only'][UPDATES % 3]
    expect(gw.gateway.table.current.instances.get('a')?.spec.policy.maintenance).toBe(last)
    const a = await post(gw.base('a'), ['SET', 'x', '1'])
    expect(a.status).toBe(last === 'off' ? 200 : 503)
  })
})
