// Work run a slice at a time: jobs queued in any turn of the event loop run in later turns, in the
// order queued, at most about `sliceMs` of them per turn (a job is never cut; the slice ends after
// the job that passes it), so that many arriving together (thousands of endpoints' COMMAND INFO
// replies at start-up) never make one long turn that every timer and request waits behind. No I/O.
// The gateway runs all of its start-up work through one queue (gateway.ts `background`): the
// command tables' reads, the reconcile chunks of Kubernetes discovery and the reports of what its
// lists brought share one budget per turn, instead of each taking a slice of its own in the same turn.

import { performance } from 'node:perf_hooks'

export interface SlicedQueueOptions {
  /** Milliseconds of jobs per turn, about (the job that passes it finishes). */
  readonly sliceMs: number
  /** Clock (performance.now); tests inject their own. */
  readonly now?: () => number
  /** Runs the next slice later (setImmediate: after the turn's I/O); tests inject their own. */
  readonly defer?: (run: () => void) => void
}

export class SlicedQueue {
  private readonly jobs: (() => void)[] = []
  private head = 0
  private scheduled = false
  private readonly now: () => number
  private readonly defer: (run: () => void) => void

  constructor(private readonly opts: SlicedQueueOptions) {
    this.now = opts.now ?? (() => performance.now())
    this.defer = opts.defer ?? ((run) => void setImmediate(run))
  }

  /** Jobs waiting for their slice. */
  get queued(): number {
    return this.jobs.length - this.head
  }

  /**
   * Runs `job` in a later slice, for work whose outcome nobody awaits (a reconcile chunk). What it
   * throws is thrown from the turn that runs it, as from a setImmediate callback.
   */
  post(job: () => void): void {
    this.jobs.push(job)
    this.schedule()
  }

  /** `job`'s result, or what it throws, once its slice has run it. */
  run<T>(job: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.jobs.push(() => {
        try {
          resolve(job())
        } catch (err) {
          reject(err)
        }
      })
      this.schedule()
    })
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    this.defer(this.slice)
  }

  private readonly slice = (): void => {
    this.scheduled = false
    const until = this.now() + this.opts.sliceMs
    // Those queued before this turn: one queued by a job here waits for the next.
    const end = this.jobs.length
    try {
      while (this.head < end) {
        this.jobs[this.head++]!()
        if (this.now() >= until) break
      }
    } finally {
      // A posted job that throws ends the slice; the others still run in later ones.
      if (this.head === this.jobs.length) {
        this.jobs.length = 0
        this.head = 0
      } else this.schedule()
    }
  }
}
