// Operator-aware discovery (operators.ts): each chart's and operator's Services, as its templates or
// code render them with default values (the sources are listed in operators.ts), are recognised by
// their labels and mapped to one instance per release or custom resource: name, endpoints from the
// right Service on the right port (never Sentinel's), the operator's role labels as ordering hint,
// cluster mode, and `redis-gateway.io/*` annotations overriding. Plus the index the source keeps.
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node'
import { describe, expect, it } from 'vitest'
import { DEFAULT_POLICY } from '../annotations.js'
import type { InstanceSpec } from '../../core/topology.js'
import {
  INSTANCE_ANNOTATION,
  OperatorIndex,
  groupInstanceName,
  mapOperatorGroup,
  recognizeService,
  sanitizeName,
  type GroupMember,
  type OperatorMember,
} from './operators.js'

const NS = 'redis-system'

// --- objects as the API server returns them ----------------------------------------------------

interface PortInit {
  name: string
  port: number
  targetPort?: number | string
}

interface SvcInit {
  labels: Record<string, string>
  annotations?: Record<string, string>
  headless?: boolean
  ports: PortInit[]
  selector?: Record<string, string>
  created?: string
  namespace?: string
}

function service(name: string, init: SvcInit): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: init.namespace ?? NS,
      uid: `uid-${name}`,
      resourceVersion: '1000',
      creationTimestamp: (init.created ?? '2026-01-01T10:00:00Z') as unknown as Date,
      labels: init.labels,
      ...(init.annotations ? { annotations: init.annotations } : {}),
    },
    spec: {
      type: 'ClusterIP',
      clusterIP: init.headless ? 'None' : '10.96.0.20',
      clusterIPs: [init.headless ? 'None' : '10.96.0.20'],
      ports: init.ports.map((p) => ({ protocol: 'TCP', targetPort: p.port, ...p })),
      selector: init.selector ?? init.labels,
      sessionAffinity: 'None',
    },
  } as V1Service
}

interface PodInit {
  ip: string
  pod: string
  ready?: boolean
}

/** The slice the EndpointSlice controller writes for a Service: its labels copied, plus the reserved ones. */
function sliceOf(svc: V1Service, pods: PodInit[], ports: { name: string; port: number }[]): V1EndpointSlice {
  const name = svc.metadata!.name!
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${name}-x7k2p`,
      namespace: svc.metadata!.namespace!,
      labels: {
        ...svc.metadata!.labels,
        'kubernetes.io/service-name': name,
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        ...(svc.spec!.clusterIP === 'None' ? { 'service.kubernetes.io/headless': '' } : {}),
      },
    },
    addressType: 'IPv4',
    endpoints: pods.map((p) => ({
      addresses: [p.ip],
      conditions: { ready: p.ready ?? true, serving: p.ready ?? true, terminating: false },
      hostname: p.pod,
      targetRef: { kind: 'Pod', namespace: svc.metadata!.namespace!, name: p.pod, uid: `uid-${p.pod}` },
      nodeName: 'node-a',
    })),
    ports: ports.map((p) => ({ ...p, protocol: 'TCP' })),
  }
}

function group(...pairs: [V1Service, V1EndpointSlice[]][]): GroupMember[] {
  return pairs.map(([svc, slices]) => ({ svc, member: recognizeService(svc)!, slices }))
}

const ep = (ip: string, port = 6379): { id: string; host: string; port: number; ready: true } => ({ id: `${ip}:${port}`, host: ip, port, ready: true })

// --- Bitnami redis (architecture replication), release "cache" -> fullname cache-redis ---------

const bitnamiLabels = (chart: string, release: string, extra: Record<string, string> = {}): Record<string, string> => ({
  'app.kubernetes.io/instance': release,
  'app.kubernetes.io/managed-by': 'Helm',
  'app.kubernetes.io/name': chart.replace(/-\d.*$/, ''),
  'app.kubernetes.io/version': '7.4.2',
  'helm.sh/chart': chart,
  ...extra,
})
const bitnamiSelector = (name: string, release: string, extra: Record<string, string> = {}): Record<string, string> => ({
  'app.kubernetes.io/instance': release,
  'app.kubernetes.io/name': name,
  ...extra,
})

function bitnamiRedisReplication(release = 'cache', fullname = `${release}-redis`, annotations: Record<string, string> = {}) {
  const chart = 'redis-20.6.2'
  const headless = service(`${fullname}-headless`, {
    labels: bitnamiLabels(chart, release),
    annotations,
    headless: true,
    ports: [{ name: 'tcp-redis', port: 6379, targetPort: 'redis' }],
    selector: bitnamiSelector('redis', release),
  })
  const master = service(`${fullname}-master`, {
    labels: bitnamiLabels(chart, release, { 'app.kubernetes.io/component': 'master' }),
    annotations,
    ports: [{ name: 'tcp-redis', port: 6379, targetPort: 'redis' }],
    selector: bitnamiSelector('redis', release, { 'app.kubernetes.io/component': 'master' }),
  })
  const replicas = service(`${fullname}-replicas`, {
    labels: bitnamiLabels(chart, release, { 'app.kubernetes.io/component': 'replica' }),
    annotations,
    ports: [{ name: 'tcp-redis', port: 6379, targetPort: 'redis' }],
    selector: bitnamiSelector('redis', release, { 'app.kubernetes.io/component': 'replica' }),
  })
  const metrics = service(`${fullname}-metrics`, {
    labels: bitnamiLabels(chart, release, { 'app.kubernetes.io/component': 'metrics' }),
    annotations: { ...annotations, 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9121' },
    ports: [{ name: 'http-metrics', port: 9121, targetPort: 'metrics' }],
    selector: bitnamiSelector('redis', release),
  })
  // The master pod sorts after the replicas by address: the role hint, not the id, puts it first.
  const m0 = { ip: '10.244.1.30', pod: `${fullname}-master-0` }
  const r0 = { ip: '10.244.1.10', pod: `${fullname}-replicas-0` }
  const r1 = { ip: '10.244.1.11', pod: `${fullname}-replicas-1` }
  const port = [{ name: 'tcp-redis', port: 6379 }]
  return {
    headless,
    master,
    replicas,
    metrics,
    members: group(
      [headless, [sliceOf(headless, [r0, m0, r1], port)]],
      [master, [sliceOf(master, [m0], port)]],
      [replicas, [sliceOf(replicas, [r0, r1], port)]],
      [metrics, [sliceOf(metrics, [m0, r0, r1], [{ name: 'http-metrics', port: 9121 }])]],
    ),
  }
}

/** architecture replication + sentinel.enabled, release "redis" -> fullname redis. */
function bitnamiRedisSentinel() {
  const chart = 'redis-20.6.2'
  const release = 'redis'
  const node = service('redis', {
    labels: bitnamiLabels(chart, release, { 'app.kubernetes.io/component': 'node' }),
    ports: [
      { name: 'tcp-redis', port: 6379, targetPort: 6379 },
      { name: 'tcp-sentinel', port: 26379, targetPort: 26379 },
    ],
    selector: bitnamiSelector('redis', release, { 'app.kubernetes.io/component': 'node' }),
  })
  const headless = service('redis-headless', {
    labels: bitnamiLabels(chart, release),
    headless: true,
    ports: [
      { name: 'tcp-redis', port: 6379, targetPort: 'redis' },
      { name: 'tcp-sentinel', port: 26379, targetPort: 'redis-sentinel' },
    ],
    selector: bitnamiSelector('redis', release),
  })
  const master = service('redis-master', {
    labels: bitnamiLabels(chart, release, { 'app.kubernetes.io/component': 'node' }),
    ports: [{ name: 'tcp-redis', port: 6379, targetPort: 6379 }],
    selector: bitnamiSelector('redis', release, { isMaster: 'true' }),
  })
  const pods = [0, 1, 2].map((i) => ({ ip: `10.244.2.${10 + i}`, pod: `redis-node-${i}` }))
  // Sentinel's port listed first in the slice: it must still never be used.
  const both = [
    { name: 'tcp-sentinel', port: 26379 },
    { name: 'tcp-redis', port: 6379 },
  ]
  return {
    node,
    headless,
    master,
    members: group(
      [node, [sliceOf(node, pods, both)]],
      [headless, [sliceOf(headless, pods, both)]],
      [master, [sliceOf(master, [pods[2]!], [{ name: 'tcp-redis', port: 6379 }])]],
    ),
  }
}

function bitnamiCluster(chart: string, release: string, fullname: string, nodes = 6) {
  const headless = service(`${fullname}-headless`, {
    labels: bitnamiLabels(chart, release),
    headless: true,
    ports: [
      { name: 'tcp-redis', port: 6379, targetPort: 'tcp-redis' },
      { name: 'tcp-redis-bus', port: 16379, targetPort: 'tcp-redis-bus' },
    ],
    selector: bitnamiSelector(chart.replace(/-\d.*$/, ''), release),
  })
  const svc = service(fullname, {
    labels: bitnamiLabels(chart, release),
    ports: [{ name: 'tcp-redis', port: 6379, targetPort: 'tcp-redis' }],
    selector: bitnamiSelector(chart.replace(/-\d.*$/, ''), release),
  })
  const pods = Array.from({ length: nodes }, (_, i) => ({ ip: `10.244.3.${10 + i}`, pod: `${fullname}-${i}` }))
  return {
    headless,
    svc,
    members: group(
      [headless, [sliceOf(headless, pods, [{ name: 'tcp-redis-bus', port: 16379 }, { name: 'tcp-redis', port: 6379 }])]],
      [svc, [sliceOf(svc, pods, [{ name: 'tcp-redis', port: 6379 }])]],
    ),
  }
}

// --- OT-CONTAINER-KIT redis-operator -----------------------------------------------------------

const otAnnotations = (cr: string, extra: Record<string, string> = {}): Record<string, string> => ({
  'redis.opstreelabs.in': 'true',
  'redis.opstreelabs.instance': cr,
  'prometheus.io/scrape': 'true',
  'prometheus.io/port': '9121',
  ...extra,
})
const otLabels = (app: string, setup: string, role: string, extra: Record<string, string> = {}): Record<string, string> => ({
  app,
  redis_setup_type: setup,
  role,
  ...extra,
})
const otService = (name: string, labels: Record<string, string>, cr: string, headless = false, extra: Record<string, string> = {}): V1Service =>
  service(name, { labels, annotations: otAnnotations(cr, extra), headless, ports: [{ name: 'redis-client', port: 6379 }] })
const OT_PORT = [{ name: 'redis-client', port: 6379 }]

function otReplication(cr = 'redis-replication', extra: Record<string, string> = {}) {
  const l = otLabels(cr, 'replication', 'replication')
  const main = otService(cr, l, cr, false, extra)
  const headless = otService(`${cr}-headless`, l, cr, true, extra)
  const additional = otService(`${cr}-additional`, l, cr, false, extra)
  const master = otService(`${cr}-master`, { ...l, 'redis-role': 'master' }, cr, false, extra)
  const replica = otService(`${cr}-replica`, { ...l, 'redis-role': 'slave' }, cr, false, extra)
  const pods = [0, 1, 2].map((i) => ({ ip: `10.244.4.${20 - i}`, pod: `${cr}-${i}` }))
  return {
    main,
    headless,
    master,
    members: group(
      [main, [sliceOf(main, pods, OT_PORT)]],
      [headless, [sliceOf(headless, pods, OT_PORT)]],
      [additional, [sliceOf(additional, pods, OT_PORT)]],
      [master, [sliceOf(master, [pods[0]!], OT_PORT)]],
      [replica, [sliceOf(replica, [pods[1]!, pods[2]!], OT_PORT)]],
    ),
  }
}

function otCluster(cr = 'redis-cluster') {
  const pairs: [V1Service, V1EndpointSlice[]][] = []
  for (const [role, base] of [
    ['leader', 40],
    ['follower', 30],
  ] as const) {
    const app = `${cr}-${role}`
    const l = otLabels(app, 'cluster', role)
    const pods = [0, 1, 2].map((i) => ({ ip: `10.244.5.${base + i}`, pod: `${app}-${i}` }))
    for (const [name, headless] of [
      [app, false],
      [`${app}-headless`, true],
      [`${app}-additional`, false],
    ] as const) {
      const svc = otService(name, l, cr, headless)
      pairs.push([svc, [sliceOf(svc, pods, OT_PORT)]])
    }
  }
  return group(...pairs)
}

// --- spotahome redis-operator (RedisFailover "redisfailover") ----------------------------------

function spotahome(cr = 'redisfailover', serviceAnnotations: Record<string, string> = {}) {
  const base = { 'app.kubernetes.io/managed-by': 'redis-operator', 'redisfailovers.databases.spotahome.com/name': cr }
  const sel = (component: string, extra: Record<string, string> = {}) => ({
    'app.kubernetes.io/component': component,
    'app.kubernetes.io/name': cr,
    'app.kubernetes.io/part-of': 'redis-failover',
    ...extra,
  })
  const rfr = service(`rfr-${cr}`, {
    labels: { ...base, ...sel('redis') },
    annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': 'http', 'prometheus.io/path': '/metrics', ...serviceAnnotations },
    headless: true,
    ports: [{ name: 'http-metrics', port: 9121 }],
    selector: sel('redis'),
  })
  const rfrm = service(`rfrm-${cr}`, {
    labels: { ...base, ...sel('redis', { 'redisfailovers-role': 'master' }) },
    annotations: serviceAnnotations,
    ports: [{ name: 'redis', port: 6379, targetPort: 'redis' }],
    selector: sel('redis', { 'redisfailovers-role': 'master' }),
  })
  const rfrs = service(`rfrs-${cr}`, {
    labels: { ...base, ...sel('redis', { 'redisfailovers-role': 'slave' }) },
    annotations: serviceAnnotations,
    ports: [{ name: 'redis', port: 6379, targetPort: 'redis' }],
    selector: sel('redis', { 'redisfailovers-role': 'slave' }),
  })
  const rfs = service(`rfs-${cr}`, {
    labels: { ...base, ...sel('sentinel') },
    ports: [{ name: 'sentinel', port: 26379 }],
    selector: sel('sentinel'),
  })
  const pods = [0, 1, 2].map((i) => ({ ip: `10.244.6.${30 - i}`, pod: `rfr-${cr}-${i}` }))
  return {
    rfr,
    rfrm,
    rfrs,
    rfs,
    members: group(
      [rfr, [sliceOf(rfr, pods, [{ name: 'http-metrics', port: 9121 }])]],
      [rfrm, [sliceOf(rfrm, [pods[1]!], [{ name: 'redis', port: 6379 }])]],
      [rfrs, [sliceOf(rfrs, [pods[0]!, pods[2]!], [{ name: 'redis', port: 6379 }])]],
      [rfs, [sliceOf(rfs, [0, 1, 2].map((i) => ({ ip: `10.244.7.${i + 1}`, pod: `rfs-${cr}-${i}` })), [{ name: 'sentinel', port: 26379 }])]],
    ),
  }
}

// --- valkey-io/valkey-operator (ValkeyCluster "shop", 2 shards x 1 replica, spec.nodeService) ---

/** labels(cluster) in internal/controller/utils.go: baseLabels(<cr>, "valkey-cluster") over the CR's own labels. */
const valkeyioLabels = (instance: string, component: string, extra: Record<string, string> = {}): Record<string, string> => ({
  ...extra,
  'app.kubernetes.io/name': 'valkey',
  'app.kubernetes.io/instance': instance,
  'app.kubernetes.io/component': component,
  'app.kubernetes.io/part-of': 'valkey',
  'app.kubernetes.io/managed-by': 'valkey-operator',
})

function valkeyioCluster(cr = 'shop', crLabels: Record<string, string> = {}, metrics = false) {
  // upsertService: <cr>, headless, selector valkey.io/cluster=<cr>, port valkey 6379 (+ metrics-sidecar in one version).
  const headless = service(cr, {
    labels: valkeyioLabels(cr, 'valkey-cluster', crLabels),
    headless: true,
    ports: [{ name: 'valkey', port: 6379 }, ...(metrics ? [{ name: 'metrics-sidecar', port: 9090, targetPort: 'metrics-sidecar' }] : [])],
    selector: { 'valkey.io/cluster': cr },
  })
  // ValkeyNodes <cr>-<shard>-<node>; pods labelled valkey.io/cluster, shard-index, node-index.
  const nodes = [0, 1].flatMap((shard) => [0, 1].map((node) => ({ shard, node, name: `${cr}-${shard}-${node}` })))
  const pods = nodes.map((n, i) => ({ ip: `10.244.8.${20 - i}`, pod: `${n.name}-0` }))
  // ensureNodeService (spec.nodeService): valkey-<node>, ClusterIP, valkeyNodeLabels(node).
  const perNode = nodes.map((n) => {
    const l = valkeyioLabels(n.name, 'valkey-node', {
      'valkey.io/cluster': cr,
      'valkey.io/shard-index': String(n.shard),
      'valkey.io/node-index': String(n.node),
    })
    return service(`valkey-${n.name}`, { labels: l, ports: [{ name: 'valkey', port: 6379 }], selector: l })
  })
  const slicePorts = [{ name: 'valkey', port: 6379 }, ...(metrics ? [{ name: 'metrics-sidecar', port: 9090 }] : [])]
  return {
    headless,
    perNode,
    members: group([headless, [sliceOf(headless, pods, slicePorts)]], ...perNode.map((svc, i): [V1Service, V1EndpointSlice[]] => [svc, [sliceOf(svc, [pods[i]!], [{ name: 'valkey', port: 6379 }])]])),
  }
}

// -----------------------------------------------------------------------------------------------

function pick(m: OperatorMember | null): Partial<OperatorMember> | null {
  return m === null ? null : { kind: m.kind, release: m.release, endpoints: m.endpoints, role: m.role, annotations: m.annotations }
}

describe('recognizeService: each chart and operator, by labels', () => {
  it('Bitnami redis: the headless Service has the endpoints, master/replicas are role hints, metrics is ignored', () => {
    const b = bitnamiRedisReplication()
    expect(pick(recognizeService(b.headless))).toEqual({ kind: 'bitnami-redis', release: 'cache', endpoints: true, role: null, annotations: true })
    expect(pick(recognizeService(b.master))).toEqual({ kind: 'bitnami-redis', release: 'cache', endpoints: false, role: 'primary', annotations: true })
    expect(pick(recognizeService(b.replicas))).toEqual({ kind: 'bitnami-redis', release: 'cache', endpoints: false, role: 'replica', annotations: true })
    expect(pick(recognizeService(b.metrics))).toEqual({ kind: 'bitnami-redis', release: 'cache', endpoints: false, role: null, annotations: false })
    expect(recognizeService(b.headless)?.group).toBe(`${NS}/bitnami-redis/cache`)
  })

  it('Bitnami redis with Sentinel: <fullname>-master (isMaster) is the primary hint, <fullname> no endpoint source', () => {
    const s = bitnamiRedisSentinel()
    expect(pick(recognizeService(s.node))).toMatchObject({ endpoints: false, role: null })
    expect(pick(recognizeService(s.headless))).toMatchObject({ endpoints: true, role: null })
    expect(pick(recognizeService(s.master))).toMatchObject({ endpoints: false, role: 'primary' })
  })

  it('Bitnami valkey, redis-cluster and valkey-cluster by the helm.sh/chart label, whatever nameOverride did', () => {
    const valkey = service('sessions-valkey-primary', {
      labels: bitnamiLabels('valkey-2.4.7', 'sessions', { 'app.kubernetes.io/component': 'primary', 'app.kubernetes.io/part-of': 'valkey' }),
      ports: [{ name: 'tcp-redis', port: 6379 }],
    })
    expect(pick(recognizeService(valkey))).toMatchObject({ kind: 'bitnami-valkey', role: 'primary' })
    expect(recognizeService(bitnamiCluster('redis-cluster-11.4.0', 'shards', 'shards-redis-cluster').headless)?.kind).toBe('bitnami-redis-cluster')
    expect(recognizeService(bitnamiCluster('valkey-cluster-3.0.1', 'vc', 'vc-valkey-cluster').headless)?.kind).toBe('bitnami-valkey-cluster')
    const renamed = service('x-headless', { labels: { ...bitnamiLabels('redis-20.6.2', 'x'), 'app.kubernetes.io/name': 'kv' }, headless: true, ports: [] })
    expect(recognizeService(renamed)?.kind).toBe('bitnami-redis')
  })

  it('other charts and plain Services are not recognised', () => {
    expect(recognizeService(service('redis-ha', { labels: bitnamiLabels('redis-ha-4.27.0', 'ha'), ports: [] }))).toBeNull()
    expect(recognizeService(service('redis-orders', { labels: { app: 'orders' }, ports: [{ name: 'redis', port: 6379 }] }))).toBeNull()
    expect(recognizeService(service('redis-x', { labels: { 'helm.sh/chart': 'redis-20.6.2' }, ports: [] }))).toBeNull()
    expect(recognizeService({} as V1Service)).toBeNull()
    expect(recognizeService({ metadata: { name: 'a', labels: 'nope' } } as unknown as V1Service)).toBeNull()
  })

  it('OT redis-operator: standalone, replication (redis-role), cluster (leader/follower), sentinel, per-pod NodePort Services', () => {
    const l = otLabels('redis-standalone', 'standalone', 'standalone')
    expect(pick(recognizeService(otService('redis-standalone-headless', l, 'redis-standalone', true)))).toEqual({
      kind: 'ot-redis',
      release: 'redis-standalone',
      endpoints: true,
      role: null,
      annotations: true,
    })
    expect(recognizeService(otService('redis-standalone', l, 'redis-standalone'))?.endpoints).toBe(false)
    const r = otReplication()
    expect(pick(recognizeService(r.master))).toMatchObject({ kind: 'ot-redis-replication', endpoints: false, role: 'primary' })
    expect(pick(recognizeService(r.headless))).toMatchObject({ kind: 'ot-redis-replication', endpoints: true, role: null })
    const leader = otService('redis-cluster-leader-headless', otLabels('redis-cluster-leader', 'cluster', 'leader'), 'redis-cluster', true)
    expect(pick(recognizeService(leader))).toMatchObject({ kind: 'ot-redis-cluster', release: 'redis-cluster', endpoints: true, role: 'primary' })
    const perPod = otService(
      'redis-cluster-leader-0',
      otLabels('redis-cluster-leader', 'cluster', 'leader', { 'statefulset.kubernetes.io/pod-name': 'redis-cluster-leader-0' }),
      'redis-cluster',
    )
    expect(pick(recognizeService(perPod))).toMatchObject({ endpoints: false, annotations: false })
    const sentinel = service('redis-sentinel-sentinel', {
      labels: otLabels('redis-sentinel-sentinel', 'sentinel', 'sentinel'),
      ports: [{ name: 'sentinel-client', port: 26379 }],
    })
    expect(pick(recognizeService(sentinel))).toMatchObject({ kind: 'ot-redis-sentinel', endpoints: false, annotations: false })
  })

  it('spotahome: rfrm/rfrs carry the Redis port (master/slave hints), rfr only the exporter, rfs Sentinel', () => {
    const s = spotahome()
    expect(pick(recognizeService(s.rfrm))).toEqual({ kind: 'spotahome-redisfailover', release: 'redisfailover', endpoints: true, role: 'primary', annotations: true })
    expect(pick(recognizeService(s.rfrs))).toMatchObject({ endpoints: true, role: 'replica' })
    expect(pick(recognizeService(s.rfr))).toMatchObject({ endpoints: false, role: null, annotations: true })
    expect(pick(recognizeService(s.rfs))).toMatchObject({ endpoints: false, role: null, annotations: false })
  })

  it('valkey-io ValkeyCluster: the headless <cr> Service has the endpoints; per-node Services are members only', () => {
    const v = valkeyioCluster('shop', { team: 'web', 'app.kubernetes.io/instance': 'ignored' })
    expect(pick(recognizeService(v.headless))).toEqual({ kind: 'valkeyio-valkeycluster', release: 'shop', endpoints: true, role: null, annotations: true })
    expect(recognizeService(v.headless)?.group).toBe(`${NS}/valkeyio-valkeycluster/shop`)
    for (const svc of v.perNode) {
      expect(pick(recognizeService(svc))).toEqual({ kind: 'valkeyio-valkeycluster', release: 'shop', endpoints: false, role: null, annotations: false })
    }
    // Matched by labels, not name: a headless Service named valkey-<cr> counts the same.
    const renamed = service('valkey-shop', { labels: v.headless.metadata!.labels!, headless: true, ports: [{ name: 'valkey', port: 6379 }] })
    expect(recognizeService(renamed)?.endpoints).toBe(true)
    // Another manager, or a per-node Service of a non-cluster Valkey CR (valkey.io/valkey): not recognised.
    expect(recognizeService(service('shop', { labels: { ...v.headless.metadata!.labels!, 'app.kubernetes.io/managed-by': 'Helm' }, headless: true, ports: [] }))).toBeNull()
    const sentinelNode = valkeyioLabels('cache-0', 'valkey-node', { 'valkey.io/valkey': 'cache', 'valkey.io/node-index': '0' })
    expect(recognizeService(service('valkey-cache-0', { labels: sentinelNode, headless: true, ports: [{ name: 'valkey', port: 6379 }] }))).toBeNull()
  })
})

describe('mapOperatorGroup: one instance per release', () => {
  it('valkey-io ValkeyCluster: every node of the headless Service on port valkey, cluster mode, not the metrics port or per-node cluster IPs', () => {
    const spec = mapOperatorGroup(valkeyioCluster('shop', {}, true).members)
    expect(spec).toEqual<InstanceSpec>({
      name: 'shop',
      source: `kubernetes:${NS}/valkeyio-valkeycluster/shop`,
      endpoints: [ep('10.244.8.17'), ep('10.244.8.18'), ep('10.244.8.19'), ep('10.244.8.20')],
      policy: { ...DEFAULT_POLICY, port: 'valkey', mode: 'cluster' },
      annotationErrors: [],
    })
    // Without its headless Service (per-node Services only) there is no instance.
    expect(mapOperatorGroup(valkeyioCluster().members.filter((m) => !m.member.endpoints))).toBeNull()
  })

  it('Bitnami redis replication: every pod of the headless Service on tcp-redis, the master first', () => {
    const spec = mapOperatorGroup(bitnamiRedisReplication().members)
    expect(spec).toEqual<InstanceSpec>({
      name: 'cache',
      source: `kubernetes:${NS}/bitnami-redis/cache`,
      endpoints: [ep('10.244.1.30'), ep('10.244.1.10'), ep('10.244.1.11')],
      policy: { ...DEFAULT_POLICY, port: 'tcp-redis' },
      annotationErrors: [],
    })
  })

  it('Bitnami redis with Sentinel: never the Sentinel port, even listed first; the isMaster pod first', () => {
    const spec = mapOperatorGroup(bitnamiRedisSentinel().members)
    expect(spec?.name).toBe('redis')
    expect(spec?.endpoints).toEqual([ep('10.244.2.12'), ep('10.244.2.10'), ep('10.244.2.11')])
    expect(spec?.endpoints.every((e) => e.port === 6379)).toBe(true)
  })

  it('Bitnami redis-cluster and valkey-cluster: every node, cluster mode, not the bus port', () => {
    for (const [chart, fullname] of [
      ['redis-cluster-11.4.0', 'shards-redis-cluster'],
      ['valkey-cluster-3.0.1', 'shards-valkey-cluster'],
    ] as const) {
      const spec = mapOperatorGroup(bitnamiCluster(chart, 'shards', fullname).members)
      expect(spec?.name).toBe('shards')
      expect(spec?.policy.mode).toBe('cluster')
      expect(spec?.endpoints.map((e) => e.id)).toEqual([10, 11, 12, 13, 14, 15].map((i) => `10.244.3.${i}:6379`))
    }
  })

  it('OT replication: the headless Service, the redis-role=master pod first; OT cluster: leaders and followers, cluster mode', () => {
    const rep = mapOperatorGroup(otReplication().members)
    expect(rep).toMatchObject({ name: 'redis-replication', source: `kubernetes:${NS}/ot-redis-replication/redis-replication` })
    expect(rep?.endpoints.map((e) => e.id)).toEqual(['10.244.4.20:6379', '10.244.4.18:6379', '10.244.4.19:6379'])
    expect(rep?.policy.port).toBe('redis-client')
    const cl = mapOperatorGroup(otCluster())
    expect(cl?.name).toBe('redis-cluster')
    expect(cl?.policy.mode).toBe('cluster')
    // Leaders (hint: primary) first, then followers; each by id.
    expect(cl?.endpoints.map((e) => e.host)).toEqual(['10.244.5.40', '10.244.5.41', '10.244.5.42', '10.244.5.30', '10.244.5.31', '10.244.5.32'])
  })

  it('spotahome: rfrm + rfrs on port redis, the master first; not the exporter or Sentinel', () => {
    const spec = mapOperatorGroup(spotahome().members)
    expect(spec?.name).toBe('redisfailover')
    expect(spec?.endpoints.map((e) => e.id)).toEqual(['10.244.6.29:6379', '10.244.6.28:6379', '10.244.6.30:6379'])
  })

  it('without a Service that carries endpoints there is no instance (spotahome before rfrm/rfrs, a RedisSentinel)', () => {
    const s = spotahome()
    expect(mapOperatorGroup(s.members.filter((m) => !m.member.endpoints))).toBeNull()
    expect(mapOperatorGroup([])).toBeNull()
  })

  it('annotations on the release override the kind defaults: port, mode, read policy', () => {
    const spec = mapOperatorGroup(
      bitnamiCluster('redis-cluster-11.4.0', 'shards', 'shards-redis-cluster').members.map((m) =>
        m.member.endpoints ? { ...m, svc: withAnnotations(m.svc, { 'redis-gateway.io/mode': 'standalone', 'redis-gateway.io/read-policy': 'any' }) } : m,
      ),
    )
    expect(spec?.policy).toMatchObject({ mode: 'standalone', readPolicy: 'any', port: 'tcp-redis' })
    expect(spec?.annotationErrors).toEqual([])
  })

  it('the Service with endpoints wins when a release\'s Services disagree; role Services next', () => {
    const b = bitnamiRedisReplication()
    const members = b.members.map((m) => {
      const name = m.svc.metadata!.name!
      if (name.endsWith('-headless')) return { ...m, svc: withAnnotations(m.svc, { 'redis-gateway.io/weight': '10' }) }
      if (name.endsWith('-master')) return { ...m, svc: withAnnotations(m.svc, { 'redis-gateway.io/weight': '20', 'redis-gateway.io/groups': 'shop' }) }
      if (name.endsWith('-metrics')) return { ...m, svc: withAnnotations(m.svc, { 'redis-gateway.io/maintenance': 'drain' }) }
      return m
    })
    const spec = mapOperatorGroup(members)
    expect(spec?.policy).toMatchObject({ weight: 10, groups: ['shop'], maintenance: 'off' })
  })

  it('redis-gateway.io/instance names the instance; a bad value is reported and the release name used', () => {
    const named = mapOperatorGroup(bitnamiRedisReplication('cache', 'cache-redis', { [INSTANCE_ANNOTATION]: 'sessions' }).members)
    expect(named?.name).toBe('sessions')
    expect(named?.annotationErrors).toEqual([])
    const bad = mapOperatorGroup(bitnamiRedisReplication('cache', 'cache-redis', { [INSTANCE_ANNOTATION]: 'Not_A_Name' }).members)
    expect(bad?.name).toBe('cache')
    expect(bad?.annotationErrors.map((e) => e.key)).toEqual([INSTANCE_ANNOTATION])
    expect(bad?.annotationErrors[0]?.message).toContain('using "cache"')
  })

  it('a bad port annotation falls back to the kind\'s port (never "the first", which could be Sentinel\'s)', () => {
    const s = bitnamiRedisSentinel()
    const spec = mapOperatorGroup(s.members.map((m) => ({ ...m, svc: withAnnotations(m.svc, { 'redis-gateway.io/port': 'Bad Port' }) })))
    expect(spec?.policy.port).toBe('tcp-redis')
    expect(spec?.endpoints.every((e) => e.port === 6379)).toBe(true)
    expect(spec?.annotationErrors.map((e) => e.message)).toEqual([expect.stringMatching(/redis-gateway\.io\/port: .*; using tcp-redis$/)])
    const missing = mapOperatorGroup(s.members.map((m) => ({ ...m, svc: withAnnotations(m.svc, { 'redis-gateway.io/port': 'redis' }) })))
    expect(missing?.endpoints).toEqual([])
    expect(missing?.annotationErrors[0]?.message).toContain('no port "redis"')
  })

  it('a bad mode on a cluster kind keeps cluster mode, and says so', () => {
    const spec = mapOperatorGroup(
      bitnamiCluster('valkey-cluster-3.0.1', 'vc', 'vc-valkey-cluster').members.map((m) => ({ ...m, svc: withAnnotations(m.svc, { 'redis-gateway.io/mode': 'Cluster' }) })),
    )
    expect(spec?.policy.mode).toBe('cluster')
    expect(spec?.annotationErrors[0]?.message).toMatch(/; using cluster$/)
  })

  it('unready endpoints are not routed to; the role hint only reorders', () => {
    const b = bitnamiRedisReplication()
    const members = b.members.map((m) =>
      m.svc.metadata!.name!.endsWith('-headless')
        ? {
            ...m,
            slices: [
              sliceOf(
                m.svc,
                [
                  { ip: '10.244.1.30', pod: 'cache-redis-master-0' },
                  { ip: '10.244.1.10', pod: 'cache-redis-replicas-0', ready: false },
                ],
                [{ name: 'tcp-redis', port: 6379 }],
              ),
            ],
          }
        : m,
    )
    expect(mapOperatorGroup(members)?.endpoints).toEqual([ep('10.244.1.30')])
  })

  it('the same release in any order of Services and slices gives the same spec (JSON)', () => {
    for (const members of [bitnamiRedisReplication().members, otCluster(), spotahome().members, bitnamiRedisSentinel().members]) {
      const a = JSON.stringify(mapOperatorGroup(members))
      const b = JSON.stringify(mapOperatorGroup([...members].reverse().map((m) => ({ ...m, slices: [...(m.slices ?? [])].reverse() }))))
      expect(b).toBe(a)
    }
  })

  it('slices of another Service are not used', () => {
    const b = bitnamiRedisReplication()
    const foreign = sliceOf(service('other', { labels: {}, ports: [] }), [{ ip: '10.9.9.9', pod: 'x' }], [{ name: 'tcp-redis', port: 6379 }])
    const members = b.members.map((m) => (m.member.endpoints ? { ...m, slices: [...(m.slices ?? []), foreign] } : m))
    expect(mapOperatorGroup(members)?.endpoints.map((e) => e.host)).not.toContain('10.9.9.9')
  })
})

describe('names', () => {
  it('sanitizeName: a DNS label from a release or CR name, or null', () => {
    expect(sanitizeName('cache')).toBe('cache')
    expect(sanitizeName('My.Cache_01')).toBe('my-cache-01')
    expect(sanitizeName('--a..b--')).toBe('a-b')
    expect(sanitizeName(`${'x'.repeat(62)}-yz`)).toBe('x'.repeat(62))
    expect(sanitizeName('...')).toBeNull()
    expect(sanitizeName('')).toBeNull()
  })

  it('groupInstanceName: none for a group without endpoints', () => {
    expect(groupInstanceName(spotahome().members.filter((m) => !m.member.endpoints))).toEqual({ name: null })
    expect(groupInstanceName(spotahome().members)).toEqual({ name: 'redisfailover' })
  })
})

describe('OperatorIndex', () => {
  const key = (svc: V1Service): string => `${svc.metadata!.namespace}/${svc.metadata!.name}`

  it('claims one name per release; its Services, redis-master included, are members (not prefix instances)', () => {
    const idx = new OperatorIndex()
    const s = bitnamiRedisSentinel()
    expect(idx.serviceChanged(key(s.master), s.master)).toEqual([])
    expect(idx.isMember(`${NS}/redis-master`)).toBe(true)
    expect(idx.nameOfService(`${NS}/redis-master`)).toBeNull()
    // The Service with endpoints arrives: the release claims its name.
    expect(idx.serviceChanged(key(s.headless), s.headless)).toEqual(['redis'])
    expect(idx.nameOfService(`${NS}/redis-master`)).toBe('redis')
    expect(idx.groupsNamed('redis')).toEqual([`${NS}/bitnami-redis/redis`])
    expect(idx.membersOf(`${NS}/bitnami-redis/redis`).map((m) => m.key)).toEqual([`${NS}/redis-headless`, `${NS}/redis-master`])
    expect(idx.isMember(`${NS}/redis-orders`)).toBe(false)
  })

  it('a rename by annotation reports the old and the new name; deleting the last endpoint Service releases the name', () => {
    const idx = new OperatorIndex()
    const b = bitnamiRedisReplication()
    idx.serviceChanged(key(b.headless), b.headless)
    idx.serviceChanged(key(b.master), b.master)
    const renamed = withAnnotations(b.master, { [INSTANCE_ANNOTATION]: 'orders' })
    expect(idx.serviceChanged(key(renamed), renamed).sort()).toEqual(['cache', 'orders'])
    expect(idx.groupsNamed('cache')).toEqual([])
    expect(idx.groupsNamed('orders')).toEqual([`${NS}/bitnami-redis/cache`])
    expect(idx.serviceChanged(key(b.headless), null)).toEqual(['orders'])
    expect(idx.groupsNamed('orders')).toEqual([])
    expect(idx.isMember(key(b.master))).toBe(true)
    expect(idx.serviceChanged(key(b.master), null)).toEqual([])
    expect(idx.isMember(key(b.master))).toBe(false)
  })

  it('a Service relabelled out of a chart stops being a member', () => {
    const idx = new OperatorIndex()
    const b = bitnamiRedisReplication()
    idx.serviceChanged(key(b.headless), b.headless)
    const plain = { ...b.headless, metadata: { ...b.headless.metadata, labels: { app: 'x' } } }
    expect(idx.serviceChanged(key(plain), plain)).toEqual(['cache'])
    expect(idx.isMember(key(plain))).toBe(false)
    expect(idx.groupsNamed('cache')).toEqual([])
  })

  it('two releases with one name in two namespaces both claim it (the source picks the oldest)', () => {
    const idx = new OperatorIndex()
    const a = otReplication('cache')
    const other = otService('cache-headless', otLabels('cache', 'replication', 'replication'), 'cache', true)
    const b = { ...other, metadata: { ...other.metadata, namespace: 'team-b' } }
    idx.serviceChanged(key(a.headless), a.headless)
    idx.serviceChanged(key(b), b)
    expect(idx.groupsNamed('cache')).toEqual([`${NS}/ot-redis-replication/cache`, 'team-b/ot-redis-replication/cache'])
  })
})

function withAnnotations<T extends V1Service>(svc: T, annotations: Record<string, string>): T {
  return { ...svc, metadata: { ...svc.metadata, annotations: { ...svc.metadata?.annotations, ...annotations } } }
}
