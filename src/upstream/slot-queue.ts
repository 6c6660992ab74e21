// An endpoint's in-flight slots (limits.maxInflightPerEndpoint) and the requests waiting for one,
// first come first served (README "Overload and deadlines"). As Envoy queues a request in front
// of a connection pool whose streams are all busy (max_pending_requests), a request over the
// in-flight bound waits here instead of being refused at once; it is refused only when the queue
// is full (dispatch.ts checks limits.maxPendingPerEndpoint), and one that gets no slot before its
// budget runs out is dropped without ever being sent. Refusing at once turned overload into a storm:
// closed-loop clients sent each refused request straight back, the event loop spent its turns
// reading requests only to refuse them, and Redis's replies, which free the slots, were read late
// (bench/README.md, "Cost as work grows").
//
// A slot is held from the moment an attempt is handed to the endpoint until its promise settles
// (dispatch.ts calls release()). Budgets expire on one timer per queue, on the clock of the
// attempt timers (deadlines.ts: a verdict waits for the I/O of its turn); tests drive the clock.
// Waiters with the usual budget reach their deadlines in arrival order, so the queue itself is
// their expiry list; the few with a shorter one (a retry, or a request that first waited for the
// connection) are also kept aside and looked at when the timer fires. A waiter is one object (a
// subclass of SlotWaiter): thousands wait at once under overload, each for a good part of a
// second, and what they allocate is what the young generation has to copy; none is held after it
// leaves the queue.

import type { DeadlineClock } from './deadlines.js'

/** A request waiting for a slot: what it does when it gets one, or when it gives up. */
export abstract class SlotWaiter {
  /** @internal Granted or dropped. */
  done = false
  /** @internal When it started to wait, and when its budget runs out (clock readings). */
  since = 0
  deadline = 0

  /** The slot is the waiter's now, with `leftMs` (at least 1) of its budget left; it must release() it. */
  abstract granted(leftMs: number): void
  /** No slot came within the budget (`closed`: the endpoint left the pool); `waitedMs` in the queue. Never sent. */
  abstract dropped(waitedMs: number, closed: boolean): void
}

export class SlotQueue {
  private active = 0
  /** Waiters in arrival order from `head`; ones dropped early stay (done) until passed. */
  private items: (SlotWaiter | undefined)[] = []
  private head = 0
  private live = 0
  /** The latest deadline among waiters queued so far: a later arrival due before it is irregular. */
  private lastDeadline = -Infinity
  /** Waiters due before someone queued ahead of them (shorter budgets): checked apart. */
  private irregular: SlotWaiter[] = []
  /** When the earliest timer armed will fire; Infinity when none is. */
  private armedAt = Infinity
  private draining = false

  constructor(
    /** Slots: attempts that may be in flight on the endpoint at once. */
    readonly max: number,
    private readonly clock: DeadlineClock,
  ) {
    if (!(Number.isSafeInteger(max) && max >= 1)) throw new RangeError(`SlotQueue max must be a whole number >= 1, got ${max}`)
  }

  /** Slots taken. */
  get inflight(): number {
    return this.active
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.live
  }

  /** Takes a slot when one is free and no one waits (a newcomer never overtakes a waiter). */
  tryAcquire(): boolean {
    if (this.live > 0 || this.active >= this.max) return false
    this.active++
    return true
  }

  /**
   * Gives a slot back; the longest-waiting request takes it. An arrow property: it is handed to
   * every attempt's promise as its settle callback, without a closure per request.
   */
  readonly release = (): void => {
    if (this.active > 0) this.active--
    if (this.live > 0) this.drain()
  }

  /** Queues `w` for at most `budgetMs` (> 0). The caller checks the queue's bound first. */
  wait(w: SlotWaiter, budgetMs: number): void {
    const now = this.clock.now()
    w.since = now
    w.deadline = now + budgetMs
    this.items.push(w)
    this.live++
    if (w.deadline < this.lastDeadline) this.irregular.push(w)
    else this.lastDeadline = w.deadline
    this.arm(w.deadline)
  }

  /** Drops every waiter (the endpoint left the pool); slots in use stay counted until released. */
  close(): void {
    const now = this.clock.now()
    const items = this.items
    const from = this.head
    this.reset()
    for (let i = from; i < items.length; i++) {
      const w = items[i]!
      if (w.done) continue
      w.done = true
      w.dropped(now - w.since, true)
    }
  }

  private reset(): void {
    this.items = []
    this.head = 0
    this.live = 0
    this.irregular = []
    this.lastDeadline = -Infinity
  }

  /** Schedules a check at `deadline` unless one is due by then. */
  private arm(deadline: number): void {
    if (deadline >= this.armedAt) return
    this.armedAt = deadline
    this.clock.schedule(() => this.fire(deadline), Math.max(1, Math.ceil(deadline - this.clock.now())))
  }

  /** A timer fired: drops the waiters whose budget ran out, and arms for the next one due. */
  private fire(armedFor: number): void {
    if (armedFor === this.armedAt) this.armedAt = Infinity
    const now = this.clock.now()
    const expired: SlotWaiter[] = []
    // Regular waiters are due in arrival order: the first one not due ends the walk.
    const items = this.items
    let h = this.head
    for (; h < items.length; h++) {
      const w = items[h]!
      if (w.done) {
        items[h] = undefined
        continue
      }
      if (w.deadline > now) break
      w.done = true
      items[h] = undefined
      expired.push(w)
    }
    this.head = h
    let next = h < items.length ? items[h]!.deadline : Infinity
    if (this.irregular.length > 0) {
      const keep: SlotWaiter[] = []
      for (const w of this.irregular) {
        if (w.done) continue
        if (w.deadline <= now) {
          w.done = true
          expired.push(w)
        } else {
          keep.push(w)
          next = Math.min(next, w.deadline)
        }
      }
      this.irregular = keep
    }
    this.live -= expired.length
    this.compact()
    if (next !== Infinity) this.arm(next)
    for (const w of expired) w.dropped(now - w.since, false)
  }

  /** Hands free slots to waiters in arrival order. */
  private drain(): void {
    // A waiter that gives its slot straight back (granted() may release()) does not recurse: this
    // loop sees the slot free again and goes on.
    if (this.draining) return
    this.draining = true
    try {
      while (this.live > 0 && this.active < this.max) {
        const w = this.items[this.head]!
        this.items[this.head++] = undefined
        if (w.done) continue
        w.done = true
        this.live--
        const now = this.clock.now()
        const left = w.deadline - now
        // Its timer is due but has not run yet (replies are read before timers fire): too late to send.
        if (left < 1) {
          w.dropped(now - w.since, false)
          continue
        }
        this.active++
        w.granted(Math.floor(left))
      }
    } finally {
      this.draining = false
      this.compact()
    }
  }

  /** Keeps the arrays about as long as the queue: forgets them once no one waits, cuts the passed part. */
  private compact(): void {
    if (this.live === 0) {
      if (this.items.length > 0 || this.irregular.length > 0) this.reset()
      return
    }
    const h = this.head
    if (h >= 1024 && h * 2 >= this.items.length) {
      this.items = this.items.slice(h)
      this.head = 0
    }
  }
}
