// Unit tests for the start queue (start-queue.ts): a bounded number of connect attempts at a time,
// admitted in batches from an injected `defer` (no timers, no sleeps), in arrival order, with
// promotion for what a request waits for and places freed by done() and leave().

import { afterEach, describe, expect, it, vi } from 'vitest'
import { StartQueue, WARM_UP_CONCURRENCY } from './start-queue.js'

/** A queue warmed up already (`warmUp` = `concurrency`) unless told. */
function harness(concurrency: number, holdMs?: number, warmUp = concurrency): { q: StartQueue<string>; started: string[]; run: () => number } {
  const deferred: (() => void)[] = []
  const q = new StartQueue<string>({ concurrency, warmUp, defer: (fn) => void deferred.push(fn), ...(holdMs !== undefined && { holdMs }) })
  const started: string[] = []
  /** Runs what was deferred; how many batches ran. */
  const run = (): number => {
    let n = 0
    while (deferred.length > 0) {
      deferred.shift()!()
      n++
    }
    return n
  }
  return { q, started, run }
}

afterEach(() => {
  vi.useRealTimers()
})

describe('StartQueue', () => {
  it('nothing starts in the turn that enters (one deferred batch); then at most `concurrency`, in arrival order', () => {
    const { q, started, run } = harness(3)
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.enter(k, () => started.push(k))
    expect(started).toEqual([])
    expect(run()).toBe(1)
    expect(started).toEqual(['a', 'b', 'c'])
    expect([q.active, q.queued]).toEqual([3, 2])
  })

  it('warm-up: at first `warmUp` at a time, one more with each attempt done, up to `concurrency`, and it stays there', () => {
    const { q, started, run } = harness(4, undefined, 2)
    const keys = 'abcdefghij'.split('')
    for (const k of keys) q.enter(k, () => started.push(k))
    run()
    expect(started).toEqual(['a', 'b'])
    q.done('a') // limit 3, one running: two start
    run()
    expect(started).toEqual(['a', 'b', 'c', 'd'])
    expect(q.active).toBe(3)
    q.done('b') // limit 4
    run()
    expect(started).toEqual(['a', 'b', 'c', 'd', 'e', 'f'])
    expect(q.active).toBe(4)
    for (const k of ['c', 'd', 'e', 'f']) q.done(k) // the limit stays at 4
    run()
    expect(started).toEqual(keys.slice(0, 10))
    expect(q.active).toBe(4)
  })

  it('the warm-up lasts at most warmUpMs from the first admission: first servers that do not answer cannot hold the start at 2', () => {
    vi.useFakeTimers({ now: 0 })
    const deferred: (() => void)[] = []
    const started: string[] = []
    const q = new StartQueue<string>({ concurrency: 4, warmUp: 2, warmUpMs: 1_000, holdMs: 5_000, defer: (fn) => void deferred.push(fn) })
    const run = (): void => {
      while (deferred.length > 0) deferred.shift()!()
    }
    for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) q.enter(k, () => started.push(k))
    run()
    expect(started).toEqual(['a', 'b']) // a and b never answer
    vi.advanceTimersByTime(999)
    run()
    expect(started).toEqual(['a', 'b'])
    vi.advanceTimersByTime(1)
    run()
    expect(started).toEqual(['a', 'b', 'c', 'd'])
    expect(q.active).toBe(4)
  })

  it('warm-up by default: WARM_UP_CONCURRENCY at first, never more than `concurrency`', () => {
    const deferred: (() => void)[] = []
    const started: string[] = []
    const q = new StartQueue<string>({ concurrency: 16, defer: (fn) => void deferred.push(fn) })
    const one = new StartQueue<string>({ concurrency: 1, defer: (fn) => void deferred.push(fn) })
    for (const k of ['a', 'b', 'c', 'd']) q.enter(k, () => started.push(k))
    for (const k of ['x', 'y']) one.enter(k, () => started.push(k))
    while (deferred.length > 0) deferred.shift()!()
    expect(WARM_UP_CONCURRENCY).toBe(2)
    expect(started).toEqual(['a', 'b', 'x'])
  })

  it('each done() frees a place for the next waiting attempt; done() of an owner without one changes nothing', () => {
    const { q, started, run } = harness(2)
    for (const k of ['a', 'b', 'c', 'd']) q.enter(k, () => started.push(k))
    run()
    q.done('a')
    q.done('a')
    q.done('nobody')
    run()
    expect(started).toEqual(['a', 'b', 'c'])
    q.done('b')
    q.done('c')
    run()
    expect(started).toEqual(['a', 'b', 'c', 'd'])
    expect([q.active, q.queued]).toEqual([1, 0])
  })

  it('promote() runs a waiting attempt at once, beyond the limit; its done() frees nothing for the others meanwhile', () => {
    const { q, started, run } = harness(1)
    for (const k of ['a', 'b', 'c']) q.enter(k, () => started.push(k))
    run()
    q.promote('c')
    expect(started).toEqual(['a', 'c'])
    expect(q.active).toBe(2)
    q.promote('c') // not waiting any more: nothing
    q.done('c')
    run()
    expect(started).toEqual(['a', 'c'])
    q.done('a')
    run()
    expect(started).toEqual(['a', 'c', 'b'])
  })

  it('leave() drops a waiting attempt and frees a running one', () => {
    const { q, started, run } = harness(1)
    for (const k of ['a', 'b', 'c']) q.enter(k, () => started.push(k))
    run()
    q.leave('b')
    q.leave('a')
    run()
    expect(started).toEqual(['a', 'c'])
    expect([q.active, q.queued]).toEqual([1, 0])
  })

  it('an owner entering again while waiting keeps its place, with the newer attempt', () => {
    const { q, started, run } = harness(1)
    q.enter('a', () => started.push('a'))
    q.enter('b', () => started.push('b1'))
    q.enter('c', () => started.push('c'))
    q.enter('b', () => started.push('b2'))
    run()
    q.done('a')
    run()
    expect(started).toEqual(['a', 'b2'])
  })

  it('a reconnect (enter after done) waits in line like a first start', () => {
    const { q, started, run } = harness(1)
    q.enter('a', () => started.push('a'))
    q.enter('b', () => started.push('b'))
    run()
    q.done('a') // a's connection failed; b goes
    q.enter('a', () => started.push('a again'))
    run()
    expect(started).toEqual(['a', 'b'])
    q.done('b')
    run()
    expect(started).toEqual(['a', 'b', 'a again'])
  })

  it('10,000 owners: one batch per freed place, never more than `concurrency` at once', () => {
    const { q, started, run } = harness(16)
    let most = 0
    for (let i = 0; i < 10_000; i++) {
      q.enter(`e${i}`, () => {
        started.push(`e${i}`)
        most = Math.max(most, q.active)
      })
    }
    run()
    while (started.length < 10_000) {
      for (const k of started.slice(-16)) q.done(k)
      run()
    }
    expect(most).toBe(16)
    expect(new Set(started).size).toBe(10_000)
  })

  it('an attempt holds its place at most holdMs (a server loading its dataset keeps its connection in the ready check)', () => {
    vi.useFakeTimers({ now: 0 })
    const { q, started, run } = harness(1, 5_000)
    q.enter('loading', () => started.push('loading'))
    q.enter('b', () => started.push('b'))
    run()
    vi.advanceTimersByTime(4_999)
    run()
    expect(started).toEqual(['loading'])
    vi.advanceTimersByTime(1)
    run()
    expect(started).toEqual(['loading', 'b'])
    q.done('b')
    q.done('loading') // late: nothing to free
    expect([q.active, q.queued]).toEqual([0, 0])
    expect(vi.getTimerCount()).toBe(0)
  })
})
