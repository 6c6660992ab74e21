// Big replies from Redis: a real redis-server holds a 200 MiB value (made with one
// SETRANGE by the write token through the gateway), and clients try to make the gateway hold it.
// The gateway runs as a child process (`node --import tsx src/main.ts`, gateway-process.ts), a new
// one per test, so that its memory can be read from /proc/<pid>/status: VmRSS now and VmHWM, the
// peak, reset at the start of each case by writing 5 to /proc/<pid>/clear_refs. Each case prints
// what it measured and bounds the peak's growth over the RSS at start (PEAK_GROWTH_BOUND).
//
// Configured for the test: limits.inflightBytes 64 MiB, limits.writeTimeout 2 s, and a generous
// redis.commandTimeout (60 s: Redis streams one client only ~100-200 MB/s here, so a refused
// 200 MiB reply takes seconds to pass, and no case may depend on the machine's speed);
// limits.maxReply 10 MiB (its default until it became 64 MiB). Small reads by another client with the same read
// token run during every attack and must all be served; how long they waited is printed (they
// share the read level's one connection per endpoint with the attack), not asserted.
//
// Not repeated here: test/security/http-bombs.test.ts ("clients that never read their big replies
// are disconnected after limits.writeTimeout, and the budget is back to 0": two in-process clients,
// six 1 MiB replies each, budget and disconnection checked), src/http/server.test.ts and
// src/http/fast-lane.test.ts (the write timeout of one connection). The non-reader case here is the
// same attack at 20 connections and 9 MiB replies, measured as the process's memory.

import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { stringify } from 'yaml'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { ADMIN_TOKEN, READ_TOKEN, WRITE_TOKEN } from '../helpers/gateway.js'
import { killAll, spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js'
import { freePort } from '../helpers/ports.js'
import { head, parseAll, RawConnection } from '../helpers/raw-http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { post } from '../helpers/rest.js'
import { waitFor } from '../helpers/wait.js'

const MiB = 1024 * 1024
const BIG = 200 * MiB
/** A GETRANGE just under limits.maxReply (10 MiB). */
const SLICE = 9 * MiB
/** limits.inflightBytes of the gateway under test. */
const INFLIGHT = 64 * MiB
/**
 * How far the peak RSS may rise above the RSS at start, in any case. The child runs through the tsx
 * loader, which alone takes ~215 MiB here (a built gateway starts near 70 MiB), so the bound is on
 * the growth: 3 x limits.inflightBytes. Measured on 6 Dec 2026: +30 to +104 MiB in every case;
 * before replies were charged as they stream in, one GET of this value took +1.7 GB, and before
 * their JSON was charged too, 20 UTF-8 non-readers took +931 MiB (each 9 MiB of 0x00 bytes is
 * 54 MiB of `\u0000` text). The allowance over inflightBytes is for what the budget cannot see:
 * copies of the text on its way into the socket, and garbage not yet collected.
 */
const PEAK_GROWTH_BOUND = 3 * INFLIGHT
/** RSS allowed once a case is over and the process idle again, above the RSS measured at start. */
const IDLE_GROWTH_BOUND = 100 * MiB

let dir: string
let redis: RedisServer
let proxy: FaultProxy
let gw: GatewayProcess
let dataPort: number
let opsUrl: string
/** VmRSS once the gateway was serving, before any big reply. */
let baselineRss: number

/** The gateway's config file; each test starts its own process from it (a clean memory baseline). */
let configFile: string
let made = false

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'rg-big-replies-'))
  redis = await startRedis()
  // `slow`: the same Redis behind a proxy the abandoned-request case stalls.
  proxy = await startFaultProxy({ port: redis.port })
  const ops = await freePort()
  dataPort = await freePort()
  opsUrl = `http://127.0.0.1:${ops}`
  configFile = path.join(dir, 'gateway.yaml')
  await writeFile(
    configFile,
    stringify({
      listen: { data: `127.0.0.1:${dataPort}`, ops: `127.0.0.1:${ops}` },
      discovery: {
        static: {
          instances: [
            { name: 'big', endpoints: [redis.url] },
            { name: 'slow', endpoints: [proxy.url] },
          ],
        },
      },
      auth: {
        tokens: [
          { name: 'admin', token: ADMIN_TOKEN, access: 'admin', targets: ['*'] },
          { name: 'writer', token: WRITE_TOKEN, access: 'write', targets: ['*'] },
          { name: 'reader', token: READ_TOKEN, access: 'read', targets: ['*'] },
        ],
      },
      // Redis sends one client ~100-200 MB/s here (its 64 KiB per event-loop turn): a refused
      // 200 MiB reply takes seconds to stream past. Generous, so that no case depends on speed.
      redis: { commandTimeout: '60s', connectTimeout: '1s' },
      limits: { inflightBytes: `${INFLIGHT}B`, writeTimeout: '2s', maxReply: '10MiB' },
      log: { level: 'warn' },
    }),
  )
}, 60_000)

beforeEach(async () => {
  gw = spawnGateway(configFile)
  await waitFor(
    async () => {
      if (gw.done) throw new Error(`gateway exited early\nstdout: ${gw.stdout()}\nstderr: ${gw.stderr()}`)
      return (await fetch(`${opsUrl}/readyz`)).status === 200
    },
    { timeoutMs: 30_000, intervalMs: 100, message: 'the gateway to be ready' },
  )
  if (!made) {
    // The 200 MiB value, made by the write token through the gateway with one SETRANGE.
    expect(await call('big', ['SETRANGE', 'big', BIG - 1, 'x'], WRITE_TOKEN)).toEqual({ status: 200, body: { result: BIG } })
    expect(await call('big', ['SET', 'small', 'hello'], WRITE_TOKEN)).toEqual({ status: 200, body: { result: 'OK' } })
    made = true
  }
  await waitFor(async () => (await call('big', ['GET', 'small'])).status === 200, { timeoutMs: 15_000, message: 'the big instance to serve' })
  await waitFor(async () => (await call('slow', ['GET', 'small'])).status === 200, { timeoutMs: 15_000, message: 'the slow instance to serve' })
  baselineRss = status().rss
  console.log(`[big-replies] gateway pid ${gw.child.pid}: VmRSS at start ${mib(baselineRss)}`)
}, 60_000)

afterEach(async () => {
  const crashed = gw?.done === true
  await killAll()
  expect(crashed, `the gateway exited during the test; stderr: ${gw?.stderr().slice(-2000)}`).toBe(false)
})

afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`

/** VmRSS and VmHWM of the gateway, in bytes. */
function status(): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${gw.child.pid}/status`, 'utf8')
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN) * 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

/** Resets VmHWM to the current RSS, so the next status().hwm is the peak of what follows. */
function resetPeak(): void {
  writeFileSync(`/proc/${gw.child.pid}/clear_refs`, '5')
}

/** Asserts the process is alive, prints its peak and current RSS, and bounds the peak's growth. */
function checkPeak(what: string): { rss: number; hwm: number } {
  expect(gw.done, `the gateway exited; stderr: ${gw.stderr().slice(-2000)}`).toBe(false)
  const s = status()
  console.log(`[big-replies] ${what}: peak VmHWM ${mib(s.hwm)} (+${mib(s.hwm - baselineRss)} over the start), VmRSS now ${mib(s.rss)}`)
  expect.soft(s.hwm - baselineRss, `${what}: peak RSS growth (peak ${mib(s.hwm)}, start ${mib(baselineRss)})`).toBeLessThan(PEAK_GROWTH_BOUND)
  return s
}

/** Once the process is idle again, its RSS comes back near where it started. */
async function checkIdle(what: string): Promise<void> {
  let last = 0
  const ok = await waitFor(
    () => {
      last = status().rss
      return last < baselineRss + IDLE_GROWTH_BOUND
    },
    { timeoutMs: 10_000, intervalMs: 250, message: `${what}: idle RSS` },
  ).then(
    () => true,
    () => false,
  )
  console.log(`[big-replies] ${what}: idle VmRSS ${mib(last)} (at start ${mib(baselineRss)})`)
  expect.soft(ok, `${what}: idle RSS ${mib(last)} should fall below ${mib(baselineRss + IDLE_GROWTH_BOUND)}`).toBe(true)
}

async function call(instance: string, body: unknown, token = READ_TOKEN, path = ''): Promise<{ status: number; body: unknown }> {
  const r = await post(`http://127.0.0.1:${dataPort}/v1/instances/${instance}${path}`, body, { token, timeoutMs: 60_000 })
  // A body that is not JSON is kept as text: printed by the caller.
  return { status: r.status, body: r.json === undefined ? r.text : r.json }
}

/** Short text of a reply for the log (a 200 MiB result is not printed whole). */
const brief = (r: { status: number; body: unknown }): string => {
  const s = JSON.stringify(r.body)
  return `${r.status} ${s.length > 400 ? `${s.slice(0, 400)}... (${s.length} chars)` : s}`
}

/** Runs `attack` while another client reads a small key of `instance` in a loop; every read must be served. */
async function whileServed<T>(attack: () => Promise<T>, instance = 'big'): Promise<T> {
  let done = false
  const running = attack().finally(() => (done = true))
  let served = 0
  let slowest = 0
  const failures: string[] = []
  const bystander = (async () => {
    do {
      const started = performance.now()
      const r = await call(instance, ['GET', 'small'])
      slowest = Math.max(slowest, performance.now() - started)
      if (r.status === 200 && (r.body as { result?: unknown }).result === 'hello') served++
      else failures.push(brief(r))
    } while (!done)
  })()
  const [result] = await Promise.all([running, bystander])
  // Printed, not asserted: read-token requests share one connection per endpoint, so they wait
  // behind a big reply as Redis streams it.
  console.log(`[big-replies] small reads meanwhile: ${served} served, ${failures.length} failed, slowest ${Math.round(slowest)} ms`)
  expect.soft(failures, 'small reads that failed meanwhile').toEqual([])
  expect.soft(served, 'small reads served meanwhile').toBeGreaterThan(0)
  return result
}

async function inflight(): Promise<number> {
  const text = await (await fetch(`${opsUrl}/metrics`)).text()
  return Number(/^redis_gateway_inflight_requests (\d+)$/m.exec(text)?.[1] ?? NaN)
}

describe('a 200 MiB value', () => {
  test("a read token's GET: 413 TOOLARGE, a small read is served meanwhile, and the same instance serves a small read after", async () => {
    resetPeak()
    const r = await whileServed(() => call('big', ['GET', 'big']))
    console.log(`[big-replies] GET big: ${brief(r)}`)
    expect.soft(r.status).toBe(413)
    expect.soft((r.body as { error?: string }).error).toMatch(/^TOOLARGE .*limits\.maxReply/)
    checkPeak('GET big')
    expect(await call('big', ['GET', 'small'])).toEqual({ status: 200, body: { result: 'hello' } })
    await checkIdle('GET big')
  }, 120_000)

  test('a pipeline of 8 GET big: each item refused as TOOLARGE (or the whole request a 413), memory bounded, and back down after', async () => {
    resetPeak()
    const r = await whileServed(() => call('big', Array.from({ length: 8 }, () => ['GET', 'big']), READ_TOKEN, '/pipeline'))
    console.log(`[big-replies] pipeline of 8 GET big: ${brief(r)}`)
    // README: a pipeline's failed items are per-item errors in a 200; a reply over limits.maxReply
    // is a 413. Either form is accepted; no item may carry the value.
    if (r.status === 200) {
      expect.soft(r.body).toEqual(Array.from({ length: 8 }, () => ({ error: expect.stringMatching(/^TOOLARGE .*limits\.maxReply/) })))
    } else {
      expect.soft(r.status).toBe(413)
      expect.soft((r.body as { error?: string }).error).toMatch(/^TOOLARGE .*limits\.maxReply/)
    }
    checkPeak('pipeline of 8 GET big')
    expect(await call('big', ['GET', 'small'])).toEqual({ status: 200, body: { result: 'hello' } })
    await checkIdle('pipeline of 8 GET big')
  }, 120_000)

  // The slice is 9 MiB of NUL bytes. In base64 (the SDK's default) its JSON is 12 MiB; in UTF-8,
  // JSON escapes each NUL as \u0000: 54 MiB of JSON for 9 MiB charged to limits.inflightBytes.
  test.each(['base64', 'utf8'])('20 clients ask for a 9 MiB GETRANGE each (%s) and never read: memory bounded, others served, the connections closed after limits.writeTimeout', async (encoding) => {
    resetPeak()
    const request = head('GET', `/v1/instances/big/getrange/big/0/${SLICE - 1}`, {
      Authorization: `Bearer ${READ_TOKEN}`,
      ...(encoding === 'base64' ? { 'Upstash-Encoding': 'base64' } : {}),
    })
    const clients = await Promise.all(Array.from({ length: 20 }, () => RawConnection.open(dataPort)))
    let sampledPeak = 0
    try {
      await whileServed(async () => {
        for (const c of clients) {
          c.socket.pause()
          c.write(request)
        }
        // The gateway gives up on each within writeTimeout (2 s) plus its once-a-second sweep; a
        // paused client sees that only once it reads again, so look at the gateway's side.
        await waitFor(
          async () => {
            sampledPeak = Math.max(sampledPeak, status().rss)
            return (await gatewaySideOpen(clients)) === 0
          },
          { timeoutMs: 60_000, intervalMs: 100, message: 'the gateway to close every non-reading connection' },
        )
      })
      console.log(`[big-replies] non-readers (${encoding}): highest VmRSS sampled while they held replies ${mib(sampledPeak)}`)
      checkPeak(`20 non-readers (${encoding})`)
      // Reading again, each client gets what the kernel held and then the end: a whole 503 at most.
      for (const c of clients) c.socket.resume()
      await waitFor(() => clients.every((c) => c.ended), { timeoutMs: 30_000, message: 'every non-reader to see its connection end' })
      const outcomes = clients.map((c) => {
        const [res] = parseAll(c.buf(), true)
        if (res === undefined) return `cut off after ${mib(c.buf().length)}`
        return `${res.status} ${res.status === 200 ? `(${mib(res.body.length)})` : res.text}`
      })
      console.log(`[big-replies] non-readers (${encoding}) got: ${JSON.stringify(outcomes)}`)
      for (const o of outcomes) expect.soft(o).toMatch(/^(cut off after|503 \{"error":"OVERLOADED )/)
    } finally {
      for (const c of clients) c.close()
    }
    expect(await call('big', ['GET', 'small'])).toEqual({ status: 200, body: { result: 'hello' } })
    // Printed only: V8 keeps the heap it grew for a while.
    console.log(`[big-replies] 20 non-readers (${encoding}): VmRSS once over ${mib(status().rss)}`)
  }, 120_000)

  // Gone means reset (RST): after a FIN alone the client may still read (a half-close), and the
  // gateway answers it like node:http does.
  test('a client that asks for a 9 MiB GETRANGE and resets its connection before the reply: nothing kept, the instance serves after', async () => {
    // Warm: the read level's connection through the proxy exists.
    expect(await call('slow', ['GET', 'small'])).toEqual({ status: 200, body: { result: 'hello' } })
    resetPeak()
    const client = await RawConnection.open(dataPort)
    proxy.stall()
    try {
      client.write(head('GET', `/v1/instances/slow/getrange/big/0/${SLICE - 1}`, { Authorization: `Bearer ${READ_TOKEN}` }))
      // The request is in the gateway, its command held by the stalled proxy: the reply cannot have come.
      await waitFor(async () => (await inflight()) >= 1, { timeoutMs: 10_000, message: 'the request to be in flight' })
      client.socket.resetAndDestroy()
      await waitFor(() => client.closed, { message: 'the client socket to close' })
    } finally {
      proxy.resume()
    }
    // The reply arrives for a request whose client is gone.
    await waitFor(async () => (await inflight()) === 0, { timeoutMs: 30_000, message: 'no request in flight' })
    checkPeak('abandoned GETRANGE')
    await waitFor(async () => (await call('slow', ['GET', 'small'])).status === 200, { timeoutMs: 15_000, message: 'the slow instance to serve again' })
    expect(await call('big', ['GET', 'small'])).toEqual({ status: 200, body: { result: 'hello' } })
    await checkIdle('abandoned GETRANGE')
  }, 120_000)
})

/** How many of `clients` the gateway still holds an established connection with (ss). */
async function gatewaySideOpen(clients: RawConnection[]): Promise<number> {
  const { execFile } = await import('node:child_process')
  const out = await new Promise<string>((resolve, reject) =>
    execFile('ss', ['-Htn', 'state', 'established', `( sport = :${dataPort} )`], (err, stdout) => (err ? reject(err) : resolve(stdout))),
  )
  const ports = new Set(clients.map((c) => c.socket.localPort))
  return out
    .split('\n')
    .map((l) => Number(/:(\d+)\s*$/.exec(l.trim())?.[1]))
    .filter((p) => ports.has(p)).length
}
