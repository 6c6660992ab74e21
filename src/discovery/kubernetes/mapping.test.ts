// Table-driven tests for the Service + EndpointSlices -> InstanceSpec mapping (README "Kubernetes
// discovery"): prefix, annotations, port choice, address types, conditions, zones, ExternalName,
// the cluster-IP fallback, odd objects, and stability (same input, or reordered slices, gives the
// same spec).
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { sameSpec } from '../../routing/table.js'
import { DEFAULT_POLICY } from '../annotations.js'
import type { EndpointSpec, InstancePolicy } from '../../core/topology.js'
import { DEFAULT_REDIS_PORT, MAPPING_DEFAULTS, SERVICE_NAME_LABEL, instanceNameOf, mapService, sliceEndpoints, type MappingOptions } from './mapping.js'

const OPTS: MappingOptions = { servicePrefix: 'redis-' }
const NS = 'redis-system'
const A = 'redis-gateway.io/'

// --- realistic objects, as the API server returns them ------------------------------------------

interface SvcInit {
  name?: string
  namespace?: string
  annotations?: Record<string, string>
  type?: string
  clusterIP?: string
  externalName?: string
  ports?: { name?: string; port: number; protocol?: string; targetPort?: number | string }[]
}

function svc(init: SvcInit = {}): V1Service {
  const type = init.type ?? 'ClusterIP'
  const clusterIP = init.clusterIP ?? (type === 'ExternalName' ? undefined : '10.96.12.34')
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: init.name ?? 'redis-orders',
      namespace: init.namespace ?? NS,
      uid: '6f1c2a9e-3c1b-4f7a-9a51-0d7e1f4b2c11',
      resourceVersion: '48213',
      labels: { 'app.kubernetes.io/name': 'redis', 'app.kubernetes.io/instance': 'orders' },
      ...(init.annotations ? { annotations: init.annotations } : {}),
    },
    spec: {
      type,
      ...(clusterIP !== undefined ? { clusterIP, clusterIPs: [clusterIP] } : {}),
      ...(init.externalName !== undefined ? { externalName: init.externalName } : {}),
      ports: (init.ports ?? [{ name: 'redis', port: 6379, targetPort: 6379 }]).map((p) => ({ protocol: 'TCP', ...p })),
      ...(type === 'ExternalName' ? {} : { selector: { 'app.kubernetes.io/instance': 'orders' } }),
      sessionAffinity: 'None',
    },
    status: { loadBalancer: {} },
  } as V1Service
}

interface EpInit {
  ready?: boolean
  serving?: boolean
  terminating?: boolean
  zone?: string
  forZones?: string[]
  /** Leave `conditions` out entirely. */
  noConditions?: boolean
}

type Ep = [address: string | string[], init?: EpInit]

interface SliceInit {
  name?: string
  service?: string
  namespace?: string
  addressType?: string
  ports?: { name?: string; port?: number; protocol?: string }[]
  endpoints?: Ep[]
}

function slice(init: SliceInit = {}): V1EndpointSlice {
  const service = init.service ?? 'redis-orders'
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: init.name ?? `${service}-x7k2p`,
      namespace: init.namespace ?? NS,
      labels: { [SERVICE_NAME_LABEL]: service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: service, uid: '6f1c2a9e-3c1b-4f7a-9a51-0d7e1f4b2c11' }],
    },
    addressType: init.addressType ?? 'IPv4',
    ports: (init.ports ?? [{ name: 'redis', port: 6379 }]).map((p) => ({ protocol: 'TCP', ...p })),
    endpoints: (init.endpoints ?? []).map(([address, e = {}], i) => ({
      addresses: Array.isArray(address) ? address : [address],
      ...(e.noConditions
        ? {}
        : { conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false } }),
      nodeName: `node-${i}`,
      targetRef: { kind: 'Pod', namespace: NS, name: `orders-${i}` },
      ...(e.zone !== undefined ? { zone: e.zone } : {}),
      ...(e.forZones !== undefined ? { hints: { forZones: e.forZones.map((name) => ({ name })) } } : {}),
    })),
  } as V1EndpointSlice
}

const ep = (host: string, port: number, extra: Partial<EndpointSpec> = {}): EndpointSpec => ({
  id: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`,
  host,
  port,
  ready: true,
  ...extra,
})

const endpointsOf = (s: V1Service, slices: V1EndpointSlice[] = []) => mapService(s, slices, OPTS)?.endpoints

// --- instance names ----------------------------------------------------------------------------

describe('instanceNameOf', () => {
  it.each<[string, string, string | null]>([
    ['redis-orders', 'redis-', 'orders'],
    ['redis-a', 'redis-', 'a'],
    ['redis-orders-eu-1', 'redis-', 'orders-eu-1'],
    ['redis-redis-', 'redis-', null],
    ['redis-redis', 'redis-', 'redis'],
    ['redis-0', 'redis-', '0'],
    ['redis-', 'redis-', null],
    ['redis', 'redis-', null],
    ['redisx', 'redis-', null],
    ['redisx-orders', 'redis-', null],
    ['orders', 'redis-', null],
    ['my-redis-orders', 'redis-', null],
    ['Redis-orders', 'redis-', null],
    ['redis-Orders', 'redis-', null],
    ['redis--orders', 'redis-', null],
    ['redis-orders-', 'redis-', null],
    ['redis-orders.eu', 'redis-', null],
    ['redis-' + 'a'.repeat(63), 'redis-', 'a'.repeat(63)],
    ['redis-' + 'a'.repeat(64), 'redis-', null],
    ['', 'redis-', null],
    ['cache-orders', 'cache-', 'orders'],
    ['orders', '', 'orders'],
  ])('%j with prefix %j -> %j', (service, prefix, want) => {
    expect(instanceNameOf(service, prefix)).toBe(want)
  })

  it('returns null for non-strings', () => {
    expect(instanceNameOf(undefined as unknown as string, 'redis-')).toBeNull()
    expect(instanceNameOf(42 as unknown as string, 'redis-')).toBeNull()
  })

  it('defaults to the redis- prefix', () => {
    expect(MAPPING_DEFAULTS.servicePrefix).toBe('redis-')
  })
})

// --- the whole mapping -------------------------------------------------------------------------

describe('mapService', () => {
  it('maps a Service and its slice to an instance', () => {
    const s = svc({ annotations: { [`${A}read-policy`]: 'prefer-replica', 'meta.helm.sh/release-name': 'orders' } })
    const sl = slice({ endpoints: [['10.244.1.5', { zone: 'eu-west-1a' }], ['10.244.2.7', { zone: 'eu-west-1b' }]] })
    expect(mapService(s, [sl], OPTS)).toEqual({
      name: 'orders',
      source: 'kubernetes:redis-system/redis-orders',
      endpoints: [ep('10.244.1.5', 6379, { zone: 'eu-west-1a' }), ep('10.244.2.7', 6379, { zone: 'eu-west-1b' })],
      policy: { ...DEFAULT_POLICY, readPolicy: 'prefer-replica' },
      annotationErrors: [],
    })
  })

  it.each([['redis-'], ['redisx-orders'], ['orders'], ['Redis-orders'], ['redis-' + 'a'.repeat(64)]])(
    'returns null for Service %j, whatever its slices say',
    (name) => {
      expect(mapService(svc({ name }), [slice({ service: name, endpoints: [['10.0.0.1']] })], OPTS)).toBeNull()
    },
  )

  it('uses the configured prefix', () => {
    expect(mapService(svc({ name: 'cache-orders' }), [], { servicePrefix: 'cache-' })?.name).toBe('orders')
    expect(mapService(svc({ name: 'redis-orders' }), [], { servicePrefix: 'cache-' })).toBeNull()
  })

  it('names the source by namespace and Service, so two namespaces give the same instance name from different sources', () => {
    const a = mapService(svc({ namespace: 'team-a' }), [], OPTS)
    const b = mapService(svc({ namespace: 'team-b' }), [], OPTS)
    expect([a?.name, a?.source]).toEqual(['orders', 'kubernetes:team-a/redis-orders'])
    expect([b?.name, b?.source]).toEqual(['orders', 'kubernetes:team-b/redis-orders'])
  })
})

// --- annotations -------------------------------------------------------------------------------

describe('mapService: annotations', () => {
  const one = slice({ endpoints: [['10.244.1.5']] })

  it.each<[string, string, Partial<InstancePolicy>]>([
    ['maintenance', 'drain', { maintenance: 'drain' }],
    ['maintenance', 'read-only', { maintenance: 'read-only' }],
    ['maintenance', 'off', { maintenance: 'off' }],
    ['weight', '0', { weight: 0 }],
    ['weight', '10000', { weight: 10_000 }],
    ['groups', 'eu, canary', { groups: ['eu', 'canary'] }],
    ['read-policy', 'primary', { readPolicy: 'primary' }],
    ['read-policy', 'prefer-replica', { readPolicy: 'prefer-replica' }],
    ['read-policy', 'replica', { readPolicy: 'replica' }],
    ['read-policy', 'any', { readPolicy: 'any' }],
    ['max-replica-lag', '4096', { maxReplicaLagBytes: 4096 }],
    ['max-replica-lag', '1MiB', { maxReplicaLagBytes: 1_048_576 }],
    ['strategy', 'least-request', { strategy: 'least-request' }],
    ['strategy', 'round-robin', { strategy: 'round-robin' }],
    ['strategy', 'random', { strategy: 'random' }],
    ['strategy', 'weighted', { strategy: 'weighted' }],
    ['strategy', 'maglev', { strategy: 'maglev' }],
    ['hedge-after', '15ms', { hedgeAfterMs: 15 }],
    ['hedge-after', 'off', { hedgeAfterMs: null }],
    ['port', 'redis', { port: 'redis' }],
    ['port', '6379', { port: 6379 }],
  ])('%s: %j', (key, value, want) => {
    const spec = mapService(svc({ annotations: { [A + key]: value } }), [one], OPTS)
    expect(spec?.policy).toEqual({ ...DEFAULT_POLICY, ...want })
    expect(spec?.annotationErrors).toEqual([])
    expect(spec?.endpoints).toEqual([ep('10.244.1.5', 6379)])
  })

  it.each<[string, string, Partial<InstancePolicy>, RegExp]>([
    ['maintenance', 'Drain', {}, /did you mean "drain"/],
    ['maintenance', 'on', {}, /not one of drain, read-only, off/],
    ['weight', '10001', {}, /integer 0\.\.10000; using 100/],
    ['weight', '-1', {}, /integer 0\.\.10000/],
    ['groups', 'eu,Bad_Group', { groups: ['eu'] }, /"Bad_Group" is not a valid group name/],
    ['read-policy', 'replicas', {}, /did you mean "replica"/],
    ['max-replica-lag', 'lots', {}, /not a byte count \(e.g. 1048576 or 1MiB\); using 1048576/],
    ['strategy', 'p2c', {}, /not one of least-request/],
    ['hedge-after', '0ms', {}, /greater than 0/],
    ['hedge-after', 'soon', {}, /not a duration/],
    ['port', '0', {}, /not a port number 1\.\.65535/],
    ['port', '70000', {}, /not a port number/],
    ['port', 'Redis_Port', {}, /not a port name/],
    ['wieght', '50', {}, /unknown annotation \(did you mean redis-gateway\.io\/weight\?\)/],
  ])('bad %s: %j is reported, the default used, the instance kept', (key, value, want, message) => {
    const spec = mapService(svc({ annotations: { [A + key]: value } }), [one], OPTS)
    expect(spec?.policy).toEqual({ ...DEFAULT_POLICY, ...want })
    expect(spec?.annotationErrors).toEqual([{ key: A + key, value, message: expect.stringMatching(message) }])
    expect(spec?.endpoints).toEqual([ep('10.244.1.5', 6379)])
  })

  it('reports every bad annotation at once, sorted by key, and keeps the good ones', () => {
    const spec = mapService(
      svc({ annotations: { [`${A}weight`]: 'heavy', [`${A}maintenance`]: 'drain', [`${A}strategy`]: 'fastest', [`${A}groups`]: 'eu' } }),
      [one],
      OPTS,
    )
    expect(spec?.policy).toEqual({ ...DEFAULT_POLICY, maintenance: 'drain', groups: ['eu'] })
    expect(spec?.annotationErrors.map((e) => e.key)).toEqual([`${A}strategy`, `${A}weight`])
  })

  it('ignores annotations outside redis-gateway.io/', () => {
    const spec = mapService(svc({ annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}', weight: 'x' } }), [one], OPTS)
    expect(spec?.policy).toEqual(DEFAULT_POLICY)
    expect(spec?.annotationErrors).toEqual([])
  })

  it('reports a non-string value (hand-built objects only) and uses the default', () => {
    const s = svc()
    s.metadata!.annotations = { [`${A}weight`]: 50, [`${A}groups`]: null, other: 1 } as unknown as Record<string, string>
    const spec = mapService(s, [one], OPTS)
    expect(spec?.policy).toEqual(DEFAULT_POLICY)
    expect(spec?.annotationErrors).toEqual([
      { key: `${A}groups`, value: '', message: `${A}groups: the value is a null, not a string; using the default` },
      { key: `${A}weight`, value: '50', message: `${A}weight: the value is a number, not a string; using the default` },
    ])
  })

  it('reports a port annotation that names no port on the Service or any slice', () => {
    const spec = mapService(svc({ annotations: { [`${A}port`]: 'redsi' } }), [one], OPTS)
    expect(spec?.annotationErrors).toEqual([
      { key: `${A}port`, value: 'redsi', message: `${A}port: no port "redsi" on the Service or its EndpointSlices` },
    ])
    // No slice has it, and neither has the Service: no endpoints (no cluster-IP fallback on another port).
    expect(spec?.endpoints).toEqual([])
  })

  it('does not report a port that the Service has but its slices lack', () => {
    const s = svc({ annotations: { [`${A}port`]: 'sentinel' }, ports: [{ name: 'redis', port: 6379 }, { name: 'sentinel', port: 26379 }] })
    const redisOnly = slice({ name: 'a', endpoints: [['10.0.0.1']] })
    expect(mapService(s, [redisOnly], OPTS)?.annotationErrors).toEqual([])
  })
})

// --- ports -------------------------------------------------------------------------------------

describe('mapService: port selection', () => {
  const twoPorts = [
    { name: 'metrics', port: 9121 },
    { name: 'redis', port: 6380 },
  ]
  it.each<[string, Record<string, string>, SliceInit['ports'], number | null]>([
    ['the port named redis', {}, twoPorts, 6380],
    ['the first port when none is named redis', {}, [{ name: 'tls', port: 6390 }, { name: 'plain', port: 6391 }], 6390],
    ['the only, unnamed port', {}, [{ port: 7000 }], 7000],
    ['the annotation, by name', { [`${A}port`]: 'metrics' }, twoPorts, 9121],
    ['the annotation, by number', { [`${A}port`]: '9121' }, twoPorts, 9121],
    ['the annotation by number matches the slice port, not a name', { [`${A}port`]: '6380' }, twoPorts, 6380],
    ['nothing when the slice lacks the annotated name', { [`${A}port`]: 'tls' }, twoPorts, null],
    ['nothing when the slice lacks the annotated number', { [`${A}port`]: '6379' }, twoPorts, null],
    ['no port at all', {}, [], null],
    ['a port without a number', {}, [{ name: 'redis' }], null],
    ['TCP only: a UDP port named redis is skipped', {}, [{ name: 'redis', port: 6379, protocol: 'UDP' }, { name: 'b', port: 6381 }], 6381],
  ])('%s', (_, annotations, ports, want) => {
    // Headless, so an empty result is not replaced by the cluster-IP fallback.
    const spec = mapService(svc({ annotations, clusterIP: 'None' }), [slice({ ports, endpoints: [['10.244.1.5']] })], OPTS)
    expect(spec?.endpoints).toEqual(want === null ? [] : [ep('10.244.1.5', want)])
  })

  it('picks the port per slice: slices of one Service may differ', () => {
    const a = slice({ name: 'a', ports: [{ name: 'redis', port: 6379 }], endpoints: [['10.0.0.1']] })
    const b = slice({ name: 'b', ports: [{ name: 'redis', port: 7000 }], endpoints: [['10.0.0.2']] })
    const c = slice({ name: 'c', ports: [{ name: 'metrics', port: 9121 }], endpoints: [['10.0.0.3']] })
    expect(endpointsOf(svc(), [a, b, c])).toEqual([ep('10.0.0.1', 6379), ep('10.0.0.2', 7000), ep('10.0.0.3', 9121)])
    // With the annotation, the slice that lacks the port contributes nothing, and nothing is reported.
    const spec = mapService(svc({ annotations: { [`${A}port`]: 'redis' } }), [a, b, c], OPTS)
    expect(spec?.endpoints).toEqual([ep('10.0.0.1', 6379), ep('10.0.0.2', 7000)])
    expect(spec?.annotationErrors).toEqual([])
  })
})

// --- address types -----------------------------------------------------------------------------

describe('mapService: address types', () => {
  it.each<[string, string[], EndpointSpec[]]>([
    ['IPv4', ['10.244.1.5', '10.244.2.7'], [ep('10.244.1.5', 6379), ep('10.244.2.7', 6379)]],
    ['IPv6', ['fd00:10:244::5', 'FD00:10:244::7'], [ep('fd00:10:244::5', 6379), ep('fd00:10:244::7', 6379)]],
    ['FQDN', ['Orders-0.Redis.example.com.', 'orders-1.redis.example.com'], [ep('orders-0.redis.example.com', 6379), ep('orders-1.redis.example.com', 6379)]],
  ])('%s', (addressType, addresses, want) => {
    const spec = mapService(svc(), [slice({ addressType, endpoints: addresses.map((a) => [a]) })], OPTS)
    expect(spec?.endpoints).toEqual(want)
  })

  it('puts IPv6 hosts in brackets in the id', () => {
    expect(endpointsOf(svc(), [slice({ addressType: 'IPv6', endpoints: [['fd00::5']] })])?.[0]?.id).toBe('[fd00::5]:6379')
  })

  it.each<[string, string]>([
    ['IPv4', 'fd00::5'],
    ['IPv4', 'orders.example.com'],
    ['IPv4', '10.244.1.256'],
    ['IPv6', '10.244.1.5'],
    ['FQDN', 'not a host'],
    ['FQDN', 'under_score.example.com'],
    ['FQDN', ''],
  ])('drops a %s slice address %j that is not of its type', (addressType, address) => {
    expect(endpointsOf(svc({ clusterIP: 'None' }), [slice({ addressType, endpoints: [[address]] })])).toEqual([])
  })

  it('skips slices of an unknown address type', () => {
    expect(endpointsOf(svc({ clusterIP: 'None' }), [slice({ addressType: 'IPv5', endpoints: [['10.0.0.1']] })])).toEqual([])
  })

  it('uses the first usable address of an endpoint (addresses are fungible)', () => {
    const sl = slice({ endpoints: [[['10.0.0.1', '10.0.0.2']], [['bogus', '10.0.0.3']]] })
    expect(endpointsOf(svc(), [sl])).toEqual([ep('10.0.0.1', 6379), ep('10.0.0.3', 6379)])
  })

  it('joins IPv4 and IPv6 slices of a dual-stack Service', () => {
    const v4 = slice({ name: 'v4', endpoints: [['10.244.1.5']] })
    const v6 = slice({ name: 'v6', addressType: 'IPv6', endpoints: [['fd00::5']] })
    expect(endpointsOf(svc(), [v4, v6])).toEqual([ep('10.244.1.5', 6379), ep('fd00::5', 6379)])
  })
})

// --- several slices ----------------------------------------------------------------------------

describe('mapService: several slices', () => {
  it('takes the union, deduplicated by endpoint id', () => {
    const a = slice({ name: 'a', endpoints: [['10.0.0.1'], ['10.0.0.2']] })
    const b = slice({ name: 'b', endpoints: [['10.0.0.2'], ['10.0.0.3']] })
    expect(endpointsOf(svc(), [a, b])).toEqual([ep('10.0.0.1', 6379), ep('10.0.0.2', 6379), ep('10.0.0.3', 6379)])
  })

  it('keeps the same address on two ports as two endpoints', () => {
    const a = slice({ name: 'a', endpoints: [['10.0.0.1']] })
    const b = slice({ name: 'b', ports: [{ name: 'redis', port: 6380 }], endpoints: [['10.0.0.1']] })
    expect(endpointsOf(svc(), [a, b])).toEqual([ep('10.0.0.1', 6379), ep('10.0.0.1', 6380)])
  })

  it.each([
    ['ready first', 0],
    ['ready second', 1],
  ])('a duplicate that disagrees on conditions: ready wins (%s)', (_, readyAt) => {
    const ready = slice({ name: 'a', endpoints: [['10.0.0.1', { zone: 'z1' }]] })
    const notReady = slice({ name: 'b', endpoints: [['10.0.0.1', { ready: false, serving: false, zone: 'z2' }], ['10.0.0.2']] })
    const slices = readyAt === 0 ? [ready, notReady] : [notReady, ready]
    expect(endpointsOf(svc(), slices)).toEqual([ep('10.0.0.1', 6379, { zone: 'z1' }), ep('10.0.0.2', 6379)])
  })

  it('a duplicate that is serving+terminating in one slice and ready in another is ready', () => {
    const a = slice({ name: 'a', endpoints: [['10.0.0.1', { ready: false, serving: true, terminating: true }]] })
    const b = slice({ name: 'b', endpoints: [['10.0.0.1']] })
    expect(endpointsOf(svc(), [a, b])).toEqual([ep('10.0.0.1', 6379)])
    expect(endpointsOf(svc(), [b, a])).toEqual([ep('10.0.0.1', 6379)])
  })

  it('ignores a slice that names another Service or namespace', () => {
    const other = slice({ name: 'o', service: 'redis-sessions', endpoints: [['10.0.0.9']] })
    const elsewhere = slice({ name: 'e', namespace: 'default', endpoints: [['10.0.0.8']] })
    const mine = slice({ name: 'm', endpoints: [['10.0.0.1']] })
    expect(endpointsOf(svc(), [other, elsewhere, mine])).toEqual([ep('10.0.0.1', 6379)])
  })

  it('accepts a slice without the service-name label (the caller chose it)', () => {
    const sl = slice({ endpoints: [['10.0.0.1']] })
    delete sl.metadata!.labels
    expect(endpointsOf(svc(), [sl])).toEqual([ep('10.0.0.1', 6379)])
  })
})

// --- conditions --------------------------------------------------------------------------------

describe('mapService: conditions', () => {
  const ready: EpInit = { ready: true, serving: true, terminating: false }
  const terminatingServing: EpInit = { ready: false, serving: true, terminating: true }
  const terminatingGone: EpInit = { ready: false, serving: false, terminating: true }
  const notReady: EpInit = { ready: false, serving: false, terminating: false }
  const t = { terminating: true }

  it.each<[string, Ep[], EndpointSpec[]]>([
    ['all ready', [['10.0.0.1', ready], ['10.0.0.2', ready]], [ep('10.0.0.1', 6379), ep('10.0.0.2', 6379)]],
    ['nil ready means ready', [['10.0.0.1', { noConditions: true }]], [ep('10.0.0.1', 6379)]],
    [
      'some terminating: only the ready ones',
      [['10.0.0.1', ready], ['10.0.0.2', terminatingServing], ['10.0.0.3', terminatingGone]],
      [ep('10.0.0.1', 6379)],
    ],
    ['some not ready: only the ready ones', [['10.0.0.1', notReady], ['10.0.0.2', ready]], [ep('10.0.0.2', 6379)]],
    [
      'none ready but serving+terminating: those, marked terminating',
      [['10.0.0.1', terminatingServing], ['10.0.0.2', terminatingGone], ['10.0.0.3', notReady]],
      [ep('10.0.0.1', 6379, t)],
    ],
    ['none serving: nothing', [['10.0.0.1', terminatingGone], ['10.0.0.2', notReady]], []],
    [
      'ready and terminating (publishNotReadyAddresses): used, marked terminating',
      [['10.0.0.1', { ready: true, serving: true, terminating: true }], ['10.0.0.2', terminatingServing]],
      [ep('10.0.0.1', 6379, t)],
    ],
    ['serving but not terminating and not ready (a starting pod): dropped', [['10.0.0.1', { ready: false, serving: true, terminating: false }]], []],
  ])('%s', (_, endpoints, want) => {
    // Slices that list endpoints never fall back to the cluster IP, even when none is usable.
    expect(endpointsOf(svc(), [slice({ endpoints })])).toEqual(want)
  })

  it('treats nil serving as serving and nil terminating as not terminating', () => {
    const sl = slice({ endpoints: [['10.0.0.1']] })
    sl.endpoints![0]!.conditions = { ready: false, terminating: true }
    expect(endpointsOf(svc(), [sl])).toEqual([ep('10.0.0.1', 6379, t)])
    sl.endpoints![0]!.conditions = { ready: false, serving: true }
    expect(endpointsOf(svc(), [sl])).toEqual([])
  })

  it('decides "nothing is ready" across all slices of the Service', () => {
    const a = slice({ name: 'a', endpoints: [['10.0.0.1', terminatingServing]] })
    const b = slice({ name: 'b', endpoints: [['10.0.0.2', ready]] })
    expect(endpointsOf(svc(), [a, b])).toEqual([ep('10.0.0.2', 6379)])
    expect(endpointsOf(svc(), [a])).toEqual([ep('10.0.0.1', 6379, t)])
  })

  it('counts only endpoints on the selected port when deciding', () => {
    const a = slice({ name: 'a', endpoints: [['10.0.0.1', terminatingServing]] })
    const b = slice({ name: 'b', ports: [{ name: 'metrics', port: 9121 }], endpoints: [['10.0.0.2', ready]] })
    const spec = mapService(svc({ annotations: { [`${A}port`]: 'redis' } }), [a, b], OPTS)
    expect(spec?.endpoints).toEqual([ep('10.0.0.1', 6379, t)])
  })
})

// --- zones -------------------------------------------------------------------------------------

describe('mapService: zones and hints', () => {
  it.each<[string, EpInit, Partial<EndpointSpec>]>([
    ['no zone', {}, {}],
    ['a zone', { zone: 'eu-west-1a' }, { zone: 'eu-west-1a' }],
    ['an empty zone is none', { zone: '' }, {}],
    ['hints', { zone: 'eu-west-1a', forZones: ['eu-west-1a'] }, { zone: 'eu-west-1a', forZones: ['eu-west-1a'] }],
    ['several hints, sorted and deduplicated', { forZones: ['z2', 'z1', 'z2', ''] }, { forZones: ['z1', 'z2'] }],
    ['empty hints are none', { forZones: [] }, {}],
  ])('%s', (_, init, want) => {
    expect(endpointsOf(svc(), [slice({ endpoints: [['10.0.0.1', init]] })])).toEqual([ep('10.0.0.1', 6379, want)])
  })

  it('ignores malformed hints', () => {
    const sl = slice({ endpoints: [['10.0.0.1']] })
    sl.endpoints![0]!.hints = { forZones: [{ name: 'z1' }, null, { name: 7 }, 'z3'] } as never
    expect(endpointsOf(svc(), [sl])).toEqual([ep('10.0.0.1', 6379, { forZones: ['z1'] })])
  })
})

// --- ExternalName ------------------------------------------------------------------------------

describe('mapService: ExternalName', () => {
  const ext = (init: Partial<SvcInit>) => svc({ type: 'ExternalName', externalName: 'orders.cache.example.com', ...init })
  const ignored = slice({ endpoints: [['10.0.0.1']] })

  it.each<[string, Partial<SvcInit>, EndpointSpec[]]>([
    ['the Service port named redis', { ports: [{ name: 'metrics', port: 9121 }, { name: 'redis', port: 6380 }] }, [ep('orders.cache.example.com', 6380)]],
    ['the first Service port', { ports: [{ name: 'tls', port: 6390 }, { name: 'plain', port: 6391 }] }, [ep('orders.cache.example.com', 6390)]],
    ['6379 without ports', { ports: [] }, [ep('orders.cache.example.com', DEFAULT_REDIS_PORT)]],
    ['the annotation, numeric, even if no Service port has it', { annotations: { [`${A}port`]: '16379' } }, [ep('orders.cache.example.com', 16379)]],
    [
      'the annotation, by Service port name',
      { annotations: { [`${A}port`]: 'tls' }, ports: [{ name: 'redis', port: 6379 }, { name: 'tls', port: 6390 }] },
      [ep('orders.cache.example.com', 6390)],
    ],
    ['lower-cased, trailing dot removed', { externalName: 'Orders.Cache.Example.COM.' }, [ep('orders.cache.example.com', 6379)]],
    ['an IP written as external name', { externalName: '192.0.2.10' }, [ep('192.0.2.10', 6379)]],
    ['no external name: nothing', { externalName: '' }, []],
    ['an invalid external name: nothing', { externalName: 'not a host' }, []],
  ])('%s', (_, init, want) => {
    const spec = mapService(ext(init), [ignored], OPTS)
    expect(spec?.endpoints).toEqual(want)
  })

  it('reports an annotated port name the Service does not have, and uses the default choice', () => {
    const spec = mapService(ext({ annotations: { [`${A}port`]: 'tls' } }), [], OPTS)
    expect(spec?.endpoints).toEqual([ep('orders.cache.example.com', 6379)])
    expect(spec?.annotationErrors).toEqual([
      { key: `${A}port`, value: 'tls', message: `${A}port: no port "tls" on the ExternalName Service; using 6379` },
    ])
  })

  it('keeps the instance policy', () => {
    const spec = mapService(ext({ annotations: { [`${A}maintenance`]: 'read-only' } }), [], OPTS)
    expect(spec?.policy.maintenance).toBe('read-only')
    expect(spec?.source).toBe('kubernetes:redis-system/redis-orders')
  })
})

// --- cluster-IP fallback and headless ----------------------------------------------------------

describe('mapService: the cluster-IP fallback', () => {
  const dns = 'redis-orders.redis-system.svc'

  it.each<[string, Partial<SvcInit>, V1EndpointSlice[], EndpointSpec[]]>([
    ['no slices: the Service DNS name on the redis port', {}, [], [ep(dns, 6379)]],
    ['the Service port, not the target port', { ports: [{ name: 'redis', port: 6379, targetPort: 7000 }] }, [], [ep(dns, 6379)]],
    ['the port named redis', { ports: [{ name: 'metrics', port: 9121 }, { name: 'redis', port: 6380 }] }, [], [ep(dns, 6380)]],
    ['the first port', { ports: [{ name: 'a', port: 6390 }, { name: 'b', port: 6391 }] }, [], [ep(dns, 6390)]],
    [
      'the annotation by name',
      { annotations: { [`${A}port`]: 'b' }, ports: [{ name: 'a', port: 6390 }, { name: 'b', port: 6391 }] },
      [],
      [ep(dns, 6391)],
    ],
    [
      'the annotation by Service port number',
      { annotations: { [`${A}port`]: '6391' }, ports: [{ name: 'a', port: 6390 }, { name: 'b', port: 6391, targetPort: 7001 }] },
      [],
      [ep(dns, 6391)],
    ],
    ['an annotation no Service port has: nothing', { annotations: { [`${A}port`]: '7000' } }, [], []],
    ['no Service ports: nothing', { ports: [] }, [], []],
    ['slices without endpoints', {}, [slice({ endpoints: [] })], [ep(dns, 6379)]],
    ['slices without the selected port', { annotations: { [`${A}port`]: 'redis' } }, [slice({ ports: [{ name: 'x', port: 1 }], endpoints: [['10.0.0.1']] })], [ep(dns, 6379)]],
    ['slices with only unusable addresses', {}, [slice({ endpoints: [['no such address']] })], [ep(dns, 6379)]],
    ['not when a slice lists endpoints, even none ready', {}, [slice({ endpoints: [['10.0.0.1', { ready: false, serving: false }]] })], []],
    ['not when a slice has ready endpoints', {}, [slice({ endpoints: [['10.0.0.1']] })], [ep('10.0.0.1', 6379)]],
    ['headless without slices: nothing', { clusterIP: 'None' }, [], []],
    ['no cluster IP at all: nothing', { clusterIP: '' }, [], []],
  ])('%s', (_, init, slices, want) => {
    expect(endpointsOf(svc(init), slices)).toEqual(want)
  })

  it('uses the Service name and namespace', () => {
    expect(endpointsOf(svc({ name: 'redis-sessions', namespace: 'team-a' }))).toEqual([ep('redis-sessions.team-a.svc', 6379)])
  })

  it('headless Services use their slices', () => {
    expect(endpointsOf(svc({ clusterIP: 'None' }), [slice({ endpoints: [['10.0.0.1']] })])).toEqual([ep('10.0.0.1', 6379)])
  })
})

// --- odd input ---------------------------------------------------------------------------------

describe('mapService: odd input never throws', () => {
  const odd = (v: unknown) => v as V1Service
  it.each<[string, unknown]>([
    ['an empty object', {}],
    ['null', null],
    ['undefined', undefined],
    ['a string', 'redis-orders'],
    ['metadata without a name', { metadata: {} }],
    ['a name that is not a string', { metadata: { name: 42 } }],
  ])('%s is not ours', (_, input) => {
    expect(mapService(odd(input), [], OPTS)).toBeNull()
  })

  it('a Service with only a name: default namespace, default policy, no endpoints', () => {
    expect(mapService(odd({ metadata: { name: 'redis-orders' } }), [], OPTS)).toEqual({
      name: 'orders',
      source: 'kubernetes:default/redis-orders',
      endpoints: [],
      policy: DEFAULT_POLICY,
      annotationErrors: [],
    })
  })

  it('odd specs, ports, slices and endpoints are skipped', () => {
    const s = odd({ metadata: { name: 'redis-orders', namespace: NS, annotations: 'nope' }, spec: { ports: 'x', clusterIP: 7 } })
    const slices = [
      null,
      {},
      'slice',
      { addressType: 'IPv4' },
      { addressType: 'IPv4', ports: [null, { port: '6379' }, { port: 0 }, { port: 1.5 }, { port: 70000 }], endpoints: [{ addresses: ['10.0.0.1'] }] },
      { addressType: 'IPv4', ports: [{ port: 6379 }], endpoints: [null, {}, { addresses: 'x' }, { addresses: [null, 5] }, { addresses: ['10.0.0.2'], conditions: 'x' }] },
      { metadata: null, addressType: 'IPv4', ports: [{ port: 6379 }], endpoints: [{ addresses: ['10.0.0.3'], conditions: null, hints: 'x', zone: 5 }] },
    ] as unknown as V1EndpointSlice[]
    expect(mapService(s, slices, OPTS)?.endpoints).toEqual([ep('10.0.0.2', 6379), ep('10.0.0.3', 6379)])
    expect(mapService(s, null as unknown as V1EndpointSlice[], OPTS)?.endpoints).toEqual([])
  })

  it('arbitrary values never throw (property)', () => {
    const anything = fc.anything({ withNullPrototype: true, withBigInt: true, withMap: true, withSet: true })
    const objectish = fc.record(
      {
        metadata: fc.record({ name: fc.oneof(fc.constant('redis-orders'), fc.string(), anything), namespace: anything, annotations: anything }, { requiredKeys: [] }),
        spec: fc.record({ type: fc.oneof(fc.constant('ExternalName'), anything), clusterIP: anything, externalName: anything, ports: anything }, { requiredKeys: [] }),
      },
      { requiredKeys: [] },
    )
    fc.assert(
      fc.property(fc.oneof(anything, objectish), fc.oneof(anything, fc.array(anything)), (s, slices) => {
        mapService(s as V1Service, slices as V1EndpointSlice[], OPTS)
      }),
      { numRuns: 2000 },
    )
  })
})

// --- stability ---------------------------------------------------------------------------------

describe('mapService: stable output', () => {
  const slices = [
    slice({ name: 'a', endpoints: [['10.0.0.9', { zone: 'z1' }], ['10.0.0.1', { forZones: ['z2', 'z1'] }]] }),
    slice({ name: 'b', addressType: 'IPv6', endpoints: [['fd00::2'], ['fd00::1', { ready: false, serving: true, terminating: true }]] }),
    slice({ name: 'c', endpoints: [['10.0.0.1', { zone: 'z9' }], ['10.0.0.5', { ready: false, serving: false }]] }),
    slice({ name: 'd', addressType: 'FQDN', ports: [{ name: 'redis', port: 6380 }], endpoints: [['b.example.com'], ['a.example.com']] }),
  ]
  const s = svc({ annotations: { [`${A}groups`]: 'eu', [`${A}weight`]: 'bad' } })

  it('sorts endpoints by id', () => {
    const ids = mapService(s, slices, OPTS)?.endpoints.map((e) => e.id)
    expect(ids).toEqual([...(ids ?? [])].sort())
    expect(ids).toEqual(['10.0.0.1:6379', '10.0.0.9:6379', '[fd00::2]:6379', 'a.example.com:6380', 'b.example.com:6380'])
  })

  it('maps the same input twice to equal specs (as the routing table compares them)', () => {
    const a = mapService(s, slices, OPTS)
    const b = mapService(structuredClone(s), structuredClone(slices), OPTS)
    expect(a).toEqual(b)
    expect(sameSpec(a!, b!)).toBe(true)
  })

  it('gives the same spec whatever the order of slices and of endpoints in them (property)', () => {
    const base = mapService(s, slices, OPTS)!
    fc.assert(
      fc.property(fc.shuffledSubarray(slices, { minLength: slices.length, maxLength: slices.length }), fc.boolean(), (shuffled, reverseEndpoints) => {
        const input = structuredClone(shuffled)
        if (reverseEndpoints) for (const sl of input) sl.endpoints?.reverse()
        expect(sameSpec(mapService(s, input, OPTS)!, base)).toBe(true)
      }),
    )
  })

  it('picks the same duplicate whatever the slice order when duplicates agree on readiness', () => {
    // 10.0.0.1 is ready in slices a (hints z1,z2) and c (zone z9): one is chosen by content, not by position.
    const forward = mapService(s, slices, OPTS)!.endpoints.find((e) => e.id === '10.0.0.1:6379')
    const backward = mapService(s, [...slices].reverse(), OPTS)!.endpoints.find((e) => e.id === '10.0.0.1:6379')
    expect(forward).toEqual(backward)
  })

  it('does not mutate its input', () => {
    const input = structuredClone(slices)
    const service = structuredClone(s)
    mapService(service, input, OPTS)
    expect(input).toEqual(slices)
    expect(service).toEqual(s)
  })
})

// sliceEndpoints is also what operators.ts uses for a release's Services (one port name for all).
describe('sliceEndpoints (shared with operators.ts)', () => {
  const both = [
    { name: 'tcp-sentinel', port: 26379 },
    { name: 'tcp-redis', port: 6379 },
  ]

  it('a port chosen by name is that port or none: never the first (which may be Sentinel\'s)', () => {
    const withBoth = slice({ ports: both, endpoints: [['10.0.0.1']] })
    expect(sliceEndpoints([withBoth], 'tcp-redis').endpoints).toEqual([ep('10.0.0.1', 6379)])
    const sentinelOnly = slice({ ports: [both[0]!], endpoints: [['10.0.0.1']] })
    expect(sliceEndpoints([sentinelOnly], 'tcp-redis')).toEqual({ endpoints: [], anyListed: false })
  })

  it('merges the slices of several Services, each endpoint once', () => {
    const a = slice({ service: 'x-leader-headless', ports: [{ name: 'redis-client', port: 6379 }], endpoints: [['10.0.0.2'], ['10.0.0.1']] })
    const b = slice({ service: 'x-follower-headless', ports: [{ name: 'redis-client', port: 6379 }], endpoints: [['10.0.0.3'], ['10.0.0.1']] })
    expect(sliceEndpoints([a, b], 'redis-client').endpoints.map((e) => e.id)).toEqual(['10.0.0.1:6379', '10.0.0.2:6379', '10.0.0.3:6379'])
  })
})
