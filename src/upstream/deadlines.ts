// Timeouts for attempts, without a Node timer per attempt.
//
// Every attempt (execute.ts) must fail after its timeout unless it settled first. A setTimeout per
// attempt, cleared when the reply comes, costs little when requests overlap; with one request at a
// time the duration's timer list is emptied by every clearTimeout, so each request paid for
// building a new list, a priority-queue insert and a call into libuv (bench/README.md, Findings).
// Here attempts of the same duration go into one FIFO list (the same duration, added in time order,
// so deadlines only grow along it) with one timer, armed for the head's deadline. Settling costs
// nothing: a settled attempt is dropped when it reaches the head. The timer is not cleared when the
// list empties; when it fires it finds nothing and is not armed again, so with steady traffic it is
// armed about once per timeout period.

import { performance } from 'node:perf_hooks'
import { ioTimeout } from '../core/timeout.js'

/** What a list holds: an attempt that can tell whether it settled, and is failed at its deadline. */
export interface Expiring {
  /** True once the attempt settled (reply, failure or expiry); it is then dropped. */
  readonly done: boolean
  /** Fails the attempt with a timeout. Called at most once, only while not done. */
  expire(): void
}

export interface DeadlineClock {
  /** Milliseconds, monotonic (performance.now()). */
  now(): number
  /** Calls fn after ms (at least 1); unref'd: a pending timeout alone does not keep the process up. */
  schedule(fn: () => void, ms: number): void
}

const NODE_CLOCK: DeadlineClock = {
  now: () => performance.now(),
  schedule(fn, ms) {
    // Replies read in this turn's poll phase settle their attempts before any is judged late.
    ioTimeout(fn, ms).unref()
  },
}

/** Settled entries tolerated behind an unsettled head before the list is compacted. */
const COMPACT_AT = 1024

class List {
  items: Expiring[] = []
  deadlines: number[] = []
  head = 0
  armed = false
  compactAt = COMPACT_AT

  constructor(
    readonly ms: number,
    private readonly owner: Deadlines,
  ) {}

  get size(): number {
    return this.items.length - this.head
  }

  add(item: Expiring, deadline: number): void {
    this.dropSettled()
    this.items.push(item)
    this.deadlines.push(deadline)
    if (this.items.length - this.head >= this.compactAt) this.compact()
    if (!this.armed) this.arm(deadline)
  }

  /** Drops settled attempts at the head. */
  private dropSettled(): void {
    const items = this.items
    let h = this.head
    while (h < items.length && items[h]!.done) h++
    this.head = h
    if (h === items.length) this.clear()
    else this.cutPassed()
  }

  /**
   * Lets go of the part before the head once it is most of the arrays: under steady traffic a list
   * never empties (some attempt is always in flight), and the attempts passed over would otherwise
   * stay referenced, with their replies, for as long as the traffic lasts. Amortised O(1): what is
   * copied is at most what was passed.
   */
  private cutPassed(): void {
    const h = this.head
    if (h < COMPACT_AT || 2 * h < this.items.length) return
    this.items = this.items.slice(h)
    this.deadlines = this.deadlines.slice(h)
    this.head = 0
  }

  private clear(): void {
    this.items.length = 0
    this.deadlines.length = 0
    this.head = 0
  }

  /**
   * A slow attempt at the head keeps the settled ones behind it: filter them out, so the list holds
   * about what is in flight, and do it again only when it has doubled (amortised O(1) per add).
   */
  private compact(): void {
    const items: Expiring[] = []
    const deadlines: number[] = []
    for (let i = this.head; i < this.items.length; i++) {
      if (this.items[i]!.done) continue
      items.push(this.items[i]!)
      deadlines.push(this.deadlines[i]!)
    }
    this.items = items
    this.deadlines = deadlines
    this.head = 0
    this.compactAt = Math.max(COMPACT_AT, items.length * 2)
  }

  private arm(deadline: number): void {
    this.armed = true
    const wait = Math.max(1, Math.ceil(deadline - this.owner.clock.now()))
    this.owner.clock.schedule(() => this.fire(), wait)
  }

  private fire(): void {
    this.armed = false
    const now = this.owner.clock.now()
    // expire() may add attempts (a retry) to this very list: read the length on each step.
    while (this.head < this.items.length) {
      const item = this.items[this.head]!
      if (!item.done) {
        if (this.deadlines[this.head]! > now) break
        this.head++
        item.expire()
        continue
      }
      this.head++
    }
    if (this.head === this.items.length) {
      this.clear()
      if (!this.armed) this.owner.drop(this)
      return
    }
    this.cutPassed()
    if (!this.armed) this.arm(this.deadlines[this.head]!)
  }
}

/** Attempt deadlines, one list and one timer per distinct duration. */
export class Deadlines {
  private readonly lists = new Map<number, List>()

  constructor(readonly clock: DeadlineClock = NODE_CLOCK) {}

  /** `item` is expired `ms` after `startMs` (a clock reading) unless it is done by then. */
  add(item: Expiring, ms: number, startMs: number): void {
    let list = this.lists.get(ms)
    if (list === undefined) {
      list = new List(ms, this)
      this.lists.set(ms, list)
    }
    list.add(item, startMs + ms)
  }

  /** Attempts held (settled ones not yet dropped included); for tests and leak checks. */
  get held(): number {
    let n = 0
    for (const l of this.lists.values()) n += l.size
    return n
  }

  /** Entries the lists' arrays hold, passed ones included (they are references to attempts); for leak checks. */
  get retained(): number {
    let n = 0
    for (const l of this.lists.values()) n += l.items.length
    return n
  }

  /** Lists alive (each with at most one timer). */
  get listCount(): number {
    return this.lists.size
  }

  /** @internal */
  drop(list: List): void {
    if (this.lists.get(list.ms) === list) this.lists.delete(list.ms)
  }
}
