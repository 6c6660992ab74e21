// `npm run bench:cost`: the cost table a user sizes a pod by, and whether any cost grows faster
// than linearly in the work. The production build (dist/src/main.js with the shipped Node options,
// pinned to the server core, metrics on, log level warn: lib/procs.ts startGateway), and webdis as
// the reference, driven by wrk (one thread, pinned to the client core, which it shares with the
// redis-server: lib/wrk.ts). Every level runs on a fresh server (after one level V8 keeps the heap
// it grew, and the next would fit in it and look cheaper than it is): a warm-up of --warmup s, then
// the measured wrk run of a lead-in (1 s; 4 s from 1,000 connections, 8 s from 5,000: a full
// listen queue drops SYNs, sent again after 1, 3, 7 s) plus --duration s. Its steady window starts
// once the server holds the connections (its open fds), at the latest when the lead-in is over,
// and ends 300 ms before wrk stops: --duration s or longer. Over the window: requests served (the redis-server's count of
// GET or SET, so 503s do not count), the server's CPU time (utime + stime, /proc/<pid>/stat) per
// request served, its minor page faults per request, VmRSS at the end (sampled every 250 ms); over
// the whole run: CPU per response wrk counted (connecting included), p50/p99, VmHWM (reset just
// before the warm-up), the gateway's answers by code and its GC time (from its /metrics), and the
// busy share of the client core (near 100 %: the client, not the server, limited req/s) and of
// the server core beyond the server (other work on it: the figures are noisy).
//   1. conns: GET of a 32-byte value (the bench:k of lib/scenarios.ts) at 1, 50, 1,000 and 10,000
//      keep-alive connections, closed loop (as many requests in flight as connections), then the
//      same connections paced at --paced-rate req/s in all (random pauses, bench/wrk/paced.lua),
//      which holds them without overloading the server; the gateway and webdis (GET /GET/key).
//   2. instances: 10, 1,000 and 10,000 static instances in a generated config, plus 1 as the
//      reference, GET at 50 connections spread uniformly over all instances (bench/wrk/instances.lua
//      picks the instance per request); "shared": all on the one redis-server endpoint, "own": each
//      on an endpoint of its own (127.77.x.y forwarders, lib/forwarder.ts, with the 30 s / 10 s
//      timeouts bench/sizing.ts uses for them). Waits until every endpoint is up (or their number
//      has not moved for 30 s), then measures the idle CPU for 3 s (health checks). The gateway only.
//   3. values: GET and SET of 100 B, 1 KiB, 64 KiB and 1 MiB values at 50 connections, as
//      @upstash/redis sends them (POST /v1/instances/<name>, JSON ["set","key","<value>"],
//      Upstash-Encoding: base64); webdis: GET /GET/key and PUT /SET/key with the value as body.
// Then, per dimension, the growth check: between consecutive levels, the ratio of CPU per request
// and of the RSS increment (conns, values: over the same fresh server's idle RSS before the load;
// instances: over the 1-instance reference under the same load) against the ratio of the work;
// a ratio above the work's (+10 %; RSS increments under 48 MiB, the young generation's swing, are
// not compared) is flagged as faster than linear. Writes bench/results/cost-<date>.json. About
// 15 minutes on 2 cores with the defaults (10,000 own endpoints take up to 4 of them to come up).
// See bench/README.md "Cost as work grows".
//
// Options: --only conns,instances,values  --duration S (5)  --warmup S (2)  --servers gateway,webdis
//          --connections 1,50,1000,10000  --paced-rate R (5000; 0: closed loop only)
//          --sizes 10,1000,10000  --variants shared,own  --up-timeout S (240: endpoints up)
//          --values 100,1024,65536,1048576  --json FILE

import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import {
  BENCH_DIR,
  CLIENT_CORE,
  SERVER_CORE,
  cpuSeconds,
  haveCommand,
  loadAverage,
  machine,
  resetPeakRss,
  rssKiB,
  sleep,
  startGateway,
  startRedis,
  startWebdis,
  versionOf,
  vmHwmKiB,
  type GatewayServer,
  type Server,
} from './lib/procs.js'
import { startForwarders, type Forwarders } from './lib/forwarder.js'
import { runWrk, type HttpRequestSpec } from './lib/wrk.js'
import { KEY, SCENARIOS, SMALL, gwPost, seed } from './lib/scenarios.js'
import { fmtInt, table } from './lib/stats.js'

const { values: opts } = parseArgs({
  options: {
    only: { type: 'string', default: 'conns,instances,values' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    servers: { type: 'string', default: 'gateway,webdis' },
    connections: { type: 'string', default: '1,50,1000,10000' },
    sizes: { type: 'string', default: '10,1000,10000' },
    values: { type: 'string', default: '100,1024,65536,1048576' },
    variants: { type: 'string', default: 'shared,own' },
    'paced-rate': { type: 'string', default: '5000' },
    'up-timeout': { type: 'string', default: '240' },
    json: { type: 'string' },
  },
  allowPositionals: false,
})

type Dim = 'conns' | 'instances' | 'values'
type ServerKind = 'gateway' | 'webdis'
const list = (s: string): number[] => s.split(',').map(Number).filter((n) => n > 0)
const ONLY = new Set(opts.only.split(',') as Dim[])
const DURATION = Number(opts.duration)
const WARMUP = Number(opts.warmup)
const SERVERS = opts.servers.split(',') as ServerKind[]
const CONNECTIONS = list(opts.connections)
const SIZES = list(opts.sizes)
const VALUES = list(opts.values)
const VARIANTS = opts.variants.split(',') as ('shared' | 'own')[]
const PACED_RATE = Number(opts['paced-rate'])
const UP_TIMEOUT_MS = Number(opts['up-timeout']) * 1000
/** Connections of the instances and values dimensions. */
const CONNS = 50
/** wrk scripts: requests spread over instances; random pauses (mean BENCH_DELAY_MS). */
const INSTANCES_LUA = path.join(BENCH_DIR, 'wrk/instances.lua')
const PACED_LUA = path.join(BENCH_DIR, 'wrk/paced.lua')
/** wrk's per-request timeout: 10,000 connections on one wrk thread wait long for their turn. */
const WRK_TIMEOUT_S = 10

const MiB = (kib: number): number => kib / 1024
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'N/A')
/** x.toFixed(d), 'inf' when nothing was served at a level (a ratio over 0). */
const fx = (x: number, d: number): string => (Number.isNaN(x) ? 'N/A' : Number.isFinite(x) ? x.toFixed(d) : 'inf')
const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : 'N/A')
const ms = (us: number): string => (Number.isFinite(us) ? (us / 1000).toFixed(2) : 'N/A')
const bytes = (n: number): string => (n >= 1 << 20 ? `${n / (1 << 20)} MiB` : n >= 1024 ? `${n / 1024} KiB` : `${n} B`)

// ---------------------------------------------------------------------------------------------
// One level: a warm-up, then the measured window.

interface Level {
  dim: Dim
  server: ServerKind
  /** conns: 'closed' | 'paced <rate>/s'; instances: 'shared' | 'own'; values: 'GET' | 'SET'. */
  variant: string
  /** The work that grows: connections, instances or value bytes. */
  work: number
  connections: number
  /** The steady window (from all connections open to just before wrk stops), in seconds. */
  windowS: number
  /** Connections the server held when the window started (open fds over those before wrk). */
  connectedAtStart: number
  /** Requests served in the window (the redis-server's count of the command), per second. */
  rps: number
  /** Server CPU time over the window / requests served in it (us). */
  cpuUsPerReq: number
  /** The same less the idle CPU (instances: health checks) over the window. */
  cpuUsPerReqNet: number
  /** Over the whole wrk run (connecting and closing included) / the responses wrk counted. */
  cpuUsPerReqAll: number
  /** Minor page faults per request in the window (memory touched anew: fresh allocations). */
  faultsPerReq: number
  /** The gateway's GC time over the measured run (lead-in and window), in % of its CPU then. */
  gcPctOfCpu: number
  /** Server CPU in % of one core over the window, and idle before the load (instances only). */
  serverCpuPct: number
  idleCpuPct: number
  /** wrk: responses, non-2xx among them, latency over the whole run. */
  wrkRequests: number
  non2xx: number
  p50Us: number
  p99Us: number
  /** The fresh server's RSS before any load, at the end of the window, its highest sample, VmHWM. */
  rssIdleKiB: number
  rssKiB: number
  rssMaxKiB: number
  hwmKiB: number
  /** Value bytes moved per second (req/s x value size). */
  valueBytesPerS: number
  clientCorePct: number
  /** Busy share of the server core beyond the server itself: other work on it. */
  serverCoreOtherPct: number
  errors: number
  errorDetail: Record<string, number>
  /** The gateway's answers by code (redis_gateway_requests_total), warm-up and run together. */
  codes: Record<string, number>
  /** instances: endpoints up every 10 s while waiting for them. */
  upTimeline?: string[]
  load1: number
  note: string
}

/** Calls of a command (`get`, `set`) the redis-server has counted. */
async function redisCalls(rc: Redis, cmd: string): Promise<number> {
  const m = new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(await rc.info('commandstats'))
  return m ? Number(m[1]) : 0
}

const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length

/** Minor page faults of a process so far (/proc/<pid>/stat minflt): memory it touched anew. */
function minorFaults(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7])
}

/** The gateway's GC time so far (nodejs_gc_duration_seconds_sum over all kinds), in seconds. */
async function gcSeconds(g: GatewayServer): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${g.opsPort}/metrics`)).text()
  let sum = 0
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_sum\{[^}]*\} (\S+)$/gm)) sum += Number(m[1])
  return sum
}

/**
 * A warm-up run, then the measured run of wrk: --duration s of steady window after a lead-in in
 * which wrk opens its connections (the window starts once the server holds them all, at the latest
 * when the lead-in is over). CPU and the redis-server's count of `command` are read at both ends
 * of the window, RSS every 250 ms.
 */
async function measure(
  pid: number,
  spec: HttpRequestSpec,
  connections: number,
  counter: { rc: Redis; command: 'get' | 'set' },
  wrkOpts: { script?: string; env?: Record<string, string>; delayMs?: number } = {},
  idleCpuPct = 0,
  gateway: GatewayServer | null = null,
): Promise<Omit<Level, 'dim' | 'server' | 'variant' | 'work' | 'rssIdleKiB' | 'valueBytesPerS' | 'codes' | 'note'>> {
  const o = { connections, serverPid: pid, timeoutS: WRK_TIMEOUT_S, ...wrkOpts }
  if (!resetPeakRss(pid)) console.error('  (VmHWM could not be reset: peak since start)')
  const fds0 = openFds(pid)
  if (WARMUP > 0) await runWrk(spec, { ...o, durationS: WARMUP })
  // Until the warm-up's connections have closed (3 s at most).
  for (let i = 0; i < 30 && openFds(pid) > fds0 + 2; i++) await sleep(100)
  // Lead-in: a full listen queue drops SYNs, which the client sends again after 1, 3, 7 s.
  const lead = connections >= 5000 ? 8 : connections >= 1000 ? 4 : 1
  const all = Math.floor(connections * 0.99)
  const gc0 = gateway ? await gcSeconds(gateway) : NaN
  const cpuAll0 = cpuSeconds(pid)
  const tAll0 = performance.now()
  let running = true
  const run = runWrk(spec, { ...o, durationS: lead + DURATION }).finally(() => (running = false))
  // The window starts once the server holds every connection (or the lead-in is over)...
  let connected = 0
  while (running && performance.now() - tAll0 < lead * 1000) {
    connected = openFds(pid) - fds0
    if (connected >= all) break
    await sleep(50)
  }
  const t0 = performance.now()
  const cpu0 = cpuSeconds(pid)
  const faults0 = minorFaults(pid)
  const calls0 = await redisCalls(counter.rc, counter.command)
  // ... and ends 300 ms before wrk does.
  const end = tAll0 + (lead + DURATION) * 1000 - 300
  const samples: number[] = []
  while (running && performance.now() < end) {
    await sleep(Math.max(0, Math.min(250, end - performance.now())))
    samples.push(rssKiB(pid))
  }
  const calls = (await redisCalls(counter.rc, counter.command)) - calls0
  const cpu = cpuSeconds(pid) - cpu0
  const faults = minorFaults(pid) - faults0
  const windowS = (performance.now() - t0) / 1000
  const r = await run
  const wall = (performance.now() - tAll0) / 1000
  const cpuAll = cpuSeconds(pid) - cpuAll0
  const gc = gateway ? (await gcSeconds(gateway)) - gc0 : NaN
  const errors = r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout
  return {
    connections,
    windowS,
    connectedAtStart: connected,
    rps: calls / windowS,
    cpuUsPerReq: (cpu * 1e6) / calls,
    cpuUsPerReqNet: ((cpu - (idleCpuPct / 100) * windowS) * 1e6) / calls,
    cpuUsPerReqAll: (cpuAll * 1e6) / r.requests,
    faultsPerReq: faults / calls,
    gcPctOfCpu: (100 * gc) / cpuAll,
    serverCpuPct: (100 * cpu) / windowS,
    idleCpuPct,
    wrkRequests: r.requests,
    non2xx: r.errors.status,
    p50Us: r.latencyUs.p50,
    p99Us: r.latencyUs.p99,
    rssKiB: samples[samples.length - 1] ?? rssKiB(pid),
    rssMaxKiB: Math.max(...samples),
    hwmKiB: vmHwmKiB(pid),
    clientCorePct: r.coreBusy[CLIENT_CORE] ?? NaN,
    serverCoreOtherPct: Math.max(0, (r.coreBusy[SERVER_CORE] ?? NaN) - (100 * cpuAll) / wall),
    errors,
    errorDetail: r.errors,
    load1: loadAverage()[0],
  }
}

/** One request before the load: the server answers it as expected. */
async function check(spec: HttpRequestSpec, url: string, verify: (status: number, text: string) => string | null): Promise<void> {
  const body = spec.bodies?.[0]
  const res = await fetch(url, { method: spec.method, headers: spec.headers ?? {}, ...(body !== undefined ? { body } : {}) })
  const text = await res.text()
  const problem = verify(res.status, text)
  if (problem !== null) throw new Error(`check failed for ${spec.method} ${url.slice(0, 120)}: ${problem}: ${text.slice(0, 200)}`)
}
const gwResult = (expected: string) => (status: number, text: string): string | null =>
  status !== 200 ? `status ${status}` : (JSON.parse(text) as { result?: unknown }).result === expected ? null : 'unexpected result'
const ok200 = (status: number): string | null => (status === 200 ? null : `status ${status}`)
const b64 = (s: string): string => Buffer.from(s).toString('base64')

/** Fresh server of a kind on the redis-server; its idle RSS after a settle. */
async function fresh(kind: ServerKind, redisPort: number): Promise<{ server: Server; base: string; rssIdleKiB: number }> {
  const server = kind === 'gateway' ? await startGateway(redisPort) : await startWebdis(redisPort)
  await sleep(1000)
  return { server, base: kind === 'gateway' ? (server as GatewayServer).base : server.url, rssIdleKiB: rssKiB(server.proc.pid) }
}

/** The gateway's answers by code so far (redis_gateway_requests_total summed over the labels). */
async function gatewayCodes(server: Server, kind: ServerKind): Promise<Record<string, number>> {
  if (kind !== 'gateway') return {}
  const text = await (await fetch(`http://127.0.0.1:${(server as GatewayServer).opsPort}/metrics`)).text()
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^redis_gateway_requests_total\{[^}]*code="([^"]*)"[^}]*\} (\S+)$/gm)) {
    const n = Number(m[2])
    if (n > 0) out[m[1]!] = (out[m[1]!] ?? 0) + n
  }
  return out
}

/** What a level's figures need said beside them: refused requests, errors, a short window. */
function levelNote(l: Level): string {
  const out: string[] = []
  if (l.note) out.push(l.note)
  if (l.non2xx > 0) out.push(`${f1((100 * l.non2xx) / l.wrkRequests)} % non-2xx (${fmtInt(l.non2xx)})`)
  const total = Object.values(l.codes).reduce((x, y) => x + y, 0)
  const refused = Object.entries(l.codes).filter(([c]) => c !== 'OK')
  if (refused.length > 0) out.push(`gateway: ${refused.map(([c, n]) => `${c} ${f1((100 * n) / total)} %`).join(', ')}`)
  const other = l.errors - l.non2xx
  if (other > 0) out.push(`${fmtInt(other)} errors ${JSON.stringify({ ...l.errorDetail, status: undefined })}`)
  if (l.connectedAtStart < Math.floor(l.connections * 0.99)) out.push(`${fmtInt(l.connectedAtStart)} connected at the window's start`)
  if (l.windowS < DURATION * 0.8) out.push(`window ${f1(l.windowS)} s`)
  return out.join('; ')
}

function progress(l: Level): void {
  console.log(
    `  ${l.server.padEnd(7)} ${l.variant.padEnd(8)} ${fmtInt(l.work).padStart(9)}  ${fmtInt(l.rps).padStart(7)} req/s  ${f1(l.cpuUsPerReq).padStart(7)} us/req (${f1(l.cpuUsPerReqAll)} with connecting)  server ${f0(l.serverCpuPct)} %  p50 ${ms(l.p50Us)} ms  p99 ${ms(l.p99Us)} ms  RSS ${f1(MiB(l.rssIdleKiB))} -> ${f1(MiB(l.rssKiB))} MiB (peak ${f1(MiB(l.hwmKiB))})  client core ${f0(l.clientCorePct)} %, server core other ${f0(l.serverCoreOtherPct)} %  ${levelNote(l)}`,
  )
}

// ---------------------------------------------------------------------------------------------
// 1. Connections

async function connsDimension(redisPort: number, rc: Redis, levels: Level[]): Promise<void> {
  console.log(`\n1. connections: GET of a ${SMALL.length}-byte value, keep-alive, wrk 1 thread`)
  const get = SCENARIOS.find((s) => s.id === 'get-c50')!
  // Closed loop (each connection sends its next request as soon as the reply is in: as many
  // requests in flight as connections), then paced: the same connections at one total rate (each
  // waits connections/rate s between requests on average, drawn at random: bench/wrk/paced.lua),
  // which holds the connections without overloading the server.
  const runs = [
    ...CONNECTIONS.map((c) => ({ c, variant: 'closed', delayMs: undefined as number | undefined })),
    ...(PACED_RATE > 0
      ? CONNECTIONS.filter((c) => (c * 1000) / PACED_RATE >= 1).map((c) => ({ c, variant: `paced ${fmtInt(PACED_RATE)}/s`, delayMs: Math.round((c * 1000) / PACED_RATE) }))
      : []),
  ]
  for (const kind of SERVERS) {
    for (const { c, variant, delayMs } of runs) {
      const f = await fresh(kind, redisPort)
      let spec: HttpRequestSpec
      if (kind === 'gateway') {
        if (get.gateway === 'sdk') throw new Error('unreachable')
        spec = get.gateway(f.base)
        await check(spec, spec.url, gwResult(b64(SMALL)))
      } else {
        spec = get.webdis!.req(f.base)
        await check(spec, spec.url, ok200)
      }
      const m = await measure(f.server.proc.pid, spec, c, { rc, command: 'get' }, delayMs !== undefined ? { delayMs, script: PACED_LUA } : {}, 0, kind === 'gateway' ? (f.server as GatewayServer) : null)
      const codes = await gatewayCodes(f.server, kind)
      await f.server.proc.stop()
      const note = delayMs !== undefined ? `${delayMs} ms between requests (mean)` : ''
      const l: Level = { dim: 'conns', server: kind, variant, work: c, rssIdleKiB: f.rssIdleKiB, valueBytesPerS: m.rps * SMALL.length, codes, note, ...m }
      levels.push(l)
      progress(l)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Instances (the gateway only)

const instanceName = (i: number): string => `inst-${String(i).padStart(5, '0')}`

async function metricsText(g: GatewayServer): Promise<string> {
  return (await fetch(`http://127.0.0.1:${g.opsPort}/metrics`)).text()
}
/** Endpoint series that report up (a ready connection and a passed health check). */
async function endpointsUp(g: GatewayServer): Promise<number> {
  return ((await metricsText(g)).match(/^redis_gateway_endpoint_up\{[^}]*\} 1$/gm) ?? []).length
}

async function instancesDimension(redisPort: number, rc: Redis, levels: Level[]): Promise<void> {
  console.log(`\n2. instances: GET of a ${SMALL.length}-byte value at ${CONNS} connections, spread uniformly over the instances (1: the reference)`)
  for (const variant of VARIANTS) {
    for (const n of [1, ...SIZES]) {
      const fwd: Forwarders | null = variant === 'own' ? await startForwarders(redisPort, n) : null
      const instances = Array.from({ length: n }, (_, i) => ({ name: instanceName(i), endpoint: fwd ? fwd.endpoint(i) : `redis://127.0.0.1:${redisPort}` }))
      // Own endpoints all queue their start-up work on one redis-server and the forwarders (the
      // client core): as bench/sizing.ts, longer timeouts so that 10,000 of them come up.
      const config = variant === 'own' ? ['redis: { connectTimeout: 30s, commandTimeout: 30s }', 'health: { timeout: 10s }'] : []
      const t0 = performance.now()
      const g = await startGateway(redisPort, { instances, config, timeoutMs: 180_000 })
      const readyS = (performance.now() - t0) / 1000
      // Until every endpoint is up, the up count stops moving for 30 s, or --up-timeout.
      let up = 0
      let lastChange = performance.now()
      const timeline: string[] = []
      while (up < n && performance.now() - t0 < UP_TIMEOUT_MS && performance.now() - lastChange < 30_000) {
        const now = await endpointsUp(g).catch(() => up)
        if (now !== up) lastChange = performance.now()
        up = now
        if (timeline.length < Math.floor((performance.now() - t0) / 10_000)) timeline.push(`${fmtInt(up)}@${f0((performance.now() - t0) / 1000)}s`)
        if (up < n) await sleep(1000)
      }
      const upS = (performance.now() - t0) / 1000
      if (up < n) console.log(`    ${fmtInt(up)} of ${fmtInt(n)} endpoints up after ${f1(upS)} s: ${timeline.join(' ')}`)
      // Settle, then the idle CPU (health checks) and RSS before the load.
      await sleep(2000)
      const pid = g.proc.pid
      const c0 = cpuSeconds(pid)
      const i0 = performance.now()
      await sleep(3000)
      const idleCpuPct = (100 * (cpuSeconds(pid) - c0)) / ((performance.now() - i0) / 1000)
      const rssIdle = rssKiB(pid)
      const spec = gwPost(`${g.url}/`, ['get', KEY])
      for (const i of [0, n - 1]) await check(spec, `${g.url}/v1/instances/${instanceName(i)}`, gwResult(b64(SMALL)))
      const m = await measure(pid, spec, CONNS, { rc, command: 'get' }, { script: INSTANCES_LUA, env: { BENCH_INSTANCES: String(n), BENCH_INSTANCE_PREFIX: 'inst-' } }, idleCpuPct, g)
      const codes = await gatewayCodes(g, 'gateway')
      await g.proc.stop()
      await fwd?.stop()
      const note = `ready ${f1(readyS)} s, ${fmtInt(up)}/${fmtInt(n)} up at ${f1(upS)} s${up < n ? ' (no more came up)' : ''}${variant === 'own' ? ', timeouts 30 s / health 10 s' : ''}`
      const l: Level = { dim: 'instances', server: 'gateway', variant, work: n, rssIdleKiB: rssIdle, valueBytesPerS: m.rps * SMALL.length, codes, note, upTimeline: timeline, ...m }
      levels.push(l)
      progress(l)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Value sizes

const valueKey = (size: number): string => `bench:cost:v${size}`

async function valuesDimension(redisPort: number, rc: Redis, levels: Level[]): Promise<void> {
  console.log(`\n3. values: GET and SET at ${CONNS} connections`)
  for (const size of VALUES) await rc.set(valueKey(size), 'x'.repeat(size))
  for (const kind of SERVERS) {
    for (const op of ['GET', 'SET'] as const) {
      for (const size of VALUES) {
        const value = 'x'.repeat(size)
        const f = await fresh(kind, redisPort)
        let spec: HttpRequestSpec
        if (kind === 'gateway') {
          spec = op === 'GET' ? gwPost(f.base, ['get', valueKey(size)]) : gwPost(f.base, ['set', `bench:cost:s${size}`, value])
          await check(spec, spec.url, gwResult(op === 'GET' ? b64(value) : 'OK'))
        } else {
          spec = op === 'GET' ? { method: 'GET', url: `${f.base}/GET/${valueKey(size)}` } : { method: 'PUT', url: `${f.base}/SET/bench:cost:s${size}`, bodies: [value] }
          await check(spec, spec.url, ok200)
        }
        const m = await measure(f.server.proc.pid, spec, CONNS, { rc, command: op === 'GET' ? 'get' : 'set' }, {}, 0, kind === 'gateway' ? (f.server as GatewayServer) : null)
        const codes = await gatewayCodes(f.server, kind)
        await f.server.proc.stop()
        const l: Level = { dim: 'values', server: kind, variant: op, work: size, rssIdleKiB: f.rssIdleKiB, valueBytesPerS: m.rps * size, codes, note: '', ...m }
        levels.push(l)
        progress(l)
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Growth: is any cost growing faster than linearly in the work?

interface Step {
  dim: Dim
  series: string
  from: number
  to: number
  workRatio: number
  cpuRatio: number
  /** ln(cost ratio) / ln(work ratio): 0 flat, 1 linear, above 1 faster than linear. */
  cpuExponent: number
  rssFromMiB: number
  rssToMiB: number
  rssRatio: number
  rssExponent: number
  /** Added RSS and CPU per request per added unit of work: per connection / instance (KiB, us per
   *  1,000), per value byte (MiB per MiB, us per KiB). */
  rssPerUnit: number
  cpuPerUnit: number
  verdict: string
}

/** RSS increments below this are within the young generation's swings (see the README). */
const RSS_NOISE_MIB = 48
/** Tolerance on a ratio: above the work's ratio by more than this is flagged. */
const TOLERANCE = 1.1

function growth(levels: Level[]): Step[] {
  const steps: Step[] = []
  const series = new Map<string, Level[]>()
  for (const l of levels) {
    const k = `${l.dim}|${l.server}|${l.variant}`
    series.set(k, [...(series.get(k) ?? []), l])
  }
  for (const [k, ls] of series) {
    const sorted = ls.sort((a, b) => a.work - b.work)
    const dim = sorted[0]!.dim
    // The RSS increment a level is charged: conns and values over the fresh server's idle RSS;
    // instances over the 1-instance reference under the same load (no increment at the reference).
    const ref = dim === 'instances' ? sorted.find((l) => l.work === 1) : undefined
    const incr = (l: Level): number => MiB(ref ? l.rssKiB - ref.rssKiB : l.rssKiB - l.rssIdleKiB)
    for (let i = 1; i < sorted.length; i++) {
      const a = sorted[i - 1]!
      const b = sorted[i]!
      const workRatio = b.work / a.work
      const cpuRatio = b.cpuUsPerReq / a.cpuUsPerReq
      const ra = incr(a)
      const rb = incr(b)
      const rssMeasurable = !(ref && a === ref) && ra >= RSS_NOISE_MIB
      const rssRatio = rssMeasurable ? rb / ra : NaN
      const cpuFaster = cpuRatio > workRatio * TOLERANCE
      const rssFaster = rssMeasurable && rssRatio > workRatio * TOLERANCE && rb - ra >= RSS_NOISE_MIB
      const problems = [cpuFaster ? 'CPU/req' : '', rssFaster ? 'RSS' : ''].filter((x) => x !== '')
      steps.push({
        dim,
        series: k.split('|').slice(1).join(' '),
        from: a.work,
        to: b.work,
        workRatio,
        cpuRatio,
        cpuExponent: Math.log(cpuRatio) / Math.log(workRatio),
        rssFromMiB: ra,
        rssToMiB: rb,
        rssRatio,
        rssExponent: Math.log(rssRatio) / Math.log(workRatio),
        // Only where the step added more than the noise.
        rssPerUnit: Math.abs(rb - ra) < RSS_NOISE_MIB ? NaN : dim === 'values' ? (rb - ra) / ((b.work - a.work) / 2 ** 20) : ((rb - ra) * 1024) / (b.work - a.work),
        cpuPerUnit: ((b.cpuUsPerReq - a.cpuUsPerReq) / (b.work - a.work)) * (dim === 'values' ? 1024 : 1000),
        verdict: problems.length > 0 ? `FASTER THAN LINEAR (${problems.join(', ')})` : rssMeasurable ? 'ok' : `ok (CPU; RSS increment below ${RSS_NOISE_MIB} MiB or at the reference)`,
      })
    }
  }
  return steps
}

// ---------------------------------------------------------------------------------------------
// Tables

function printTables(levels: Level[], steps: Step[]): void {
  const common = (l: Level): string[] => [
    fmtInt(l.rps),
    f1(l.cpuUsPerReq),
    `${f0(l.serverCpuPct)}%`,
    f1(l.cpuUsPerReqAll),
    ms(l.p50Us),
    ms(l.p99Us),
    f1(MiB(l.rssIdleKiB)),
    f1(MiB(l.rssKiB)),
    f1(MiB(l.hwmKiB)),
    f1(l.faultsPerReq),
    l.server === 'gateway' ? `${f0(l.gcPctOfCpu)}%` : '',
    `${f0(l.clientCorePct)}%`,
    `${f0(l.serverCoreOtherPct)}%`,
  ]
  const head = ['req/s', 'cpu us/req', 'srv cpu', 'incl conn', 'p50 ms', 'p99 ms', 'RSS idle', 'RSS MiB', 'peak MiB', 'flt/req', 'gc', 'cli core', 'srv other']
  const errs = levelNote

  const conns = levels.filter((l) => l.dim === 'conns')
  if (conns.length > 0) {
    console.log(`\nconnections (GET of a ${SMALL.length}-byte value, keep-alive)`)
    console.log(table([['server', 'load', 'conns', ...head, '+ MiB', 'note'], ...conns.map((l) => [l.server, l.variant, fmtInt(l.work), ...common(l), f1(MiB(l.rssKiB - l.rssIdleKiB)), errs(l)])]))
  }
  const inst = levels.filter((l) => l.dim === 'instances')
  if (inst.length > 0) {
    console.log(`\ninstances (GET at ${CONNS} connections, uniform over the instances; + MiB: over the 1-instance reference under the same load)`)
    const refOf = (v: string): Level | undefined => inst.find((l) => l.variant === v && l.work === 1)
    console.log(
      table([
        ['variant', 'instances', ...head, 'idle cpu', 'net us/req', '+ MiB', 'note'],
        ...inst.map((l) => [l.variant, fmtInt(l.work), ...common(l), `${f1(l.idleCpuPct)}%`, f1(l.cpuUsPerReqNet), l.work === 1 ? '' : f1(MiB(l.rssKiB - (refOf(l.variant)?.rssKiB ?? NaN))), errs(l)]),
      ]),
    )
  }
  const vals = levels.filter((l) => l.dim === 'values')
  if (vals.length > 0) {
    console.log(`\nvalues (${CONNS} connections; MiB/s: value bytes moved, req/s x size)`)
    console.log(
      table([
        ['server', 'op', 'value', 'MiB/s', ...head, '+ MiB', 'note'],
        ...vals.map((l) => [l.server, l.variant, bytes(l.work), f1(l.valueBytesPerS / 2 ** 20), ...common(l), f1(MiB(l.rssKiB - l.rssIdleKiB)), errs(l)]),
      ]),
    )
  }
  if (steps.length > 0) {
    console.log(`\ngrowth between consecutive levels: cost ratio against the work's ratio (exponent: 0 flat, 1 linear, > 1 faster than linear)`)
    console.log(
      table([
        ['dimension', 'series', 'step', 'work x', 'cpu/req x', 'cpu exp', 'cpu per unit', 'RSS +MiB', 'RSS incr x', 'RSS exp', 'RSS per unit', 'verdict'],
        ...steps.map((s) => [
          s.dim,
          s.series,
          `${fmtInt(s.from)} -> ${fmtInt(s.to)}`,
          s.workRatio.toFixed(1),
          fx(s.cpuRatio, 2),
          fx(s.cpuExponent, 2),
          `${fx(s.cpuPerUnit, 2)} ${s.dim === 'values' ? 'us/KiB' : 'us/1k'}`,
          `${f1(s.rssFromMiB)} -> ${f1(s.rssToMiB)}`,
          Number.isFinite(s.rssRatio) ? s.rssRatio.toFixed(2) : 'n/a',
          Number.isFinite(s.rssExponent) ? s.rssExponent.toFixed(2) : 'n/a',
          Number.isNaN(s.rssPerUnit) ? '' : s.dim === 'values' ? `${s.rssPerUnit.toFixed(1)} MiB/MiB` : `${s.rssPerUnit.toFixed(1)} KiB/${s.dim === 'conns' ? 'conn' : 'inst'}`,
          s.verdict,
        ]),
      ]),
    )
    console.log('req/s: requests served in the steady window (the redis-server\'s count of GET or SET); cpu us/req: server CPU time over')
    console.log('  that window / those requests; incl conn: over the whole wrk run (opening and closing the connections too) / the')
    console.log('  responses wrk counted; srv cpu: % of one core; p50/p99: wrk, whole run; cli core: busy share of the core wrk and')
    console.log('  redis-server share (near 100 %: the client limited req/s); srv other: busy share of the server core beyond the server')
    console.log('  (other work on it); flt/req: minor page faults per request in the window (memory touched anew); gc: the gateway\'s')
    console.log('  GC time (nodejs_gc_duration_seconds) in % of its CPU over the measured run.')
    console.log(`  Growth: ratios above the work's x${TOLERANCE} are flagged; RSS increments under ${RSS_NOISE_MIB} MiB are not compared.`)
    console.log('  per unit: what the step added per unit of work: CPU per request per 1,000 connections or instances or per KiB of')
    console.log(`  value; RSS per connection or instance, or MiB of RSS per MiB of value size (50 values in flight), when over ${RSS_NOISE_MIB} MiB.`)
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const missing = ['wrk', 'redis-server', 'taskset', ...(SERVERS.includes('webdis') ? ['webdis'] : [])].filter((c) => !haveCommand(c))
  if (missing.length > 0) {
    console.error(`missing: ${missing.join(', ')}. Install with: apt-get install -y wrk webdis redis-server util-linux`)
    process.exit(2)
  }
  const started = new Date()
  const load0 = loadAverage()
  const mach = machine()
  console.log(
    `bench:cost ${started.toISOString()}: ${String(mach.cpus)} CPUs (${String(mach.cpuModel)}), node ${process.version}, load average ${load0.map((x) => x.toFixed(2)).join(' ')}; server on core ${SERVER_CORE}, wrk and redis-server on core ${CLIENT_CORE}; warm-up ${WARMUP} s, window ${DURATION} s, a fresh server per level`,
  )
  const redis = await startRedis()
  await seed(redis.port)
  // The benchmark's own connection to the redis-server: the seeds and the command counters.
  const rc = new Redis({ port: redis.port, host: '127.0.0.1' })
  const levels: Level[] = []
  if (ONLY.has('conns')) await connsDimension(redis.port, rc, levels)
  if (ONLY.has('instances') && SERVERS.includes('gateway')) await instancesDimension(redis.port, rc, levels)
  if (ONLY.has('values')) await valuesDimension(redis.port, rc, levels)
  rc.disconnect()
  await redis.proc.stop()
  const load1 = loadAverage()

  const steps = growth(levels)
  printTables(levels, steps)
  const flagged = steps.filter((s) => s.verdict.startsWith('FASTER'))
  console.log(`\n${flagged.length === 0 ? 'no cost grew faster than linearly' : `${flagged.length} step(s) grew faster than linearly`} in ${steps.length} steps`)
  console.log(`load average at start ${load0.map((x) => x.toFixed(2)).join(' ')}, at end ${load1.map((x) => x.toFixed(2)).join(' ')}`)

  const file = opts.json ?? path.join(BENCH_DIR, 'results', `cost-${started.toISOString().replace(/[:.]/g, '-')}.json`)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(
    file,
    JSON.stringify(
      {
        started: started.toISOString(),
        finished: new Date().toISOString(),
        machine: { ...mach, loadAverageStart: load0, loadAverageEnd: load1 },
        tools: {
          wrk: versionOf('wrk', ['--version']),
          webdis: versionOf('dpkg-query', ['-W', '-f', '${Version}', 'webdis']),
          redis: versionOf('redis-server', ['--version']),
        },
        settings: { durationS: DURATION, warmupS: WARMUP, servers: SERVERS, connections: CONNECTIONS, sizes: SIZES, values: VALUES, variants: VARIANTS, instancesConnections: CONNS },
        levels,
        growth: steps,
      },
      null,
      2,
    ),
  )
  console.log(`results: ${path.relative(process.cwd(), file)}`)
}

await main()
process.exit(0)
