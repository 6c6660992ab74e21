// Connect attempts of the pool's endpoints, admitted a bounded number at a time. An endpoint's
// attempt holds its place from the moment it connects until its connection's first work is done
// (ready check, command table, ACL users, cluster mode: endpoint-client.ts) or the attempt fails;
// then the next waiting one goes. With thousands of endpoints (a static config, a Kubernetes list),
// starting them all at once made one event-loop turn parse thousands of COMMAND INFO replies,
// starved every timer (false connect timeouts, reconnects) for seconds; here each turn carries at
// most `concurrency` endpoints' work, and a connect timer starts only when its connect does.
// A request waiting for a queued endpoint jumps the queue (promote()). An attempt holds its place
// for at most `holdMs`: a server that keeps its connection in the ready check (loading a large
// dataset) or does not answer must not keep the others waiting. No I/O of its own.
// The first attempts are fewer at a time (`warmUp`): a process that has just started runs them on
// code V8 has not optimized yet, about ten times slower (16 first COMMAND INFO replies held one turn
// for ~40 ms behind the API server; bench/README.md, "Discovery at scale"). The limit starts at
// `warmUp` and grows by one with each attempt done, up to `concurrency`; once reached it stays there.
// The warm-up lasts at most `warmUpMs` from the first admission, so that a few first servers that do
// not answer (held up to `holdMs` each) cannot hold the whole start at 2.

export interface StartQueueOptions {
  /** Attempts in progress at once. */
  readonly concurrency: number
  /** Longest an attempt holds its place (its work may go on; the next one is admitted). */
  readonly holdMs?: number
  /** Attempts at once at first; the limit then grows by one per attempt done (default WARM_UP_CONCURRENCY). */
  readonly warmUp?: number
  /** Longest warm-up, from the first admission: the limit is `concurrency` after it (default WARM_UP_MAX_MS). */
  readonly warmUpMs?: number
  /** Runs admissions later, in one batch (setImmediate; tests inject their own). */
  readonly defer?: (run: () => void) => void
}

/** Attempts in progress at once by default: each turn parses at most this many COMMAND INFO replies. */
export const START_CONCURRENCY = 16

/** Attempts in progress at once while the process warms up (the first ones). */
export const WARM_UP_CONCURRENCY = 2

/** The warm-up's longest duration; it usually ends in a fraction of it (14 attempts done). */
export const WARM_UP_MAX_MS = 1_000

export class StartQueue<K> {
  /** Waiting attempts in arrival order, by owner (an owner has at most one). */
  private readonly waiting = new Map<K, () => void>()
  /** Owners whose attempt holds a place, and the timer that frees it at the latest. */
  private readonly running = new Map<K, NodeJS.Timeout | null>()
  private scheduled = false
  /** The limit now: from the warm-up's up to opts.concurrency. */
  private limit: number
  /** Ends the warm-up at the latest (set at the first admission while warming up). */
  private warmUpTimer: NodeJS.Timeout | null = null
  private readonly defer: (run: () => void) => void
  private readonly pumpNow = (): void => {
    this.scheduled = false
    this.pump()
  }

  constructor(private readonly opts: StartQueueOptions) {
    this.defer = opts.defer ?? ((run) => void setImmediate(run))
    this.limit = Math.max(1, Math.min(opts.concurrency, opts.warmUp ?? WARM_UP_CONCURRENCY))
  }

  /** Attempts waiting for a place. */
  get queued(): number {
    return this.waiting.size
  }

  /** Attempts holding a place. */
  get active(): number {
    return this.running.size
  }

  /**
   * `owner` wants to run `go` (its connect attempt): at the next admission when a place is free,
   * else when one frees up. An owner already waiting keeps its place in the line with the new `go`.
   */
  enter(owner: K, go: () => void): void {
    this.waiting.set(owner, go)
    this.schedule()
  }

  /** Runs `owner`'s waiting attempt now, beyond the limit (something waits for its connection). */
  promote(owner: K): void {
    const go = this.waiting.get(owner)
    if (go === undefined) return
    this.waiting.delete(owner)
    this.run(owner, go)
  }

  /** `owner`'s attempt is over (its first work done, or it failed): its place goes to the next. */
  done(owner: K): void {
    const timer = this.running.get(owner)
    if (timer === undefined) return
    if (timer !== null) clearTimeout(timer)
    this.running.delete(owner)
    if (this.limit < this.opts.concurrency) {
      this.limit++
      // Warmed up: the timer that would end the warm-up has nothing left to do.
      if (this.limit === this.opts.concurrency && this.warmUpTimer !== null) clearTimeout(this.warmUpTimer)
    }
    this.schedule()
  }

  private run(owner: K, go: () => void): void {
    if (this.limit < this.opts.concurrency && this.warmUpTimer === null) {
      this.warmUpTimer = setTimeout(() => {
        this.limit = this.opts.concurrency
        this.schedule()
      }, this.opts.warmUpMs ?? WARM_UP_MAX_MS)
      this.warmUpTimer.unref()
    }
    const hold = this.opts.holdMs
    const timer = hold === undefined ? null : setTimeout(() => this.done(owner), hold)
    timer?.unref()
    this.running.set(owner, timer)
    go()
  }

  /** `owner` is gone (removed from the pool): its waiting attempt is dropped, its place freed. */
  leave(owner: K): void {
    this.waiting.delete(owner)
    this.done(owner)
  }

  private schedule(): void {
    if (this.scheduled || this.waiting.size === 0) return
    this.scheduled = true
    this.defer(this.pumpNow)
  }

  private pump(): void {
    for (const [owner, go] of this.waiting) {
      if (this.running.size >= this.limit) return
      this.waiting.delete(owner)
      this.run(owner, go)
    }
  }
}
