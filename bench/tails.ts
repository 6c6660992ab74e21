// Where the gateway's tail latency comes from (issue 21, requirement 1): wrk's latency percentiles
// from p90 to p99.99 for the gateway, webdis and the hello-world server under the same scenario, and,
// for the gateway, the responses completed per millisecond around each of its garbage collections:
// how many requests one collection holds up, and for how long after its pause the rate stays low.
//   npm run bench:tails -- [--scenario get-c50] [--runs 3] [--duration 5] [--servers gateway,webdis,hello]
//                          (servers also: raw, raw-proxy: bench/raw-server.mjs, the floor of a Node gateway)
//                          [--node-arg=--max-semi-space-size=16 ...]  (the gateway's and raw's, after the shipped ones)
// wrk runs bench/wrk/timeline.lua, which counts responses per millisecond of the wall clock; the
// gateway runs with bench/lib/gc-timeline.cjs preloaded, which logs each collection on the same clock.

import { readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import {
  BENCH_DIR,
  loadAverage,
  sleep,
  startGateway,
  startHello,
  startRaw,
  startRedis,
  startWebdis,
  stopChild,
  tmpDir,
  type Server,
} from './lib/procs.js'
import { KEY, SCENARIOS, seed } from './lib/scenarios.js'
import { fmtInt, median, table } from './lib/stats.js'
import { runWrk, type HttpRequestSpec } from './lib/wrk.js'

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'get-c50' },
    runs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    servers: { type: 'string', default: 'gateway,webdis,hello' },
    'node-arg': { type: 'string', multiple: true, default: [] },
  },
})
const scenario = SCENARIOS.find((s) => s.id === values.scenario)
if (!scenario) throw new Error(`unknown scenario ${values.scenario}; one of ${SCENARIOS.map((s) => s.id).join(', ')}`)
const { gateway } = scenario
if (gateway === 'sdk') throw new Error('the sdk scenario has no wrk request; use sdk-wrk')
const RUNS = Number(values.runs)
const DURATION = Number(values.duration)
const PERCENTILES = ['90', '95', '97', '98', '99', '99.5', '99.9', '99.99'] as const
/** Milliseconds shown around a collection's start. */
const BEFORE = 5
const AFTER = 15

interface GcEntry {
  readonly startMs: number
  readonly durationMs: number
  readonly kind: number
}

/** Responses per millisecond (unix ms -> count), from timeline.lua's lines. */
function readTimeline(file: string): Map<number, number> {
  const m = new Map<number, number>()
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [ms, n] = line.split(' ')
    if (n !== undefined) m.set(Number(ms), (m.get(Number(ms)) ?? 0) + Number(n))
  }
  return m
}

function readGc(file: string): GcEntry[] {
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [s, d, k] = l.split(' ').map(Number)
      return { startMs: s!, durationMs: d!, kind: k! }
    })
}

/**
 * The mean rate (responses per ms) at each offset from a collection's start, over the collections
 * with a whole window inside the run, and the responses the window lost against the rate before it.
 */
function aroundGc(timeline: Map<number, number>, gcs: readonly GcEntry[]): { n: number; profile: number[]; lost: number; before: number } {
  const keys = [...timeline.keys()]
  const lo = Math.min(...keys) + 1_000 // the first second: connections opening
  const hi = Math.max(...keys) - 100 // the last flush may be partial
  const sums = new Array<number>(BEFORE + AFTER).fill(0)
  let n = 0
  for (const gc of gcs) {
    const t0 = Math.floor(gc.startMs)
    if (t0 - BEFORE < lo || t0 + AFTER > hi) continue
    n++
    for (let i = 0; i < BEFORE + AFTER; i++) sums[i]! += timeline.get(t0 - BEFORE + i) ?? 0
  }
  const profile = sums.map((s) => (n === 0 ? 0 : s / n))
  const before = profile.slice(0, BEFORE).reduce((a, b) => a + b, 0) / BEFORE
  const lost = profile.slice(BEFORE).reduce((a, x) => a + Math.max(0, before - x), 0)
  return { n, profile, lost, before }
}

console.log(`load average ${loadAverage().map((x) => x.toFixed(2)).join(' ')}; scenario ${scenario.id}; ${RUNS} runs x ${DURATION} s`)
const redis = await startRedis()
await seed(redis.port)
const dir = tmpDir()
const rows: string[][] = []
const gcRows: string[][] = []
for (const name of values.servers.split(',')) {
  const gcFile = path.join(dir, `gc-${name}.txt`)
  let server: Server
  let spec: HttpRequestSpec
  if (name === 'gateway') {
    const gw = await startGateway(redis.port, {
      nodeArgs: ['--require', path.join(BENCH_DIR, 'lib/gc-timeline.cjs'), ...values['node-arg']],
      env: { GC_TIMELINE_OUT: gcFile },
    })
    server = gw
    spec = gateway(gw.base)
  } else if (name === 'webdis') {
    if (!scenario.webdis) continue
    server = await startWebdis(redis.port)
    spec = scenario.webdis.req(server.url)
  } else if (name === 'hello') {
    server = await startHello()
    spec = gateway(`${server.url}/v1/instances/bench`)
  } else if (name === 'raw' || name === 'raw-proxy') {
    // The floor of any Node gateway (bench/raw-server.mjs): a raw net server with a fixed reply, or
    // one that forwards each request as a GET of the scenario's key, with nothing else in the way.
    server = await startRaw(name === 'raw' ? 'hello' : 'proxy', { redisPort: redis.port, key: KEY, nodeArgs: values['node-arg'] })
    spec = gateway(`${server.url}/v1/instances/bench`)
  } else throw new Error(`unknown server ${name}`)
  const pid = server.proc.child.pid!
  await runWrk(spec, { connections: scenario.connections, durationS: 2, serverPid: pid })
  const runs: { rps: number; p50: number; pct: Record<string, number>; gc: ReturnType<typeof aroundGc> | null; gcs: GcEntry[] }[] = []
  for (let i = 0; i < RUNS; i++) {
    const timelineFile = path.join(dir, `timeline-${name}-${i}.txt`)
    const pctFile = path.join(dir, `pct-${name}-${i}.json`)
    rmSync(gcFile, { force: true })
    const r = await runWrk(spec, {
      connections: scenario.connections,
      durationS: DURATION,
      serverPid: pid,
      script: path.join(BENCH_DIR, 'wrk/timeline.lua'),
      env: { BENCH_WRK_DIR: path.join(BENCH_DIR, 'wrk'), TIMELINE_OUT: timelineFile, PCT_OUT: pctFile },
    })
    await sleep(600) // gc-timeline.cjs writes twice a second
    const timeline = readTimeline(timelineFile)
    const t0 = Math.min(...timeline.keys())
    const t1 = Math.max(...timeline.keys())
    const gcs = readGc(gcFile).filter((g) => g.startMs >= t0 && g.startMs <= t1)
    runs.push({
      rps: r.rps,
      p50: r.latencyUs.p50,
      pct: JSON.parse(readFileSync(pctFile, 'utf8')) as Record<string, number>,
      gc: name === 'gateway' ? aroundGc(timeline, gcs) : null,
      gcs,
    })
  }
  await stopChild(server.proc.child)
  const ms = (us: number): string => (us / 1000).toFixed(2)
  rows.push([name, fmtInt(median(runs.map((r) => r.rps))), ms(median(runs.map((r) => r.p50))), ...PERCENTILES.map((p) => runs.map((r) => ms(r.pct[p]!)).join(' / '))])
  for (const [i, r] of runs.entries()) {
    if (r.gc === null) continue
    const minor = r.gcs.filter((g) => g.kind === 1)
    const pauses = minor.map((g) => g.durationMs).sort((a, b) => a - b)
    const requests = r.rps * DURATION
    gcRows.push([
      `run ${i + 1}`,
      `${(r.gcs.length / DURATION).toFixed(1)} (${(minor.length / DURATION).toFixed(1)} minor)`,
      pauses.length ? (pauses[pauses.length >> 1] ?? 0).toFixed(2) : '-',
      Math.max(0, ...r.gcs.map((g) => g.durationMs)).toFixed(2),
      `${r.gc.before.toFixed(0)}`,
      r.gc.profile.slice(BEFORE, BEFORE + 10).map((x) => x.toFixed(0)).join(' '),
      `${fmtInt(r.gc.lost)} (${(r.gc.lost / r.gc.before).toFixed(1)} ms)`,
      `${((100 * r.gc.lost * r.gcs.length) / requests).toFixed(1)} %`,
    ])
  }
}
await stopChild(redis.proc.child)

console.log(`\nwrk latency (ms): median of ${RUNS} runs for req/s and p50, each run for the rest`)
console.log(table([['server', 'req/s', 'p50', ...PERCENTILES.map((p) => `p${p}`)], ...rows]))
if (gcRows.length > 0) {
  console.log('\ngateway collections: per second, median minor pause and longest pause (ms); responses per ms in the 5 ms')
  console.log('before a collection starts (mean over collections), in each of the 10 ms from its start, the responses lost')
  console.log('against that rate (and the ms of throughput they are), and the share of all requests that many is')
  console.log(table([['', 'GCs per s', 'median', 'max', 'rate before', 'ms 0..9 from the start', 'lost per GC', 'lost x GCs'], ...gcRows]))
}
process.exit(0)
