// `npm run bench`: the gateway against webdis (the C HTTP interface to Redis, one thread) and a raw
// node:http hello-world server (the ceiling of Node's HTTP layer), on loopback, each pinned to the
// same core, driven by wrk (and the @upstash/redis SDK) from the other core. Prints one table
// (median of the runs) and the performance targets (bench/README.md), then the memory figures and
// the routing micro-benchmark, and writes everything to bench/results/. See bench/README.md.
//
// Options: --runs N (3)  --duration S (5)  --warmup S (2)  --only id,id  --servers gateway,webdis,hello
//          --json FILE  --no-memory  --no-routing  --soak (adds the 5-minute soak)  --cpu-prof DIR

import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { parseArgs } from 'node:util'
import { gcTracker } from './lib/gc.js'
import {
  BENCH_DIR,
  CLIENT_CORE,
  INSTANCE,
  ROOT,
  SHIPPED_NODE_ARGS,
  SERVER_CORE,
  TOKEN,
  coreBusy,
  coreTimes,
  cpuSeconds,
  haveCommand,
  loadAverage,
  machine,
  pinned,
  startGateway,
  startHello,
  startRedis,
  startWebdis,
  tmpDir,
  versionOf,
  type GatewayServer,
  type Server,
} from './lib/procs.js'
import { runWrk, type HttpRequestSpec, type WrkResult } from './lib/wrk.js'
import { median, fmtInt, fmtRatio, table } from './lib/stats.js'
import { SCENARIOS, seed, useSdkCapture, type Scenario } from './lib/scenarios.js'

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    only: { type: 'string' },
    servers: { type: 'string', default: 'webdis,hello,gateway' },
    json: { type: 'string' },
    'no-memory': { type: 'boolean', default: false },
    'no-routing': { type: 'boolean', default: false },
    soak: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
  },
  allowPositionals: false,
})

const RUNS = Number(opts.runs)
const DURATION = Number(opts.duration)
const WARMUP = Number(opts.warmup)
type ServerKind = 'webdis' | 'hello' | 'gateway'
const SERVERS = opts.servers.split(',') as ServerKind[]

// ---------------------------------------------------------------------------------------------
// Checks: each server answers each scenario's request correctly before it is measured.

interface Checked {
  /** Reply body size in bytes (the hello-world server then answers the same size). */
  readonly bytes: number
}

async function check(spec: HttpRequestSpec, verify: (status: number, text: string) => string | null): Promise<Checked> {
  const body = spec.bodies?.[0]
  const res = await fetch(spec.url, {
    method: spec.method,
    headers: spec.headers ?? {},
    ...(body !== undefined ? { body } : {}),
  })
  const text = await res.text()
  const problem = verify(res.status, text)
  if (problem !== null) throw new Error(`check failed for ${spec.method} ${spec.url.slice(0, 120)}: ${problem}: ${text.slice(0, 200)}`)
  return { bytes: Buffer.byteLength(text) }
}

/** `result` of a single reply, or the list of `result`s of a pipeline / transaction reply. */
function resultOf(j: unknown): unknown {
  if (Array.isArray(j)) return j.map((x) => (x as { result: unknown }).result)
  return (j as { result: unknown }).result
}

// ---------------------------------------------------------------------------------------------
// Metrics scrape: proves metrics are on and counts the SDK's HTTP requests.

async function gatewayRequests(g: GatewayServer): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${g.opsPort}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('redis_gateway_requests_total{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

// ---------------------------------------------------------------------------------------------
// SDK driver

interface SdkResult {
  commands: number
  allCommands: number
  durationS: number
  errors: number
  firstError: string
  latencyUs: { p50: number; p90: number; p99: number; max: number }
}

function runSdk(g: GatewayServer, durationS: number, warmupS: number, env: NodeJS.ProcessEnv = {}): Promise<SdkResult> {
  const argv = pinned(CLIENT_CORE, [
    process.execPath,
    '--import',
    'tsx',
    path.join(BENCH_DIR, 'sdk-driver.ts'),
    g.base,
    TOKEN,
    '50',
    String(durationS),
    String(warmupS),
  ])
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    let text = ''
    child.stdout.on('data', (b: Buffer) => (text += b.toString('utf8')))
    child.stderr.on('data', (b: Buffer) => (text += b.toString('utf8')))
    child.on('exit', (code) => {
      const line = text.split('\n').find((l) => l.startsWith('BENCH_JSON '))
      if (code !== 0 || line === undefined) return reject(new Error(`sdk driver failed (${code}):\n${text}`))
      resolve(JSON.parse(line.slice('BENCH_JSON '.length)) as SdkResult)
    })
  })
}

// ---------------------------------------------------------------------------------------------
// One measured run

export interface RunFigures {
  rps: number
  cmdps: number
  p50Us: number
  p99Us: number
  p999Us: number
  serverCpu: number
  /**
   * Gateway only (--trace-gc): its main thread's GC pauses and incremental marking steps, in % of
   * its CPU time, and the longest pause (ms).
   */
  gcShare: number
  gcMaxMs: number
  /**
   * Server CPU time per request (us): robust to background load, unlike req/s. On a quiet machine a
   * server that saturates its core makes 1e6 / cpuUsPerReq requests per second.
   */
  cpuUsPerReq: number
  clientCoreBusy: number
  errors: number
  /** SDK only: HTTP requests the gateway counted. */
  httpRequests?: number
}

/** GC of the gateway (started with --trace-gc), read from its output; null for the other servers. */
let gatewayGc: ReturnType<typeof gcTracker> | null = null

function gcFigures(gc: ReturnType<typeof gcTracker> | null, serverCpu: number, wallS: number): { gcShare: number; gcMaxMs: number } {
  if (gc === null) return { gcShare: NaN, gcMaxMs: NaN }
  const t = gc.take()
  const cpuMs = (serverCpu / 100) * wallS * 1000
  return { gcShare: cpuMs > 0 ? (100 * t.ms) / cpuMs : NaN, gcMaxMs: t.maxMs }
}

async function measure(
  kind: ServerKind,
  s: Scenario,
  server: Server,
  spec: HttpRequestSpec | 'sdk',
  commands: number,
  durationS: number,
): Promise<RunFigures> {
  const gc = kind === 'gateway' ? gatewayGc : null
  if (spec === 'sdk') {
    const g = server as GatewayServer
    const before = await gatewayRequests(g)
    const cores0 = coreTimes()
    const cpu0 = cpuSeconds(g.proc.pid)
    const t0 = performance.now()
    gc?.take()
    const r = await runSdk(g, durationS, 1)
    const wall = (performance.now() - t0) / 1000
    const busy = coreBusy(cores0, coreTimes())
    const serverCpu = (100 * (cpuSeconds(g.proc.pid) - cpu0)) / wall
    const http = (await gatewayRequests(g)) - before
    if (r.errors > 0) console.error(`  ${kind} ${s.id}: ${r.errors} SDK errors, first: ${r.firstError}`)
    // The gateway counted requests over the whole driver run (start-up and warm-up included): the
    // request rate is the measured command rate over the commands per request.
    return {
      rps: (r.commands / r.durationS) * (http / Math.max(1, r.allCommands)),
      cmdps: r.commands / r.durationS,
      p50Us: r.latencyUs.p50,
      p99Us: r.latencyUs.p99,
      p999Us: NaN,
      serverCpu,
      ...gcFigures(gc, serverCpu, wall),
      cpuUsPerReq: (serverCpu * 1e4) / (http / wall),
      clientCoreBusy: busy[CLIENT_CORE] ?? NaN,
      errors: r.errors,
      httpRequests: http,
    }
  }
  gc?.take()
  const t0 = performance.now()
  const r: WrkResult = await runWrk(spec, { connections: s.connections, durationS, serverPid: server.proc.pid })
  const wall = (performance.now() - t0) / 1000
  const errors = r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout
  if (errors > 0) console.error(`  ${kind} ${s.id}: wrk errors ${JSON.stringify(r.errors)}`)
  void kind
  return {
    rps: r.rps,
    cmdps: r.rps * commands,
    p50Us: r.latencyUs.p50,
    p99Us: r.latencyUs.p99,
    p999Us: r.latencyUs.p999,
    serverCpu: r.serverCpu,
    ...gcFigures(gc, r.serverCpu, wall),
    cpuUsPerReq: (r.serverCpu * 1e4) / r.rps,
    clientCoreBusy: r.coreBusy[CLIENT_CORE] ?? NaN,
    errors,
  }
}

export interface Row {
  scenario: string
  title: string
  server: ServerKind
  connections: number
  note: string
  runs: RunFigures[]
  median: RunFigures
}

function medianOf(runs: RunFigures[]): RunFigures {
  const m = (f: (r: RunFigures) => number): number => median(runs.map(f))
  return {
    rps: m((r) => r.rps),
    cmdps: m((r) => r.cmdps),
    p50Us: m((r) => r.p50Us),
    p99Us: m((r) => r.p99Us),
    p999Us: m((r) => r.p999Us),
    serverCpu: m((r) => r.serverCpu),
    gcShare: m((r) => r.gcShare),
    gcMaxMs: m((r) => r.gcMaxMs),
    cpuUsPerReq: m((r) => r.cpuUsPerReq),
    clientCoreBusy: m((r) => r.clientCoreBusy),
    errors: runs.reduce((a, r) => a + r.errors, 0),
  }
}

// ---------------------------------------------------------------------------------------------

function preflight(): void {
  const missing = ['wrk', 'webdis', 'redis-server', 'taskset'].filter((c) => !haveCommand(c))
  if (missing.length > 0) {
    console.error(`missing: ${missing.join(', ')}. Install with: apt-get install -y wrk webdis redis-server util-linux`)
    process.exit(2)
  }
}

async function main(): Promise<void> {
  preflight()
  const started = new Date()
  const mach = machine()
  console.log(
    `redis-gateway benchmark: ${mach.cpus} CPUs (${mach.cpuModel}), node ${process.version}, load average ${loadAverage().map((x) => x.toFixed(2)).join(' ')}`,
  )
  console.log(
    `server under test pinned to core ${SERVER_CORE}; wrk / SDK driver and redis-server on core ${CLIENT_CORE}; ${RUNS} runs x ${DURATION}s (+${WARMUP}s warm-up), median${process.env.BENCH_NICE ? `; nice ${process.env.BENCH_NICE}` : ''}`,
  )
  const scenarios = opts.only ? SCENARIOS.filter((s) => opts.only!.split(',').includes(s.id)) : SCENARIOS
  const redis = await startRedis()
  await seed(redis.port)
  const servers: Partial<Record<ServerKind, Server>> = {}
  if (SERVERS.includes('webdis')) servers.webdis = await startWebdis(redis.port)
  if (SERVERS.includes('hello')) servers.hello = await startHello()
  if (SERVERS.includes('gateway')) {
    const cpuProf = opts['cpu-prof']
    // --trace-gc: one line per collection on its output (the GC columns); nothing else changes.
    servers.gateway = await startGateway(redis.port, { nodeArgs: ['--trace-gc', ...(cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(cpuProf)}`] : [])] })
    gatewayGc = gcTracker(servers.gateway.proc.child)
  }
  const gateway = servers.gateway as GatewayServer | undefined
  if (gateway && scenarios.some((s) => s.id === 'sdk-wrk')) {
    // The SDK's own auto-pipelined requests (50 callers, each sending 1-5 SETs and GETs at once,
    // so that batches come in mixed sizes), captured once and replayed by wrk, so that the client is
    // not the limit (the sdk-50 scenario's driver is).
    const file = path.join(tmpDir(), 'sdk-capture.json')
    await runSdk(gateway, 2, 1, { SDK_CAPTURE: file, SDK_FANOUT: '5' })
    const t = useSdkCapture(file)
    console.log(
      `sdk-wrk: ${t.bodies.length} captured /pipeline bodies, ${t.commands.toFixed(1)} commands per request on average (min ${t.sizes.min}, median ${t.sizes.median}, max ${t.sizes.max})`,
    )
  }

  const rows: Row[] = []
  for (const s of scenarios) {
    // What each server is sent, checked once before measuring.
    const plan: { kind: ServerKind; spec: HttpRequestSpec | 'sdk'; commands: number; note: string }[] = []
    let gwBytes = 0
    if (gateway) {
      if (s.gateway === 'sdk') plan.push({ kind: 'gateway', spec: 'sdk', commands: 1, note: '@upstash/redis 1.x, enableAutoPipelining' })
      else {
        const spec = s.gateway(gateway.base)
        const c = await check(spec, (status, text) => {
          if (status !== 200) return `status ${status}`
          return s.expect && !s.expect(resultOf(JSON.parse(text))) ? 'unexpected result' : null
        })
        gwBytes = c.bytes
        plan.push({ kind: 'gateway', spec, commands: s.commands, note: `POST JSON${spec.url.endsWith(INSTANCE) ? '' : ` ${spec.url.slice(spec.url.lastIndexOf('/'))}`}, Upstash-Encoding: base64` })
      }
    }
    if (servers.webdis && s.webdis) {
      const spec = s.webdis.req(servers.webdis.url)
      await check(spec, (status) => (status === 200 ? null : `status ${status}`))
      plan.push({ kind: 'webdis', spec, commands: s.webdis.commands, note: s.webdis.note })
    }
    if (servers.hello && s.gateway !== 'sdk' && gateway) {
      const g = s.gateway(gateway.base)
      const spec: HttpRequestSpec = {
        ...g,
        url: servers.hello.url + new URL(g.url).pathname,
        headers: { ...g.headers, 'x-reply-bytes': String(gwBytes) },
      }
      await check(spec, (status, text) => (status === 200 && Buffer.byteLength(text) === gwBytes ? null : `status ${status}`))
      plan.push({ kind: 'hello', spec, commands: s.commands, note: `same request, ${gwBytes}-byte reply` })
    }
    const runs = new Map<ServerKind, RunFigures[]>()
    // Warm-up (JIT, connection pools), then the runs, servers interleaved so that background load
    // hits each of them alike.
    for (const p of plan) if (WARMUP > 0) await measure(p.kind, s, servers[p.kind]!, p.spec, p.commands, WARMUP)
    for (let i = 0; i < RUNS; i++) {
      for (const p of plan) {
        const f = await measure(p.kind, s, servers[p.kind]!, p.spec, p.commands, DURATION)
        runs.set(p.kind, [...(runs.get(p.kind) ?? []), f])
        process.stdout.write(
          `  ${s.id.padEnd(14)} run ${i + 1}/${RUNS} ${p.kind.padEnd(8)} ${fmtInt(f.rps).padStart(8)} req/s ${fmtInt(f.cmdps).padStart(9)} cmd/s  p50 ${fmtInt(f.p50Us)} us  p99 ${fmtInt(f.p99Us)} us  server cpu ${f.serverCpu.toFixed(0)}% (${f.cpuUsPerReq.toFixed(0)} us/req)  client core ${f.clientCoreBusy.toFixed(0)}%\n`,
        )
      }
    }
    for (const p of plan) {
      const r = runs.get(p.kind)!
      rows.push({ scenario: s.id, title: s.title, server: p.kind, connections: s.connections, note: p.note, runs: r, median: medianOf(r) })
    }
    if (s.webdis === null && servers.webdis) {
      rows.push({ scenario: s.id, title: s.title, server: 'webdis', connections: s.connections, note: 'N/A: not an HTTP-level equivalent (the SDK speaks the Upstash protocol)', runs: [], median: na() })
    }
  }
  const metricsOn = gateway ? (await gatewayRequests(gateway)) > 0 : null
  const loadAfter = loadAverage()
  await Promise.all(Object.values(servers).map((s) => s.proc.stop()))
  await redis.proc.stop()

  console.log('')
  printTable(rows)
  const targets = evaluateTargets(rows)
  console.log('')
  for (const t of targets) console.log(`${t.pass === null ? ' n/a' : t.pass ? 'PASS' : 'FAIL'}  ${t.name}: ${t.detail}`)
  console.log(`\nload average at start ${(mach.loadAverage as number[]).map((x) => x.toFixed(2)).join(' ')}, at end ${loadAfter.map((x) => x.toFixed(2)).join(' ')}; metrics on: ${metricsOn}`)

  const result: Record<string, unknown> = {
    date: started.toISOString(),
    machine: mach,
    loadAverageAfter: loadAfter,
    tools: {
      wrk: versionOf('wrk', ['--version']),
      webdis: versionOf('dpkg-query', ['-W', '-f', '${Version}', 'webdis']),
      redis: versionOf('redis-server', ['--version']),
    },
    settings: { runs: RUNS, durationS: DURATION, warmupS: WARMUP, nice: process.env.BENCH_NICE ?? null, gatewayEnv: 'no OTEL_* variables (tracing off, as shipped); log level warn; metrics on' },
    metricsOn,
    rows,
    targets,
  }
  if (!opts['no-memory'] && !opts.only) {
    const { runMemory } = await import('./memory.js')
    result.memory = await runMemory()
  }
  if (!opts['no-routing'] && !opts.only) {
    result.routing = await runChildJson(['bench/routing.ts', '--json'])
  }
  if (opts.soak) {
    const { runSoak } = await import('./soak.js')
    result.soak = await runSoak({})
  }
  const file = opts.json ?? path.join(BENCH_DIR, 'results', `bench-${started.toISOString().replace(/[:.]/g, '-')}.json`)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify(result, null, 2))
  writeFileSync(path.join(path.dirname(file), 'latest.json'), JSON.stringify(result, null, 2))
  console.log(`\nresults: ${path.relative(process.cwd(), file)}`)
}

function na(): RunFigures {
  return { rps: NaN, cmdps: NaN, p50Us: NaN, p99Us: NaN, p999Us: NaN, serverCpu: NaN, gcShare: NaN, gcMaxMs: NaN, cpuUsPerReq: NaN, clientCoreBusy: NaN, errors: 0 }
}

/**
 * Runs a bench script in a child (pinned to the server core) that prints BENCH_JSON, with the Node
 * options the gateway ships with: the routing micro-benchmark measures the gateway's code, so its
 * heap is sized as the gateway's is (young-generation GC pauses land in its update p99).
 */
export function runChildJson(args: string[]): Promise<unknown> {
  const argv = pinned(SERVER_CORE, [process.execPath, ...SHIPPED_NODE_ARGS, '--import', 'tsx', ...args])
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
    let text = ''
    child.stdout.on('data', (b: Buffer) => {
      const s = b.toString('utf8')
      text += s
      for (const l of s.split('\n')) if (l !== '' && !l.startsWith('BENCH_JSON ')) process.stdout.write(`${l}\n`)
    })
    child.on('exit', (code) => {
      const line = text.split('\n').find((l) => l.startsWith('BENCH_JSON '))
      if (code !== 0 || line === undefined) return reject(new Error(`${args.join(' ')} failed (${code})`))
      resolve(JSON.parse(line.slice('BENCH_JSON '.length)))
    })
  })
}

function printTable(rows: Row[]): void {
  const find = (scenario: string, server: ServerKind): Row | undefined =>
    rows.find((r) => r.scenario === scenario && r.server === server && r.runs.length > 0)
  const out: string[][] = [
    ['scenario', 'server', 'req/s', 'cmd/s', 'p50 us', 'p99 us', 'p99.9 us', 'x webdis', 'x hello', 'srv cpu', 'cpu us/req', 'cpu x webdis', 'cpu x hello', 'gc %', 'gc max ms', 'cli core', 'request'],
  ]
  for (const r of rows) {
    const m = r.median
    const w = find(r.scenario, 'webdis')
    const h = find(r.scenario, 'hello')
    const isGw = r.server === 'gateway'
    // Against webdis: commands/s when a "command" means something else there (MGET, MSET).
    const vsWebdis = isGw && w ? (r.scenario.startsWith('pipeline') || r.scenario.startsWith('multi') ? m.cmdps / w.median.cmdps : m.rps / w.median.rps) : NaN
    const vsHello = isGw && h ? m.rps / h.median.rps : NaN
    // The same ratios from CPU cost per request (what each would do alone on a quiet core).
    const perCmd = (x: RunFigures, cmds: number): number => x.cpuUsPerReq / (cmds || 1)
    const cpuVsWebdis =
      isGw && w
        ? r.scenario.startsWith('pipeline') || r.scenario.startsWith('multi')
          ? perCmd(w.median, w.median.cmdps / w.median.rps) / perCmd(m, m.cmdps / m.rps)
          : w.median.cpuUsPerReq / m.cpuUsPerReq
        : NaN
    const cpuVsHello = isGw && h ? h.median.cpuUsPerReq / m.cpuUsPerReq : NaN
    out.push([
      r.title,
      r.server,
      fmtInt(m.rps),
      fmtInt(m.cmdps),
      fmtInt(m.p50Us),
      fmtInt(m.p99Us),
      Number.isNaN(m.p999Us) ? '' : fmtInt(m.p999Us),
      isGw ? fmtRatio(vsWebdis) : '',
      isGw ? fmtRatio(vsHello) : '',
      Number.isNaN(m.serverCpu) ? '' : `${m.serverCpu.toFixed(0)}%`,
      Number.isNaN(m.cpuUsPerReq) ? '' : m.cpuUsPerReq.toFixed(1),
      isGw ? fmtRatio(cpuVsWebdis) : '',
      isGw ? fmtRatio(cpuVsHello) : '',
      Number.isNaN(m.gcShare) ? '' : `${m.gcShare.toFixed(1)}%`,
      Number.isNaN(m.gcMaxMs) ? '' : m.gcMaxMs.toFixed(1),
      Number.isNaN(m.clientCoreBusy) ? '' : `${m.clientCoreBusy.toFixed(0)}%`,
      r.note + (m.errors > 0 ? ` (${m.errors} errors!)` : ''),
    ])
  }
  console.log(table(out))
  console.log('cmd/s: Redis commands per second (pipeline/multi-exec: req/s x commands). x webdis: gateway/webdis req/s (commands/s for pipeline and multi-exec rows).')
  console.log('srv cpu: CPU of the server process in % of one core; cpu us/req: its CPU time per request; cpu x webdis / x hello: the')
  console.log('  ratios that CPU cost implies for servers that each saturate a core (robust to background load); cli core: busy share of')
  console.log('  the core shared by the load generator and redis-server (near 100%: the client side, not the server, was the limit).')
  console.log("p99.9 us: wrk's 99.9th percentile (not for the SDK driver). gc %: the gateway's GC pauses and incremental marking steps on")
  console.log('  its main thread (--trace-gc) in % of its CPU time; gc max ms: its longest pause in the run (median of the runs).')
}

export interface Target {
  name: string
  pass: boolean | null
  detail: string
}

function evaluateTargets(rows: Row[]): Target[] {
  const get = (scenario: string, server: ServerKind): RunFigures | null =>
    rows.find((r) => r.scenario === scenario && r.server === server && r.runs.length > 0)?.median ?? null
  const out: Target[] = []
  const g50 = get('get-c50', 'gateway')
  const w50 = get('get-c50', 'webdis')
  const h50 = get('get-c50', 'hello')
  const g1 = get('get-c1', 'gateway')
  const w1 = get('get-c1', 'webdis')
  const p100 = get('pipeline-100', 'gateway')
  const cpuNote = (ratio: number, need: number): string =>
    `; from CPU per request ${fmtRatio(ratio)} (${ratio >= need ? 'would pass' : 'would fail'} on a quiet machine)`
  const vs = (name: string, g: RunFigures | null, o: RunFigures | null): Target =>
    g && o
      ? {
          name,
          pass: g.rps >= 0.75 * o.rps,
          detail: `${fmtInt(g.rps)} vs ${fmtInt(o.rps)} req/s = ${fmtRatio(g.rps / o.rps)}${cpuNote(o.cpuUsPerReq / g.cpuUsPerReq, 0.75)}`,
        }
      : { name, pass: null, detail: 'not measured' }
  out.push(vs('GET at 50 connections >= 0.75x webdis req/s', g50, w50))
  out.push(
    g1 && w1
      ? { name: 'GET at 1 connection p50 <= webdis p50 + 40 us', pass: g1.p50Us <= w1.p50Us + 40, detail: `${fmtInt(g1.p50Us)} us vs ${fmtInt(w1.p50Us)} us (+${fmtInt(g1.p50Us - w1.p50Us)} us)` }
      : { name: 'GET at 1 connection p50 <= webdis p50 + 40 us', pass: null, detail: 'not measured' },
  )
  out.push(
    p100
      ? {
          name: '100-command pipeline >= 300,000 commands/s',
          pass: p100.cmdps >= 300_000,
          detail: `${fmtInt(p100.cmdps)} cmd/s; from CPU per request ${fmtInt((100 * 1e6) / p100.cpuUsPerReq)} cmd/s on a full core`,
        }
      : { name: '100-command pipeline >= 300,000 commands/s', pass: null, detail: 'not measured' },
  )
  out.push(vs('GET at 50 connections >= 0.75x hello-world req/s', g50, h50))
  return out
}

await main()
process.exit(0)
