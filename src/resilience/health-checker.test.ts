// Unit tests for the active health checker: ROLE replies (canned, from plain fake targets) turn
// into endpoint state and change events; scheduling (jittered interval, start/stop, add/remove,
// no overlapping checks, the budget of checks per second, batched ticks, skipped unconnected
// endpoints) runs on vitest fake timers with an injected random source and clocks.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { BusyCheckError } from '../core/errors.js'
import { endpointId } from '../core/topology.js'
import { EndpointState } from './endpoint-state.js'
import { HEALTH_DEFAULTS, HealthChecker, MAX_PER_TICK, TICK_MS, type HealthChange, type HealthCheckerOptions, type HealthTarget } from './health-checker.js'

// ROLE replies as plain values: integers as numbers, nested replica entries as strings (parseRole
// reads these as well as the connection's Buffers and decimal text).
const master = (offset: number, replicas: [string, string, string][] = []): unknown[] => ['master', offset, replicas]
const slave = (host: string, port: number, link: string, offset: number): unknown[] => ['slave', host, port, link, offset]

interface Deferred {
  resolve(v: unknown): void
  reject(e: Error): void
}

/** A plain endpoint: `reply` is what the next ROLE answers (an Error rejects); `hold` keeps it pending. */
class FakeTarget implements HealthTarget {
  readonly state: EndpointState
  reply: unknown = master(0)
  hold = false
  calls = 0
  /** Virtual times (Date.now under fake timers) at which ROLE was sent. */
  readonly at: number[] = []
  readonly pending: Deferred[] = []

  constructor(readonly id: string) {
    this.state = new EndpointState(id)
  }

  role(): Promise<unknown> {
    this.calls++
    this.at.push(Date.now())
    if (this.hold) return new Promise((resolve, reject) => this.pending.push({ resolve, reject }))
    return this.reply instanceof Error ? Promise.reject(this.reply) : Promise.resolve(this.reply)
  }
}

interface Harness {
  checker: HealthChecker
  events: { id: string; change: HealthChange }[]
  /** Events other than 'checked', as compact strings. */
  changes(): string[]
  clock: { now: number }
}

function harness(opts: Partial<HealthCheckerOptions> = {}): Harness {
  const events: Harness['events'] = []
  const clock = { now: 1_000 }
  const checker = new HealthChecker({
    ...HEALTH_DEFAULTS,
    intervalMs: 1_000,
    random: () => 0.5,
    now: () => clock.now,
    // The schedule's clock: vitest's fake Date (the timers are fake too).
    monotonic: () => Date.now(),
    onChange: (t, change) => events.push({ id: t.id, change }),
    ...opts,
  })
  const changes = (): string[] =>
    events
      .filter((e) => e.change.kind !== 'checked')
      .map(({ id, change: c }) =>
        c.kind === 'role' ? `${id} role ${c.from}->${c.to}` : c.kind === 'down' ? `${id} down: ${c.reason}` : `${id} ${c.kind}`,
      )
  return { checker, events, changes, clock }
}

describe('HealthChecker: ROLE results', () => {
  it("keys replica acks like endpoint ids (selection looks a replica up by its spec.id): IPv6 in brackets", async () => {
    const h = harness()
    const t = new FakeTarget('10.0.0.1:6379')
    t.reply = master(3129700, [['fd00::2', '6379', '3129650'], ['10.0.0.2', '6380', '3129600']])
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    expect([...t.state.replicaAcks]).toEqual([
      ['[fd00::2]:6379', 3129650],
      [endpointId('10.0.0.2', 6380), 3129600],
    ])
  })

  it('a first good check: role unknown -> primary, up, checked; offset, replica acks and check time recorded', async () => {
    const h = harness()
    const t = new FakeTarget('10.0.0.1:6379')
    t.reply = master(3129659, [
      ['10.0.0.2', '6379', '3129242'],
      ['10.0.0.3', '6380', '3129100'],
    ])
    h.checker.add(t)
    h.clock.now = 5_000
    await h.checker.checkNow(t.id)
    expect(h.changes()).toEqual(['10.0.0.1:6379 role unknown->primary', '10.0.0.1:6379 up'])
    expect(h.events.at(-1)?.change).toEqual({ kind: 'checked' })
    const s = t.state
    expect(s.healthy).toBe(true)
    expect(s.role).toBe('primary')
    expect(s.offset).toBe(3129659)
    expect(s.link).toBe('none')
    expect(s.primaryHost).toBeNull()
    expect([...s.replicaAcks]).toEqual([
      ['10.0.0.2:6379', 3129242],
      ['10.0.0.3:6380', 3129100],
    ])
    expect(s.lastCheckMs).toBe(5_000)
    expect(s.consecutiveFailures).toBe(0)
  })

  it('a replica: primary host/port, link state and processed offset', async () => {
    const h = harness()
    const t = new FakeTarget('10.0.0.2:6379')
    t.reply = slave('10.0.0.1', 6379, 'connected', 3167038)
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    expect(h.changes()).toEqual(['10.0.0.2:6379 role unknown->replica', '10.0.0.2:6379 up'])
    expect(t.state).toMatchObject({ role: 'replica', offset: 3167038, primaryHost: '10.0.0.1', primaryPort: 6379, link: 'connected', healthy: true })
    expect(t.state.replicaAcks.size).toBe(0)
  })

  it.each(['connect', 'connecting', 'sync', 'handshake', 'connected'] as const)('link state %s is kept as reported', async (link) => {
    const h = harness()
    const t = new FakeTarget('r:1')
    t.reply = slave('10.0.0.1', 6379, link, 10)
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    expect(t.state.link).toBe(link)
  })

  it('an unrecognised link state is "unknown" (never mistaken for connected); a -1 offset (syncing) is 0', async () => {
    const h = harness()
    const t = new FakeTarget('r:1')
    t.reply = slave('10.0.0.1', 6379, 'weird-new-state', -1)
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    expect(t.state.link).toBe('unknown')
    expect(t.state.offset).toBe(0)
  })

  it('failover seen by ROLE: master -> slave emits a role event, the link and offset follow, acks are cleared', async () => {
    const h = harness()
    const t = new FakeTarget('old:6379')
    t.reply = master(5_000, [['new', '6379', '4990']])
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    t.reply = slave('new', 6379, 'sync', 4_200)
    await h.checker.checkNow(t.id)
    expect(h.changes()).toEqual(['old:6379 role unknown->primary', 'old:6379 up', 'old:6379 role primary->replica'])
    expect(t.state).toMatchObject({ role: 'replica', offset: 4_200, primaryHost: 'new', primaryPort: 6379, link: 'sync', healthy: true })
    expect(t.state.replicaAcks.size).toBe(0)
    // Promoted again (slave -> master): the event goes the other way.
    t.reply = master(6_000)
    await h.checker.checkNow(t.id)
    expect(h.changes().at(-1)).toBe('old:6379 role replica->primary')
    expect(t.state.link).toBe('none')
    expect(t.state.primaryHost).toBeNull()
  })

  it('no role event while the role stays the same; each good check emits "checked" and updates the offsets', async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    t.reply = master(100, [['r', '1', '90']])
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    t.reply = master(250, [['r', '1', '240']])
    await h.checker.checkNow(t.id)
    expect(h.changes()).toEqual(['p:1 role unknown->primary', 'p:1 up'])
    expect(h.events.filter((e) => e.change.kind === 'checked')).toHaveLength(2)
    expect(t.state.offset).toBe(250)
    expect(t.state.replicaAcks.get('r:1')).toBe(240)
  })

  it("a primary's offset does not go back on a stale ROLE (an offset learned after a write stays)", async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    t.reply = master(100)
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    t.state.offset = 500 // as roleAfterWrite records it
    t.reply = master(400) // a ROLE that was answered before that write
    await h.checker.checkNow(t.id)
    expect(t.state.offset).toBe(500)
  })

  it('a new replication history: once the target has reset the offset (as the gateway does on a new replid), the lower ROLE offset is taken', async () => {
    // Redis restarted without persistence starts again at offset 0. The gateway's target resets
    // state.offset when INFO's master_replid changes; the checker must then take ROLE's offset.
    const h = harness()
    const t = new FakeTarget('p:1')
    t.reply = master(10_000_000, [['r', '1', '9999000']])
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    t.reply = new Error('connect ECONNREFUSED')
    await h.checker.checkNow(t.id)
    t.state.offset = 0
    t.state.replicaAcks.clear()
    t.reply = master(1_200, [['r', '1', '1100']])
    await h.checker.checkNow(t.id)
    expect(t.state.healthy).toBe(true)
    expect(t.state.offset).toBe(1_200)
    expect(t.state.replicaAcks.get('r:1')).toBe(1_100)
  })

  it('a sentinel (or anything not master/slave) has role unknown', async () => {
    const h = harness()
    const t = new FakeTarget('s:26379')
    t.reply = ['sentinel', ['mymaster']]
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    expect(t.state.role).toBe('unknown')
    expect(t.state.healthy).toBe(true)
  })
})

describe('HealthChecker: up/down', () => {
  it('a failed check marks a healthy endpoint down with the reason; a good one brings it back up', async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    t.reply = master(1)
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    t.reply = new Error('ROLE timed out')
    h.clock.now = 9_000
    await h.checker.checkNow(t.id)
    expect(t.state.healthy).toBe(false)
    expect(t.state.consecutiveFailures).toBe(1)
    expect(t.state.lastCheckMs).toBe(9_000)
    // The role stays what it was: a down endpoint is excluded by `healthy`, not by forgetting.
    expect(t.state.role).toBe('primary')
    await h.checker.checkNow(t.id) // still failing: no second 'down'
    expect(t.state.consecutiveFailures).toBe(2)
    t.reply = master(2)
    await h.checker.checkNow(t.id)
    expect(h.changes()).toEqual(['p:1 role unknown->primary', 'p:1 up', 'p:1 down: ROLE timed out', 'p:1 up'])
    expect(t.state.consecutiveFailures).toBe(0)
    expect(t.state.healthy).toBe(true)
  })

  it('a malformed ROLE reply counts as a failed check', async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    t.reply = master(1)
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    t.reply = 'OK'
    await h.checker.checkNow(t.id)
    expect(t.state.healthy).toBe(false)
    expect(h.changes().at(-1)).toMatch(/^p:1 down: ROLE: unexpected reply/)
  })

  it('an endpoint that never answered emits no "down" (it was never up) but counts failures', async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    t.reply = new Error('ECONNREFUSED')
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    await h.checker.checkNow(t.id)
    expect(h.changes()).toEqual([])
    expect(t.state.healthy).toBe(false)
    expect(t.state.consecutiveFailures).toBe(2)
  })

  it('unhealthyAfter: down only after that many consecutive failures; a good check in between resets the count', async () => {
    const h = harness({ unhealthyAfter: 3 })
    const t = new FakeTarget('p:1')
    t.reply = master(1)
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    const fail = new Error('timeout')
    for (const reply of [fail, fail, master(1), fail, fail]) {
      t.reply = reply
      await h.checker.checkNow(t.id)
    }
    expect(t.state.healthy).toBe(true)
    expect(h.changes()).toEqual(['p:1 role unknown->primary', 'p:1 up'])
    t.reply = fail
    await h.checker.checkNow(t.id)
    expect(t.state.healthy).toBe(false)
    expect(h.changes().at(-1)).toBe('p:1 down: timeout')
  })

  it('a check that waited behind a backlog on a live connection (BusyCheckError) counts neither way', async () => {
    const h = harness({ unhealthyAfter: 2 })
    const t = new FakeTarget('p:1')
    t.reply = master(1)
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    t.reply = new Error('timeout')
    await h.checker.checkNow(t.id)
    expect(t.state.consecutiveFailures).toBe(1)
    t.reply = new BusyCheckError('waited behind other commands')
    for (let i = 0; i < 5; i++) await h.checker.checkNow(t.id)
    expect(t.state.healthy).toBe(true)
    expect(t.state.consecutiveFailures).toBe(1)
    expect(t.state.lastError).toBe('waited behind other commands')
    // A real failure after it still counts on from the one before.
    t.reply = new Error('timeout')
    await h.checker.checkNow(t.id)
    expect(t.state.healthy).toBe(false)
    expect(h.changes()).toEqual(['p:1 role unknown->primary', 'p:1 up', 'p:1 down: timeout'])
  })

  it('markDown: a healthy endpoint goes down at once, once; unknown or already-down endpoints are left alone', async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    t.reply = master(1)
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    h.checker.markDown(t.id, 'connection closed')
    expect(t.state.healthy).toBe(false)
    h.checker.markDown(t.id, 'connection closed')
    h.checker.markDown('nobody:1', 'x')
    expect(h.changes()).toEqual(['p:1 role unknown->primary', 'p:1 up', 'p:1 down: connection closed'])
    // The next good check brings it back.
    await h.checker.checkNow(t.id)
    expect(h.changes().at(-1)).toBe('p:1 up')
    expect(t.state.healthy).toBe(true)
  })

  it('markDown of a removed endpoint does nothing', async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    h.checker.remove(t.id)
    h.checker.markDown(t.id, 'connection closed')
    expect(t.state.healthy).toBe(true)
    expect(h.changes().filter((c) => c.includes('down'))).toEqual([])
  })

  it('checkNow of an unknown id resolves without calling anything', async () => {
    const h = harness()
    await expect(h.checker.checkNow('nobody:1')).resolves.toBeUndefined()
    expect(h.events).toEqual([])
  })
})

describe('HealthChecker: removal and in-flight checks', () => {
  it('an in-flight check of a removed endpoint does not revive it (success or failure)', async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    t.hold = true
    h.checker.add(t)
    const ok = h.checker.checkNow(t.id)
    const bad = h.checker.checkNow(t.id)
    expect(t.pending).toHaveLength(2)
    h.checker.remove(t.id)
    t.pending[0]!.resolve(master(42))
    t.pending[1]!.reject(new Error('late failure'))
    await Promise.all([ok, bad])
    expect(h.events).toEqual([])
    expect(t.state).toMatchObject({ healthy: false, role: 'unknown', offset: 0, consecutiveFailures: 0, lastCheckMs: 0 })
  })

  it('an endpoint removed and added again (a new target, same id) is not written by the old one\'s late check', async () => {
    const h = harness()
    const old = new FakeTarget('p:1')
    old.hold = true
    h.checker.add(old)
    const late = h.checker.checkNow(old.id)
    h.checker.remove(old.id)
    const fresh = new FakeTarget('p:1')
    fresh.reply = slave('x', 1, 'connected', 7)
    h.checker.add(fresh)
    await h.checker.checkNow(fresh.id)
    old.pending[0]!.resolve(master(99))
    await late
    expect(fresh.state.role).toBe('replica')
    expect(old.state.role).toBe('unknown')
    expect(h.changes()).toEqual(['p:1 role unknown->replica', 'p:1 up'])
  })
})

describe('HealthChecker: scheduling (fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('nextDelay stays within [interval*(1-j), interval*(1+j)]: random 0 -> lower bound, ~1 -> upper bound', () => {
    let r = 0
    const h = harness({ intervalMs: 2_000, jitter: 0.2, random: () => r })
    expect(h.checker.nextDelay()).toBe(1_600)
    r = 0.5
    expect(h.checker.nextDelay()).toBe(2_000)
    r = 1 - 2 ** -32
    expect(h.checker.nextDelay()).toBe(2_400)
    for (let i = 0; i <= 1_000; i++) {
      r = i / 1_001
      const d = h.checker.nextDelay()
      expect(d).toBeGreaterThanOrEqual(1_600)
      expect(d).toBeLessThanOrEqual(2_400)
    }
  })

  it('the default interval is 2 s with jitter', () => {
    expect(HEALTH_DEFAULTS.intervalMs).toBe(2_000)
    expect(HEALTH_DEFAULTS.jitter).toBeGreaterThan(0)
    expect(HEALTH_DEFAULTS.jitter).toBeLessThan(1)
  })

  it('nothing is checked before start(); start() checks every endpoint at once', async () => {
    const h = harness()
    const a = new FakeTarget('a:1')
    const b = new FakeTarget('b:1')
    h.checker.add(a)
    h.checker.add(b)
    await vi.advanceTimersByTimeAsync(10_000)
    expect(a.calls + b.calls).toBe(0)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(0)
    expect([a.calls, b.calls]).toEqual([1, 1])
    expect(a.state.healthy && b.state.healthy).toBe(true)
    h.checker.stop()
  })

  it('random 0: the next check comes at exactly interval*(1-j)', async () => {
    const h = harness({ intervalMs: 1_000, jitter: 0.2, random: () => 0 })
    const t = new FakeTarget('p:1')
    h.checker.add(t)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(0)
    expect(t.at).toEqual([0])
    await vi.advanceTimersByTimeAsync(799)
    expect(t.calls).toBe(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(t.at).toEqual([0, 800])
    await vi.advanceTimersByTimeAsync(800)
    expect(t.at).toEqual([0, 800, 1_600])
    h.checker.stop()
  })

  it('random ~1: the next check comes at interval*(1+j), not later', async () => {
    const h = harness({ intervalMs: 1_000, jitter: 0.2, random: () => 1 - 2 ** -32 })
    const t = new FakeTarget('p:1')
    h.checker.add(t)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(1_199)
    expect(t.at).toEqual([0])
    await vi.advanceTimersByTimeAsync(1)
    expect(t.at).toEqual([0, 1_200])
    h.checker.stop()
  })

  it('each interval draws its own jitter from the injected random source', async () => {
    const draws = [0, 1 - 2 ** -32, 0.5, 0.25]
    let i = 0
    const h = harness({ intervalMs: 1_000, jitter: 0.2, random: () => draws[i++ % draws.length]! })
    const t = new FakeTarget('p:1')
    h.checker.add(t)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(800 + 1_200 + 1_000 + 900)
    expect(t.at).toEqual([0, 800, 2_000, 3_000, 3_900])
    h.checker.stop()
  })

  it('checks keep coming after failures (a down endpoint is re-checked on the interval)', async () => {
    const h = harness({ random: () => 0.5 })
    const t = new FakeTarget('p:1')
    t.reply = new Error('ECONNREFUSED')
    h.checker.add(t)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(3_000)
    expect(t.at).toEqual([0, 1_000, 2_000, 3_000])
    t.reply = master(5)
    await vi.advanceTimersByTimeAsync(1_000)
    expect(t.state.healthy).toBe(true)
    h.checker.stop()
  })

  it('add() while running checks the new endpoint at once', async () => {
    const h = harness()
    h.checker.start()
    await vi.advanceTimersByTimeAsync(300)
    const t = new FakeTarget('late:1')
    h.checker.add(t)
    await vi.advanceTimersByTimeAsync(0)
    expect(t.at).toEqual([300])
    h.checker.stop()
  })

  it('remove() stops the endpoint\'s checks; others go on', async () => {
    const h = harness()
    const a = new FakeTarget('a:1')
    const b = new FakeTarget('b:1')
    h.checker.add(a)
    h.checker.add(b)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(2_500)
    expect([a.calls, b.calls]).toEqual([3, 3])
    h.checker.remove(a.id)
    await vi.advanceTimersByTimeAsync(10_000)
    expect(a.calls).toBe(3)
    expect(b.calls).toBe(13)
    expect(vi.getTimerCount()).toBe(1)
    h.checker.stop()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('a check in flight at remove() is neither applied nor rescheduled', async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    t.hold = true
    h.checker.add(t)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(0)
    expect(t.calls).toBe(1)
    h.checker.remove(t.id)
    t.pending[0]!.resolve(master(1))
    await vi.advanceTimersByTimeAsync(10_000)
    expect(t.calls).toBe(1)
    expect(t.state.healthy).toBe(false)
    expect(h.events).toEqual([])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('checks of one endpoint never overlap: a slow check delays the next one instead of stacking', async () => {
    const h = harness({ random: () => 0.5 })
    const t = new FakeTarget('p:1')
    t.hold = true
    h.checker.add(t)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(5_000)
    expect(t.calls).toBe(1)
    t.hold = false
    t.pending[0]!.resolve(master(1))
    await vi.advanceTimersByTimeAsync(999)
    expect(t.calls).toBe(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(t.at).toEqual([0, 6_000])
    h.checker.stop()
  })

  it('stop() ends all checks, also one in flight at the time; start() again resumes', async () => {
    const h = harness()
    const t = new FakeTarget('p:1')
    h.checker.add(t)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(0)
    t.hold = true
    await vi.advanceTimersByTimeAsync(1_000)
    expect(t.calls).toBe(2)
    h.checker.stop()
    t.hold = false
    t.pending[0]!.resolve(master(1))
    await vi.advanceTimersByTimeAsync(10_000)
    expect(t.calls).toBe(2)
    expect(vi.getTimerCount()).toBe(0)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(0)
    expect(t.calls).toBe(3)
    h.checker.stop()
  })
})

describe('HealthChecker: a budget of checks per second, batched ticks (fake timers, injected random)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  /** `n` targets named t0..t(n-1), added to the checker. */
  const targets = (h: Harness, n: number): FakeTarget[] =>
    Array.from({ length: n }, (_, i) => {
      const t = new FakeTarget(`t${i}:1`)
      h.checker.add(t)
      return t
    })

  it('the interval is intervalMs up to intervalMs x budget endpoints, then n / budget seconds; each reload of the budget applies at once', () => {
    let budget = 100
    const h = harness({ intervalMs: 1_000, jitter: 0.2, random: () => 0.5, maxChecksPerSecond: () => budget })
    targets(h, 100)
    expect(h.checker.intervalMs()).toBe(1_000)
    for (let i = 100; i < 400; i++) h.checker.add(new FakeTarget(`x${i}:1`))
    expect(h.checker.intervalMs()).toBe(4_000)
    expect(h.checker.nextDelay()).toBe(4_000)
    budget = 50
    expect(h.checker.intervalMs()).toBe(8_000)
    budget = 0 // no budget: the interval as configured
    expect(h.checker.intervalMs()).toBe(1_000)
  })

  it('within the budget, start() checks every endpoint at once (as before); beyond it, first checks are spread over the stretched interval', async () => {
    const small = harness({ intervalMs: 1_000, maxChecksPerSecond: 100 })
    const few = targets(small, 50)
    small.checker.start()
    await vi.advanceTimersByTimeAsync(0)
    expect(few.every((t) => t.at[0] === 0)).toBe(true)
    small.checker.stop()

    let i = 0
    const big = harness({ intervalMs: 1_000, jitter: 0.2, maxChecksPerSecond: 100, random: () => (i++ % 100) / 100 })
    const many = targets(big, 1_000) // interval 10 s
    big.checker.start()
    await vi.advanceTimersByTimeAsync(10_000)
    expect(many.every((t) => t.calls >= 1)).toBe(true)
    // The first round: spread, at most a tick's share of the budget at once.
    const firsts = many.map((t) => t.at[0]!)
    const perSecond = new Map<number, number>()
    for (const at of firsts) perSecond.set(Math.floor(at / 1_000), (perSecond.get(Math.floor(at / 1_000)) ?? 0) + 1)
    expect(Math.max(...perSecond.values())).toBeLessThanOrEqual(110)
    expect(perSecond.size).toBe(10)
    big.checker.stop()
  })

  it('the steady rate over all endpoints stays within the budget (+ the jitter)', async () => {
    let i = 0
    const h = harness({ intervalMs: 1_000, jitter: 0.2, maxChecksPerSecond: 200, random: () => (i++ % 97) / 97 })
    const all = targets(h, 2_000) // 10 s
    h.checker.start()
    await vi.advanceTimersByTimeAsync(20_000)
    const before = all.reduce((a, t) => a + t.calls, 0)
    await vi.advanceTimersByTimeAsync(30_000)
    const rate = (all.reduce((a, t) => a + t.calls, 0) - before) / 30
    expect(rate).toBeGreaterThan(200 / 1.25)
    expect(rate).toBeLessThanOrEqual(200 / 0.8)
    h.checker.stop()
  })

  it('checks due within a tick run in one timer callback; a check runs at most TICK_MS after it is due', async () => {
    const draws = [0, 0.5] // first delays beyond the budget: 0 and half the interval
    let i = 0
    const h = harness({ intervalMs: 1_000, jitter: 0, maxChecksPerSecond: 1, random: () => draws[i++ % 2]! })
    const [a, b] = targets(h, 2) // interval 2 s
    h.checker.start()
    await vi.advanceTimersByTimeAsync(0)
    expect([a!.at, b!.at]).toEqual([[0], []])
    await vi.advanceTimersByTimeAsync(1_000 + TICK_MS)
    expect(b!.at).toEqual([1_000])
    // a's next (2 s after its first) and b's (3 s) each on time.
    await vi.advanceTimersByTimeAsync(2_000)
    expect([a!.at, b!.at]).toEqual([[0, 2_000], [1_000, 3_000]])
    expect(vi.getTimerCount()).toBe(1)
    h.checker.stop()
  })

  it('one timer for all endpoints; at most MAX_PER_TICK checks per callback, the rest in the next turn', async () => {
    const h = harness({ intervalMs: 1_000, maxChecksPerSecond: 100_000 })
    const all = targets(h, MAX_PER_TICK + 50)
    for (const t of all) t.hold = true
    h.checker.start()
    expect(vi.getTimerCount()).toBe(1)
    await vi.advanceTimersToNextTimerAsync()
    expect(all.filter((t) => t.calls === 1)).toHaveLength(MAX_PER_TICK)
    await vi.advanceTimersByTimeAsync(1)
    expect(all.every((t) => t.calls === 1)).toBe(true)
    expect(vi.getTimerCount()).toBe(0) // every check in flight: nothing queued
    h.checker.stop()
  })

  it('an endpoint whose connection is not up is not checked (its close marked it down); once connected it is, on its schedule', async () => {
    const h = harness({ intervalMs: 1_000, random: () => 0.5 })
    const t = new FakeTarget('p:1') as FakeTarget & { up: boolean; connected(): boolean }
    t.up = false
    t.connected = () => t.up
    h.checker.add(t)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(5_000)
    expect(t.calls).toBe(0)
    expect(h.events).toEqual([])
    t.up = true
    await vi.advanceTimersByTimeAsync(1_000)
    expect(t.calls).toBe(1)
    expect(t.state.healthy).toBe(true)
    h.checker.stop()
  })

  it('checkNow (a connection just became ready) puts the next scheduled check an interval after it', async () => {
    const h = harness({ intervalMs: 1_000, random: () => 0.5 })
    const t = new FakeTarget('p:1')
    h.checker.add(t)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(600)
    expect(t.at).toEqual([0])
    await h.checker.checkNow(t.id)
    expect(t.at).toEqual([0, 600])
    await vi.advanceTimersByTimeAsync(900)
    expect(t.calls).toBe(2)
    await vi.advanceTimersByTimeAsync(100)
    expect(t.at).toEqual([0, 600, 1_600])
    h.checker.stop()
  })

  it('an endpoint added again under the same id replaces the old one in the schedule (one check per interval)', async () => {
    const h = harness({ intervalMs: 1_000, random: () => 0.5 })
    const old = new FakeTarget('p:1')
    h.checker.add(old)
    h.checker.start()
    await vi.advanceTimersByTimeAsync(0)
    const fresh = new FakeTarget('p:1')
    h.checker.add(fresh)
    // Added right after a tick: checked at the next one (TICK_MS later), then every second.
    await vi.advanceTimersByTimeAsync(2_000 + TICK_MS)
    expect(old.calls).toBe(1)
    expect(fresh.at).toEqual([TICK_MS, 1_000 + TICK_MS, 2_000 + TICK_MS])
    expect(vi.getTimerCount()).toBe(1)
    h.checker.stop()
  })

  it('a check that has already parsed ROLE (a RoleReport) is taken as it is', async () => {
    const h = harness()
    const t = new FakeTarget('r:1')
    t.reply = { role: 'replica', offset: 7, primaryHost: 'p', primaryPort: 1, link: 'connected', replicas: [] }
    h.checker.add(t)
    await h.checker.checkNow(t.id)
    expect(t.state).toMatchObject({ role: 'replica', offset: 7, primaryHost: 'p', link: 'connected', healthy: true })
  })
})
