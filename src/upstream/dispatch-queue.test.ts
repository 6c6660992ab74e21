// dispatch() at an endpoint's in-flight bound (dispatch.ts, slot-queue.ts): a request over the
// bound waits for a slot and is then sent with the time it has left; one refused or dropped from
// the queue is never sent; a write is sent once. Unit level: a fake router and endpoint, the
// attempts settled by the test, the queue's timers on a clock the test drives. End to end with
// redis-server: test/integration/overload-queue.test.ts.

import { describe, expect, it } from 'vitest'
import { NoEndpointError, OverloadedError } from '../core/errors.js'
import { EventHub } from '../core/events.js'
import { ByteBudget, RequestLease } from '../resilience/byte-budget.js'
import { EndpointState } from '../resilience/endpoint-state.js'
import type { Router } from '../selection/router.js'
import { Deadlines } from './deadlines.js'
import { dispatch, sendFloorMs, type DispatchOptions, type DispatchRequest } from './dispatch.js'
import type { ExecContext } from './execute.js'
import type { PooledEndpoint } from './pool.js'
import { SlotQueue } from './slot-queue.js'
import { FakeClock } from '../../test/helpers/fake-clock.js'

const COMMAND_TIMEOUT_MS = 1_000

interface Bed {
  clock: FakeClock
  ep: PooledEndpoint
  o: DispatchOptions
  /** Attempts handed to the endpoint, in order: what was sent and with how much time. */
  sent: { cmd: string; timeoutMs: number; settle(ok: boolean): void }[]
  send(cmd: string, kind?: 'read' | 'write'): Promise<string>
  resolved: DispatchRequest['resolved']
}

function bed(maxInflight: number, maxPending: number): Bed {
  const clock = new FakeClock()
  const state = new EndpointState('127.0.0.1:6379')
  Object.assign(state, { healthy: true, role: 'primary' })
  const ep = {
    id: state.id,
    state,
    client: { upFor: () => true, scriptRefusal: () => null },
    slots: new SlotQueue(maxInflight, clock),
  } as unknown as PooledEndpoint
  const spec = { id: state.id, host: '127.0.0.1', port: 6379, ready: true }
  const router = {
    select: () => ({ endpoint: { spec, state, pooled: ep }, role: 'primary', reason: 'write', probe: false, candidates: 1 }),
    countRequest: () => ({ retry: { tryRetry: () => false }, hedge: { tryHedge: () => false } }),
  } as unknown as Router<PooledEndpoint>
  const o: DispatchOptions = {
    router,
    events: new EventHub(),
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    deadlineMarginMs: 250,
    maxPendingPerEndpoint: maxPending,
    deadlines: new Deadlines(clock),
  }
  const sent: Bed['sent'] = []
  const resolved = {
    instance: { name: 'orders', spec: { policy: { hedgeAfterMs: null, strategy: 'least-request' } } },
    group: null,
    load: null,
  } as unknown as DispatchRequest['resolved']
  return {
    clock,
    ep,
    o,
    sent,
    resolved,
    send: (cmd, kind = 'write') =>
      dispatch(o, { resolved, kind, token: null, clientId: null }, (_ep: PooledEndpoint, ctx: ExecContext) =>
        new Promise<string>((resolve, reject) => {
          sent.push({ cmd, timeoutMs: ctx.timeoutMs, settle: (ok) => (ok ? resolve(cmd) : reject(new Error(`${cmd} failed`))) })
        }),
      ),
  }
}

/** Lets promise reactions run (the slot is given back when an attempt's promise settles). */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r))

describe('dispatch at the in-flight bound', () => {
  it('sends what fits at once; the rest waits and is sent, in order, as slots free', async () => {
    const b = bed(2, 10)
    const replies = ['a', 'b', 'c', 'd'].map((c) => b.send(c))
    expect(b.sent.map((s) => s.cmd)).toEqual(['a', 'b'])
    expect(b.ep.slots.waiting).toBe(2)
    b.sent[1]!.settle(true)
    await flush()
    expect(b.sent.map((s) => s.cmd)).toEqual(['a', 'b', 'c'])
    b.sent[0]!.settle(true)
    await flush()
    expect(b.sent.map((s) => s.cmd)).toEqual(['a', 'b', 'c', 'd'])
    for (const s of b.sent.slice(2)) s.settle(true)
    expect(await Promise.all(replies)).toEqual(['a', 'b', 'c', 'd'])
    await flush()
    expect(b.ep.slots.inflight).toBe(0)
  })

  it('a waiter is sent with the time it has left, on a 10 ms grid', async () => {
    const b = bed(1, 10)
    void b.send('first')
    const second = b.send('second')
    b.clock.advance(333)
    b.sent[0]!.settle(true)
    await flush()
    expect(b.sent[1]!.cmd).toBe('second')
    expect(b.sent[0]!.timeoutMs).toBe(COMMAND_TIMEOUT_MS)
    // 1000 ms less 333 waited: 667, rounded down to 660.
    expect(b.sent[1]!.timeoutMs).toBe(660)
    b.sent[1]!.settle(true)
    await expect(second).resolves.toBe('second')
  })

  it('a waiting request holds its bytes on limits.inflightBytes: past it, 503 at once and nothing is sent', async () => {
    const b = bed(1, 10)
    const budget = new ByteBudget(5_000)
    const sendWith = (cmd: string, bodyBytes: number): Promise<string> => {
      const lease = new RequestLease(budget, 1 << 20)
      lease.takeBody(bodyBytes)
      return dispatch(b.o, { resolved: b.resolved, kind: 'write', token: null, clientId: null, lease }, (_ep: PooledEndpoint, ctx: ExecContext) =>
        new Promise<string>((resolve) => {
          b.sent.push({ cmd, timeoutMs: ctx.timeoutMs, settle: () => resolve(cmd) })
        }),
      )
    }
    // In flight: within its free allowance, nothing drawn from the budget.
    void sendWith('a', 3_000)
    expect(budget.inUse).toBe(0)
    // Waiting: its 3,000 bytes are drawn from the budget.
    void sendWith('b', 3_000)
    expect(b.ep.slots.waiting).toBe(1)
    expect(budget.inUse).toBe(3_000)
    // A third would take the budget past 5,000: refused at once, never queued, never sent.
    const refused = sendWith('c', 3_000)
    await expect(refused).rejects.toThrow(/limits\.inflightBytes/)
    expect(b.ep.slots.waiting).toBe(1)
    b.sent[0]!.settle(true)
    await flush()
    expect(b.sent.map((s) => s.cmd)).toEqual(['a', 'b'])
  })

  it('a full queue is 503 OVERLOADED at once, closing the connection, and nothing is sent', async () => {
    const b = bed(1, 2)
    void b.send('a')
    void b.send('b')
    void b.send('c')
    const refused = b.send('d')
    await expect(refused).rejects.toBeInstanceOf(OverloadedError)
    const err = (await refused.catch((e: unknown) => e)) as OverloadedError
    expect(err.message).toMatch(/limits\.maxPendingPerEndpoint/)
    expect(err.retryAfterS).toBe(1)
    expect(err.closeConnection).toBe(true)
    expect(b.sent.map((s) => s.cmd)).toEqual(['a'])
    expect(b.ep.slots.waiting).toBe(2)
  })

  it('maxPendingPerEndpoint 0: nothing waits, the request over the bound is refused at once', async () => {
    const b = bed(1, 0)
    void b.send('a')
    await expect(b.send('b')).rejects.toBeInstanceOf(OverloadedError)
    expect(b.sent.length).toBe(1)
  })

  it('a write that gets no slot before only the send floor is left is answered 503, never sent, even if a slot frees later', async () => {
    const b = bed(1, 10)
    void b.send('held')
    const late = b.send('SET')
    const floor = sendFloorMs(COMMAND_TIMEOUT_MS)
    b.clock.advance(COMMAND_TIMEOUT_MS - floor - 1)
    await flush()
    expect(b.ep.slots.waiting).toBe(1)
    b.clock.advance(1)
    const err = (await late.catch((e: unknown) => e)) as OverloadedError
    expect(err).toBeInstanceOf(OverloadedError)
    expect(err.message).toMatch(/no in-flight slot .* came free within 900 ms .*not sent/)
    expect(err.closeConnection).toBe(false)
    b.sent[0]!.settle(true)
    await flush()
    expect(b.sent.map((s) => s.cmd)).toEqual(['held'])
  })

  it('a write is sent once: its failure after it left is reported, not retried', async () => {
    const b = bed(1, 10)
    void b.send('held')
    const w = b.send('SET')
    b.sent[0]!.settle(true)
    await flush()
    b.sent[1]!.settle(false)
    await expect(w).rejects.toThrow('SET failed')
    await flush()
    expect(b.sent.map((s) => s.cmd)).toEqual(['held', 'SET'])
  })

  it('when the breaker opens while requests wait, they are answered NOENDPOINT and not sent', async () => {
    const b = bed(1, 10)
    void b.send('held').catch(() => {})
    const waiting = [b.send('w1'), b.send('w2')]
    for (let i = 0; i < 5; i++) b.ep.state.breaker.onFailure(false)
    expect(b.ep.state.breaker.state.kind).toBe('open')
    b.sent[0]!.settle(false)
    for (const p of waiting) await expect(p).rejects.toBeInstanceOf(NoEndpointError)
    expect(b.sent.map((s) => s.cmd)).toEqual(['held'])
    expect(b.ep.slots.inflight).toBe(0)
    expect(b.ep.slots.waiting).toBe(0)
  })

  it('when the endpoint leaves the pool, its waiters are answered NOENDPOINT at once', async () => {
    const b = bed(1, 10)
    void b.send('held')
    const waiter = b.send('w')
    b.ep.slots.close()
    const err = (await waiter.catch((e: unknown) => e)) as NoEndpointError
    expect(err).toBeInstanceOf(NoEndpointError)
    expect(err.message).toMatch(/left the pool .*not sent/)
    expect(b.sent.map((s) => s.cmd)).toEqual(['held'])
  })
})
