// SlicedQueue (sliced.ts): jobs run later, in order, about sliceMs of them per turn. A fake clock
// that each job advances, and a deferral the test runs by hand (one call: one turn).

import { describe, expect, it } from 'vitest'
import { SlicedQueue } from './sliced.js'

function harness(sliceMs: number) {
  let now = 0
  const turns: (() => void)[] = []
  const q = new SlicedQueue({ sliceMs, now: () => now, defer: (run) => turns.push(run) })
  /** A job that takes `ms` and records its name. */
  const ran: string[] = []
  const job = (name: string, ms: number) => () => {
    now += ms
    ran.push(name)
    return name
  }
  /** Runs the next turn; false when none is scheduled. */
  const turn = (): boolean => {
    const run = turns.shift()
    if (run === undefined) return false
    run()
    return true
  }
  return { q, job, ran, turn, turns }
}

describe('SlicedQueue', () => {
  it('runs nothing in the turn that queues; then in order, a slice per turn', async () => {
    const h = harness(5)
    const results = ['a', 'b', 'c', 'd', 'e'].map((n) => h.q.run(h.job(n, 2)))
    expect(h.ran).toEqual([])
    expect(h.turns).toHaveLength(1)
    expect(h.q.queued).toBe(5)
    // 2 + 2 = 4 < 5, then c passes it: the slice ends after c.
    h.turn()
    expect(h.ran).toEqual(['a', 'b', 'c'])
    expect(h.q.queued).toBe(2)
    h.turn()
    expect(h.ran).toEqual(['a', 'b', 'c', 'd', 'e'])
    expect(h.turn()).toBe(false)
    expect(await Promise.all(results)).toEqual(['a', 'b', 'c', 'd', 'e'])
  })

  it('a job longer than the slice runs alone in its turn, never cut', () => {
    const h = harness(5)
    void h.q.run(h.job('long', 50))
    void h.q.run(h.job('next', 1))
    h.turn()
    expect(h.ran).toEqual(['long'])
    h.turn()
    expect(h.ran).toEqual(['long', 'next'])
  })

  it('a job that throws rejects its own promise; the others run', async () => {
    const h = harness(5)
    const bad = h.q.run(() => {
      throw new Error('broken reply')
    })
    const good = h.q.run(h.job('ok', 1))
    h.turn()
    await expect(bad).rejects.toThrow('broken reply')
    expect(await good).toBe('ok')
  })

  it('jobs queued while a slice runs wait for a later turn; one turn scheduled at a time', () => {
    const h = harness(100)
    void h.q.run(() => {
      void h.q.run(h.job('queued inside', 1))
      return h.job('outer', 1)()
    })
    h.turn()
    expect(h.ran).toEqual(['outer'])
    expect(h.turns).toHaveLength(1)
    h.turn()
    expect(h.ran).toEqual(['outer', 'queued inside'])
    expect(h.turns).toHaveLength(0)
    void h.q.run(h.job('x', 1))
    void h.q.run(h.job('y', 1))
    expect(h.turns).toHaveLength(1)
  })

  it('posted jobs share the slices with the others, in the order queued', async () => {
    const h = harness(5)
    const read = h.q.run(h.job('read', 2))
    h.q.post(h.job('chunk', 2))
    h.q.post(h.job('report', 2))
    void h.q.run(h.job('read 2', 2))
    h.turn()
    expect(h.ran).toEqual(['read', 'chunk', 'report'])
    expect(await read).toBe('read')
    h.turn()
    expect(h.ran).toEqual(['read', 'chunk', 'report', 'read 2'])
  })

  it('a posted job that throws throws from its turn; the jobs after it still run in later turns', () => {
    const h = harness(100)
    h.q.post(() => {
      throw new Error('bug')
    })
    h.q.post(h.job('after', 1))
    expect(() => h.turn()).toThrow('bug')
    expect(h.ran).toEqual([])
    expect(h.turns).toHaveLength(1)
    h.turn()
    expect(h.ran).toEqual(['after'])
  })
})
