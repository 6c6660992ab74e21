// SlotQueue (slot-queue.ts): an endpoint's in-flight slots and the FIFO of requests waiting for
// one, on a clock the test drives (no sleeps). End to end, with redis-server: test/integration/
// overload-queue.test.ts.

import { describe, expect, it } from 'vitest'
import { SlotQueue, SlotWaiter } from './slot-queue.js'
import { FakeClock } from '../../test/helpers/fake-clock.js'

/** Records what happened to it; `onGrant` runs when it gets its slot. */
class Waiter extends SlotWaiter {
  grantedWith: number | null = null
  droppedAfter: number | null = null
  closed = false
  constructor(
    readonly name: string,
    private readonly log: string[],
    private readonly onGrant: (w: Waiter) => void = () => {},
  ) {
    super()
  }
  granted(leftMs: number): void {
    this.grantedWith = leftMs
    this.log.push(`granted ${this.name}`)
    this.onGrant(this)
  }
  dropped(waitedMs: number, closed: boolean): void {
    this.droppedAfter = waitedMs
    this.closed = closed
    this.log.push(`dropped ${this.name}`)
  }
}

function setup(max: number): { clock: FakeClock; q: SlotQueue; log: string[] } {
  const clock = new FakeClock()
  return { clock, q: new SlotQueue(max, clock), log: [] }
}

describe('SlotQueue', () => {
  it('hands out slots up to its bound, then makes requests wait', () => {
    const { q } = setup(2)
    expect(q.tryAcquire()).toBe(true)
    expect(q.tryAcquire()).toBe(true)
    expect(q.tryAcquire()).toBe(false)
    expect(q.inflight).toBe(2)
    q.release()
    expect(q.inflight).toBe(1)
    expect(q.tryAcquire()).toBe(true)
  })

  it('gives freed slots to waiters in arrival order, with the time they have left', () => {
    const { clock, q, log } = setup(1)
    expect(q.tryAcquire()).toBe(true)
    const a = new Waiter('a', log)
    const b = new Waiter('b', log)
    q.wait(a, 1_000)
    clock.advance(10)
    q.wait(b, 1_000)
    expect(q.waiting).toBe(2)
    clock.advance(90)
    q.release()
    expect(log).toEqual(['granted a'])
    expect(a.grantedWith).toBe(900)
    expect(q.inflight).toBe(1)
    expect(q.waiting).toBe(1)
    clock.advance(100)
    q.release()
    expect(log).toEqual(['granted a', 'granted b'])
    expect(b.grantedWith).toBe(810)
    expect(q.waiting).toBe(0)
  })

  it('a newcomer does not overtake a waiter, even when a slot is free for a moment', () => {
    const { q, log } = setup(1)
    q.tryAcquire()
    q.wait(new Waiter('a', log), 1_000)
    // As if a slot were free but the waiter not yet served: tryAcquire still refuses.
    expect(q.tryAcquire()).toBe(false)
    q.release()
    expect(log).toEqual(['granted a'])
    expect(q.tryAcquire()).toBe(false)
  })

  it('drops a waiter whose budget runs out, never granting it later; the others keep their turn', () => {
    const { clock, q, log } = setup(1)
    q.tryAcquire()
    const a = new Waiter('a', log)
    const b = new Waiter('b', log)
    q.wait(a, 100)
    q.wait(b, 1_000)
    clock.advance(99)
    expect(log).toEqual([])
    clock.advance(1)
    expect(log).toEqual(['dropped a'])
    expect(a.droppedAfter).toBe(100)
    expect(a.closed).toBe(false)
    expect(q.waiting).toBe(1)
    q.release()
    expect(log).toEqual(['dropped a', 'granted b'])
    expect(a.grantedWith).toBeNull()
  })

  it('a waiter behind the head with a shorter budget is dropped at its own deadline', () => {
    const { clock, q, log } = setup(1)
    q.tryAcquire()
    q.wait(new Waiter('long', log), 1_000)
    q.wait(new Waiter('short', log), 50)
    clock.advance(50)
    expect(log).toEqual(['dropped short'])
    q.release()
    expect(log).toEqual(['dropped short', 'granted long'])
  })

  it('waiters due in arrival order expire together at their deadlines; one behind a shorter one keeps its turn', () => {
    const { clock, q, log } = setup(1)
    q.tryAcquire()
    q.wait(new Waiter('a', log), 100)
    q.wait(new Waiter('short', log), 20)
    clock.advance(10)
    q.wait(new Waiter('b', log), 100)
    q.wait(new Waiter('c', log), 100)
    clock.advance(10)
    expect(log).toEqual(['dropped short'])
    clock.advance(80)
    expect(log).toEqual(['dropped short', 'dropped a'])
    clock.advance(10)
    expect(log).toEqual(['dropped short', 'dropped a', 'dropped b', 'dropped c'])
    expect(q.waiting).toBe(0)
  })

  it('needs about one timer per budget period when waiters get their slots in time', () => {
    const { clock, q, log } = setup(10)
    for (let i = 0; i < 10; i++) q.tryAcquire()
    for (let i = 0; i < 10_000; i++) {
      q.wait(new Waiter(String(i), log), 1_000)
      clock.advance(1)
      q.release()
    }
    expect(log.every((l) => l.startsWith('granted'))).toBe(true)
    // 10 s of traffic with a 1 s budget: about 10 timers, not one per waiter.
    expect(clock.scheduled).toBeLessThan(20)
  })

  it('a slot freed when a waiter is due but its timer has not run yet drops it instead of granting it', () => {
    const { clock, q, log } = setup(1)
    q.tryAcquire()
    const a = new Waiter('a', log)
    q.wait(a, 100)
    // The reply that frees the slot is read in the same turn as the deadline passes; the timer
    // (run after the turn's I/O) has not fired yet.
    clock.t = 100
    q.release()
    expect(log).toEqual(['dropped a'])
    expect(q.inflight).toBe(0)
    clock.advance(10)
    expect(log).toEqual(['dropped a'])
  })

  it('a waiter that gives its slot straight back lets the next one in, without recursion', () => {
    const { q, log } = setup(1)
    q.tryAcquire()
    const n = 20_000
    for (let i = 0; i < n; i++) q.wait(new Waiter(String(i), log, () => q.release()), 1_000)
    q.release()
    expect(log.length).toBe(n)
    expect(q.waiting).toBe(0)
    expect(q.inflight).toBe(0)
  })

  it('grants as many waiters as slots free up', () => {
    const { q, log } = setup(3)
    q.tryAcquire()
    q.tryAcquire()
    q.tryAcquire()
    for (const name of ['a', 'b', 'c', 'd']) q.wait(new Waiter(name, log), 1_000)
    q.release()
    q.release()
    expect(log).toEqual(['granted a', 'granted b'])
    expect(q.inflight).toBe(3)
    expect(q.waiting).toBe(2)
  })

  it('close() drops every waiter at once (closed), and later releases grant nothing', () => {
    const { clock, q, log } = setup(1)
    q.tryAcquire()
    const a = new Waiter('a', log)
    const b = new Waiter('b', log)
    q.wait(a, 1_000)
    q.wait(b, 1_000)
    clock.advance(5)
    q.close()
    expect(log).toEqual(['dropped a', 'dropped b'])
    expect(a.closed && b.closed).toBe(true)
    expect(a.droppedAfter).toBe(5)
    expect(q.waiting).toBe(0)
    q.release()
    clock.advance(2_000)
    expect(log).toEqual(['dropped a', 'dropped b'])
  })

  it('release() without a slot taken does not go below zero', () => {
    const { q } = setup(1)
    q.release()
    expect(q.inflight).toBe(0)
    expect(q.tryAcquire()).toBe(true)
    expect(q.tryAcquire()).toBe(false)
  })

  it('stays as long as its queue while thousands pass through (dropped waiters are let go)', () => {
    const { clock, q, log } = setup(10)
    for (let i = 0; i < 10; i++) q.tryAcquire()
    // Steady overload: 20 wait at any time; every step one more arrives and one is granted.
    for (let i = 0; i < 20; i++) q.wait(new Waiter(`w${i}`, log), 1_000 + i)
    for (let step = 20; step < 50_000; step++) {
      q.wait(new Waiter(`w${step}`, log), 1_000)
      q.release()
      clock.advance(1)
    }
    expect(q.waiting).toBe(20)
    const held = (q as unknown as { items: unknown[] }).items.length
    expect(held).toBeLessThan(5_000)
  })

  it('refuses a bound that is not a whole number >= 1', () => {
    const clock = new FakeClock()
    expect(() => new SlotQueue(0, clock)).toThrow(RangeError)
    expect(() => new SlotQueue(1.5, clock)).toThrow(RangeError)
  })
})
