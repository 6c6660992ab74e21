// Smoke test of the test control plane itself: a real etcd and
// kube-apiserver built by scripts/kube/tools.sh, driven over plain HTTPS with bearer tokens.
// It shows what the discovery tests rely on: objects survive an apiserver restart, compaction
// makes old resourceVersions 410 Gone, EndpointSlices refuse loopback addresses, RBAC applies
// to the static-token users, and stop() leaves no process behind.

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/wait.js'
import { startCluster, toolVersions, type KubeCluster } from './helpers/cluster.js'

const execFileAsync = promisify(execFile)

interface Meta {
  name: string
  namespace?: string
  resourceVersion?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}
interface Obj {
  metadata: Meta
}
interface List<T = Obj> {
  metadata: { resourceVersion: string }
  items: T[]
}
interface Status {
  kind: 'Status'
  code: number
  reason: string
  message: string
}

const NS = 'smoke'
const SERVICE = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'redis-cache', annotations: { 'redis-gateway.io/role': 'primary' } },
  spec: { clusterIP: 'None', ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }] },
}
function slice(name: string, addressType: 'IPv4' | 'IPv6' | 'FQDN', addresses: string[]): object {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      labels: { 'kubernetes.io/service-name': 'redis-cache', 'endpointslice.kubernetes.io/managed-by': 'redis-gateway-tests' },
    },
    addressType,
    endpoints: addresses.map((address) => ({ addresses: [address], conditions: { ready: true, serving: true, terminating: false } })),
    ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }],
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function kubectlPath(): string | undefined {
  return ['/usr/bin/kubectl', '/usr/local/bin/kubectl'].find((file) => existsSync(file))
}

describe('test control plane (etcd + kube-apiserver)', () => {
  let cluster: KubeCluster

  beforeAll(async () => {
    cluster = await startCluster()
    console.log(
      `cluster ${cluster.server}: kube-apiserver ${cluster.versions.kubeApiServer}, etcd ${cluster.versions.etcd}; ` +
        `etcd ready in ${cluster.timings.etcdStartMs} ms, apiserver ready in ${cluster.timings.apiServerStartMs[0]} ms`,
    )
  })

  afterAll(async () => {
    await cluster?.stop()
  })

  it('serves the pinned Kubernetes version', async () => {
    const res = await cluster.request<{ gitVersion: string }>('GET', '/version')
    expect(res.status).toBe(200)
    expect(res.body.gitVersion).toBe(toolVersions().KUBE_VERSION)
  })

  it('creates a namespace, a Service and EndpointSlices and lists them back', async () => {
    expect((await cluster.request('POST', '/api/v1/namespaces', { metadata: { name: NS } })).status).toBe(201)
    expect((await cluster.request('POST', `/api/v1/namespaces/${NS}/services`, SERVICE)).status).toBe(201)
    const slices = [slice('redis-cache-v4', 'IPv4', ['10.231.0.2', '10.231.0.3']), slice('redis-cache-v6', 'IPv6', ['fd00:231::2']), slice('redis-cache-fqdn', 'FQDN', ['redis-0.redis-cache.smoke.test'])]
    for (const body of slices) {
      const res = await cluster.request<Status>('POST', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, body)
      expect(res.status, JSON.stringify(res.body)).toBe(201)
    }

    const services = await cluster.request<List>('GET', `/api/v1/namespaces/${NS}/services`)
    expect(services.body.items.map((s) => s.metadata.name)).toEqual(['redis-cache'])
    expect(services.body.items[0]?.metadata.annotations).toEqual({ 'redis-gateway.io/role': 'primary' })
    const listed = await cluster.request<List<Obj & { addressType: string }>>(
      'GET',
      `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices?labelSelector=${encodeURIComponent('kubernetes.io/service-name=redis-cache')}`,
    )
    expect(listed.body.items.map((s) => `${s.metadata.name}:${s.addressType}`).sort()).toEqual([
      'redis-cache-fqdn:FQDN',
      'redis-cache-v4:IPv4',
      'redis-cache-v6:IPv6',
    ])
  })

  it('refuses loopback, link-local and unspecified endpoint addresses (why the suite needs network namespaces or FQDN slices)', async () => {
    for (const [type, address, why] of [
      ['IPv4', '127.0.0.1', 'loopback'],
      ['IPv6', '::1', 'loopback'],
      ['IPv4', '169.254.10.1', 'link-local'],
      ['IPv4', '0.0.0.0', 'unspecified'],
      ['FQDN', 'localhost', 'two segments'],
    ] as const) {
      const res = await cluster.request<Status>('POST', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, slice(`bad-${why.replace(/\s/g, '')}-${type.toLowerCase()}`, type, [address]))
      expect(res.status, `${address}: ${JSON.stringify(res.body)}`).toBe(422)
      expect(res.body.message).toContain(why)
    }
  })

  it('writes kubeconfigs that kubectl accepts', async (ctx) => {
    const kubectl = kubectlPath()
    if (!kubectl) return ctx.skip('kubectl is not on this machine (the product uses @kubernetes/client-node)')
    const kubeconfig = cluster.kubeconfigFor(cluster.adminToken, { namespace: NS })
    const { stdout } = await execFileAsync(kubectl, ['--kubeconfig', kubeconfig, 'get', 'services,endpointslices', '-o', 'json'])
    const names = (JSON.parse(stdout) as List).items.map((o) => o.metadata.name).sort()
    expect(names).toEqual(['redis-cache', 'redis-cache-fqdn', 'redis-cache-v4', 'redis-cache-v6'])
  })

  it('keeps everything across an apiserver restart on the same port', async () => {
    const before = cluster.pids().apiServer
    await cluster.restartApiServer()
    expect(cluster.pids().apiServer).not.toBe(before)
    console.log(`apiserver restarted, ready in ${cluster.timings.apiServerStartMs.at(-1)} ms`)
    const services = await cluster.request<List>('GET', `/api/v1/namespaces/${NS}/services`)
    expect(services.status).toBe(200)
    expect(services.body.items.map((s) => s.metadata.name)).toEqual(['redis-cache'])
    const slices = await cluster.request<List>('GET', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`)
    expect(slices.body.items).toHaveLength(3)
  })

  it('fails requests while the apiserver is down, and serves again after start', async () => {
    await cluster.stopApiServer({ signal: 'SIGKILL' })
    await expect(cluster.request('GET', '/readyz', undefined, { timeoutMs: 2_000 })).rejects.toThrow(/ECONNREFUSED/)
    await cluster.startApiServer()
    expect((await cluster.request('GET', `/api/v1/namespaces/${NS}/services`)).status).toBe(200)
  })

  it('answers a watch from a compacted resourceVersion with 410 Gone', async () => {
    const path = `/api/v1/namespaces/${NS}/services`
    const oldRv = (await cluster.request<List>('GET', path)).body.metadata.resourceVersion
    const patch = (value: string): Promise<unknown> =>
      cluster.request('PATCH', `${path}/redis-cache`, { metadata: { annotations: { 'redis-gateway.io/weight': value } } }, { contentType: 'application/merge-patch+json' })
    await patch('2')

    // Before compaction the old version is still watchable: the patch comes as MODIFIED.
    const early = await cluster.watchOnce<Obj>(path, { resourceVersion: oldRv })
    expect(early.events.map((e) => e.type)).toEqual(['MODIFIED'])

    const lastRv = (await cluster.request<List>('GET', path)).body.metadata.resourceVersion
    const compactedAt = await cluster.compact()
    console.log(`compacted etcd at revision ${compactedAt} (watched from ${oldRv})`)
    expect(compactedAt).toBeGreaterThan(Number(oldRv))
    // Both the version before the patch and the newest one seen before compact() are gone.
    expect(Number(lastRv)).toBeLessThan(compactedAt)
    for (const rv of [oldRv, lastRv]) {
      const late = await cluster.watchOnce<Status>(path, { resourceVersion: rv })
      expect(late.status).toBe(200)
      expect(late.events[0]?.type, `watch from ${rv}: ${JSON.stringify(late)}`).toBe('ERROR')
      expect(late.events[0]?.object).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired' })
    }
    const list = await cluster.request<Status>('GET', `${path}?resourceVersion=${oldRv}&resourceVersionMatch=Exact`)
    expect([list.status, list.body.reason]).toEqual([410, 'Expired'])

    // A watch from the current version still works.
    const currentRv = (await cluster.request<List>('GET', path)).body.metadata.resourceVersion
    const watching = cluster.watchOnce<Obj>(path, { resourceVersion: currentRv, timeoutMs: 10_000 })
    await new Promise((resolve) => setTimeout(resolve, 200))
    await patch('3')
    const fresh = await watching
    expect(fresh.events.map((e) => [e.type, e.object.metadata.annotations?.['redis-gateway.io/weight']])).toEqual([['MODIFIED', '3']])
  })

  it('applies RBAC to the static-token users', async () => {
    const gateway = cluster.tokenFor('gateway')
    const denied = await cluster.request<Status>('GET', `/api/v1/namespaces/${NS}/services`, undefined, { token: gateway })
    expect(denied.status).toBe(403)

    const rules = [
      { apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
    ]
    const rbac = `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}`
    expect((await cluster.request('POST', `${rbac}/roles`, { metadata: { name: 'gateway-discovery' }, rules })).status).toBe(201)
    const binding = {
      metadata: { name: 'gateway-discovery' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'gateway-discovery' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'gateway' }],
    }
    expect((await cluster.request('POST', `${rbac}/rolebindings`, binding)).status).toBe(201)

    // RBAC changes reach the authorizer through its informers: not necessarily at once.
    await waitFor(async () => (await cluster.request('GET', `/api/v1/namespaces/${NS}/services`, undefined, { token: gateway })).status === 200, {
      timeoutMs: 10_000,
      intervalMs: 100,
      message: 'the Role binding to let the gateway list Services',
    })
    expect((await cluster.request('GET', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, undefined, { token: gateway })).status).toBe(200)
    expect((await cluster.request('GET', `/api/v1/namespaces/${NS}/secrets`, undefined, { token: gateway })).status).toBe(403)
    expect((await cluster.request('GET', '/api/v1/namespaces/default/services', undefined, { token: gateway })).status).toBe(403)
    expect((await cluster.request('GET', `/api/v1/namespaces/${NS}/services`, undefined, { token: cluster.tokenFor('outsider') })).status).toBe(403)
    expect((await cluster.request('GET', `/api/v1/namespaces/${NS}/services`, undefined, { token: 'not-a-token' })).status).toBe(401)
  })

  it('stop() ends both processes and removes the temp dir', async () => {
    const pids = cluster.pids()
    expect(pids.etcd).toBeTypeOf('number')
    expect(pids.apiServer).toBeTypeOf('number')
    await cluster.stop()
    expect(pidAlive(pids.etcd as number)).toBe(false)
    expect(pidAlive(pids.apiServer as number)).toBe(false)
    expect(existsSync(cluster.dir)).toBe(false)
  })
})
