// `npm run bench:instructions`: CPU instructions the gateway executes per request, counted by
// valgrind's callgrind. Wall-clock figures on a shared 2-core VM drift by 25 % within an hour
// (bench/README.md), so a change worth a few percent cannot be seen in req/s or p50; the count of
// instructions does not depend on the machine's state and repeats to within a fraction of a percent.
// It is not a time: cache misses and syscalls cost what instructions do not show. Use it to compare
// two builds, next to bench:ab for the time.
//
// How: the built gateway (dist/, or --main another build) runs under callgrind with instrumentation
// off; a keep-alive client warms it up (JIT) with --warmup requests, then instrumentation is turned
// on (callgrind_control -i on) for --requests requests and dumped. Counts are per thread: the main
// thread (JavaScript, the event loop, syscalls' user side) and the others (GC helpers, libuv pool).
//
//   npm run build && npm run bench:instructions -- [--scenario get|set|pipeline-10|pipeline-100|multi-exec-10]
//     [--concurrency 1] [--warmup 12000] [--requests 3000] [--rounds 5] [--main dist/src/main.js]
//     [--keep DIR]  (keeps each round's main-thread profile: callgrind_annotate DIR/round-1.main)
//
// With --keep the gateway also runs with --perf-basic-prof, and the kept profiles name JavaScript
// functions (V8's JIT code, which valgrind sees only as addresses) from its /tmp/perf-<pid>.map, as
// `js:<function> <file>:<line>`. The map costs nothing once warm (a line per compiled function).
//
// Needs `valgrind` (Debian package). Takes a few minutes: the gateway runs ~50x slower under it.

import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { haveCommand, ROOT, startGateway, startRedis, tmpDir, type Proc } from './lib/procs.js'
import { GW_HEADERS, KEY, seed, SMALL } from './lib/scenarios.js'
import { median } from './lib/stats.js'

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'get' },
    concurrency: { type: 'string', default: '1' },
    warmup: { type: 'string', default: '12000' },
    requests: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '5' },
    keep: { type: 'string' },
    main: { type: 'string', default: path.join(ROOT, 'dist/src/main.js') },
  },
})

const keys = (n: number): string[] => Array.from({ length: n }, (_, i) => `bench:p${i}`)
const BODIES: Record<string, { path: string; body: unknown }> = {
  get: { path: '', body: ['get', KEY] },
  set: { path: '', body: ['set', 'bench:s', SMALL] },
  'pipeline-10': { path: '/pipeline', body: keys(10).map((k) => ['get', k]) },
  'pipeline-100': { path: '/pipeline', body: keys(100).map((k) => ['get', k]) },
  'multi-exec-10': { path: '/multi-exec', body: Array.from({ length: 10 }, (_, i) => ['set', `bench:m${i}`, SMALL]) },
}
const scenario = BODIES[values.scenario]
if (!scenario) {
  console.error(`unknown --scenario ${values.scenario}; one of ${Object.keys(BODIES).join(', ')}`)
  process.exit(2)
}
const concurrency = Number(values.concurrency)
const warmup = Number(values.warmup)
const requests = Number(values.requests)
const roundsWanted = Number(values.rounds)
for (const [name, v] of [['concurrency', concurrency], ['warmup', warmup], ['requests', requests], ['rounds', roundsWanted]] as const) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`--${name} must be a positive integer, got ${String(v)}`)
    process.exit(2)
  }
}
if (!haveCommand('valgrind') || !haveCommand('callgrind_control')) {
  console.error('valgrind is not installed: apt-get install -y valgrind')
  process.exit(2)
}

if (values.keep) mkdirSync(values.keep, { recursive: true })
const redis = await startRedis()
await seed(redis.port)
const dir = tmpDir()
const outPrefix = path.join(dir, 'callgrind')
// Timeouts for a process ~50x slower than usual; pinned to no core (valgrind runs it on one thread
// at a time anyway).
const gateway = await startGateway(redis.port, {
  core: null,
  main: values.main,
  wrap: ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${outPrefix}.%p`],
  config: ['health: { interval: 2s, timeout: 30s }', 'redis: { commandTimeout: 30s, connectTimeout: 30s }'],
  timeoutMs: 180_000,
  nodeArgs: values.keep ? ['--perf-basic-prof'] : [],
})
const gw: Proc = gateway.proc

const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
const body = JSON.stringify(scenario.body)
const url = `${gateway.base}${scenario.path}`

function request(): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { ...GW_HEADERS, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** `count` requests from `concurrency` closed-loop callers; throws on any status but 200. */
async function drive(count: number): Promise<void> {
  let left = count
  const caller = async (): Promise<void> => {
    while (left > 0) {
      left--
      const status = await request()
      if (status !== 200) throw new Error(`gateway answered ${status}`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, caller))
}

function callgrind(...args: string[]): void {
  execFileSync('callgrind_control', [...args, String(gw.pid)], { stdio: 'ignore' })
}

const per = (n: number): string => Math.round(n / requests).toLocaleString('en-US')

/**
 * Instructions of dump `k`: callgrind writes it asynchronously (when the process next enters
 * valgrind's scheduler), one file per thread, <prefix>.<pid>.<k>-<thread>, thread 01 the main one;
 * each ends with its totals.
 */
async function readDump(k: number): Promise<{ main: number; others: number }> {
  const stem = path.basename(`${outPrefix}.${gw.pid}.${k}-`)
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
    const files = readdirSync(dir).filter((f) => f.startsWith(stem))
    const byThread = new Map<string, number>()
    for (const f of files) {
      const m = /^totals:\s+(\d+)/m.exec(readFileSync(path.join(dir, f), 'utf8'))
      if (m) byThread.set(f.slice(stem.length), Number(m[1]))
    }
    if (files.length === 0 || byThread.size < files.length) continue
    let others = 0
    for (const [t, n] of byThread) if (t !== '01') others += n
    // --keep DIR: the main thread's file of each round, for `callgrind_annotate DIR/round-1.main`.
    if (values.keep) keepProfile(path.join(dir, `${stem}01`), path.join(values.keep, `round-${k}.main`))
    return { main: byThread.get('01') ?? 0, others }
  }
  throw new Error(`no callgrind dump ${k} in ${dir} after 60 s:\n${gw.log()}`)
}

/** Copies a callgrind profile, naming JIT code addresses from the gateway's perf map. */
function keepProfile(from: string, to: string): void {
  const map = perfMap(`/tmp/perf-${gw.pid}.map`)
  if (map.length === 0) return copyFileSync(from, to)
  const name = (addr: number): string | null => {
    // The last entry starting at or below addr (the map is sorted), if addr is inside it.
    let lo = 0
    let hi = map.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (map[mid]!.start <= addr) lo = mid
      else hi = mid - 1
    }
    const e = map[lo]!
    return e.start <= addr && addr < e.start + e.size ? e.name : null
  }
  const text = readFileSync(from, 'utf8').replace(/^(c?fn=\(\d+\)) 0x([0-9a-f]+)$/gm, (line, head: string, hex: string) => {
    const n = name(parseInt(hex, 16))
    return n === null ? line : `${head} js:${n} [0x${hex}]`
  })
  writeFileSync(to, text)
}

/** /tmp/perf-<pid>.map: `START SIZE NAME` in hex, one line per code object; later entries win. */
function perfMap(file: string): { start: number; size: number; name: string }[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  const byStart = new Map<number, { start: number; size: number; name: string }>()
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line)
    if (m) byStart.set(parseInt(m[1]!, 16), { start: parseInt(m[1]!, 16), size: parseInt(m[2]!, 16), name: m[3]!.replace(/\s+/g, '_') })
  }
  return [...byStart.values()].sort((a, b) => a.start - b.start)
}

try {
  const until = Date.now() + 180_000
  for (;;) {
    try {
      if ((await request()) === 200) break
    } catch {
      // ready, but the first health check may not have named the primary yet
    }
    if (Date.now() > until) throw new Error(`gateway did not answer within 180 s under valgrind:\n${gw.log()}`)
    await new Promise((r) => setTimeout(r, 1000))
  }
  const t0 = Date.now()
  await drive(warmup)
  console.log(`warm-up: ${warmup} requests in ${((Date.now() - t0) / 1000).toFixed(0)} s under valgrind`)
  const rounds: { main: number; others: number }[] = []
  for (let k = 1; k <= roundsWanted; k++) {
    callgrind('--zero')
    callgrind('-i', 'on')
    await drive(requests)
    callgrind('-i', 'off')
    callgrind(`--dump=round ${k}`)
    rounds.push(await readDump(k))
    const r = rounds[rounds.length - 1]!
    console.log(`  round ${k}: ${per(r.main)} instructions per request on the main thread, ${per(r.others)} on the others`)
  }
  console.log(
    `${values.scenario}, ${concurrency} connection(s), ${rounds.length} rounds of ${requests} requests after ${warmup}: ` +
      `median ${per(median(rounds.map((r) => r.main)))} instructions per request on the main thread ` +
      `(rounds ${rounds.map((r) => per(r.main)).join(', ')}), median ${per(median(rounds.map((r) => r.others)))} on the other threads`,
  )
} finally {
  agent.destroy()
  await gw.stop()
  await redis.proc.stop()
}
