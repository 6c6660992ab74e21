// `npm run bench:routes-view`: what `GET /admin/routes` costs at scale, whole and by the page.
// The production build (dist/src/main.js, shipped Node options, pinned to the server core as in
// `npm run bench`) with N static instances (--instances, 5,000) in a generated config, `ops.auth:
// none`, over five real redis-servers on the client core: a primary P with two replicas R1 and R2,
// and two standalone servers S1 and S2. Instance i (inst-00000...): i % 50 = 7 on S2, i % 50 = 13 on
// [P, R2], other even i on [P, R1], other odd i on S1; each in a group of 100 (g-000...). Once every
// endpoint is up, S2 and R2 are killed: 1 in 50 instances down, 1 in 50 degraded, the rest up, as
// in an incident. Then, for each query, --calls (50) sequential calls after 3 warm-ups: latency
// (request to the last byte, p50/p99/max) and reply size (the last row: 8 calls at a time), while a worker thread of this process pings
// /healthz every 5 ms: the worst and p99 /healthz latency during a query's calls is how long the
// gateway's event loop was blocked (an idle window first, for the baseline). And the gateway's CPU
// time per call (utime + stime over the calls, less its idle rate): what a call costs, which unlike
// the latencies does not grow when other work shares the core. Prints a table; the JSON
// goes to bench/results/routes-view-<date>.json. See bench/README.md "Routes view at scale".
//
// Options: --instances N (5000)  --calls N (50)  --json FILE
// BENCH_GATEWAY_MAIN=path/to/main.js measures another build (an older one answers every query with
// the full view: the table says so).

import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { Redis } from 'ioredis'
import { freePort } from '../test/helpers/ports.js'
import {
  BENCH_DIR,
  ROOT,
  SERVER_CORE,
  SHIPPED_NODE_ARGS,
  cpuSeconds,
  machine,
  pinned,
  sleep,
  start,
  startRedis,
  tmpDir,
  versionOf,
  waitForPort,
  type Server,
} from './lib/procs.js'
import { fmtInt, table } from './lib/stats.js'

const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '5000' },
    calls: { type: 'string', default: '50' },
    json: { type: 'string' },
  },
})
const N = Number(values.instances)
const CALLS = Number(values.calls)
const PING_MS = 5

const log = (s: string): void => console.error(s)
const now = (): number => performance.timeOrigin + performance.now()
const name = (i: number): string => `inst-${String(i).padStart(5, '0')}`

// The pinger: its own thread and event loop, so the bench's own work (reading a 4 MB reply) does not
// delay it. Every PING_MS it sends GET /healthz on a keep-alive connection (up to 8 at once; a ping
// that finds them busy waits in the agent, which counts: /healthz did not answer in time) and keeps
// [sent at, latency] in ms.
const PINGER = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const samples = [];
const clock = () => performance.timeOrigin + performance.now();
const timer = setInterval(() => {
  const sent = clock();
  const req = http.get({ host: '127.0.0.1', port: workerData.port, path: '/healthz', agent }, (res) => {
    res.resume();
    res.on('end', () => samples.push([sent, clock() - sent]));
  });
  req.on('error', () => samples.push([sent, NaN]));
}, workerData.everyMs);
parentPort.on('message', () => { clearInterval(timer); setTimeout(() => { parentPort.postMessage(samples); agent.destroy(); }, 500); });
`

const quantile = (xs: readonly number[], q: number): number => {
  const v = [...xs].sort((a, b) => a - b)
  return v.length === 0 ? NaN : v[Math.min(v.length - 1, Math.ceil(q * v.length) - 1)]!
}
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'N/A')
const kib = (b: number): string => (b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`)

async function main(): Promise<void> {
  const started = new Date()
  log(`routes view bench: ${fmtInt(N)} instances, ${CALLS} calls per query`)
  const [p, r1, r2, s1, s2] = await Promise.all([startRedis(), startRedis(), startRedis(), startRedis(), startRedis()]) as [Server, Server, Server, Server, Server]
  for (const r of [r1, r2]) {
    const c = new Redis(r.port, '127.0.0.1', { lazyConnect: true })
    await c.connect()
    await c.replicaof('127.0.0.1', p.port)
    c.disconnect()
  }
  const ep = (s: Server): string => `"redis://127.0.0.1:${s.port}"`
  const endpointsOf = (i: number): Server[] => (i % 50 === 7 ? [s2] : i % 50 === 13 ? [p, r2] : i % 2 === 0 ? [p, r1] : [s1])
  const port = await freePort()
  const opsPort = await freePort()
  const conf = path.join(tmpDir(), `routes-view-${port}.yaml`)
  const lines = [
    `listen: { data: "127.0.0.1:${port}", ops: "127.0.0.1:${opsPort}" }`,
    'ops: { auth: none }',
    'discovery:',
    '  static:',
    '    instances:',
  ]
  for (let i = 0; i < N; i++) {
    lines.push(`      - { name: ${name(i)}, endpoints: [${endpointsOf(i).map(ep).join(', ')}], annotations: { redis-gateway.io/groups: g-${String(Math.floor(i / 100)).padStart(3, '0')} } }`)
  }
  lines.push('log: { level: warn }', 'metrics: { enabled: true }', '')
  writeFileSync(conf, lines.join('\n'))
  const env: NodeJS.ProcessEnv = { ...process.env, GATEWAY_CONFIG: conf, NODE_ENV: 'production' }
  for (const k of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_TRACES_EXPORTER', 'GATEWAY_METRICS_ENABLED', 'GATEWAY_LOG_LEVEL']) delete env[k]
  const mainJs = process.env.BENCH_GATEWAY_MAIN ?? path.join(ROOT, 'dist/src/main.js')
  const t0 = performance.now()
  const gw = start('gateway', pinned(SERVER_CORE, [process.execPath, ...SHIPPED_NODE_ARGS, mainJs]), { env })
  await waitForPort(gw, opsPort, 120_000)
  const ops = `http://127.0.0.1:${opsPort}`
  for (;;) {
    if ((await fetch(`${ops}/readyz`).then((r) => r.ok, () => false)) === true) break
    if (performance.now() - t0 > 120_000 || gw.child.exitCode !== null) throw new Error(`gateway not ready:\n${gw.log()}`)
    await sleep(100)
  }
  log(`  gateway ready after ${f1((performance.now() - t0) / 1000)} s (${mainJs})`)

  /** Health of every instance, from the full view (the old build has no page counts). */
  type View = { instances: { name: string; health: string }[]; page?: { health: Record<string, number> } }
  const counts = async (): Promise<Record<string, number>> => {
    const v = (await (await fetch(`${ops}/admin/routes`)).json()) as View
    const c: Record<string, number> = { up: 0, degraded: 0, down: 0 }
    for (const i of v.instances) c[i.health]!++
    return c
  }
  const settle = async (want: Record<string, number>, what: string): Promise<void> => {
    const until = performance.now() + 120_000
    for (;;) {
      const c = await counts()
      if (Object.entries(want).every(([k, n]) => c[k] === n)) return
      if (performance.now() > until) throw new Error(`${what}: health ${JSON.stringify(c)}, want ${JSON.stringify(want)}`)
      await sleep(500)
    }
  }
  await settle({ up: N, degraded: 0, down: 0 }, 'every instance up')
  log(`  every instance up after ${f1((performance.now() - t0) / 1000)} s; killing S2 and R2`)
  await Promise.all([s2.proc.stop(), r2.proc.stop()])
  const bad = Array.from({ length: N }, (_, i) => i % 50)
  const want = { down: bad.filter((m) => m === 7).length, degraded: bad.filter((m) => m === 13).length }
  await settle({ ...want, up: N - want.down - want.degraded }, 'the incident seen')
  log(`  ${want.down} instances down, ${want.degraded} degraded`)

  const middle = name(Math.floor(N / 2) - 1)
  // The full view last: the garbage of its megabytes would otherwise be collected during the
  // paged queries' calls.
  // [label, query, calls at once]: the last row's calls come 8 at a time (8 dashboards, or a flood).
  const queries: [string, string, number?][] = [
    ['first page', 'limit=100'],
    ['a middle page', `limit=100&after=${middle}`],
    ['search (q)', 'q=inst-012&limit=100'],
    ['down, every one', 'health=down'],
    ['problems only, a page', 'health=degraded,down&limit=100'],
    ['one instance', `instance=${name(4242 % N)}`],
    ['first page, every group', 'limit=100&groups=all'],
    ['full view (no query)', ''],
    ['full view, 8 calls at once', '', 8],
  ]

  const pinger = new Worker(PINGER, { eval: true, workerData: { port: opsPort, everyMs: PING_MS } })
  const windows: { label: string; from: number; to: number }[] = []
  await sleep(1000)
  const idleFrom = now()
  const idleCpu0 = cpuSeconds(gw.pid)
  await sleep(3000)
  windows.push({ label: 'idle (no view calls)', from: idleFrom, to: now() })
  // The gateway's CPU while idle but for health checks and the pings, per ms: taken off the
  // queries' CPU below.
  const idleCpuPerMs = ((cpuSeconds(gw.pid) - idleCpu0) * 1000) / (now() - idleFrom)

  interface Row { label: string; query: string; atOnce: number; paged: boolean; bytes: number; returned: number | null; ms: number[]; cpuMsPerCall: number; from: number; to: number }
  const rows: Row[] = []
  for (const [label, query, atOnce = 1] of queries) {
    const url = `${ops}/admin/routes${query === '' ? '' : `?${query}`}`
    let bytes = 0
    let paged = false
    let returned: number | null = null
    for (let i = 0; i < 3; i++) {
      const text = await (await fetch(url)).text()
      const v = JSON.parse(text) as View & { page?: { returned: number } }
      paged = v.page !== undefined
      returned = v.page?.returned ?? v.instances.length
    }
    await sleep(300)
    const from = now()
    const cpu0 = cpuSeconds(gw.pid)
    const ms: number[] = []
    const call = async (): Promise<void> => {
      const a = performance.now()
      const res = await fetch(url)
      const body = await res.arrayBuffer()
      ms.push(performance.now() - a)
      if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`)
      bytes = body.byteLength
    }
    for (let i = 0; i < CALLS; i++) await Promise.all(Array.from({ length: atOnce }, call))
    const to = now()
    const cpuMsPerCall = Math.max(0, (cpuSeconds(gw.pid) - cpu0) * 1000 - idleCpuPerMs * (to - from)) / (CALLS * atOnce)
    rows.push({ label, query, atOnce, paged, bytes, returned, ms, cpuMsPerCall, from, to })
    log(`  ${label}: p50 ${f1(quantile(ms, 0.5))} ms, ${kib(bytes)}`)
    await sleep(300)
  }
  pinger.postMessage('stop')
  const samples = await new Promise<[number, number][]>((resolve) => pinger.once('message', resolve))
  await pinger.terminate()
  const during = (from: number, to: number): number[] => samples.filter(([at]) => at >= from && at <= to).map(([, l]) => l)
  const idle = during(windows[0]!.from, windows[0]!.to)

  const out = [['query', 'path', 'instances', 'bytes', 'p50 ms', 'p99 ms', 'max ms', 'CPU ms/call', '/healthz p99', '/healthz max', 'note']]
  out.push([windows[0]!.label, '', '', '', '', '', '', '', f1(quantile(idle, 0.99)), f1(Math.max(...idle)), `${idle.length} pings`])
  for (const r of rows) {
    const pings = during(r.from, r.to)
    const note = r.query !== '' && !r.paged ? 'query ignored: full view (older build)' : `${pings.length} pings`
    out.push([r.label, `/admin/routes${r.query === '' ? '' : `?${r.query}`}`, fmtInt(r.returned ?? NaN), kib(r.bytes), f1(quantile(r.ms, 0.5)), f1(quantile(r.ms, 0.99)), f1(Math.max(...r.ms)), f1(r.cpuMsPerCall), f1(quantile(pings, 0.99)), f1(Math.max(...pings)), note])
  }
  console.log(`\nGET /admin/routes at ${fmtInt(N)} instances (${want.down} down, ${want.degraded} degraded), ${CALLS} sequential calls per query (of 8 at once in the last row); /healthz pinged every ${PING_MS} ms meanwhile\n`)
  console.log(table(out))
  const m = machine()
  console.log(`\n${started.toISOString()}  ${m['cpus']} x ${m['cpuModel']}, Node ${process.version}, ${versionOf('redis-server', ['--version'])}, load average ${(m['loadAverage'] as number[]).map((x) => x.toFixed(1)).join(' ')}`)

  const file = values.json ?? path.join(BENCH_DIR, 'results', `routes-view-${started.toISOString().replace(/[:.]/g, '-')}.json`)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(
    file,
    JSON.stringify({ started: started.toISOString(), machine: m, main: mainJs, instances: N, calls: CALLS, incident: want, idle: { p99: quantile(idle, 0.99), max: Math.max(...idle) }, rows: rows.map((r) => ({ ...r, healthz: during(r.from, r.to) })) }, null, 1),
  )
  log(`  wrote ${path.relative(ROOT, file)}`)
  await gw.stop()
  await Promise.all([p, r1, s1].map((s) => s.proc.stop()))
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
