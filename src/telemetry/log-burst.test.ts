// Unit tests for bulk state lines: LogBurst (per kind, the first lines of a window at their level,
// the rest at debug with one count line when the window ends) and the routing-table summary of
// subscribeLogs (a change of more than INSTANCE_LINES instances is one line at info). Injected
// clock and vitest fake timers; a recording logger.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Logger } from 'pino'
import { EventHub } from '../core/events.js'
import { LogBurst } from './log-burst.js'
import { INSTANCE_LINES, subscribeLogs } from './log-events.js'

interface Line {
  level: string
  msg: string
  fields: Record<string, unknown>
}

function recorder(): { logger: Logger; lines: Line[]; at(level: string): Line[] } {
  const lines: Line[] = []
  const rec = (level: string) => (fields: Record<string, unknown>, msg: string) => void lines.push({ level, msg, fields })
  const logger = { info: rec('info'), warn: rec('warn'), debug: rec('debug'), error: rec('error'), isLevelEnabled: () => false } as unknown as Logger
  return { logger, lines, at: (level) => lines.filter((l) => l.level === level) }
}

beforeEach(() => {
  vi.useFakeTimers({ now: 0 })
})
afterEach(() => {
  vi.useRealTimers()
})

describe('LogBurst', () => {
  it('a few lines go out as they are, at their level', async () => {
    const r = recorder()
    const b = new LogBurst(r.logger, { lines: 3, windowMs: 1_000 })
    b.log('endpoint up', 'info', { endpoint: 'a' }, 'endpoint up: a')
    b.log('endpoint down', 'warn', { endpoint: 'b' }, 'endpoint down: b')
    await vi.advanceTimersByTimeAsync(5_000)
    expect(r.lines.map((l) => `${l.level} ${l.msg}`)).toEqual(['info endpoint up: a', 'warn endpoint down: b'])
  })

  it('past the first lines of a window: at debug, and one line at the level when the window ends (with no further line to notice it)', async () => {
    const r = recorder()
    const b = new LogBurst(r.logger, { lines: 3, windowMs: 1_000 })
    for (let i = 0; i < 10; i++) b.log('endpoint up', 'info', { endpoint: `e${i}` }, `endpoint up: e${i}`)
    expect(r.at('info')).toHaveLength(3)
    expect(r.at('debug')).toHaveLength(7)
    await vi.advanceTimersByTimeAsync(999)
    expect(r.at('info')).toHaveLength(3)
    await vi.advanceTimersByTimeAsync(1)
    expect(r.at('info').at(-1)).toMatchObject({ msg: 'endpoint up: 7 more within 1000 ms (past the first 3, logged at debug)', fields: { kind: 'endpoint up', count: 7 } })
    // A new window: its own first lines at info again.
    b.log('endpoint up', 'info', { endpoint: 'x' }, 'endpoint up: x')
    expect(r.at('info').at(-1)!.msg).toBe('endpoint up: x')
    expect(vi.getTimerCount()).toBe(0)
  })

  it('kinds are counted apart; a line of a new window first sums up the old one', () => {
    const clock = { now: 0 }
    const r = recorder()
    const b = new LogBurst(r.logger, { lines: 1, windowMs: 1_000, now: () => clock.now })
    b.log('endpoint up', 'info', {}, 'up 1')
    b.log('endpoint up', 'info', {}, 'up 2')
    b.log('endpoint down', 'warn', {}, 'down 1')
    clock.now = 1_500
    b.log('endpoint up', 'info', {}, 'up 3')
    expect(r.lines.map((l) => `${l.level} ${l.msg}`)).toEqual([
      'info up 1',
      'debug up 2',
      'warn down 1',
      'info endpoint up: 1 more within 1000 ms (past the first 1, logged at debug)',
      'info up 3',
    ])
  })
})

describe('subscribeLogs: instance changes in bulk', () => {
  const added = (i: number) => ({ instance: `i${i}`, change: 'added' as const, maintenance: null, weight: null, removedEndpoints: [], addedEndpoints: [`10.0.0.1:${i}`] })

  it(`up to ${INSTANCE_LINES} instances in one table change: a line each at info, as before`, () => {
    const r = recorder()
    const events = new EventHub()
    subscribeLogs(events, r.logger)
    for (let i = 0; i < INSTANCE_LINES; i++) events.emit('instanceChange', added(i))
    events.emit('table', { instances: INSTANCE_LINES, groups: 0, version: 1 })
    expect(r.at('info').filter((l) => l.msg === 'instance added')).toHaveLength(INSTANCE_LINES)
  })

  it('more in one change: one summary line at info, the per-instance lines at debug', () => {
    const r = recorder()
    const events = new EventHub()
    subscribeLogs(events, r.logger)
    for (let i = 0; i < 5_000; i++) events.emit('instanceChange', added(i))
    events.emit('table', { instances: 5_000, groups: 0, version: 1 })
    expect(r.at('info')).toEqual([
      {
        level: 'info',
        msg: 'routing table: 5000 instances added, 0 removed, 0 updated (0 maintenance changes); per-instance lines at debug',
        fields: { added: 5_000, removed: 0, updated: 0, maintenance: 0 },
      },
    ])
    expect(r.at('debug').filter((l) => l.msg === 'instance added')).toHaveLength(5_000)
  })

  it('a bulk change that puts instances into maintenance sums up at warn', () => {
    const r = recorder()
    const events = new EventHub()
    subscribeLogs(events, r.logger)
    for (let i = 0; i < 100; i++) events.emit('instanceChange', { ...added(i), change: 'updated', addedEndpoints: [], maintenance: { from: 'off', to: 'drain' } })
    events.emit('table', { instances: 100, groups: 0, version: 2 })
    expect(r.at('info')).toEqual([])
    expect(r.at('warn').map((l) => l.fields)).toEqual([{ added: 0, removed: 0, updated: 100, maintenance: 100 }])
    expect(r.at('debug').filter((l) => l.msg === 'maintenance: off -> drain')).toHaveLength(100)
  })

  it('instance events without a table event (emitted on their own) are logged at the end of the turn', async () => {
    const r = recorder()
    const events = new EventHub()
    subscribeLogs(events, r.logger)
    events.emit('instanceChange', added(1))
    expect(r.lines).toEqual([])
    await Promise.resolve()
    expect(r.at('info').map((l) => l.msg)).toEqual(['instance added'])
  })
})
