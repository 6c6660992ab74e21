// Child processes of the Kubernetes test helpers (etcd, kube-apiserver): spawn, keep recent
// output for error messages, stop with SIGTERM then SIGKILL.
//
// Leaks are prevented twice, as in test/helpers/redis-server.ts: a process 'exit' hook
// SIGKILLs children still running, and a small watchdog shell (one per test process) SIGKILLs
// them when this process dies any other way (SIGKILL, crash), because it sees EOF on its stdin.

import { spawn, type ChildProcess } from 'node:child_process'

interface LeakGuard {
  readonly live: Set<ManagedProcess>
  readonly exitHooks: Set<() => void>
  exitHookInstalled: boolean
  watchdog: ChildProcess | undefined
}
// On globalThis so a module evaluated twice in one process (vitest isolation) shares one guard.
const guardKey = Symbol.for('redis-gateway.test.kubernetes.leak-guard')
const registry = globalThis as unknown as Record<symbol, LeakGuard | undefined>
const guard = (registry[guardKey] ??= { live: new Set(), exitHooks: new Set(), exitHookInstalled: false, watchdog: undefined })

const WATCHDOG_SCRIPT = `trap '' INT TERM HUP
pids=' '
while IFS= read -r line; do
  case "$line" in
    +*) pids="$pids\${line#+} " ;;
    -*) keep=' '; for p in $pids; do [ "$p" = "\${line#-}" ] || keep="$keep$p "; done; pids=$keep ;;
  esac
done
for p in $pids; do kill -9 "$p" 2>/dev/null; done
`

function unrefStream(stream: unknown): void {
  if (stream && typeof (stream as { unref?: unknown }).unref === 'function') (stream as { unref(): void }).unref()
}

function tellWatchdog(line: string): void {
  let watchdog = guard.watchdog
  if (!watchdog) {
    watchdog = guard.watchdog = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'], detached: true })
    watchdog.on('error', () => {})
    watchdog.stdin?.on('error', () => {})
    watchdog.unref()
    unrefStream(watchdog.stdin)
  }
  watchdog.stdin?.write(`${line}\n`)
}

function installExitHook(): void {
  if (guard.exitHookInstalled) return
  guard.exitHookInstalled = true
  process.on('exit', () => {
    for (const proc of guard.live) proc.killNowSync()
    for (const hook of guard.exitHooks) {
      try {
        hook()
      } catch {
        // Best effort while exiting.
      }
    }
  })
}

/** Runs `hook` synchronously when this process exits (e.g. to remove a temp dir). Returns an unregister function. */
export function onProcessExit(hook: () => void): () => void {
  installExitHook()
  guard.exitHooks.add(hook)
  return () => guard.exitHooks.delete(hook)
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

class LogRing {
  private readonly lines: string[] = []
  private partial = ''
  constructor(private readonly capacity: number) {}

  push(chunk: Buffer): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n')
    this.partial = parts.pop() ?? ''
    this.lines.push(...parts)
    if (this.lines.length > this.capacity) this.lines.splice(0, this.lines.length - this.capacity)
  }

  text(): string {
    return [...this.lines, ...(this.partial ? [this.partial] : [])].join('\n')
  }
}

/** One child process; output (stdout and stderr interleaved) is kept in a ring of `logLines` lines. */
export class ManagedProcess {
  readonly child: ChildProcess
  readonly exited: Promise<Exit>
  private done = false
  private readonly ring: LogRing

  constructor(
    readonly name: string,
    readonly binary: string,
    readonly args: readonly string[],
    opts: { logLines?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
  ) {
    this.ring = new LogRing(opts.logLines ?? 400)
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd })
    this.child = child
    child.stdout?.on('data', (chunk: Buffer) => this.ring.push(chunk))
    child.stderr?.on('data', (chunk: Buffer) => this.ring.push(chunk))
    // A leaked child must not keep the test process alive; the exit hook kills it.
    child.unref()
    unrefStream(child.stdout)
    unrefStream(child.stderr)
    const pid = child.pid
    this.exited = new Promise<Exit>((resolve) => {
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.done) return
        this.done = true
        guard.live.delete(this)
        if (pid !== undefined) tellWatchdog(`-${pid}`)
        resolve({ code, signal })
      }
      child.once('exit', onExit)
      child.once('error', (error) => {
        if (child.pid === undefined) {
          this.ring.push(Buffer.from(`spawn ${binary} failed: ${error.message}\n`))
          onExit(null, null)
        }
      })
    })
    if (pid !== undefined) {
      installExitHook()
      guard.live.add(this)
      tellWatchdog(`+${pid}`)
    }
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  get running(): boolean {
    return !this.done
  }

  /** The last lines the process printed. */
  logs(): string {
    return this.ring.text()
  }

  /** SIGTERM (or `signal`), then SIGKILL after `timeoutMs`; resolves once the process is gone. */
  async stop(opts: { signal?: NodeJS.Signals; timeoutMs?: number } = {}): Promise<Exit> {
    if (!this.done) this.child.kill(opts.signal ?? 'SIGTERM')
    const timeoutMs = opts.timeoutMs ?? 10_000
    let timer: NodeJS.Timeout | undefined
    const first = await Promise.race([
      this.exited,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs)
      }),
    ])
    clearTimeout(timer)
    if (first) return first
    this.child.kill('SIGKILL')
    return this.exited
  }

  /** Only for exit hooks: synchronous SIGKILL. */
  killNowSync(): void {
    if (this.done || this.pid === undefined) return
    try {
      process.kill(this.pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
}
