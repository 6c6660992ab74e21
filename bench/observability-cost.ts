// The cost of observability (docs/observability.md "What it costs"): the production gateway
// (dist/) under the same load in four set-ups, alternated run by run so drift hits all of them
// alike:
//   off      metrics off (GATEWAY_METRICS_ENABLED=false), tracing off
//   shipped  metrics on, tracing off (no OTEL_* variables): the default
//   sampled  metrics on, tracing on with 1 % ratio sampling (parentbased_traceidratio 0.01), the
//            production recommendation
//   full     metrics on and every request traced (OTEL_TRACES_SAMPLER=always_on), exported over
//            OTLP/HTTP (protobuf, the SDK default) to a local collector stand-in that counts what
//            arrives (bytes, export requests)
// Scenarios: GET at 50 connections (throughput) and at 1 connection (latency). Median of N runs.
//
//   npm run build && npx tsx bench/observability-cost.ts [--runs 3] [--seconds 10]
//
// Needs wrk and redis-server; pins the gateway to one core and wrk + redis to the other (see
// bench/lib/procs.ts). Prints a table and writes bench/results/observability-<time>.json.

import { createServer } from 'node:http'
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { BENCH_DIR, haveCommand, startGateway, startRedis, type GatewayServer } from './lib/procs.js'
import { KEY, SMALL, gwPost } from './lib/scenarios.js'
import { median, table } from './lib/stats.js'
import { runWrk, type WrkResult } from './lib/wrk.js'

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : def
}
const RUNS = arg('runs', 3)
const SECONDS = arg('seconds', 10)

for (const cmd of ['wrk', 'redis-server', 'taskset']) {
  if (!haveCommand(cmd)) {
    console.error(`observability-cost: ${cmd} not found (apt-get install wrk redis-server util-linux)`)
    process.exit(1)
  }
}

/** A stand-in OTLP/HTTP collector: accepts POST /v1/traces, counts requests and bytes. */
async function startSink(): Promise<{ url: string; stats: { requests: number; bytes: number }; close(): void }> {
  const stats = { requests: 0, bytes: 0 }
  const server = createServer((req, res) => {
    req.on('data', (b: Buffer) => (stats.bytes += b.length))
    req.on('end', () => {
      stats.requests++
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  return { url: `http://127.0.0.1:${port}`, stats, close: () => server.close() }
}

type Setup = 'off' | 'shipped' | 'sampled' | 'full'
const SETUPS: Setup[] = ['off', 'shipped', 'sampled', 'full']

const redis = await startRedis()
{
  const { Redis } = await import('ioredis')
  const r = new Redis(redis.port, '127.0.0.1')
  await r.set(KEY, SMALL)
  r.disconnect()
}
const sink = await startSink()

function envFor(setup: Setup): NodeJS.ProcessEnv {
  switch (setup) {
    case 'off':
      return { GATEWAY_METRICS_ENABLED: 'false' }
    case 'shipped':
      return {}
    case 'sampled':
      return {
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.01',
        OTEL_SERVICE_NAME: 'redis-gateway-bench',
      }
    case 'full':
      return {
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
        OTEL_TRACES_SAMPLER: 'always_on',
        OTEL_SERVICE_NAME: 'redis-gateway-bench',
        // A queue deep enough that spans are exported, not dropped, at this rate (default 2048).
        OTEL_BSP_MAX_QUEUE_SIZE: '65536',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2048',
        OTEL_BSP_SCHEDULE_DELAY: '500',
      }
  }
}

interface Row {
  setup: Setup
  scenario: string
  runs: WrkResult[]
  exportRequests: number
  exportBytes: number
}

const rows: Row[] = []
const scenarios = [
  { id: 'get-c50', connections: 50 },
  { id: 'get-c1', connections: 1 },
]
for (const sc of scenarios) for (const setup of SETUPS) rows.push({ setup, scenario: sc.id, runs: [], exportRequests: 0, exportBytes: 0 })

for (let run = 0; run < RUNS; run++) {
  for (const setup of SETUPS) {
    const gw: GatewayServer = await startGateway(redis.port, { env: envFor(setup) })
    try {
      for (const sc of scenarios) {
        const spec = gwPost(gw.base, ['get', KEY])
        // A short warm-up (JIT, connections) that is not measured.
        await runWrk(spec, { connections: sc.connections, durationS: 2, serverPid: gw.proc.pid })
        const before = { ...sink.stats }
        const r = await runWrk(spec, { connections: sc.connections, durationS: SECONDS, serverPid: gw.proc.pid })
        const row = rows.find((x) => x.setup === setup && x.scenario === sc.id)!
        row.runs.push(r)
        row.exportRequests += sink.stats.requests - before.requests
        row.exportBytes += sink.stats.bytes - before.bytes
        const errors = Object.values(r.errors).reduce((a, b) => a + b, 0)
        console.error(`run ${run + 1}/${RUNS} ${setup.padEnd(7)} ${sc.id}: ${Math.round(r.rps)} req/s, p50 ${r.latencyUs.p50} us, p99 ${r.latencyUs.p99} us, errors ${errors}`)
        if (errors > 0) throw new Error(`${setup} ${sc.id}: ${errors} errors`)
      }
    } finally {
      await gw.proc.stop()
    }
  }
}

const out: unknown[] = []
const lines: string[][] = [['scenario', 'set-up', 'req/s', 'vs off', 'p50 us', 'p99 us', 'gateway CPU %', 'OTLP exported']]
for (const sc of scenarios) {
  const base = median(rows.find((x) => x.setup === 'off' && x.scenario === sc.id)!.runs.map((r) => r.rps))
  for (const setup of SETUPS) {
    const row = rows.find((x) => x.setup === setup && x.scenario === sc.id)!
    const rps = median(row.runs.map((r) => r.rps))
    const p50 = median(row.runs.map((r) => r.latencyUs.p50))
    const p99 = median(row.runs.map((r) => r.latencyUs.p99))
    const cpu = median(row.runs.map((r) => r.serverCpu))
    const exported = row.exportRequests > 0 ? `${(row.exportBytes / 1024 / 1024).toFixed(1)} MiB in ${row.exportRequests} posts` : '-'
    lines.push([sc.id, setup, String(Math.round(rps)), `${((100 * rps) / base).toFixed(1)}%`, String(p50), String(p99), cpu.toFixed(0), exported])
    out.push({ scenario: sc.id, setup, rps, p50Us: p50, p99Us: p99, serverCpu: cpu, exportRequests: row.exportRequests, exportBytes: row.exportBytes, runs: row.runs })
  }
}

console.log(`\nobservability cost: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, ${RUNS} runs x ${SECONDS} s, median`)
console.log(table(lines))
const dir = path.join(BENCH_DIR, 'results')
mkdirSync(dir, { recursive: true })
const file = path.join(dir, `observability-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(file, JSON.stringify({ cpus: os.cpus().length, loadavg: os.loadavg(), runs: RUNS, seconds: SECONDS, results: out }, null, 2))
console.log(`\nwritten ${path.relative(process.cwd(), file)}`)
sink.close()
await redis.proc.stop()
process.exit(0)
