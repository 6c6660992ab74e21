// Table-driven tests for annotation parsing: every key's accepted values, and for each bad value
// the default plus a precise error, never a dropped instance.
import { describe, expect, it } from 'vitest'
import { ANNOTATION_PREFIX, DEFAULT_POLICY, parseAnnotations } from './annotations.js'
import type { InstancePolicy } from '../core/topology.js'

const P = ANNOTATION_PREFIX

describe('DEFAULT_POLICY', () => {
  it('is the documented default of every annotation', () => {
    expect(DEFAULT_POLICY).toEqual({
      maintenance: 'off',
      weight: 100,
      groups: [],
      readPolicy: 'primary',
      maxReplicaLagBytes: 1_048_576,
      strategy: 'least-request',
      hedgeAfterMs: null,
      port: null,
      mode: 'auto',
    })
    expect(Object.isFrozen(DEFAULT_POLICY)).toBe(true)
  })

  it('applies when there are no annotations, or only foreign ones', () => {
    expect(parseAnnotations({})).toEqual({ policy: DEFAULT_POLICY, errors: [] })
    expect(parseAnnotations({ 'kubectl.kubernetes.io/last-applied-configuration': '{}', weight: 'abc' })).toEqual({
      policy: DEFAULT_POLICY,
      errors: [],
    })
  })
})

describe('parseAnnotations: good values', () => {
  it.each<[string, string, Partial<InstancePolicy>]>([
    ['maintenance', 'drain', { maintenance: 'drain' }],
    ['maintenance', 'read-only', { maintenance: 'read-only' }],
    ['maintenance', 'off', { maintenance: 'off' }],
    ['maintenance', '  drain  ', { maintenance: 'drain' }],
    ['weight', '0', { weight: 0 }],
    ['weight', '10000', { weight: 10_000 }],
    ['weight', '50', { weight: 50 }],
    ['weight', ' 7 ', { weight: 7 }],
    ['weight', '007', { weight: 7 }],
    ['groups', 'a', { groups: ['a'] }],
    ['groups', 'a,b', { groups: ['a', 'b'] }],
    ['groups', ' a , b ,, c,', { groups: ['a', 'b', 'c'] }],
    ['groups', 'a,b,a', { groups: ['a', 'b'] }],
    ['groups', '', { groups: [] }],
    ['groups', ' , ', { groups: [] }],
    ['read-policy', 'primary', { readPolicy: 'primary' }],
    ['read-policy', 'prefer-replica', { readPolicy: 'prefer-replica' }],
    ['read-policy', 'replica', { readPolicy: 'replica' }],
    ['read-policy', 'any', { readPolicy: 'any' }],
    ['max-replica-lag', '0', { maxReplicaLagBytes: 0 }],
    ['max-replica-lag', '4096', { maxReplicaLagBytes: 4096 }],
    ['max-replica-lag', '1MiB', { maxReplicaLagBytes: 1_048_576 }],
    ['max-replica-lag', '10KB', { maxReplicaLagBytes: 10_000 }],
    ['strategy', 'least-request', { strategy: 'least-request' }],
    ['strategy', 'round-robin', { strategy: 'round-robin' }],
    ['strategy', 'random', { strategy: 'random' }],
    ['strategy', 'weighted', { strategy: 'weighted' }],
    ['strategy', 'maglev', { strategy: 'maglev' }],
    ['hedge-after', 'off', { hedgeAfterMs: null }],
    ['hedge-after', '15ms', { hedgeAfterMs: 15 }],
    ['hedge-after', '1.5s', { hedgeAfterMs: 1500 }],
    ['hedge-after', '20', { hedgeAfterMs: 20 }],
    ['port', 'redis', { port: 'redis' }],
    ['port', 'tcp-redis', { port: 'tcp-redis' }],
    ['port', '6379', { port: 6379 }],
    ['port', '1', { port: 1 }],
    ['port', '65535', { port: 65535 }],
  ])('%s: %j', (key, value, expected) => {
    const { policy, errors } = parseAnnotations({ [P + key]: value })
    expect(errors).toEqual([])
    expect(policy).toEqual({ ...DEFAULT_POLICY, ...expected })
  })

  it('combines keys', () => {
    const { policy, errors } = parseAnnotations({
      [P + 'maintenance']: 'read-only',
      [P + 'weight']: '5',
      [P + 'groups']: 'canary,eu',
      [P + 'read-policy']: 'prefer-replica',
      [P + 'max-replica-lag']: '2048',
      [P + 'strategy']: 'maglev',
      [P + 'hedge-after']: '10ms',
      [P + 'port']: 'redis-tls',
      [P + 'mode']: 'cluster',
    })
    expect(errors).toEqual([])
    expect(policy).toEqual({
      maintenance: 'read-only',
      weight: 5,
      groups: ['canary', 'eu'],
      readPolicy: 'prefer-replica',
      maxReplicaLagBytes: 2048,
      strategy: 'maglev',
      hedgeAfterMs: 10,
      port: 'redis-tls',
      mode: 'cluster',
    })
  })

  it('mode: auto, cluster or standalone; anything else is reported and auto applies', () => {
    expect(parseAnnotations({ [P + 'mode']: 'standalone' }).policy.mode).toBe('standalone')
    const { policy, errors } = parseAnnotations({ [P + 'mode']: 'Cluster' })
    expect(policy.mode).toBe('auto')
    expect(errors[0]!.message).toContain('did you mean "cluster"')
  })
})

describe('parseAnnotations: bad values fall back to the default with a precise error', () => {
  it.each<[string, string, string]>([
    ['weight', 'abc', 'redis-gateway.io/weight: "abc" is not an integer 0..10000; using 100'],
    ['weight', '10001', 'redis-gateway.io/weight: "10001" is not an integer 0..10000; using 100'],
    ['weight', '-1', 'redis-gateway.io/weight: "-1" is not an integer 0..10000; using 100'],
    ['weight', '+5', 'redis-gateway.io/weight: "+5" is not an integer 0..10000; using 100'],
    ['weight', '1.5', 'redis-gateway.io/weight: "1.5" is not an integer 0..10000; using 100'],
    ['weight', '1e3', 'redis-gateway.io/weight: "1e3" is not an integer 0..10000; using 100'],
    ['weight', '1 0', 'redis-gateway.io/weight: "1 0" is not an integer 0..10000; using 100'],
    ['weight', '', 'redis-gateway.io/weight: "" is not an integer 0..10000; using 100'],
    ['maintenance', 'Drain', 'redis-gateway.io/maintenance: "Drain" is not one of drain, read-only, off (did you mean "drain"?); using off'],
    ['maintenance', 'readonly', 'redis-gateway.io/maintenance: "readonly" is not one of drain, read-only, off (did you mean "read-only"?); using off'],
    ['maintenance', 'on', 'redis-gateway.io/maintenance: "on" is not one of drain, read-only, off; using off'],
    ['maintenance', 'true', 'redis-gateway.io/maintenance: "true" is not one of drain, read-only, off; using off'],
    ['read-policy', 'replicas', 'redis-gateway.io/read-policy: "replicas" is not one of primary, prefer-replica, replica, any (did you mean "replica"?); using primary'],
    ['read-policy', 'PRIMARY', 'redis-gateway.io/read-policy: "PRIMARY" is not one of primary, prefer-replica, replica, any (did you mean "primary"?); using primary'],
    ['strategy', 'p2c', 'redis-gateway.io/strategy: "p2c" is not one of least-request, round-robin, random, weighted, maglev; using least-request'],
    ['strategy', 'roundrobin', 'redis-gateway.io/strategy: "roundrobin" is not one of least-request, round-robin, random, weighted, maglev (did you mean "round-robin"?); using least-request'],
    ['max-replica-lag', '-1', 'redis-gateway.io/max-replica-lag: "-1" is not a byte count (e.g. 1048576 or 1MiB); using 1048576'],
    ['max-replica-lag', 'lots', 'redis-gateway.io/max-replica-lag: "lots" is not a byte count (e.g. 1048576 or 1MiB); using 1048576'],
    ['max-replica-lag', '1.5', 'redis-gateway.io/max-replica-lag: "1.5" is not a byte count (e.g. 1048576 or 1MiB); using 1048576'],
    ['hedge-after', '0ms', 'redis-gateway.io/hedge-after: "0ms" must be greater than 0 (use off to disable hedging); using off'],
    ['hedge-after', '0', 'redis-gateway.io/hedge-after: "0" must be greater than 0 (use off to disable hedging); using off'],
    ['hedge-after', 'soon', 'redis-gateway.io/hedge-after: "soon" is not a duration (e.g. 15ms) or off; using off'],
    ['hedge-after', 'Off', 'redis-gateway.io/hedge-after: "Off" is not a duration (e.g. 15ms) or off (did you mean "off"?); using off'],
    ['hedge-after', '-5ms', 'redis-gateway.io/hedge-after: "-5ms" is not a duration (e.g. 15ms) or off; using off'],
    ['port', '0', 'redis-gateway.io/port: "0" is not a port number 1..65535; using the port named redis, else the first'],
    ['port', '65536', 'redis-gateway.io/port: "65536" is not a port number 1..65535; using the port named redis, else the first'],
    ['port', 'Redis', 'redis-gateway.io/port: "Redis" is not a port name (a DNS label) or number 1..65535; using the port named redis, else the first'],
    ['port', 'redis_port', 'redis-gateway.io/port: "redis_port" is not a port name (a DNS label) or number 1..65535; using the port named redis, else the first'],
    ['port', '-1', 'redis-gateway.io/port: "-1" is not a port name (a DNS label) or number 1..65535; using the port named redis, else the first'],
  ])('%s: %j', (key, value, message) => {
    const { policy, errors } = parseAnnotations({ [P + key]: value })
    expect(policy).toEqual(DEFAULT_POLICY)
    expect(errors).toEqual([{ key: P + key, value, message }])
  })

  it('drops only the bad group names, one error each, keeping the rest', () => {
    const { policy, errors } = parseAnnotations({ [P + 'groups']: 'good, Bad_One ,also-good,-x' })
    expect(policy.groups).toEqual(['good', 'also-good'])
    expect(errors.map((e) => e.message)).toEqual([
      'redis-gateway.io/groups: "Bad_One" is not a valid group name (lower-case letters, digits and "-", at most 63 characters); ignoring it',
      'redis-gateway.io/groups: "-x" is not a valid group name (lower-case letters, digits and "-", at most 63 characters); ignoring it',
    ])
    expect(errors.every((e) => e.key === P + 'groups' && e.value === 'good, Bad_One ,also-good,-x')).toBe(true)
  })

  it('reports unknown annotations under the prefix, with a suggestion when one is close', () => {
    const { policy, errors } = parseAnnotations({ [P + 'wieght']: '5', [P + 'colour']: 'blue', [P + 'toString']: 'x' })
    expect(policy).toEqual(DEFAULT_POLICY)
    expect(errors).toEqual([
      { key: P + 'colour', value: 'blue', message: 'redis-gateway.io/colour: unknown annotation' },
      { key: P + 'toString', value: 'x', message: 'redis-gateway.io/toString: unknown annotation' },
      { key: P + 'wieght', value: '5', message: 'redis-gateway.io/wieght: unknown annotation (did you mean redis-gateway.io/weight?)' },
    ])
  })

  it('keeps the good keys when others are bad', () => {
    const { policy, errors } = parseAnnotations({ [P + 'weight']: 'x', [P + 'read-policy']: 'replica', [P + 'strategy']: 'nope' })
    expect(policy).toEqual({ ...DEFAULT_POLICY, readPolicy: 'replica' })
    expect(errors.map((e) => e.key)).toEqual([P + 'strategy', P + 'weight'])
  })

  it('does not mutate the shared default', () => {
    parseAnnotations({ [P + 'groups']: 'a', [P + 'weight']: '1' })
    expect(DEFAULT_POLICY.groups).toEqual([])
    expect(DEFAULT_POLICY.weight).toBe(100)
  })
})
