// KubernetesSource with operator recognition (operators.ts), against a stand-in API server that
// lists fixed Services and EndpointSlices and holds watches open: which instances the reconciler
// publishes for a chart's release, the prefix rule it replaces for the release's Services, the
// explicit `redis-<name>` Service winning over a release of the same name, and `operators: false`.
// The behaviour on a real kube-apiserver is in test/kubernetes/operators.test.ts.
import { afterEach, describe, expect, it } from 'vitest'
import { waitFor } from '../../../test/helpers/wait.js'
import { kubeConfigFor as kubeConfig, startStandInApiServer } from '../../../test/helpers/stand-in-apiserver.js'
import { instanceUpdates, type InstanceSpec, type TopologyUpdate } from '../../core/topology.js'
import { KubernetesSource, type KubernetesSourceEvent } from './source.js'

const NS = 'redis-system'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** Runs a source over the objects until it synced and reconciled; returns the instances it published and its events. */
async function instancesOf(services: unknown[], slices: unknown[], operators?: boolean): Promise<{ instances: Map<string, InstanceSpec>; events: KubernetesSourceEvent[] }> {
  const api = await startStandInApiServer({ services, slices })
  cleanups.push(api.close)
  const instances = new Map<string, InstanceSpec>()
  const events: KubernetesSourceEvent[] = []
  const apply = (update: TopologyUpdate): void => {
    for (const u of instanceUpdates(update)) {
      if (u.type === 'upsert') instances.set(u.instance.name, u.instance)
      else instances.delete(u.name)
    }
  }
  const source = new KubernetesSource({
    kubeConfig: kubeConfig(api.url),
    namespaces: [NS],
    servicePrefix: 'redis-',
    apply,
    onEvent: (e) => events.push(e),
    ...(operators === undefined ? {} : { operators }),
  })
  source.start()
  cleanups.push(() => source.stop())
  await waitFor(async () => source.synced, { message: 'synced', timeoutMs: 5_000, intervalMs: 5 })
  // One more turn for the reconcile pass scheduled by the last list.
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setTimeout(r, 20))
  return { instances, events }
}

const chartLabels = (component?: string): Record<string, string> => ({
  'app.kubernetes.io/instance': 'redis',
  'app.kubernetes.io/managed-by': 'Helm',
  'app.kubernetes.io/name': 'redis',
  'helm.sh/chart': 'redis-20.6.2',
  ...(component ? { 'app.kubernetes.io/component': component } : {}),
})

function svc(name: string, labels: Record<string, string>, headless: boolean, created = '2026-01-01T10:00:00Z'): unknown {
  return {
    metadata: { name, namespace: NS, labels, creationTimestamp: created },
    spec: { type: 'ClusterIP', clusterIP: headless ? 'None' : '10.96.0.9', ports: [{ name: headless ? 'tcp-redis' : 'redis', port: 6379, protocol: 'TCP' }] },
  }
}

function slice(service: string, labels: Record<string, string>, ips: string[], portName: string): unknown {
  return {
    metadata: { name: `${service}-abcde`, namespace: NS, labels: { ...labels, 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    ports: [{ name: portName, port: 6379, protocol: 'TCP' }],
  }
}

// `helm install redis bitnami/redis`: fullname "redis", so its Services start with the prefix.
const release = {
  services: [svc('redis-headless', chartLabels(), true), svc('redis-master', chartLabels('master'), false), svc('redis-replicas', chartLabels('replica'), false)],
  slices: [
    slice('redis-headless', chartLabels(), ['10.1.0.2', '10.1.0.1'], 'tcp-redis'),
    slice('redis-master', chartLabels('master'), ['10.1.0.2'], 'tcp-redis'),
    slice('redis-replicas', chartLabels('replica'), ['10.1.0.1'], 'tcp-redis'),
  ],
}

describe('KubernetesSource with operators', () => {
  it('a release is one instance named after it; its Services are not instances by the prefix rule', async () => {
    const { instances } = await instancesOf(release.services, release.slices)
    expect([...instances.keys()]).toEqual(['redis'])
    const spec = instances.get('redis')!
    expect(spec.source).toBe(`kubernetes:${NS}/bitnami-redis/redis`)
    expect(spec.endpoints.map((e) => e.id)).toEqual(['10.1.0.2:6379', '10.1.0.1:6379'])
  })

  it('operators: false keeps the prefix rule alone (master, replicas, headless)', async () => {
    const { instances } = await instancesOf(release.services, release.slices, false)
    expect([...instances.keys()].sort()).toEqual(['headless', 'master', 'replicas'])
  })

  it('an explicit redis-<name> Service wins over a release of that name, even a younger one; the release is reported', async () => {
    const explicit = svc('redis-redis', { app: 'mine' }, false, '2026-06-01T00:00:00Z')
    const { instances, events } = await instancesOf(
      [...release.services, explicit],
      [...release.slices, slice('redis-redis', { app: 'mine' }, ['10.2.0.1'], 'redis')],
    )
    expect(instances.get('redis')?.source).toBe(`kubernetes:${NS}/redis-redis`)
    expect(instances.get('redis')?.endpoints.map((e) => e.id)).toEqual(['10.2.0.1:6379'])
    const conflict = events.find((e) => e.kind === 'conflict')
    expect(conflict).toMatchObject({ instance: 'redis', resource: `${NS}/bitnami-redis/redis` })
  })
})
