import { once } from 'node:events'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { describe, expect, it } from 'vitest'
import { Deadlines, type Expiring } from './deadlines.js'
import { FakeClock } from '../../test/helpers/fake-clock.js'

class Item implements Expiring {
  done = false
  expiredAt: number | null = null
  constructor(private readonly clock: FakeClock) {}
  expire(): void {
    expect(this.done).toBe(false)
    this.done = true
    this.expiredAt = this.clock.t
  }
}

describe('Deadlines', () => {
  it('expires an attempt at its deadline, not before', () => {
    const clock = new FakeClock()
    const d = new Deadlines(clock)
    const a = new Item(clock)
    d.add(a, 100, clock.now())
    clock.advance(99)
    expect(a.expiredAt).toBeNull()
    clock.advance(1)
    expect(a.expiredAt).toBe(100)
    expect(d.listCount).toBe(0)
    expect(d.held).toBe(0)
  })

  it('never expires a settled attempt', () => {
    const clock = new FakeClock()
    const d = new Deadlines(clock)
    const a = new Item(clock)
    d.add(a, 100, 0)
    clock.advance(10)
    a.done = true
    clock.advance(1000)
    expect(a.expiredAt).toBeNull()
    expect(d.held).toBe(0)
  })

  it('arms one timer per timeout period under steady one-at-a-time traffic, not one per attempt', () => {
    const clock = new FakeClock()
    const d = new Deadlines(clock)
    for (let i = 0; i < 10_000; i++) {
      const a = new Item(clock)
      d.add(a, 1000, clock.now())
      clock.advance(0.2) // 5,000 requests per second, each answered in 0.2 ms
      a.done = true
    }
    // 2 s of traffic with a 1 s timeout: a handful of timers, not 10,000.
    expect(clock.scheduled).toBeLessThanOrEqual(3)
    expect(d.held).toBeLessThanOrEqual(1)
  })

  it('lets go of settled attempts under steady traffic, when the list never empties', () => {
    const clock = new FakeClock()
    const d = new Deadlines(clock)
    // Always 10 attempts in flight, answered in order: at every add some attempt is still out.
    const live: Item[] = []
    for (let i = 0; i < 100_000; i++) {
      const a = new Item(clock)
      d.add(a, 2000, clock.now())
      live.push(a)
      if (live.length > 10) live.shift()!.done = true
      clock.advance(0.01)
    }
    expect(d.held).toBeLessThanOrEqual(11)
    // What the arrays keep is bounded by the cut (2 x 1024), not by the 100,000 attempts added.
    expect(d.retained).toBeLessThanOrEqual(2 * 1024 + 11)
  })

  it('expires the slow attempt among fast ones and keeps what settled from piling up behind it', () => {
    const clock = new FakeClock()
    const d = new Deadlines(clock)
    const slow = new Item(clock)
    d.add(slow, 500, 0)
    const fast: Item[] = []
    for (let i = 0; i < 5000; i++) {
      clock.advance(0.05)
      const a = new Item(clock)
      d.add(a, 500, clock.now())
      a.done = true
      fast.push(a)
    }
    // Compaction keeps the list near what is in flight (one), not 5,000.
    expect(d.held).toBeLessThan(2100)
    clock.advance(500)
    expect(slow.expiredAt).toBe(500)
    expect(fast.every((a) => a.expiredAt === null)).toBe(true)
    expect(d.held).toBe(0)
  })

  it('keeps separate durations apart: a shorter timeout added later expires first', () => {
    const clock = new FakeClock()
    const d = new Deadlines(clock)
    const long = new Item(clock)
    const short = new Item(clock)
    d.add(long, 1000, 0)
    clock.advance(10)
    d.add(short, 50, clock.now())
    clock.advance(50)
    expect(short.expiredAt).toBe(60)
    expect(long.expiredAt).toBeNull()
    clock.advance(940)
    expect(long.expiredAt).toBe(1000)
  })

  it('expires every attempt due in one firing and re-arms for the next one', () => {
    const clock = new FakeClock()
    const d = new Deadlines(clock)
    const due = [new Item(clock), new Item(clock), new Item(clock)]
    for (const a of due) d.add(a, 100, 0)
    clock.advance(50)
    const later = new Item(clock)
    d.add(later, 100, clock.now())
    expect(clock.scheduled).toBe(1)
    clock.advance(50)
    expect(due.map((a) => a.expiredAt)).toEqual([100, 100, 100])
    expect(later.expiredAt).toBeNull()
    clock.advance(50)
    expect(later.expiredAt).toBe(150)
    expect(clock.scheduled).toBe(2)
  })

  it('an expiry that adds an attempt to the same list (a retry) is handled in the same pass', () => {
    const clock = new FakeClock()
    const d = new Deadlines(clock)
    const retry = new Item(clock)
    const first: Expiring & { done: boolean } = {
      done: false,
      expire() {
        this.done = true
        d.add(retry, 100, clock.now())
      },
    }
    d.add(first, 100, 0)
    clock.advance(100)
    expect(first.done).toBe(true)
    expect(retry.expiredAt).toBeNull()
    clock.advance(100)
    expect(retry.expiredAt).toBe(200)
  })

  it('matches a timer per attempt over random traffic (model check)', () => {
    // Deterministic pseudo-random sequence (LCG): adds with a few durations, settles, clock moves.
    let seed = 12345
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed / 2 ** 31
    }
    for (let round = 0; round < 8; round++) {
      const clock = new FakeClock()
      const d = new Deadlines(clock)
      const live: { item: Item; deadline: number; settleAt: number }[] = []
      for (let step = 0; step < 2000; step++) {
        const ms = [5, 20, 100][Math.floor(rnd() * 3)]!
        const item = new Item(clock)
        d.add(item, ms, clock.now())
        live.push({ item, deadline: clock.now() + ms, settleAt: clock.now() + rnd() * ms * 1.5 })
        const target = clock.now() + rnd() * 2
        // Replies that come before their deadline and before `target` settle first (earlier than
        // their settleAt, which changes nothing: they must not expire either way).
        for (const l of live) if (!l.item.done && l.settleAt < l.deadline && l.settleAt <= target) l.item.done = true
        clock.advance(target - clock.now())
      }
      for (const l of live) if (!l.item.done && l.settleAt < l.deadline) l.item.done = true
      clock.advance(1000)
      let expired = 0
      for (const l of live) {
        if (l.settleAt < l.deadline) {
          expect(l.item.expiredAt).toBeNull()
          continue
        }
        // Unanswered by its deadline: expired, at its deadline (the timers here fire on time).
        expired++
        expect(l.item.expiredAt).not.toBeNull()
        expect(l.item.expiredAt!).toBeGreaterThanOrEqual(l.deadline)
        expect(l.item.expiredAt! - l.deadline).toBeLessThan(1)
      }
      expect(expired).toBeGreaterThan(100)
      expect(d.held).toBe(0)
      expect(d.listCount).toBe(0)
    }
  })
})

// The Node clock (NODE_CLOCK) against a real loopback socket: a reply that arrived while the event
// loop was blocked past the deadline settles its attempt before the deadline's verdict (ioTimeout).
describe('Deadlines on the Node clock', () => {
  it('an attempt whose reply is in the kernel when its deadline passes is not expired', async () => {
    const server = net.createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    const [peer] = (await once(server, 'connection')) as [net.Socket]
    await once(client, 'connect')
    try {
      const d = new Deadlines()
      let expired = false
      const attempt: { done: boolean; expire(): void } = {
        done: false,
        expire() {
          expired = true
          this.done = true
        },
      }
      const replied = new Promise<void>((resolve) =>
        client.once('data', () => {
          attempt.done = true
          resolve()
        }),
      )
      d.add(attempt, 50, performance.now())
      peer.write('+OK\r\n')
      // The reply arrives during this turn, and the deadline passes during it too.
      const until = Date.now() + 200
      while (Date.now() < until) {
        // A turn of a busy event loop.
      }
      await replied
      await new Promise((r) => setTimeout(r, 100))
      expect(expired).toBe(false)
    } finally {
      client.destroy()
      peer.destroy()
      server.close()
    }
  })

  it('an attempt that gets no reply is expired', async () => {
    const d = new Deadlines()
    const expired = new Promise<void>((resolve) => d.add({ done: false, expire: resolve }, 20, performance.now()))
    await expired
  })
})
