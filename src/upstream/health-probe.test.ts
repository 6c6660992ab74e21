// Unit tests for one health check's commands (health-probe.ts): ROLE every time, INFO replication
// only when the replication id may have changed (first check of a connection, ROLE's role, primary
// or link changed, its offset went back, every REPLICATION_REFRESH_CHECKS checks), against a
// plain fake endpoint; the timeout on an injected clock (vitest fake timers).

import { afterEach, describe, expect, it, vi } from 'vitest'
import { BusyCheckError } from '../core/errors.js'
import { EndpointState } from '../resilience/endpoint-state.js'
import { REPLICATION_REFRESH_CHECKS, healthTarget, historyMayHaveChanged } from './health-probe.js'
import type { PooledEndpoint } from './pool.js'
import type { RoleReport } from '../core/role.js'

class FakeEndpoint {
  readonly state = new EndpointState('10.0.0.1:6379')
  role: unknown[] = ['master', '100', []]
  replId = 'a'.repeat(40)
  /** Commands sent, in order. */
  readonly sent: string[] = []
  hold = false
  readonly timedOut: number[] = []
  readonly client = {
    up: true,
    connects: 1,
    // As RespConnection.timedOut: busy (kept) when replies arrived since `reads`.
    connection: { reads: 7, timedOut: (reads: number): boolean => (this.timedOut.push(reads), this.client.connection.reads !== reads) },
    role: (): Promise<unknown> => {
      this.sent.push('ROLE')
      return this.hold ? new Promise(() => {}) : Promise.resolve(this.role)
    },
    replication: (): Promise<{ replId: string | null; offset: number }> => {
      this.sent.push('INFO')
      return Promise.resolve({ replId: this.replId, offset: 0 })
    },
  }
  get pooled(): PooledEndpoint {
    return { id: this.state.id, state: this.state, client: this.client } as unknown as PooledEndpoint
  }
}

function setup(): { ep: FakeEndpoint; check: () => Promise<RoleReport> } {
  const ep = new FakeEndpoint()
  const target = healthTarget(ep.pooled, () => 1_000)
  return { ep, check: () => target.role() as Promise<RoleReport> }
}

afterEach(() => {
  vi.useRealTimers()
})

describe('healthTarget: INFO replication only when the replication id may have changed', () => {
  it('the first check of a connection asks ROLE and INFO; the next ones ROLE only, until the refresh', async () => {
    const { ep, check } = setup()
    const r = await check()
    expect(r).toMatchObject({ role: 'primary', offset: 100 })
    expect(ep.state.replId).toBe('a'.repeat(40))
    expect(ep.sent).toEqual(['ROLE', 'INFO'])
    ep.sent.length = 0
    for (let i = 0; i < REPLICATION_REFRESH_CHECKS; i++) await check()
    expect(ep.sent).toEqual(Array(REPLICATION_REFRESH_CHECKS).fill('ROLE'))
    ep.sent.length = 0
    await check()
    expect(ep.sent).toEqual(['ROLE', 'INFO'])
  })

  it('a new connection (a reconnect, a restarted server) reads it again', async () => {
    const { ep, check } = setup()
    await check()
    ep.client.connects++
    ep.sent.length = 0
    await check()
    expect(ep.sent).toEqual(['ROLE', 'INFO'])
  })

  it.each([
    ['the role changed (failover)', ['slave', '10.0.0.9', '6379', 'connected', '100']],
    ['the offset went back (a new history)', ['master', '5', []]],
  ])('%s: INFO right after ROLE', async (_, next) => {
    const { ep, check } = setup()
    await check()
    ep.sent.length = 0
    ep.role = next
    await check()
    expect(ep.sent).toEqual(['ROLE', 'INFO'])
  })

  it("a replica's primary or link state changed: INFO again", async () => {
    const { ep, check } = setup()
    ep.role = ['slave', '10.0.0.2', '6379', 'connected', '100']
    await check()
    ep.sent.length = 0
    ep.role = ['slave', '10.0.0.3', '6379', 'connected', '120']
    await check()
    ep.role = ['slave', '10.0.0.3', '6379', 'sync', '120']
    await check()
    ep.role = ['slave', '10.0.0.3', '6379', 'sync', '130']
    await check()
    expect(ep.sent).toEqual(['ROLE', 'INFO', 'ROLE', 'INFO', 'ROLE'])
  })

  it('a new replication id resets the offsets learned under the old one', async () => {
    const { ep, check } = setup()
    await check()
    ep.state.offset = 900
    ep.state.replicaAcks.set('r:1', 800)
    ep.replId = 'b'.repeat(40)
    ep.client.connects++
    await check()
    expect(ep.state.replId).toBe('b'.repeat(40))
    expect(ep.state.offset).toBe(0)
    expect(ep.state.replicaAcks.size).toBe(0)
  })

  it('no answer within the timeout: rejects, and resets the connection when nothing came back meanwhile', async () => {
    vi.useFakeTimers({ now: 0 })
    const { ep, check } = setup()
    ep.hold = true
    const p = check()
    const seen = expect(p).rejects.toThrow(/timed out after 1000 ms/)
    await vi.advanceTimersByTimeAsync(1_000)
    await seen
    expect(ep.timedOut).toEqual([7])
  })

  it('no answer within the timeout while other replies kept coming: a busy connection (BusyCheckError), not reset', async () => {
    vi.useFakeTimers({ now: 0 })
    const { ep, check } = setup()
    ep.hold = true
    const p = check()
    const seen = expect(p).rejects.toBeInstanceOf(BusyCheckError)
    // Replies to the commands queued before the check arrive meanwhile.
    ep.client.connection.reads = 9
    await vi.advanceTimersByTimeAsync(1_000)
    await seen
    // Asked, and told the connection is busy: it is kept.
    expect(ep.timedOut).toEqual([7])
  })

  it('historyMayHaveChanged: nothing known yet, or a change of role, primary, link, or an offset going back', () => {
    const base: RoleReport = { role: 'replica', offset: 10, primaryHost: 'p', primaryPort: 1, link: 'connected', replicas: [] }
    expect(historyMayHaveChanged(null, base)).toBe(true)
    expect(historyMayHaveChanged(base, { ...base, offset: 11 })).toBe(false)
    expect(historyMayHaveChanged(base, { ...base, offset: 9 })).toBe(true)
    expect(historyMayHaveChanged(base, { ...base, primaryPort: 2 })).toBe(true)
    expect(historyMayHaveChanged(base, { ...base, link: 'sync' })).toBe(true)
    expect(historyMayHaveChanged(base, { ...base, role: 'primary' })).toBe(true)
  })
})
