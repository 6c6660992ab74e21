// The real process end to end (config file, ops plane): `node --import tsx src/main.ts` with
// GATEWAY_CONFIG pointing at temp files. A bad config stops start-up with exit code 2 naming the
// key; a good one serves data and ops ports, honours env overrides, and drains and exits 0 on
// SIGTERM.

import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { freePort } from '../helpers/ports.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { REPO_ROOT, exitWithin, killAll, spawnGateway, type GatewayProcess as Proc } from '../helpers/gateway-process.js'

const repoRoot = REPO_ROOT
const TOKEN = 'startup-test-token'

let dir: string
let redis: RedisServer

beforeAll(async () => {
  expect(existsSync(path.join(repoRoot, 'node_modules/.bin/tsx')), 'tsx devDependency installed').toBe(true)
  dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-startup-'))
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})
afterEach(killAll)

let fileNo = 0
async function configFile(content: string | Record<string, unknown>): Promise<string> {
  const file = path.join(dir, `gateway-${++fileNo}.yaml`)
  await writeFile(file, typeof content === 'string' ? content : stringify(content))
  return file
}

const run = spawnGateway

function goodConfig(dataPort: number, opsPort: number): Record<string, unknown> {
  return {
    listen: { data: `127.0.0.1:${dataPort}`, ops: `127.0.0.1:${opsPort}` },
    discovery: { static: { instances: [{ name: 'main', endpoints: [redis.url] }] } },
    auth: { tokens: [{ name: 'app', token: TOKEN, access: 'write', targets: ['*'] }] },
    redis: { commandTimeout: '8s', connectTimeout: '1s' },
    log: { level: 'info' },
  }
}

async function status(url: string, init?: RequestInit): Promise<number> {
  return (await fetch(url, init)).status
}

function refused(url: string): Promise<boolean> {
  return fetch(url).then(
    () => false,
    () => true,
  )
}

async function waitReady(p: Proc, opsUrl: string): Promise<void> {
  await waitFor(
    async () => {
      if (p.done) throw new Error(`gateway exited early\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`)
      return (await status(`${opsUrl}/readyz`)) === 200
    },
    { timeoutMs: 30_000, intervalMs: 100, message: `${opsUrl}/readyz to answer 200` },
  )
}

const START_EXIT_MS = 30_000

describe('start-up with a bad config exits 2 naming the key', () => {
  it('(a) an unknown key', async () => {
    const file = await configFile({ redis: { comandTimeout: '2s' } })
    const p = run(file)
    expect(await exitWithin(p, START_EXIT_MS)).toBe(2)
    const err = p.stderr()
    expect(err.startsWith('redis-gateway: ')).toBe(true)
    expect(err).toContain('redis.comandTimeout')
    expect(err).toContain('unknown key')
    expect(err).toContain('did you mean "commandTimeout"')
    expect(err).toContain(file)
  })

  it('(b) a wrong type: listen.data as a number', async () => {
    const p = run(await configFile('listen:\n  data: 8080\n'))
    expect(await exitWithin(p, START_EXIT_MS)).toBe(2)
    expect(p.stderr()).toMatch(/^redis-gateway: /)
    expect(p.stderr()).toContain('listen.data')
    expect(p.stderr()).toContain('expected a string, got 8080')
  })

  it('(b) an endpoint without a port', async () => {
    const p = run(await configFile({ discovery: { static: { instances: [{ name: 'main', endpoints: ['redis://127.0.0.1'] }] } } }))
    expect(await exitWithin(p, START_EXIT_MS)).toBe(2)
    expect(p.stderr()).toContain('discovery.static.instances[0].endpoints[0]')
    expect(p.stderr()).toContain('missing :port')
  })

  it('(b) several problems are all named, with their lines', async () => {
    const p = run(await configFile('redis:\n  tls: "yes"\nlog:\n  level: loud\n'))
    expect(await exitWithin(p, START_EXIT_MS)).toBe(2)
    expect(p.stderr()).toContain('redis.tls')
    expect(p.stderr()).toContain('log.level')
    expect(p.stderr()).toMatch(/line 2/)
  })

  it('a missing config file also exits 2 and says how to set the path', async () => {
    const p = run(path.join(dir, 'does-not-exist.yaml'))
    expect(await exitWithin(p, START_EXIT_MS)).toBe(2)
    expect(p.stderr()).toContain('GATEWAY_CONFIG')
  })
})

describe('start-up with a good config', () => {
  // Its own waits add up past the suite's 30 s test timeout (start-up up to 30 s, the held request
  // and /readyz up to 5 s each, the exit up to 15 s): the limit is theirs, not one for the whole.
  it('(c) serves ops and data, then drains and exits 0 on SIGTERM', async () => {
    const [dataPort, opsPort] = [await freePort(), await freePort()]
    const p = run(await configFile(goodConfig(dataPort, opsPort)))
    const opsUrl = `http://127.0.0.1:${opsPort}`
    const base = `http://127.0.0.1:${dataPort}/v1/instances/main`
    await waitReady(p, opsUrl)

    const ready = await fetch(`${opsUrl}/readyz`)
    expect(ready.headers.get('content-type')).toMatch(/application\/json/)
    expect(await ready.json()).toEqual({ status: 'ready' })
    const health = await fetch(`${opsUrl}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ status: 'ok' })

    // A data request, as curl would send it.
    const set = await fetch(base, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: '["SET","startup:k","v1"]',
    })
    expect(set.status).toBe(200)
    expect(await set.json()).toEqual({ result: 'OK' })
    const get = await fetch(`${base}/get/startup:k?_token=${TOKEN}`)
    expect(await get.json()).toEqual({ result: 'v1' })
    expect(await redis.client().get('startup:k')).toBe('v1')
    expect(await status(base, { method: 'POST', body: '["GET","k"]' })).toBe(401)

    const metrics = await (await fetch(`${opsUrl}/metrics`)).text()
    expect(metrics).toContain('redis_gateway_requests_total')
    expect(metrics).toMatch(/^redis_gateway_requests_total\{[^}]*redis_instance="main"[^}]*\} [1-9]/m)

    // SIGTERM while a request is held in Redis: it completes, readiness goes away, exit 0.
    await redis.client().call('CLIENT', 'PAUSE', '1500', 'ALL')
    const inFlight = fetch(base, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: '["GET","startup:k"]',
    })
    // The request has reached the gateway once the inflight gauge shows it.
    await waitFor(
      async () => /^redis_gateway_inflight_requests [1-9]/m.test(await (await fetch(`${opsUrl}/metrics`)).text()),
      { timeoutMs: 5_000, intervalMs: 20, message: 'the held request to be in flight' },
    )
    const signalledAt = Date.now()
    p.child.kill('SIGTERM')
    await waitFor(async () => (await refused(`${opsUrl}/readyz`)) || (await status(`${opsUrl}/readyz`)) !== 200, {
      timeoutMs: 5_000,
      intervalMs: 20,
      message: '/readyz to stop answering 200 after SIGTERM',
    })
    const held = await inFlight
    expect(held.status).toBe(200)
    expect(await held.json()).toEqual({ result: 'v1' })
    expect(await exitWithin(p, 15_000)).toBe(0)
    expect(Date.now() - signalledAt).toBeLessThan(15_000)
    expect(await refused(`${opsUrl}/readyz`)).toBe(true)
    expect(await refused(base)).toBe(true)
    expect(p.stdout()).toContain('shutting down')
  }, 60_000)

  it('(c) once in-flight requests are answered, shutdown is not held by their idle keep-alive connections', async () => {
    const [dataPort, opsPort] = [await freePort(), await freePort()]
    const p = run(await configFile(goodConfig(dataPort, opsPort)))
    const opsUrl = `http://127.0.0.1:${opsPort}`
    const base = `http://127.0.0.1:${dataPort}/v1/instances/main`
    await waitReady(p, opsUrl)
    // The token's Redis user connects on first use: before the pause, so the held request is sent.
    expect(await status(`${base}/ping?_token=${TOKEN}`)).toBe(200)
    await redis.client().call('CLIENT', 'PAUSE', '1000', 'ALL')
    // fetch keeps the connection alive after the reply, as SDK clients do.
    const inFlight = fetch(base, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '["PING"]' })
    await waitFor(
      async () => /^redis_gateway_inflight_requests [1-9]/m.test(await (await fetch(`${opsUrl}/metrics`)).text()),
      { timeoutMs: 5_000, intervalMs: 20, message: 'the held request to be in flight' },
    )
    p.child.kill('SIGTERM')
    const held = await inFlight
    expect(held.status).toBe(200)
    await held.text()
    const answeredAt = Date.now()
    // Nothing is in flight any more: stop() has nothing left to wait for.
    expect(await exitWithin(p, 2_000)).toBe(0)
    expect(Date.now() - answeredAt).toBeLessThan(2_000)
  })

  it('(c) SIGTERM with nothing in flight exits 0 promptly', async () => {
    const [dataPort, opsPort] = [await freePort(), await freePort()]
    const p = run(await configFile(goodConfig(dataPort, opsPort)))
    const opsUrl = `http://127.0.0.1:${opsPort}`
    await waitReady(p, opsUrl)
    // A keep-alive connection to each port must not hold the shutdown.
    expect(await status(`${opsUrl}/healthz`)).toBe(200)
    expect(await status(`http://127.0.0.1:${dataPort}/v1/instances/main/ping?_token=${TOKEN}`)).toBe(200)
    const signalledAt = Date.now()
    p.child.kill('SIGTERM')
    expect(await exitWithin(p, 8_000)).toBe(0)
    expect(Date.now() - signalledAt).toBeLessThan(8_000)
    expect(await refused(`${opsUrl}/readyz`)).toBe(true)
  })

  it('(d) GATEWAY_LISTEN_DATA overrides listen.data from the file', async () => {
    const [filePort, envPort, opsPort] = [await freePort(), await freePort(), await freePort()]
    const p = run(await configFile(goodConfig(filePort, opsPort)), { GATEWAY_LISTEN_DATA: `127.0.0.1:${envPort}` })
    const opsUrl = `http://127.0.0.1:${opsPort}`
    await waitReady(p, opsUrl)
    const res = await fetch(`http://127.0.0.1:${envPort}/v1/instances/main/ping`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    })
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ result: 'PONG' })
    expect(await refused(`http://127.0.0.1:${filePort}/v1/instances/main/ping`)).toBe(true)
  })

  it('(d) a bad GATEWAY_LISTEN_DATA exits 2 naming the variable', async () => {
    const [dataPort, opsPort] = [await freePort(), await freePort()]
    const p = run(await configFile(goodConfig(dataPort, opsPort)), { GATEWAY_LISTEN_DATA: 'not-an-address' })
    expect(await exitWithin(p, START_EXIT_MS)).toBe(2)
    expect(p.stderr()).toContain('GATEWAY_LISTEN_DATA')
  })
})
