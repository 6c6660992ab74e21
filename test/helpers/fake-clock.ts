// A DeadlineClock (src/upstream/deadlines.ts) for unit tests of the attempt timers, the slot queue
// and dispatch: its timers run only when the test advances it, so nothing sleeps.

import { expect } from 'vitest'
import type { DeadlineClock } from '../../src/upstream/deadlines.js'

export class FakeClock implements DeadlineClock {
  t = 0
  timers: { at: number; fn: () => void }[] = []
  /** Timers scheduled so far. */
  scheduled = 0

  now(): number {
    return this.t
  }

  schedule(fn: () => void, ms: number): void {
    expect(ms).toBeGreaterThanOrEqual(1)
    this.scheduled++
    this.timers.push({ at: this.t + ms, fn })
  }

  /** Moves time on by `ms`, running the timers due meanwhile in order. */
  advance(ms: number): void {
    const until = this.t + ms
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at)
      const next = this.timers[0]
      if (next === undefined || next.at > until) break
      this.timers.shift()
      this.t = next.at
      next.fn()
    }
    this.t = until
  }
}
