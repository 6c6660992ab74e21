// `npm run bench:attacks`: what each attack of test/security/ (http-bombs, big-replies, resp-hostile) costs everyone else.
// The gateway runs as a child process (the build in dist/, pinned to the server core) on its own
// redis-server; a normal client in a process of its own (bench/attack-prober.ts, on the client
// core) sends GETs one after another on a keep-alive connection all the time. Each attack, against a
// freshly started gateway, is repeated for --duration seconds while the probe's latencies (p50,
// p99, max: the event-loop delay it sees, plus the round trip) and the gateway's peak resident
// memory (VmHWM) are recorded, with the lane on and off. Then the lane's head parsing is timed on its worst
// inputs, and with --timeouts, when node:http's and the lane's header and request timeouts fire.
//
//   npm run bench:attacks -- [--duration 3] [--paths lane,node] [--only header-bomb,...] [--timeouts]
//
// Limits are the defaults (src/config/schema.ts) but for limits.writeTimeout, 5 s instead of 30 s
// so that the non-reading clients are let go within the run.

import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Buffer } from 'node:buffer'
import { BENCH_DIR, CLIENT_CORE, INSTANCE, ROOT, TOKEN, machine, pinned, sleep, startGateway, startRedis, type GatewayServer } from './lib/procs.js'
import { KEY, seed } from './lib/scenarios.js'
import { fmtInt, table } from './lib/stats.js'
import { rawRequest, type RawResponse } from '../test/helpers/raw-http.js'
import { HeadScan, parseHead } from '../src/http/fast-lane/grammar.js'
import { DEFAULTS } from '../src/config/schema.js'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '3' },
    paths: { type: 'string', default: 'lane,node' },
    only: { type: 'string', default: '' },
    timeouts: { type: 'boolean', default: false },
  },
})
const durationMs = Number(values.duration) * 1000
const MAX_ARGS = DEFAULTS.limits.maxArgs
const MAX_COMMANDS = DEFAULTS.limits.maxCommands
const BIG_VALUE_KEY = 'bench:attack:big'
/** A 200 MB value, made with one SETRANGE (as a write token could). */
const HUGE_VALUE_KEY = 'bench:attack:huge'
const HUGE_VALUE_BYTES = 200 * 1024 * 1024

// ---------------------------------------------------------------------------------------------
// The attacks: each sends its requests over and over until `until`, and counts the answers.

type Tally = Map<string, number>
interface Attack {
  readonly id: string
  readonly what: string
  run(g: GatewayServer, until: number, tally: Tally): Promise<void>
}

const count = (tally: Tally, r: RawResponse | Error): void => {
  const k = r instanceof Error ? 'no reply' : `${r.status}${r.status === 200 ? '' : ` ${String((JSON.parse(r.text || '{}') as { error?: string }).error ?? '').split(' ')[0]}`}`
  tally.set(k, (tally.get(k) ?? 0) + 1)
}
const send = (g: GatewayServer, bytes: string | Buffer | (string | Buffer)[], tally: Tally): Promise<void> =>
  rawRequest(g.port, bytes, { timeoutMs: 120_000 }).then(
    (r) => count(tally, r),
    (e: Error) => count(tally, e),
  )
function post(target: string, body: string): Buffer {
  const b = Buffer.from(body)
  const head = `POST /v1/instances/${INSTANCE}${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n`
  return Buffer.concat([Buffer.from(head), b])
}
/** Calls `once` until `until`, at least once. */
async function repeat(until: number, once: () => Promise<unknown>): Promise<void> {
  do await once()
  while (Date.now() < until)
}

const headerBomb = `GET /v1/instances/${INSTANCE}/get/${KEY} HTTP/1.1\r\nHost: 127.0.0.1\r\n${'x:1\r\n'.repeat(12_000)}\r\n`
const depthBomb = post('', '['.repeat(5_000_000))
const pings = (n: number): Buffer => post('/pipeline', `[${Array.from({ length: n }, () => '["PING"]').join(',')}]`)
const sadd = (n: number): Buffer => post('', `["SADD","bench:attack:set"${',"1"'.repeat(n - 2)}]`)
const pipelineAt = pings(MAX_COMMANDS)
const pipelineOver = pings(MAX_COMMANDS + 1)
const argsAt = sadd(MAX_ARGS)
const argsOver = sadd(MAX_ARGS + 1)
const bigBody = post('', JSON.stringify(['SET', 'bench:attack:body', 'b'.repeat(9 * 1024 * 1024)]))
const hugeGet = post('', JSON.stringify(['GET', HUGE_VALUE_KEY]))
const hugePipeline = post('/pipeline', JSON.stringify(Array.from({ length: 8 }, () => ['GET', HUGE_VALUE_KEY])))
const deepReply = post('', JSON.stringify(['EVAL_RO', 'local t = {} for i=1,7500 do t = {t} end return t', '0']))

/** `n` raw connections that each send `request` and then read nothing for `holdMs`; counts what they got. */
async function nonReaders(g: GatewayServer, n: number, request: string, holdMs: number, t: Tally, full: number): Promise<void> {
  const sockets = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Socket>((resolve) => {
          const s = net.connect({ host: '127.0.0.1', port: g.port }, () => resolve(s))
          s.on('error', () => {})
        }),
    ),
  )
  const received = sockets.map(() => 0)
  sockets.forEach((s, i) => {
    s.pause()
    s.on('data', (b: Buffer) => (received[i]! += b.length))
    s.write(request)
  })
  await sleep(holdMs)
  const closed = sockets.map((s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve()))))
  for (const s of sockets) s.resume()
  await Promise.race([Promise.all(closed), sleep(10_000)])
  // Less than all of it: the gateway dropped the connection with replies unsent.
  t.set('disconnected by the gateway', received.filter((x) => x < full).length)
  for (const s of sockets) s.destroy()
}

const ATTACKS: Attack[] = [
  { id: 'baseline', what: 'no attack', run: (_g, until) => sleep(Math.max(0, until - Date.now())) },
  {
    id: 'header-bomb',
    what: `10 at once: 12,000 header lines in ${Math.round(headerBomb.length / 1024)} KiB, no token`,
    run: (g, until, t) => repeat(until, () => Promise.all(Array.from({ length: 10 }, () => send(g, headerBomb, t)))),
  },
  { id: 'depth-bomb', what: '5,000,000 [ (5 MB body)', run: (g, until, t) => repeat(until, () => send(g, depthBomb, t)) },
  { id: 'pipeline-at', what: `pipeline of ${fmtInt(MAX_COMMANDS)} PINGs (maxCommands)`, run: (g, until, t) => repeat(until, () => send(g, pipelineAt, t)) },
  { id: 'pipeline-over', what: `pipeline of ${fmtInt(MAX_COMMANDS + 1)} PINGs`, run: (g, until, t) => repeat(until, () => send(g, pipelineOver, t)) },
  { id: 'pipeline-million', what: 'pipeline of 1,000,000 PINGs (9 MB)', run: (g, until, t) => repeat(until, () => send(g, pings(1_000_000), t)) },
  { id: 'args-at', what: `SADD of ${fmtInt(MAX_ARGS)} arguments (maxArgs)`, run: (g, until, t) => repeat(until, () => send(g, argsAt, t)) },
  { id: 'args-over', what: `SADD of ${fmtInt(MAX_ARGS + 1)} arguments`, run: (g, until, t) => repeat(until, () => send(g, argsOver, t)) },
  {
    id: 'big-bodies',
    what: '16 at once: SET of a 9 MiB value',
    run: (g, until, t) => repeat(until, () => Promise.all(Array.from({ length: 16 }, () => send(g, bigBody, t)))),
  },
  {
    id: 'non-reading',
    what: '20 clients, 128 pipelined GETs of a 64 KiB value each (8 MiB), reading nothing',
    // The write timeout is 5 s: give the gateway the time to let them go, then read what is left.
    run: (g, until, t) =>
      nonReaders(g, 20, `GET /v1/instances/${INSTANCE}/get/${BIG_VALUE_KEY} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`.repeat(128), Math.max(until - Date.now(), 8_000), t, 128 * 64 * 1024),
  },
  // From here on the attacks come back from Redis: replies that a token can make Redis send.
  { id: 'reply-200mb', what: 'GET of a 200 MB value (made with one SETRANGE)', run: (g, until, t) => repeat(until, () => send(g, hugeGet, t)) },
  { id: 'reply-200mb-x8', what: 'pipeline of 8 GETs of the 200 MB value', run: (g, until, t) => repeat(until, () => send(g, hugePipeline, t)) },
  {
    id: 'reply-200mb-non-reading',
    what: '20 clients, GETRANGE of 9 MiB of the 200 MB value each, reading nothing',
    run: (g, until, t) =>
      nonReaders(g, 20, `GET /v1/instances/${INSTANCE}/getrange/${HUGE_VALUE_KEY}/0/${9 * 1024 * 1024 - 1} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, Math.max(until - Date.now(), 8_000), t, 9 * 1024 * 1024),
  },
  { id: 'reply-deep', what: 'EVAL_RO returning a table nested 7,500 deep', run: (g, until, t) => repeat(until, () => send(g, deepReply, t)) },
]

// ---------------------------------------------------------------------------------------------

/** The probe's samples, appended as they arrive. */
interface Sample {
  at: number
  us: number
  status: number
  /** The error code of a failed one. */
  code: string
}

function startProber(g: GatewayServer): { samples: Sample[]; stop(): void } {
  const argv = pinned(CLIENT_CORE, [process.execPath, '--import', 'tsx', path.join(BENCH_DIR, 'attack-prober.ts'), String(g.port), TOKEN, INSTANCE, KEY])
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
  const samples: Sample[] = []
  let rest = ''
  child.stdout.on('data', (b: Buffer) => {
    const lines = (rest + b.toString('utf8')).split('\n')
    rest = lines.pop() ?? ''
    for (const l of lines) {
      const [at, us, status, code] = l.split(' ')
      samples.push({ at: Number(at), us: Number(us), status: Number(status), code: code ?? '' })
    }
  })
  return { samples, stop: () => child.kill('SIGKILL') }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

const procStatus = (pid: number, field: string): number => {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : NaN
}

interface Row {
  path: string
  attack: Attack
  probes: number
  failed: number
  p50: number
  p99: number
  max: number
  hwmMiB: number
  tally: Tally
}

/** Each attack against a gateway of its own (so that its peak memory is the attack's alone). */
async function runPath(p: string): Promise<Row[]> {
  const rows: Row[] = []
  for (const attack of ATTACKS.filter((a) => only.length === 0 || only.includes(a.id) || a.id === 'baseline')) {
    const g = await startGateway(redisPort, { config: ['limits: { writeTimeout: 5s }', `http: { fastLane: ${p === 'lane'} }`], timeoutMs: 30_000 })
    const prober = startProber(g)
    try {
      await sleep(1_500) // the probe's warm-up, and the gateway's JIT
      const tally: Tally = new Map()
      const t0 = Date.now()
      await attack.run(g, t0 + durationMs, tally)
      const t1 = Date.now()
      const hwm = procStatus(g.proc.pid, 'VmHWM')
      // Probes that started during the attack (their timestamp is their end).
      const during = prober.samples.filter((x) => x.at - x.us / 1000 >= t0 && x.at - x.us / 1000 <= t1)
      const lat = during.map((x) => x.us).sort((a, b) => a - b)
      const failed = during.filter((x) => x.status !== 200)
      for (const f of failed) {
        const k = `probe ${f.status === 0 ? 'error' : `${f.status} ${f.code}`}`
        tally.set(k, (tally.get(k) ?? 0) + 1)
      }
      const row: Row = { path: p, attack, probes: during.length, failed: failed.length, p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[lat.length - 1] ?? NaN, hwmMiB: hwm / 1024, tally }
      rows.push(row)
      console.log(`  ${p} ${attack.id}: ${row.probes} probes, p50 ${ms(row.p50)}, p99 ${ms(row.p99)}, max ${ms(row.max)}, VmHWM ${row.hwmMiB.toFixed(0)} MiB; ${tallyText(tally)}`)
    } finally {
      prober.stop()
      await g.proc.stop()
    }
  }
  return rows
}

const ms = (us: number): string => (Number.isFinite(us) ? `${(us / 1000).toFixed(us < 10_000 ? 2 : 0)} ms` : 'N/A')
const tallyText = (t: Tally): string =>
  [...t]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${fmtInt(n)} x ${k}`)
    .join(', ')

// ---------------------------------------------------------------------------------------------
// The lane's head parsing on its worst inputs, in this process.

function timeIt(fn: () => unknown, minMs = 300): number {
  for (let i = 0; i < 200; i++) fn()
  let n = 0
  const t = process.hrtime.bigint()
  let el = 0
  do {
    fn()
    n++
    el = Number(process.hrtime.bigint() - t) / 1e6
  } while (el < minMs)
  return (el * 1e6) / n
}

function headParsing(): string[][] {
  const maxHeaders = DEFAULTS.limits.maxHeaders
  const parse = (text: string) => {
    const buf = Buffer.from(`${text}\r\n\r\n`, 'latin1')
    const end = buf.length - 4
    return { buf, end, run: () => parseHead(buf, end, maxHeaders) }
  }
  const get = 'GET /v1/instances/bench/get/bench:k HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer bench-token\r\nUpstash-Encoding: base64\r\nConnection: keep-alive'
  // 99 names of ~640 bytes differing only in their last characters: each compared with all before it.
  const longNames = `GET / HTTP/1.1\r\nHost: h\r\n${Array.from({ length: maxHeaders - 1 }, (_, i) => `x-${'a'.repeat(630)}${String(i).padStart(3, '0')}: v`).join('\r\n')}`
  const shortLines = `GET / HTTP/1.1\r\nHost: h\r\n${'x:1\r\n'.repeat(12_000).slice(0, -2)}`
  const cases: [string, string][] = [
    ['a GET as the SDK sends it', get],
    [`${maxHeaders} header lines, 99 names of ~640 bytes alike but for their end (the duplicate check's worst case)`, longNames],
    ['12,000 header lines of 5 bytes (handed over at line 101)', shortLines],
  ]
  const rows = cases.map(([name, text]) => {
    const p = parse(text)
    const ns = timeIt(p.run)
    return [name, fmtInt(p.buf.length), `${(ns / 1000).toFixed(1)} us`, `${(ns / p.buf.length).toFixed(2)} ns`, p.run() === null ? 'handed over' : 'served']
  })
  // A 64 KiB head arriving a byte per read: the lane's HeadScan after each byte, against joining
  // the bytes read so far and scanning the last ones after each byte (the lane before this change).
  const head = Buffer.from(`GET / HTTP/1.1\r\nHost: h\r\nx-pad: ${'p'.repeat(64 * 1024 - 40)}\r\n\r\n`, 'latin1')
  const pieces = Array.from({ length: head.length }, (_, i) => head.subarray(i, i + 1))
  const scanned = timeIt(() => {
    const scan = new HeadScan()
    const parts: Buffer[] = []
    for (const p of pieces) {
      parts.push(p)
      if (scan.arrived(parts)) break
    }
  })
  const t = process.hrtime.bigint()
  let joined: Buffer = Buffer.alloc(0)
  for (const p of pieces) {
    joined = Buffer.concat([joined, p])
    if (joined.indexOf('\r\n\r\n', Math.max(0, joined.length - 4)) >= 0) break
  }
  const rejoined = Number(process.hrtime.bigint() - t)
  rows.push(['64 KiB head, 1 byte per read: HeadScan after each read (the lane now)', fmtInt(head.length), `${(scanned / 1000).toFixed(1)} us`, `${(scanned / head.length).toFixed(2)} ns`, ''])
  rows.push(['64 KiB head, 1 byte per read: join all and scan the end after each read (before)', fmtInt(head.length), `${(rejoined / 1000).toFixed(1)} us`, `${(rejoined / head.length).toFixed(2)} ns`, ''])
  return rows
}

// ---------------------------------------------------------------------------------------------
// Header and request timeouts, as a client sees them (--timeouts: ~80 s).

async function timeouts(p: string): Promise<string[][]> {
  const g = await startGateway(redisPort, { config: [`http: { fastLane: ${p === 'lane'} }`] })
  const waitFor408 = (bytes: string): Promise<number> =>
    new Promise((resolve) => {
      const t = Date.now()
      const s = net.connect({ host: '127.0.0.1', port: g.port }, () => s.write(bytes))
      s.on('data', () => {})
      s.on('error', () => {})
      s.on('close', () => resolve((Date.now() - t) / 1000))
    })
  try {
    const [h, r] = await Promise.all([
      waitFor408(`GET /v1/instances/${INSTANCE}/get/${KEY} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: `),
      waitFor408(`POST /v1/instances/${INSTANCE} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 100\r\n\r\n["GET",`),
    ])
    return [
      [p, 'header section not finished', '10 s', `${h.toFixed(2)} s`],
      [p, 'body not finished', '30 s', `${r.toFixed(2)} s`],
    ]
  } finally {
    await g.proc.stop()
  }
}

// ---------------------------------------------------------------------------------------------

const only = values.only.split(',').filter(Boolean)
const redis = await startRedis()
const redisPort = redis.port
await seed(redisPort)
await new Promise<void>((resolve, reject) => {
  // The 64 KiB value the non-reading clients ask for.
  const s = net.connect({ host: '127.0.0.1', port: redisPort }, () => {
    const v = 'r'.repeat(64 * 1024)
    s.write(`*3\r\n$3\r\nSET\r\n$${BIG_VALUE_KEY.length}\r\n${BIG_VALUE_KEY}\r\n$${v.length}\r\n${v}\r\n`)
  })
  // ...and the 200 MB one, made by Redis itself: nothing that big crosses this process.
  s.once('data', () => {
    s.write(`*4\r\n$8\r\nSETRANGE\r\n$${HUGE_VALUE_KEY.length}\r\n${HUGE_VALUE_KEY}\r\n$${String(HUGE_VALUE_BYTES - 1).length}\r\n${HUGE_VALUE_BYTES - 1}\r\n$1\r\nx\r\n`)
    s.once('data', () => {
      s.destroy()
      resolve()
    })
  })
  s.once('error', reject)
})
console.log(`machine: ${JSON.stringify(machine())}`)
console.log(`each attack for ${values.duration} s; limits: defaults (maxHeaders ${DEFAULTS.limits.maxHeaders}, maxArgs ${fmtInt(MAX_ARGS)}, maxCommands ${fmtInt(MAX_COMMANDS)}, maxBody ${DEFAULTS.limits.maxBody}, inflightBytes ${DEFAULTS.limits.inflightBytes}) but writeTimeout 5s`)
const rows: Row[] = []
for (const p of values.paths.split(',')) rows.push(...(await runPath(p)))
console.log('\nA normal client\'s GETs (one connection, one after another) while each attack runs; the gateway\'s peak RSS:\n')
console.log(
  table([
    ['path', 'attack', 'probes', 'failed', 'p50', 'p99', 'max', 'VmHWM', 'answers to the attacker'],
    ...rows.map((r) => [r.path, `${r.attack.id}: ${r.attack.what}`, fmtInt(r.probes), fmtInt(r.failed), ms(r.p50), ms(r.p99), ms(r.max), `${r.hwmMiB.toFixed(0)} MiB`, tallyText(r.tally)]),
  ]),
)
console.log('\nThe fast lane\'s head parsing (parseHead), worst inputs, in this process:\n')
console.log(table([['input', 'bytes', 'per call', 'per byte', ''], ...headParsing()]))
if (values.timeouts) {
  const t: string[][] = [['path', 'request', 'limit', 'closed after']]
  for (const p of values.paths.split(',')) t.push(...(await timeouts(p)))
  console.log('\nHeader and request timeouts, as a client sees them:\n')
  console.log(table(t))
}
await redis.proc.stop()
process.exit(0)
