// The shared byte budget and the per-request lease (byte-budget.ts).

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ByteBudget, RequestLease, SMALL_REQUEST_BYTES } from './byte-budget.js'

const KB = 1024

describe('RequestLease', () => {
  it('draws on the shared budget only beyond the small allowance', () => {
    const budget = new ByteBudget(1024 * KB)
    const lease = new RequestLease(budget, 10 * 1024 * KB)
    expect(lease.takeReply(SMALL_REQUEST_BYTES)).toBe('ok')
    expect(budget.inUse).toBe(0)
    expect(lease.takeReply(100)).toBe('ok')
    expect(budget.inUse).toBe(100)
    expect(lease.takeBody(50)).toBe(true)
    expect(budget.inUse).toBe(150)
    expect(lease.bytes).toBe(SMALL_REQUEST_BYTES + 150)
    lease.release()
    expect(budget.inUse).toBe(0)
  })

  it('charges an encoded reply: refused when the budget cannot take it, unless forced (a write has run), and then later requests are refused until it is released', () => {
    const budget = new ByteBudget(100 * KB)
    const lease = new RequestLease(budget, 10 * 1024 * KB)
    expect(lease.takeReply(SMALL_REQUEST_BYTES + 10 * KB)).toBe('ok')
    // Its JSON in UTF-8 mode: six times the raw bytes, more than the whole budget.
    expect(lease.takeOutput(6 * 74 * KB, false)).toBe(false)
    expect(budget.inUse).toBe(10 * KB)
    expect(lease.takeOutput(6 * 74 * KB, true)).toBe(true)
    expect(budget.inUse).toBe(10 * KB + 6 * 74 * KB)
    expect(budget.highWater).toBe(budget.inUse)
    const other = new RequestLease(budget, 10 * 1024 * KB)
    expect(other.takeReply(SMALL_REQUEST_BYTES)).toBe('ok')
    expect(other.takeReply(1)).toBe('overloaded')
    lease.release()
    expect(budget.inUse).toBe(0)
    expect(other.takeReply(1)).toBe('ok')
    // Nothing is held for a request that is over.
    expect(lease.takeOutput(1024 * KB, true)).toBe(false)
    expect(budget.inUse).toBe(1)
  })

  it('refuses replies beyond maxReply as too large, before the budget is asked', () => {
    const budget = new ByteBudget(10)
    const lease = new RequestLease(budget, 1000)
    expect(lease.takeReply(1001)).toBe('too-large')
    expect(lease.takeReply(1000)).toBe('ok')
    expect(lease.takeReply(1)).toBe('too-large')
    // Body bytes do not count against maxReply.
    expect(lease.takeBody(10)).toBe(true)
  })

  it('refuses what the shared budget cannot take, and a small request is served even then', () => {
    const budget = new ByteBudget(100 * KB)
    const big = new RequestLease(budget, 10 * 1024 * KB)
    expect(big.takeReply(SMALL_REQUEST_BYTES + 100 * KB)).toBe('ok')
    expect(budget.inUse).toBe(100 * KB)
    const other = new RequestLease(budget, 10 * 1024 * KB)
    expect(other.takeReply(SMALL_REQUEST_BYTES + 1)).toBe('overloaded')
    expect(other.takeReply(SMALL_REQUEST_BYTES)).toBe('ok')
    expect(other.takeBody(1)).toBe(false)
    big.release()
    expect(other.takeReply(1)).toBe('ok')
    expect(budget.highWater).toBe(100 * KB)
  })

  it('once released, refuses everything (the reply of a request whose client left is skipped) and gives nothing back twice', () => {
    const budget = new ByteBudget(1024 * KB)
    const lease = new RequestLease(budget, 1024 * KB)
    lease.takeReply(SMALL_REQUEST_BYTES + 10)
    lease.release()
    lease.release()
    expect(lease.ended).toBe(true)
    expect(lease.takeReply(1)).toBe('overloaded')
    expect(lease.takeBody(1)).toBe(false)
    expect(budget.inUse).toBe(0)
  })

  it('never leaves bytes behind: any sequence of charges and releases returns the budget to zero', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(3), fc.oneof(fc.constant('reply'), fc.constant('body')), fc.nat(200 * KB)), { maxLength: 60 }),
        (ops) => {
          const budget = new ByteBudget(300 * KB)
          const leases = [0, 1, 2, 3].map(() => new RequestLease(budget, 150 * KB))
          for (const [i, kind, n] of ops) {
            const l = leases[i]!
            if (kind === 'reply') l.takeReply(n)
            else l.takeBody(n)
            expect(budget.inUse).toBeLessThanOrEqual(budget.limit)
          }
          for (const l of leases) l.release()
          expect(budget.inUse).toBe(0)
        },
      ),
      { seed: 15, numRuns: 300 },
    )
  })
})

describe('RequestLease.chargeAll (a request that waits in an endpoint queue)', () => {
  it('draws the bytes already held from the shared budget, and every later byte too', () => {
    const budget = new ByteBudget(10_000)
    const lease = new RequestLease(budget, 1 << 20)
    expect(lease.takeBody(3_000)).toBe(true)
    expect(budget.inUse).toBe(0) // within the free allowance
    expect(lease.chargeAll()).toBe(true)
    expect(budget.inUse).toBe(3_000)
    expect(lease.takeReply(1_000)).toBe('ok')
    expect(budget.inUse).toBe(4_000)
    expect(lease.chargeAll()).toBe(true) // once is enough
    expect(budget.inUse).toBe(4_000)
    lease.release()
    expect(budget.inUse).toBe(0)
  })

  it('refuses, changing nothing, when the budget cannot take what the request holds', () => {
    const budget = new ByteBudget(2_000)
    const lease = new RequestLease(budget, 1 << 20)
    expect(lease.takeBody(3_000)).toBe(true)
    expect(lease.chargeAll()).toBe(false)
    expect(budget.inUse).toBe(0)
    // Still within its allowance as before.
    expect(lease.takeBody(1_000)).toBe(true)
    expect(budget.inUse).toBe(0)
    lease.release()
    expect(lease.chargeAll()).toBe(false)
  })
})
