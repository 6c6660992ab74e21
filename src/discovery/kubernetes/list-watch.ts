// A self-healing list+watch over one resource in one namespace, keeping a cache of the current
// objects. @kubernetes/client-node's informer stops on any error other than 410 and backs off
// between reconnects; this loop never stays stopped:
// - list, then watch from the list's resourceVersion (bookmarks on, a short server-side timeout
//   so a watch is renewed every `watchTimeoutS` even when nothing changes);
// - a watch that ends normally, or goes silent (client-node's inactivity timeout), reconnects at
//   once from the last resourceVersion;
// - 410 Gone (the resourceVersion was compacted away) relists at once;
// - any other error (API server down, 403, network) retries with capped exponential backoff and
//   full jitter, and keeps the cache (the last known state) meanwhile.
// Changes are reported by key ("namespace/name") with the object before and after; the consumer
// reconciles from the cache (level-based), so a missed or merged notification cannot go wrong.

import type { KubernetesObject } from '@kubernetes/client-node'

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
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>
}

export const LIST_WATCH_DEFAULTS = { backoffBaseMs: 250, backoffMaxMs: 30_000, watchTimeoutS: 25 } as const

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

class Gone extends Error {
  readonly statusCode = 410
}

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => {
      clearTimeout(t)
      resolve()
    })
  })
}

export class ListWatch<T extends KubernetesObject> {
  readonly cache = new Map<string, T>()
  private resourceVersion = ''
  private running = false
  private stopSignal = new AbortController()
  private handle: WatchHandle | null = null
  private failures = 0
  private loop: Promise<void> | null = null
  /** True once the first list has been applied. */
  synced = false
  /** Wall-clock ms of the last successful list or watch event. */
  lastSyncMs = 0
  /** HTTP status of the last error (undefined when the last attempt succeeded or had none). */
  lastErrorStatus: number | undefined = undefined

  constructor(private readonly opts: ListWatchOptions<T>) {}

  start(): void {
    if (this.running) return
    this.running = true
    this.stopSignal = new AbortController()
    this.loop = this.run()
  }

  async stop(): Promise<void> {
    this.running = false
    this.stopSignal.abort()
    this.handle?.abort()
    await this.loop
  }

  /** Capped exponential backoff with full jitter: uniform in [0, min(max, base * 2^n)). */
  backoffMs(failures: number): number {
    const base = this.opts.backoffBaseMs ?? LIST_WATCH_DEFAULTS.backoffBaseMs
    const max = this.opts.backoffMaxMs ?? LIST_WATCH_DEFAULTS.backoffMaxMs
    const cap = Math.min(max, base * 2 ** Math.min(failures, 20))
    return Math.max(base / 2, Math.floor((this.opts.random ?? Math.random)() * cap))
  }

  private async run(): Promise<void> {
    const sleep = this.opts.sleep ?? defaultSleep
    while (this.running) {
      try {
        if (this.resourceVersion === '') await this.relist()
        await this.watchOnce()
        this.failures = 0
      } catch (err) {
        if (!this.running) break
        if (statusOfError(err) === 410) {
          // Compacted away: start over from a fresh list, at once.
          this.resourceVersion = ''
          this.opts.onEvent?.({ kind: 'gone' })
          continue
        }
        this.failures++
        const retryInMs = this.backoffMs(this.failures)
        const status = statusOfError(err)
        this.lastErrorStatus = status
        this.opts.onEvent?.({
          kind: 'error',
          error: messageOfError(err),
          retryInMs,
          ...(status !== undefined ? { status } : {}),
        })
        await sleep(retryInMs, this.stopSignal.signal)
      }
    }
  }

  private async relist(): Promise<void> {
    const list = await this.opts.list()
    if (!this.running) return
    const seen = new Set<string>()
    for (const obj of list.items) {
      const key = keyOf(obj)
      seen.add(key)
      const old = this.cache.get(key) ?? null
      this.cache.set(key, obj)
      if (old === null || old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.opts.onChange(key, obj, old)
    }
    for (const [key, old] of [...this.cache]) {
      if (seen.has(key)) continue
      this.cache.delete(key)
      this.opts.onChange(key, null, old)
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? ''
    this.synced = true
    // Recovered: the next failure starts the backoff from the beginning again.
    this.failures = 0
    this.lastErrorStatus = undefined
    this.lastSyncMs = Date.now()
    this.opts.onEvent?.({ kind: 'listed', items: list.items.length })
  }

  private watchOnce(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let gone = false
      let finished = false
      const done = (err?: unknown): void => {
        if (finished) return
        finished = true
        this.handle = null
        if (gone) return reject(new Gone('resourceVersion too old'))
        // A silent watch cut by client-node's inactivity timeout is not an error: reconnect.
        if (err && !(err instanceof Error && err.name === 'TimeoutError') && !(err instanceof DOMException && err.name === 'TimeoutError')) {
          return reject(err)
        }
        resolve()
      }
      const onEvent = (type: string, obj: T & { code?: number }): void => {
        if (finished) return
        switch (type) {
          case 'ERROR':
            if (obj.code === 410) gone = true
            return
          case 'ADDED':
          case 'MODIFIED': {
            const key = keyOf(obj)
            const old = this.cache.get(key) ?? null
            this.cache.set(key, obj)
            this.opts.onChange(key, obj, old)
            break
          }
          case 'DELETED': {
            const key = keyOf(obj)
            const old = this.cache.get(key) ?? null
            this.cache.delete(key)
            this.opts.onChange(key, null, old)
            break
          }
          case 'BOOKMARK':
            break
        }
        const rv = obj.metadata?.resourceVersion
        if (rv) this.resourceVersion = rv
        this.lastSyncMs = Date.now()
      }
      this.opts
        .watch(this.resourceVersion, onEvent, done)
        .then((h) => {
          if (finished) return
          this.handle = h
          if (!this.running) h.abort()
          else {
            this.failures = 0
            this.lastErrorStatus = undefined
            this.opts.onEvent?.({ kind: 'watching' })
          }
        })
        .catch(done)
    })
  }
}
