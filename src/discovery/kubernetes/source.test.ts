// Which Service provides an instance name several Services map to (precedes): the rule the
// reconciler applies, on timestamps as lists (Date) and watch events (RFC 3339 text) carry them.
// The whole behaviour, on a real API server, is in test/kubernetes/all-namespaces.test.ts.
import type { V1Service } from '@kubernetes/client-node'
import { describe, expect, it } from 'vitest'
import { precedes } from './source.js'

const svc = (namespace: string, created: Date | string | undefined): { key: string; svc: V1Service } => ({
  key: `${namespace}/redis-orders`,
  svc: { metadata: { name: 'redis-orders', namespace, ...(created !== undefined ? { creationTimestamp: created as Date } : {}) } },
})

describe('precedes', () => {
  it('the older Service wins, whatever its namespace', () => {
    const older = svc('zeta', '2026-01-01T10:00:00Z')
    const newer = svc('alpha', '2026-01-01T10:00:01Z')
    expect(precedes(older, newer)).toBe(true)
    expect(precedes(newer, older)).toBe(false)
  })

  it('a Date (from a list) and the same instant as text (from a watch event) compare equal', () => {
    const fromList = svc('b', new Date('2026-01-01T10:00:00Z'))
    const fromWatch = svc('a', '2026-01-01T10:00:00Z')
    // A tie: the smaller key (namespace a) wins, from either side.
    expect(precedes(fromWatch, fromList)).toBe(true)
    expect(precedes(fromList, fromWatch)).toBe(false)
    expect(precedes(svc('b', new Date('2026-01-01T09:59:59Z')), fromWatch)).toBe(true)
  })

  it('on a tie the namespace first in alphabetical (code point) order wins; a strict order', () => {
    const t = '2026-01-01T10:00:00Z'
    const names = ['team-b', 'team-a', '0-ops', 'team-a2']
    const sorted = [...names].sort((x, y) => (precedes(svc(x, t), svc(y, t)) ? -1 : 1))
    expect(sorted).toEqual(['0-ops', 'team-a', 'team-a2', 'team-b'])
    expect(precedes(svc('team-a', t), svc('team-a', t))).toBe(false)
  })

  it('a missing or unreadable timestamp comes after any real one, then by key', () => {
    const real = svc('z', '2026-01-01T10:00:00Z')
    expect(precedes(real, svc('a', undefined))).toBe(true)
    expect(precedes(svc('a', 'not a date'), real)).toBe(false)
    expect(precedes(svc('a', undefined), svc('b', 'garbage'))).toBe(true)
  })
})
