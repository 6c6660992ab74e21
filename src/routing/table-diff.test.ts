// diffInstances, driven through a real RoutingTable: what logs and metrics hear about each change.
import { describe, expect, it } from 'vitest'
import { DEFAULT_POLICY } from '../discovery/annotations.js'
import type { InstancePolicy, InstanceSpec } from '../core/topology.js'
import type { InstanceChangeEvent } from '../core/events.js'
import { RoutingTable } from './table.js'
import { diffInstances } from './table-diff.js'

function inst(name: string, ports: number[], policy: Partial<InstancePolicy> = {}): InstanceSpec {
  return {
    name,
    source: 'static',
    endpoints: ports.map((port) => ({ id: `127.0.0.1:${port}`, host: '127.0.0.1', port, ready: true })),
    policy: { ...DEFAULT_POLICY, ...policy },
    annotationErrors: [],
  }
}

function recorder(): { table: RoutingTable; events: InstanceChangeEvent[] } {
  const table = new RoutingTable()
  const events: InstanceChangeEvent[] = []
  table.onChange((_s, _p, change) => events.push(...diffInstances(change)))
  return { table, events }
}

describe('diffInstances', () => {
  it('reports added and removed instances with their endpoints', () => {
    const { table, events } = recorder()
    table.apply({ type: 'upsert', instance: inst('a', [1, 2]) })
    table.apply({ type: 'remove', name: 'a' })
    expect(events).toEqual([
      { instance: 'a', change: 'added', maintenance: null, weight: null, removedEndpoints: [], addedEndpoints: ['127.0.0.1:1', '127.0.0.1:2'] },
      { instance: 'a', change: 'removed', maintenance: null, weight: null, removedEndpoints: ['127.0.0.1:1', '127.0.0.1:2'], addedEndpoints: [] },
    ])
  })

  it('reports maintenance, weight and endpoint changes of an instance; nothing when nothing it reports changed', () => {
    const { table, events } = recorder()
    table.apply({ type: 'upsert', instance: inst('a', [1, 2]) })
    events.length = 0
    table.apply({ type: 'upsert', instance: inst('a', [1, 3], { maintenance: 'drain', weight: 5 }) })
    expect(events).toEqual([
      {
        instance: 'a',
        change: 'updated',
        maintenance: { from: 'off', to: 'drain' },
        weight: { from: 100, to: 5 },
        removedEndpoints: ['127.0.0.1:2'],
        addedEndpoints: ['127.0.0.1:3'],
      },
    ])
    events.length = 0
    table.apply({ type: 'upsert', instance: inst('a', [1, 3], { maintenance: 'drain', weight: 5, readPolicy: 'any' }) })
    expect(events).toEqual([])
  })
})
