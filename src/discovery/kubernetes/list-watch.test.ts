// ListWatch against a scripted in-memory API (plain functions standing in for list and watch
// calls), with injected sleep and random: relist on 410, reconnect after timeouts and normal ends,
// capped jittered backoff after errors, the cache kept while the API is unreachable.

import { describe, expect, test } from 'vitest'
import type { KubernetesObject } from '@kubernetes/client-node'
import { ListWatch, type ListResult, type ListWatchEvent } from './list-watch.js'
import { ApiRecovery } from './recovery.js'

type Obj = KubernetesObject & { code?: number }
const obj = (name: string, rv: string): Obj => ({ metadata: { namespace: 'ns', name, resourceVersion: rv } })

interface WatchCall {
  rv: string
  emit: (type: string, o: Obj) => void
  end: (err?: unknown) => void
}

function harness(lists: (() => ListResult<Obj>)[], opts: { deliverChunk?: number } = {}) {
  const watches: WatchCall[] = []
  const events: ListWatchEvent[] = []
  const changes: string[] = []
  const sleeps: number[] = []
  let listCalls = 0
  let wake: (() => void) | null = null
  let watchAsked: ((w: WatchCall) => void) | null = null
  const lw = new ListWatch<Obj>({
    name: 'test',
    list: async () => {
      const f = lists[Math.min(listCalls++, lists.length - 1)]!
      return f()
    },
    watch: async (rv, onEvent, done) => {
      const w = { rv, emit: onEvent, end: done }
      watches.push(w)
      watchAsked?.(w)
      return { abort: () => done() }
    },
    onChange: (key, o) => changes.push(`${o ? 'set' : 'del'} ${key}`),
    onEvent: (e) => events.push(e),
    random: () => 0.5,
    sleep: (ms) => {
      sleeps.push(ms)
      return new Promise<void>((r) => (wake = r))
    },
    ...opts,
  })
  const tick = () => new Promise((r) => setImmediate(r))
  /** The next watch asked for; awaiting it resumes in the same turn (a microtask), before any setImmediate. */
  const nextWatch = () => new Promise<WatchCall>((r) => (watchAsked = r))
  return { lw, watches, events, changes, sleeps, listCalls: () => listCalls, wake: () => wake?.(), tick, nextWatch }
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

  test("a list's changes are reported a chunk per turn, in order, with watch events behind them; synced after the last", async () => {
    const items = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((n) => obj(n, '1'))
    const h = harness([() => ({ items, metadata: { resourceVersion: '10' } })], { deliverChunk: 3 })
    const watch = h.nextWatch()
    h.lw.start()
    // The list resolves and is applied; the watch is asked for in the same turn: the first chunk.
    await watch
    expect(h.changes).toEqual(['set ns/a', 'set ns/b', 'set ns/c'])
    // The cache holds the whole list at once; the sync waits for the reports.
    expect(h.lw.cache.size).toBe(7)
    expect(h.lw.synced).toBe(false)
    expect(h.events.filter((e) => e.kind === 'listed')).toEqual([])
    // A watch event while the list is still being reported comes after it.
    h.watches[0]!.emit('DELETED', obj('a', '11'))
    expect(h.changes).toHaveLength(3)
    await h.tick()
    expect(h.changes).toEqual(['set ns/a', 'set ns/b', 'set ns/c', 'set ns/d', 'set ns/e', 'set ns/f'])
    expect(h.lw.synced).toBe(false)
    await h.tick()
    expect(h.changes.slice(6)).toEqual(['set ns/g', 'del ns/a'])
    expect(h.lw.synced).toBe(true)
    expect(h.events.filter((e) => e.kind === 'listed')).toEqual([{ kind: 'listed', items: 7 }])
    // Nothing is queued any more: a watch event is reported at once.
    h.watches[0]!.emit('ADDED', obj('h', '12'))
    expect(h.changes.at(-1)).toBe('set ns/h')
    await h.lw.stop()
  })

  test('stop() drops the changes not reported yet, and nothing is reported after it', async () => {
    const items = ['a', 'b', 'c', 'd', 'e'].map((n) => obj(n, '1'))
    const h = harness([() => ({ items, metadata: { resourceVersion: '10' } })], { deliverChunk: 2 })
    const watch = h.nextWatch()
    h.lw.start()
    await watch
    expect(h.changes).toHaveLength(2)
    await h.lw.stop()
    await h.tick()
    await h.tick()
    expect(h.changes).toHaveLength(2)
    expect(h.events.filter((e) => e.kind === 'listed')).toEqual([])
  })

  test('a consumer that stops it while a chunk is being reported gets no more reports', async () => {
    const seen: string[] = []
    let watchAsked: () => void = () => {}
    const asked = new Promise<void>((r) => (watchAsked = r))
    const lw: ListWatch<Obj> = new ListWatch<Obj>({
      name: 'test',
      list: async () => ({ items: ['a', 'b', 'c'].map((n) => obj(n, '1')), metadata: { resourceVersion: '10' } }),
      watch: async (_rv, _onEvent, done) => {
        watchAsked()
        return { abort: () => done() }
      },
      onChange: (key) => {
        seen.push(key)
        void lw.stop()
      },
      deliverChunk: 10,
    })
    lw.start()
    await asked
    await new Promise((r) => setImmediate(r))
    expect(seen).toEqual(['ns/a'])
    expect(lw.synced).toBe(false)
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

describe('ListWatch with a shared ApiRecovery (an API server outage)', () => {
  type Server = 'down' | 'forbidden' | 'up'
  const refused = () => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
  const forbidden = () => Object.assign(new Error('Forbidden'), { statusCode: 403 })

  /**
   * Watches over one scripted API server whose state the test sets. Sleeps end only when woken
   * (recovery or stop) or when the test elapses them: a watch that is not woken stays asleep.
   */
  function outage(names: string[], opts: { forbidden?: string[] } = {}) {
    const api: { state: Server; readyz: number | 'unreachable' } = { state: 'up', readyz: 200 }
    const sleeps: { name: string; ms: number; end: () => void; woken: boolean }[] = []
    const opened: Record<string, number> = {}
    const ends: Record<string, (err?: unknown) => void> = {}
    const recovery = new ApiRecovery({
      probe: async () => {
        if (api.readyz === 'unreachable') throw refused()
        return api.readyz
      },
      random: () => 0.5,
      sleep: (ms, signal) => {
        const entry = { name: 'probe', ms, end: () => {}, woken: false }
        sleeps.push(entry)
        return new Promise<void>((r) => {
          entry.end = r
          signal.addEventListener('abort', () => r())
        })
      },
    })
    const fails = (name: string): Error | null =>
      api.state === 'down' ? refused() : api.state === 'forbidden' || opts.forbidden?.includes(name) ? forbidden() : null
    const watches = names.map((name) => {
      const lw = new ListWatch<Obj>({
        name,
        recovery,
        list: async () => {
          const err = fails(name)
          if (err) throw err
          return { items: [], metadata: { resourceVersion: '1' } }
        },
        watch: async (_rv, _onEvent, done) => {
          const err = fails(name)
          if (err) done(err)
          else {
            opened[name] = (opened[name] ?? 0) + 1
            ends[name] = done
          }
          return { abort: () => done() }
        },
        onChange() {},
        random: () => 0.5,
        sleep: (ms, signal) => {
          const entry = { name, ms, end: () => {}, woken: false }
          sleeps.push(entry)
          return new Promise<void>((r) => {
            entry.end = r
            signal.addEventListener('abort', () => {
              entry.woken = true
              r()
            })
          })
        },
      })
      return lw
    })
    const tick = async (): Promise<void> => {
      for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r))
    }
    /** Lets every sleep in progress end (time passes), `rounds` times. */
    const elapse = async (rounds = 1): Promise<void> => {
      for (let i = 0; i < rounds; i++) {
        for (const s of sleeps.splice(0)) s.end()
        await tick()
      }
    }
    const start = async (): Promise<void> => {
      recovery.start()
      for (const w of watches) w.start()
      await tick()
    }
    const stop = async (): Promise<void> => {
      await Promise.all([recovery.stop(), ...watches.map((w) => w.stop())])
    }
    return { api, recovery, watches, sleeps, opened, ends, tick, elapse, start, stop }
  }

  test('after a long outage the watches resume as soon as /readyz answers, not after their backoff', async () => {
    const h = outage(['services/a', 'endpointslices/a'])
    await h.start()
    expect(h.opened).toEqual({ 'services/a': 1, 'endpointslices/a': 1 })
    // The API server goes away: both watches break and fail to reconnect, eight times each.
    h.api.state = 'down'
    h.api.readyz = 'unreachable'
    for (const name of ['services/a', 'endpointslices/a']) h.ends[name]!(refused())
    await h.tick()
    await h.elapse(7)
    expect(h.recovery.state).toBe('down')
    expect(h.watches.map((w) => w.failureCount)).toEqual([8, 8])
    const asleep = h.sleeps.filter((s) => s.name !== 'probe')
    // Their next retries are far off (random 0.5: half of the 30 s cap).
    expect(asleep.map((s) => s.ms)).toEqual([15_000, 15_000])
    // Back: the next probe (still asleep in its own 1.5 s interval) answers and wakes both at once.
    h.api.state = 'up'
    h.api.readyz = 200
    h.sleeps.find((s) => s.name === 'probe')!.end()
    await h.tick()
    expect(asleep.every((s) => s.woken)).toBe(true)
    expect(h.opened).toEqual({ 'services/a': 2, 'endpointslices/a': 2 })
    expect(h.recovery.state).toBe('up')
    expect(h.watches.map((w) => w.failureCount)).toEqual([0, 0])
    await h.stop()
  })

  test('403s while the API server starts are the first failures of a new series, and the first success wakes the rest', async () => {
    const h = outage(['services/a', 'endpointslices/a', 'services/b'])
    await h.start()
    h.api.state = 'down'
    h.api.readyz = 'unreachable'
    for (const name of ['services/a', 'endpointslices/a', 'services/b']) h.ends[name]!(refused())
    await h.tick()
    await h.elapse(6)
    expect(h.watches.map((w) => w.failureCount)).toEqual([7, 7, 7])
    // Back, but its authorizer is not synced yet: 403 to everything. The probe says ready.
    h.api.state = 'forbidden'
    h.api.readyz = 200
    h.sleeps.find((s) => s.name === 'probe')!.end()
    await h.tick()
    // Each was woken, got a 403 and now backs off from the start (250 ms for one failure, random 0.5),
    // not from 15 s.
    expect(h.watches.map((w) => w.failureCount)).toEqual([1, 1, 1])
    expect(h.sleeps.filter((s) => s.name !== 'probe' && !s.woken).map((s) => s.ms)).toEqual([250, 250, 250])
    // RBAC is in; one watch's short sleep ends first, it succeeds and wakes the two others.
    h.api.state = 'up'
    h.sleeps.filter((s) => s.name === 'services/b' && !s.woken).at(-1)!.end()
    await h.tick()
    expect(h.opened).toEqual({ 'services/a': 2, 'endpointslices/a': 2, 'services/b': 2 })
    await h.stop()
  })

  test('a persistent 403 (no outage) keeps its own backoff: successes elsewhere do not wake it', async () => {
    const h = outage(['services/ok', 'services/forbidden'], { forbidden: ['services/forbidden'] })
    await h.start()
    for (let i = 0; i < 6; i++) {
      // The other watch is renewed (ends normally, reopens) again and again meanwhile.
      h.ends['services/ok']!()
      await h.tick()
      await h.elapse()
    }
    const forbiddenSleeps = h.sleeps.filter((s) => s.name === 'services/forbidden')
    expect(h.recovery.state).toBe('up')
    expect(h.opened['services/ok']).toBe(7)
    expect(h.watches[1]!.failureCount).toBe(7)
    expect(forbiddenSleeps.some((s) => s.woken)).toBe(false)
    await h.stop()
  })
})
