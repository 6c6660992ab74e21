// Unit tests for static discovery: config instances become InstanceSpecs with parsed endpoints and policy.
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../config/load.js'
import { DEFAULT_POLICY } from './annotations.js'
import { staticInstances } from './static.js'

const config = (text: string) => loadConfig({ text, env: {} })

describe('staticInstances', () => {
  it('is empty without a static section', () => {
    expect(staticInstances(config(''))).toEqual([])
    expect(staticInstances(config('discovery: { static: {} }'))).toEqual([])
  })

  it('maps instances, endpoints and annotations', () => {
    const cfg = config(`
discovery:
  static:
    instances:
      - name: orders
        endpoints: ["redis://127.0.0.1:6379", "10.0.0.2:6380", "redis://[::1]:6381", "redis://Cache.Local:6382"]
        annotations: { redis-gateway.io/read-policy: prefer-replica, redis-gateway.io/groups: "eu, canary", team: payments }
      - name: sessions
        endpoints: ["redis://127.0.0.1:7000"]
`)
    expect(staticInstances(cfg)).toEqual([
      {
        name: 'orders',
        source: 'static',
        endpoints: [
          { id: '127.0.0.1:6379', host: '127.0.0.1', port: 6379, ready: true },
          { id: '10.0.0.2:6380', host: '10.0.0.2', port: 6380, ready: true },
          { id: '[::1]:6381', host: '::1', port: 6381, ready: true },
          { id: 'cache.local:6382', host: 'cache.local', port: 6382, ready: true },
        ],
        policy: { ...DEFAULT_POLICY, readPolicy: 'prefer-replica', groups: ['eu', 'canary'] },
        annotationErrors: [],
      },
      {
        name: 'sessions',
        source: 'static',
        endpoints: [{ id: '127.0.0.1:7000', host: '127.0.0.1', port: 7000, ready: true }],
        policy: DEFAULT_POLICY,
        annotationErrors: [],
      },
    ])
  })

  it('keeps an instance with bad annotations, reporting them and using defaults', () => {
    const cfg = config(`
discovery:
  static:
    instances:
      - { name: a, endpoints: ["h:1"], annotations: { redis-gateway.io/weight: "lots", redis-gateway.io/strategy: maglev } }
`)
    const [inst] = staticInstances(cfg)
    expect(inst?.policy).toEqual({ ...DEFAULT_POLICY, strategy: 'maglev' })
    expect(inst?.annotationErrors).toEqual([
      {
        key: 'redis-gateway.io/weight',
        value: 'lots',
        message: 'redis-gateway.io/weight: "lots" is not an integer 0..10000; using 100',
      },
    ])
  })
})
