// Graceful shutdown of the real process (README "Graceful shutdown"):
// `node --import tsx src/main.ts` against real redis-server processes (one instance behind a
// delaying fault proxy, one behind a proxy the test stalls), with steady load from raw keep-alive
// clients and the real @upstash/redis SDK, an SDK subscriber and a raw SSE stream, then SIGTERM.
//
// The load generator behaves like a real client behind a Service: it reuses its keep-alive
// connection until the server says `Connection: close` or ends it, then reconnects; a refused
// connect means "this replica is gone, go elsewhere" and is counted apart. A request written on an
// open connection that gets no response is a failure, and there must be none.

import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Redis as UpstashRedis } from '@upstash/redis'
import type { Redis as IORedis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { stringify } from 'yaml'
import { startFaultProxy } from '../helpers/fault-proxy.js'
import { ConnectionRefused, KeepAliveConnection } from '../helpers/keep-alive-client.js'
import { freePort } from '../helpers/ports.js'
import { head, rawRequest } from '../helpers/raw-http.js'
import { parseInfo, startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { REPO_ROOT, exitWithin, killAll, spawnGateway, type GatewayProcess as Proc } from '../helpers/gateway-process.js'

const repoRoot = REPO_ROOT
const TOKEN = 'shutdown-test-token'
const AUTH = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
/** Every load loop stops by itself after this long, whatever happens. */
const LOAD_CAP_MS = 60_000
/** Pause between a worker's requests: steady load without starving 2 shared cores. */
const PAUSE_MS = 5
/** Generous hang guard for process exit; not a performance assertion. */
const EXIT_GUARD_MS = 30_000

let dir: string
let redis: RedisServer
let direct: IORedis
let directId: number

beforeAll(async () => {
  expect(existsSync(path.join(repoRoot, 'node_modules/.bin/tsx')), 'tsx devDependency installed').toBe(true)
  dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-shutdown-'))
  redis = await startRedis()
  direct = redis.client()
  directId = Number(await direct.call('CLIENT', 'ID'))
})
afterAll(async () => {
  direct?.disconnect()
  await redis?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})
afterEach(killAll)

let fileNo = 0
async function start(instances: Record<string, string>, shutdown: Record<string, string>, redisCfg: Record<string, string> = {}) {
  const [dataPort, opsPort] = [await freePort(), await freePort()]
  const file = path.join(dir, `gateway-${++fileNo}.yaml`)
  await writeFile(
    file,
    stringify({
      listen: { data: `127.0.0.1:${dataPort}`, ops: `127.0.0.1:${opsPort}` },
      discovery: { static: { instances: Object.entries(instances).map(([name, url]) => ({ name, endpoints: [url] })) } },
      auth: { tokens: [{ name: 'app', token: TOKEN, access: 'write', targets: ['*'] }] },
      redis: { commandTimeout: '8s', connectTimeout: '1s', ...redisCfg },
      shutdown,
      log: { level: 'info' },
    }),
  )
  const p = spawnGateway(file)
  const opsUrl = `http://127.0.0.1:${opsPort}`
  await waitFor(
    async () => {
      if (p.done) throw new Error(`gateway exited early\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`)
      return (await fetch(`${opsUrl}/readyz`)).status === 200
    },
    { timeoutMs: 30_000, intervalMs: 100, message: `${opsUrl}/readyz to answer 200` },
  )
  return { p, dataPort, opsUrl, base: (instance: string) => `http://127.0.0.1:${dataPort}/v1/instances/${instance}` }
}

/** The gateway's JSON log lines. */
function logs(p: Proc): Record<string, unknown>[] {
  return p
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}
const logged = (p: Proc, msg: string): Record<string, unknown> | undefined => logs(p).find((l) => String(l.msg).startsWith(msg))

/** Redis clients other than the test's own connection: the gateway's (directly or through a proxy). */
async function otherClients(): Promise<string[]> {
  const list = String(await direct.call('CLIENT', 'LIST'))
  return list
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith(`id=${directId} `))
}

async function readyz(opsUrl: string): Promise<{ status: number; reason?: string } | 'closed'> {
  try {
    const res = await fetch(`${opsUrl}/readyz`)
    const body = (await res.json()) as { reason?: string }
    return { status: res.status, ...(body.reason !== undefined && { reason: body.reason }) }
  } catch {
    return 'closed'
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Stats {
  sent: number
  ok: number
  /** Sent after /readyz was seen failing and answered without Connection: close: served during the delay. */
  okDuringDelay: number
  sentAfterSigterm: number
  connectionClose: number
  connects: number
  /** Workers that ended because a new connection was refused (gone elsewhere). */
  wentElsewhere: number
  failures: string[]
}
const newStats = (): Stats => ({ sent: 0, ok: 0, okDuringDelay: 0, sentAfterSigterm: 0, connectionClose: 0, connects: 0, wentElsewhere: 0, failures: [] })

describe('graceful shutdown of the real process', () => {
  it('SIGTERM under load: /readyz fails while requests are still served, no request fails, SSE ends cleanly, Redis connections close, exit 0', async () => {
    const slow = await startFaultProxy(redis)
    slow.delay(100) // every reply ~200 ms later: requests in flight at any moment
    const held = await startFaultProxy(redis)
    try {
      const gw = await start({ fast: redis.url, slow: slow.url, held: held.url }, { delay: '2s', timeout: '8s' })
      const t = { sigterm: Infinity, notReady: Infinity }
      let stopLoad = false
      const raw = newStats()
      const sdkStats = newStats()

      const rawWorker = async (id: string, instance: string): Promise<void> => {
        const key = `sd:${instance}:${id}`
        let conn: KeepAliveConnection | null = null
        let count = 0
        const until = Date.now() + LOAD_CAP_MS
        while (!stopLoad && Date.now() < until) {
          if (conn === null || conn.closed) {
            conn?.close()
            try {
              conn = await KeepAliveConnection.open(gw.dataPort)
              raw.connects++
            } catch (e) {
              if (e instanceof ConnectionRefused) raw.wentElsewhere++
              else raw.failures.push(`${id}: connect failed: ${(e as Error).message}`)
              return
            }
          }
          const sentAt = performance.now()
          raw.sent++
          if (sentAt > t.sigterm) raw.sentAfterSigterm++
          let res
          try {
            res = await conn.request('POST', `/v1/instances/${instance}`, AUTH, JSON.stringify(['INCR', key]))
          } catch (e) {
            raw.failures.push(`${id}: request ${count + 1}, written on an open connection, failed: ${(e as Error).message}`)
            return
          }
          if (res.status !== 200 || (JSON.parse(res.text) as { result: unknown }).result !== count + 1) {
            raw.failures.push(`${id}: request ${count + 1}: ${res.status} ${res.text}`)
            return
          }
          count++
          raw.ok++
          if (res.headers.connection === 'close') {
            raw.connectionClose++
            conn.close()
            conn = null
          } else if (sentAt > t.notReady) raw.okDuringDelay++
          await sleep(PAUSE_MS)
        }
        conn?.close()
      }

      // The SDK as an app uses it; retry off so that no failure is hidden by a retry.
      const sdk = new UpstashRedis({ url: gw.base('fast'), token: TOKEN, retry: false, enableTelemetry: false })
      const sdkWorker = async (id: string): Promise<void> => {
        let last = 0
        const until = Date.now() + LOAD_CAP_MS
        while (!stopLoad && Date.now() < until) {
          sdkStats.sent++
          if (performance.now() > t.sigterm) sdkStats.sentAfterSigterm++
          try {
            const n = await sdk.incr(`sd:sdk:${id}`)
            if (n !== last + 1) throw new Error(`INCR gave ${n} after ${last}`)
            last = n
            sdkStats.ok++
          } catch (e) {
            const code = (e as { cause?: { code?: string } }).cause?.code
            if (code === 'ECONNREFUSED') sdkStats.wentElsewhere++
            else sdkStats.failures.push(`sdk ${id}: ${(e as Error).message} (${code ?? 'no code'})`)
            return
          }
          await sleep(PAUSE_MS)
        }
      }

      // An SDK subscriber and a raw SSE stream on one channel.
      const chan = 'sd:news'
      const consoleError = vi.spyOn(console, 'error')
      const sub = sdk.subscribe([chan])
      const seen: string[] = []
      sub.on('subscribe', (n) => seen.push(`subscribe ${n}`))
      sub.on('message', (m) => seen.push(`message ${JSON.stringify(m.message)}`))
      sub.on('unsubscribe', (n) => seen.push(`unsubscribe ${n}`))
      sub.on('error', (e) => seen.push(`error ${e.message}`))
      const sseRes = await fetch(`${gw.base('fast')}/subscribe/${chan}`, {
        method: 'POST',
        headers: { ...AUTH, accept: 'text/event-stream' },
        body: '[]',
      })
      expect(sseRes.status).toBe(200)
      let sseText = ''
      const sseRead = (async () => {
        const reader = sseRes.body!.getReader()
        const dec = new TextDecoder()
        for (;;) {
          const { value, done } = await reader.read()
          if (done) return 'ended cleanly'
          sseText += dec.decode(value, { stream: true })
        }
      })().catch((e: unknown) => `stream error: ${(e as Error).message}`)
      await waitFor(() => seen.includes('subscribe 1') && sseText.includes(`data: subscribe,${chan},1`), { message: 'both subscriptions open' })
      expect(await direct.publish(chan, '{"n":1}')).toBe(1)
      await waitFor(() => seen.includes('message {"n":1}') && sseText.includes(`data: message,${chan},{"n":1}`), { message: 'the message on both streams' })

      // A keep-alive connection that sits idle between requests, and one whose request the test holds.
      const idle = await KeepAliveConnection.open(gw.dataPort)
      expect((await idle.request('POST', '/v1/instances/fast', AUTH, '["PING"]')).status).toBe(200)
      const heldConn = await KeepAliveConnection.open(gw.dataPort)
      expect((await heldConn.request('POST', '/v1/instances/held', AUTH, '["SET","sd:held","v"]')).status).toBe(200)

      const workers = [
        ...['f1', 'f2', 'f3', 'f4'].map((id) => rawWorker(id, 'fast')),
        ...['s1', 's2'].map((id) => rawWorker(id, 'slow')),
        ...['a', 'b'].map((id) => sdkWorker(id)),
      ]
      await waitFor(() => raw.ok >= 100 && sdkStats.ok >= 20, { timeoutMs: 20_000, message: 'load running' })

      t.sigterm = performance.now()
      const sigtermAt = Date.now()
      gw.p.child.kill('SIGTERM')

      // The delay: /readyz fails, /metrics still answers, data requests are still served.
      const notReady = await waitFor(async () => {
        const r = await readyz(gw.opsUrl)
        return r !== 'closed' && r.status === 503 ? r : null
      }, { timeoutMs: 10_000, intervalMs: 20, message: '/readyz to fail after SIGTERM' })
      t.notReady = performance.now()
      expect(notReady.reason).toBe('shutting down')
      expect((await fetch(`${gw.opsUrl}/metrics`)).status).toBe(200)
      const duringDelay = await idle.request('POST', '/v1/instances/fast', AUTH, '["PING"]')
      expect(duringDelay.status).toBe(200)
      expect(duringDelay.headers.connection).toBe('keep-alive')

      // Held in flight across the start of the drain.
      held.stall()
      const heldReply = heldConn.request('POST', '/v1/instances/held', AUTH, '["GET","sd:held"]')
      await waitFor(() => logged(gw.p, 'shutdown: stopped accepting') !== undefined, { timeoutMs: 15_000, intervalMs: 20, message: 'the drain to start' })
      // The idle keep-alive connection was not closed under the client: its next request is answered.
      const duringDrain = await idle.request('POST', '/v1/instances/fast', AUTH, '["PING"]')
      expect(duringDrain.status).toBe(200)
      expect(duringDrain.text).toBe('{"result":"PONG"}')
      expect(duringDrain.headers.connection, `${duringDrain.raw.toString()}\n${gw.p.stdout()}`).toBe('close')
      held.resume()
      const heldRes = await heldReply
      expect(heldRes.status).toBe(200)
      expect(heldRes.text).toBe('{"result":"v"}')
      expect(heldRes.headers.connection).toBe('close')

      const code = await exitWithin(gw.p, EXIT_GUARD_MS)
      const exitMs = Date.now() - sigtermAt
      expect(code, gw.p.stdout() + gw.p.stderr()).toBe(0)
      const sseOutcome = await sseRead
      stopLoad = true
      await Promise.all(workers)

      // No request failed; every worker left because its next connection was refused.
      expect(raw.failures).toEqual([])
      expect(sdkStats.failures).toEqual([])
      expect(raw.wentElsewhere).toBe(6)
      expect(sdkStats.wentElsewhere).toBe(2)
      // Each raw worker was told to go with a Connection: close reply, none had its connection cut.
      expect(raw.connectionClose).toBeGreaterThanOrEqual(6)
      expect(raw.okDuringDelay).toBeGreaterThan(0)
      // Every acknowledged INCR was applied once: the counters equal the 200 replies.
      const counters = await Promise.all(['fast:f1', 'fast:f2', 'fast:f3', 'fast:f4', 'slow:s1', 'slow:s2', 'sdk:a', 'sdk:b'].map((k) => direct.get(`sd:${k}`)))
      expect(counters.reduce((a, v) => a + Number(v ?? 0), 0)).toBe(raw.ok + sdkStats.ok)

      // SSE: a final comment and unsubscribe event, then a clean end of stream (no reset).
      expect(sseOutcome).toBe('ended cleanly')
      expect(sseText.endsWith(`: gateway shutting down\n\ndata: unsubscribe,${chan},0\n\n`)).toBe(true)
      await waitFor(() => seen.includes('unsubscribe 0'), { message: 'the SDK subscriber to see the unsubscribe' })
      expect(seen).toEqual(['subscribe 1', 'message {"n":1}', 'unsubscribe 0'])
      expect(consoleError.mock.calls.map((c) => String(c[0]))).not.toContain('Stream reading error:')
      consoleError.mockRestore()

      // Every phase was logged; the drain waited for nothing it should not have.
      const drain = logs(gw.p).find((l) => l.phase === 'drain' && 'cut' in l)!
      expect(drain).toMatchObject({ cut: 0, destroyed: 0 })
      for (const m of ['shutting down', 'shutdown: not ready', 'shutdown: stopped accepting', 'shutdown: in-flight requests done', 'shutdown: health checks', 'shutdown: Redis connections closed', 'shutdown complete']) {
        expect(logged(gw.p, m), m).toBeDefined()
      }

      // Redis: none of the gateway's connections (direct, through either proxy, subscriber) remain.
      await waitFor(async () => (await otherClients()).length === 0, { message: "the gateway's Redis connections to go" })
      expect(parseInfo(await direct.info('clients')).connected_clients).toBe('1') // the test's own

      idle.close()
      heldConn.close()
      console.log(
        'shutdown under load:',
        JSON.stringify({
          // Connection: close replies the test saw: one per raw worker, the idle and the held connection.
          connectionCloseSeen: raw.connectionClose + 2,
          raw: { ...raw, failures: raw.failures.length },
          sdk: { ...sdkStats, failures: sdkStats.failures.length },
          drain: Object.fromEntries(Object.entries(drain).filter(([k]) => !['level', 'time', 'service', 'msg', 'pid', 'hostname'].includes(k))),
          sigtermToExitMs: exitMs,
          logs: logs(gw.p)
            .filter((l) => String(l.msg).startsWith('shut'))
            .map((l) => `${String(l.time).slice(11, 23)} ${String(l.msg)}`),
        }, null, 1),
      )
    } finally {
      await slow.close()
      await held.close()
    }
  }, 120_000)

  it('a request that outlives shutdown.timeout is cut, and the process still exits 0', async () => {
    const proxy = await startFaultProxy(redis)
    try {
      const gw = await start({ stuck: proxy.url }, { delay: '0s', timeout: '1s' }, { commandTimeout: '60s' })
      const conn = await KeepAliveConnection.open(gw.dataPort)
      expect((await conn.request('POST', '/v1/instances/stuck', AUTH, '["PING"]')).status).toBe(200)
      proxy.stall()
      const outcome = conn.request('POST', '/v1/instances/stuck', AUTH, '["GET","k"]', 60_000).then(
        (r) => `answered ${r.status}`,
        (e: unknown) => `lost: ${(e as Error).message}`,
      )
      await waitFor(async () => /^redis_gateway_inflight_requests [1-9]/m.test(await (await fetch(`${gw.opsUrl}/metrics`)).text()), {
        message: 'the request to be in flight',
      })
      const sigtermAt = Date.now()
      gw.p.child.kill('SIGTERM')
      expect(await outcome).toMatch(/^lost: connection/)
      expect(await exitWithin(gw.p, EXIT_GUARD_MS)).toBe(0)
      const exitMs = Date.now() - sigtermAt
      const drain = logs(gw.p).find((l) => l.phase === 'drain' && 'cut' in l)!
      expect(drain).toMatchObject({ inflightAtStart: 1, cut: 1, destroyed: 1, level: 40 })
      expect(String(drain.msg)).toContain('1 request(s) still in flight after shutdown.timeout were cut')
      expect(logged(gw.p, 'shutdown complete')).toBeDefined()
      // The stalled proxy holds its half of the gateway's closed connection until it forwards again.
      await proxy.heal()
      await waitFor(async () => (await otherClients()).length === 0, { message: "the gateway's Redis connection to go" })
      console.log('cut at shutdown.timeout 1s:', JSON.stringify({ sigtermToExitMs: exitMs, drainElapsedMs: drain.elapsedMs }))
    } finally {
      await proxy.close()
    }
  }, 60_000)

  it('a second signal during the delay skips the rest of it', async () => {
    const gw = await start({ main: redis.url }, { delay: '60s', timeout: '5s' })
    const sigtermAt = Date.now()
    gw.p.child.kill('SIGTERM')
    await waitFor(async () => {
      const r = await readyz(gw.opsUrl)
      return r !== 'closed' && r.status === 503
    }, { timeoutMs: 10_000, intervalMs: 20, message: '/readyz to fail' })
    // Still serving during the delay.
    const res = await rawRequest(gw.dataPort, head('POST', '/v1/instances/main', { ...AUTH, 'content-length': 8 }) + '["PING"]')
    expect(res.status).toBe(200)
    await waitFor(() => logged(gw.p, 'shutdown: not ready') !== undefined, { message: 'the delay to be logged' })
    gw.p.child.kill('SIGINT')
    // The guard is far below the 60 s delay: exiting at all shows the delay was skipped.
    expect(await exitWithin(gw.p, EXIT_GUARD_MS)).toBe(0)
    const exitMs = Date.now() - sigtermAt
    expect(logged(gw.p, 'second signal during shutdown')).toMatchObject({ signal: 'SIGINT', action: 'delay skipped' })
    expect(logged(gw.p, 'shutdown: delay cut short by a second signal')).toBeDefined()
    expect(logged(gw.p, 'shutdown complete')).toBeDefined()
    await waitFor(async () => (await otherClients()).length === 0, { message: "the gateway's Redis connections to go" })
    console.log('second signal:', JSON.stringify({ delay: '60s', sigtermToExitMs: exitMs }))
  }, 60_000)
})
