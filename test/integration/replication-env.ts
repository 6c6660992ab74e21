// Shared setup for the replication routing tests (routing-*.test.ts): a real primary and two
// real replicas (`--replicaof`), `INFO commandstats` readers that say where each command ran,
// raw data-plane requests, and a gateway spawned as its own OS process (for "two gateway
// processes" cases). Not a test file itself (no .test.ts suffix).
//
// Where a command ran: replicas execute the primary's replication stream, so a write shows up in
// every replica's commandstats too. The tests therefore write with INCRBYFLOAT, which Redis
// propagates as SET (+KEEPTTL): `incrbyfloat` is only ever counted where the client sent it. A
// write wrongly sent to a replica would be refused (READONLY) and counted as `rejected_calls`,
// so landed() adds those. Reads (GET, MGET) are never propagated.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { configObject, WRITE_TOKEN, type TestGateway, type TestInstance } from '../helpers/gateway.js'
import { freePort } from '../helpers/ports.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/** The health interval every test here configures, and the jitter the checker applies (±20%). */
export const HEALTH_INTERVAL_MS = 200
export const HEALTH_JITTER = 0.2
export const HEALTH = { health: { interval: `${HEALTH_INTERVAL_MS}ms` } }
/** The longest one jittered interval can be. */
export const MAX_INTERVAL_MS = Math.ceil(HEALTH_INTERVAL_MS * (1 + HEALTH_JITTER))

export interface Topology {
  readonly primary: RedisServer
  readonly r1: RedisServer
  readonly r2: RedisServer
  /** [primary, r1, r2], the order the instances list them in. */
  readonly all: readonly RedisServer[]
  readonly urls: string[]
  /** Stops the servers in the given order (replicas before their primary), default r2, r1, primary. */
  stop(order?: readonly RedisServer[]): Promise<void>
}

/** A primary and two replicas of it, both fully synced. */
export async function startTopology(): Promise<Topology> {
  const primary = await startRedis()
  const [r1, r2] = await Promise.all([startRedis({ replicaOf: primary }), startRedis({ replicaOf: primary })])
  await Promise.all([r1.waitForSync(), r2.waitForSync()])
  await waitForStreaming(primary, [r1, r2])
  const all = [primary, r1, r2] as const
  return {
    primary,
    r1,
    r2,
    all,
    urls: all.map((s) => s.url),
    async stop(order = [r2, r1, primary]) {
      for (const s of order) await s.stop()
    },
  }
}

/**
 * Waits until a write on the primary reaches every replica. `master_link_status:up` is not enough:
 * after a diskless full sync a Redis 7 primary starts streaming to a replica only at its first
 * REPLCONF ACK, up to a second later.
 */
export async function waitForStreaming(primary: RedisServer, replicas: readonly RedisServer[]): Promise<void> {
  const pc = primary.client()
  const key = `streaming:${Date.now()}:${Math.random()}`
  try {
    await pc.set(key, '1')
    for (const r of replicas) {
      const rc = r.client()
      try {
        await waitFor(async () => (await rc.get(key)) === '1', { timeoutMs: 15_000, message: `replica ${r.port} to apply the stream` })
      } finally {
        rc.disconnect()
      }
    }
    await pc.del(key)
  } finally {
    pc.disconnect()
  }
}

export interface CommandStat {
  calls: number
  rejected: number
  failed: number
}

/** `INFO commandstats` as { get: {calls, rejected, failed}, ... } (rejected/failed: Redis 6.2+). */
export async function commandStats(server: RedisServer): Promise<Record<string, CommandStat>> {
  const out: Record<string, CommandStat> = {}
  for (const line of (await server.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):(.*)$/.exec(line.trim())
    if (!m) continue
    const field = (name: string): number => Number(new RegExp(`\\b${name}=(\\d+)`).exec(m[2]!)?.[1] ?? 0)
    out[m[1]!.toLowerCase()] = { calls: field('calls'), rejected: field('rejected_calls'), failed: field('failed_calls') }
  }
  return out
}

/** How many times `command` reached each server (executed or refused), in the order given. */
export async function landed(servers: readonly RedisServer[], command: string): Promise<number[]> {
  return Promise.all(
    servers.map(async (s) => {
      const st = (await commandStats(s))[command.toLowerCase()]
      return st ? st.calls + st.rejected : 0
    }),
  )
}

export async function resetStats(servers: readonly RedisServer[]): Promise<void> {
  await Promise.all(servers.map((s) => s.resetStats()))
}

/** Runs `fn` with fresh commandstats and returns how often each command landed on each server. */
export async function measure(
  servers: readonly RedisServer[],
  commands: readonly string[],
  fn: () => Promise<void>,
): Promise<Record<string, number[]>> {
  await resetStats(servers)
  await fn()
  const out: Record<string, number[]> = {}
  for (const c of commands) out[c] = await landed(servers, c)
  return out
}

export interface Reply {
  readonly status: number
  readonly body: unknown
  /** The `upstash-sync-token` response header. */
  readonly syncToken: string | null
}

export interface SendOptions {
  token?: string
  /** Sent as `upstash-sync-token`. */
  syncToken?: string | null
  /** '' (one command), '/pipeline' or '/multi-exec'. */
  path?: string
}

/** One POST to the data plane with a JSON body. */
export async function send(base: string, body: unknown, opts: SendOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${opts.token ?? WRITE_TOKEN}`,
    'content-type': 'application/json',
  }
  if (opts.syncToken) headers['upstash-sync-token'] = opts.syncToken
  const res = await fetch(`${base}${opts.path ?? ''}`, { method: 'POST', headers, body: JSON.stringify(body) })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    // Left as text; the status tells.
  }
  return { status: res.status, body: parsed, syncToken: res.headers.get('upstash-sync-token') }
}

/** `{"result": x}` of a 200 reply, else throws with the reply. */
export function resultOf(r: Reply): unknown {
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${JSON.stringify(r.body)}`)
  return (r.body as { result: unknown }).result
}

/** Sends `n` requests made by `make(i)` with at most `concurrency` in flight; returns the replies. */
export async function load(n: number, concurrency: number, make: (i: number) => Promise<Reply>): Promise<Reply[]> {
  const out: Reply[] = new Array(n)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      out[i] = await make(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  return out
}

/** Fails unless every reply is a 200. */
export function allOk(replies: readonly Reply[]): void {
  const bad = replies.filter((r) => r.status !== 200)
  if (bad.length > 0) {
    throw new Error(`${bad.length}/${replies.length} requests failed; first: HTTP ${bad[0]!.status} ${JSON.stringify(bad[0]!.body)}`)
  }
}

/**
 * Waits until the in-process gateway's health checks have seen every endpoint of `servers` with
 * the expected role (replicas linked): the tests assert routing, not the start-up race.
 */
export async function waitForRoles(
  gw: TestGateway,
  expected: readonly { server: RedisServer; role: 'primary' | 'replica' }[],
  timeoutMs = 10_000,
): Promise<void> {
  await waitFor(
    () => {
      const states = [...gw.gateway.pool.all()]
      return expected.every(({ server, role }) => {
        const ep = states.find((e) => e.client.spec.port === server.port)
        return (
          ep !== undefined &&
          ep.state.healthy &&
          ep.state.role === role &&
          (role === 'primary' || ep.state.link === 'connected')
        )
      })
    },
    { timeoutMs, intervalMs: 20, message: 'the gateway to learn every endpoint role' },
  )
}

// ---------------------------------------------------------------------------------------
// A gateway as a separate OS process: `node --import tsx src/main.ts` with GATEWAY_CONFIG.

export interface GatewayProcess {
  readonly url: string
  readonly opsUrl: string
  base(instance: string): string
  readonly child: ChildProcess
  output(): string
  stop(): Promise<void>
}

export async function spawnGateway(opts: {
  instances: TestInstance[]
  extra?: Record<string, unknown>
}): Promise<GatewayProcess> {
  const [dataPort, opsPort] = [await freePort(), await freePort()]
  const dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-proc-'))
  const file = path.join(dir, 'gateway.yaml')
  const cfg = configObject({ instances: opts.instances, extra: opts.extra ?? {} })
  cfg['listen'] = { data: `127.0.0.1:${dataPort}`, ops: `127.0.0.1:${opsPort}` }
  cfg['log'] = { level: 'warn' }
  await writeFile(file, stringify(cfg))
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', GATEWAY_CONFIG: file },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()))
  let done = false
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      done = true
      resolve()
    }),
  )
  const url = `http://127.0.0.1:${dataPort}`
  const opsUrl = `http://127.0.0.1:${opsPort}`
  const proc: GatewayProcess = {
    url,
    opsUrl,
    base: (instance) => `${url}/v1/instances/${instance}`,
    child,
    output: () => out,
    async stop() {
      if (!done) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => {
          if (!done) child.kill('SIGKILL')
        }, 5_000)
        await exited
        clearTimeout(timer)
      }
      await rm(dir, { recursive: true, force: true })
    },
  }
  try {
    await waitFor(
      async () => {
        if (done) throw new Error(`gateway process exited early:\n${out}`)
        return (await fetch(`${opsUrl}/readyz`).then((r) => r.status, () => 0)) === 200
      },
      { timeoutMs: 30_000, intervalMs: 100, message: 'the spawned gateway to be ready' },
    )
  } catch (err) {
    await proc.stop()
    throw err
  }
  return proc
}
