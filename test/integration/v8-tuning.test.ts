// The gateway process applies tuneV8() (src/core/v8-tuning.ts) as it starts: under pipeline load,
// with V8's pretenuring trace on, it takes no pretenuring decision once it serves (without the
// import in main.ts it does: bench/README.md, "Tails", fifth pass).

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { freePort } from '../helpers/ports.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { exitWithin, killAll, spawnGateway } from '../helpers/gateway-process.js'

const TOKEN = 'v8-tuning-test-token'
let dir: string
let redis: RedisServer

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-v8-'))
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})
afterEach(killAll)

it('a serving gateway takes no allocation-site pretenuring decision', async () => {
  const dataPort = await freePort()
  const opsPort = await freePort()
  const file = path.join(dir, 'gateway.yaml')
  await writeFile(
    file,
    stringify({
      listen: { data: `127.0.0.1:${dataPort}`, ops: `127.0.0.1:${opsPort}` },
      discovery: { static: { instances: [{ name: 'main', endpoints: [redis.url] }] } },
      auth: { tokens: [{ name: 'app', token: TOKEN, access: 'write', targets: ['*'] }] },
      log: { level: 'warn' },
    }),
  )
  const spawnedAt = performance.now()
  const p = spawnGateway(file, {}, ['--trace-gc', '--trace-pretenuring', '--trace-pretenuring-statistics'])
  await waitFor(async () => (await fetch(`http://127.0.0.1:${opsPort}/readyz`).catch(() => null))?.status === 200, {
    timeoutMs: 30_000,
    message: 'the gateway to be ready',
  })
  // Milliseconds from the spawn to ready: on the process's own clock (that --trace-gc prints, from
  // its start, a little after the spawn), a collection later than this ran while it served.
  const readyMs = performance.now() - spawnedAt
  const base = `http://127.0.0.1:${dataPort}/v1/instances/main`
  const headers = { authorization: `Bearer ${TOKEN}`, 'upstash-encoding': 'base64' }
  expect((await fetch(base, { method: 'POST', headers, body: JSON.stringify(['SET', 'k', 'v'.repeat(100)]) })).status).toBe(200)
  const body = JSON.stringify(Array.from({ length: 100 }, () => ['GET', 'k']))
  // 20 callers, pipelines of 100 GETs: replies in flight at every young collection.
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      for (let i = 0; i < 50; i++) {
        const r = await fetch(`${base}/pipeline`, { method: 'POST', headers, body })
        expect(r.status).toBe(200)
        await r.arrayBuffer()
      }
    }),
  )
  // V8 writes its traces through C's buffered stdout: all of it is there once the process exits.
  p.child.kill('SIGTERM')
  expect(await exitWithin(p, 30_000)).toBe(0)
  // Lines start with [pid:isolate]; tsx's loader runs on an isolate of its own. The gateway's is
  // the one that collected most under the load. A decision is printed during a collection, before
  // that collection's own line ("<ms> ms: Scavenge ..."). Decisions while Node loaded the modules
  // (its loader's own objects) come before the gateway's code runs and are not counted.
  const lines = p.stdout().split('\n')
  const isolateOf = (l: string): string => /^\[\d+:(0x[0-9a-f]+)\]/.exec(l)?.[1] ?? ''
  const collections = new Map<string, number>()
  for (const l of lines) if (/ ms: (Scavenge|Mark)/.test(l)) collections.set(isolateOf(l), (collections.get(isolateOf(l)) ?? 0) + 1)
  const main = [...collections].sort((a, b) => b[1] - a[1])[0]?.[0]
  expect(main, "the trace of the gateway's collections").toBeDefined()
  const serving: string[] = []
  let pending: string[] = []
  let afterReady = 0
  for (const l of lines) {
    if (isolateOf(l) !== main) continue
    if (/pretenuring: AllocationSite\(0x[0-9a-f]+\).*=>/.test(l)) pending.push(l)
    const at = / (\d+) ms: (Scavenge|Mark)/.exec(l)
    if (at === null) continue
    if (Number(at[1]) > readyMs) {
      afterReady++
      serving.push(...pending)
    }
    pending = []
  }
  expect(afterReady, 'collections while serving').toBeGreaterThan(5)
  expect(serving, 'pretenuring decisions while serving').toEqual([])
}, 120_000)
