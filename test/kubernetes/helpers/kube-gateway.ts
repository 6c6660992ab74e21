// Shared by the Kubernetes discovery tests (discovery.test.ts, all-namespaces.test.ts): a Gateway
// started in-process from a config object with a kubeconfig (its log lines and discovery events
// captured), commands through its data plane, and the Kubernetes objects the tests write (Services,
// EndpointSlices pointing at Redis servers in network namespaces, RBAC grants) through the real API.

import { Writable } from 'node:stream'
import { Redis as IORedis } from 'ioredis'
import { stringify } from 'yaml'
import { loadConfig } from '../../../src/config/load.js'
import { Gateway } from '../../../src/gateway.js'
import type { InstanceChangeEvent } from '../../../src/core/events.js'
import { createLogger } from '../../../src/telemetry/logger.js'
import { configObject, WRITE_TOKEN } from '../../helpers/gateway.js'
import type { RedisServer } from '../../helpers/redis-server.js'
import { waitFor } from '../../helpers/wait.js'
import type { KubeCluster } from './cluster.js'

export const MAINTENANCE = 'redis-gateway.io/maintenance'

// ---------------------------------------------------------------------------------------------
// A gateway started from a config object, with a kubeconfig, and its log lines captured.

export interface KubeGateway {
  gateway: Gateway
  logs: string[]
  /** Every discovery event, with performance.now() of its arrival. */
  discovery: { at: number; kind: string; resource?: string; instance?: string; error?: string; status?: number }[]
  /** Every routing-table instance change (what the log reports, at info or, in bulk, at debug). */
  instanceChanges: InstanceChangeEvent[]
  /** Jobs posted to the gateway's background queue (discovery's reconcile chunks and list reports). */
  backgroundPosts(): number
  base(instance: string): string
  metric(name: string, labels: Record<string, string>): Promise<number>
  stop(): Promise<void>
}

/** `kubernetes`: more discovery.kubernetes keys (labelSelector, optIn), as a config file would set them. */
export async function startKubeGateway(namespaces: string[], kubeconfig: string, kubernetes: Record<string, unknown> = {}): Promise<KubeGateway> {
  const text = stringify(
    configObject({
      instances: [],
      extra: {
        discovery: { kubernetes: { namespaces, servicePrefix: 'redis-', ...kubernetes } },
        log: { level: 'info' },
        health: { interval: '200ms' },
        shutdown: { delay: '0s', timeout: '1s' },
      },
    }),
  )
  const config = loadConfig({ text, env: {} })
  const logs: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(line)
      if (process.env['GATEWAY_TEST_LOG']) process.stderr.write(chunk)
      cb()
    },
  })
  const logger = createLogger('info', sink)
  const gateway = new Gateway({ config, runtime: { zone: null, kubeconfig, tracing: { enabled: false, serviceNameSet: false } }, logger, env: {} })
  const discovery: KubeGateway['discovery'] = []
  gateway.events.on('discovery', (e) => {
    // Kubernetes discovery's own events (static instances report one 'listed' at start too).
    if (e.source !== 'kubernetes') return
    const { resource, instance, error, status } = e as { resource?: string; instance?: string; error?: string; status?: number }
    discovery.push({
      at: performance.now(),
      kind: e.kind,
      ...(resource !== undefined ? { resource } : {}),
      ...(instance !== undefined ? { instance } : {}),
      ...(error !== undefined ? { error } : {}),
      ...(status !== undefined ? { status } : {}),
    })
  })
  const instanceChanges: InstanceChangeEvent[] = []
  gateway.events.on('instanceChange', (e) => instanceChanges.push(e))
  let posts = 0
  const post = gateway.background.post.bind(gateway.background)
  gateway.background.post = (job) => {
    posts++
    post(job)
  }
  await gateway.start()
  return {
    gateway,
    logs,
    discovery,
    instanceChanges,
    backgroundPosts: () => posts,
    base: (instance) => `${gateway.dataUrl}/v1/instances/${instance}`,
    async metric(name, labels) {
      const text = await (await fetch(`${gateway.opsUrl}/metrics`)).text()
      let sum = 0
      for (const line of text.split('\n')) {
        const m = /^([a-z_]+)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line)
        if (!m || m[1] !== name) continue
        const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
        if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3])
      }
      return sum
    },
    stop: () => gateway.stop({ idleCloseMs: 0 }),
  }
}

export interface Reply {
  status: number
  body: { result?: unknown; error?: string }
}

export async function command(gw: KubeGateway, instance: string, args: string[]): Promise<Reply> {
  const res = await fetch(gw.base(instance), {
    method: 'POST',
    headers: { authorization: `Bearer ${WRITE_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(args),
    signal: AbortSignal.timeout(5_000),
  })
  return { status: res.status, body: (await res.json()) as Reply['body'] }
}

/**
 * Polls `check` every 5 ms (detection times are measured with it) until it is true; returns ms
 * since `t0`. Throws once `timeoutMs` have passed since `t0`.
 */
export async function elapsedUntil(t0: number, what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<number> {
  await waitFor(check, { message: what, timeoutMs: Math.max(0, t0 + timeoutMs - performance.now()), intervalMs: 5 })
  return performance.now() - t0
}

/** One command on a direct connection (host side of the veth pair to the netns address). */
export async function directly<T>(redis: RedisServer, fn: (client: IORedis) => Promise<T>): Promise<T> {
  const client = new IORedis({ host: redis.host, port: redis.port, lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    return await fn(client)
  } finally {
    client.disconnect()
  }
}

export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  await elapsedUntil(performance.now(), what, check, timeoutMs)
}

// ---------------------------------------------------------------------------------------------
// Kubernetes objects.

export function service(name: string, annotations: Record<string, string> = {}): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, annotations },
    spec: { type: 'ClusterIP', ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }] },
  }
}

export function slice(name: string, serviceName: string, redis: RedisServer): unknown {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [redis.host], conditions: { ready: true } }],
    ports: [{ name: 'redis', port: redis.port, protocol: 'TCP' }],
  }
}

export async function ok(cluster: KubeCluster, method: string, path: string, body?: unknown, contentType?: string): Promise<void> {
  const res = await cluster.request(method, path, body, contentType ? { contentType } : {})
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`)
}

export const svcPath = (ns: string, name = ''): string => `/api/v1/namespaces/${ns}/services${name ? `/${name}` : ''}`
export const slicePath = (ns: string, name = ''): string =>
  `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices${name ? `/${name}` : ''}`

/**
 * Creates the EndpointSlice before its Service, so the gateway never sees the Service without
 * endpoints (it would fall back to the cluster IP, an address outside this machine's veth pairs).
 */
export async function createRedisService(cluster: KubeCluster, ns: string, name: string, redis: RedisServer): Promise<void> {
  await ok(cluster, 'POST', slicePath(ns), slice(`${name}-1`, name, redis))
  await ok(cluster, 'POST', svcPath(ns), service(name))
}

/** Deletes the Service first (the instance goes away), then its slice. */
export async function deleteRedisService(cluster: KubeCluster, ns: string, name: string): Promise<void> {
  await ok(cluster, 'DELETE', svcPath(ns, name))
  await ok(cluster, 'DELETE', slicePath(ns, `${name}-1`))
}

/** Sets (null: removes) one annotation of a Service, as `kubectl annotate` does (merge patch). */
export async function annotate(cluster: KubeCluster, ns: string, name: string, value: string | null, key = MAINTENANCE): Promise<void> {
  await ok(cluster, 'PATCH', svcPath(ns, name), { metadata: { annotations: { [key]: value } } }, 'application/merge-patch+json')
}

/** What the watcher calls, and all it may call: list and watch of the two resources. */
export const DISCOVERY_RULES = [
  { apiGroups: [''], resources: ['services'], verbs: ['list', 'watch'] },
  { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
]

/** A Role with DISCOVERY_RULES in one namespace, bound to a static-token user. */
export async function grantDiscovery(cluster: KubeCluster, ns: string, user = 'gateway'): Promise<void> {
  const rbac = `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}`
  await ok(cluster, 'POST', `${rbac}/roles`, { metadata: { name: 'redis-gateway-discovery' }, rules: DISCOVERY_RULES })
  await ok(cluster, 'POST', `${rbac}/rolebindings`, {
    metadata: { name: 'redis-gateway-discovery' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'redis-gateway-discovery' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
  })
}

/** A ClusterRole with DISCOVERY_RULES, bound cluster-wide to a static-token user (namespaces ["*"]). */
export async function grantClusterDiscovery(cluster: KubeCluster, user: string): Promise<void> {
  const rbac = '/apis/rbac.authorization.k8s.io/v1'
  const name = `redis-gateway-discovery-${user}`
  await ok(cluster, 'POST', `${rbac}/clusterroles`, { metadata: { name }, rules: DISCOVERY_RULES })
  await ok(cluster, 'POST', `${rbac}/clusterrolebindings`, {
    metadata: { name },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
  })
}
