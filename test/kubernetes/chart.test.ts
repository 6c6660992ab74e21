// The Helm chart (charts/redis-gateway), checked with a real helm (built
// from its Go module by scripts/kube/tools.sh) and a real kube-apiserver + etcd:
//
// - `helm lint --strict` and `helm template` of the default and a full-featured set of values;
//   the rendered Deployment, Services, PDB, HPA, ServiceMonitor and dashboard say what the chart's
//   README promises;
// - the rendered gateway.yaml loads in the gateway's real config loader, with the token and password
//   files where the Deployment mounts them (a small stand-in for the kubelet writes the volumes);
// - values.schema.json rejects wrongly typed and misspelt values with helm's schema message, and
//   every value is typed in the schema and documented in the chart README;
// - the whole rendered output, manifests/ and the example Services are accepted by the API server
//   (server-side apply, dryRun=All, strict field validation); the ServiceMonitor against a minimal
//   monitoring.coreos.com CRD written here (the Prometheus Operator's CRDs are not available offline);
// - manifests/ matches a fresh render (scripts/manifests.sh --check), and the check catches drift;
// - RBAC: the chart's ServiceAccount, Role and RoleBinding are applied for real, a token is minted
//   for the ServiceAccount (TokenRequest), and the gateway process runs with that token, the
//   Deployment's environment and mounts: it discovers an example Service and follows an annotation
//   change. Then each of the four rules is dropped in turn and the gateway fails on it (403).
// - namespaces ["*"]: a ClusterRole and ClusterRoleBinding instead of Roles; applied for real, the
//   ServiceAccount may list/watch the two resources cluster-wide and nothing else (SubjectAccessReview),
//   the gateway serves Services of two namespaces with it, and each of the four rules is needed;
// - helm (as scripts/kube/tools.sh builds it) renders the chart without --kube-version;
// - NetworkPolicy (on by default): the rules for every value, accepted by the API server;
// - ops.auth and the discovery scope values reach gateway.yaml, and the gateway's loader reads each
//   as it reads the value written by hand;
// - zones: GATEWAY_ZONE from the pod's topology.kubernetes.io/zone label, which the real API
//   server copies from the node when the pod is bound; empty (zone-aware routing off) without it;
// - names: a 53-character release (Helm's longest) renders names of at most 63 characters, none
//   shared, and passes the dry run; container ports below 1024 are refused; PodMonitor;
// - manifests/examples/sidecar.yaml: the gateway as a native sidecar, dry-run and its config loaded.

import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { V1Service } from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isMap, isScalar, LineCounter, parse, parseAllDocuments, parseDocument, type Pair } from 'yaml'
import { loadConfig, loadRuntimeEnv } from '../../src/config/load.js'
import { configSchema } from '../../src/config/schema.js'
import { mapService } from '../../src/discovery/kubernetes/mapping.js'
import { freePort } from '../helpers/ports.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { startCluster, toolBinary, toolVersions, type KubeCluster } from './helpers/cluster.js'
import { createNetns, type Netns } from './helpers/netns.js'
import { ManagedProcess } from './helpers/processes.js'

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const CHART = path.join(repoRoot, 'charts/redis-gateway')
const RELEASE = 'rg'
const NS = 'redis-gateway'
const WATCHED = 'redis-system'
const OTHER = 'redis-apps'
const FIELD_MANAGER = 'redis-gateway-chart-test'

interface K8sObject {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
  [key: string]: unknown
}

// Deployment shapes the assertions read (a subset of apps/v1).
interface Container {
  name: string
  image: string
  restartPolicy?: string
  ports: { name: string; containerPort: number }[]
  env: { name: string; value?: string; valueFrom?: unknown }[]
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[]
  securityContext: Record<string, unknown>
  resources: { requests?: Record<string, string>; limits?: Record<string, string> }
  livenessProbe: Probe
  readinessProbe: Probe
  startupProbe: Probe
}
interface Probe {
  httpGet: { path: string; port: string }
  periodSeconds: number
}
interface Volume {
  name: string
  configMap?: { name: string }
  secret?: { secretName: string; items?: { key: string; path: string }[]; defaultMode?: number }
  emptyDir?: unknown
}
interface PodSpec {
  serviceAccountName: string
  automountServiceAccountToken: boolean
  securityContext: Record<string, unknown>
  terminationGracePeriodSeconds: number
  containers: Container[]
  initContainers?: Container[]
  volumes: Volume[]
  topologySpreadConstraints?: { topologyKey: string; labelSelector: { matchLabels: Record<string, string> }; matchLabelKeys?: string[] }[]
}
interface Deployment extends K8sObject {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: PodSpec } }
}

// ---------------------------------------------------------------------------------------------
// helm

let helmBin: string
let work: string

interface Run {
  status: number | null
  stdout: string
  stderr: string
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, cwd: repoRoot, maxBuffer: 64 * 1024 * 1024 })
  if (r.error) throw r.error
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

function helm(args: string[]): Run {
  return run(helmBin, args)
}

let valuesFiles = 0
/** A values file (JSON is YAML) for helm -f. */
function valuesFile(values: Record<string, unknown>): string {
  const file = path.join(work, `values-${valuesFiles++}.yaml`)
  writeFileSync(file, JSON.stringify(values, null, 2))
  return file
}

/**
 * The Kubernetes version to render for: the suite's kube-apiserver (v1.36), passed explicitly so
 * the render matches the API server it is applied to. helm's own default (what scripts/kube/tools.sh
 * links in, as helm's release builds do: Kubernetes 1.<minor of helm's client-go>, v1.37 for helm
 * v3.22) works too: see "renders without --kube-version".
 */
const KUBE_VERSION = toolVersions().KUBE_VERSION

function templateArgs(values: Record<string, unknown>, extra: string[] = [], release = RELEASE): string[] {
  return ['template', release, CHART, '--namespace', NS, '--kube-version', KUBE_VERSION, '-f', valuesFile(values), ...extra]
}

/** `helm template` with these values; the rendered objects. Throws with helm's message on failure. */
function render(values: Record<string, unknown> = {}, extra: string[] = [], release = RELEASE): K8sObject[] {
  const r = helm(templateArgs(values, extra, release))
  if (r.status !== 0) throw new Error(`helm template failed (${r.status}): ${r.stderr}`)
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((d): d is K8sObject => d !== null)
}

/** `helm template` that must fail; its error output. */
function renderError(args: string[]): string {
  const r = helm(['template', RELEASE, CHART, '--namespace', NS, '--kube-version', KUBE_VERSION, ...args])
  expect(r.status, `helm template ${args.join(' ')} should fail; it rendered:\n${r.stdout.slice(0, 500)}`).not.toBe(0)
  return r.stderr
}

function one<T extends K8sObject = K8sObject>(docs: K8sObject[], kind: string, name?: string): T {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name))
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}: ${docs.map((d) => `${d.kind}/${d.metadata.name}`).join(', ')}`)
  return found[0] as T
}

const deploymentOf = (docs: K8sObject[]): Deployment => one<Deployment>(docs, 'Deployment')
const containerOf = (docs: K8sObject[]): Container => deploymentOf(docs).spec.template.spec.containers[0] as Container
const gatewayYaml = (docs: K8sObject[]): string => (one(docs, 'ConfigMap', `${RELEASE}-redis-gateway`)['data'] as Record<string, string>)['gateway.yaml'] as string

/** Values that turn every optional part on. */
const FULL: Record<string, unknown> = {
  replicaCount: 3,
  image: { repository: 'registry.example.com/redis-gateway', tag: '1.2.3', digest: `sha256:${'a'.repeat(64)}` },
  discovery: {
    kubernetes: { namespaces: [WATCHED, OTHER, WATCHED] },
    static: { instances: [{ name: 'legacy', endpoints: ['redis://10.0.0.5:6379'], annotations: { 'redis-gateway.io/read-policy': 'any' } }] },
  },
  groups: { sessions: { strategy: 'sticky' } },
  auth: {
    tokens: [
      { name: 'app', access: 'write', value: 'app-token-0123456789' },
      { name: 'ops', access: 'admin', targets: ['orders', 'cache-*'], value: 'ops-token-0123456789' },
      { name: 'ro', access: 'read', sha256: 'ab'.repeat(32) },
      { name: 'tenant', access: 'write', value: 'tenant-token-0123456789', redisUser: 'tenant-a', redisPassword: 'tenant-a-redis-pw' },
    ],
  },
  redis: { username: 'gateway', password: 'redis-secret-pw', tls: false, commandTimeout: '1500ms', connectTimeout: 800, aclUsers: false },
  limits: { maxBody: '5MiB' },
  log: { level: 'debug' },
  shutdown: { delaySeconds: 10, timeoutSeconds: 30 },
  otel: { endpoint: 'http://jaeger-collector:4318', serviceName: 'gw', sampler: 'parentbased_traceidratio', samplerArg: '0.25', resourceAttributes: { 'deployment.environment': 'test' } },
  podAnnotations: { 'example.com/team': 'data' },
  zone: { fixed: 'zone-a' },
  nodeOptions: '--max-semi-space-size=8 --max-old-space-size=1024',
  extraEnv: [{ name: 'NODE_EXTRA_CA_CERTS', value: '/etc/ca/bundle.pem' }],
  ops: { auth: 'admin' },
  networkPolicy: {
    data: { namespaceSelector: { matchLabels: { team: 'shop' } }, podSelector: { matchLabels: { 'redis-gateway.io/client': 'true' } } },
    ops: { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } },
    redisPorts: [6379, 6380],
    dns: { to: [] },
    extraIngress: [{ ports: [{ port: 8080, protocol: 'TCP' }], from: [{ ipBlock: { cidr: '10.0.0.0/8' } }] }],
    extraEgress: [{ ports: [{ port: 9999, protocol: 'TCP' }], to: [{ ipBlock: { cidr: '192.0.2.0/24' } }] }],
  },
  extraVolumes: [{ name: 'ca', configMap: { name: 'redis-ca' } }],
  extraVolumeMounts: [{ name: 'ca', mountPath: '/etc/ssl/redis-ca', readOnly: true }],
  autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 9, targetMemoryUtilizationPercentage: 80 },
  serviceMonitor: { enabled: true, labels: { release: 'prometheus' }, interval: '15s' },
  grafanaDashboard: { enabled: true, namespace: 'monitoring', annotations: { grafana_folder: 'Redis' } },
}

// ---------------------------------------------------------------------------------------------
// A stand-in for the kubelet: writes the pod's volumes (ConfigMap, Secrets) under a temp dir and
// gives the container's environment, with every mount path mapped under that dir.

interface Materialized {
  root: string
  env: Record<string, string>
  /** A path inside the container -> where it is on this machine. */
  map(p: string): string
  /** The container's mount paths. */
  mounts: string[]
}

/** The labels the stand-in pod has: the zone the API server copies from the node (see "zones"). */
const POD_LABELS: Record<string, string> = { 'topology.kubernetes.io/zone': 'zone-test-1' }

function materialize(docs: K8sObject[], externalSecrets: K8sObject[] = [], podLabels: Record<string, string> = POD_LABELS): Materialized {
  const root = mkdtempSync(path.join(work, 'pod-'))
  const spec = deploymentOf(docs).spec.template.spec
  const c = spec.containers[0] as Container
  const mounts = c.volumeMounts.map((m) => m.mountPath).sort((a, b) => b.length - a.length)
  const map = (p: string): string => {
    const m = mounts.find((mp) => p === mp || p.startsWith(`${mp}/`))
    if (!m) throw new Error(`${p} is not under any volume mount of the container (${mounts.join(', ')})`)
    return path.join(root, p)
  }
  for (const vm of c.volumeMounts) {
    const vol = spec.volumes.find((v) => v.name === vm.name)
    if (!vol) throw new Error(`volumeMount ${vm.name} has no volume`)
    const dir = path.join(root, vm.mountPath)
    mkdirSync(dir, { recursive: true })
    if (vol.configMap) {
      // A ConfigMap the chart does not make (extraVolumes) is the user's: an empty directory here.
      const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === vol.configMap?.name)
      for (const [k, v] of Object.entries((cm?.['data'] ?? {}) as Record<string, string>)) writeFileSync(path.join(dir, k), v)
    } else if (vol.secret) {
      const name = vol.secret.secretName
      const secret = [...docs, ...externalSecrets].find((d) => d.kind === 'Secret' && d.metadata.name === name)
      if (!secret) throw new Error(`volume ${vol.name}: Secret ${name} does not exist (the pod would not start)`)
      const data = (secret['data'] ?? {}) as Record<string, string>
      for (const item of vol.secret.items ?? Object.keys(data).map((key) => ({ key, path: key }))) {
        // The kubelet refuses to start a pod whose Secret lacks an item's key.
        if (data[item.key] === undefined) throw new Error(`volume ${vol.name}: Secret ${name} has no key ${item.key}`)
        writeFileSync(path.join(dir, item.path), Buffer.from(data[item.key] as string, 'base64'))
      }
    }
  }
  const env: Record<string, string> = {}
  const fields: Record<string, string> = { 'metadata.name': 'gateway-pod-1', 'metadata.namespace': NS }
  for (const e of c.env) {
    if (e.value !== undefined) env[e.name] = e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, v: string) => env[v] ?? all)
    else {
      const f = (e.valueFrom as { fieldRef?: { fieldPath: string } } | undefined)?.fieldRef?.fieldPath
      const label = f === undefined ? undefined : /^metadata\.labels\['([^']+)'\]$/.exec(f)?.[1]
      // The kubelet resolves a label the pod does not have to "".
      if (label !== undefined) env[e.name] = podLabels[label] ?? ''
      else if (f === undefined || fields[f] === undefined) throw new Error(`env ${e.name}: unsupported valueFrom ${JSON.stringify(e.valueFrom)}`)
      else env[e.name] = fields[f]
    }
  }
  // The config file names the mounted files by their paths inside the container: map those too.
  const configPath = map(env['GATEWAY_CONFIG'] as string)
  const escaped = mounts.map((mp) => mp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
  const text = readFileSync(configPath, 'utf8').replace(new RegExp(`"(${escaped.join('|')})/`, 'g'), (_, mp: string) => `"${path.join(root, mp)}/`)
  writeFileSync(configPath, text)
  env['GATEWAY_CONFIG'] = configPath
  return { root, env, map, mounts }
}

/** File paths (tokenFile, passwordFile) the rendered gateway.yaml names. */
function secretPaths(yamlText: string): string[] {
  const cfg = parse(yamlText) as { auth?: { tokens?: { tokenFile?: string; redisPasswordFile?: string }[] }; redis?: { passwordFile?: string } }
  return [
    ...(cfg.auth?.tokens ?? []).flatMap((t) => [...(t.tokenFile ? [t.tokenFile] : []), ...(t.redisPasswordFile ? [t.redisPasswordFile] : [])]),
    ...(cfg.redis?.passwordFile ? [cfg.redis.passwordFile] : []),
  ]
}

// ---------------------------------------------------------------------------------------------
// The API server: server-side apply through REST (what kubectl apply --server-side sends).

let cluster: KubeCluster

const resources = new Map<string, { plural: string; namespaced: boolean }>()
async function resourceOf(apiVersion: string, kind: string): Promise<{ base: string; plural: string; namespaced: boolean }> {
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`
  const key = `${apiVersion}/${kind}`
  if (!resources.has(key)) {
    const res = await cluster.request<{ resources: { name: string; kind: string; namespaced: boolean }[] }>('GET', base)
    if (res.status !== 200) throw new Error(`GET ${base}: ${res.status} ${JSON.stringify(res.body)}`)
    for (const r of res.body.resources) if (!r.name.includes('/')) resources.set(`${apiVersion}/${r.kind}`, { plural: r.name, namespaced: r.namespaced })
  }
  const r = resources.get(key)
  if (!r) throw new Error(`the API server does not serve ${kind} in ${apiVersion}`)
  return { base, ...r }
}

async function objectPath(obj: K8sObject): Promise<string> {
  const r = await resourceOf(obj.apiVersion, obj.kind)
  const ns = obj.metadata.namespace
  if (r.namespaced && !ns) throw new Error(`${obj.kind}/${obj.metadata.name} has no namespace`)
  return `${r.base}${r.namespaced ? `/namespaces/${ns}` : ''}/${r.plural}/${obj.metadata.name}`
}

/** Server-side apply; with dryRun the API server validates, defaults and admits but stores nothing. */
async function apply(obj: K8sObject, opts: { dryRun?: boolean; token?: string } = {}): Promise<{ status: number; body: unknown }> {
  const query = new URLSearchParams({ fieldManager: FIELD_MANAGER, fieldValidation: 'Strict', force: 'true' })
  if (opts.dryRun) query.set('dryRun', 'All')
  const res = await cluster.request('PATCH', `${await objectPath(obj)}?${query}`, obj, {
    contentType: 'application/apply-patch+yaml',
    ...(opts.token ? { token: opts.token } : {}),
  })
  return { status: res.status, body: res.body }
}

async function applyOk(obj: K8sObject, opts: { dryRun?: boolean } = {}): Promise<void> {
  const r = await apply(obj, opts)
  if (r.status >= 300) throw new Error(`apply ${opts.dryRun ? '(dry run) ' : ''}${obj.kind}/${obj.metadata.name}: ${r.status} ${JSON.stringify(r.body)}`)
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  await waitFor(check, { message: what, timeoutMs })
}

/** What the API server's authorizer answers for the ServiceAccount (SubjectAccessReview, as admin). */
interface Access {
  verb: string
  resource: string
  group?: string
  namespace?: string
  name?: string
}

async function allowed(user: string, attrs: Access): Promise<boolean> {
  const res = await cluster.request<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: { user, groups: ['system:serviceaccounts', `system:serviceaccounts:${NS}`, 'system:authenticated'], resourceAttributes: { group: '', ...attrs } },
  })
  if (res.status !== 201 && res.status !== 200) throw new Error(`SubjectAccessReview: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.status?.allowed === true
}

/** The Prometheus Operator's duration pattern (its CRDs type `interval`, `scrapeTimeout`, `for` with it). */
const DURATION = { type: 'string', pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' }

/**
 * A minimal CustomResourceDefinition of a monitoring.coreos.com/v1 kind, written for this test:
 * structural, with `spec` as given (the fields the chart renders, typed as in the Prometheus
 * Operator's CRD), so strict field validation rejects anything else in those objects.
 */
function monitoringCrd(kind: string, shortName: string, spec: Record<string, unknown>): K8sObject {
  const singular = kind.toLowerCase()
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${singular}s.monitoring.coreos.com` },
    spec: {
      group: 'monitoring.coreos.com',
      scope: 'Namespaced',
      names: { kind, listKind: `${kind}List`, plural: `${singular}s`, singular, shortNames: [shortName] },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              required: ['spec'],
              properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec },
            },
          },
        },
      ],
    },
  }
}

/** A ServiceMonitor's or PodMonitor's spec: its scrape endpoints under `endpoints` (the list's key differs). */
function monitorSpec(endpoints: 'endpoints' | 'podMetricsEndpoints'): Record<string, unknown> {
  return {
    type: 'object',
    required: [endpoints, 'selector'],
    properties: {
      jobLabel: { type: 'string' },
      namespaceSelector: { type: 'object', properties: { any: { type: 'boolean' }, matchNames: { type: 'array', items: { type: 'string' } } } },
      selector: {
        type: 'object',
        properties: {
          matchLabels: { type: 'object', additionalProperties: { type: 'string' } },
          matchExpressions: { type: 'array', items: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
        },
      },
      [endpoints]: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            port: { type: 'string' },
            path: { type: 'string' },
            scheme: { type: 'string', enum: ['http', 'https'] },
            interval: DURATION,
            scrapeTimeout: DURATION,
            honorLabels: { type: 'boolean' },
            relabelings: { type: 'array', items: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
            metricRelabelings: { type: 'array', items: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          },
        },
      },
    },
  }
}

const SERVICE_MONITOR_CRD = monitoringCrd('ServiceMonitor', 'smon', monitorSpec('endpoints'))
const POD_MONITOR_CRD = monitoringCrd('PodMonitor', 'pmon', monitorSpec('podMetricsEndpoints'))
/** PrometheusRule: expr int-or-string, `for` a duration. */
const PROMETHEUS_RULE_CRD = monitoringCrd('PrometheusRule', 'promrule', {
  type: 'object',
  properties: {
    groups: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1 },
          interval: DURATION,
          rules: {
            type: 'array',
            items: {
              type: 'object',
              required: ['expr'],
              properties: {
                alert: { type: 'string' },
                record: { type: 'string' },
                expr: { 'x-kubernetes-int-or-string': true },
                for: DURATION,
                labels: { type: 'object', additionalProperties: { type: 'string' } },
                annotations: { type: 'object', additionalProperties: { type: 'string' } },
              },
            },
          },
        },
      },
    },
  },
})

/** Where the example application of manifests/examples/sidecar.yaml runs. */
const SIDECAR_NS = 'shop'
/** 53 characters: the longest release name helm accepts. */
const LONG_RELEASE = `${'a'.repeat(40)}-${'b'.repeat(12)}`

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  helmBin = toolBinary('helm')
  work = mkdtempSync(path.join(os.tmpdir(), 'redis-gateway-chart-'))
  cluster = await startCluster({ users: [] })
  for (const ns of [NS, WATCHED, OTHER, 'monitoring', SIDECAR_NS]) {
    const res = await cluster.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })
    if (res.status !== 201) throw new Error(`create namespace ${ns}: ${res.status} ${JSON.stringify(res.body)}`)
  }
}, 180_000)

afterAll(async () => {
  await cluster?.stop()
  if (work) rmSync(work, { recursive: true, force: true })
})

describe('helm lint and helm template', () => {
  it('helm lint --strict passes with the default and with the full set of values', () => {
    const version = helm(['version', '--short'])
    expect(version.stdout).toMatch(/^v3\./)
    for (const args of [[], ['-f', valuesFile(FULL)]]) {
      const r = helm(['lint', '--strict', '--kube-version', KUBE_VERSION, CHART, ...args])
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
      expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed')
    }
  })

  it('renders without --kube-version: the helm of scripts/kube/tools.sh has the release default, not v1.20', () => {
    // Built without helm's release ldflags, helm assumes Kubernetes v1.20 and refuses the chart's
    // kubeVersion ">=1.23.0-0". tools.sh links them in (chartutil and lint/rules k8sVersionMajor/Minor).
    const r = helm(['template', RELEASE, CHART, '--namespace', NS])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain('kind: Deployment')
    const lint = helm(['lint', '--strict', CHART])
    expect(lint.status, `${lint.stdout}\n${lint.stderr}`).toBe(0)
    // The default is helm's own client-go minor, which is newer than 1.23.
    const caps = helm(['template', RELEASE, CHART, '--namespace', NS, '--kube-version', 'v1.20.0'])
    expect(caps.status).not.toBe(0)
    expect(caps.stderr).toContain('chart requires kubeVersion: >=1.23.0-0 which is incompatible with Kubernetes v1.20.0')
  })

  it('default install: ConfigMap, Deployment, NetworkPolicy, PDB, Role and binding, Services, ServiceAccount, and no cluster-scoped RBAC', () => {
    const docs = render()
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual(
      [
        'ConfigMap/rg-redis-gateway',
        'Deployment/rg-redis-gateway',
        'NetworkPolicy/rg-redis-gateway',
        'PodDisruptionBudget/rg-redis-gateway',
        'Role/rg-redis-gateway-discovery',
        'RoleBinding/rg-redis-gateway-discovery',
        'Service/rg-redis-gateway',
        'Service/rg-redis-gateway-ops',
        'ServiceAccount/rg-redis-gateway',
      ].sort(),
    )
    for (const d of docs) {
      expect(d.metadata.namespace, `${d.kind} namespace`).toBe(d.kind === 'Role' || d.kind === 'RoleBinding' ? WATCHED : NS)
      expect(d.metadata.labels?.['app.kubernetes.io/instance']).toBe(RELEASE)
    }
  })

  it('Deployment: 2 replicas, spread, probes on the ops port, resources, non-root read-only, grace > drain', () => {
    const docs = render()
    const dep = deploymentOf(docs)
    const pod = dep.spec.template.spec
    const c = containerOf(docs)
    expect(dep.spec.replicas).toBe(2)
    // Topology spread over zones and nodes, selecting this release's pods.
    expect(pod.topologySpreadConstraints?.map((t) => t.topologyKey).sort()).toEqual(['kubernetes.io/hostname', 'topology.kubernetes.io/zone'])
    for (const t of pod.topologySpreadConstraints ?? []) expect(t.labelSelector.matchLabels).toEqual(dep.spec.selector.matchLabels)
    // Each rollout's new pods are spread among themselves (not around the old ReplicaSet's pods).
    for (const t of pod.topologySpreadConstraints ?? []) expect(t.matchLabelKeys).toEqual(['pod-template-hash'])
    expect(dep.spec.template.metadata.labels).toMatchObject(dep.spec.selector.matchLabels)
    // Probes on the ops port.
    expect(c.ports).toEqual([
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'ops', containerPort: 9090, protocol: 'TCP' },
    ])
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'ops' })
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'ops' })
    expect(c.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'ops' })
    // Resources (README "Sizing": from bench/README.md's figures).
    expect(c.resources.requests).toEqual({ cpu: '500m', memory: '256Mi' })
    expect(c.resources.limits).toEqual({ memory: '1536Mi' })
    // Non-root numeric user, read-only root filesystem, nothing privileged.
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } })
    expect(c.securityContext).toEqual({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
    // The only writable path is an emptyDir.
    const tmp = pod.volumes.find((v) => v.name === 'tmp')
    expect(tmp?.emptyDir).toBeDefined()
    // The credential for discovery: this ServiceAccount's token.
    expect(pod.serviceAccountName).toBe(one(docs, 'ServiceAccount').metadata.name)
    expect(pod.automountServiceAccountToken).toBe(true)
    // Grace: the shutdown delay plus the drain timeout (from the rendered config), plus margin.
    const shutdown = (parse(gatewayYaml(docs)) as { shutdown: { delay: string; timeout: string } }).shutdown
    expect(shutdown).toEqual({ delay: '5s', timeout: '20s' })
    expect(pod.terminationGracePeriodSeconds).toBe(30)
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(5 + 20)
  })

  it('the grace period follows the shutdown values, and a too short override is refused', () => {
    const docs = render({ shutdown: { delaySeconds: 12, timeoutSeconds: 45 } })
    expect(deploymentOf(docs).spec.template.spec.terminationGracePeriodSeconds).toBe(62)
    expect((parse(gatewayYaml(docs)) as { shutdown: unknown }).shutdown).toEqual({ delay: '12s', timeout: '45s' })
    expect(deploymentOf(render({ terminationGracePeriodSeconds: 90 })).spec.template.spec.terminationGracePeriodSeconds).toBe(90)
    const err = renderError(['--set', 'terminationGracePeriodSeconds=25'])
    expect(err).toContain('terminationGracePeriodSeconds (25) must be larger than shutdown.delaySeconds + shutdown.timeoutSeconds (25)')
  })

  it('Services, PDB, HPA, ServiceMonitor and dashboard select and carry the right things', () => {
    const docs = render(FULL)
    const dep = deploymentOf(docs)
    const selector = dep.spec.selector.matchLabels
    // HPA instead of a fixed count.
    expect(dep.spec.replicas).toBeUndefined()
    const hpa = one(docs, 'HorizontalPodAutoscaler')
    expect(hpa['spec']).toMatchObject({ scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: dep.metadata.name }, minReplicas: 3, maxReplicas: 9 })
    // The default CPU target stays; the memory target is added.
    expect((hpa['spec'] as { metrics: unknown[] }).metrics).toEqual([
      { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } },
      { type: 'Resource', resource: { name: 'memory', target: { type: 'Utilization', averageUtilization: 80 } } },
    ])
    const data = one(docs, 'Service', 'rg-redis-gateway')['spec'] as { selector: unknown; ports: unknown[] }
    expect(data.selector).toEqual(selector)
    expect(data.ports).toEqual([{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }])
    const ops = one(docs, 'Service', 'rg-redis-gateway-ops')
    expect((ops['spec'] as { ports: unknown[] }).ports).toEqual([{ name: 'ops', port: 9090, targetPort: 'ops', protocol: 'TCP' }])
    expect(one(docs, 'PodDisruptionBudget')['spec']).toEqual({ maxUnavailable: 1, selector: { matchLabels: selector } })
    // The ServiceMonitor scrapes only the ops Service, keeping the gateway's instance/endpoint labels.
    const sm = one(docs, 'ServiceMonitor')
    expect(sm.metadata.labels?.['release']).toBe('prometheus')
    const smSpec = sm['spec'] as { selector: { matchLabels: Record<string, string> }; endpoints: Record<string, unknown>[] }
    expect(Object.entries(smSpec.selector.matchLabels).every(([k, v]) => ops.metadata.labels?.[k] === v)).toBe(true)
    expect(Object.entries(smSpec.selector.matchLabels).every(([k, v]) => one(docs, 'Service', 'rg-redis-gateway').metadata.labels?.[k] === v)).toBe(false)
    // No honorLabels: no gateway label is named like a target label (test/dashboard.test.ts).
    expect(smSpec.endpoints).toEqual([{ port: 'ops', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }])
    // The dashboard ConfigMap: sidecar label, in the namespace asked for, the JSON file unchanged.
    const dash = one(docs, 'ConfigMap', 'rg-redis-gateway-dashboard')
    expect(dash.metadata.namespace).toBe('monitoring')
    expect(dash.metadata.labels?.['grafana_dashboard']).toBe('1')
    expect(dash.metadata.annotations).toEqual({ grafana_folder: 'Redis' })
    const json = (dash['data'] as Record<string, string>)['redis-gateway.json'] as string
    expect(JSON.parse(json)).toEqual(JSON.parse(readFileSync(path.join(CHART, 'dashboards/redis-gateway.json'), 'utf8')))
    // One Role and RoleBinding per distinct watched namespace.
    expect(docs.filter((d) => d.kind === 'Role').map((d) => d.metadata.namespace)).toEqual([WATCHED, OTHER])
    expect(docs.filter((d) => d.kind === 'RoleBinding').map((d) => d.metadata.namespace)).toEqual([WATCHED, OTHER])
    expect(docs.some((d) => d.kind === 'ClusterRole' || d.kind === 'ClusterRoleBinding')).toBe(false)
  })

  it('PrometheusRule: only with prometheusRule.enabled; thresholds, for, severity, labels and job from the values', () => {
    expect(render().some((d) => d.kind === 'PrometheusRule')).toBe(false)
    expect(render(FULL).some((d) => d.kind === 'PrometheusRule')).toBe(false)
    interface AlertRule {
      alert: string
      expr: string
      for: string
      labels: Record<string, string>
      annotations: Record<string, string>
    }
    const rulesOf = (docs: K8sObject[]): AlertRule[] => (one(docs, 'PrometheusRule')['spec'] as { groups: { rules: AlertRule[] }[] }).groups.flatMap((g) => g.rules)
    const byName = (rules: AlertRule[], name: string): AlertRule => rules.find((r) => r.alert === name) as AlertRule
    // Defaults: seven alerts selecting the ServiceMonitor's targets (job = the ops Service's name).
    const docs = render({ serviceMonitor: { enabled: true }, prometheusRule: { enabled: true } })
    const pr = one(docs, 'PrometheusRule')
    expect(pr.metadata).toMatchObject({ name: 'rg-redis-gateway', namespace: NS })
    const rules = rulesOf(docs)
    expect(rules.map((r) => r.alert)).toEqual([
      'RedisGatewayHighErrorRatio',
      'RedisGatewayEndpointDown',
      'RedisGatewayNoEndpoint',
      'RedisGatewayBreakerOpen',
      'RedisGatewayHighLatencyP99',
      'RedisGatewayDiscoveryErrors',
      'RedisGatewayScrapeDown',
    ])
    const opsService = one(docs, 'Service', 'rg-redis-gateway-ops').metadata.name
    for (const r of rules) {
      expect(r.expr, r.alert).toContain(`job="${opsService}", namespace="${NS}"`)
      expect(r.annotations['runbook_url'], r.alert).toMatch(new RegExp(`docs/observability\\.md#${r.alert.toLowerCase()}$`))
      // Prometheus's own template syntax reaches the rule unrendered by helm.
      expect(r.annotations['description'], r.alert).toContain('{{ $labels.')
    }
    expect(byName(rules, 'RedisGatewayHighErrorRatio')).toMatchObject({ for: '5m', labels: { severity: 'critical' } })
    expect(byName(rules, 'RedisGatewayEndpointDown').expr).toContain('max by (namespace, redis_endpoint)')
    // Values: thresholds, windows, for, severities, extra labels, a disabled alert, the PodMonitor's job.
    const custom = render({
      metrics: { podMonitor: { enabled: true, namespace: 'monitoring' } },
      prometheusRule: {
        enabled: true,
        namespace: 'monitoring',
        labels: { release: 'prometheus' },
        additionalRuleLabels: { team: 'data' },
        runbookUrl: 'https://docs.example.com/rg',
        rules: { latencyP99: { threshold: 0.25, window: '10m', for: '15m', severity: 'critical' }, scrapeDown: { enabled: false } },
      },
    })
    const cpr = one(custom, 'PrometheusRule')
    expect(cpr.metadata.namespace).toBe('monitoring')
    expect(cpr.metadata.labels?.['release']).toBe('prometheus')
    const crules = rulesOf(custom)
    expect(crules.map((r) => r.alert)).not.toContain('RedisGatewayScrapeDown')
    const p99 = byName(crules, 'RedisGatewayHighLatencyP99')
    expect(p99).toMatchObject({ for: '15m', labels: { severity: 'critical', team: 'data' } })
    expect(p99.expr).toContain('[10m]')
    expect(p99.expr).toMatch(/> 0\.25$/)
    expect(p99.annotations['runbook_url']).toBe('https://docs.example.com/rg#redisgatewayhighlatencyp99')
    for (const r of crules) expect(r.expr, r.alert).toContain(`job="monitoring/rg-redis-gateway", namespace="${NS}"`)
    // An explicit job wins.
    expect(rulesOf(render({ prometheusRule: { enabled: true, job: 'redis-gateway' } }))[0]?.expr).toContain('job="redis-gateway", namespace=')
  })

  it('namespaces ["*"]: one ClusterRole and ClusterRoleBinding with list/watch on the two resources, no Role', () => {
    const docs = render({ discovery: { kubernetes: { namespaces: ['*'] } } })
    expect(docs.filter((d) => d.kind === 'Role' || d.kind === 'RoleBinding')).toEqual([])
    const role = one(docs, 'ClusterRole')
    const binding = one(docs, 'ClusterRoleBinding')
    // Cluster-scoped, named after the release namespace too (two releases "rg" in two namespaces differ).
    expect(role.metadata.name).toBe(`${NS}-${RELEASE}-redis-gateway-discovery`)
    expect(role.metadata.namespace).toBeUndefined()
    expect(binding.metadata.namespace).toBeUndefined()
    expect(role.metadata.labels?.['app.kubernetes.io/instance']).toBe(RELEASE)
    expect(role['rules']).toEqual([
      { apiGroups: [''], resources: ['services'], verbs: ['list', 'watch'] },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
    ])
    expect(binding['roleRef']).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name })
    expect(binding['subjects']).toEqual([{ kind: 'ServiceAccount', name: one(docs, 'ServiceAccount').metadata.name, namespace: NS }])
    // The rest of the install is the default one.
    expect(docs.filter((d) => !d.kind.startsWith('Cluster')).map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual(
      render().filter((d) => !d.kind.startsWith('Role')).map((d) => `${d.kind}/${d.metadata.name}`).sort(),
    )
    // What the gateway reads: every namespace.
    const pod = materialize(docs)
    expect(loadConfig({ path: pod.env['GATEWAY_CONFIG'] as string, env: pod.env }).discovery.kubernetes).toMatchObject({ namespaces: ['*'], servicePrefix: 'redis-' })
    // rbac.create false: no RBAC at all; duplicates of "*" are one "*".
    expect(render({ discovery: { kubernetes: { namespaces: ['*'] } }, rbac: { create: false } }).filter((d) => /Role/.test(d.kind))).toEqual([])
    expect(render({ discovery: { kubernetes: { namespaces: ['*', '*'] } } }).filter((d) => d.kind === 'ClusterRole')).toHaveLength(1)
    expect(render({ discovery: { kubernetes: { namespaces: ['*'] } } }, [], 'other').find((d) => d.kind === 'ClusterRole')?.metadata.name).toBe(
      `${NS}-other-redis-gateway-discovery`,
    )
  })

  it('image, OpenTelemetry and extra env: what the container gets', () => {
    const c = containerOf(render(FULL))
    expect(c.image).toBe(`registry.example.com/redis-gateway:1.2.3@sha256:${'a'.repeat(64)}`)
    const env = Object.fromEntries(c.env.map((e) => [e.name, e.value ?? e.valueFrom]))
    expect(env).toMatchObject({
      GATEWAY_CONFIG: '/etc/redis-gateway/config/gateway.yaml',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger-collector:4318',
      OTEL_SERVICE_NAME: 'gw',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_RESOURCE_ATTRIBUTES: 'k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),deployment.environment=test',
      GATEWAY_ZONE: 'zone-a',
      NODE_OPTIONS: '--max-semi-space-size=8 --max-old-space-size=1024',
      NODE_EXTRA_CA_CERTS: '/etc/ca/bundle.pem',
    })
    // $(VAR) in a value expands only variables defined before it.
    const names = c.env.map((e) => e.name)
    expect(names.indexOf('POD_NAME')).toBeLessThan(names.indexOf('OTEL_RESOURCE_ATTRIBUTES'))
    expect(names.indexOf('POD_NAMESPACE')).toBeLessThan(names.indexOf('OTEL_RESOURCE_ATTRIBUTES'))
    // Without otel.endpoint nothing turns the exporter on.
    const plain = containerOf(render()).env.map((e) => e.name)
    expect(plain.filter((n) => n.startsWith('OTEL_EXPORTER') || n === 'OTEL_SERVICE_NAME')).toEqual([])
    expect(containerOf(render()).image).toBe(`redis-gateway:${parse(readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8')).appVersion}`)
    // Node's options: the image's default unless changed; empty leaves them to the image (or extraEnv).
    const nodeOptions = (docs: K8sObject[]): unknown => containerOf(docs).env.find((e) => e.name === 'NODE_OPTIONS')?.value
    // The same options wherever the gateway starts: the chart, the image and `npm start`.
    const shipped = '--max-semi-space-size=64'
    expect(nodeOptions(render())).toBe(shipped)
    expect(readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8')).toContain(`ENV NODE_OPTIONS="${shipped}"`)
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    expect(pkg.scripts['start']).toBe(`node ${shipped} dist/src/main.js`)
    expect(nodeOptions(render({ nodeOptions: '' }))).toBeUndefined()
    expect(nodeOptions(render({ nodeOptions: '', extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=512' }] }))).toBe('--max-old-space-size=512')
    expect(renderError(['-f', valuesFile({ extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=512' }] })])).toContain(
      'extraEnv[0]: NODE_OPTIONS is set by the chart (nodeOptions); put the options in nodeOptions',
    )
    expect(renderError(['--set', 'nodeOptions[0]=x'])).toContain('nodeOptions')
    // skaffold deploys tag@digest as the tag: a valid image reference, and a valid version label.
    const digest = `sha256:${'b'.repeat(64)}`
    const skaffold = render({ image: { repository: 'reg.example/rg', tag: `abc123@${digest}` } })
    expect(containerOf(skaffold).image).toBe(`reg.example/rg:abc123@${digest}`)
    for (const d of skaffold) expect(d.metadata.labels?.['app.kubernetes.io/version']).toBe('abc123')
  })
})

describe('NetworkPolicy', () => {
  interface Rule {
    ports?: { port: number | string; protocol?: string }[]
    from?: unknown[]
    to?: unknown[]
  }
  interface PolicySpec {
    podSelector: unknown
    policyTypes: string[]
    ingress: Rule[]
    egress: Rule[]
  }
  const policyOf = (docs: K8sObject[]): PolicySpec => one(docs, 'NetworkPolicy')['spec'] as PolicySpec
  const tcp = (...ports: number[]): { port: number; protocol: string }[] => ports.map((port) => ({ port, protocol: 'TCP' }))
  const MONITORING = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }
  const DNS_PORTS = [
    { port: 53, protocol: 'UDP' },
    { port: 53, protocol: 'TCP' },
  ]
  const KUBE_DNS = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }

  it('default: the data port from anywhere, the ops port from the monitoring namespace; egress only to Redis, DNS and the API server', () => {
    const docs = render()
    const np = policyOf(docs)
    expect(np.podSelector).toEqual({ matchLabels: deploymentOf(docs).spec.selector.matchLabels })
    expect(np.policyTypes).toEqual(['Ingress', 'Egress'])
    expect(np.ingress).toEqual([{ ports: tcp(8080) }, { ports: tcp(9090), from: [MONITORING] }])
    expect(np.egress).toEqual([{ ports: tcp(6379) }, { ports: DNS_PORTS, to: [KUBE_DNS] }, { ports: tcp(443, 6443, 8443) }])
    // The rules name the container's ports (the pods' ports are what NetworkPolicy sees).
    expect(containerOf(docs).ports.map((p) => p.containerPort)).toEqual([8080, 9090])
  })

  it('follows the values: client peers, Redis ports, DNS anywhere, extra rules, the OTLP collector', () => {
    const np = policyOf(render(FULL))
    const values = FULL['networkPolicy'] as { extraIngress: unknown[]; extraEgress: unknown[] }
    expect(np.ingress).toEqual([
      { ports: tcp(8080), from: [{ namespaceSelector: { matchLabels: { team: 'shop' } }, podSelector: { matchLabels: { 'redis-gateway.io/client': 'true' } } }] },
      // ops.podSelector set, ops.namespaceSelector left at its default: both, in one peer.
      { ports: tcp(9090), from: [{ ...MONITORING, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }] },
      ...values.extraIngress,
    ])
    expect(np.egress).toEqual([
      { ports: tcp(6379, 6380) },
      { ports: DNS_PORTS }, // dns.to []: any address
      { ports: tcp(443, 6443, 8443) },
      { ports: tcp(4318) }, // otel.endpoint http://jaeger-collector:4318
      ...values.extraEgress,
    ])
  })

  it('one selector alone, null selectors, other ports; no API server rule without Kubernetes discovery; the OTLP port from the URL scheme', () => {
    const ingress = (values: Record<string, unknown>): Rule[] => policyOf(render(values)).ingress
    // podSelector alone: those pods of the release namespace; namespaceSelector {}: every pod, nothing from outside.
    expect(ingress({ networkPolicy: { data: { podSelector: { matchLabels: { app: 'shop' } } } } })[0]).toEqual({ ports: tcp(8080), from: [{ podSelector: { matchLabels: { app: 'shop' } } }] })
    expect(ingress({ networkPolicy: { data: { namespaceSelector: {} } } })[0]).toEqual({ ports: tcp(8080), from: [{ namespaceSelector: {} }] })
    // Both ops selectors null: the ops port from anywhere.
    expect(ingress({ networkPolicy: { ops: { namespaceSelector: null } } })[1]).toEqual({ ports: tcp(9090) })
    expect(ingress({ ports: { data: 8081, ops: 9091 } })).toEqual([{ ports: tcp(8081) }, { ports: tcp(9091), from: [MONITORING] }])
    const staticOnly = { discovery: { kubernetes: { enabled: false }, static: { instances: [{ name: 'legacy', endpoints: ['redis://10.0.0.5:6379'] }] } } }
    expect(policyOf(render(staticOnly)).egress).toEqual([{ ports: tcp(6379) }, { ports: DNS_PORTS, to: [KUBE_DNS] }])
    const otlpPort = (endpoint: string): Rule | undefined => policyOf(render({ otel: { endpoint } })).egress[3]
    expect(otlpPort('https://otel.example.com')).toEqual({ ports: tcp(443) })
    expect(otlpPort('http://collector.observability')).toEqual({ ports: tcp(80) })
    expect(otlpPort('http://collector.observability:4318/v1')).toEqual({ ports: tcp(4318) })
    expect(render({ networkPolicy: { enabled: false } }).some((d) => d.kind === 'NetworkPolicy')).toBe(false)
  })
})

describe('ops.auth and the discovery scope: in gateway.yaml, as the gateway reads them', () => {
  interface Rendered {
    ops?: { auth?: string }
    discovery: { kubernetes?: { labelSelector?: string; optIn?: boolean; operators?: boolean } }
  }
  const rendered = (values: Record<string, unknown> = {}): Rendered => parse(gatewayYaml(render(values))) as Rendered
  const SCOPE = { discovery: { kubernetes: { labelSelector: 'app.kubernetes.io/part-of in (shop,billing),!legacy', optIn: true, operators: false } }, ops: { auth: 'none' } }

  it('default: ops.auth admin, no label selector, no opt-in, operators on; each value is rendered under the same name', () => {
    const def = rendered()
    expect(def.ops).toEqual({ auth: 'admin' })
    expect(def.discovery.kubernetes).toMatchObject({ labelSelector: '', optIn: false, operators: true })
    const set = rendered(SCOPE)
    expect(set.ops).toEqual({ auth: 'none' })
    expect(set.discovery.kubernetes).toMatchObject(SCOPE.discovery.kubernetes)
  })

  it('the probes, the ServiceMonitor and the PodMonitor use only paths ops.auth leaves open', () => {
    const open = ['/healthz', '/readyz', '/metrics']
    const c = containerOf(render())
    for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) expect(open).toContain(probe.httpGet.path)
    const sm = one(render({ serviceMonitor: { enabled: true } }), 'ServiceMonitor')['spec'] as { endpoints: { path: string }[] }
    const pm = one(render({ metrics: { podMonitor: { enabled: true } } }), 'PodMonitor')['spec'] as { podMetricsEndpoints: { path: string }[] }
    for (const e of [...sm.endpoints, ...pm.podMetricsEndpoints]) expect(open).toContain(e.path)
  })

  // What the gateway's own loader makes of each key, from the rendered file: the same as from the
  // value written by hand.
  const valueAt = (o: unknown, p: readonly string[]): unknown => p.reduce<unknown>((x, k) => (x as Record<string, unknown> | undefined)?.[k], o)
  const keys = [['ops', 'auth'], ['discovery', 'kubernetes', 'labelSelector'], ['discovery', 'kubernetes', 'optIn'], ['discovery', 'kubernetes', 'operators']]
  for (const key of keys) {
    it(`the gateway reads ${key.join('.')} as rendered`, () => {
      const value = valueAt(SCOPE, key)
      const pod = materialize(render(SCOPE))
      const cfg = loadConfig({ path: pod.env['GATEWAY_CONFIG'] as string, env: pod.env })
      const byHand = configSchema(new Map()).parse(key.reduceRight<unknown>((inner, k) => ({ [k]: inner }), value))
      expect(valueAt(cfg, key)).toEqual(valueAt(byHand, key))
      // And not the default: the value made it through.
      expect(valueAt(cfg, key)).not.toEqual(valueAt(configSchema(new Map()).parse(key.length > 2 ? { discovery: { kubernetes: {} } } : {}), key))
    })
  }

  it('values.schema.json: ops.auth is admin or none, optIn and operators are booleans', () => {
    for (const [args, where] of [
      [['--set', 'ops.auth=token'], '/ops/auth'],
      [['--set', 'discovery.kubernetes.optIn=yes'], '/discovery/kubernetes/optIn'],
      [['--set-json', 'discovery.kubernetes.operators="true"'], '/discovery/kubernetes/operators'],
      [['--set-json', 'discovery.kubernetes.labelSelector=["a=b"]'], '/discovery/kubernetes/labelSelector'],
    ] as [string[], string][]) {
      const err = renderError(args)
      expect(err, args.join(' ')).toContain("values don't meet the specifications of the schema")
      expect(err, args.join(' ')).toContain(where)
    }
  })

  it('NOTES: the admin routes need an admin token, and it says so when there is none', async () => {
    // helm renders NOTES only for install/upgrade: a dry run against the API server.
    const kubeconfig = cluster.kubeconfigFor(cluster.adminToken, { name: 'helm-notes' })
    const home = mkdtempSync(path.join(work, 'helm-home-'))
    const env = { ...process.env, KUBECONFIG: kubeconfig, HELM_CACHE_HOME: home, HELM_CONFIG_HOME: home, HELM_DATA_HOME: home }
    const notes = (values: Record<string, unknown>): string => {
      const r = run(helmBin, ['install', 'notes', CHART, '--namespace', NS, '--dry-run=server', '-f', valuesFile(values)], env)
      if (r.status !== 0) throw new Error(r.stderr)
      return r.stdout.slice(r.stdout.indexOf('NOTES:'))
    }
    const none = notes({})
    expect(none).toContain('curl -H "Authorization: Bearer $ADMIN_TOKEN" localhost:9090/admin/routes')
    expect(none).toContain('No token has access admin, so /admin/routes and the page at / answer 401')
    expect(none).toContain('NetworkPolicy notes-redis-gateway: the data port admits any client, the ops port the peers of networkPolicy.ops')
    const withAdmin = notes({ auth: { tokens: [{ name: 'ops', access: 'admin', value: 'ops-token-0123456789' }] } })
    expect(withAdmin).not.toContain('No token has access admin')
    expect(notes({ ops: { auth: 'none' } })).toContain('curl localhost:9090/admin/routes   # ops.auth none')
  })
})

describe("zones: each pod's GATEWAY_ZONE is its own zone", () => {
  const ZONE_PATH = "metadata.labels['topology.kubernetes.io/zone']"
  const zoneEnv = (docs: K8sObject[]): Container['env'][number] | undefined => containerOf(docs).env.find((e) => e.name === 'GATEWAY_ZONE')

  it('from the pod label by default; zone.fixed, zone.fromPodLabel false, and GATEWAY_ZONE in extraEnv refused while the chart sets it', () => {
    expect(zoneEnv(render())).toEqual({ name: 'GATEWAY_ZONE', valueFrom: { fieldRef: { fieldPath: ZONE_PATH } } })
    expect(zoneEnv(render({ zone: { fixed: 'eu-west-1a' } }))).toEqual({ name: 'GATEWAY_ZONE', value: 'eu-west-1a' })
    expect(zoneEnv(render({ zone: { fromPodLabel: false } }))).toBeUndefined()
    expect(zoneEnv(render({ zone: { fromPodLabel: false }, extraEnv: [{ name: 'GATEWAY_ZONE', value: 'z1' }] }))).toEqual({ name: 'GATEWAY_ZONE', value: 'z1' })
    expect(renderError(['-f', valuesFile({ extraEnv: [{ name: 'GATEWAY_ZONE', value: 'z1' }] })])).toContain(
      'extraEnv[0]: GATEWAY_ZONE is set by the chart (zone.fromPodLabel, zone.fixed); set zone.fixed for one zone, or zone.fromPodLabel false to leave it to extraEnv',
    )
    expect(renderError(['--set', 'zone.fixed=eu west'])).toContain('/zone/fixed')
    // No value suggests one fixed zone for a Deployment spread over zones any more.
    expect(readFileSync(path.join(CHART, 'values.yaml'), 'utf8')).not.toMatch(/name: GATEWAY_ZONE, value/)
  })

  it('on the API server: a pod of the chart bound to a node gets the node\'s zone label, and the gateway reads it as its zone; no label, no zone', async () => {
    const docs = render()
    const template = deploymentOf(docs).spec.template
    const nodes = { 'zone-node-b': { 'topology.kubernetes.io/zone': 'eu-test-1b', 'topology.kubernetes.io/region': 'eu-test-1' }, 'zoneless-node': {} }
    for (const [name, labels] of Object.entries(nodes)) {
      const res = await cluster.request('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name, labels } })
      expect(res.status, JSON.stringify(res.body)).toBe(201)
    }
    try {
      for (const [node, zone] of [['zone-node-b', 'eu-test-1b'], ['zoneless-node', null]] as const) {
        const podName = `zone-probe-${node}`
        const podPath = `/api/v1/namespaces/${NS}/pods/${podName}`
        // The pod the Deployment would make (no kubelet here: it is only created and bound).
        const created = await cluster.request('POST', `/api/v1/namespaces/${NS}/pods`, { apiVersion: 'v1', kind: 'Pod', metadata: { name: podName, labels: template.metadata.labels }, spec: template.spec })
        expect(created.status, JSON.stringify(created.body)).toBe(201)
        try {
          // What the scheduler does; the PodTopologyLabels admission copies the node's zone onto the pod.
          const bound = await cluster.request('POST', `${podPath}/binding`, { apiVersion: 'v1', kind: 'Binding', metadata: { name: podName }, target: { apiVersion: 'v1', kind: 'Node', name: node } })
          expect(bound.status, JSON.stringify(bound.body)).toBe(201)
          const pod = await cluster.request<{ metadata: { labels: Record<string, string> } }>('GET', podPath)
          expect(pod.body.metadata.labels['topology.kubernetes.io/zone']).toBe(zone ?? undefined)
          // The kubelet's downward API resolves the env from these labels ("" for a missing one).
          const env = materialize(docs, [], pod.body.metadata.labels).env
          expect(env['GATEWAY_ZONE']).toBe(zone ?? '')
          expect(loadRuntimeEnv(env).zone).toBe(zone)
        } finally {
          await cluster.request('DELETE', `${podPath}?gracePeriodSeconds=0`)
        }
      }
    } finally {
      for (const name of Object.keys(nodes)) await cluster.request('DELETE', `/api/v1/nodes/${name}`)
    }
  })
})

describe('names, ports, spread and the PodMonitor', () => {
  const LONG = LONG_RELEASE
  const EVERYTHING: Record<string, unknown> = {
    auth: { tokens: [{ name: 'app', access: 'write', value: 'app-token-0123456789' }] },
    redis: { password: 'redis-secret-pw' },
    grafanaDashboard: { enabled: true },
    serviceMonitor: { enabled: true },
    autoscaling: { enabled: true },
  }

  it('helm refuses a release name of 54 characters: 53 is the longest to render', () => {
    expect(LONG).toHaveLength(53)
    const r = helm(['template', `${LONG}c`, CHART, '--namespace', NS, '--kube-version', KUBE_VERSION])
    expect(r.status).not.toBe(0)
    expect(r.stderr).toMatch(/invalid release name.*the length must not be longer than 53/)
  })

  it('a 53-character release: every name within 63 characters, none shared, the release name never cut', () => {
    const names = (docs: K8sObject[]): string[] => docs.map((d) => d.metadata.name)
    const docs = [...render(EVERYTHING, [], LONG), ...render({ discovery: { kubernetes: { namespaces: ['*'] } } }, [], LONG).filter((d) => d.kind.startsWith('Cluster'))]
    for (const n of names(docs)) expect(n.length, n).toBeLessThanOrEqual(63)
    // One name per kind and namespace.
    const keys = docs.map((d) => `${d.kind}/${d.metadata.namespace ?? ''}/${d.metadata.name}`)
    expect(new Set(keys).size).toBe(keys.length)
    const services = docs.filter((d) => d.kind === 'Service').map((d) => d.metadata.name)
    expect(services).toHaveLength(2)
    expect(services[0]).not.toBe(services[1])
    expect(services.some((n) => n.endsWith('-ops'))).toBe(true)
    for (const d of docs.filter((x) => /-(ops|discovery|tokens|redis|dashboard)$/.test(x.metadata.name) && !x.kind.startsWith('Cluster'))) {
      expect(d.metadata.name.startsWith(`${LONG}-`), d.metadata.name).toBe(true)
    }
    // References follow the names.
    const dep = deploymentOf(docs)
    const tokensSecret = dep.spec.template.spec.volumes.find((v) => v.name === 'tokens')?.secret?.secretName
    expect(tokensSecret).toMatch(/-tokens$/)
    expect(one(docs, 'Secret', tokensSecret).metadata.name).toBe(tokensSecret)
    expect(one(docs, 'ConfigMap', dep.spec.template.spec.volumes.find((v) => v.name === 'config')?.configMap?.name).metadata.name).toBe(dep.metadata.name)
    // A 63-character namespace: the ClusterRole's name is cut and ends in a hash of the whole, one per release.
    const longNs = 'n'.repeat(63)
    const clusterRole = (release: string): string =>
      one(render({ discovery: { kubernetes: { namespaces: ['*'] } } }, ['--namespace', longNs], release), 'ClusterRole').metadata.name
    expect(clusterRole(LONG)).toMatch(/^n{52}-[0-9a-f]{10}$/)
    expect(clusterRole(LONG)).not.toBe(clusterRole('other'))
    // Short names are as before.
    expect(names(render({}, [], 'rg'))).toContain('rg-redis-gateway-ops')
  })

  it('container ports below 1024 are refused (uid 1000, no capabilities); a Service port of 80 is fine', () => {
    for (const [args, where] of [
      [['--set', 'ports.data=80'], '/ports/data'],
      [['--set', 'ports.ops=1023'], '/ports/ops'],
    ] as [string[], string][]) {
      const err = renderError(args)
      expect(err, args.join(' ')).toContain("values don't meet the specifications of the schema")
      expect(err, args.join(' ')).toContain(where)
    }
    const docs = render({ ports: { data: 1024 }, service: { port: 80 } })
    expect(containerOf(docs).ports[0]?.containerPort).toBe(1024)
    expect((one(docs, 'Service', 'rg-redis-gateway')['spec'] as { ports: { port: number }[] }).ports[0]?.port).toBe(80)
  })

  it('spread: matchLabelKeys [pod-template-hash] unless set, and not for Kubernetes before 1.27', () => {
    const spread = (values: Record<string, unknown>, extra: string[] = []): unknown[] =>
      (deploymentOf(render(values, extra)).spec.template.spec.topologySpreadConstraints ?? []).map((t) => t.matchLabelKeys)
    expect(spread({})).toEqual([['pod-template-hash'], ['pod-template-hash']])
    const own = { topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'DoNotSchedule', matchLabelKeys: [] }] }
    expect(spread(own)).toEqual([[]])
    // helm's last --kube-version wins: an older cluster, where the field is not served by default.
    expect(spread({}, ['--kube-version', 'v1.26.0'])).toEqual([undefined, undefined])
  })

  it('PodMonitor: the pods\' ops port, instead of the ServiceMonitor (not both)', () => {
    const docs = render({ metrics: { podMonitor: { enabled: true, labels: { release: 'prometheus' }, interval: '15s', namespace: 'monitoring' } } })
    const pm = one(docs, 'PodMonitor')
    expect(pm.metadata.namespace).toBe('monitoring')
    expect(pm.metadata.labels?.['release']).toBe('prometheus')
    expect(pm['spec']).toEqual({
      namespaceSelector: { matchNames: [NS] },
      selector: { matchLabels: deploymentOf(docs).spec.selector.matchLabels },
      podMetricsEndpoints: [{ port: 'ops', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }],
    })
    // The port it names is the container's.
    expect(containerOf(docs).ports.map((p) => p.name)).toContain('ops')
    expect(docs.some((d) => d.kind === 'ServiceMonitor')).toBe(false)
    expect(render().some((d) => d.kind === 'PodMonitor')).toBe(false)
    expect(renderError(['--set', 'serviceMonitor.enabled=true', '--set', 'metrics.podMonitor.enabled=true'])).toContain(
      'serviceMonitor.enabled and metrics.podMonitor.enabled: choose one',
    )
  })
})

describe('manifests/examples/sidecar.yaml: the gateway as a native sidecar', () => {
  const file = path.join(repoRoot, 'manifests/examples/sidecar.yaml')
  const docs = (): K8sObject[] =>
    parseAllDocuments(readFileSync(file, 'utf8'))
      .map((d) => d.toJS() as K8sObject | null)
      .filter((d): d is K8sObject => d !== null)
  interface SidecarPod extends PodSpec {
    initContainers: Container[]
    volumes: (Volume & { projected?: unknown })[]
  }
  interface EnvVar {
    name: string
    value?: string
    valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } }
  }
  const envOf = (c: Container): EnvVar[] => c.env as EnvVar[]
  const podOf = (d: K8sObject[]): SidecarPod => (one(d, 'Deployment') as Deployment).spec.template.spec as SidecarPod
  const sidecarConfig = (d: K8sObject[]): string => (one(d, 'ConfigMap')['data'] as Record<string, string>)['gateway.yaml'] as string

  it('a native sidecar on loopback, its token from the Secret the application reads too, least privilege', () => {
    const d = docs()
    const pod = podOf(d)
    const [gw] = pod.initContainers
    const app = pod.containers[0]
    if (!gw || !app) throw new Error('expected the gateway init container and the application container')
    expect(gw.restartPolicy).toBe('Always')
    const cfg = parse(sidecarConfig(d)) as { listen: { data: string; ops: string }; ops: { auth: string }; auth: { tokens: { tokenFile: string }[] } }
    expect(cfg.listen.data).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(cfg.ops.auth).toBe('admin')
    const dataPort = cfg.listen.data.split(':')[1]
    expect(envOf(app).find((e) => e.name === 'UPSTASH_REDIS_REST_URL')?.value).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${dataPort}/v1/instances/`))
    // The probes reach the ops port on the pod address and use only open paths.
    expect(cfg.listen.ops).toMatch(/^0\.0\.0\.0:/)
    for (const probe of [gw.startupProbe, gw.livenessProbe, gw.readinessProbe]) expect(['/healthz', '/readyz']).toContain(probe.httpGet.path)
    // One Secret: a file for the gateway, an env var for the application.
    const tokenFile = cfg.auth.tokens[0]?.tokenFile as string
    const mount = gw.volumeMounts.find((m) => tokenFile.startsWith(`${m.mountPath}/`))
    const vol = pod.volumes.find((v) => v.name === mount?.name)
    const ref = envOf(app).find((e) => e.name === 'UPSTASH_REDIS_REST_TOKEN')?.valueFrom?.secretKeyRef
    expect(vol?.secret?.secretName).toBe(ref?.name)
    expect(vol?.secret?.items).toEqual([{ key: ref?.key, path: path.basename(tokenFile) }])
    // Least privilege: no automounted API token; the projected one only in the gateway container.
    expect(pod.automountServiceAccountToken).toBe(false)
    expect(one(d, 'ServiceAccount')['automountServiceAccountToken']).toBe(false)
    const apiVol = pod.volumes.find((v) => v.projected !== undefined)?.name
    expect(gw.volumeMounts.find((m) => m.name === apiVol)?.mountPath).toBe('/var/run/secrets/kubernetes.io/serviceaccount')
    expect(app.volumeMounts ?? []).toEqual([])
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } })
    for (const c of [gw, app]) expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
    expect(gw.securityContext).toMatchObject({ runAsUser: 1000, runAsGroup: 1000 })
    // The Role: exactly the chart's rules.
    expect(one(d, 'Role')['rules']).toEqual(one(render(), 'Role')['rules'])
    expect(one(d, 'RoleBinding')['subjects']).toEqual([{ kind: 'ServiceAccount', name: one(d, 'ServiceAccount').metadata.name, namespace: SIDECAR_NS }])
  })

  it("its gateway.yaml loads in the gateway's config loader, with the token where the pod mounts it", () => {
    const d = docs()
    const root = mkdtempSync(path.join(work, 'sidecar-'))
    const token = 'shop-api-token-0123456789'
    const text = sidecarConfig(d).replaceAll('"/etc/redis-gateway/tokens/', `"${root}/`)
    writeFileSync(path.join(root, 'shop-api'), token)
    const configPath = path.join(root, 'gateway.yaml')
    writeFileSync(configPath, text)
    const cfg = loadConfig({ path: configPath, env: {} })
    expect(cfg.listen).toEqual({ data: '127.0.0.1:8080', ops: '0.0.0.0:9090' })
    expect(cfg.auth.tokens).toEqual([{ name: 'shop-api', access: 'write', targets: ['orders'], sha256: createHash('sha256').update(token).digest('hex'), redisUser: null }])
    expect(cfg.discovery.kubernetes?.namespaces).toEqual([WATCHED])
    expect(cfg.shutdown).toEqual({ delayMs: 0, timeoutMs: 10_000 })
    expect(cfg.limits.inflightBytes).toBe(64 * 1024 * 1024)
    const gw = podOf(d).initContainers[0] as Container
    const zone = envOf(gw).find((e) => e.name === 'GATEWAY_ZONE')?.valueFrom
    expect(zone).toEqual({ fieldRef: { fieldPath: "metadata.labels['topology.kubernetes.io/zone']" } })
  })

  it('the API server accepts it (server-side dry run) and keeps the init container a sidecar', async () => {
    for (const obj of docs()) {
      const r = await apply(obj, { dryRun: true })
      expect(r.status, `${obj.kind}/${obj.metadata.name}: ${JSON.stringify(r.body)}`).toBeLessThan(300)
      if (obj.kind === 'Deployment') {
        const spec = (r.body as Deployment).spec.template.spec as SidecarPod
        expect(spec.initContainers[0]?.restartPolicy).toBe('Always')
      }
    }
    expect((await cluster.request('GET', `/apis/apps/v1/namespaces/${SIDECAR_NS}/deployments/shop-api`)).status).toBe(404)
  })
})

describe('the rendered gateway.yaml runs in the real config loader', () => {
  it('default values: loads; Kubernetes discovery of redis-system; no tokens, no secrets mounted', () => {
    const docs = render()
    const pod = materialize(docs)
    const cfg = loadConfig({ path: pod.env['GATEWAY_CONFIG'] as string, env: pod.env })
    expect(cfg.discovery.kubernetes).toMatchObject({ namespaces: [WATCHED], servicePrefix: 'redis-' })
    expect(cfg.auth.tokens).toEqual([])
    expect(cfg.listen).toEqual({ data: '0.0.0.0:8080', ops: '0.0.0.0:9090' })
    // The drain the grace period is computed from, as the gateway reads it.
    expect(cfg.shutdown).toEqual({ delayMs: 5_000, timeoutMs: 20_000 })
    expect(deploymentOf(docs).spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(cfg.shutdown.delayMs + cfg.shutdown.timeoutMs)
    expect(docs.some((d) => d.kind === 'Secret')).toBe(false)
    expect(deploymentOf(docs).spec.template.spec.volumes.map((v) => v.name).sort()).toEqual(['config', 'tmp'])
  })

  it('chart-made Secrets: tokens and the Redis password are files the config names, never in the ConfigMap', () => {
    const docs = render(FULL)
    const text = gatewayYaml(docs)
    for (const secret of ['app-token-0123456789', 'ops-token-0123456789', 'redis-secret-pw', 'tenant-a-redis-pw']) expect(text).not.toContain(secret)
    // Every file the config names is under a volume mount of the container.
    const paths = secretPaths(text)
    expect(paths).toEqual([
      '/etc/redis-gateway/tokens/app',
      '/etc/redis-gateway/tokens/ops',
      '/etc/redis-gateway/tokens/tenant',
      '/etc/redis-gateway/tokens/tenant.redis-password',
      '/etc/redis-gateway/redis/password',
    ])
    const pod = materialize(docs)
    for (const p of paths) expect(() => pod.map(p)).not.toThrow()
    const cfg = loadConfig({ path: pod.env['GATEWAY_CONFIG'] as string, env: pod.env })
    const sha = (s: string): string => createHash('sha256').update(s).digest('hex')
    expect(cfg.auth.tokens).toEqual([
      { name: 'app', access: 'write', targets: ['*'], sha256: sha('app-token-0123456789'), redisUser: null },
      { name: 'ops', access: 'admin', targets: ['orders', 'cache-*'], sha256: sha('ops-token-0123456789'), redisUser: null },
      { name: 'ro', access: 'read', targets: ['*'], sha256: 'ab'.repeat(32), redisUser: null },
      {
        name: 'tenant',
        access: 'write',
        targets: ['*'],
        sha256: sha('tenant-token-0123456789'),
        redisUser: { name: 'tenant-a', password: 'tenant-a-redis-pw', passwordFile: expect.stringMatching(/\/etc\/redis-gateway\/tokens\/tenant\.redis-password$/) },
      },
    ])
    expect(cfg.redis).toMatchObject({ username: 'gateway', password: 'redis-secret-pw', commandTimeoutMs: 1500, connectTimeoutMs: 800, aclUsers: false })
    expect(cfg.discovery.kubernetes?.namespaces).toEqual([WATCHED, OTHER])
    expect(cfg.discovery.static?.instances).toEqual([{ name: 'legacy', endpoints: ['redis://10.0.0.5:6379'], annotations: { 'redis-gateway.io/read-policy': 'any' } }])
    expect(cfg.groups).toEqual({ sessions: { strategy: 'sticky' } })
    expect(cfg.limits.maxBodyBytes).toBe(5 * 1024 * 1024)
    expect(cfg.log.level).toBe('debug')
    expect(cfg.shutdown).toEqual({ delayMs: 10_000, timeoutMs: 30_000 })
    // Secret files are readable by the pod's group only.
    for (const v of deploymentOf(docs).spec.template.spec.volumes.filter((x) => x.secret)) expect(v.secret?.defaultMode).toBe(0o440)
  })

  it('existing Secrets: the chart makes none and mounts the keys asked for', () => {
    const values = {
      auth: {
        existingSecret: 'my-tokens',
        tokens: [
          { name: 'app', access: 'write' },
          { name: 'ci', secretKey: 'ci-token' },
          { name: 'tenant', sha256: 'cd'.repeat(32), redisUser: 'tenant-a' },
        ],
      },
      redis: { existingSecret: 'my-redis', existingSecretKey: 'redis-password' },
    }
    const docs = render(values)
    expect(docs.some((d) => d.kind === 'Secret')).toBe(false)
    const secret = (name: string, data: Record<string, string>): K8sObject => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: NS },
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    })
    const pod = materialize(docs, [
      secret('my-tokens', { app: 'tok-app-1', 'ci-token': 'tok-ci-2', 'tenant-redis-password': 'tenant-pw-4', unrelated: 'x' }),
      secret('my-redis', { 'redis-password': 'pw-3' }),
    ])
    const cfg = loadConfig({ path: pod.env['GATEWAY_CONFIG'] as string, env: pod.env })
    expect(cfg.auth.tokens.map((t) => [t.name, t.access, t.redisUser?.name ?? null, t.redisUser?.password ?? null])).toEqual([
      ['app', 'write', null, null],
      ['ci', 'read', null, null],
      ['tenant', 'read', 'tenant-a', 'tenant-pw-4'],
    ])
    expect(cfg.redis.password).toBe('pw-3')
    expect(cfg.redis.aclUsers).toBe(true)
    // A Secret without the key the chart mounts: the pod could not start (the kubelet refuses it).
    expect(() => materialize(docs, [secret('my-tokens', { app: 'a' }), secret('my-redis', { 'redis-password': 'p' })])).toThrow('has no key ci-token')
  })

  it('token and RBAC mistakes fail the render with a message naming the value', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ auth: { tokens: [{ name: 'app' }] } }, 'auth.tokens[0] (app): no token: set value (the chart makes a Secret), sha256, or auth.existingSecret with key "app"'],
      [{ auth: { existingSecret: 's', tokens: [{ name: 'app', value: 'v' }] } }, 'auth.tokens[0] (app): value is set but auth.existingSecret (s) holds the tokens'],
      [{ auth: { tokens: [{ name: 'app', value: 'v', sha256: 'ab'.repeat(32) }] } }, 'auth.tokens[0] (app): give either value or sha256, not both'],
      [{ auth: { tokens: [{ name: 'a', value: 'v' }, { name: 'a', value: 'w' }] } }, 'auth.tokens[1].name: "a" is used by another token too'],
      [{ auth: { tokens: [{ name: 't', value: 'v', redisUser: 'u' }] } }, 'auth.tokens[0] (t): redisUser "u" needs its password: set redisPassword (the chart makes a Secret), or auth.existingSecret with key "t-redis-password"'],
      [{ auth: { existingSecret: 's', tokens: [{ name: 't', redisUser: 'u', redisPassword: 'p' }] } }, 'auth.tokens[0] (t): redisPassword is set but auth.existingSecret (s) holds the secrets'],
      [{ auth: { tokens: [{ name: 't', value: 'v', redisPassword: 'p' }] } }, 'auth.tokens[0] (t): redisPassword and redisPasswordKey are only used with redisUser'],
      [{ discovery: { kubernetes: { namespaces: [] } } }, 'discovery.kubernetes.namespaces: list at least one namespace, or ["*"] for every namespace'],
      [{ discovery: { kubernetes: { namespaces: [] } }, rbac: { create: false } }, 'discovery.kubernetes.namespaces: list at least one namespace'],
      [
        { discovery: { kubernetes: { namespaces: [WATCHED, '*', OTHER, '*'] } } },
        `discovery.kubernetes.namespaces: "*" (every namespace) must be the only element, but namespaces are listed with it (["${WATCHED}","${OTHER}"]): write ["*"] alone, or the namespaces without "*"`,
      ],
      [{ autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } }, 'autoscaling.maxReplicas (2) must be at least autoscaling.minReplicas (5)'],
    ]
    for (const [values, message] of cases) expect(renderError(['-f', valuesFile(values)])).toContain(message)
  })
})

describe('values.schema.json', () => {
  it('rejects wrongly typed, out-of-range and misspelt values, naming each', () => {
    const cases: [string[], string][] = [
      [['--set', 'replicaCount=abc'], '/replicaCount'],
      [['--set-json', 'replicaCount="2"'], '/replicaCount'],
      [['--set', 'image.pullPolicy=Sometimes'], '/image/pullPolicy'],
      [['--set-json', 'discovery.kubernetes.namespaces="redis-system"'], '/discovery/kubernetes/namespaces'],
      [['--set', 'discovery.kubernetes.namespaces[0]=Redis_System'], '/discovery/kubernetes/namespaces/0'],
      [['--set-json', 'discovery.kubernetes.namespaces=["**"]'], '/discovery/kubernetes/namespaces/0'],
      [['--set-json', 'discovery.kubernetes.namespaces=["redis-*"]'], '/discovery/kubernetes/namespaces/0'],
      [['--set', 'redis.commandTimeout=2 seconds'], '/redis/commandTimeout'],
      [['--set', 'limits.maxBody=10 megs'], '/limits/maxBody'],
      [['--set-json', 'auth.tokens=[{"name":"app","access":"superuser","value":"x"}]'], '/auth/tokens/0/access'],
      [['--set-json', 'auth.tokens=[{"name":"App Token","value":"x"}]'], '/auth/tokens/0/name'],
      [['--set', 'shutdown.delaySeconds=-1'], '/shutdown/delaySeconds'],
      [['--set', 'service.port=70000'], '/service/port'],
      [['--set', 'log.level=verbose'], '/log/level'],
      [['--set', 'replicaCont=3'], 'replicaCont'],
      [['--set', 'serviceMonitor.interval=thirty'], '/serviceMonitor/interval'],
      [['--set', 'prometheusRule.rules.errorRatio.threshold=5'], '/prometheusRule/rules/errorRatio/threshold'],
      [['--set', 'prometheusRule.rules.latencyP99.for=ten minutes'], '/prometheusRule/rules/latencyP99/for'],
      [['--set', 'prometheusRule.rules.scrapeDown.severity=page'], '/prometheusRule/rules/scrapeDown/severity'],
      [['--set', 'prometheusRule.rules.breakerOpen.treshold=1'], 'treshold'],
      [['--set-json', 'groups={"sessions":{"strategy":"fastest"}}'], '/groups/sessions/strategy'],
      [['--set-json', 'discovery.static.instances=[{"name":"x","endpoints":["redis://a:1"],"annotations":{"redis-gateway.io/wieght":"5"}}]'], 'redis-gateway.io/wieght'],
    ]
    for (const [args, where] of cases) {
      const err = renderError(args)
      expect(err, args.join(' ')).toContain("values don't meet the specifications of the schema")
      expect(err, args.join(' ')).toContain(where)
    }
  })

  it('types every value of values.yaml, and the chart README documents every one', () => {
    const values = parse(readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>
    const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as SchemaNode
    const readme = readFileSync(path.join(CHART, 'README.md'), 'utf8')
    const documented = new Set([...readme.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1] as string))
    const leaves = leafPaths(values)
    expect(leaves.length).toBeGreaterThan(60)
    const untyped = leaves.filter((p) => !schemaHas(schema, p.split('.')))
    expect(untyped).toEqual([])
    // A row for the value itself or for the object it belongs to (e.g. `resources`).
    const undocumented = leaves.filter((p) => !p.split('.').some((_, i, parts) => documented.has(parts.slice(0, i + 1).join('.'))))
    expect(undocumented).toEqual([])
    // And no row documents a value that does not exist.
    const all = new Set(leaves.flatMap((p) => p.split('.').map((_, i, parts) => parts.slice(0, i + 1).join('.'))))
    expect([...documented].filter((d) => !all.has(d))).toEqual([])
    // values.yaml itself: a comment right above every documented key.
    const text = readFileSync(path.join(CHART, 'values.yaml'), 'utf8')
    const lines = text.split('\n')
    const lineCounter = new LineCounter()
    const doc = parseDocument(text, { lineCounter })
    const uncommented = [...documented].filter((p) => {
      const pair = pairAt(doc.contents, p.split('.'))
      if (!pair) return true
      const line = lineCounter.linePos((pair.key as { range: [number] }).range[0]).line
      return !/^\s*#/.test(lines[line - 2] ?? '')
    })
    expect(uncommented).toEqual([])
  })
})

interface SchemaNode {
  type?: string | string[]
  properties?: Record<string, SchemaNode>
  additionalProperties?: boolean | SchemaNode
}

/** The key/value pair at a dotted path of a parsed YAML document. */
function pairAt(node: unknown, parts: string[]): Pair | undefined {
  if (!isMap(node)) return undefined
  const [head, ...rest] = parts
  const pair = node.items.find((it) => isScalar(it.key) && it.key.value === head)
  if (!pair || rest.length === 0) return pair
  return pairAt(pair.value, rest)
}

/** Dotted paths of the leaves of values.yaml; an empty map or list is a leaf. */
function leafPaths(v: unknown, prefix = ''): string[] {
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) {
    return Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => leafPaths(x, prefix ? `${prefix}.${k}` : k))
  }
  return [prefix]
}

/** True when the schema describes this path (through properties, or an object schema that allows any keys). */
function schemaHas(node: SchemaNode | undefined, parts: string[]): boolean {
  if (!node) return false
  if (parts.length === 0) return true
  const [head, ...rest] = parts as [string, ...string[]]
  const child = node.properties?.[head]
  if (child) return schemaHas(child, rest)
  // Kubernetes-typed objects (resources.limits, podSecurityContext...) are passed through as a whole.
  return node.properties === undefined && (node.type === 'object' || (Array.isArray(node.type) && node.type.includes('object')))
}

describe('server-side dry run against the real API server', () => {
  beforeAll(async () => {
    for (const crd of [SERVICE_MONITOR_CRD, POD_MONITOR_CRD, PROMETHEUS_RULE_CRD]) {
      await applyOk(crd)
      await waitUntil(`${crd.metadata.name} CRD established and served`, async () => {
        const res = await cluster.request<{ status?: { conditions?: { type: string; status: string }[] } }>('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`)
        const established = res.body.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false
        const plural = crd.metadata.name.split('.')[0] as string
        const served = await cluster.request<{ resources?: { name: string }[] }>('GET', '/apis/monitoring.coreos.com/v1')
        return established && served.status === 200 && (served.body.resources ?? []).some((r) => r.name === plural)
      })
    }
  })

  it('a deliberately broken object is refused (the dry run validates)', async () => {
    const dep = deploymentOf(render()) as Deployment & { spec: Record<string, unknown> }
    const broken = { ...dep, spec: { ...dep.spec, replicas: -1 } } as K8sObject
    const invalid = await apply(broken, { dryRun: true })
    expect(invalid.status).toBe(422)
    expect(JSON.stringify(invalid.body)).toContain('spec.replicas')
    const misspelt = { ...dep, spec: { ...dep.spec, replica: 2 } } as K8sObject
    // Server-side apply refuses fields outside the schema (with a 500 "failed to create typed
    // patch object", the API server's status for it).
    const r = await apply(misspelt, { dryRun: true })
    expect(r.status).toBeGreaterThanOrEqual(400)
    expect(JSON.stringify(r.body)).toContain('.spec.replica: field not declared in schema')
    const sm = one(render(FULL), 'ServiceMonitor')
    const badSm = { ...sm, spec: { ...(sm['spec'] as object), endpoints: [{ port: 'ops', interval: 'thirty' }] } } as K8sObject
    expect((await apply(badSm, { dryRun: true })).status).toBe(422)
  })

  it('every object of the default and the full render is accepted, and nothing is stored', async () => {
    const variants = [
      render(),
      render(FULL),
      render({ auth: { existingSecret: 'ext', tokens: [{ name: 'app' }] }, redis: { existingSecret: 'ext-redis' } }),
      render({ image: { tag: `abc123@sha256:${'b'.repeat(64)}` }, podDisruptionBudget: { minAvailable: '50%' }, listenHost: '[::]' }),
      render({ discovery: { kubernetes: { namespaces: ['*'] } } }),
      // NetworkPolicy peers of every shape, other ports, the OTLP rule, no API server rule; PodMonitor.
      render({
        networkPolicy: { data: { podSelector: { matchLabels: { app: 'shop' } } }, ops: { namespaceSelector: null }, dns: { to: [] } },
        ports: { data: 8081, ops: 9091 },
        otel: { endpoint: 'https://otel.example.com' },
        discovery: { kubernetes: { enabled: false }, static: { instances: [{ name: 'legacy', endpoints: ['redis://10.0.0.5:6379'] }] } },
        metrics: { podMonitor: { enabled: true, namespace: 'monitoring', relabelings: [{ action: 'labeldrop', regex: 'pod_template_hash' }] } },
        zone: { fixed: 'eu-west-1a' },
      }),
      // The longest release name, with every suffixed name (Secrets, dashboard, Roles), and its ClusterRole.
      render({ auth: { tokens: [{ name: 'app', value: 'app-token-0123456789' }] }, redis: { password: 'pw' }, grafanaDashboard: { enabled: true }, serviceMonitor: { enabled: true }, autoscaling: { enabled: true }, prometheusRule: { enabled: true } }, [], LONG_RELEASE),
      render({ discovery: { kubernetes: { namespaces: ['*'] } }, metrics: { podMonitor: { enabled: true } }, prometheusRule: { enabled: true, namespace: 'monitoring', additionalRuleLabels: { team: 'data' } } }, [], LONG_RELEASE),
    ]
    for (const docs of variants) {
      for (const obj of docs) await applyOk(obj, { dryRun: true })
    }
    expect((await cluster.request('GET', `/apis/apps/v1/namespaces/${NS}/deployments/rg-redis-gateway`)).status).toBe(404)
    expect((await cluster.request('GET', `/apis/rbac.authorization.k8s.io/v1/clusterroles/${NS}-rg-redis-gateway-discovery`)).status).toBe(404)
  })

  it('helm install, upgrade and uninstall of a release against the API server (NOTES included)', async () => {
    const kubeconfig = cluster.kubeconfigFor(cluster.adminToken, { name: 'helm-admin' })
    const home = mkdtempSync(path.join(work, 'helm-home-'))
    const env = { ...process.env, KUBECONFIG: kubeconfig, HELM_CACHE_HOME: home, HELM_CONFIG_HOME: home, HELM_DATA_HOME: home }
    const h = (args: string[]): Run => {
      const r = run(helmBin, args, env)
      if (r.status !== 0) throw new Error(`helm ${args.join(' ')}: ${r.stderr}`)
      return r
    }
    const full = valuesFile(FULL)
    const depPath = `/apis/apps/v1/namespaces/${NS}/deployments/live-redis-gateway`
    const installed = h(['install', 'live', CHART, '--namespace', NS, '-f', full])
    expect(installed.stdout).toContain('STATUS: deployed')
    expect(installed.stdout).toContain('http://live-redis-gateway.redis-gateway.svc:8080/v1/instances/<name>')
    expect(installed.stdout).toContain('Tokens: app (write), ops (admin), ro (read)')
    expect(installed.stdout).toContain('Traces are exported by OTLP/HTTP to http://jaeger-collector:4318 as service gw.')
    const before = await cluster.request<Deployment>('GET', depPath)
    expect(before.status).toBe(200)
    expect(before.body.spec.template.spec.terminationGracePeriodSeconds).toBe(45)
    // A config change rolls the pods: the checksum annotation on the pod template changes.
    h(['upgrade', 'live', CHART, '--namespace', NS, '-f', full, '--set', 'shutdown.delaySeconds=20'])
    const after = await cluster.request<Deployment>('GET', depPath)
    expect(after.body.spec.template.spec.terminationGracePeriodSeconds).toBe(55)
    expect(after.body.spec.template.metadata.annotations['checksum/config']).not.toBe(before.body.spec.template.metadata.annotations['checksum/config'])
    expect(after.body.spec.template.metadata.annotations['checksum/secret']).toBe(before.body.spec.template.metadata.annotations['checksum/secret'])
    h(['uninstall', 'live', '--namespace', NS])
    expect((await cluster.request('GET', depPath)).status).toBe(404)
    expect((await cluster.request('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/${OTHER}/roles/live-redis-gateway-discovery`)).status).toBe(404)
  })

  it('manifests/ and the example Services are accepted too', async () => {
    for (const file of ['install.yaml', 'servicemonitor.yaml', 'grafana-dashboard.yaml', 'prometheusrule.yaml', 'examples/redis-services.yaml', 'examples/sidecar.yaml']) {
      const docs = parseAllDocuments(readFileSync(path.join(repoRoot, 'manifests', file), 'utf8'))
        .map((d) => d.toJS() as K8sObject | null)
        .filter((d): d is K8sObject => d !== null)
      expect(docs.length, file).toBeGreaterThan(0)
      for (const obj of docs) await applyOk(obj, { dryRun: true })
    }
  })
})

describe('manifests/ is generated from the chart', () => {
  const script = path.join(repoRoot, 'scripts/manifests.sh')
  const env = { ...process.env, HELM_BIN: toolBinary('helm') }

  it('matches a fresh render (scripts/manifests.sh --check)', () => {
    const r = run('bash', [script, '--check'], env)
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
  })

  it('the check fails on drift, with a diff and what to run', () => {
    const copy = mkdtempSync(path.join(work, 'manifests-'))
    cpSync(path.join(repoRoot, 'manifests'), copy, { recursive: true })
    const file = path.join(copy, 'install.yaml')
    writeFileSync(file, readFileSync(file, 'utf8').replace('replicas: 2', 'replicas: 3'))
    const r = run('bash', [script, '--check'], { ...env, MANIFESTS_DIR: copy })
    expect(r.status).toBe(1)
    expect(r.stdout).toContain('-  replicas: 3')
    expect(r.stdout).toContain('+  replicas: 2')
    expect(r.stderr).toContain('run bash scripts/manifests.sh')
  })

  it('the plain install is the chart with manifests/values.yaml: tokens from an existing Secret, no secret in the files', () => {
    const text = readFileSync(path.join(repoRoot, 'manifests/install.yaml'), 'utf8')
    const docs = parseAllDocuments(text).map((d) => d.toJS() as K8sObject).filter(Boolean)
    expect(docs[0]).toMatchObject({ kind: 'Namespace', metadata: { name: NS } })
    expect(docs.some((d) => d.kind === 'Secret')).toBe(false)
    const vol = deploymentOf(docs).spec.template.spec.volumes.find((v) => v.name === 'tokens')
    expect(vol?.secret?.secretName).toBe('redis-gateway-tokens')
  })

  it('the example Services carry every annotation kind, and the gateway reads each without error', () => {
    const docs = parseAllDocuments(readFileSync(path.join(repoRoot, 'manifests/examples/redis-services.yaml'), 'utf8'))
      .map((d) => d.toJS() as V1Service)
      .filter(Boolean)
    const specs = Object.fromEntries(
      docs.map((svc) => {
        const spec = mapService(svc, [], { servicePrefix: 'redis-' })
        if (!spec) throw new Error(`${svc.metadata?.name} is not a Redis instance`)
        expect(spec.annotationErrors, svc.metadata?.name).toEqual([])
        return [spec.name, spec.policy]
      }),
    )
    expect(Object.keys(specs).sort()).toEqual(['billing', 'catalog', 'legacy', 'orders', 'sessions-blue', 'sessions-green'])
    expect(specs['legacy']?.maintenance).toBe('drain')
    expect(specs['catalog']).toMatchObject({ maintenance: 'read-only', readPolicy: 'any', strategy: 'round-robin' })
    expect(specs['orders']).toMatchObject({ readPolicy: 'prefer-replica', maxReplicaLagBytes: 524288, hedgeAfterMs: 15 })
    expect(specs['sessions-blue']).toMatchObject({ groups: ['sessions'], weight: 90 })
    expect(specs['sessions-green']).toMatchObject({ groups: ['sessions'], weight: 10 })
    expect(specs['billing']?.port).toBe(6380)
  })
})

// ---------------------------------------------------------------------------------------------

// The gateway process as a pod of a rendered release runs it: the Deployment's env and files, a
// ServiceAccount token (TokenRequest) in a kubeconfig instead of the mounted one.

const RBAC_TOKEN = 'app-token-for-rbac-test'

interface ChartGateway {
  proc: ManagedProcess
  data: string
  ops: string
}

const chartGateways: ManagedProcess[] = []

async function startChartGateway(docs: K8sObject[], saToken: string): Promise<ChartGateway> {
  const pod = materialize(docs)
  const [dataPort, opsPort] = [await freePort(), await freePort()]
  const kubeconfig = cluster.kubeconfigFor(saToken, { name: `sa-${chartGateways.length}` })
  const env = {
    PATH: process.env['PATH'] ?? '',
    ...pod.env,
    // In a pod the in-cluster config reads the mounted token; here the same token is in a kubeconfig.
    KUBECONFIG: kubeconfig,
    GATEWAY_LISTEN_DATA: `127.0.0.1:${dataPort}`,
    GATEWAY_LISTEN_OPS: `127.0.0.1:${opsPort}`,
  }
  const proc = new ManagedProcess('gateway', process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/main.ts')], { env, cwd: repoRoot, logLines: 5000 })
  chartGateways.push(proc)
  const ops = `http://127.0.0.1:${opsPort}`
  await waitUntil(
    'gateway /readyz',
    async () => {
      if (!proc.running) throw new Error(`gateway exited: ${proc.logs()}`)
      return (await fetch(`${ops}/readyz`)).status === 200
    },
    60_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n--- gateway output ---\n${proc.logs()}`)
  })
  return { proc, data: `http://127.0.0.1:${dataPort}`, ops }
}

async function chartCommand(base: string, instance: string, args: string[]): Promise<{ status: number; body: { result?: unknown; error?: string } }> {
  const res = await fetch(`${base}/v1/instances/${instance}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${RBAC_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(args),
    signal: AbortSignal.timeout(5_000),
  })
  return { status: res.status, body: (await res.json()) as { result?: unknown; error?: string } }
}

/** The gateway's discovery errors: `discovery watch error` log lines (JSON). */
function discoveryErrors(proc: ManagedProcess): { resource: string; status?: number; msg: string }[] {
  return proc
    .logs()
    .split('\n')
    .flatMap((l) => {
      try {
        const e = JSON.parse(l) as { msg?: string; resource?: string; status?: number }
        return e.msg?.startsWith('discovery watch error') ? [{ resource: e.resource ?? '', ...(e.status !== undefined ? { status: e.status } : {}), msg: e.msg }] : []
      } catch {
        return []
      }
    })
}

/** A token for a ServiceAccount (TokenRequest, as the kubelet gets the projected one). */
async function serviceAccountToken(name: string): Promise<string> {
  const tr = await cluster.request<{ status?: { token?: string } }>('POST', `/api/v1/namespaces/${NS}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3600 },
  })
  if (tr.status !== 201 || !tr.body.status?.token) throw new Error(`TokenRequest: ${tr.status} ${JSON.stringify(tr.body)}`)
  return tr.body.status.token
}

/** An EndpointSlice of Service `service` in `namespace` with one ready endpoint: the netns Redis. */
function redisSlice(namespace: string, service: string, redis: RedisServer): K8sObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${service}-1`, namespace, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [redis.host], conditions: { ready: true } }],
    ports: [{ name: 'redis', port: redis.port, protocol: 'TCP' }],
  } as K8sObject
}

/** An example Service of manifests/examples/redis-services.yaml, in another namespace if asked. */
function exampleService(name: string, namespace?: string): K8sObject {
  const example = parseAllDocuments(readFileSync(path.join(repoRoot, 'manifests/examples/redis-services.yaml'), 'utf8'))
    .map((d) => d.toJS() as K8sObject)
    .find((d) => d?.metadata?.name === name)
  if (!example) throw new Error(`no Service ${name} in manifests/examples/redis-services.yaml`)
  return namespace === undefined ? example : { ...example, metadata: { ...example.metadata, namespace } }
}

afterAll(async () => {
  await Promise.allSettled(chartGateways.map((g) => g.stop({ timeoutMs: 30_000 })))
})

describe("RBAC: the chart's rules are what the watcher needs, no more", () => {
  const SA_USER = `system:serviceaccount:${NS}:rg-redis-gateway`
  let docs: K8sObject[]
  let role: K8sObject
  let saToken: string
  let net: Netns
  let redis: RedisServer

  const startGateway = (): Promise<ChartGateway> => startChartGateway(docs, saToken)
  const command = chartCommand

  async function setRules(rules: unknown[]): Promise<void> {
    await applyOk({ ...role, rules } as K8sObject)
  }

  beforeAll(async () => {
    docs = render({ auth: { tokens: [{ name: 'app', access: 'write', value: RBAC_TOKEN }] } })
    // The chart's identity and rules, applied for real.
    for (const kind of ['ServiceAccount', 'Role', 'RoleBinding']) await applyOk(one(docs, kind))
    role = one(docs, 'Role')
    saToken = await serviceAccountToken('rg-redis-gateway')

    net = await createNetns()
    redis = await net.startRedis()
    // The example Service redis-orders (headless, annotated) and a slice with the netns Redis.
    await applyOk(redisSlice(WATCHED, 'redis-orders', redis))
    await applyOk(exampleService('redis-orders'))
  }, 120_000)

  afterAll(async () => {
    await net?.destroy()
  })

  it('the ServiceAccount may list and watch services and endpointslices in the watched namespace, nothing else', async () => {
    const yes: Access[] = [
      { verb: 'list', resource: 'services', namespace: WATCHED },
      { verb: 'watch', resource: 'services', namespace: WATCHED },
      { verb: 'list', resource: 'endpointslices', group: 'discovery.k8s.io', namespace: WATCHED },
      { verb: 'watch', resource: 'endpointslices', group: 'discovery.k8s.io', namespace: WATCHED },
    ]
    const no: Access[] = [
      { verb: 'get', resource: 'services', namespace: WATCHED, name: 'redis-orders' }, // the informers never get
      { verb: 'list', resource: 'services', namespace: OTHER },
      { verb: 'list', resource: 'services' }, // cluster-wide
      { verb: 'list', resource: 'secrets', namespace: WATCHED },
      { verb: 'list', resource: 'endpoints', namespace: WATCHED },
      { verb: 'patch', resource: 'services', namespace: WATCHED, name: 'redis-orders' },
      { verb: 'create', resource: 'endpointslices', group: 'discovery.k8s.io', namespace: WATCHED },
      { verb: 'list', resource: 'pods', namespace: NS },
    ]
    await waitUntil('RBAC in force', () => allowed(SA_USER, yes[0] as Access))
    for (const a of yes) expect(await allowed(SA_USER, a), JSON.stringify(a)).toBe(true)
    for (const a of no) expect(await allowed(SA_USER, a), JSON.stringify(a)).toBe(false)
  })

  it('are enough: with its ServiceAccount token the gateway discovers the example Service, serves it and follows a drain', async () => {
    const gw = await startGateway()
    await waitUntil('orders routed', async () => (await command(gw.data, 'orders', ['PING'])).body.result === 'PONG')
    expect(await command(gw.data, 'orders', ['SET', 'chart', 'ok'])).toEqual({ status: 200, body: { result: 'OK' } })
    expect((await command(gw.data, 'orders', ['GET', 'chart'])).body).toEqual({ result: 'ok' })
    // kubectl annotate service redis-orders redis-gateway.io/maintenance=drain (as an admin).
    const patch = await cluster.request('PATCH', `/api/v1/namespaces/${WATCHED}/services/redis-orders`, { metadata: { annotations: { 'redis-gateway.io/maintenance': 'drain' } } }, { contentType: 'application/merge-patch+json' })
    expect(patch.status).toBe(200)
    await waitUntil('DRAINING', async () => {
      const r = await command(gw.data, 'orders', ['GET', 'chart'])
      return r.status === 503 && /^DRAINING/.test(r.body.error ?? '')
    })
    await cluster.request('PATCH', `/api/v1/namespaces/${WATCHED}/services/redis-orders`, { metadata: { annotations: { 'redis-gateway.io/maintenance': null } } }, { contentType: 'application/merge-patch+json' })
    await waitUntil('undrained', async () => (await command(gw.data, 'orders', ['GET', 'chart'])).status === 200)
    // Not one refused call on the way.
    expect(discoveryErrors(gw.proc)).toEqual([])
    const metrics = await (await fetch(`${gw.ops}/metrics`)).text()
    expect(metrics).not.toMatch(/redis_gateway_discovery_events_total\{[^}]*outcome="error"[^}]*\} [1-9]/)
    await gw.proc.stop({ timeoutMs: 30_000 })
  })

  // Each rule dropped in turn: the watcher hits a 403 on exactly that call.
  const drops = [
    { drop: 'list services', resource: `services/${WATCHED}`, group: '', res: 'services', verb: 'list' },
    { drop: 'watch services', resource: `services/${WATCHED}`, group: '', res: 'services', verb: 'watch' },
    { drop: 'list endpointslices', resource: `endpointslices/${WATCHED}`, group: 'discovery.k8s.io', res: 'endpointslices', verb: 'list' },
    { drop: 'watch endpointslices', resource: `endpointslices/${WATCHED}`, group: 'discovery.k8s.io', res: 'endpointslices', verb: 'watch' },
  ] as const
  for (const d of drops) {
    it(`are needed: without ${d.drop} the gateway gets 403 on ${d.resource}`, async () => {
      const rules = (role['rules'] as { apiGroups: string[]; resources: string[]; verbs: string[] }[]).map((r) =>
        r.resources.includes(d.res) ? { ...r, verbs: r.verbs.filter((v) => v !== d.verb) } : r,
      )
      await setRules(rules)
      try {
        await waitUntil(`${d.drop} revoked`, async () => !(await allowed(SA_USER, { verb: d.verb, resource: d.res, group: d.group, namespace: WATCHED })))
        const gw = await startGateway()
        await waitUntil(`403 on ${d.resource}`, async () => discoveryErrors(gw.proc).some((e) => e.resource === d.resource && e.status === 403))
        const errors = discoveryErrors(gw.proc)
        // Only the resource whose rule is missing fails.
        expect(errors.filter((e) => e.resource !== d.resource)).toEqual([])
        expect(errors[0]?.msg).toMatch(/forbidden/i)
        if (d.verb === 'list') {
          // Without the list nothing is known about that resource: no instance (services), or an
          // instance without endpoints (endpointslices; the example Service is headless).
          const r = await command(gw.data, 'orders', ['PING'])
          expect(r.status).toBe(d.res === 'services' ? 404 : 503)
          expect(r.body.error).toMatch(d.res === 'services' ? /^NOTFOUND/ : /^NOENDPOINT/)
        }
        await gw.proc.stop({ timeoutMs: 30_000 })
      } finally {
        await setRules(role['rules'] as unknown[])
        await waitUntil('rule restored', () => allowed(SA_USER, { verb: d.verb, resource: d.res, group: d.group, namespace: WATCHED }))
      }
    })
  }
})

describe('RBAC for namespaces ["*"]: the ClusterRole is what the cluster-wide watcher needs, no more', () => {
  const RELEASE_ALL = 'rgall'
  const SA = `${RELEASE_ALL}-redis-gateway`
  const SA_USER = `system:serviceaccount:${NS}:${SA}`
  const TEAM = 'redis-team'
  let docs: K8sObject[]
  let clusterRole: K8sObject
  let saToken: string
  let net: Netns
  let redis: RedisServer

  beforeAll(async () => {
    docs = render({ discovery: { kubernetes: { namespaces: ['*'] } }, auth: { tokens: [{ name: 'app', access: 'write', value: RBAC_TOKEN }] } }, [], RELEASE_ALL)
    expect(docs.some((d) => d.kind === 'Role' || d.kind === 'RoleBinding')).toBe(false)
    for (const kind of ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding']) await applyOk(one(docs, kind))
    clusterRole = one(docs, 'ClusterRole')
    saToken = await serviceAccountToken(SA)

    const res = await cluster.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: TEAM } })
    if (res.status !== 201) throw new Error(`create namespace ${TEAM}: ${res.status} ${JSON.stringify(res.body)}`)
    net = await createNetns()
    redis = await net.startRedis()
    // Two example Services in two namespaces neither of which the chart was told about.
    await applyOk(redisSlice(OTHER, 'redis-catalog', redis))
    await applyOk(exampleService('redis-catalog', OTHER))
    await applyOk(redisSlice(TEAM, 'redis-sessions-blue', redis))
    await applyOk(exampleService('redis-sessions-blue', TEAM))
  }, 120_000)

  afterAll(async () => {
    await net?.destroy()
  })

  it('the ServiceAccount may list and watch services and endpointslices cluster-wide, nothing else', async () => {
    const yes: Access[] = [
      { verb: 'list', resource: 'services' },
      { verb: 'watch', resource: 'services' },
      { verb: 'list', resource: 'endpointslices', group: 'discovery.k8s.io' },
      { verb: 'watch', resource: 'endpointslices', group: 'discovery.k8s.io' },
      // A cluster-wide grant covers each namespace too, including ones created later.
      { verb: 'list', resource: 'services', namespace: TEAM },
      { verb: 'watch', resource: 'endpointslices', group: 'discovery.k8s.io', namespace: 'kube-system' },
    ]
    const no: Access[] = [
      { verb: 'get', resource: 'services', namespace: OTHER, name: 'redis-catalog' }, // the informers never get
      { verb: 'get', resource: 'endpointslices', group: 'discovery.k8s.io', namespace: OTHER, name: 'redis-catalog-1' },
      { verb: 'list', resource: 'secrets' },
      { verb: 'list', resource: 'secrets', namespace: TEAM },
      { verb: 'list', resource: 'endpoints' },
      { verb: 'list', resource: 'pods' },
      { verb: 'list', resource: 'namespaces' },
      { verb: 'list', resource: 'configmaps', namespace: NS },
      { verb: 'patch', resource: 'services', namespace: OTHER, name: 'redis-catalog' },
      { verb: 'create', resource: 'services', namespace: TEAM },
      { verb: 'delete', resource: 'endpointslices', group: 'discovery.k8s.io', namespace: TEAM, name: 'redis-sessions-blue-1' },
      { verb: 'list', resource: 'clusterroles', group: 'rbac.authorization.k8s.io' },
    ]
    await waitUntil('ClusterRole in force', () => allowed(SA_USER, yes[0] as Access))
    for (const a of yes) expect(await allowed(SA_USER, a), JSON.stringify(a)).toBe(true)
    for (const a of no) expect(await allowed(SA_USER, a), JSON.stringify(a)).toBe(false)
  })

  it('is enough: with its ServiceAccount token the gateway watches cluster-wide, serves Services of two namespaces and follows a drain', async () => {
    const gw = await startChartGateway(docs, saToken)
    await waitUntil('sessions-blue routed', async () => (await chartCommand(gw.data, 'sessions-blue', ['PING'])).body.result === 'PONG')
    expect(await chartCommand(gw.data, 'sessions-blue', ['SET', 'chart-all', 'ok'])).toEqual({ status: 200, body: { result: 'OK' } })
    // catalog (in the other namespace) is annotated read-only: reads served, writes refused.
    await waitUntil('catalog routed', async () => (await chartCommand(gw.data, 'catalog', ['GET', 'chart-all'])).body.result === 'ok')
    const write = await chartCommand(gw.data, 'catalog', ['SET', 'chart-all', 'no'])
    expect(write.status).toBe(503)
    expect(write.body.error).toMatch(/^READONLY/)
    // kubectl -n redis-team annotate service redis-sessions-blue redis-gateway.io/maintenance=drain (as an admin).
    const svc = `/api/v1/namespaces/${TEAM}/services/redis-sessions-blue`
    const merge = { contentType: 'application/merge-patch+json' }
    expect((await cluster.request('PATCH', svc, { metadata: { annotations: { 'redis-gateway.io/maintenance': 'drain' } } }, merge)).status).toBe(200)
    await waitUntil('DRAINING', async () => {
      const r = await chartCommand(gw.data, 'sessions-blue', ['GET', 'chart-all'])
      return r.status === 503 && /^DRAINING/.test(r.body.error ?? '')
    })
    await cluster.request('PATCH', svc, { metadata: { annotations: { 'redis-gateway.io/maintenance': null } } }, merge)
    await waitUntil('undrained', async () => (await chartCommand(gw.data, 'sessions-blue', ['GET', 'chart-all'])).status === 200)
    // Not one refused call, and the watches were the cluster-wide ones.
    expect(discoveryErrors(gw.proc)).toEqual([])
    const watched = new Set(
      gw.proc
        .logs()
        .split('\n')
        .flatMap((l) => {
          try {
            const e = JSON.parse(l) as { msg?: string; resource?: string; source?: string }
            return e.msg === 'discovery listed' && e.source === 'kubernetes' && e.resource ? [e.resource] : []
          } catch {
            return []
          }
        }),
    )
    expect([...watched].sort()).toEqual(['endpointslices/*', 'services/*'])
    const metrics = await (await fetch(`${gw.ops}/metrics`)).text()
    expect(metrics).not.toMatch(/redis_gateway_discovery_events_total\{[^}]*outcome="error"[^}]*\} [1-9]/)
    await gw.proc.stop({ timeoutMs: 30_000 })
  })

  // Each rule dropped in turn: the watcher hits a 403 on exactly that cluster-wide call.
  const drops = [
    { drop: 'list services', resource: 'services/*', group: '', res: 'services', verb: 'list' },
    { drop: 'watch services', resource: 'services/*', group: '', res: 'services', verb: 'watch' },
    { drop: 'list endpointslices', resource: 'endpointslices/*', group: 'discovery.k8s.io', res: 'endpointslices', verb: 'list' },
    { drop: 'watch endpointslices', resource: 'endpointslices/*', group: 'discovery.k8s.io', res: 'endpointslices', verb: 'watch' },
  ] as const
  for (const d of drops) {
    it(`are needed: without ${d.drop} the gateway gets 403 on ${d.resource}`, async () => {
      const rules = (clusterRole['rules'] as { apiGroups: string[]; resources: string[]; verbs: string[] }[]).map((r) =>
        r.resources.includes(d.res) ? { ...r, verbs: r.verbs.filter((v) => v !== d.verb) } : r,
      )
      await applyOk({ ...clusterRole, rules } as K8sObject)
      try {
        await waitUntil(`${d.drop} revoked`, async () => !(await allowed(SA_USER, { verb: d.verb, resource: d.res, group: d.group })))
        const gw = await startChartGateway(docs, saToken)
        await waitUntil(`403 on ${d.resource}`, async () => discoveryErrors(gw.proc).some((e) => e.resource === d.resource && e.status === 403))
        const errors = discoveryErrors(gw.proc)
        expect(errors.filter((e) => e.resource !== d.resource)).toEqual([])
        expect(errors[0]?.msg).toMatch(/forbidden/i)
        if (d.verb === 'list') {
          const r = await chartCommand(gw.data, 'sessions-blue', ['PING'])
          expect(r.status).toBe(d.res === 'services' ? 404 : 503)
          expect(r.body.error).toMatch(d.res === 'services' ? /^NOTFOUND/ : /^NOENDPOINT/)
        }
        await gw.proc.stop({ timeoutMs: 30_000 })
      } finally {
        await applyOk(clusterRole)
        await waitUntil('rule restored', () => allowed(SA_USER, { verb: d.verb, resource: d.res, group: d.group }))
      }
    })
  }
})
