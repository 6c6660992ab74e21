// Kubernetes discovery, pure part: one Service plus its EndpointSlices -> one InstanceSpec
// (README "Kubernetes discovery"). No I/O and no clock; the reconciler calls this with what the
// informer caches hold, so the same cache contents always give the same (JSON-identical) spec and
// the routing table keeps its objects. Nothing here throws on odd objects: a missing or malformed
// field means "nothing usable there", never an exception that could stop the reconciler.
// The annotation, port and slice helpers are exported for operators.ts, which maps the Services of
// a Helm release or operator custom resource (several Services, one instance) the same way.

import { isIPv4, isIPv6 } from 'node:net'
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node'
import { ANNOTATION_PREFIX, parseAnnotations } from '../annotations.js'
import { NAME_RE, endpointId, type AnnotationError, type EndpointSpec, type InstanceSpec } from '../../core/topology.js'

export interface MappingOptions {
  /** Services whose name starts with this are Redis instances; the rest of the name is the instance name. */
  readonly servicePrefix: string
}

export const MAPPING_DEFAULTS = { servicePrefix: 'redis-' } as const satisfies MappingOptions

/** The label the EndpointSlice controller puts on each slice: the name of its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'
/** The Service or slice port used when the `port` annotation does not choose one. */
export const REDIS_PORT_NAME = 'redis'
/** ExternalName Services without any port say nothing about it: Redis's own default. */
export const DEFAULT_REDIS_PORT = 6379

const PORT_KEY = `${ANNOTATION_PREFIX}port`

/** The instance name for a Service, or null when the Service is not a Redis instance (wrong prefix, empty rest, rest not a valid NAME_RE name). */
export function instanceNameOf(serviceName: string, prefix: string): string | null {
  if (typeof serviceName !== 'string' || typeof prefix !== 'string') return null
  if (!serviceName.startsWith(prefix)) return null
  const rest = serviceName.slice(prefix.length)
  return NAME_RE.test(rest) ? rest : null
}

/** Maps one Service and the EndpointSlices that belong to it (label kubernetes.io/service-name) to an InstanceSpec; null when the Service is not ours. Pure; never throws on odd input. */
export function mapService(svc: V1Service, slices: readonly V1EndpointSlice[], opts: MappingOptions): InstanceSpec | null {
  const meta = isObject(svc) && isObject(svc.metadata) ? svc.metadata : undefined
  const svcName = str(meta?.name)
  if (svcName === undefined) return null
  const name = instanceNameOf(svcName, opts.servicePrefix)
  if (name === null) return null
  // The API server always sets it; an object without one is in `default`, as kubectl would create it.
  const namespace = str(meta?.namespace) ?? 'default'
  const spec = isObject(svc.spec) ? svc.spec : undefined

  const { annotations, errors: annotationErrors } = stringAnnotations(meta?.annotations)
  const { policy, errors } = parseAnnotations(annotations)
  annotationErrors.push(...errors)

  const servicePorts = tcpPorts(spec?.ports)
  let endpoints: EndpointSpec[]
  if (spec?.type === 'ExternalName') {
    const ext = externalNameEndpoint(str(spec.externalName), servicePorts, policy.port)
    if (ext.error !== undefined) annotationErrors.push(portError(annotations, ext.error))
    endpoints = ext.endpoint === null ? [] : [ext.endpoint]
  } else {
    const own = (Array.isArray(slices) ? slices : []).filter((s) => belongsTo(s, svcName, namespace))
    const fromSlices = sliceEndpoints(own, policy.port)
    endpoints = fromSlices.endpoints
    // Fall back to the Service's own address only when the slices list no endpoint at all on the
    // selected port: endpoints that are there but not ready mean "nothing to route to", and the
    // cluster IP would lead to the same unready pods.
    if (!fromSlices.anyListed) {
      const clusterIP = str(spec?.clusterIP)
      const port = pickPort(servicePorts, policy.port, (p) => p.port)
      if (clusterIP !== undefined && clusterIP !== 'None' && port !== undefined) {
        const host = `${svcName}.${namespace}.svc`.toLowerCase()
        endpoints = [{ id: endpointId(host, port.port), host, port: port.port, ready: true }]
      }
    }
    const slicePorts = own.flatMap((s) => tcpPorts(isObject(s) ? s.ports : undefined))
    if (policy.port !== null && (servicePorts.length > 0 || slicePorts.length > 0)) {
      const matches = (p: Port): boolean => (typeof policy.port === 'number' ? p.port === policy.port : p.name === policy.port)
      if (!servicePorts.some(matches) && !slicePorts.some(matches)) {
        annotationErrors.push(portError(annotations, `no port ${JSON.stringify(policy.port)} on the Service or its EndpointSlices`))
      }
    }
  }

  return {
    name,
    source: `kubernetes:${namespace}/${svcName}`,
    endpoints,
    policy,
    // Sorted by key like parseAnnotations' own errors (stable, so each key keeps its order).
    annotationErrors: annotationErrors.sort((a, b) => cmp(a.key, b.key)),
  }
}

// --- annotations -----------------------------------------------------------------------------

/** A Service's string annotations; non-string `redis-gateway.io/*` values are reported. */
export function stringAnnotations(raw: unknown): { annotations: Record<string, string>; errors: AnnotationError[] } {
  const annotations: Record<string, string> = {}
  const errors: AnnotationError[] = []
  if (!isObject(raw)) return { annotations, errors }
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value === 'string') annotations[key] = value
    // The API server only stores strings; anything else came from a hand-built object.
    else if (key.startsWith(ANNOTATION_PREFIX)) {
      const shown = typeof value === 'object' || typeof value === 'function' ? '' : String(value)
      errors.push({ key, value: shown, message: `${key}: the value is a ${value === null ? 'null' : typeof value}, not a string; using the default` })
    }
  }
  return { annotations, errors }
}

export function portError(annotations: Readonly<Record<string, string>>, message: string): AnnotationError {
  return { key: PORT_KEY, value: annotations[PORT_KEY] ?? '', message: `${PORT_KEY}: ${message}` }
}

// --- ports -----------------------------------------------------------------------------------

export interface Port {
  readonly name: string
  readonly port: number
}

/** The usable ports of a Service or slice: TCP (Redis speaks nothing else) with a valid number. */
export function tcpPorts(raw: unknown): Port[] {
  if (!Array.isArray(raw)) return []
  const out: Port[] = []
  for (const p of raw as unknown[]) {
    if (!isObject(p)) continue
    const protocol = p.protocol ?? 'TCP'
    if (protocol !== 'TCP' || !isPortNumber(p.port)) continue
    out.push({ name: typeof p.name === 'string' ? p.name : '', port: p.port })
  }
  return out
}

/**
 * The port the annotation selects (by name, or by number as `numberOf` reads it), else the one
 * named `redis`, else the first; undefined when the annotation selects one that is not there.
 */
function pickPort(ports: readonly Port[], selector: string | number | null, numberOf: (p: Port) => number): Port | undefined {
  if (typeof selector === 'number') return ports.find((p) => numberOf(p) === selector)
  if (typeof selector === 'string') return ports.find((p) => p.name === selector)
  return ports.find((p) => p.name === REDIS_PORT_NAME) ?? ports[0]
}

// --- ExternalName ----------------------------------------------------------------------------

function externalNameEndpoint(
  externalName: string | undefined,
  servicePorts: readonly Port[],
  selector: string | number | null,
): { endpoint: EndpointSpec | null; error?: string } {
  let port: number
  let error: string | undefined
  if (typeof selector === 'number') {
    // The external host's port: an ExternalName Service forwards nothing, so any number goes.
    port = selector
  } else {
    const named = typeof selector === 'string' ? servicePorts.find((p) => p.name === selector) : undefined
    port = (named ?? pickPort(servicePorts, null, (p) => p.port))?.port ?? DEFAULT_REDIS_PORT
    if (typeof selector === 'string' && named === undefined) {
      error = `no port ${JSON.stringify(selector)} on the ExternalName Service; using ${port}`
    }
  }
  const host = externalName === undefined ? undefined : hostName(externalName)
  const endpoint = host === undefined ? null : { id: endpointId(host, port), host, port, ready: true }
  return error === undefined ? { endpoint } : { endpoint, error }
}

// --- EndpointSlices --------------------------------------------------------------------------

/**
 * Whether a slice handed in for this Service may be used. The caller chooses the slices (by the
 * service-name label); this only refuses one that plainly names another Service or namespace.
 */
export function belongsTo(slice: unknown, svcName: string, namespace: string): slice is V1EndpointSlice {
  if (!isObject(slice)) return false
  const meta = isObject(slice.metadata) ? slice.metadata : undefined
  const labels = isObject(meta?.labels) ? meta.labels : undefined
  const owner = labels?.[SERVICE_NAME_LABEL]
  if (owner !== undefined && owner !== svcName) return false
  const ns = str(meta?.namespace)
  return ns === undefined || ns === namespace
}

/** Preference between two sightings of one endpoint id (lower wins): ready, then serving+terminating, then unusable. */
const Rank = { Ready: 0, ServingTerminating: 1, Unusable: 2 } as const
type Rank = (typeof Rank)[keyof typeof Rank]

interface Candidate {
  readonly rank: Rank
  readonly spec: EndpointSpec
  /** Tie-break between equal ranks, so the result does not depend on slice order. */
  readonly key: string
}

export function sliceEndpoints(
  slices: readonly V1EndpointSlice[],
  selector: string | number | null,
): { endpoints: EndpointSpec[]; anyListed: boolean } {
  const byId = new Map<string, Candidate>()
  for (const slice of slices) {
    const port = pickPort(tcpPorts(slice.ports), selector, (p) => p.port)
    // A slice without the selected port may be another port's slice of the same Service: skip it.
    if (port === undefined) continue
    const parse = addressParser(slice.addressType)
    if (parse === undefined) continue
    for (const ep of Array.isArray(slice.endpoints) ? (slice.endpoints as unknown[]) : []) {
      const c = candidate(ep, parse, port.port)
      if (c === undefined) continue
      const seen = byId.get(c.spec.id)
      if (seen === undefined || c.rank < seen.rank || (c.rank === seen.rank && c.key < seen.key)) byId.set(c.spec.id, c)
    }
  }
  const all = [...byId.values()]
  const anyReady = all.some((c) => c.rank === Rank.Ready)
  // Serving+terminating endpoints stand in only while nothing is ready (a draining pod still
  // answers while its replacement starts; once one is ready it takes over).
  const wanted = anyReady ? Rank.Ready : Rank.ServingTerminating
  const endpoints = all
    .filter((c) => c.rank === wanted)
    .map((c) => c.spec)
    .sort((a, b) => cmp(a.id, b.id))
  return { endpoints, anyListed: all.length > 0 }
}

function candidate(raw: unknown, parse: (address: string) => string | undefined, port: number): Candidate | undefined {
  if (!isObject(raw)) return undefined
  // The addresses of one endpoint are fungible (EndpointSlice API): the first usable one stands for it.
  let host: string | undefined
  for (const a of Array.isArray(raw.addresses) ? (raw.addresses as unknown[]) : []) {
    host = typeof a === 'string' ? parse(a) : undefined
    if (host !== undefined) break
  }
  if (host === undefined) return undefined
  const conditions = isObject(raw.conditions) ? raw.conditions : {}
  // Per the API, nil ready and nil serving mean true, nil terminating means false.
  const ready = conditions.ready !== false
  const serving = conditions.serving !== false
  const terminating = conditions.terminating === true
  const rank = ready ? Rank.Ready : serving && terminating ? Rank.ServingTerminating : Rank.Unusable
  // Keys always in this order: the routing table compares specs by their JSON.
  const spec: { -readonly [K in keyof EndpointSpec]: EndpointSpec[K] } = { id: endpointId(host, port), host, port, ready: rank !== Rank.Unusable }
  const zone = str(raw.zone)
  if (zone !== undefined) spec.zone = zone
  const forZones = hintZones(raw.hints)
  if (forZones.length > 0) spec.forZones = forZones
  if (terminating) spec.terminating = true
  return { rank, spec, key: JSON.stringify(spec) }
}

function hintZones(hints: unknown): string[] {
  if (!isObject(hints) || !Array.isArray(hints.forZones)) return []
  const zones = new Set<string>()
  for (const z of hints.forZones as unknown[]) {
    const name = isObject(z) ? str(z.name) : undefined
    if (name !== undefined) zones.add(name)
  }
  return [...zones].sort(cmp)
}

/** How to read the addresses of a slice of this type; undefined for a type we do not know. */
function addressParser(addressType: unknown): ((address: string) => string | undefined) | undefined {
  switch (addressType) {
    case 'IPv4':
      return (a) => (isIPv4(a) ? a : undefined)
    case 'IPv6':
      return (a) => (isIPv6(a) ? a.toLowerCase() : undefined)
    case 'FQDN':
      return hostName
    default:
      return undefined
  }
}

// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, 253 characters at most.
const HOST_RE = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/

/** A DNS name as the gateway connects to it: lower-cased, without the root's trailing dot; undefined if not a host name. */
function hostName(raw: string): string | undefined {
  const host = raw.trim().toLowerCase().replace(/\.$/, '')
  return HOST_RE.test(host) ? host : undefined
}

// --- small guards ----------------------------------------------------------------------------

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}

function isPortNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535
}

// Code-unit order, not localeCompare: the same everywhere, whatever the process locale.
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
