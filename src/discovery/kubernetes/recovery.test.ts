// ApiRecovery with an injected probe, sleep and random (no real sleeps): when it probes, what ends
// an outage (a probe answer that says ready or cannot tell, an HTTP answer to a list or watch, a
// success), that each end resets and wakes every member once, and that answers outside an outage
// (a persistent 403) wake nobody.

import { describe, expect, test } from 'vitest'
import { ApiRecovery, type ApiState, type BackoffMember } from './recovery.js'

function harness(probeAnswers: (number | 'unreachable')[]) {
  const sleeps: number[] = []
  const pending: (() => void)[] = []
  const states: string[] = []
  let probes = 0
  const recovery = new ApiRecovery({
    probe: async () => {
      const a = probeAnswers[Math.min(probes++, probeAnswers.length - 1)]!
      if (a === 'unreachable') throw new Error('connect ECONNREFUSED')
      return a
    },
    random: () => 0.5,
    sleep: (ms, signal) => {
      sleeps.push(ms)
      return new Promise<void>((r) => {
        pending.push(r)
        signal.addEventListener('abort', () => r())
      })
    },
    onState: (s: ApiState, why: string) => states.push(`${s}: ${why}`),
  })
  const resets: string[] = []
  const member = (name: string): BackoffMember => ({ resetBackoff: () => resets.push(name) })
  const tick = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
  }
  /** Ends the sleep in progress (the probe interval passed). */
  const elapse = async (): Promise<void> => {
    pending.shift()?.()
    await tick()
  }
  return { recovery, sleeps, states, resets, member, tick, elapse, probes: () => probes }
}

describe('ApiRecovery', () => {
  test('answers outside an outage (a persistent 403, a 500) wake nobody and start no probe', async () => {
    const h = harness([200])
    h.recovery.join(h.member('a'))
    h.recovery.start()
    h.recovery.answered(403)
    h.recovery.answered(500)
    h.recovery.succeeded()
    await h.tick()
    expect(h.recovery.state).toBe('up')
    expect(h.resets).toEqual([])
    expect(h.sleeps).toEqual([])
    expect(h.probes()).toBe(0)
    await h.recovery.stop()
  })

  test('unreachable: probes /readyz (jittered, 0.25-0.5 s, then up to 1-2 s) until it is ready, then wakes every member once', async () => {
    const h = harness(['unreachable', 'unreachable', 500, 'unreachable', 200])
    for (const n of ['services/a', 'endpointslices/a', 'services/b']) h.recovery.join(h.member(n))
    h.recovery.start()
    h.recovery.unreachable()
    h.recovery.unreachable() // a second failure changes nothing
    await h.tick()
    expect(h.recovery.state).toBe('down')
    for (let i = 0; i < 4; i++) await h.elapse()
    // Probes 1-4: two refused, a 500 (starting: not ready, keep probing), refused again.
    expect(h.probes()).toBe(4)
    expect(h.resets).toEqual([])
    expect(h.recovery.state).toBe('down')
    await h.elapse()
    expect(h.probes()).toBe(5)
    expect(h.recovery.state).toBe('answering')
    expect(h.resets).toEqual(['services/a', 'endpointslices/a', 'services/b'])
    // random 0.5: three quarters of each interval (500 ms doubling, capped at 2 s).
    expect(h.sleeps).toEqual([375, 750, 1500, 1500, 1500])
    // No more probes once it answered.
    await h.tick()
    expect(h.sleeps).toHaveLength(5)
    // A list or watch then succeeds: up, and everyone (a member still failing with 403, asleep) is woken again.
    h.recovery.succeeded()
    expect(h.recovery.state).toBe('up')
    expect(h.resets).toHaveLength(6)
    expect(h.states.map((s) => s.split(':')[0])).toEqual(['down', 'answering', 'up'])
    await h.recovery.stop()
  })

  test('a 401, 403 or 404 from /readyz also ends the outage: the API server answers, it just cannot say more', async () => {
    for (const status of [401, 403, 404]) {
      const h = harness([status])
      h.recovery.join(h.member('a'))
      h.recovery.start()
      h.recovery.unreachable()
      await h.elapse()
      expect(h.recovery.state, String(status)).toBe('answering')
      expect(h.resets).toEqual(['a'])
      await h.recovery.stop()
    }
  })

  test('an HTTP answer to a list or watch ends the outage before the probe does (403s while the API server starts)', async () => {
    const h = harness(['unreachable'])
    h.recovery.join(h.member('a'))
    h.recovery.join(h.member('b'))
    h.recovery.start()
    h.recovery.unreachable()
    await h.tick()
    h.recovery.answered(403)
    expect(h.recovery.state).toBe('answering')
    expect(h.resets).toEqual(['a', 'b'])
    // Further 403s do not wake anyone again; the first success does.
    h.recovery.answered(403)
    expect(h.resets).toHaveLength(2)
    h.recovery.succeeded()
    expect(h.resets).toHaveLength(4)
    // The probe loop noticed and ended without probing.
    await h.elapse()
    expect(h.probes()).toBe(0)
    await h.recovery.stop()
  })

  test('down again while answering: probing starts over from the shortest interval', async () => {
    const h = harness(['unreachable', 'unreachable', 200])
    h.recovery.start()
    h.recovery.unreachable()
    await h.elapse()
    await h.elapse()
    h.recovery.answered(500)
    await h.elapse()
    h.recovery.unreachable()
    await h.elapse()
    expect(h.recovery.state).toBe('answering')
    expect(h.sleeps).toEqual([375, 750, 1500, 375])
    await h.recovery.stop()
  })

  test('stop ends the probe loop; nothing probes after it', async () => {
    const h = harness(['unreachable'])
    h.recovery.start()
    h.recovery.unreachable()
    await h.tick()
    await h.recovery.stop()
    await h.tick()
    expect(h.probes()).toBe(0)
    h.recovery.unreachable()
    await h.tick()
    expect(h.sleeps).toHaveLength(1)
  })

  test('probe intervals: doubling from the base up to the cap, jittered down to half', () => {
    const r = (x: number) => new ApiRecovery({ probe: async () => 200, random: () => x })
    expect([0, 1, 2, 3, 10].map((n) => r(0).probeDelayMs(n))).toEqual([250, 500, 1000, 1000, 1000])
    expect([0, 1, 2, 3, 10].map((n) => r(0.999).probeDelayMs(n))).toEqual([499, 999, 1999, 1999, 1999])
  })
})
