// `npm run bench:cluster`: what serving an instance as a Redis Cluster costs (README "Redis Cluster"),
// and whether a pipeline's per-shard parts go out in parallel. One gateway (the production build,
// pinned like in `npm run bench`) with two static instances:
//   single   one redis-server
//   cluster  a 3-shard cluster (3 primaries, no replicas), every node an endpoint (detected as a cluster)
// 1. GET of one key (30 keys, 10 per shard, in turn) and a 100-command GET pipeline whose keys span
//    the 3 shards, at 50 connections and at 1, single vs cluster (wrk, bench/wrk/request.lua).
// 2. Fan-out: every Redis (the single one and each cluster node) behind a fault proxy
//    (test/helpers/fault-proxy.ts) that delays every chunk by --delay ms each way; a second gateway
//    on the proxies; GET and the 100-command pipeline at 1 connection, with no delay and with it.
//    A pipeline sent to the shards in parallel pays one delayed round trip, as on the single
//    instance; one sent shard after shard would pay three.
// Prints the tables and writes them, with the date and the machine, between the markers of the
// "Redis Cluster" section of bench/README.md (the section is appended when missing); the JSON goes
// to bench/results/cluster-<date>.json.
//
// Options: --runs N (3)  --duration S (5)  --warmup S (2)  --delay MS (2)  --delay-duration S (3)
//          --only id,id (get-c50,get-c1,pipeline-100-c50,pipeline-100-c1)  --no-fanout  --no-readme
//          --profile ID: instead of the tables, the gateway under `node --cpu-prof` for one scenario,
//          single then cluster (--duration each), each window summarised (--top N, default 15), and
//          the gateway's socket syscalls per request in the same windows (perf stat, when installed)

import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import {
  BENCH_DIR,
  CLIENT_CORE,
  SERVER_CORE,
  SHIPPED_NODE_ARGS,
  TOKEN,
  haveCommand,
  loadAverage,
  machine,
  pinned,
  start,
  startRedis,
  tmpDir,
  versionOf,
  waitForPort,
  type Proc,
} from './lib/procs.js'
import { runWrk, type HttpRequestSpec } from './lib/wrk.js'
import { fmtInt, fmtRatio, median, table } from './lib/stats.js'
import { GW_HEADERS, SMALL } from './lib/scenarios.js'
import { format as formatProfile, summarise } from './cpuprofile-top.js'
import { freePort } from '../test/helpers/ports.js'
import { keySlot, startCluster, type ClusterNode, type RedisCluster } from '../test/helpers/redis-cluster.js'
import { startFaultProxy, type FaultProxy } from '../test/helpers/fault-proxy.js'

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    delay: { type: 'string', default: '2' },
    'delay-duration': { type: 'string', default: '3' },
    only: { type: 'string' },
    'no-fanout': { type: 'boolean', default: false },
    'no-readme': { type: 'boolean', default: false },
    profile: { type: 'string' },
    top: { type: 'string', default: '15' },
  },
  allowPositionals: false,
})

const RUNS = Number(opts.runs)
const DURATION = Number(opts.duration)
const WARMUP = Number(opts.warmup)
const DELAY_MS = Number(opts.delay)
const DELAY_DURATION = Number(opts['delay-duration'])
const SHARDS = 3
const GET_KEYS_PER_SHARD = 10
const PIPELINE = 100
const INSTANCES = ['single', 'cluster'] as const
type InstanceName = (typeof INSTANCES)[number]

// ---------------------------------------------------------------------------------------------
// Keys: spread over the shards, in turn (shard 0, 1, 2, 0, 1, 2...), the same keys on the single server.

function keysByShard(cluster: RedisCluster, perShard: number, prefix: string): string[][] {
  const primaries = cluster.shards().map((s) => s.primary.id)
  const out: string[][] = primaries.map(() => [])
  for (let i = 0; out.some((l) => l.length < perShard); i++) {
    const k = `${prefix}${i}`
    const shard = primaries.indexOf(cluster.slotOwner(keySlot(k)).id)
    const list = out[shard]!
    if (list.length < perShard) list.push(k)
  }
  return out
}

function interleave(lists: string[][], n: number): string[] {
  const out: string[] = []
  for (let i = 0; out.length < n; i++) for (const l of lists) if (out.length < n && l[i] !== undefined) out.push(l[i]!)
  return out
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Scenario {
  readonly id: string
  readonly title: string
  readonly connections: number
  readonly commands: number
  readonly spec: (base: string) => HttpRequestSpec
}

function scenarios(getKeys: readonly string[], pipelineKeys: readonly string[]): Scenario[] {
  const get = (base: string): HttpRequestSpec => ({
    method: 'POST',
    url: base,
    headers: GW_HEADERS,
    // One body per key, sent in turn (request.lua): consecutive requests hit different shards.
    bodies: getKeys.map((k) => JSON.stringify(['get', k])),
  })
  const pipeline = (base: string): HttpRequestSpec => ({
    method: 'POST',
    url: `${base}/pipeline`,
    headers: GW_HEADERS,
    bodies: [JSON.stringify(pipelineKeys.map((k) => ['get', k]))],
  })
  return [
    { id: 'get-c50', title: 'GET, 50 conn', connections: 50, commands: 1, spec: get },
    { id: 'get-c1', title: 'GET, 1 conn', connections: 1, commands: 1, spec: get },
    { id: 'pipeline-100-c50', title: `pipeline of ${PIPELINE} GET, 50 conn`, connections: 50, commands: PIPELINE, spec: pipeline },
    { id: 'pipeline-100-c1', title: `pipeline of ${PIPELINE} GET, 1 conn`, connections: 1, commands: PIPELINE, spec: pipeline },
  ]
}

// ---------------------------------------------------------------------------------------------
// The gateway: one process, pinned to the server core, with the two static instances.

interface Gateway {
  readonly proc: Proc
  readonly port: number
  readonly opsPort: number
  base(instance: InstanceName): string
}

/** For /admin/routes, which needs an admin token (ops.auth: admin, the default); the load uses TOKEN. */
const OPS_TOKEN = 'bench-cluster-ops-token'

async function startGateway(endpoints: Record<InstanceName, readonly string[]>, nodeArgs: string[] = []): Promise<Gateway> {
  const port = await freePort()
  const opsPort = await freePort()
  const conf = path.join(tmpDir(), `gateway-cluster-${port}.yaml`)
  writeFileSync(
    conf,
    [
      `listen: { data: "127.0.0.1:${port}", ops: "127.0.0.1:${opsPort}" }`,
      'discovery:',
      '  static:',
      '    instances:',
      ...INSTANCES.flatMap((name) => [`      - name: ${name}`, `        endpoints: [${endpoints[name].map((e) => `"redis://${e}"`).join(', ')}]`]),
      'auth:',
      '  tokens:',
      `    - { name: bench, token: "${TOKEN}", access: write, targets: ["*"] }`,
      `    - { name: ops, token: "${OPS_TOKEN}", access: admin }`,
      'log: { level: warn }',
      'metrics: { enabled: true }',
      '',
    ].join('\n'),
  )
  const env: NodeJS.ProcessEnv = { ...process.env, GATEWAY_CONFIG: conf, NODE_ENV: 'production' }
  // As shipped: no tracing, metrics on, log level from the file.
  delete env.OTEL_EXPORTER_OTLP_ENDPOINT
  delete env.OTEL_TRACES_EXPORTER
  delete env.GATEWAY_METRICS_ENABLED
  delete env.GATEWAY_LOG_LEVEL
  const main = process.env.BENCH_GATEWAY_MAIN ?? path.join(BENCH_DIR, '..', 'dist/src/main.js')
  const proc = start('gateway', pinned(SERVER_CORE, [process.execPath, ...SHIPPED_NODE_ARGS, ...nodeArgs, main]), { env })
  await waitForPort(proc, port)
  const until = Date.now() + 20_000
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${opsPort}/readyz`).then(
      (r) => r.ok,
      () => false,
    )
    if (ok) break
    if (Date.now() > until) throw new Error(`gateway not ready:\n${proc.log()}`)
    await sleep(100)
  }
  return { proc, port, opsPort, base: (i) => `http://127.0.0.1:${port}/v1/instances/${i}` }
}

/** How the gateway serves each instance (/admin/routes): mode and, for a cluster, its shards. */
async function routesOf(g: Gateway): Promise<Record<string, { mode: string; shards: number | null }>> {
  const j = (await (await fetch(`http://127.0.0.1:${g.opsPort}/admin/routes`, { headers: { authorization: `Bearer ${OPS_TOKEN}` } })).json()) as {
    instances: { name: string; mode: string; cluster: { shards: unknown[] } | null }[]
  }
  return Object.fromEntries(j.instances.map((i) => [i.name, { mode: i.mode, shards: i.cluster ? i.cluster.shards.length : null }]))
}

const b64 = (s: string): string => Buffer.from(s).toString('base64')

/** Every scenario's request answers the seeded values, on both instances (retried while the cluster's map is learned). */
async function check(g: Gateway, list: readonly Scenario[]): Promise<void> {
  const until = Date.now() + 15_000
  for (const s of list) {
    for (const inst of INSTANCES) {
      const spec = s.spec(g.base(inst))
      for (const body of spec.bodies ?? []) {
        for (;;) {
          const res = await fetch(spec.url, { method: spec.method, headers: spec.headers ?? {}, body })
          const text = await res.text()
          let problem: string | null = res.status === 200 ? null : `status ${res.status}`
          if (problem === null) {
            const j = JSON.parse(text) as { result?: unknown; error?: string } | { result?: unknown; error?: string }[]
            const items = Array.isArray(j) ? j : [j]
            const bad = items.find((x) => x.result !== b64(SMALL))
            if (bad !== undefined || items.length !== s.commands) problem = `unexpected reply`
          }
          if (problem === null) break
          if (Date.now() > until) throw new Error(`check failed: ${inst} ${s.id}: ${problem}: ${text.slice(0, 300)}`)
          await sleep(200)
        }
      }
    }
  }
  const routes = await routesOf(g)
  if (routes.cluster?.shards !== SHARDS) throw new Error(`instance 'cluster' is not served as a ${SHARDS}-shard cluster: ${JSON.stringify(routes)}`)
  if (routes.single?.shards !== null) throw new Error(`instance 'single' is served as a cluster: ${JSON.stringify(routes)}`)
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface Figures {
  rps: number
  cmdps: number
  p50Us: number
  p99Us: number
  serverCpu: number
  cpuUsPerReq: number
  clientCoreBusy: number
  errors: number
}

async function measure(g: Gateway, inst: InstanceName, s: Scenario, durationS: number): Promise<Figures> {
  const r = await runWrk(s.spec(g.base(inst)), { connections: s.connections, durationS, serverPid: g.proc.pid })
  const errors = r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout
  if (errors > 0) console.error(`  ${inst} ${s.id}: wrk errors ${JSON.stringify(r.errors)}`)
  return {
    rps: r.rps,
    cmdps: r.rps * s.commands,
    p50Us: r.latencyUs.p50,
    p99Us: r.latencyUs.p99,
    serverCpu: r.serverCpu,
    cpuUsPerReq: (r.serverCpu * 1e4) / r.rps,
    clientCoreBusy: r.coreBusy[CLIENT_CORE] ?? NaN,
    errors,
  }
}

function medianOf(runs: readonly Figures[]): Figures {
  const m = (f: (r: Figures) => number): number => median(runs.map(f))
  return {
    rps: m((r) => r.rps),
    cmdps: m((r) => r.cmdps),
    p50Us: m((r) => r.p50Us),
    p99Us: m((r) => r.p99Us),
    serverCpu: m((r) => r.serverCpu),
    cpuUsPerReq: m((r) => r.cpuUsPerReq),
    clientCoreBusy: m((r) => r.clientCoreBusy),
    errors: runs.reduce((a, r) => a + r.errors, 0),
  }
}

interface Row {
  scenario: string
  title: string
  instance: InstanceName
  /** Fan-out phase: the proxies' delay each way (ms); null in the direct phase. */
  delayMs: number | null
  runs: Figures[]
  median: Figures
}

/** Warm-up, then RUNS rounds with the instances interleaved (background load hits both alike). */
async function measureAll(g: Gateway, list: readonly Scenario[], durationS: number, warmupS: number, delayMs: number | null): Promise<Row[]> {
  const rows: Row[] = []
  for (const s of list) {
    if (warmupS > 0) for (const inst of INSTANCES) await measure(g, inst, s, warmupS)
    const runs = new Map<InstanceName, Figures[]>(INSTANCES.map((i) => [i, []]))
    for (let i = 0; i < RUNS; i++) {
      for (const inst of INSTANCES) {
        const f = await measure(g, inst, s, durationS)
        runs.get(inst)!.push(f)
        console.log(
          `  ${s.id.padEnd(16)}${delayMs === null ? '' : ` +${delayMs}ms`} run ${i + 1}/${RUNS} ${inst.padEnd(7)} ${fmtInt(f.rps).padStart(7)} req/s ${fmtInt(f.cmdps).padStart(9)} cmd/s  p50 ${fmtInt(f.p50Us)} us  p99 ${fmtInt(f.p99Us)} us  gateway cpu ${f.serverCpu.toFixed(0)}% (${f.cpuUsPerReq.toFixed(1)} us/req)  client core ${f.clientCoreBusy.toFixed(0)}%`,
        )
      }
    }
    for (const inst of INSTANCES) {
      const r = runs.get(inst)!
      rows.push({ scenario: s.id, title: s.title, instance: inst, delayMs, runs: r, median: medianOf(r) })
    }
  }
  return rows
}

// ---------------------------------------------------------------------------------------------
// Tables

function directTable(rows: readonly Row[]): string {
  const out: string[][] = [['scenario', 'instance', 'req/s', 'spread', 'cmd/s', 'p50 us', 'p99 us', 'x single', 'gw cpu', 'cpu us/req', 'cpu x single', 'cli core', 'note']]
  for (const r of rows) {
    const m = r.median
    const single = rows.find((x) => x.scenario === r.scenario && x.instance === 'single')?.median
    const isCluster = r.instance === 'cluster' && single !== undefined
    const rps = r.runs.map((x) => x.rps)
    out.push([
      r.title,
      r.instance,
      fmtInt(m.rps),
      `${((100 * (Math.max(...rps) - Math.min(...rps))) / m.rps).toFixed(0)}%`,
      fmtInt(m.cmdps),
      fmtInt(m.p50Us),
      fmtInt(m.p99Us),
      isCluster ? fmtRatio(m.rps / single.rps) : '',
      `${m.serverCpu.toFixed(0)}%`,
      m.cpuUsPerReq.toFixed(1),
      isCluster ? fmtRatio(m.cpuUsPerReq / single.cpuUsPerReq) : '',
      `${m.clientCoreBusy.toFixed(0)}%`,
      (r.instance === 'single' ? '1 redis-server' : `${SHARDS} shards${r.scenario.startsWith('pipeline') ? `, ${SHARDS} pipelines of ~${Math.round(PIPELINE / SHARDS)}` : ''}`) +
        (m.errors > 0 ? ` (${m.errors} errors!)` : ''),
    ])
  }
  return table(out)
}

interface Fanout {
  delayMs: number
  /** Added p50 (delayed - no delay) of the pipeline, over the single instance's: ~1 parallel, ~3 one shard after another. */
  roundTrips: number
  p50Ratio: number
  parallel: boolean
}

function fanoutTable(rows: readonly Row[]): string {
  const out: string[][] = [['scenario', 'instance', 'delay', 'req/s', 'p50 us', 'p99 us', 'p50 x single', 'added p50 us', 'round trips']]
  const get = (scenario: string, inst: InstanceName, delay: number): Figures | undefined =>
    rows.find((x) => x.scenario === scenario && x.instance === inst && x.delayMs === delay)?.median
  for (const r of rows) {
    const m = r.median
    const single = get(r.scenario, 'single', r.delayMs!)
    const undelayed = get(r.scenario, r.instance, 0)
    const added = r.delayMs! > 0 && undelayed ? m.p50Us - undelayed.p50Us : NaN
    const singleAdded = r.delayMs! > 0 ? (single?.p50Us ?? NaN) - (get(r.scenario, 'single', 0)?.p50Us ?? NaN) : NaN
    out.push([
      r.title,
      r.instance,
      r.delayMs === 0 ? 'proxy, none' : `+${r.delayMs} ms each way`,
      fmtInt(m.rps),
      fmtInt(m.p50Us),
      fmtInt(m.p99Us),
      r.instance === 'cluster' && single ? fmtRatio(m.p50Us / single.p50Us) : '',
      Number.isNaN(added) ? '' : fmtInt(added),
      Number.isNaN(added) ? '' : (added / singleAdded).toFixed(2),
    ])
  }
  return table(out)
}

function fanoutVerdict(rows: readonly Row[], delayMs: number): Fanout | null {
  const get = (inst: InstanceName, delay: number): Figures | undefined =>
    rows.find((x) => x.scenario === 'pipeline-100-c1' && x.instance === inst && x.delayMs === delay)?.median
  const s0 = get('single', 0)
  const sd = get('single', delayMs)
  const c0 = get('cluster', 0)
  const cd = get('cluster', delayMs)
  if (!s0 || !sd || !c0 || !cd) return null
  const roundTrips = (cd.p50Us - c0.p50Us) / (sd.p50Us - s0.p50Us)
  // One shard after another would add ~3 delayed round trips; anything under 2 is a parallel fan-out.
  return { delayMs, roundTrips, p50Ratio: cd.p50Us / sd.p50Us, parallel: roundTrips < 2 }
}

// ---------------------------------------------------------------------------------------------
// Processes: this process (and the fault proxies in it), the cluster's nodes and the single
// redis-server share the client core with wrk; the gateway is alone on the server core.

function pinPid(pid: number): void {
  if (haveCommand('taskset')) spawnSync('taskset', ['-a', '-pc', String(CLIENT_CORE), String(pid)], { stdio: 'ignore' })
}

/**
 * BENCH_NICE (root): this process takes the priority, and every process it starts from then on
 * (the cluster's nodes come from the test helper, not pinned()) inherits it; pinned() must then not
 * add it again.
 */
const NICE = process.env.BENCH_NICE ?? null
function reniceSelf(): void {
  if (NICE === null) return
  const r = spawnSync('renice', ['-n', NICE, '-p', String(process.pid)], { stdio: 'ignore' })
  if (r.status !== 0) throw new Error(`renice -n ${NICE} failed (BENCH_NICE needs root)`)
  delete process.env.BENCH_NICE
}

async function seedKeys(single: number, cluster: RedisCluster, keys: readonly string[]): Promise<void> {
  const r = new Redis({ port: single, host: '127.0.0.1' })
  await r.mset(Object.fromEntries(keys.map((k) => [k, SMALL])))
  r.disconnect()
  for (const k of keys) {
    const owner = cluster.slotOwner(keySlot(k))
    await clientOf(cluster, owner).set(k, SMALL)
  }
}

const nodeClients = new Map<string, Redis>()
function clientOf(cluster: RedisCluster, n: ClusterNode): Redis {
  let c = nodeClients.get(n.id)
  if (c === undefined) {
    c = cluster.client(n)
    nodeClients.set(n.id, c)
  }
  return c
}

/**
 * Makes every node announce its proxy's port (CLUSTER SHARDS / MOVED name the proxies, so the
 * gateway, which uses only announced addresses that are also its endpoints, goes through them),
 * and waits until every node reports every other node at its proxy's port.
 */
async function announceProxies(cluster: RedisCluster, proxyOf: Map<string, FaultProxy>): Promise<void> {
  for (const n of cluster.nodes) await clientOf(cluster, n).config('SET', 'cluster-announce-port', String(proxyOf.get(n.id)!.port))
  const want = new Set([...proxyOf.values()].map((p) => p.port))
  const until = Date.now() + 30_000
  for (;;) {
    let ok = true
    for (const n of cluster.nodes) {
      const text = (await clientOf(cluster, n).call('CLUSTER', 'NODES')) as string
      const ports = new Set(
        text
          .trim()
          .split('\n')
          .map((l) => Number(l.split(' ')[1]!.split('@')[0]!.split(':')[1])),
      )
      if (ports.size !== want.size || [...want].some((p) => !ports.has(p))) ok = false
    }
    if (ok) return
    if (Date.now() > until) throw new Error('the cluster nodes did not all announce their proxies within 30 s')
    await sleep(200)
  }
}

// ---------------------------------------------------------------------------------------------
// README

const BEGIN = '<!-- bench:cluster:begin (written by `npm run bench:cluster`; edit outside the markers) -->'
const END = '<!-- bench:cluster:end -->'

const SECTION_HEAD = `## Redis Cluster

What serving an instance as a Redis Cluster costs (README "Redis Cluster"), and whether a pipeline's
per-shard parts are sent in parallel. \`npm run bench:cluster\` (builds first; about 4 minutes) starts,
on loopback, a redis-server and a 3-shard cluster (3 primaries, no replicas: replicas change nothing
here; \`test/helpers/redis-cluster.ts\`), and one gateway (production build, shipped Node options, log
level \`warn\`, metrics on) with two static instances: \`single\` on the redis-server and \`cluster\` with
the three nodes as endpoints (detected as a cluster; the run checks \`/admin/routes\` says so).

- **GET**: \`POST /v1/instances/<name>\` of \`["get", key]\`, the key taken in turn from 30 keys, 10 on each
  shard, so consecutive requests go to different shards (the single instance gets the same keys).
- **Pipeline of 100 GET**: \`POST .../pipeline\` of 100 \`["get", key]\`, 34/33/33 keys on the three
  shards, interleaved: the gateway sends the cluster one pipeline of ~33 commands per shard.
- **Fan-out**: every Redis (the redis-server and each node) behind \`test/helpers/fault-proxy.ts\`
  in the benchmark process, the nodes announcing the proxies' ports (\`cluster-announce-port\`) so the
  gateway's connections to them go through the proxies too; a second gateway on the proxies; the proxies
  first forward at once, then hold every chunk for the delay in each direction. "added p50" is the
  delayed p50 minus the undelayed one; "round trips" is the cluster's added p50 over the single
  instance's: about 1 when the shards are asked in parallel, about 3 when one after another.

Same requests, headers (\`Upstash-Encoding: base64\`) and wrk script as \`npm run bench\`; 3 runs of 5 s per
row (fan-out: 3 s), median, after a 2 s warm-up, the instances interleaved. Options after \`--\`:
\`--runs N\`, \`--duration S\`, \`--warmup S\`, \`--delay MS\`, \`--delay-duration S\`, \`--only get-c50,...\`,
\`--no-fanout\`, \`--no-readme\`, and \`--profile get-c50\` (the gateway under \`node --cpu-prof\`: that scenario
on \`single\`, then on \`cluster\`, each window summarised, with the gateway's socket syscalls per request
from \`perf stat\` when perf is installed). \`BENCH_NICE=-10\` (root) as for \`npm run bench\`: the cluster's
nodes, started by the test helper, inherit it from the benchmark process.
`

function writeReadme(generated: string): void {
  const file = path.join(BENCH_DIR, 'README.md')
  const text = readFileSync(file, 'utf8')
  const block = `${BEGIN}\n${generated.trimEnd()}\n${END}`
  const b = text.indexOf(BEGIN)
  const e = text.indexOf(END)
  let next: string
  if (b >= 0 && e > b) next = text.slice(0, b) + block + text.slice(e + END.length)
  else if (/^## Redis Cluster$/m.test(text)) {
    // The section exists without markers: the block goes at its end.
    const at = text.search(/^## Redis Cluster$/m)
    const after = text.slice(at + 1).search(/^## /m)
    const end = after < 0 ? text.length : at + 1 + after
    next = `${text.slice(0, end).trimEnd()}\n\n${block}\n${after < 0 ? '' : `\n${text.slice(end)}`}`
  } else next = `${text.trimEnd()}\n\n${SECTION_HEAD}\n${block}\n`
  writeFileSync(file, next)
}

// ---------------------------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

function preflight(): void {
  const missing = ['wrk', 'redis-server', 'redis-cli', 'taskset'].filter((c) => !haveCommand(c))
  if (missing.length > 0) {
    console.error(`missing: ${missing.join(', ')}. Install with: apt-get install -y wrk redis-server util-linux`)
    process.exit(2)
  }
  if (!existsSync(process.env.BENCH_GATEWAY_MAIN ?? path.join(BENCH_DIR, '..', 'dist/src/main.js'))) {
    console.error('dist/src/main.js is missing: run `npm run build` (npm run bench:cluster does)')
    process.exit(2)
  }
}

async function main(): Promise<void> {
  preflight()
  pinPid(process.pid)
  reniceSelf()
  const started = new Date()
  const mach = machine()
  console.log(
    `redis-gateway cluster benchmark: ${mach.cpus} CPUs (${mach.cpuModel}), node ${process.version}, load average ${loadAverage().map((x) => x.toFixed(2)).join(' ')}`,
  )
  console.log(
    `gateway pinned to core ${SERVER_CORE}; wrk, the redis-servers (1 + ${SHARDS} cluster nodes) and this process (fault proxies) on core ${CLIENT_CORE}; ${RUNS} runs x ${DURATION}s (+${WARMUP}s warm-up), median${NICE !== null ? `; nice ${NICE}` : ''}`,
  )

  const redis = await startRedis()
  const cluster = await startCluster({ shards: SHARDS, replicasPerShard: 0 })
  for (const n of cluster.nodes) {
    const pid = n.server.pid
    if (pid !== undefined) pinPid(pid)
  }
  console.log(`cluster: ${cluster.shards().map((s) => `${s.primary.address} slots ${s.slots.map(([a, b]) => `${a}-${b}`).join(',')}`).join('; ')} (formed in ${cluster.timings.totalMs} ms)`)
  const getKeys = interleave(keysByShard(cluster, GET_KEYS_PER_SHARD, 'bench:c:g'), GET_KEYS_PER_SHARD * SHARDS)
  const pipelineKeys = interleave(keysByShard(cluster, Math.ceil(PIPELINE / SHARDS), 'bench:c:p'), PIPELINE)
  await seedKeys(redis.port, cluster, [...getKeys, ...pipelineKeys])
  const all = scenarios(getKeys, pipelineKeys)
  const list = opts.only ? all.filter((s) => opts.only!.split(',').includes(s.id)) : all

  if (opts.profile !== undefined) {
    await profile(redis.port, cluster, all)
    return
  }

  // 1. Direct: both instances on the same gateway.
  const g = await startGateway({ single: [`127.0.0.1:${redis.port}`], cluster: cluster.seeds })
  await check(g, list)
  const direct = await measureAll(g, list, DURATION, WARMUP, null)
  await g.proc.stop()

  // 2. Fan-out: the same, through delaying proxies, at one connection.
  let fanout: Row[] = []
  let verdict: Fanout | null = null
  if (!opts['no-fanout']) {
    const singleProxy = await startFaultProxy({ port: redis.port })
    const proxyOf = new Map<string, FaultProxy>()
    for (const n of cluster.nodes) proxyOf.set(n.id, await startFaultProxy({ port: n.port }))
    await announceProxies(cluster, proxyOf)
    const proxies = [singleProxy, ...proxyOf.values()]
    const gp = await startGateway({ single: [singleProxy.address], cluster: cluster.nodes.map((n) => proxyOf.get(n.id)!.address) })
    const fanList = all.filter((s) => s.connections === 1)
    await check(gp, fanList)
    console.log(`fan-out: every Redis behind a fault proxy; first no delay, then +${DELAY_MS} ms each way`)
    for (const d of [0, DELAY_MS]) {
      for (const p of proxies) p.delay(d)
      fanout = [...fanout, ...(await measureAll(gp, fanList, DELAY_DURATION, 1, d))]
    }
    await gp.proc.stop()
    for (const p of proxies) await p.close()
    // Sorted: scenario, then delay.
    fanout.sort((a, b) => fanList.findIndex((s) => s.id === a.scenario) - fanList.findIndex((s) => s.id === b.scenario) || a.delayMs! - b.delayMs!)
    verdict = fanoutVerdict(fanout, DELAY_MS)
  }
  const loadAfter = loadAverage()
  for (const c of nodeClients.values()) c.disconnect()
  await cluster.stop()
  await redis.proc.stop()

  // Output
  const ended = new Date()
  const tools = { wrk: versionOf('wrk', ['--version']), redis: versionOf('redis-server', ['--version']) }
  const dt = (d: Date): string => d.toISOString().slice(11, 16)
  const note = [
    `Run ${started.toISOString().slice(0, 10)}, ${dt(started)}-${dt(ended)} UTC (\`${['npm run bench:cluster', process.argv.slice(2).length > 0 ? `-- ${process.argv.slice(2).join(' ')}` : ''].join(' ').trim()}\`${NICE !== null ? `, BENCH_NICE=${NICE}` : ''}).`,
    `Machine: ${mach.cpus} cores (${mach.cpuModel}), ${mach.memGiB} GiB, Linux ${mach.kernel}, Node ${process.version}, ${tools.wrk.split(' ').slice(0, 2).join(' ')}, ${tools.redis.split(' ').slice(0, 3).join(' ')};`,
    `everything on this one machine, over loopback. Core ${SERVER_CORE}: the gateway alone. Core ${CLIENT_CORE}: wrk (one thread), the redis-server,`,
    `the ${SHARDS} cluster nodes and the benchmark process (with the fault proxies). Load average ${(mach.loadAverage as number[]).map((x) => x.toFixed(2)).join(' / ')} at the start, ${loadAfter.map((x) => x.toFixed(2)).join(' / ')} at the end.`,
  ].join('\n')
  const t1 = directTable(direct)
  const t2 = fanout.length > 0 ? fanoutTable(fanout) : ''
  const facts = interpret(direct, verdict)
  console.log(`\n${note}\n\n${t1}\n${t2 ? `\n${t2}\n` : ''}\n${facts}`)

  const result = { date: started.toISOString(), machine: mach, loadAverageAfter: loadAfter, tools, settings: { runs: RUNS, durationS: DURATION, warmupS: WARMUP, delayMs: DELAY_MS, delayDurationS: DELAY_DURATION, nice: NICE }, keys: { get: getKeys, pipeline: pipelineKeys }, direct, fanout, verdict }
  const file = path.join(BENCH_DIR, 'results', `cluster-${started.toISOString().replace(/[:.]/g, '-')}.json`)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify(result, null, 2))
  console.log(`\nresults: ${path.relative(process.cwd(), file)}`)

  if (!opts['no-readme'] && !opts.only) {
    const legend = [
      'spread: (highest - lowest req/s of the runs) / median; x single: req/s over the single instance\'s; gw cpu: the gateway\'s CPU',
      'in % of one core; cpu us/req: its CPU time per request; cpu x single: that over the single instance\'s; cli core: busy share of',
      'the client core (near 100 %: the client side, wrk and the redis-servers, was the limit, not the gateway).',
    ].join('\n')
    const generated = [
      `### Latest run`,
      '',
      note,
      '',
      '```',
      t1,
      '```',
      '',
      legend,
      ...(t2
        ? [
            '',
            `Fan-out (one connection; the proxies add ${DELAY_MS} ms each way, plus up to ~1 ms of timer rounding):`,
            '',
            '```',
            t2,
            '```',
          ]
        : []),
      '',
      facts,
    ].join('\n')
    writeReadme(generated)
    console.log('bench/README.md: "Redis Cluster" section updated')
  }
}

/** The figures the table implies, in words (written under the table). */
function interpret(direct: readonly Row[], verdict: Fanout | null): string {
  const get = (scenario: string, inst: InstanceName): Figures | undefined => direct.find((r) => r.scenario === scenario && r.instance === inst)?.median
  const lines: string[] = []
  for (const [id, what, per] of [
    ['get-c50', 'A GET at 50 connections', 'request'],
    ['pipeline-100-c50', `A ${PIPELINE}-command pipeline at 50 connections`, 'request'],
  ] as const) {
    const s = get(id, 'single')
    const c = get(id, 'cluster')
    if (!s || !c) continue
    const d = c.cpuUsPerReq - s.cpuUsPerReq
    lines.push(
      `- ${what} costs the gateway ${c.cpuUsPerReq.toFixed(1)} us of CPU per ${per} on the cluster against ${s.cpuUsPerReq.toFixed(1)} us on the single instance (${d >= 0 ? '+' : ''}${d.toFixed(1)} us, ${fmtRatio(c.cpuUsPerReq / s.cpuUsPerReq)}${id.startsWith('pipeline') ? `; ${(d / PIPELINE).toFixed(2)} us per command` : ''}); req/s ${fmtRatio(c.rps / s.rps)}.`,
    )
  }
  for (const id of ['get-c1', 'pipeline-100-c1'] as const) {
    const s = get(id, 'single')
    const c = get(id, 'cluster')
    if (!s || !c) continue
    lines.push(`- ${id === 'get-c1' ? 'GET' : `The ${PIPELINE}-command pipeline`} at one connection: p50 ${fmtInt(c.p50Us)} us on the cluster against ${fmtInt(s.p50Us)} us (${c.p50Us >= s.p50Us ? '+' : ''}${fmtInt(c.p50Us - s.p50Us)} us).`)
  }
  if (verdict) {
    lines.push(
      `- Fan-out: with ${verdict.delayMs} ms added each way the cluster's pipeline paid ${verdict.roundTrips.toFixed(2)} delayed round trips for the single instance's one (p50 ${fmtRatio(verdict.p50Ratio)} the single instance's): ${verdict.parallel ? 'the three shards are asked in parallel, not one after another (that would be ~3).' : 'NOT parallel: the shards look asked one after another.'}`,
    )
  }
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------------
// --profile ID: where the gateway's time goes, single vs cluster, from one CPU profile.

async function profile(redisPort: number, cluster: RedisCluster, all: readonly Scenario[]): Promise<void> {
  const s = all.find((x) => x.id === opts.profile)
  if (!s) throw new Error(`--profile: unknown scenario ${opts.profile}; one of ${all.map((x) => x.id).join(', ')}`)
  const top = Number(opts.top)
  const out = path.join(BENCH_DIR, 'results', `cluster-profile-${s.id}-${new Date().toISOString().replace(/[:.]/g, '-')}`)
  mkdirSync(out, { recursive: true })
  const spawnedAt = performance.now()
  const g = await startGateway({ single: [`127.0.0.1:${redisPort}`], cluster: cluster.seeds }, ['--cpu-prof', `--cpu-prof-dir=${out}`, '--cpu-prof-interval=250'])
  await check(g, [s])
  for (const inst of INSTANCES) await measure(g, inst, s, WARMUP)
  const windows: { inst: InstanceName; fromMs: number; toMs: number; f: Figures }[] = []
  const syscalls = new Map<InstanceName, Record<string, number>>()
  for (const inst of INSTANCES) {
    const fromMs = performance.now() - spawnedAt
    const counting = countSyscalls(g.proc.pid, DURATION)
    const f = await measure(g, inst, s, DURATION)
    const counts = await counting
    windows.push({ inst, fromMs, toMs: performance.now() - spawnedAt, f })
    if (counts !== null) syscalls.set(inst, Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / (f.rps * DURATION)])))
  }
  await g.proc.stop()
  for (const c of nodeClients.values()) c.disconnect()
  await cluster.stop()
  const file = readdirSync(out).find((f) => f.endsWith('.cpuprofile'))
  if (!file) throw new Error(`no .cpuprofile in ${out}:\n${g.proc.log()}`)
  const prof = JSON.parse(readFileSync(path.join(out, file), 'utf8')) as Parameters<typeof summarise>[0]
  for (const w of windows) {
    const sum = summarise(prof, top, { fromMs: w.fromMs + 500, toMs: w.toMs - 500 })
    const text = formatProfile(sum, top)
    writeFileSync(path.join(out, `summary-${w.inst}.txt`), `${text}\n`)
    writeFileSync(path.join(out, `stacks-${w.inst}.folded`), sum.folded)
    console.log(`\n=== ${w.inst} ${s.id}: ${fmtInt(w.f.rps)} req/s, ${w.f.cpuUsPerReq.toFixed(1)} us CPU per request (under the profiler) ===\n${text}`)
  }
  if (syscalls.size > 0) {
    const names = Object.keys(syscalls.get('single') ?? {})
    console.log(`\nsyscalls of the gateway per request (perf stat, all threads, same windows):`)
    for (const inst of INSTANCES) console.log(`  ${inst.padEnd(8)} ${names.map((n) => `${n} ${(syscalls.get(inst)?.[n] ?? NaN).toFixed(2)}`).join('  ')}`)
  }
  console.log(`\nprofile: ${path.relative(process.cwd(), path.join(out, file))}`)
}

/** Counts of the socket syscalls the gateway makes over `seconds` (perf stat on its pid), or null without perf. */
function countSyscalls(pid: number, seconds: number): Promise<Record<string, number> | null> {
  if (!haveCommand('perf')) return Promise.resolve(null)
  const names = ['read', 'write', 'writev', 'epoll_pwait', 'epoll_wait']
  const child = spawn('perf', ['stat', '-x', ',', ...names.flatMap((n) => ['-e', `syscalls:sys_enter_${n}`]), '-p', String(pid), '--', 'sleep', String(seconds)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let err = ''
  child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')))
  return new Promise((resolve) => {
    child.on('error', () => resolve(null))
    child.on('exit', () => {
      const out: Record<string, number> = {}
      for (const line of err.split('\n')) {
        const [count, , event] = line.split(',')
        const m = /syscalls:sys_enter_(\w+)/.exec(event ?? '')
        if (m && count !== undefined && /^\d+$/.test(count)) out[m[1]!] = Number(count)
      }
      resolve(Object.keys(out).length > 0 ? out : null)
    })
  })
}

await main()
process.exit(0)
