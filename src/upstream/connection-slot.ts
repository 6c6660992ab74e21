// One RespConnection and the requests waiting for it to become ready. An endpoint has one for
// the gateway's own user and, opened on first use and closed when idle, one per Redis user that
// tokens run as (endpoint-client.ts).

import { RespConnection, type RespConnectionOptions } from './resp-connection.js'

export interface SlotHooks {
  onReady(): void
  onClose(reason: string): void
  onFault?(err: Error): void
}

export class ConnectionSlot {
  readonly connection: RespConnection
  /** Why the connection last failed; null once it is ready again. */
  failure: string | null = null
  /** The pool's idle-sweep tick at the last use (see EndpointClient.sweepIdle). */
  lastUsed = 0
  private stopped = false
  /** Requests waiting for the connection: the connection's one ready hook serves them all. */
  private readonly waiters = new Set<(ok: boolean) => void>()

  constructor(opts: RespConnectionOptions, hooks: SlotHooks) {
    this.connection = new RespConnection(opts, {
      onReady: () => {
        this.failure = null
        for (const w of [...this.waiters]) w(true)
        hooks.onReady()
      },
      onClose: (reason) => {
        this.failure = reason
        if (!this.stopped) hooks.onClose(reason)
      },
      ...(hooks.onFault ? { onFault: hooks.onFault } : {}),
    })
  }

  get ready(): boolean {
    return this.connection.ready
  }

  /** Requests waiting in whenReady(). */
  get waiting(): number {
    return this.waiters.size
  }

  get idle(): boolean {
    return this.waiters.size === 0 && this.connection.pending === 0
  }

  /**
   * True when the connection is ready; else a promise for whether it becomes ready within
   * `timeoutMs` (false at once once stopped).
   */
  whenReady(timeoutMs: number): Promise<boolean> | true {
    if (this.connection.ready) return true
    if (this.stopped) return Promise.resolve(false)
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer)
        this.waiters.delete(done)
        resolve(ok)
      }
      const timer = setTimeout(() => done(false), Math.max(1, timeoutMs))
      this.waiters.add(done)
    })
  }

  start(): void {
    this.connection.start()
  }

  stop(): void {
    this.stopped = true
    this.connection.stop()
    for (const w of [...this.waiters]) w(false)
  }
}
