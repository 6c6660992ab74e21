// Child processes of the Kubernetes test helpers (etcd, kube-apiserver): spawn, keep recent
// output for error messages, stop with SIGTERM then SIGKILL.
//
// They never outlive the test process: each is registered with the process guard
// (test/helpers/process-guard.ts) while it runs.

import { spawn, type ChildProcess } from 'node:child_process'
import { guardChild, unrefStream } from '../../helpers/process-guard.js'

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
    // Released once the process has exited; set below once the spawn gave a pid.
    let release: (() => void) | undefined
    this.exited = new Promise<Exit>((resolve) => {
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.done) return
        this.done = true
        release?.()
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
    if (child.pid !== undefined) release = guardChild(this, child.pid)
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
