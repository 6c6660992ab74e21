import { describe, expect, it } from 'vitest'
import { EventHub, type RequestEndEvent } from './events.js'

const end = (status: number): RequestEndEvent => ({
  instance: 'cache',
  group: null,
  class: 'read',
  status,
  code: 'OK',
  durationS: 0.001,
  endMs: 1,
  scope: null,
})

describe('EventHub', () => {
  it('emit() calls every listener at once; a throwing listener does not stop the others', () => {
    const hub = new EventHub()
    const seen: number[] = []
    hub.on('requestEnd', () => {
      throw new Error('broken subscriber')
    })
    hub.on('requestEnd', (e) => seen.push(e.status))
    hub.emit('requestEnd', end(200))
    expect(seen).toEqual([200])
  })

  it('listening (and has) follow on() and unsubscribing, per event, and the object keeps its shape', () => {
    const hub = new EventHub()
    const keys = Object.keys(hub.listening)
    expect(keys).toContain('requestEnd')
    expect(Object.values(hub.listening).every((v) => v === false)).toBe(true)
    const off1 = hub.on('requestEnd', () => {})
    const off2 = hub.on('requestEnd', () => {})
    expect(hub.listening.requestEnd).toBe(true)
    expect(hub.has('requestEnd')).toBe(true)
    expect(hub.listening.upstream).toBe(false)
    off1()
    expect(hub.listening.requestEnd).toBe(true)
    off2()
    expect(hub.listening.requestEnd).toBe(false)
    expect(hub.has('requestEnd')).toBe(false)
    expect(Object.keys(hub.listening)).toEqual(keys)
  })

  it('emitLater() waits for this turn: after promise callbacks (which write replies), in order', async () => {
    const hub = new EventHub()
    const order: string[] = []
    hub.on('requestEnd', (e) => order.push(`end ${e.status}`))
    hub.emitLater('requestEnd', end(200))
    hub.emitLater('requestEnd', end(404))
    void Promise.resolve().then(() => order.push('reply written'))
    process.nextTick(() => order.push('tick'))
    expect(order).toEqual([])
    await new Promise((r) => setImmediate(r))
    expect(order.slice(0, 2).sort()).toEqual(['reply written', 'tick'])
    expect(order.slice(2)).toEqual(['end 200', 'end 404'])
  })

  it('emitLater() keeps nothing when nobody listens, and one setImmediate serves a whole turn', async () => {
    const hub = new EventHub()
    hub.emitLater('requestEnd', end(200))
    expect((hub as unknown as { later: unknown[] }).later).toEqual([])
    let calls = 0
    hub.on('requestEnd', () => calls++)
    const real = globalThis.setImmediate
    let scheduled = 0
    globalThis.setImmediate = ((fn: (...a: unknown[]) => void, ...args: unknown[]) => {
      scheduled++
      return real(fn, ...args)
    }) as typeof setImmediate
    try {
      for (let i = 0; i < 100; i++) hub.emitLater('requestEnd', end(200))
    } finally {
      globalThis.setImmediate = real
    }
    expect(scheduled).toBe(1)
    await new Promise((r) => setImmediate(r))
    expect(calls).toBe(100)
    // The next turn schedules again.
    hub.emitLater('requestEnd', end(200))
    await new Promise((r) => setImmediate(r))
    expect(calls).toBe(101)
  })

  it('flush() emits what emitLater deferred at once, in order; the pending setImmediate emits nothing twice', async () => {
    const hub = new EventHub()
    const seen: number[] = []
    hub.on('requestEnd', (e) => seen.push(e.status))
    hub.emitLater('requestEnd', end(200))
    hub.emitLater('requestEnd', end(503))
    hub.flush()
    expect(seen).toEqual([200, 503])
    // Deferred again after a flush: scheduled anew, emitted once.
    hub.emitLater('requestEnd', end(404))
    await new Promise((r) => setImmediate(r))
    await new Promise((r) => setImmediate(r))
    expect(seen).toEqual([200, 503, 404])
    hub.flush()
    expect(seen).toEqual([200, 503, 404])
  })
})
