// Operator-aware Kubernetes discovery, pure part (README "Kubernetes discovery", docs/install.md
// "Operators"): the Services that common Redis/Valkey Helm charts and operators create are
// recognised by their labels, whatever their names, and each release or custom resource becomes
// one instance, with no hand annotations. No I/O, no clock: the source hands in what its informer
// caches hold, so the same cache contents always give the same (JSON-identical) spec.
//
// The shapes below were read from each project's own templates and code (paths and commits as
// stored in the public source index that was searched; the newest stored version where several were):
//   Bitnami (github.com/bitnami/charts)
//     bitnami/common/templates/_labels.tpl @fd8a0a47 and _names.tpl @7587d195: labels
//       app.kubernetes.io/name=<chart or nameOverride>, helm.sh/chart=<chart>-<version>,
//       app.kubernetes.io/instance=<release>, app.kubernetes.io/managed-by=Helm; fullname =
//       <release> when it contains the chart name, else <release>-<chart> (or fullnameOverride)
//     bitnami/redis/templates/headless-svc.yaml @70513b0b (and @0b867ce1): <fullname>-headless,
//       clusterIP None, port tcp-redis (target redis), plus tcp-sentinel with Sentinel, every pod
//     bitnami/redis/templates/master/service.yaml @18a41d6e: <fullname>-master, component=master
//     bitnami/redis/templates/replicas/service.yaml @06a7f9ae: <fullname>-replicas, component=replica
//     bitnami/redis/templates/sentinel/service.yaml @044a12c7: <fullname> (component=node, ports
//       tcp-redis + tcp-sentinel) and, with createMaster, <fullname>-master (component=node,
//       selector isMaster=true)
//     bitnami/valkey/templates/headless-svc.yaml @cfed77ab, primary/service.yaml @41a31173,
//       sentinel/service.yaml @c6961091: the same shapes, part-of=valkey, component=primary
//     bitnami/redis-cluster/templates/headless-svc.yaml @201770d6, redis-svc.yaml @185ae059;
//     bitnami/valkey-cluster/templates/headless-svc.yaml @062a4650, valkey-svc.yaml @a363d244:
//       <fullname>-headless (tcp-redis, tcp-redis-bus, every node) and <fullname> (tcp-redis)
//   OT-CONTAINER-KIT/redis-operator
//     internal/k8sutils/labels.go @4cccf2ef (pkg/k8sutils/labels.go @9dc76fa8 before): labels
//       app=<name>, redis_setup_type=standalone|replication|cluster|sentinel, role=<role>, plus the
//       CR's own labels; annotations redis.opstreelabs.in, redis.opstreelabs.instance=<CR name>
//       and the CR's own annotations
//     internal/k8sutils/services.go @d1ab41c1: port redis-client (sentinel-client for Sentinel),
//       redis-exporter when enabled; selector = the Service's labels
//     internal/k8sutils/redis-replication.go @d17ea8b4: <cr>, <cr>-headless, <cr>-additional,
//       <cr>-master / <cr>-replica (label redis-role=master|slave, const.go @d5206c14)
//     internal/k8sutils/redis-cluster.go @00165cb4: per role (leader, follower) <cr>-<role>,
//       <cr>-<role>-headless, <cr>-<role>-additional, app=<cr>-<role>, and with NodePort one
//       Service per pod labelled statefulset.kubernetes.io/pod-name
//     pkg/k8sutils/redis-standalone.go @0977eca6: <cr>, <cr>-headless, <cr>-additional
//     internal/k8sutils/redis-sentinel.go (newest stored version): a RedisSentinel's objects are
//       <cr>-sentinel, app=<cr>-sentinel, redis_setup_type=sentinel, port sentinel-client
//   spotahome/redis-operator
//     operator/redisfailover/service/constants.go @632aa3da, names.go @8cf8d8c5: rfr-<name>
//       (redis), rfrm-<name> / rfrs-<name> (master / slaves), rfs-<name> (Sentinel); role label
//       redisfailovers-role=master|slave
//     operator/redisfailover/service/generator.go (newest stored version): rfr- is headless with
//       the exporter port (http-metrics) only; rfrm-/rfrs- have port redis and select the role
//       label; rfs- has port sentinel. client.go @09f3dc8c: selector labels
//       app.kubernetes.io/{name=<name>,component=redis|sentinel,part-of=redis-failover}
//     operator/redisfailover/handler.go @05731713: every object also gets
//       redisfailovers.databases.spotahome.com/name=<name>, app.kubernetes.io/managed-by=redis-operator
//   valkey-io/valkey-operator (ValkeyCluster, API valkey.io/v1alpha1)
//     internal/controller/utils.go @02d5130e: labels(cluster) = baseLabels(<cr>, "valkey-cluster")
//       + the CR's own labels (the base ones win): app.kubernetes.io/{name=valkey, instance=<cr>,
//       component=valkey-cluster, part-of=valkey, managed-by=valkey-operator}; pod/ValkeyNode label
//       valkey.io/cluster=<cr>
//     internal/controller/valkeycluster_controller.go @00252184 (and @d3705c21, older): upsertService,
//       the only Service of a ValkeyCluster: <cr>, headless (clusterIP None), labels(cluster),
//       selector valkey.io/cluster=<cr> (labels(cluster) before), port valkey 6379 (one stored
//       version adds metrics-sidecar on the same Service); every node of every shard, cluster mode
//       (valkey.conf cluster-enabled yes); no role Service (roles from CLUSTER NODES)
//     internal/controller/valkeynode_nodeservice.go @4826dee7, valkeynode_resources.go (newest
//       stored version): with spec.nodeService, one ClusterIP Service per node, valkey-<cr>-<shard>-
//       <node>, labels baseLabels(<node>, "valkey-node") + valkey.io/cluster, shard-index, node-index
//     Its non-cluster Valkey CR (Sentinel; label valkey.io/valkey) has no controller in the index:
//     not covered. chideat/valkey-operator and hyperspike/valkey-operator: not covered.
//   Bitnami's valkey and valkey-cluster charts: above. OT has no Valkey operator in the index;
//   spotahome has no Valkey variant.
//   EndpointSlices: the EndpointSlice controller copies a Service's labels onto its slices and adds
//   kubernetes.io/service-name, endpointslice.kubernetes.io/managed-by and, for headless Services,
//   service.kubernetes.io/headless (kubernetes endpointslice utils, setEndpointSliceLabels).
//
// Roles: the gateway learns every endpoint's role from ROLE (resilience/health-checker.ts), so the
// role an operator labels pods with is only a hint: endpoints its primary Service selects are
// listed first, which makes them the bootstrap primary before the first ROLE answer
// (selection/select.ts findPrimary) and the first seeds asked for a cluster's slot map. A label
// that lags a failover therefore costs nothing once the first health check has answered.

import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node'
import { ANNOTATION_PREFIX, parseAnnotations } from '../annotations.js'
import { NAME_RE, type AnnotationError, type EndpointSpec, type InstancePolicy, type InstanceSpec } from '../../core/topology.js'
import { belongsTo, portError, sliceEndpoints, stringAnnotations, tcpPorts, type Port } from './mapping.js'

export const OPERATOR_KINDS = [
  'bitnami-redis',
  'bitnami-valkey',
  'bitnami-redis-cluster',
  'bitnami-valkey-cluster',
  'ot-redis',
  'ot-redis-replication',
  'ot-redis-cluster',
  'ot-redis-sentinel',
  'spotahome-redisfailover',
  'valkeyio-valkeycluster',
] as const
export type OperatorKind = (typeof OPERATOR_KINDS)[number]

/** What each kind's Services look like to the gateway: the Redis port's name and the serving mode. */
export const OPERATOR_SHAPES: Readonly<Record<OperatorKind, { readonly port: string; readonly mode: 'cluster' | null }>> = {
  'bitnami-redis': { port: 'tcp-redis', mode: null },
  'bitnami-valkey': { port: 'tcp-redis', mode: null },
  'bitnami-redis-cluster': { port: 'tcp-redis', mode: 'cluster' },
  'bitnami-valkey-cluster': { port: 'tcp-redis', mode: 'cluster' },
  'ot-redis': { port: 'redis-client', mode: null },
  'ot-redis-replication': { port: 'redis-client', mode: null },
  'ot-redis-cluster': { port: 'redis-client', mode: 'cluster' },
  // Sentinel only (a RedisSentinel): recognised so that its Services never become instances.
  'ot-redis-sentinel': { port: 'redis-client', mode: null },
  'spotahome-redisfailover': { port: 'redis', mode: null },
  'valkeyio-valkeycluster': { port: 'valkey', mode: 'cluster' },
}

/** Sets the instance name of a release or custom resource (on any of its Services; operator instances only). */
export const INSTANCE_ANNOTATION = `${ANNOTATION_PREFIX}instance`
const PORT_KEY = `${ANNOTATION_PREFIX}port`
const MODE_KEY = `${ANNOTATION_PREFIX}mode`

/** How one recognised Service counts for its release's instance. */
export interface OperatorMember {
  readonly kind: OperatorKind
  readonly namespace: string
  /** The Helm release (app.kubernetes.io/instance) or custom resource name, as found. */
  readonly release: string
  /** `namespace/kind/release`: every Service of one release or custom resource. */
  readonly group: string
  /** Its EndpointSlices list the instance's Redis endpoints (on the kind's port). */
  readonly endpoints: boolean
  /** The operator selects pods of this role into it; a hint only (see the header). */
  readonly role: 'primary' | 'replica' | null
  /** Its `redis-gateway.io/*` annotations apply (not those of Sentinel, metrics or per-pod Services). */
  readonly annotations: boolean
}

type Labels = Readonly<Record<string, string>>

/** The Bitnami charts served, by the chart name in helm.sh/chart (`<chart>-<version>`). */
const BITNAMI_CHART = /^(redis-cluster|valkey-cluster|redis|valkey)-\d/
const BITNAMI_KIND: Readonly<Record<string, OperatorKind>> = {
  redis: 'bitnami-redis',
  valkey: 'bitnami-valkey',
  'redis-cluster': 'bitnami-redis-cluster',
  'valkey-cluster': 'bitnami-valkey-cluster',
}
const OT_KIND: Readonly<Record<string, OperatorKind>> = {
  standalone: 'ot-redis',
  replication: 'ot-redis-replication',
  cluster: 'ot-redis-cluster',
  sentinel: 'ot-redis-sentinel',
}

/** The operator member a Service is, or null for a Service no known chart or operator made. Pure; never throws. */
export function recognizeService(svc: V1Service): OperatorMember | null {
  const meta = isObject(svc) && isObject(svc.metadata) ? svc.metadata : undefined
  const name = str(meta?.name)
  if (name === undefined) return null
  const namespace = str(meta?.namespace) ?? 'default'
  const labels = stringLabels(meta?.labels)
  const spec = isObject(svc.spec) ? svc.spec : undefined
  const headless = spec?.clusterIP === 'None'
  return bitnami(name, namespace, labels, headless) ?? opstree(name, namespace, labels, headless) ?? spotahome(namespace, labels) ?? valkeyio(namespace, labels, headless)
}

function member(kind: OperatorKind, namespace: string, release: string, rest: Omit<OperatorMember, 'kind' | 'namespace' | 'release' | 'group'>): OperatorMember {
  return { kind, namespace, release, group: `${namespace}/${kind}/${release}`, ...rest }
}

function bitnami(name: string, namespace: string, labels: Labels, headless: boolean): OperatorMember | null {
  const chart = BITNAMI_CHART.exec(labels['helm.sh/chart'] ?? '')?.[1]
  const release = labels['app.kubernetes.io/instance']
  if (chart === undefined || release === undefined || release === '') return null
  const kind = BITNAMI_KIND[chart] as OperatorKind
  const component = labels['app.kubernetes.io/component']
  const cluster = OPERATOR_SHAPES[kind].mode === 'cluster'
  let role: OperatorMember['role'] = null
  if (!cluster) {
    if (component === 'master' || component === 'primary') role = 'primary'
    else if (component === 'replica') role = 'replica'
    // Sentinel mode's <fullname>-master selects the pod labelled isMaster=true.
    else if (component === 'node' && name.endsWith('-master')) role = 'primary'
  }
  return member(kind, namespace, release, {
    // <fullname>-headless selects every pod of the release (master and replicas, or every node).
    endpoints: headless && name.endsWith('-headless'),
    role,
    annotations: component !== 'metrics',
  })
}

function opstree(name: string, namespace: string, labels: Labels, headless: boolean): OperatorMember | null {
  const setup = labels['redis_setup_type']
  const app = labels['app']
  const role = labels['role']
  if (setup === undefined || app === undefined || role === undefined || app === '') return null
  const kind = Object.hasOwn(OT_KIND, setup) ? OT_KIND[setup] : undefined
  if (kind === undefined) return null
  let cr = app
  if (kind === 'ot-redis-cluster') {
    // app=<cr>-leader / <cr>-follower.
    if (!app.endsWith(`-${role}`) || app.length === role.length + 1) return null
    cr = app.slice(0, -(role.length + 1))
  }
  // With a NodePort cluster, one Service per pod (announce ports); the headless Services list them all.
  const perPod = labels['statefulset.kubernetes.io/pod-name'] !== undefined
  const data = kind !== 'ot-redis-sentinel' && !perPod && headless && name === `${app}-headless`
  let hint: OperatorMember['role'] = null
  const redisRole = labels['redis-role']
  if (kind === 'ot-redis-replication' && redisRole === 'master') hint = 'primary'
  else if (kind === 'ot-redis-replication' && redisRole === 'slave') hint = 'replica'
  else if (kind === 'ot-redis-cluster' && data) hint = role === 'leader' ? 'primary' : 'replica'
  return member(kind, namespace, cr, { endpoints: data, role: hint, annotations: kind !== 'ot-redis-sentinel' && !perPod })
}

function spotahome(namespace: string, labels: Labels): OperatorMember | null {
  const cr = labels['redisfailovers.databases.spotahome.com/name']
  if (cr === undefined || cr === '' || labels['app.kubernetes.io/part-of'] !== 'redis-failover') return null
  const component = labels['app.kubernetes.io/component']
  const role = labels['redisfailovers-role']
  // rfrm-<name> and rfrs-<name> carry the Redis port; rfr-<name> only the exporter's, rfs-<name> Sentinel's.
  const data = component === 'redis' && (role === 'master' || role === 'slave')
  return member('spotahome-redisfailover', namespace, cr, {
    endpoints: data,
    role: data ? (role === 'master' ? 'primary' : 'replica') : null,
    annotations: component === 'redis',
  })
}

function valkeyio(namespace: string, labels: Labels, headless: boolean): OperatorMember | null {
  if (labels['app.kubernetes.io/managed-by'] !== 'valkey-operator' || labels['app.kubernetes.io/name'] !== 'valkey') return null
  const component = labels['app.kubernetes.io/component']
  if (component === 'valkey-cluster') {
    // The ValkeyCluster's headless Service (<cr>, or valkey-<cr>: matched by its labels) lists every node.
    const cr = labels['app.kubernetes.io/instance']
    if (cr === undefined || cr === '') return null
    return member('valkeyio-valkeycluster', namespace, cr, { endpoints: headless, role: null, annotations: true })
  }
  // A per-node Service (spec.nodeService): one pod through a cluster IP; a member, never the endpoints.
  const cr = labels['valkey.io/cluster']
  if (component === 'valkey-node' && cr !== undefined && cr !== '') {
    return member('valkeyio-valkeycluster', namespace, cr, { endpoints: false, role: null, annotations: false })
  }
  return null
}

// --- names ---------------------------------------------------------------------------------------

/**
 * A release or custom resource name as an instance name (a DNS label): lower-cased, every run of
 * other characters (a CR name may hold dots) made one "-", trimmed to 63; null if nothing is left.
 */
export function sanitizeName(raw: string): string | null {
  const s = raw
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 63)
    .replace(/-+$/, '')
  return NAME_RE.test(s) ? s : null
}

/** A Service and how it counts, with (for mapping) the EndpointSlices labelled with its name. */
export interface GroupMember {
  readonly svc: V1Service
  readonly member: OperatorMember
  readonly slices?: readonly V1EndpointSlice[]
}

/** Which Service's annotations win when a release's Services disagree: endpoint Services, then role Services, then the rest, each by name. */
function byPrecedence(a: GroupMember, b: GroupMember): number {
  const rank = (m: OperatorMember): number => (m.endpoints ? 0 : m.role !== null ? 1 : 2)
  return rank(a.member) - rank(b.member) || cmp(str(a.svc.metadata?.name) ?? '', str(b.svc.metadata?.name) ?? '')
}

/**
 * The instance name of a group: `redis-gateway.io/instance` on one of its Services (by precedence),
 * else the release name sanitized; null when the group has no Service with endpoints (Sentinel
 * only, an exporter only) or no usable name. A bad annotation value is returned as `error`.
 */
export function groupInstanceName(members: readonly GroupMember[]): { name: string | null; error?: AnnotationError } {
  const ordered = [...members].sort(byPrecedence)
  const first = ordered.find((m) => m.member.endpoints)
  if (first === undefined) return { name: null }
  const fallback = sanitizeName(first.member.release)
  for (const m of ordered) {
    if (!m.member.annotations) continue
    const value: unknown = m.svc.metadata?.annotations?.[INSTANCE_ANNOTATION]
    if (typeof value !== 'string') continue
    if (NAME_RE.test(value.trim())) return { name: value.trim() }
    const using = fallback === null ? 'no instance' : `"${fallback}"`
    return {
      name: fallback,
      error: {
        key: INSTANCE_ANNOTATION,
        value,
        message: `${INSTANCE_ANNOTATION}: ${JSON.stringify(value)} is not a valid instance name (lower-case letters, digits and "-", at most 63 characters); using ${using}`,
      },
    }
  }
  return { name: fallback }
}

// --- mapping -------------------------------------------------------------------------------------

/**
 * One release or custom resource (the Services of one group, with their slices) -> one
 * InstanceSpec; null when it has no Service with endpoints or no name. The kind's port and mode
 * apply as if annotated; `redis-gateway.io/*` annotations on the group's Services override them.
 */
export function mapOperatorGroup(members: readonly GroupMember[]): InstanceSpec | null {
  const ordered = [...members].filter((m) => isObject(m) && m.member !== undefined).sort(byPrecedence)
  const data = ordered.filter((m) => m.member.endpoints)
  const lead = data[0]
  if (lead === undefined) return null
  const named = groupInstanceName(ordered)
  if (named.name === null) return null
  const { kind, namespace, release } = lead.member
  const shape = OPERATOR_SHAPES[kind]

  // The first Service (by precedence) that sets a key provides it.
  const annotations: Record<string, string> = {}
  const errors: AnnotationError[] = named.error ? [named.error] : []
  for (const m of ordered) {
    if (!m.member.annotations) continue
    const own = stringAnnotations(m.svc.metadata?.annotations)
    for (const e of own.errors) if (!errors.some((x) => x.key === e.key)) errors.push(e)
    for (const [k, v] of Object.entries(own.annotations)) {
      if (k.startsWith(ANNOTATION_PREFIX) && k !== INSTANCE_ANNOTATION && !Object.hasOwn(annotations, k)) annotations[k] = v
    }
  }
  const effective: Record<string, string> = { [PORT_KEY]: shape.port, ...(shape.mode ? { [MODE_KEY]: shape.mode } : {}), ...annotations }
  const parsed = parseAnnotations(effective)
  let policy: InstancePolicy = parsed.policy
  for (const e of parsed.errors) {
    // A bad port or mode value falls back to the kind's own, not to the plain-Service default
    // (the port named redis, else the first, could be Sentinel's).
    if (e.key === PORT_KEY && policy.port === null) errors.push({ ...e, message: e.message.replace(/; using .*$/, `; using ${shape.port}`) })
    else if (e.key === MODE_KEY && shape.mode !== null) errors.push({ ...e, message: e.message.replace(/; using .*$/, `; using ${shape.mode}`) })
    else errors.push(e)
  }
  if (policy.port === null) policy = { ...policy, port: shape.port }
  if (shape.mode !== null && parsed.errors.some((e) => e.key === MODE_KEY)) policy = { ...policy, mode: shape.mode }

  const slicesOf = (m: GroupMember): V1EndpointSlice[] => {
    const svcName = str(m.svc.metadata?.name) ?? ''
    return (Array.isArray(m.slices) ? m.slices : []).filter((s) => belongsTo(s, svcName, namespace))
  }
  const dataSlices = data.flatMap(slicesOf)
  const { endpoints } = sliceEndpoints(dataSlices, policy.port)

  const selected = policy.port
  const matches = (p: Port): boolean => (typeof selected === 'number' ? p.port === selected : p.name === selected)
  const servicePorts = data.flatMap((m) => tcpPorts(isObject(m.svc.spec) ? m.svc.spec.ports : undefined))
  const slicePorts = dataSlices.flatMap((s) => tcpPorts(s.ports))
  if ((servicePorts.length > 0 || slicePorts.length > 0) && !servicePorts.some(matches) && !slicePorts.some(matches)) {
    errors.push(portError(effective, `no port ${JSON.stringify(selected)} on the ${kind} Services of ${release} or their EndpointSlices`))
  }

  // Role hint: the endpoints the operator's primary Service selects come first (header).
  const primaries = new Set<string>()
  for (const m of ordered) if (m.member.role === 'primary') for (const s of slicesOf(m)) for (const host of readyAddresses(s)) primaries.add(host)
  const ordering: EndpointSpec[] = [...endpoints.filter((e) => primaries.has(e.host)), ...endpoints.filter((e) => !primaries.has(e.host))]

  return {
    name: named.name,
    source: `kubernetes:${namespace}/${kind}/${release}`,
    endpoints: ordering,
    policy,
    annotationErrors: errors.sort((a, b) => cmp(a.key, b.key)),
  }
}

/** The addresses of a slice's ready endpoints, as mapping.ts spells hosts (lower case, no root dot). */
function readyAddresses(slice: V1EndpointSlice): string[] {
  const out: string[] = []
  for (const ep of Array.isArray(slice.endpoints) ? (slice.endpoints as unknown[]) : []) {
    if (!isObject(ep) || (isObject(ep.conditions) && ep.conditions.ready === false)) continue
    for (const a of Array.isArray(ep.addresses) ? (ep.addresses as unknown[]) : []) {
      if (typeof a === 'string') out.push(a.trim().toLowerCase().replace(/\.$/, ''))
    }
  }
  return out
}

// --- index ---------------------------------------------------------------------------------------

/**
 * Which Services belong to which release, and which instance name each release claims, kept up to
 * date from Service events (the source's informer cache feeds it). Pure state, no I/O.
 */
export class OperatorIndex {
  /** Service key ("namespace/name") -> the Service and how it counts. */
  private readonly members = new Map<string, { svc: V1Service; member: OperatorMember }>()
  /** Group -> its Service keys. */
  private readonly groups = new Map<string, Set<string>>()
  /** Group -> the instance name it claims (only groups with a Service with endpoints and a name). */
  private readonly names = new Map<string, string>()
  /** Instance name -> the groups claiming it. */
  private readonly byName = new Map<string, Set<string>>()

  /** Records a Service's new state (null: deleted); returns the instance names whose inputs changed (before and after). */
  serviceChanged(key: string, svc: V1Service | null): string[] {
    const before = this.members.get(key)
    const now = svc === null ? null : recognizeService(svc)
    const touched = new Set<string>()
    if (before !== undefined) {
      touched.add(before.member.group)
      const set = this.groups.get(before.member.group)
      set?.delete(key)
      if (set?.size === 0) this.groups.delete(before.member.group)
      this.members.delete(key)
    }
    if (now !== null && svc !== null) {
      touched.add(now.group)
      this.members.set(key, { svc, member: now })
      let set = this.groups.get(now.group)
      if (!set) this.groups.set(now.group, (set = new Set()))
      set.add(key)
    }
    const names = new Set<string>()
    for (const group of touched) {
      const old = this.names.get(group)
      const next = groupInstanceName(this.membersOf(group)).name
      if (old !== undefined) names.add(old)
      if (next !== null) names.add(next)
      if (old === next) continue
      if (old !== undefined) {
        this.names.delete(group)
        const set = this.byName.get(old)
        set?.delete(group)
        if (set?.size === 0) this.byName.delete(old)
      }
      if (next !== null) {
        this.names.set(group, next)
        let set = this.byName.get(next)
        if (!set) this.byName.set(next, (set = new Set()))
        set.add(group)
      }
    }
    return [...names]
  }

  /** Whether the Service was made by a known chart or operator (then the name-prefix rule does not apply to it). */
  isMember(key: string): boolean {
    return this.members.has(key)
  }

  /** The instance name the Service's release claims; null when it claims none. */
  nameOfService(key: string): string | null {
    const m = this.members.get(key)
    return m === undefined ? null : (this.names.get(m.member.group) ?? null)
  }

  /** The groups claiming an instance name, sorted. */
  groupsNamed(name: string): string[] {
    return [...(this.byName.get(name) ?? [])].sort()
  }

  /** A group's Services (sorted by key), without slices. */
  membersOf(group: string): (GroupMember & { readonly key: string })[] {
    const out: (GroupMember & { key: string })[] = []
    for (const key of [...(this.groups.get(group) ?? [])].sort()) {
      const m = this.members.get(key)
      if (m) out.push({ key, svc: m.svc, member: m.member })
    }
    return out
  }
}

// --- small guards --------------------------------------------------------------------------------

function stringLabels(raw: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (!isObject(raw)) return out
  for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') out[k] = v
  return out
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}

// Code-unit order, not localeCompare: the same everywhere, whatever the process locale.
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
