// The circuit breaker's state machine, driven by an injected clock (no sleeps, no fake timers):
// every transition, the open-time doubling and its cap, probe limits and timeouts, Retry-After
// arithmetic, which errors count, and a seeded random walk that checks the invariants.

import { ReplyError } from '../upstream/resp-parser.js'
import { describe, expect, test } from 'vitest'
import { createPrng } from '../balancer/prng.js'
import {
  ConnectionLostError,
  NoEndpointError,
  NotConnectedError,
  OverloadedError,
  ReadOnlyError,
  RedisReplyError,
  StalledError,
  TimeoutError,
  UpstreamResetError,
} from '../core/errors.js'
import {
  BREAKER_DEFAULTS,
  CircuitBreaker,
  countsAsBreakerFailure,
  openDurationMs,
  retryAfterSeconds,
  type BreakerOptions,
  type BreakerState,
} from './breaker.js'

interface Harness {
  b: CircuitBreaker
  clock: { t: number }
  log: string[]
}

function make(opts: Partial<BreakerOptions> = {}, t0 = 1_000_000): Harness {
  const clock = { t: t0 }
  const log: string[] = []
  const b = new CircuitBreaker(opts, () => clock.t, (from, to, reason) => log.push(`${from}->${to}:${reason}`))
  return { b, clock, log }
}

function fail(b: CircuitBreaker, n: number, probe = false): void {
  for (let i = 0; i < n; i++) b.onFailure(probe)
}

/** Opens a breaker with default-ish options by consecutive failures. */
function opened(opts: Partial<BreakerOptions> = {}): Harness {
  const h = make(opts)
  fail(h.b, h.b.state.kind === 'closed' ? (opts.consecutiveFailures ?? 5) : 0)
  expect(h.b.state.kind).toBe('open')
  return h
}

/** Moves an open breaker to half-open by letting its open time pass. */
function toHalfOpen(h: Harness): void {
  const s = h.b.state
  if (s.kind !== 'open') throw new Error(`expected open, got ${s.kind}`)
  h.clock.t = s.until
  expect(h.b.state.kind).toBe('half-open')
}

describe('options', () => {
  test('defaults are the documented ones', () => {
    expect(BREAKER_DEFAULTS).toEqual({
      consecutiveFailures: 5,
      failureRateThreshold: 0.5,
      windowMs: 10_000,
      minimumVolume: 20,
      baseOpenMs: 1_000,
      maxOpenMs: 30_000,
      halfOpenProbes: 1,
      probeTimeoutMs: 1_000,
    })
  })

  test('undefined keeps the default; nonsense is refused', () => {
    const h = make({ consecutiveFailures: undefined })
    fail(h.b, 4)
    expect(h.b.state.kind).toBe('closed')
    fail(h.b, 1)
    expect(h.b.state.kind).toBe('open')
    const clock = (): number => 0
    expect(() => new CircuitBreaker({ consecutiveFailures: 0 }, clock)).toThrow(/consecutiveFailures/)
    expect(() => new CircuitBreaker({ consecutiveFailures: 1.5 }, clock)).toThrow(RangeError)
    expect(() => new CircuitBreaker({ failureRateThreshold: 0 }, clock)).toThrow(/failureRateThreshold/)
    expect(() => new CircuitBreaker({ failureRateThreshold: 1.1 }, clock)).toThrow(RangeError)
    expect(() => new CircuitBreaker({ windowMs: 0 }, clock)).toThrow(/windowMs/)
    expect(() => new CircuitBreaker({ minimumVolume: 0 }, clock)).toThrow(/minimumVolume/)
    expect(() => new CircuitBreaker({ baseOpenMs: -1 }, clock)).toThrow(/baseOpenMs/)
    expect(() => new CircuitBreaker({ baseOpenMs: 2000, maxOpenMs: 1000 }, clock)).toThrow(/maxOpenMs/)
    expect(() => new CircuitBreaker({ halfOpenProbes: 0 }, clock)).toThrow(/halfOpenProbes/)
    expect(() => new CircuitBreaker({ probeTimeoutMs: Number.NaN }, clock)).toThrow(/probeTimeoutMs/)
  })

  test('the constructor does not read the clock', () => {
    let reads = 0
    new CircuitBreaker({}, () => reads++)
    expect(reads).toBe(0)
  })
})

describe('closed', () => {
  test('admits everything, without a probe slot', () => {
    const { b } = make()
    expect(b.state).toEqual({ kind: 'closed', consecutiveFailures: 0 })
    expect(b.tryAcquire()).toEqual({ ok: true, probe: false })
    expect(b.nextAttemptAt()).toBe(1_000_000)
  })

  test('opens after 5 consecutive failures', () => {
    const { b, clock, log } = make()
    fail(b, 4)
    expect(b.state).toEqual({ kind: 'closed', consecutiveFailures: 4 })
    b.onFailure(false)
    expect(b.state).toEqual({ kind: 'open', openedAt: clock.t, until: clock.t + 1000, openings: 1 })
    expect(log).toEqual(['closed->open:consecutive-failures'])
  })

  test('a success resets the consecutive count', () => {
    const { b } = make()
    fail(b, 4)
    b.onSuccess(false)
    expect(b.state).toEqual({ kind: 'closed', consecutiveFailures: 0 })
    fail(b, 4)
    expect(b.state.kind).toBe('closed')
  })

  test('opens when the failure rate exceeds the threshold with the minimum volume', () => {
    // Two failures then a success: never 5 in a row, but 2/3 of calls fail.
    const { b, log } = make()
    let calls = 0
    while (b.state.kind === 'closed' && calls < 100) {
      if (calls % 3 === 2) b.onSuccess(false)
      else b.onFailure(false)
      calls++
    }
    // Calls 1..20: the 20th call (index 19, a failure) brings the volume to 20 with 14/20 failed.
    expect(calls).toBe(20)
    expect(b.state.kind).toBe('open')
    expect(log).toEqual(['closed->open:failure-rate'])
  })

  test('no opening by rate below the minimum volume, however bad the rate', () => {
    const { b } = make({ minimumVolume: 20, consecutiveFailures: 1000 })
    fail(b, 19)
    expect(b.state.kind).toBe('closed')
    b.onFailure(false)
    expect(b.state.kind).toBe('open')
  })

  test('a rate exactly at the threshold does not open (it must exceed it)', () => {
    const { b } = make({ consecutiveFailures: 1000 })
    // Success first, so that every failure lands on exactly half (k failures of 2k calls).
    for (let i = 0; i < 100; i++) {
      b.onSuccess(false)
      b.onFailure(false)
    }
    expect(b.state.kind).toBe('closed')
  })

  test('the rate only counts the sliding window', () => {
    const { b, clock } = make({ consecutiveFailures: 1000, windowMs: 10_000 })
    fail(b, 15) // 15 failures at t0
    clock.t += 10_000 // they have left the window
    for (let i = 0; i < 10; i++) b.onSuccess(false)
    fail(b, 9) // 9/19 in the window: below volume anyway
    b.onFailure(false) // 10/20 = 0.5: not above
    expect(b.state.kind).toBe('closed')
    b.onFailure(false) // 11/21
    expect(b.state.kind).toBe('open')
  })

  test('successes in the window dilute the rate', () => {
    const { b } = make({ consecutiveFailures: 1000 })
    for (let i = 0; i < 100; i++) b.onSuccess(false)
    fail(b, 99) // 99/199 < 0.5
    expect(b.state.kind).toBe('closed')
    fail(b, 2) // 101/201
    expect(b.state.kind).toBe('open')
  })
})

describe('open', () => {
  test('refuses until `until`, with retryAfterMs counting down', () => {
    const { b, clock } = opened()
    const t0 = clock.t
    expect(b.tryAcquire()).toEqual({ ok: false, retryAfterMs: 1000 })
    clock.t = t0 + 999
    expect(b.tryAcquire()).toEqual({ ok: false, retryAfterMs: 1 })
    expect(b.nextAttemptAt()).toBe(t0 + 1000)
    expect(b.state.kind).toBe('open')
  })

  test('reports while open are ignored (they were sent before it opened)', () => {
    const { b, clock } = opened()
    const before = b.state
    clock.t += 10
    b.onFailure(false)
    b.onSuccess(false)
    b.onFailure(true)
    b.onSuccess(true)
    b.release(true)
    expect(b.state).toBe(before)
  })

  test('moves to half-open lazily once the open time has passed', () => {
    const { b, clock, log } = opened()
    clock.t += 1000
    expect(log).toEqual(['closed->open:consecutive-failures']) // nothing happens without a call
    expect(b.state).toEqual({ kind: 'half-open', probesInFlight: 0, openings: 1 })
    expect(log).toEqual(['closed->open:consecutive-failures', 'open->half-open:open-elapsed'])
  })

  test('tryAcquire and nextAttemptAt also notice the open time has passed', () => {
    const a = opened()
    a.clock.t += 5000
    expect(a.b.tryAcquire()).toEqual({ ok: true, probe: true })
    const c = opened()
    c.clock.t += 1000
    expect(c.b.nextAttemptAt()).toBe(c.clock.t)
    expect(c.b.state.kind).toBe('half-open')
  })
})

describe('half-open', () => {
  test('admits one probe by default; the rest are refused until its deadline', () => {
    const h = opened()
    toHalfOpen(h)
    const t = h.clock.t
    expect(h.b.tryAcquire()).toEqual({ ok: true, probe: true })
    expect(h.b.state).toEqual({ kind: 'half-open', probesInFlight: 1, openings: 1 })
    h.clock.t = t + 300
    expect(h.b.tryAcquire()).toEqual({ ok: false, retryAfterMs: 700 })
    expect(h.b.nextAttemptAt()).toBe(t + 1000)
  })

  test('admits at most halfOpenProbes concurrent probes', () => {
    const h = opened({ halfOpenProbes: 3 })
    toHalfOpen(h)
    for (let i = 0; i < 3; i++) {
      expect(h.b.tryAcquire()).toEqual({ ok: true, probe: true })
      h.clock.t += 10
    }
    expect(h.b.tryAcquire().ok).toBe(false)
    expect(h.b.state).toEqual({ kind: 'half-open', probesInFlight: 3, openings: 1 })
  })

  test('a probe success closes and resets openings', () => {
    const h = opened()
    toHalfOpen(h)
    h.b.tryAcquire()
    h.b.onFailure(true) // reopen: openings 2
    expect(h.b.state).toMatchObject({ kind: 'open', openings: 2 })
    toHalfOpen(h)
    expect(h.b.tryAcquire()).toEqual({ ok: true, probe: true })
    h.b.onSuccess(true)
    expect(h.b.state).toEqual({ kind: 'closed', consecutiveFailures: 0 })
    expect(h.log.at(-1)).toBe('half-open->closed:probe-succeeded')
    // The next opening is a first one again: base time.
    fail(h.b, 5)
    const s = h.b.state
    expect(s).toMatchObject({ kind: 'open', openings: 1 })
    if (s.kind === 'open') expect(s.until - s.openedAt).toBe(1000)
  })

  test('closing forgets the outcomes from before the outage', () => {
    const h = make({ consecutiveFailures: 1000, minimumVolume: 20 })
    fail(h.b, 20) // opens by rate
    expect(h.b.state.kind).toBe('open')
    toHalfOpen(h)
    h.b.tryAcquire()
    h.b.onSuccess(true)
    h.b.onFailure(false) // 1/1 in a fresh window: below volume
    expect(h.b.state).toEqual({ kind: 'closed', consecutiveFailures: 1 })
  })

  test('a probe failure reopens with a doubled time, capped at maxOpenMs', () => {
    const h = opened({ baseOpenMs: 1000, maxOpenMs: 5000 })
    const durations: number[] = []
    for (let i = 0; i < 6; i++) {
      const s = h.b.state as Extract<BreakerState, { kind: 'open' }>
      durations.push(s.until - s.openedAt)
      toHalfOpen(h)
      h.b.tryAcquire()
      h.clock.t += 5
      h.b.onFailure(true)
      expect(h.log.at(-1)).toBe('half-open->open:probe-failed')
    }
    expect(durations).toEqual([1000, 2000, 4000, 5000, 5000, 5000])
    expect(h.b.state).toMatchObject({ kind: 'open', openings: 7, openedAt: h.clock.t, until: h.clock.t + 5000 })
  })

  test('a probe not reported within probeTimeoutMs counts as a failure', () => {
    const h = opened({ probeTimeoutMs: 250 })
    toHalfOpen(h)
    const t = h.clock.t
    h.b.tryAcquire()
    h.clock.t = t + 249
    expect(h.b.state.kind).toBe('half-open')
    h.clock.t = t + 250
    expect(h.b.state).toEqual({ kind: 'open', openedAt: t + 250, until: t + 250 + 2000, openings: 2 })
    expect(h.log.at(-1)).toBe('half-open->open:probe-timeout')
    // The late answer changes nothing.
    h.b.onSuccess(true)
    expect(h.b.state.kind).toBe('open')
  })

  test('a probe answering after its deadline is a timeout even if nothing looked in between', () => {
    const h = opened({ probeTimeoutMs: 250 })
    toHalfOpen(h)
    h.b.tryAcquire()
    h.clock.t += 300
    h.b.onSuccess(true)
    expect(h.b.state).toMatchObject({ kind: 'open', openings: 2 })
    expect(h.log.at(-1)).toBe('half-open->open:probe-timeout')
  })

  test('with several probes, the earliest deadline decides', () => {
    const h = opened({ halfOpenProbes: 2, probeTimeoutMs: 100 })
    toHalfOpen(h)
    const t = h.clock.t
    h.b.tryAcquire()
    h.clock.t = t + 50
    h.b.tryAcquire()
    expect(h.b.nextAttemptAt()).toBe(t + 100)
    h.clock.t = t + 100
    expect(h.b.state.kind).toBe('open')
  })

  test('non-probe reports do not decide (they were sent before the breaker opened)', () => {
    const h = opened()
    toHalfOpen(h)
    h.b.onSuccess(false)
    h.b.onFailure(false)
    expect(h.b.state).toEqual({ kind: 'half-open', probesInFlight: 0, openings: 1 })
  })

  test('a probe report with no probe in flight is stale and ignored', () => {
    const h = opened()
    toHalfOpen(h)
    h.b.onSuccess(true)
    h.b.onFailure(true)
    expect(h.b.state).toEqual({ kind: 'half-open', probesInFlight: 0, openings: 1 })
  })

  test('release frees a probe slot without a verdict', () => {
    const h = opened()
    toHalfOpen(h)
    h.b.tryAcquire()
    h.b.release(true)
    expect(h.b.state).toEqual({ kind: 'half-open', probesInFlight: 0, openings: 1 })
    h.b.release(true) // nothing left to release
    h.b.release(false)
    expect(h.b.state).toEqual({ kind: 'half-open', probesInFlight: 0, openings: 1 })
    expect(h.b.tryAcquire()).toEqual({ ok: true, probe: true })
    // The released probe's deadline no longer applies: only the new one's.
    h.clock.t += 999
    expect(h.b.state.kind).toBe('half-open')
  })

  test('release in closed is a no-op', () => {
    const h = make()
    h.b.release(false)
    expect(h.b.state).toEqual({ kind: 'closed', consecutiveFailures: 0 })
  })
})

describe('trippedAt', () => {
  test('is the start of the failure episode, kept across reopenings, cleared on close', () => {
    const h = make()
    expect(h.b.trippedAt).toBeUndefined()
    fail(h.b, 5)
    const t0 = h.clock.t
    expect(h.b.trippedAt).toBe(t0)
    toHalfOpen(h)
    h.b.tryAcquire()
    h.b.onFailure(true)
    expect(h.b.trippedAt).toBe(t0)
    toHalfOpen(h)
    h.b.tryAcquire()
    h.b.onSuccess(true)
    expect(h.b.trippedAt).toBeUndefined()
  })
})

describe('openDurationMs and retryAfterSeconds', () => {
  test('doubling from base, capped, and finite for huge openings counts', () => {
    const o = { baseOpenMs: 1000, maxOpenMs: 30_000 }
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => openDurationMs(o, n))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ])
    expect(openDurationMs(o, 1e9)).toBe(30_000)
    expect(openDurationMs({ baseOpenMs: 1, maxOpenMs: Number.MAX_VALUE }, 10_000)).toBe(2 ** 52)
  })

  test('Retry-After is whole seconds rounded up, at least 1', () => {
    expect(retryAfterSeconds(1000, 1000)).toBe(1)
    expect(retryAfterSeconds(500, 1000)).toBe(1) // already passed
    expect(retryAfterSeconds(1001, 1000)).toBe(1)
    expect(retryAfterSeconds(2000, 1000)).toBe(1)
    expect(retryAfterSeconds(2001, 1000)).toBe(2)
    expect(retryAfterSeconds(31_000, 1000)).toBe(30)
    expect(retryAfterSeconds(Number.NaN, 0)).toBe(1)
  })

  test('Retry-After from an open breaker', () => {
    const h = opened()
    toHalfOpen(h)
    h.b.tryAcquire()
    h.b.onFailure(true) // open for 2 s
    h.clock.t += 500
    const r = h.b.tryAcquire()
    expect(r).toEqual({ ok: false, retryAfterMs: 1500 })
    expect(retryAfterSeconds(h.b.nextAttemptAt(), h.clock.t)).toBe(2)
  })
})

describe('countsAsBreakerFailure', () => {
  const errno = (code: string): Error => Object.assign(new Error(`connect ${code} 10.0.0.1:6379`), { code })

  test('transport failures count', () => {
    expect(countsAsBreakerFailure(new TimeoutError('endpoint a did not answer within 1000 ms'))).toBe(true)
    expect(countsAsBreakerFailure(new StalledError('reset: nothing read since the command'))).toBe(true)
    expect(countsAsBreakerFailure(new ConnectionLostError('Connection is closed.'))).toBe(true)
    expect(countsAsBreakerFailure(new NotConnectedError('not connected'))).toBe(true)
    expect(countsAsBreakerFailure(errno('ECONNREFUSED'))).toBe(true)
    expect(countsAsBreakerFailure(errno('ECONNRESET'))).toBe(true)
    expect(countsAsBreakerFailure('not even an Error')).toBe(true)
  })

  test('busy-server replies count: LOADING, MASTERDOWN, READONLY (write to a demoted primary)', () => {
    for (const m of [
      'LOADING Redis is loading the dataset in memory',
      'MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to no',
      "READONLY You can't write against a read only replica.",
    ]) {
      expect(countsAsBreakerFailure(new ReplyError(m)), m).toBe(true)
    }
  })

  test("a Redis Cluster's TRYAGAIN and CLUSTERDOWN do not count: the cluster's state, not the node's health", () => {
    for (const m of ['TRYAGAIN Multiple keys request during rehashing of slot', 'CLUSTERDOWN The cluster is down', 'MOVED 3999 127.0.0.1:6381']) {
      expect(countsAsBreakerFailure(new ReplyError(m)), m).toBe(false)
    }
  })

  test('Redis reply errors never count', () => {
    for (const m of [
      'WRONGTYPE Operation against a key holding the wrong kind of value',
      'ERR syntax error',
      "ERR unknown command 'FOO'",
      'NOSCRIPT No matching script. Please use EVAL.',
      'EXECABORT Transaction discarded because of previous errors.',
    ]) {
      expect(countsAsBreakerFailure(new ReplyError(m)), m).toBe(false)
    }
    expect(countsAsBreakerFailure(new RedisReplyError('WRONGTYPE Operation against a key'))).toBe(false)
  })

  test('converted gateway errors: upstream ones count, own-side ones do not', () => {
    expect(countsAsBreakerFailure(new TimeoutError('endpoint a did not answer'))).toBe(true)
    expect(countsAsBreakerFailure(new UpstreamResetError('connection lost'))).toBe(true)
    expect(countsAsBreakerFailure(new NoEndpointError('endpoint a is not connected'))).toBe(true)
    expect(countsAsBreakerFailure(new OverloadedError('too many in flight'))).toBe(false)
    expect(countsAsBreakerFailure(new ReadOnlyError('instance is read-only for maintenance'))).toBe(false)
  })
})

describe('random walks (seeded) never reach an invalid state', () => {
  const kinds = ['closed', 'open', 'half-open'] as const
  const allowed = new Set([
    'closed->open',
    'open->half-open',
    'half-open->open',
    'half-open->closed',
  ])
  const reasons = new Set<string>()

  for (const seed of [1, 7, 42, 1234, 99_991]) {
    test(`seed ${seed}`, () => {
      const rng = createPrng(seed)
      const opts: BreakerOptions = {
        consecutiveFailures: 1 + rng.int(6),
        failureRateThreshold: 0.2 + rng.next() * 0.8,
        windowMs: 1000 + rng.int(10_000),
        minimumVolume: 1 + rng.int(30),
        baseOpenMs: 100 + rng.int(1000),
        maxOpenMs: 2000 + rng.int(20_000),
        halfOpenProbes: 1 + rng.int(3),
        probeTimeoutMs: 50 + rng.int(1000),
      }
      const clock = { t: rng.int(1e9) }
      let lastKind: BreakerState['kind'] = 'closed'
      const violations: string[] = []
      const b = new CircuitBreaker(opts, () => clock.t, (from, to, reason) => {
        reasons.add(reason)
        if (from !== lastKind) violations.push(`transition from ${from} but was ${lastKind}`)
        if (!allowed.has(`${from}->${to}`)) violations.push(`bad edge ${from}->${to}`)
        lastKind = to
      })
      const outstanding: boolean[] = [] // probe flags of admitted, unreported requests
      const seen = new Set<string>()

      for (let step = 0; step < 20_000; step++) {
        const r = rng.next()
        if (r < 0.15) {
          // Mostly short steps, sometimes long enough to cross open times and probe deadlines.
          clock.t += rng.next() < 0.9 ? rng.int(100) : rng.int(40_000)
        } else if (r < 0.5) {
          const kind = b.state.kind
          const a = b.tryAcquire()
          if (a.ok) {
            if (kind === 'open') violations.push('admitted while open')
            if (a.probe !== (kind === 'half-open')) violations.push(`probe=${a.probe} in ${kind}`)
            outstanding.push(a.probe)
          } else {
            if (kind === 'closed') violations.push('refused while closed')
            if (!(a.retryAfterMs >= 0 && Number.isFinite(a.retryAfterMs))) violations.push(`retryAfterMs ${a.retryAfterMs}`)
            if (kind === 'open' && !(a.retryAfterMs > 0)) violations.push('open with nothing to wait')
          }
        } else if (outstanding.length > 0) {
          const i = rng.int(outstanding.length)
          const probe = outstanding[i]!
          outstanding.splice(i, 1)
          const what = rng.next()
          // Failures are likelier than in life, so every state is visited often.
          if (what < 0.45) b.onFailure(probe)
          else if (what < 0.85) b.onSuccess(probe)
          else if (what < 0.95) b.release(probe)
          // else: never reported (the probe timeout must clean it up)
        } else {
          if (rng.next() < 0.5) b.onFailure(false)
          else b.onSuccess(false)
        }

        const s = b.state
        seen.add(s.kind)
        if (s.kind !== lastKind) violations.push(`state ${s.kind} but last transition to ${lastKind}`)
        const next = b.nextAttemptAt()
        if (!(next >= clock.t)) violations.push(`nextAttemptAt ${next} before now ${clock.t}`)
        switch (s.kind) {
          case 'closed':
            if (!Number.isInteger(s.consecutiveFailures) || s.consecutiveFailures < 0) violations.push(`cf ${s.consecutiveFailures}`)
            if (s.consecutiveFailures >= opts.consecutiveFailures) violations.push(`closed with ${s.consecutiveFailures} failures`)
            if (next !== clock.t) violations.push('closed but next attempt later')
            if (b.trippedAt !== undefined) violations.push('closed with trippedAt')
            break
          case 'open':
            if (!Number.isInteger(s.openings) || s.openings < 1) violations.push(`openings ${s.openings}`)
            if (s.until - s.openedAt !== openDurationMs(opts, s.openings)) violations.push('open duration')
            if (!(s.until > clock.t && s.openedAt <= clock.t)) violations.push('open window does not contain now')
            if (next !== s.until) violations.push('open: next attempt is not until')
            if (b.trippedAt === undefined || b.trippedAt > s.openedAt) violations.push('open without trippedAt')
            break
          case 'half-open':
            if (!Number.isInteger(s.probesInFlight) || s.probesInFlight < 0) violations.push(`probes ${s.probesInFlight}`)
            if (s.probesInFlight > opts.halfOpenProbes) violations.push(`probes ${s.probesInFlight} > ${opts.halfOpenProbes}`)
            if (s.openings < 1) violations.push(`openings ${s.openings}`)
            if (next > clock.t + opts.probeTimeoutMs) violations.push('half-open waits longer than a probe timeout')
            break
        }
        if (violations.length > 0) break
      }
      expect(violations).toEqual([])
      // The walk is only worth something if it went everywhere.
      for (const k of kinds) expect(seen.has(k), k).toBe(true)
    })
  }

  test('together, the walks took every kind of transition', () => {
    expect([...reasons].sort()).toEqual([
      'consecutive-failures',
      'failure-rate',
      'open-elapsed',
      'probe-failed',
      'probe-succeeded',
      'probe-timeout',
    ])
  })
})

describe('CircuitBreaker.reset', () => {
  test('closes an open breaker at once (role change), and forgets the failure count', () => {
    let now = 0
    const seen: string[] = []
    const b = new CircuitBreaker({}, () => now, (from, to, reason) => seen.push(`${from}->${to} ${reason}`))
    for (let i = 0; i < 5; i++) b.onFailure(false)
    expect(b.state.kind).toBe('open')
    b.reset('role-changed')
    expect(b.state.kind).toBe('closed')
    expect(b.tryAcquire()).toEqual({ ok: true, probe: false })
    expect(seen.at(-1)).toBe('open->closed role-changed')
    // A fresh start: four failures do not reopen it.
    for (let i = 0; i < 4; i++) b.onFailure(false)
    expect(b.state.kind).toBe('closed')
    now += 1
  })
})
