// The processes a benchmark runs: redis-server, webdis, the hello-world server and the gateway,
// each on a free loopback port and pinned to a core with taskset. Everything started here is
// stopped on exit (also on Ctrl-C), and nothing touches the system Redis on :6379.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../test/helpers/ports.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BENCH_DIR = path.join(ROOT, 'bench')
export const TOKEN = 'bench-token'
export const INSTANCE = 'bench'

/**
 * Core placement (2-core machine): the server under test (gateway, webdis, hello-world) alone on
 * SERVER_CORE; the load generator and redis-server share CLIENT_CORE. The same placement for every
 * server, so the comparison is fair; on machines with more cores the same two cores are used.
 */
export const SERVER_CORE = Number(process.env.BENCH_SERVER_CORE ?? 1)
export const CLIENT_CORE = Number(process.env.BENCH_CLIENT_CORE ?? 0)

const children = new Set<ChildProcess>()
let tmpRoot: string | null = null

function cleanup(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
  children.clear()
  if (tmpRoot !== null) rmSync(tmpRoot, { recursive: true, force: true })
  tmpRoot = null
}
process.on('exit', cleanup)
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanup()
    process.exit(130)
  })
}

export function tmpDir(): string {
  tmpRoot ??= mkdtempSync(path.join(os.tmpdir(), 'redis-gateway-bench-'))
  return tmpRoot
}

export function haveCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

/**
 * argv that runs `cmd` pinned to `core` (when taskset exists) with the open-files limit raised as
 * far as allowed (10,000 client connections need more than the usual 1024).
 */
export function pinned(core: number | null, cmd: string[]): string[] {
  const raise = ['bash', '-c', 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'bench']
  // BENCH_NICE=-10 (root): on a shared machine, every benchmark process (servers, load generators,
  // Redis) gets the same higher priority over unrelated work, so background load skews less.
  const nice = process.env.BENCH_NICE ? ['nice', '-n', process.env.BENCH_NICE] : []
  if (core === null || !haveCommand('taskset')) return [...nice, ...raise, ...cmd]
  return [...nice, 'taskset', '-c', String(core), ...raise, ...cmd]
}

export interface Proc {
  readonly name: string
  readonly child: ChildProcess
  readonly pid: number
  /** Last lines of its output, for error messages. */
  log(): string
  stop(): Promise<void>
}

export function start(name: string, argv: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Proc {
  const [cmd, ...args] = argv
  const child = spawn(cmd!, args, {
    cwd: opts.cwd ?? ROOT,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const lines: string[] = []
  const keep = (b: Buffer): void => {
    for (const l of b.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(l)
    if (lines.length > 100) lines.splice(0, lines.length - 100)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  child.on('exit', () => children.delete(child))
  return {
    name,
    child,
    get pid(): number {
      return child.pid ?? -1
    },
    log: () => lines.join('\n'),
    stop: () => stopChild(child),
  }
}

/** SIGTERM, SIGKILL after 5 s; resolves once the child has exited. */
export function stopChild(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const t = setTimeout(() => child.kill('SIGKILL'), 5000)
    child.once('exit', () => {
      clearTimeout(t)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

/** Waits until something accepts connections on the port. (taskset and the bash wrapper exec, so
 *  the child's pid is the server's own.) */
export async function waitForPort(p: Proc, port: number, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    if (p.child.exitCode !== null) throw new Error(`${p.name} exited (${p.child.exitCode}) before listening:\n${p.log()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > until) throw new Error(`${p.name} did not listen on ${port} within ${timeoutMs} ms:\n${p.log()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export interface Server {
  readonly proc: Proc
  readonly port: number
  readonly url: string
}

export async function startRedis(): Promise<Server> {
  const port = await freePort()
  const dir = path.join(tmpDir(), `redis-${port}`)
  spawnSync('mkdir', ['-p', dir])
  const proc = start(
    'redis-server',
    pinned(CLIENT_CORE, [
      'redis-server',
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
      '--maxclients', '20000',
      '--loglevel', 'warning',
    ]),
  )
  await waitForPort(proc, port)
  return { proc, port, url: `redis://127.0.0.1:${port}` }
}

export async function startWebdis(redisPort: number): Promise<Server> {
  const port = await freePort()
  const conf = path.join(tmpDir(), `webdis-${port}.json`)
  writeFileSync(
    conf,
    JSON.stringify({
      redis_host: '127.0.0.1',
      redis_port: redisPort,
      redis_auth: null,
      http_host: '127.0.0.1',
      http_port: port,
      threads: 1,
      daemonize: false,
      database: 0,
      acl: [{ disabled: ['DEBUG'] }],
      verbosity: 0,
      logfile: path.join(tmpDir(), `webdis-${port}.log`),
    }),
  )
  const proc = start('webdis', pinned(SERVER_CORE, ['webdis', conf]))
  await waitForPort(proc, port)
  return { proc, port, url: `http://127.0.0.1:${port}` }
}

export async function startHello(): Promise<Server> {
  const port = await freePort()
  const proc = start('hello-world', pinned(SERVER_CORE, [process.execPath, path.join(BENCH_DIR, 'hello-server.mjs'), String(port)]))
  await waitForPort(proc, port)
  return { proc, port, url: `http://127.0.0.1:${port}` }
}

/**
 * The floor of a Node HTTP gateway (bench/raw-server.mjs): a raw `net` server answering a fixed reply
 * (`hello`), or forwarding each request as one GET of `key` to the Redis at `redisPort` (`proxy`).
 * It runs with the gateway's shipped Node options, and `nodeArgs` after them.
 */
export async function startRaw(
  mode: 'hello' | 'proxy',
  opts: { redisPort?: number; key?: string; nodeArgs?: string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<Server> {
  const port = await freePort()
  const args = [process.execPath, ...SHIPPED_NODE_ARGS, ...(opts.nodeArgs ?? []), path.join(BENCH_DIR, 'raw-server.mjs'), String(port), mode]
  if (mode === 'proxy') args.push(String(opts.redisPort), opts.key ?? '')
  const proc = start(`raw-${mode}`, pinned(SERVER_CORE, args), { env: { ...process.env, ...opts.env } })
  await waitForPort(proc, port)
  return { proc, port, url: `http://127.0.0.1:${port}` }
}

export interface GatewayServer extends Server {
  readonly opsPort: number
  /** Base URL of the bench instance (`url` for the SDK). */
  readonly base: string
}

/**
 * Node options the gateway ships with (package.json "start", the Dockerfile's NODE_OPTIONS and the
 * chart's nodeOptions): a larger young generation, so requests in flight under load die young
 * instead of being promoted. (Pretenuring is off too, but the gateway sets that itself:
 * src/core/v8-tuning.ts.)
 */
export const SHIPPED_NODE_ARGS = ['--max-semi-space-size=64']

/**
 * dist/ must be built (`npm run build`). Env and Node options are the shipped ones: no OTEL_* variables.
 * `wrap`: a command the gateway runs under (e.g. valgrind and its options); `config`: more YAML lines;
 * `timeoutMs`: how long it may take to listen and get ready; `instances`: the static instances
 * (default: the one `bench` instance on the redis-server at `redisPort`).
 */
export async function startGateway(
  redisPort: number,
  opts: {
    nodeArgs?: string[]
    env?: NodeJS.ProcessEnv
    core?: number | null
    main?: string
    wrap?: string[]
    config?: string[]
    timeoutMs?: number
    instances?: readonly { name: string; endpoint: string }[]
  } = {},
): Promise<GatewayServer> {
  const port = await freePort()
  const opsPort = await freePort()
  const conf = path.join(tmpDir(), `gateway-${port}.yaml`)
  writeFileSync(
    conf,
    [
      `listen: { data: "127.0.0.1:${port}", ops: "127.0.0.1:${opsPort}" }`,
      'discovery:',
      '  static:',
      '    instances:',
      ...(opts.instances === undefined
        ? [`      - name: ${INSTANCE}`, `        endpoints: ["redis://127.0.0.1:${redisPort}"]`]
        : opts.instances.map((i) => `      - { name: ${i.name}, endpoints: ["${i.endpoint}"] }`)),
      'auth:',
      '  tokens:',
      `    - { name: bench, token: "${TOKEN}", access: write, targets: ["*"] }`,
      'log: { level: warn }',
      'metrics: { enabled: true }',
      ...(opts.config ?? []),
      '',
    ].join('\n'),
  )
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env, GATEWAY_CONFIG: conf, NODE_ENV: 'production' }
  // "Tracing as shipped": the gateway traces only when an OTLP endpoint/exporter is configured.
  if (opts.env?.OTEL_EXPORTER_OTLP_ENDPOINT === undefined) delete env.OTEL_EXPORTER_OTLP_ENDPOINT
  if (opts.env?.OTEL_TRACES_EXPORTER === undefined) delete env.OTEL_TRACES_EXPORTER
  // Metrics on, log level from the file: no inherited override.
  delete env.GATEWAY_METRICS_ENABLED
  delete env.GATEWAY_LOG_LEVEL
  // BENCH_GATEWAY_MAIN: another build of the gateway (A/B comparisons of a change).
  const main = opts.main ?? process.env.BENCH_GATEWAY_MAIN ?? path.join(ROOT, 'dist/src/main.js')
  const argv = [...(opts.wrap ?? []), process.execPath, ...SHIPPED_NODE_ARGS, ...(opts.nodeArgs ?? []), main]
  const proc = start('gateway', pinned(opts.core === undefined ? SERVER_CORE : opts.core, argv), { env })
  await waitForPort(proc, port, opts.timeoutMs)
  await waitForReady(opsPort, proc, opts.timeoutMs)
  return { proc, port, opsPort, url: `http://127.0.0.1:${port}`, base: `http://127.0.0.1:${port}/v1/instances/${INSTANCE}` }
}

async function waitForReady(opsPort: number, proc: Proc, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${opsPort}/readyz`)
      if (r.ok) {
        // Give the first health check a moment so the endpoint's role is known.
        await new Promise((res) => setTimeout(res, 300))
        return
      }
    } catch {
      // not yet
    }
    if (Date.now() > until) throw new Error(`gateway not ready:\n${proc.log()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Resident set size of a process in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : NaN
}

/** Peak resident set size of a process in KiB (VmHWM; since start or the last resetPeakRss). */
export function vmHwmKiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : NaN
}

/** Resets VmHWM to the current RSS (Linux >= 4.0, a process of ours); false when it cannot. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** CPU time (user + system) of a process in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (100 Hz)
}

/** Busy and total jiffies per core, from /proc/stat. */
export function coreTimes(): { busy: number; total: number }[] {
  const out: { busy: number; total: number }[] = []
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line)
    if (!m) continue
    const v = m[2]!.trim().split(/\s+/).map(Number)
    const idle = (v[3] ?? 0) + (v[4] ?? 0)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
    out[Number(m[1])] = { busy: total - idle, total }
  }
  return out
}

/** Per-core busy share (0..100) between two coreTimes() samples. */
export function coreBusy(a: ReturnType<typeof coreTimes>, b: ReturnType<typeof coreTimes>): number[] {
  return b.map((x, i) => {
    const dt = x.total - (a[i]?.total ?? 0)
    return dt > 0 ? (100 * (x.busy - (a[i]?.busy ?? 0))) / dt : 0
  })
}

export function loadAverage(): [number, number, number] {
  const [a, b, c] = os.loadavg()
  return [a!, b!, c!]
}

export function machine(): Record<string, unknown> {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    node: process.version,
    loadAverage: loadAverage(),
    serverCore: SERVER_CORE,
    clientCore: CLIENT_CORE,
  }
}

export function versionOf(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  return ((r.stdout || r.stderr || '').split('\n')[0] ?? '').trim()
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/**
 * Reads a child's stdout line by line (the bench helpers' protocol: LISTENING, READY, STATS...):
 * each call resolves with the next line, or rejects when the child exits first.
 */
export function lineReader(child: ChildProcess, what: string): () => Promise<string> {
  const lines: string[] = []
  const waiters: ((l: string) => void)[] = []
  let buf = ''
  child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString('utf8')
    let i: number
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i)
      buf = buf.slice(i + 1)
      const w = waiters.shift()
      if (w) w(l)
      else lines.push(l)
    }
  })
  return () =>
    new Promise((resolve, reject) => {
      const l = lines.shift()
      if (l !== undefined) return resolve(l)
      waiters.push(resolve)
      child.once('exit', (code) => reject(new Error(`${what} exited (${code})`)))
    })
}
