// A self-healing informer over one resource in one namespace. It is @kubernetes/client-node's own
// informer (its ListWatch: list, then watch from the list's resourceVersion, relist after 410 Gone,
// reconnect after a normal end), wrapped because that informer stops for good on any other error
// (API server down, 403, and every client-side watch timeout):
// - a watch that goes silent (client-node aborts it after 30 s) is restarted at once from the last
//   resourceVersion; watches also ask for bookmarks and a 25 s server-side timeout;
// - any other error restarts it after capped exponential backoff with full jitter; the backoff
//   starts over as soon as a list succeeds or a watch opens; the cache (the last known state) is
//   kept meanwhile;
// - with a shared ApiRecovery (recovery.ts), it reports what each attempt got (no answer, an HTTP
//   error, success), and the recovery resets its backoff and wakes it from its sleep when the API
//   server answers again after an outage.
// Changes are reported by key ("namespace/name") with the object before and after; the consumer
// reconciles from the cache (level-based), so a missed or merged notification cannot go wrong.
// client-node applies a list to its cache in one turn; the changes a list brings are reported in
// chunks of `deliverChunk`, a job of the background queue each (5,000 Services reported at once held
// the event loop for ~70 ms), in order, with watch events that arrive meanwhile queued behind them.
// The cache is up to date at once; `synced` and the `listed` event wait for the last chunk.
import { ADD, DELETE, ERROR, ListWatch as Informer, UPDATE, type KubernetesObject } from '@kubernetes/client-node'
import { SlicedQueue } from '../../core/sliced.js'
import { abortableSleep, type ApiRecovery, type BackoffMember } from './recovery.js'

export interface ListResult<T> {
  readonly items: T[]
  readonly metadata?: { readonly resourceVersion?: string | undefined } | undefined
}

export interface WatchHandle {
  abort(): void
}

export type WatchFn<T> = (
  resourceVersion: string,
  onEvent: (type: string, obj: T & { code?: number }) => void,
  done: (err?: unknown) => void,
) => Promise<WatchHandle>

export type ListWatchEvent =
  | { readonly kind: 'listed'; readonly items: number }
  | { readonly kind: 'watching' }
  | { readonly kind: 'gone' }
  | { readonly kind: 'error'; readonly error: string; readonly retryInMs: number; readonly status?: number }

export interface ListWatchOptions<T> {
  /** For logs and metrics, e.g. `services/redis-system`. */
  readonly name: string
  readonly list: () => Promise<ListResult<T>>
  readonly watch: WatchFn<T>
  /** An object changed (obj null = deleted); `old` is what the cache held before. */
  readonly onChange: (key: string, obj: T | null, old: T | null) => void
  readonly onEvent?: (e: ListWatchEvent) => void
  readonly backoffBaseMs?: number
  readonly backoffMaxMs?: number
  readonly random?: () => number
  /** Resolves after `ms`, or at once when `signal` aborts (stop, or a wake from the recovery). */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  /** Shared by the watches of one source: wakes them when the API server is back (recovery.ts). */
  readonly recovery?: ApiRecovery
  /** Changes of a list reported per turn (LIST_WATCH_DEFAULTS.deliverChunk). */
  readonly deliverChunk?: number
  /** Where the later chunks run (the gateway's background queue; default one of its own). */
  readonly background?: SlicedQueue
}

export const LIST_WATCH_DEFAULTS = { backoffBaseMs: 250, backoffMaxMs: 30_000, watchTimeoutS: 25, deliverChunk: 250 } as const

interface Change<T> {
  readonly key: string
  readonly obj: T | null
  readonly old: T | null
}

export function keyOf(obj: KubernetesObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`
}

/** A readable message: the API's own `message` when the error carries a Status body. */
export function messageOfError(err: unknown): string {
  const body = (err as { body?: unknown } | null)?.body
  let parsed: unknown = body
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body)
    } catch {
      parsed = null
    }
  }
  const m = (parsed as { message?: unknown } | null)?.message
  if (typeof m === 'string' && m !== '') return m
  return err instanceof Error ? err.message : String(err)
}

export function statusOfError(err: unknown): number | undefined {
  const e = err as { statusCode?: number; code?: number; status?: number } | null
  const s = e?.statusCode ?? e?.code ?? e?.status
  return typeof s === 'number' ? s : undefined
}

/** client-node's watch aborted for inactivity (or by its own timer): not an error, reconnect. */
function isSilentWatch(err: unknown): boolean {
  const name = (err as { name?: string; type?: string } | null)?.name
  return name === 'TimeoutError' || name === 'AbortError' || (err as { type?: string } | null)?.type === 'aborted'
}

export class ListWatch<T extends KubernetesObject> implements BackoffMember {
  readonly cache = new Map<string, T>()
  private readonly informer: Informer<T>
  private running = false
  /** Aborts the backoff sleep in progress (stop, or resetBackoff); null when not asleep. */
  private sleeping: AbortController | null = null
  private failures = 0
  private lists = 0
  private restarting: Promise<void> | null = null
  /** True once the first list has been applied. */
  synced = false
  /** Wall-clock ms of the last successful list or watch event. */
  lastSyncMs = 0
  /** HTTP status of the last error (undefined when the last attempt succeeded or had none). */
  lastErrorStatus: number | undefined = undefined
  /** Changes not reported yet, oldest first (a list's, and watch events behind them). */
  private readonly pending: Change<T>[] = []
  private pendingHead = 0
  /**
   * A list succeeded and the informer has not asked for the watch after it yet: it is applying the
   * list, whose changes queue (changed()) until then.
   */
  private listedSinceWatch = false
  /** The list's last change is reported when `pending` drains: it is synced then. */
  private listedWhenDrained = false
  private draining = false
  private readonly background: SlicedQueue

  constructor(private readonly opts: ListWatchOptions<T>) {
    this.background = opts.background ?? new SlicedQueue({ sliceMs: 0 })
    // The Watch the informer drives: ours, so that a watch that opened resets the backoff.
    const watch = {
      watch: async (
        _path: string,
        params: Record<string, string | number | boolean | undefined>,
        callback: (phase: string, obj: T & { code?: number }) => void,
        done: (err?: unknown) => void,
      ) => {
        let ended = false
        // The informer applied its list just before asking for this watch: that is the sync, once
        // the changes it brought have been reported.
        if (this.listedSinceWatch) {
          this.listedSinceWatch = false
          this.listedWhenDrained = true
          this.deliver()
        }
        const handle = await opts.watch(
          String(params.resourceVersion ?? ''),
          (phase, obj) => {
            callback(phase, obj)
            this.lastSyncMs = Date.now()
          },
          (err) => {
            ended = true
            done(err)
          },
        )
        if (!ended && this.running) {
          this.failures = 0
          this.lastErrorStatus = undefined
          this.opts.onEvent?.({ kind: 'watching' })
          this.opts.recovery?.succeeded()
        }
        // Once ended, aborting must not end it again (the informer aborts in its done handler).
        return {
          abort: () => {
            if (ended) return
            ended = true
            handle.abort()
          },
        }
      },
    }
    const list = async (): Promise<ListResult<T>> => {
      const r = await opts.list()
      this.lastListItems = r.items.length
      // The informer applies it as this promise resolves, before it asks for the watch.
      this.listedSinceWatch = true
      if (this.running) this.opts.recovery?.succeeded()
      return r as never
    }
    this.informer = new Informer<T>('', watch as never, list as never, false)
    this.informer.on(ADD, (obj) => this.changed(obj, false))
    this.informer.on(UPDATE, (obj) => this.changed(obj, false))
    this.informer.on(DELETE, (obj) => this.changed(obj, true))
    this.informer.on(ERROR, (err) => this.failed(err))
    opts.recovery?.join(this)
  }

  start(): void {
    if (this.running) return
    this.running = true
    void this.informer.start()
  }

  async stop(): Promise<void> {
    this.running = false
    this.sleeping?.abort()
    // Nothing is reported after stop.
    this.pending.length = 0
    this.pendingHead = 0
    this.listedSinceWatch = false
    this.listedWhenDrained = false
    await this.informer.stop()
    await this.restarting
  }

  /** Failures since the last success (what the next backoff grows from). */
  get failureCount(): number {
    return this.failures
  }

  /** The API server answers again (recovery.ts): count failures from zero, and retry now if asleep. */
  resetBackoff(): void {
    this.failures = 0
    this.sleeping?.abort()
  }

  private lastListItems = 0

  private markListed(): void {
    const relist = this.lists++ > 0
    this.synced = true
    this.failures = 0
    this.lastErrorStatus = undefined
    this.lastSyncMs = Date.now()
    if (relist) this.opts.onEvent?.({ kind: 'gone' })
    this.opts.onEvent?.({ kind: 'listed', items: this.lastListItems })
  }

  /** Capped exponential backoff with full jitter: uniform in [0, min(max, base * 2^n)). */
  backoffMs(failures: number): number {
    const base = this.opts.backoffBaseMs ?? LIST_WATCH_DEFAULTS.backoffBaseMs
    const max = this.opts.backoffMaxMs ?? LIST_WATCH_DEFAULTS.backoffMaxMs
    const cap = Math.min(max, base * 2 ** Math.min(failures, 20))
    return Math.max(base / 2, Math.floor((this.opts.random ?? Math.random)() * cap))
  }

  private changed(obj: T, deleted: boolean): void {
    const key = keyOf(obj)
    const old = this.cache.get(key) ?? null
    if (deleted) this.cache.delete(key)
    else this.cache.set(key, obj)
    const change = { key, obj: deleted ? null : obj, old }
    if (this.listedSinceWatch || this.pendingHead < this.pending.length) this.pending.push(change)
    else this.opts.onChange(change.key, change.obj, change.old)
  }

  /**
   * Reports up to `deliverChunk` pending changes, and the rest in later turns; when none is left
   * after a list, the list counts as applied (markListed).
   */
  private deliver(): void {
    const chunk = this.opts.deliverChunk ?? LIST_WATCH_DEFAULTS.deliverChunk
    const end = Math.min(this.pending.length, this.pendingHead + chunk)
    // The head moves before each report: a consumer that stops this (which empties `pending`)
    // ends the loop.
    while (this.pendingHead < end && this.pendingHead < this.pending.length) {
      const c = this.pending[this.pendingHead++]!
      this.opts.onChange(c.key, c.obj, c.old)
    }
    if (this.pendingHead < this.pending.length) {
      if (!this.draining) {
        this.draining = true
        this.background.post(() => {
          this.draining = false
          this.deliver()
        })
      }
      return
    }
    this.pending.length = 0
    this.pendingHead = 0
    if (this.listedWhenDrained) {
      this.listedWhenDrained = false
      this.markListed()
    }
  }

  /** The informer stopped on an error: start it again, at once or after backoff. */
  private failed(err: unknown): void {
    if (!this.running) return
    let delay = 0
    if (!isSilentWatch(err)) {
      const status = statusOfError(err)
      this.lastErrorStatus = status
      // First, as it may reset every backoff, this one's too: the API server answering again after
      // an outage makes this failure the first of a new series.
      if (status === undefined) this.opts.recovery?.unreachable()
      else this.opts.recovery?.answered(status)
      this.failures++
      delay = this.backoffMs(this.failures)
      this.opts.onEvent?.({
        kind: 'error',
        error: messageOfError(err),
        retryInMs: delay,
        ...(status !== undefined ? { status } : {}),
      })
    }
    const sleep = this.opts.sleep ?? abortableSleep
    const wake = new AbortController()
    this.sleeping = wake
    this.restarting = (delay > 0 ? sleep(delay, wake.signal) : Promise.resolve()).then(() => {
      if (this.sleeping === wake) this.sleeping = null
      this.restarting = null
      if (this.running) void this.informer.start()
    })
  }
}
