// Scoped discovery (discovery.kubernetes.labelSelector and optIn) against a real kube-apiserver +
// etcd, with real redis-servers in network namespaces:
//
// - the config parser accepts and refuses exactly the selectors kube-apiserver does (the shared
//   table in test/helpers/label-selector-cases.ts, each sent to the API server);
// - labelSelector team=payments: a redis-* Service with the label is an instance, one without is
//   not; optIn: only Services labelled redis-gateway.io/expose=true are; both together: AND;
//   a gateway without either (the control) sees every one of them;
// - the API server does the filtering: each gateway's first lists held only the selected Services
//   and EndpointSlices (the "discovery listed" log line counts them), and the API server's audit log
//   shows that every list and watch each gateway sent, of Services and of EndpointSlices, carried
//   its selector;
// - changes after start: a Service created or relabelled into the selection becomes an instance,
//   one relabelled out of it stops being one.
//
// There is no controller-manager here, so EndpointSlices are written by the test exactly as the
// EndpointSlice controller writes them (k8s.io/endpointslice: newEndpointSlice and
// setEndpointSliceLabels): the Service's labels copied, except the three the controller sets itself
// (kubernetes.io/service-name, endpointslice.kubernetes.io/managed-by, service.kubernetes.io/headless),
// an owner reference to the Service, generateName "<service>-"; and rewritten when the Service's
// labels change, as the controller's reconciler does.
//
// The tests run in order and share one cluster; each gateway has its own user, so the audit log
// tells their requests apart.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LabelSelectorError, parseLabelSelector } from '../../src/config/label-selector.js'
import { ACCEPTED, REFUSED } from '../helpers/label-selector-cases.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { startCluster, type KubeCluster } from './helpers/cluster.js'
import { command, directly, DISCOVERY_RULES, ok, slicePath, startKubeGateway, svcPath, waitUntil, type KubeGateway } from './helpers/kube-gateway.js'
import { createNetns, type Netns } from './helpers/netns.js'

const NS = 'shop'
const EXPOSE = 'redis-gateway.io/expose'
/** One static-token user per gateway, so the audit log tells their requests apart. */
const USERS = { scoped: 'scoped-gateway', optIn: 'optin-gateway', both: 'both-gateway', all: 'unscoped-gateway' } as const

let cluster: KubeCluster
let auditDir: string
let auditLog: string
let netA: Netns
let netB: Netns
let redisA: RedisServer
let redisB: RedisServer
const gateways: KubeGateway[] = []

// ---------------------------------------------------------------------------------------------
// Services and EndpointSlices as the API server and the EndpointSlice controller make them.

interface ServiceObject {
  metadata: { name: string; namespace: string; uid: string; labels?: Record<string, string> }
  spec: { clusterIP?: string }
}

const SLICE_RESERVED = ['kubernetes.io/service-name', 'endpointslice.kubernetes.io/managed-by', 'service.kubernetes.io/headless']

/** setEndpointSliceLabels: the Service's labels minus the reserved ones, then the controller's own. */
function sliceLabels(svc: ServiceObject): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const [k, v] of Object.entries(svc.metadata.labels ?? {})) if (!SLICE_RESERVED.includes(k)) labels[k] = v
  if (svc.spec.clusterIP === 'None' || !svc.spec.clusterIP) labels['service.kubernetes.io/headless'] = ''
  labels['kubernetes.io/service-name'] = svc.metadata.name
  labels['endpointslice.kubernetes.io/managed-by'] = 'endpointslice-controller.k8s.io'
  return labels
}

/** A Service with a pod selector (the controller makes slices only for those) and the given labels. */
async function createService(name: string, labels: Record<string, string>): Promise<ServiceObject> {
  const res = await cluster.request<ServiceObject>('POST', svcPath(NS), {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, labels },
    spec: { type: 'ClusterIP', selector: { app: name }, ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }] },
  })
  if (res.status !== 201) throw new Error(`POST Service ${name}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

/** newEndpointSlice, with one ready endpoint (the Redis server in its netns) and the target port. */
async function createControllerSlice(svc: ServiceObject, redis: RedisServer): Promise<string> {
  const res = await cluster.request<{ metadata: { name: string } }>('POST', slicePath(NS), {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      generateName: `${svc.metadata.name}-`,
      labels: sliceLabels(svc),
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata.name, uid: svc.metadata.uid, controller: true, blockOwnerDeletion: true }],
    },
    addressType: 'IPv4',
    endpoints: [{ addresses: [redis.host], conditions: { ready: true, serving: true, terminating: false } }],
    ports: [{ name: 'redis', port: redis.port, protocol: 'TCP' }],
  })
  if (res.status !== 201) throw new Error(`POST EndpointSlice of ${svc.metadata.name}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.metadata.name
}

const sliceNames = new Map<string, string>()

async function redisService(name: string, labels: Record<string, string>, redis: RedisServer): Promise<void> {
  const svc = await createService(name, labels)
  sliceNames.set(name, await createControllerSlice(svc, redis))
}

/** `kubectl label`, then what the controller's reconciler does: the slice's labels follow the Service's. */
async function relabel(name: string, changes: Record<string, string | null>): Promise<void> {
  const patched = await cluster.request<ServiceObject>('PATCH', svcPath(NS, name), { metadata: { labels: changes } }, { contentType: 'application/merge-patch+json' })
  if (patched.status !== 200) throw new Error(`PATCH Service ${name}: ${patched.status} ${JSON.stringify(patched.body)}`)
  const slicePathOf = slicePath(NS, sliceNames.get(name))
  const slice = await cluster.request<{ metadata: { labels: Record<string, string> } }>('GET', slicePathOf)
  slice.body.metadata.labels = sliceLabels(patched.body)
  await ok(cluster, 'PUT', slicePathOf, slice.body)
}

// ---------------------------------------------------------------------------------------------
// Gateways, and what they saw.

const whoami = async (g: KubeGateway, instance: string): Promise<unknown> => (await command(g, instance, ['GET', 'whoami'])).body.result
const status = async (g: KubeGateway, instance: string): Promise<number> => (await command(g, instance, ['PING'])).status
const ready = async (g: KubeGateway): Promise<boolean> => (await fetch(`${g.gateway.opsUrl}/readyz`)).status === 200

async function gatewayAs(user: string, kubernetes: Record<string, unknown>): Promise<KubeGateway> {
  const g = await startKubeGateway([NS], cluster.kubeconfigFor(cluster.tokenFor(user), { name: user }), kubernetes)
  gateways.push(g)
  await waitUntil(`${user} /readyz`, () => ready(g))
  return g
}

/** The instances among `names` a gateway serves, once every one of them has either routed or 404ed. */
async function instancesOf(g: KubeGateway, names: readonly string[]): Promise<string[]> {
  const served: string[] = []
  for (const n of names) if ((await status(g, n)) === 200) served.push(n)
  return served
}

/** Items of the gateway's first list of a resource, from its "discovery listed" log line. */
function firstListed(g: KubeGateway, resource: string): number | undefined {
  for (const line of g.logs) {
    const e = JSON.parse(line) as { msg?: string; resource?: string; items?: number }
    if (e.msg === 'discovery listed' && e.resource === resource) return e.items
  }
  return undefined
}

interface AuditEvent {
  verb: string
  stage: string
  requestURI: string
  user: { username: string }
  objectRef?: { resource?: string; namespace?: string }
  responseStatus?: { code?: number }
}

function auditEvents(): AuditEvent[] {
  let text = ''
  try {
    text = readFileSync(auditLog, 'utf8')
  } catch {
    return []
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent)
}

/** The list and watch requests of one user, as `verb resource labelSelector` (selector null when absent). */
function requestsOf(user: string): { verb: string; resource: string; selector: string | null; uri: string }[] {
  return auditEvents()
    .filter((e) => e.user.username === user && (e.verb === 'list' || e.verb === 'watch'))
    .map((e) => ({
      verb: e.verb,
      resource: e.objectRef?.resource ?? '',
      selector: new URL(e.requestURI, 'https://x').searchParams.get('labelSelector'),
      uri: e.requestURI,
    }))
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  auditDir = mkdtempSync(path.join(os.tmpdir(), 'rgw-audit-'))
  auditLog = path.join(auditDir, 'audit.log')
  const policy = path.join(auditDir, 'policy.json')
  // Metadata (the request URI, user and verb) of the gateways' requests on the two resources; nothing else.
  writeFileSync(
    policy,
    JSON.stringify({
      apiVersion: 'audit.k8s.io/v1',
      kind: 'Policy',
      omitStages: ['RequestReceived'],
      rules: [
        {
          level: 'Metadata',
          users: Object.values(USERS),
          resources: [
            { group: '', resources: ['services'] },
            { group: 'discovery.k8s.io', resources: ['endpointslices'] },
          ],
        },
        { level: 'None' },
      ],
    }),
  )
  cluster = await startCluster({
    users: Object.values(USERS),
    apiServerArgs: [`--audit-policy-file=${policy}`, `--audit-log-path=${auditLog}`, '--audit-log-mode=blocking', '--audit-log-format=json'],
  })
  ;[netA, netB] = await Promise.all([createNetns(), createNetns()])
  ;[redisA, redisB] = await Promise.all([netA.startRedis(), netB.startRedis()])
  await directly(redisA, (c) => c.set('whoami', 'A'))
  await directly(redisB, (c) => c.set('whoami', 'B'))

  await ok(cluster, 'POST', '/api/v1/namespaces', { metadata: { name: NS } })
  // One Role (list and watch of the two resources), bound to every gateway's user.
  const rbac = `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}`
  await ok(cluster, 'POST', `${rbac}/roles`, { metadata: { name: 'redis-gateway-discovery' }, rules: DISCOVERY_RULES })
  await ok(cluster, 'POST', `${rbac}/rolebindings`, {
    metadata: { name: 'redis-gateway-discovery' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'redis-gateway-discovery' },
    subjects: Object.values(USERS).map((name) => ({ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name })),
  })
  // RBAC reaches the authorizer through its informers: wait until the grant is in force. Asked with
  // SelfSubjectAccessReviews, not with a list, so that the audit log holds the gateways' lists only.
  for (const user of Object.values(USERS)) {
    for (const [group, resource] of [['', 'services'], ['discovery.k8s.io', 'endpointslices']] as const) {
      await waitUntil(`RBAC grant for ${user} on ${resource}`, async () => {
        const review = await cluster.request<{ status?: { allowed?: boolean } }>(
          'POST',
          '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
          { spec: { resourceAttributes: { namespace: NS, verb: 'watch', group, resource } } },
          { token: cluster.tokenFor(user) },
        )
        return review.body?.status?.allowed === true
      })
    }
  }

  // Before any gateway starts, so that their first lists find all of them.
  await redisService('redis-a', { team: 'payments' }, redisA)
  await redisService('redis-b', { team: 'orders' }, redisB)
  await redisService('redis-c', { [EXPOSE]: 'true' }, redisA)
  await redisService('redis-d', { [EXPOSE]: 'false' }, redisB)
  await redisService('redis-e', { team: 'payments', [EXPOSE]: 'true' }, redisB)
}, 180_000)

afterAll(async () => {
  const results = [
    await Promise.allSettled(gateways.map((g) => g.stop())),
    await Promise.allSettled([netA?.destroy(), netB?.destroy()]),
    await Promise.allSettled([cluster?.stop()]),
  ].flat()
  if (auditDir) rmSync(auditDir, { recursive: true, force: true })
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failures.length) throw new AggregateError(failures.map((f) => f.reason), 'teardown failed')
})

const ALL = ['a', 'b', 'c', 'd', 'e'] as const

describe('the selector syntax', () => {
  it('kube-apiserver accepts and refuses exactly the selectors the config parser does', async () => {
    const apiAccepts = async (selector: string): Promise<{ status: number; message: string }> => {
      const res = await cluster.request<{ message?: string }>('GET', `${svcPath(NS)}?limit=1&labelSelector=${encodeURIComponent(selector)}`)
      return { status: res.status, message: res.body?.message ?? '' }
    }
    for (const s of ACCEPTED) {
      expect((await apiAccepts(s)).status, `API server on ${JSON.stringify(s)}`).toBe(200)
      expect(() => parseLabelSelector(s), JSON.stringify(s)).not.toThrow()
    }
    for (const [s] of REFUSED) {
      const api = await apiAccepts(s)
      expect(api.status, `API server on ${JSON.stringify(s)}: ${api.message}`).toBe(400)
      expect(() => parseLabelSelector(s), JSON.stringify(s)).toThrow(LabelSelectorError)
    }
  })
})

describe('which Services become instances', () => {
  it('control: without a selector, every redis-* Service is an instance', async () => {
    const g = await gatewayAs(USERS.all, {})
    await waitUntil('all five routed', async () => (await instancesOf(g, ALL)).length === ALL.length)
    expect(firstListed(g, `services/${NS}`)).toBe(5)
    expect(firstListed(g, `endpointslices/${NS}`)).toBe(5)
  })

  it('labelSelector team=payments: redis-a (labelled) is an instance, redis-b (team=orders) is not', async () => {
    const g = await gatewayAs(USERS.scoped, { labelSelector: 'team=payments' })
    await waitUntil('a routed to A', async () => (await whoami(g, 'a')) === 'A')
    await waitUntil('e routed to B', async () => (await whoami(g, 'e')) === 'B')
    expect(await instancesOf(g, ALL)).toEqual(['a', 'e'])
    expect(await status(g, 'b')).toBe(404)
    // Filtered by the API server: the first lists held only the two selected Services and their
    // slices, not the other three of each (the control gateway's lists held five).
    expect(firstListed(g, `services/${NS}`)).toBe(2)
    expect(firstListed(g, `endpointslices/${NS}`)).toBe(2)
    expect(g.discovery.filter((e) => e.kind === 'reconciled').map((e) => e.resource)).not.toContain(`${NS}/redis-b`)
    expect(g.logs.some((l) => l.includes('"labelSelector":"team=payments"') && l.includes('kubernetes discovery'))).toBe(true)
  })

  it('optIn: only Services labelled redis-gateway.io/expose=true are instances', async () => {
    const g = await gatewayAs(USERS.optIn, { optIn: true })
    await waitUntil('c routed to A', async () => (await whoami(g, 'c')) === 'A')
    await waitUntil('e routed to B', async () => (await whoami(g, 'e')) === 'B')
    // redis-d is labelled expose=false; redis-a and redis-b carry no expose label.
    expect(await instancesOf(g, ALL)).toEqual(['c', 'e'])
    expect(firstListed(g, `services/${NS}`)).toBe(2)
    expect(firstListed(g, `endpointslices/${NS}`)).toBe(2)
  })

  it('labelSelector and optIn together: both must hold', async () => {
    const g = await gatewayAs(USERS.both, { labelSelector: 'team in (payments)', optIn: true })
    await waitUntil('e routed to B', async () => (await whoami(g, 'e')) === 'B')
    expect(await instancesOf(g, ALL)).toEqual(['e'])
    expect(firstListed(g, `services/${NS}`)).toBe(1)
    expect(firstListed(g, `endpointslices/${NS}`)).toBe(1)
  })
})

describe('changes after start (watch)', () => {
  it('a new Service with the label becomes an instance; one without does not', async () => {
    const [control, scoped] = [gateways[0]!, gateways[1]!]
    await redisService('redis-f', { team: 'payments' }, redisB)
    await redisService('redis-g', {}, redisA)
    await waitUntil('f routed on the scoped gateway', async () => (await whoami(scoped, 'f')) === 'B')
    // The control gateway serves g: it is a working instance, just not selected.
    await waitUntil('g routed on the control gateway', async () => (await whoami(control, 'g')) === 'A')
    expect(await status(scoped, 'g')).toBe(404)
  })

  it('relabelling moves a Service into and out of the selection', async () => {
    const scoped = gateways[1]!
    await relabel('redis-b', { team: 'payments' })
    await waitUntil('b routed once labelled', async () => (await whoami(scoped, 'b')) === 'B')
    await relabel('redis-a', { team: null })
    await waitUntil('a gone once unlabelled', async () => (await status(scoped, 'a')) === 404)
    expect(await instancesOf(scoped, [...ALL, 'f', 'g'])).toEqual(['b', 'e', 'f'])
    // optIn works the same way: labelling d expose=true exposes it.
    const optIn = gateways[2]!
    await relabel('redis-d', { [EXPOSE]: 'true' })
    await waitUntil('d exposed', async () => (await whoami(optIn, 'd')) === 'B')
  })
})

describe('the selector is applied by the API server', () => {
  it('every list and watch each gateway sent, of Services and of EndpointSlices, carried its selector (audit log)', async () => {
    const expected: Record<string, string | null> = {
      [USERS.all]: null,
      [USERS.scoped]: 'team=payments',
      [USERS.optIn]: 'redis-gateway.io/expose=true',
      [USERS.both]: 'team in (payments),redis-gateway.io/expose=true',
    }
    // A watch is audited when its response starts; wait until each gateway's four are there.
    await waitUntil('a list and a watch of each resource per gateway in the audit log', async () =>
      Object.keys(expected).every((user) => {
        const seen = new Set(requestsOf(user).map((r) => `${r.verb} ${r.resource}`))
        return ['list services', 'watch services', 'list endpointslices', 'watch endpointslices'].every((k) => seen.has(k))
      }),
    )
    for (const [user, selector] of Object.entries(expected)) {
      const reqs = requestsOf(user)
      expect(new Set(reqs.map((r) => r.resource)), user).toEqual(new Set(['services', 'endpointslices']))
      for (const r of reqs) expect(r.selector, `${user}: ${r.verb} ${r.uri}`).toBe(selector)
    }
    // And nobody else's requests are in it: the policy logs the gateways only.
    expect(new Set(auditEvents().map((e) => e.user.username))).toEqual(new Set(Object.values(USERS)))
  })
})
