// `npm run bench:phases`: where the time of one request goes at one connection, from the server's
// syscalls. Runs GET at one connection (wrk, as `npm run bench` does) against the gateway or webdis,
// records the server's syscalls for a second with `perf record -e raw_syscalls:*` (needs root and
// `apt-get install linux-perf`), and splits each request at the server's wake-ups and writes:
//   A  wake-up with the HTTP request  -> write to Redis begins     (the server's work on the way in)
//   R  write to Redis begins          -> wake-up with Redis's reply (Redis and the loopback)
//   B  wake-up with Redis's reply     -> write of the HTTP reply    (the server's work on the way out)
//   C  write of the HTTP reply        -> next request's wake-up     (the client and the loopback)
// The HTTP and Redis sockets are told apart by what is read from them (requests are larger than the
// GET reply). Tracing costs a few microseconds per syscall, so a server that makes more syscalls
// (webdis calls epoll_ctl about four times per phase) is slowed more than one that makes fewer:
// compare phases of one server across changes rather than across servers.
// Options: --server gateway|webdis (gateway)  --seconds N (1, of recording)

import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { haveCommand, sleep, startGateway, startRedis, startWebdis, tmpDir } from './lib/procs.js'
import { SCENARIOS, seed } from './lib/scenarios.js'
import { runWrk, type HttpRequestSpec } from './lib/wrk.js'

const { values } = parseArgs({
  options: {
    server: { type: 'string', default: 'gateway' },
    seconds: { type: 'string', default: '1' },
  },
})
const which = values.server
if (which !== 'gateway' && which !== 'webdis') throw new Error(`--server must be gateway or webdis, not '${which}'`)
const seconds = Number(values.seconds)
if (!(seconds > 0 && seconds <= 10)) throw new Error(`--seconds must be in (0, 10], not '${values.seconds}'`)
if (!haveCommand('perf')) throw new Error('needs perf: apt-get install linux-perf (and root, for tracepoints)')

const READ = 0
const WRITE = 1
const POLLS = new Set([232, 281, 441]) // epoll_wait, epoll_pwait, epoll_pwait2

interface Syscall {
  readonly tid: number
  readonly t: number // microseconds
  readonly enter: boolean
  readonly nr: number
  /** First argument on entry (the fd for read/write), else -1. */
  readonly fd: number
  /** Return value on exit, else 0. */
  readonly ret: number
}

interface Step {
  readonly t: number
  readonly kind: 'wake' | 'read' | 'write'
  readonly fd: number
  readonly bytes: number
}

function parsePerfScript(text: string): Syscall[] {
  const out: Syscall[] = []
  // "  node 1234 [001]  2647.304637: raw_syscalls:sys_enter: NR 0 (15, ...)" / "... sys_exit: NR 0 = 39"
  const re = /^\s*\S+\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)(?: \(([0-9a-f]+))?(?:.*?= (-?\d+))?/
  for (const line of text.split('\n')) {
    const m = re.exec(line)
    if (!m) continue
    out.push({
      tid: Number(m[1]),
      t: Number(m[2]) * 1e6,
      enter: m[3] === 'enter',
      nr: Number(m[4]),
      fd: m[5] === undefined ? -1 : parseInt(m[5], 16),
      ret: m[6] === undefined ? 0 : Number(m[6]),
    })
  }
  return out
}

/** The busiest thread's wake-ups (a poll that returned events), reads (with bytes) and write entries. */
function steps(calls: Syscall[]): Step[] {
  const perThread = new Map<number, number>()
  for (const c of calls) perThread.set(c.tid, (perThread.get(c.tid) ?? 0) + 1)
  const busiest = [...perThread].sort((a, b) => b[1] - a[1])[0]?.[0]
  const out: Step[] = []
  let entry: Syscall | null = null
  for (const c of calls) {
    if (c.tid !== busiest) continue
    if (c.enter) {
      entry = c
      if (c.nr === WRITE) out.push({ t: c.t, kind: 'write', fd: c.fd, bytes: 0 })
      continue
    }
    if (entry === null || entry.nr !== c.nr) continue
    if (POLLS.has(c.nr) && c.ret > 0) out.push({ t: c.t, kind: 'wake', fd: -1, bytes: c.ret })
    if (c.nr === READ && c.ret > 0) out.push({ t: c.t, kind: 'read', fd: entry.fd, bytes: c.ret })
  }
  return out
}

function phases(list: Step[]): Record<'A' | 'R' | 'B' | 'C' | 'request', number[]> {
  // The two sockets read from most; the one with the larger reads carries the HTTP requests.
  const reads = new Map<number, number[]>()
  for (const s of list) if (s.kind === 'read') (reads.get(s.fd) ?? reads.set(s.fd, []).get(s.fd)!).push(s.bytes)
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
  const two = [...reads].sort((a, b) => b[1].length - a[1].length).slice(0, 2)
  if (two.length < 2) throw new Error('fewer than two sockets were read from: no request was traced')
  two.sort((a, b) => mean(b[1]) - mean(a[1]))
  const httpFd = two[0]![0]
  const redisFd = two[1]![0]
  const out = { A: [] as number[], R: [] as number[], B: [] as number[], C: [] as number[], request: [] as number[] }
  let lastWake = 0
  let httpWake = -1
  let redisWrite = -1
  let redisWake = -1
  let httpWrite = -1
  for (const s of list) {
    if (s.kind === 'wake') {
      lastWake = s.t
    } else if (s.kind === 'read' && s.fd === httpFd) {
      if (httpWake > 0 && redisWrite > 0 && redisWake > 0 && httpWrite > 0) {
        out.A.push(redisWrite - httpWake)
        out.R.push(redisWake - redisWrite)
        out.B.push(httpWrite - redisWake)
        out.C.push(lastWake - httpWrite)
        out.request.push(lastWake - httpWake)
      }
      httpWake = lastWake
      redisWrite = redisWake = httpWrite = -1
    } else if (s.kind === 'write' && s.fd === redisFd && redisWrite < 0 && httpWake > 0) {
      redisWrite = s.t
    } else if (s.kind === 'read' && s.fd === redisFd && redisWake < 0 && redisWrite > 0) {
      redisWake = lastWake
    } else if (s.kind === 'write' && s.fd === httpFd && httpWrite < 0 && redisWake > 0) {
      httpWrite = s.t
    }
  }
  return out
}

const redis = await startRedis()
await seed(redis.port)
const get = SCENARIOS.find((s) => s.id === 'get-c1')!
if (get.gateway === 'sdk' || get.webdis === null) throw new Error('unreachable')
let spec: HttpRequestSpec
let pid: number
if (which === 'webdis') {
  const w = await startWebdis(redis.port)
  spec = get.webdis.req(w.url)
  pid = w.proc.pid
} else {
  const g = await startGateway(redis.port)
  spec = get.gateway(g.base)
  pid = g.proc.pid
}
await runWrk(spec, { connections: 1, durationS: 3, serverPid: pid }) // warm-up (JIT)
const load = runWrk(spec, { connections: 1, durationS: Math.ceil(seconds) + 4, serverPid: pid })
await sleep(2000)
const data = path.join(tmpDir(), `phases-${which}.data`)
const rec = spawnSync('perf', ['record', '-q', '-e', 'raw_syscalls:sys_enter', '-e', 'raw_syscalls:sys_exit', '-p', String(pid), '-o', data, '--', 'sleep', String(seconds)], {
  stdio: ['ignore', 'inherit', 'inherit'],
})
if (rec.status !== 0) throw new Error(`perf record failed (${rec.status}): tracepoints need root`)
const traced = await load
const script = spawnSync('perf', ['script', '-i', data], { maxBuffer: 1 << 30 })
const p = phases(steps(parsePerfScript(script.stdout.toString())))
const sorted = (xs: number[]): number[] => xs.slice().sort((a, b) => a - b)
const at = (xs: number[], q: number): string => (sorted(xs)[Math.floor((xs.length - 1) * q)] ?? NaN).toFixed(0).padStart(5)
console.log(`${which}, GET at one connection, ${p.request.length} requests traced (wrk while tracing: p50 ${traced.latencyUs.p50} us)`)
console.log(`${'phase'.padEnd(42)}  p25    p50    p75   (us)`)
const rows: [string, number[]][] = [
  ['A  HTTP wake-up -> Redis write', p.A],
  ['R  Redis write -> Redis wake-up', p.R],
  ['B  Redis wake-up -> HTTP write', p.B],
  ['C  HTTP write -> next HTTP wake-up', p.C],
  ['request (A + R + B + C)', p.request],
]
for (const [name, xs] of rows) console.log(`${name.padEnd(42)}${at(xs, 0.25)}  ${at(xs, 0.5)}  ${at(xs, 0.75)}`)
process.exit(0)
