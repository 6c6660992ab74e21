// whenConnected (src/upstream/pool.ts): the bound on requests waiting for an endpoint's
// connection (and, counted with them, for one of its in-flight slots), so a dead endpoint cannot
// pile up unbounded waiters. Unit level, with an endpoint whose readiness the test resolves by hand;
// the same bound is exercised with 1200 real requests in test/faults/overload.test.ts.

import { describe, expect, it } from 'vitest'
import { ForbiddenError, NoEndpointError, OverloadedError } from '../core/errors.js'
import { LEVEL_IDENTITY } from '../core/identity.js'
import type { PooledEndpoint } from './pool.js'
import { EndpointState } from '../resilience/endpoint-state.js'
import { whenConnected } from './pool.js'

/** An endpoint that is connected (`ready`), or not yet: each whenReady() then waits for settle(). */
function endpoint(ready: boolean, scriptRefusal: string | null = null): { ep: PooledEndpoint; slots: { waiting: number }; settle(ok: boolean): void; waiting(): number } {
  const waiters: ((ok: boolean) => void)[] = []
  const state = new EndpointState('127.0.0.1:6379')
  const client = {
    upFor: () => ready,
    whenReadyFor: (): Promise<boolean> | true => (ready ? true : new Promise<boolean>((resolve) => waiters.push(resolve))),
    scriptRefusal: () => scriptRefusal,
  }
  // Requests waiting for one of its in-flight slots (slot-queue.ts), set by the test.
  const slots = { waiting: 0 }
  const ep = { id: state.id, state, client, slots } as unknown as PooledEndpoint
  return {
    ep,
    slots,
    settle: (ok) => {
      for (const w of waiters.splice(0)) w(ok)
    },
    waiting: () => waiters.length,
  }
}

describe('whenConnected', () => {
  it('refuses a script with 403 where the endpoint cannot restrict it to the token, and lets other requests through', async () => {
    const refusing = endpoint(true, 'redis.aclUsers is false')
    expect(() => whenConnected('i', refusing.ep, 10, LEVEL_IDENTITY.write, true)).toThrow(ForbiddenError)
    expect(() => whenConnected('i', refusing.ep, 10, LEVEL_IDENTITY.write, true)).toThrow(/redis.aclUsers is false/)
    expect(whenConnected('i', refusing.ep, 10, LEVEL_IDENTITY.write, false)).toBe(refusing.ep)
    // Decided once the connection is ready, for waiting requests too.
    const later = endpoint(false, 'NOPERM')
    const p = whenConnected('i', later.ep, 10, LEVEL_IDENTITY.read, true) as Promise<PooledEndpoint>
    later.settle(true)
    await expect(p).rejects.toThrow(ForbiddenError)
    expect(later.ep.state.pending).toBe(0)
  })

  it('returns a connected endpoint at once, without counting it as pending', () => {
    const { ep } = endpoint(true)
    expect(whenConnected('i', ep, 0)).toBe(ep)
    expect(ep.state.pending).toBe(0)
  })

  it('lets at most maxPending requests wait; the next one gets OVERLOADED synchronously', async () => {
    const { ep, settle, waiting } = endpoint(false)
    const held = [1, 2, 3].map(() => whenConnected('i', ep, 3) as Promise<PooledEndpoint>)
    expect(ep.state.pending).toBe(3)
    expect(waiting()).toBe(3)
    let thrown: unknown
    try {
      whenConnected('i', ep, 3)
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(OverloadedError)
    expect((thrown as OverloadedError).code).toBe('OVERLOADED')
    // The refused request did not take a slot or start waiting. (A waiter costs, in the real
    // EndpointClient.whenReady, an entry in the connection slot's waiters and a connect-timeout
    // timer: a refused request must not leave one behind, or the bound bounds nothing.)
    expect(ep.state.pending).toBe(3)
    expect(waiting(), 'waiters registered for 3 admitted requests and 1 refused one').toBe(3)

    settle(true)
    await expect(Promise.all(held)).resolves.toEqual([ep, ep, ep])
    expect(ep.state.pending).toBe(0)
  })

  it('frees the slots when the connection does not come up (NOENDPOINT), so later requests may wait again', async () => {
    const { ep, settle } = endpoint(false)
    const held = [1, 2].map(() => whenConnected('i', ep, 2) as Promise<PooledEndpoint>)
    expect(() => whenConnected('i', ep, 2)).toThrow(OverloadedError)
    settle(false)
    for (const p of held) await expect(p).rejects.toBeInstanceOf(NoEndpointError)
    expect(ep.state.pending).toBe(0)
    const again = whenConnected('i', ep, 2) as Promise<PooledEndpoint>
    expect(ep.state.pending).toBe(1)
    settle(true)
    await expect(again).resolves.toBe(ep)
    expect(ep.state.pending).toBe(0)
  })

  it('counts the requests waiting for an in-flight slot against the same bound', () => {
    const { ep, slots, waiting } = endpoint(false)
    slots.waiting = 1
    void whenConnected('i', ep, 3)
    void whenConnected('i', ep, 3)
    expect(ep.state.pending).toBe(2)
    // 2 wait for the connection and 1 for a slot: the bound of 3 is reached.
    expect(() => whenConnected('i', ep, 3)).toThrow(/3 requests already wait .*limits\.maxPendingPerEndpoint/)
    expect(waiting()).toBe(2)
    // A bound of 0 refuses every wait.
    expect(() => whenConnected('i', endpoint(false).ep, 0)).toThrow(OverloadedError)
  })

  it('with no bound given, never refuses', () => {
    const { ep } = endpoint(false)
    for (let i = 0; i < 5_000; i++) void whenConnected('i', ep)
    expect(ep.state.pending).toBe(5_000)
  })
})
