// ListWatch against a scripted in-memory API (plain functions standing in for list and watch
// calls), with injected sleep and random: relist on 410, reconnect after timeouts and normal ends,
// capped jittered backoff after errors, the cache kept while the API is unreachable.

import { describe, expect, test } from 'vitest'
import type { KubernetesObject } from '@kubernetes/client-node'
import { ListWatch, type ListResult, type ListWatchEvent } from './list-watch.js'

type Obj = KubernetesObject & { code?: number }
const obj = (name: string, rv: string): Obj => ({ metadata: { namespace: 'ns', name, resourceVersion: rv } })

interface WatchCall {
  rv: string
  emit: (type: string, o: Obj) => void
  end: (err?: unknown) => void
}

function harness(lists: (() => ListResult<Obj>)[]) {
  const watches: WatchCall[] = []
  const events: ListWatchEvent[] = []
  const changes: string[] = []
  const sleeps: number[] = []
  let listCalls = 0
  let wake: (() => void) | null = null
  const lw = new ListWatch<Obj>({
    name: 'test',
    list: async () => {
      const f = lists[Math.min(listCalls++, lists.length - 1)]!
      return f()
    },
    watch: async (rv, onEvent, done) => {
      watches.push({ rv, emit: onEvent, end: done })
      return { abort: () => done() }
    },
    onChange: (key, o) => changes.push(`${o ? 'set' : 'del'} ${key}`),
    onEvent: (e) => events.push(e),
    random: () => 0.5,
    sleep: (ms) => {
      sleeps.push(ms)
      return new Promise<void>((r) => (wake = r))
    },
  })
  const tick = () => new Promise((r) => setImmediate(r))
  return { lw, watches, events, changes, sleeps, listCalls: () => listCalls, wake: () => wake?.(), tick }
}

describe('ListWatch', () => {
  test('lists, then watches from the list resourceVersion and applies events to the cache', async () => {
    const h = harness([() => ({ items: [obj('a', '5')], metadata: { resourceVersion: '10' } })])
    h.lw.start()
    await h.tick()
    expect(h.lw.synced).toBe(true)
    expect(h.watches[0]!.rv).toBe('10')
    h.watches[0]!.emit('ADDED', obj('b', '11'))
    h.watches[0]!.emit('MODIFIED', obj('a', '12'))
    h.watches[0]!.emit('DELETED', obj('b', '13'))
    expect([...h.lw.cache.keys()]).toEqual(['ns/a'])
    expect(h.changes).toEqual(['set ns/a', 'set ns/b', 'set ns/a', 'del ns/b'])
    await h.lw.stop()
  })

  test('a watch that times out or ends normally reconnects at once from the last resourceVersion', async () => {
    const h = harness([() => ({ items: [], metadata: { resourceVersion: '10' } })])
    h.lw.start()
    await h.tick()
    h.watches[0]!.emit('BOOKMARK', obj('', '20'))
    const timeout = new DOMException('timed out', 'TimeoutError')
    h.watches[0]!.end(timeout)
    await h.tick()
    expect(h.watches[1]!.rv).toBe('20')
    h.watches[1]!.end()
    await h.tick()
    expect(h.watches[2]!.rv).toBe('20')
    expect(h.sleeps).toEqual([])
    expect(h.listCalls()).toBe(1)
    await h.lw.stop()
  })

  test('410 Gone (an ERROR event or a 410 status) relists at once', async () => {
    const h = harness([
      () => ({ items: [obj('a', '1'), obj('b', '2')], metadata: { resourceVersion: '10' } }),
      () => ({ items: [obj('a', '1')], metadata: { resourceVersion: '50' } }),
    ])
    h.lw.start()
    await h.tick()
    h.watches[0]!.emit('ERROR', { code: 410 } as Obj)
    h.watches[0]!.end()
    await h.tick()
    expect(h.listCalls()).toBe(2)
    expect(h.watches[1]!.rv).toBe('50')
    // The relist found b gone.
    expect(h.changes).toContain('del ns/b')
    expect(h.events.some((e) => e.kind === 'gone')).toBe(true)
    expect(h.sleeps).toEqual([])
    await h.lw.stop()
  })

  test('other errors back off (capped, jittered) and the cache is kept meanwhile', async () => {
    const h = harness([
      () => ({ items: [obj('a', '1')], metadata: { resourceVersion: '10' } }),
    ])
    h.lw.start()
    await h.tick()
    const err = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    h.watches[0]!.end(err)
    await h.tick()
    expect(h.sleeps).toHaveLength(1)
    expect(h.lw.cache.has('ns/a')).toBe(true)
    const e = h.events.find((x) => x.kind === 'error')
    expect(e).toMatchObject({ kind: 'error', error: 'connect ECONNREFUSED' })
    h.wake()
    await h.tick()
    // Reconnected from the same resourceVersion: no relist needed.
    expect(h.watches[1]!.rv).toBe('10')
    await h.lw.stop()
  })

  test('backoff grows exponentially up to the cap, with full jitter', () => {
    const lw = new ListWatch<Obj>({
      name: 't',
      list: async () => ({ items: [] }),
      watch: async () => ({ abort() {} }),
      onChange() {},
      backoffBaseMs: 100,
      backoffMaxMs: 5000,
      random: () => 0.999,
    })
    const seq = [1, 2, 3, 4, 5, 6, 7, 10].map((n) => lw.backoffMs(n))
    expect(seq[0]).toBeLessThan(200)
    expect(seq[3]).toBeGreaterThan(seq[1]!)
    expect(Math.max(...seq)).toBeLessThanOrEqual(5000)
    const low = new ListWatch<Obj>({ name: 't', list: async () => ({ items: [] }), watch: async () => ({ abort() {} }), onChange() {}, backoffBaseMs: 100, random: () => 0 })
    expect(low.backoffMs(5)).toBe(50)
  })

  test('a failing list retries with backoff and never stops', async () => {
    let calls = 0
    const sleeps: number[] = []
    const waker: { wake: (() => void) | null } = { wake: null }
    const lw = new ListWatch<Obj>({
      name: 't',
      list: async () => {
        calls++
        if (calls < 3) throw Object.assign(new Error('Forbidden'), { statusCode: 403 })
        return { items: [obj('x', '1')], metadata: { resourceVersion: '7' } }
      },
      watch: async (_rv, _onEvent, done) => ({ abort: () => done() }),
      onChange() {},
      random: () => 0.5,
      sleep: (ms) => {
        sleeps.push(ms)
        return new Promise<void>((r) => (waker.wake = r))
      },
    })
    lw.start()
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setImmediate(r))
      waker.wake?.()
    }
    await new Promise((r) => setImmediate(r))
    expect(calls).toBe(3)
    expect(sleeps).toHaveLength(2)
    expect(lw.synced).toBe(true)
    await lw.stop()
  })
})

describe('ListWatch recovery', () => {
  test('failures to connect back off more and more; once a watch opens, the backoff starts over', async () => {
    let down = true
    const sleeps: number[] = []
    const waker: { wake: (() => void) | null } = { wake: null }
    const opened: ((err?: unknown) => void)[] = []
    const err = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    const lw = new ListWatch<Obj>({
      name: 't',
      list: async () => ({ items: [], metadata: { resourceVersion: '1' } }),
      watch: async (_rv, _onEvent, done) => {
        // Like client-node: a failed connect calls done(err) before the handle is returned.
        if (down) done(err)
        else opened.push(done)
        return { abort: () => done() }
      },
      onChange() {},
      random: () => 0.5,
      sleep: (ms, signal) => {
        sleeps.push(ms)
        return new Promise<void>((r) => {
          waker.wake = r
          signal.addEventListener('abort', () => r())
        })
      },
    })
    const tick = () => new Promise((r) => setImmediate(r))
    lw.start()
    for (let i = 0; i < 3; i++) {
      await tick()
      waker.wake?.()
    }
    await tick()
    expect(sleeps).toEqual([250, 500, 1000, 2000])
    down = false
    waker.wake?.()
    await tick()
    expect(opened).toHaveLength(1)
    // The open watch then breaks: a first failure again, not the fifth.
    opened[0]!(err)
    await tick()
    expect(sleeps.at(-1)).toBe(250)
    await lw.stop()
  })
})
