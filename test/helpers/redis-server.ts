// Real redis-server processes for tests: each on its own free port and temp dir, never
// the system Redis on :6379. Start, kill, restart, pause and stop them to drive failover,
// lag and outage scenarios, and read INFO / commandstats to assert what reached Redis.
//
// Servers never outlive the test process: each is registered with the process guard
// (process-guard.ts) while it runs.

import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants as fsConstants, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Redis, type RedisOptions } from 'ioredis'
import { freePort } from './ports.js'
import { guardChild, unrefStream } from './process-guard.js'
import { waitFor } from './wait.js'

export interface RedisAddress {
  readonly host: string
  readonly port: number
  /** Sent as `masterauth` when a replica points here. */
  readonly password?: string
}

export interface StartRedisOptions {
  /** Default: a free port from freePort(); on EADDRINUSE another one is tried. */
  port?: number
  /** Start as a replica of this server (`--replicaof host port`, plus `--masterauth` when it has a password). */
  replicaOf?: RedisServer | RedisAddress
  /** `--appendonly yes` with `--appendfsync always`, so data survives kill('SIGKILL'). Default false. */
  appendOnly?: boolean
  /** Working dir (RDB/AOF files). Default: a new temp dir, removed on stop() unless keepDir. A dir given here is never removed. */
  dir?: string
  /** Keep the temp dir on stop(). Default false. */
  keepDir?: boolean
  /** Extra redis-server arguments, after the defaults (a later `--name value` wins). */
  args?: string[]
  /** `--requirepass`; clients from client() and the helper's own commands authenticate with it. */
  password?: string
  /** `--bind`, space-separated for several addresses. Default '127.0.0.1'. */
  bind?: string
  /** Give up waiting for PONG after this long. Default 15_000 ms. */
  startTimeoutMs?: number
  /** Path or name of the binary. Default 'redis-server' looked up on PATH. */
  binary?: string
}

export interface StopOptions {
  /** Wait this long after SIGTERM, then SIGKILL. Default 5_000 ms for stop(), 15_000 ms for restart(). */
  timeoutMs?: number
}

export const REDIS_SERVER_DEFAULTS = {
  bind: '127.0.0.1',
  binary: 'redis-server',
  startTimeoutMs: 15_000,
  /** stop() escalates to SIGKILL after this; short, because nothing is kept after stop(). */
  stopTimeoutMs: 5_000,
  /** restart() escalates later, so Redis' own shutdown (up to shutdown-timeout = 10s) can finish. */
  restartTimeoutMs: 15_000,
  /** kill() gives up (and throws) if the process has not exited by then. */
  killTimeoutMs: 15_000,
  /** One-shot helper commands (PING, INFO, CONFIG) time out after this. */
  commandTimeoutMs: 5_000,
  /** Lines of redis-server stdout/stderr kept for error messages. */
  logLines: 200,
  /** Attempts with a fresh port when the chosen one turns out to be taken. */
  portAttempts: 3,
} as const

/** redis-server failed to start or did not answer in time; `logs` holds its recent output. */
export class RedisStartError extends Error {
  readonly code = 'REDIS_START_FAILED'
  constructor(
    message: string,
    readonly logs: string,
    readonly addressInUse: boolean,
  ) {
    super(`${message}\n--- redis-server output (last lines) ---\n${logs || '(none)'}\n---`)
    this.name = 'RedisStartError'
  }
}

// ---------------------------------------------------------------------------------------
// Binary lookup.

const binaryCache = new Map<string, string>()

function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Absolute path of the redis-server binary; throws a clear error when it is not installed. */
export function findRedisServer(binary: string = REDIS_SERVER_DEFAULTS.binary): string {
  const cached = binaryCache.get(binary)
  if (cached) return cached
  const candidates = binary.includes('/')
    ? [path.resolve(binary)]
    : (process.env['PATH'] ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, binary))
  const found = candidates.find(isExecutable)
  if (!found) {
    throw new Error(
      `${binary} not found${binary.includes('/') ? '' : ' on PATH'}: tests need a real Redis. ` +
        'Install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis) or pass { binary }.',
    )
  }
  binaryCache.set(binary, found)
  return found
}

// ---------------------------------------------------------------------------------------
// A minimal one-shot RESP client: no reconnects, no ready check, no CLIENT SETINFO,
// so the helper adds as little as possible to what the server counts.

type Resp = string | number | null | Error | Resp[]

function encodeCommand(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`
}

function parseResp(buf: Buffer, pos: number): { value: Resp; next: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', pos)
  if (lineEnd < 0) return undefined
  const type = buf.toString('latin1', pos, pos + 1)
  const line = buf.toString('utf8', pos + 1, lineEnd)
  const after = lineEnd + 2
  switch (type) {
    case '+':
      return { value: line, next: after }
    case '-':
      return { value: new Error(line), next: after }
    case ':':
      return { value: Number(line), next: after }
    case '$': {
      const len = Number(line)
      if (len < 0) return { value: null, next: after }
      if (buf.length < after + len + 2) return undefined
      return { value: buf.toString('utf8', after, after + len), next: after + len + 2 }
    }
    case '*': {
      const count = Number(line)
      if (count < 0) return { value: null, next: after }
      const items: Resp[] = []
      let next = after
      for (let i = 0; i < count; i++) {
        const item = parseResp(buf, next)
        if (!item) return undefined
        items.push(item.value)
        next = item.next
      }
      return { value: items, next }
    }
    default:
      throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`)
  }
}

/** Sends the commands on one fresh connection and returns one reply per command (errors as Error values). */
function rawCommands(host: string, port: number, commands: readonly (readonly string[])[], timeoutMs: number): Promise<Resp[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    let buf = Buffer.alloc(0)
    let pos = 0
    const replies: Resp[] = []
    const finish = (error: Error | undefined): void => {
      clearTimeout(timer)
      socket.destroy()
      if (error) reject(error)
      else resolve(replies)
    }
    const timer = setTimeout(
      () => finish(new Error(`no reply from ${host}:${port} within ${timeoutMs}ms`)),
      timeoutMs,
    )
    socket.on('connect', () => socket.write(commands.map(encodeCommand).join('')))
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      try {
        for (;;) {
          const parsed = parseResp(buf, pos)
          if (!parsed) break
          replies.push(parsed.value)
          pos = parsed.next
          if (replies.length === commands.length) return finish(undefined)
        }
      } catch (error) {
        finish(error as Error)
      }
    })
    socket.on('error', (error) => finish(error))
    socket.on('close', () => finish(new Error(`connection to ${host}:${port} closed before all replies arrived`)))
  })
}

// ---------------------------------------------------------------------------------------
// Output ring buffer.

class LogRing {
  private readonly lines: string[] = []
  private readonly partial = new Map<string, string>()
  constructor(private readonly capacity: number) {}

  push(stream: string, chunk: Buffer): void {
    const text = (this.partial.get(stream) ?? '') + chunk.toString('utf8')
    const parts = text.split('\n')
    this.partial.set(stream, parts.pop() ?? '')
    for (const line of parts) this.add(stream, line)
  }

  private add(stream: string, line: string): void {
    this.lines.push(stream === 'stderr' ? `[stderr] ${line}` : line)
    if (this.lines.length > this.capacity) this.lines.splice(0, this.lines.length - this.capacity)
  }

  text(): string {
    const tail = [...this.partial].filter(([, rest]) => rest).map(([stream, rest]) => (stream === 'stderr' ? `[stderr] ${rest}` : rest))
    return [...this.lines, ...tail].join('\n')
  }
}

// ---------------------------------------------------------------------------------------

/** `INFO` text to a flat field map (`role` -> `master`); section headers and blank lines are skipped. */
export function parseInfo(text: string): Record<string, string> {
  const fields: Record<string, string> = {}
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const colon = line.indexOf(':')
    if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1)
  }
  return fields
}

function connectHost(bind: string): string {
  const first = bind.trim().split(/\s+/)[0]?.replace(/^-/, '') ?? '127.0.0.1'
  if (first === '0.0.0.0' || first === '*' || first === '') return '127.0.0.1'
  if (first === '::' || first === '::*') return '::1'
  return first
}

interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface Running {
  readonly child: ChildProcess
  readonly exited: Promise<Exit>
  /** Resolves when stdout and stderr are drained too (may lag exit if a forked child holds them). */
  readonly closed: Promise<void>
  done: boolean
}

interface ServerConfig {
  readonly binary: string
  readonly host: string
  readonly port: number
  readonly dir: string
  readonly ownsDir: boolean
  readonly keepDir: boolean
  readonly argv: readonly string[]
  readonly password: string | undefined
  readonly replicaOf: RedisAddress | undefined
  readonly startTimeoutMs: number
}

/** One redis-server child process. Create with startRedis() / RedisServer.start(). */
export class RedisServer implements RedisAddress {
  readonly host: string
  readonly port: number
  /** Working dir with RDB/AOF files. */
  readonly dir: string
  readonly password: string | undefined
  /** The primary this server replicates from, if started with replicaOf. */
  readonly replicaOf: RedisAddress | undefined
  /** The full redis-server argument list, reused by restart(). */
  readonly argv: readonly string[]

  private readonly config: ServerConfig
  private readonly logRing = new LogRing(REDIS_SERVER_DEFAULTS.logLines)
  private readonly clients = new Set<Redis>()
  private running: Running | undefined
  private paused = false
  private stopped = false

  private constructor(config: ServerConfig) {
    this.config = config
    this.host = config.host
    this.port = config.port
    this.dir = config.dir
    this.password = config.password
    this.replicaOf = config.replicaOf
    this.argv = config.argv
  }

  /** Spawns redis-server and resolves once it answers PING. */
  static async start(opts: StartRedisOptions = {}): Promise<RedisServer> {
    const binary = findRedisServer(opts.binary)
    const bind = opts.bind ?? REDIS_SERVER_DEFAULTS.bind
    const host = connectHost(bind)
    const ownsDir = opts.dir === undefined
    const dir = opts.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-test-')))
    const replicaOf: RedisAddress | undefined = opts.replicaOf
      ? { host: opts.replicaOf.host, port: opts.replicaOf.port, ...(opts.replicaOf.password ? { password: opts.replicaOf.password } : {}) }
      : undefined
    const attempts = opts.port === undefined ? REDIS_SERVER_DEFAULTS.portAttempts : 1

    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? (await freePort(host))
      const argv = [
        '--port', String(port),
        '--bind', ...bind.trim().split(/\s+/),
        '--save', '',
        '--appendonly', opts.appendOnly ? 'yes' : 'no',
        ...(opts.appendOnly ? ['--appendfsync', 'always'] : []),
        '--dir', dir,
        '--protected-mode', 'no',
        '--daemonize', 'no',
        '--loglevel', 'warning',
        // Redis 7 defaults to diskless full sync that first waits 5s for more replicas.
        '--repl-diskless-sync-delay', '0',
        ...(opts.password !== undefined ? ['--requirepass', opts.password] : []),
        ...(replicaOf ? ['--replicaof', replicaOf.host, String(replicaOf.port)] : []),
        ...(replicaOf?.password !== undefined ? ['--masterauth', replicaOf.password] : []),
        ...(opts.args ?? []),
      ]
      const server = new RedisServer({
        binary,
        host,
        port,
        dir,
        ownsDir,
        keepDir: opts.keepDir ?? false,
        argv,
        password: opts.password,
        replicaOf,
        startTimeoutMs: opts.startTimeoutMs ?? REDIS_SERVER_DEFAULTS.startTimeoutMs,
      })
      try {
        await server.launch()
        return server
      } catch (error) {
        const retry = error instanceof RedisStartError && error.addressInUse && attempt < attempts
        if (!retry) {
          if (ownsDir && !opts.keepDir) await rm(dir, { recursive: true, force: true })
          throw error
        }
      }
    }
  }

  /** `redis://[:password@]host:port` */
  get url(): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host
    const auth = this.password !== undefined ? `:${encodeURIComponent(this.password)}@` : ''
    return `redis://${auth}${host}:${this.port}`
  }

  /** Process id while running, else undefined. */
  get pid(): number | undefined {
    return this.running && !this.running.done ? this.running.child.pid : undefined
  }

  /** True from start until the process exits (paused counts as running). */
  get isRunning(): boolean {
    return this.pid !== undefined
  }

  get isPaused(): boolean {
    return this.paused
  }

  /** Recent redis-server stdout/stderr. */
  logs(): string {
    return this.logRing.text()
  }

  /**
   * A new ioredis client for assertions, closed by stop(). It reconnects quickly after
   * kill()/restart(), and its connection 'error' events are swallowed (add your own listener
   * to see them). Note: ioredis sends INFO (ready check) on every connect.
   */
  client(options: RedisOptions = {}): Redis {
    this.assertNotStopped('client')
    const client = new Redis({
      host: this.host,
      port: this.port,
      ...(this.password !== undefined ? { password: this.password } : {}),
      retryStrategy: (times) => Math.min(times * 20, 200),
      ...options,
    })
    client.on('error', () => {})
    client.once('end', () => this.clients.delete(client))
    this.clients.add(client)
    return client
  }

  /** Raw `INFO [section]` text. */
  async info(section?: string): Promise<string> {
    const reply = await this.command(section ? ['INFO', section] : ['INFO'])
    if (typeof reply !== 'string') throw new Error(`unexpected INFO reply: ${String(reply)}`)
    return reply
  }

  /**
   * Connected clients from `CLIENT LIST` (this helper's own connection left out), as field maps
   * (`user`, `flags`, `sub`, `psub`, `cmd`...).
   */
  async clientList(): Promise<Record<string, string>[]> {
    const reply = await this.command(['CLIENT', 'LIST'])
    if (typeof reply !== 'string') throw new Error(`unexpected CLIENT LIST reply: ${String(reply)}`)
    return reply
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => Object.fromEntries(l.trim().split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])))
      .filter((c) => c['cmd'] !== 'client|list')
  }

  /**
   * The gateway's connections to this server, by kind: its own user's (`default` unless a test
   * configured another; the test's own clients count here too), the token-level users' it
   * provisions (`redis-gateway-*`) by user, and subscribers (in pub/sub mode).
   */
  async gatewayConnections(): Promise<{ own: number; levels: Record<string, number>; subscribers: number }> {
    const out = { own: 0, levels: {} as Record<string, number>, subscribers: 0 }
    for (const c of await this.clientList()) {
      const user = c['user'] ?? 'default'
      if ((c['flags'] ?? '').includes('P')) out.subscribers++
      else if (user.startsWith('redis-gateway-')) out.levels[user] = (out.levels[user] ?? 0) + 1
      else out.own++
    }
    return out
  }

  /**
   * Calls per lower-case command name from `INFO commandstats`, e.g. `{ get: 3 }`; subcommands
   * appear as `config|get`. Stats are reset right after startup, but the helper's own commands
   * show up: `config|resetstat` (1 after start/restart/resetStats), and one `info` per earlier
   * info()/commandStats() call. Assert on the commands you care about, not the whole object.
   */
  async commandStats(): Promise<Record<string, number>> {
    const stats: Record<string, number> = {}
    for (const line of (await this.info('commandstats')).split('\n')) {
      const match = /^cmdstat_([^:]+):.*?\bcalls=(\d+)/.exec(line.trim())
      if (match?.[1] && match[2]) stats[match[1].toLowerCase()] = Number(match[2])
    }
    return stats
  }

  /** `CONFIG RESETSTAT`: zero commandstats and other counters. */
  async resetStats(): Promise<void> {
    await this.command(['CONFIG', 'RESETSTAT'])
  }

  /** Resolves once this replica reports `master_link_status:up` (initial sync finished). */
  async waitForSync(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (!this.replicaOf) throw new Error(`${this.describe()} is not a replica`)
    const primary = `${this.replicaOf.host}:${this.replicaOf.port}`
    await waitFor(
      async () => {
        const fields = parseInfo(await this.info('replication'))
        const link = fields['master_link_status']
        const syncing = fields['master_sync_in_progress']
        if (link !== 'up' || syncing !== '0') throw new Error(`master_link_status:${link} master_sync_in_progress:${syncing}`)
      },
      { timeoutMs: opts.timeoutMs ?? 15_000, message: `${this.describe()} to sync with ${primary}` },
    )
  }

  /** Sends `signal` (default SIGKILL) and resolves when the process has exited. Keeps dir and clients. */
  async kill(signal: NodeJS.Signals = 'SIGKILL', opts: { timeoutMs?: number } = {}): Promise<void> {
    const running = this.running
    if (!running || running.done) return
    running.child.kill(signal)
    // A stopped process only acts on signals other than SIGKILL after SIGCONT.
    if (this.paused && signal !== 'SIGKILL' && signal !== 'SIGSTOP') running.child.kill('SIGCONT')
    const timeoutMs = opts.timeoutMs ?? REDIS_SERVER_DEFAULTS.killTimeoutMs
    const exited = await Promise.race([running.exited.then(() => true), delay(timeoutMs).then(() => false)])
    if (!exited) throw new Error(`${this.describe()} did not exit within ${timeoutMs}ms after ${signal}\n${this.logs()}`)
  }

  /** Graceful stop (SIGTERM; SIGKILL after opts.timeoutMs) and start again on the same port, dir and args. */
  async restart(opts: StopOptions = {}): Promise<void> {
    this.assertNotStopped('restart')
    await this.terminate(opts.timeoutMs ?? REDIS_SERVER_DEFAULTS.restartTimeoutMs)
    await this.launch()
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing until resume(). */
  pause(): void {
    const running = this.requireRunning('pause')
    running.child.kill('SIGSTOP')
    this.paused = true
  }

  /** SIGCONT after pause(). */
  resume(): void {
    const running = this.requireRunning('resume')
    running.child.kill('SIGCONT')
    this.paused = false
  }

  /**
   * Closes clients, stops the process (SIGTERM, then SIGKILL after opts.timeoutMs, 5s by
   * default: on SIGTERM a Redis 7 primary waits up to shutdown-timeout = 10s for lagging, e.g.
   * paused, replicas), removes the temp dir unless keepDir. Safe to call twice.
   */
  async stop(opts: StopOptions = {}): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const client of this.clients) client.disconnect()
    this.clients.clear()
    await this.terminate(opts.timeoutMs ?? REDIS_SERVER_DEFAULTS.stopTimeoutMs)
    if (this.config.ownsDir && !this.config.keepDir) await rm(this.dir, { recursive: true, force: true })
  }

  /** Only for the process 'exit' hook: synchronous SIGKILL and temp-dir removal. */
  killNowSync(): void {
    const pid = this.pid
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
    if (this.config.ownsDir && !this.config.keepDir) {
      try {
        rmSync(this.dir, { recursive: true, force: true })
      } catch {
        // Best effort while exiting.
      }
    }
  }

  private describe(): string {
    return `redis-server ${this.host}:${this.port}${this.pid !== undefined ? ` (pid ${this.pid})` : ''}`
  }

  private assertNotStopped(what: string): void {
    if (this.stopped) throw new Error(`${what}: ${this.describe()} was stopped`)
  }

  private requireRunning(what: string): Running {
    const running = this.running
    if (!running || running.done) throw new Error(`${what}: ${this.describe()} is not running`)
    return running
  }

  private async command(args: readonly string[]): Promise<Resp> {
    const auth = this.password !== undefined ? [['AUTH', this.password]] : []
    const replies = await rawCommands(this.host, this.port, [...auth, args], REDIS_SERVER_DEFAULTS.commandTimeoutMs)
    const failed = replies.find((r) => r instanceof Error)
    if (failed instanceof Error) throw new Error(`${args.join(' ')} on ${this.describe()}: ${failed.message}`)
    return replies[replies.length - 1] ?? null
  }

  private async terminate(timeoutMs: number): Promise<void> {
    const running = this.running
    if (!running || running.done) return
    running.child.kill('SIGTERM')
    if (this.paused) running.child.kill('SIGCONT')
    const exited = await Promise.race([running.exited.then(() => true), delay(timeoutMs).then(() => false)])
    if (!exited) await this.kill('SIGKILL')
  }

  private spawnChild(): Running {
    const child = spawn(this.config.binary, this.config.argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout?.on('data', (chunk: Buffer) => this.logRing.push('stdout', chunk))
    child.stderr?.on('data', (chunk: Buffer) => this.logRing.push('stderr', chunk))
    // Leaked servers must not keep the test process alive; the exit hook kills them.
    child.unref()
    unrefStream(child.stdout)
    unrefStream(child.stderr)

    // Released once the process has exited; set below once the spawn gave a pid.
    let release: (() => void) | undefined
    const exited = new Promise<Exit>((resolve) => {
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        running.done = true
        this.paused = false
        release?.()
        resolve({ code, signal })
      }
      child.once('exit', onExit)
      child.once('error', (error) => {
        // 'error' without a pid means spawn itself failed; otherwise 'exit' follows or already came.
        if (child.pid === undefined) {
          this.logRing.push('stderr', Buffer.from(`spawn failed: ${error.message}\n`))
          onExit(null, null)
        }
      })
    })
    const streamClosed = (stream: NodeJS.ReadableStream | null): Promise<void> =>
      stream ? new Promise((resolve) => stream.once('close', () => resolve())) : Promise.resolve()
    const closed = Promise.all([streamClosed(child.stdout), streamClosed(child.stderr)]).then(() => undefined)

    const running: Running = { child, exited, closed, done: false }
    if (child.pid !== undefined) release = guardChild(this, child.pid)
    return running
  }

  /** Spawns the process and waits for PONG; on failure the process is killed and a RedisStartError thrown. */
  private async launch(): Promise<void> {
    const running = this.spawnChild()
    this.running = running
    const deadline = Date.now() + this.config.startTimeoutMs
    let lastProblem = 'no attempt yet'

    const fail = async (reason: string): Promise<never> => {
      if (!running.done) {
        running.child.kill('SIGKILL')
        await running.exited
      }
      // Let the pipes drain so the log holds the reason (e.g. "Address already in use").
      await Promise.race([running.closed, delay(500)])
      const logs = this.logs()
      throw new RedisStartError(
        `redis-server on ${this.host}:${this.port} (dir ${this.dir}) failed to start: ${reason}`,
        logs,
        /address already in use/i.test(logs),
      )
    }

    while (!running.done) {
      if (Date.now() >= deadline) return fail(`no PONG within ${this.config.startTimeoutMs}ms (last: ${lastProblem})`)
      try {
        const auth = this.password !== undefined ? [['AUTH', this.password]] : []
        const replies = await Promise.race([
          rawCommands(this.host, this.port, [...auth, ['PING'], ['INFO', 'server']], 1_000),
          running.exited.then(() => undefined),
        ])
        if (replies === undefined) break
        // LOADING while the AOF/RDB is read: keep polling.
        const pong = replies[auth.length]
        const info = replies[auth.length + 1]
        if (pong === 'PONG' && typeof info === 'string') {
          // Another process (another test worker's server) may hold the port while ours fails
          // with EADDRINUSE; only our own pid counts as ready.
          const answeredBy = parseInfo(info)['process_id']
          if (answeredBy === String(running.child.pid)) {
            // Readiness probes should not show up in commandStats(). Best effort: CONFIG may be renamed away.
            await rawCommands(this.host, this.port, [...auth, ['CONFIG', 'RESETSTAT']], 1_000).catch(() => {})
            return
          }
          lastProblem = `port answered by another redis-server (pid ${answeredBy ?? '?'})`
        } else {
          lastProblem = pong instanceof Error ? pong.message : `unexpected reply ${String(pong)}`
        }
      } catch (error) {
        lastProblem = (error as Error).message
      }
      await Promise.race([delay(25), running.exited])
    }
    const exit = await running.exited
    return fail(`process exited (code ${exit.code}, signal ${exit.signal}) before answering PING`)
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Starts a redis-server on a free port (see StartRedisOptions) and waits until it answers PING. */
export function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  return RedisServer.start(opts)
}
