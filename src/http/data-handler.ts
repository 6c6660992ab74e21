// The data plane's one request handler, over one request shape (DataRequest), whichever HTTP server
// carries the request: the fast lane for plain requests, node:http with Hono for the rest. Thin
// adapters in data-plane.ts turn each server's request into a DataRequest and the reply back into
// that server's response; a subscription or MONITOR reply is an EventStream (sse.ts), which the
// node:http adapter attaches to its response.
// Per request: parse URL -> authenticate -> classify -> resolve target -> pick endpoint ->
// execute -> encode. Every failure is thrown as a typed error and turned into a reply in one
// place (error-response.ts). Observability is events (core/events.ts): the handler says what
// happens and when; telemetry keeps its own bookkeeping (spans, timings) from them.

import { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import {
  BadRequestError,
  ForbiddenError,
  GatewayError,
  MethodNotAllowedError,
  NoEndpointError,
  OverloadedError,
  RedisReplyError,
  RefusedCommandError,
  UnauthorizedError,
  UnknownCommandError,
} from '../core/errors.js'
import type { EventHub, TraceScope } from '../core/events.js'
import {
  admission,
  allows,
  classify,
  commandName,
  isWriteClass,
  requiredAccess,
  runsScript,
  unknownCommandMessage,
  type CommandClass,
} from '../routing/classify.js'
import { dispatch, type DispatchOptions } from '../upstream/dispatch.js'
import type { Resolved, Router } from '../selection/router.js'
import { formatClusterToken, parseClusterToken, parseToken, type SyncPosition, type SyncTokens } from '../routing/sync-token.js'
import type { ClusterInstance } from '../upstream/cluster.js'
import { clusterCommand, clusterPipeline, clusterPosition, clusterSubscribe, clusterTransaction, isRedirect, redirectOf, type ClusterCall } from '../upstream/cluster-exec.js'
import { keySlot } from '../routing/cluster-slots.js'
import type { InstanceRoute } from '../routing/table.js'
import type { ItemResult, RawReply } from '../core/reply.js'
import type { RoutingSnapshot, RoutingTable } from '../routing/table.js'
import { errorJson, jsonBytesBound, respBytesBound, respError, respValue, resultBase64, resultJson } from '../encoding/encode.js'
import { runCommand, runPipeline, type ExecContext } from '../upstream/execute.js'
import type { PooledEndpoint } from '../upstream/pool.js'
import type { LoadTracker } from '../balancer/least-request.js'
import { SMALL_REQUEST_BYTES, type ByteBudget, type RequestLease } from '../resilience/byte-budget.js'
import type { TokenStore, Principal } from './auth.js'
import { presentedToken } from './auth.js'
import { describeError, errorHeaders } from './error-response.js'
import { checkArgCount, parseBatchBody, parseCommandBody, parseUrl, routeTemplate, truncate, type ParsedUrl } from './request-parse.js'
import { EventStream, type EventStreams } from './sse.js'
import { MonitorConnection } from '../upstream/monitor.js'
import { prepareScriptBatch, prepareScriptCall, type ScriptBatch, type ScriptCall, type ScriptShas } from '../routing/scripts.js'
import { outboundTarget } from '../routing/outbound.js'
import { GATEWAY_IDENTITY, type Identity } from '../core/identity.js'
import { learnUnknown, noteAdminCommand, type CommandViews } from '../routing/command-table.js'
import type { CommandView } from '../routing/classify.js'

export interface DataPlaneDeps {
  readonly table: RoutingTable
  readonly router: Router<PooledEndpoint>
  readonly dispatch: DispatchOptions
  /** Request header carrying the client id for sticky routing (lower-case). */
  readonly clientIdHeader: string
  /** The current token store (replaced when the config file changes). */
  readonly tokens: () => TokenStore
  readonly events: EventHub
  readonly logger: Logger
  readonly maxBodyBytes: number
  /** All requests' memory together (limits.inflightBytes); each request's lease draws on it. */
  readonly budget: ByteBudget
  /** limits.maxReply: reply bytes one request may keep. */
  readonly maxReplyBytes: number
  /** Whether discovery knows an endpoint with this id (`host:port`): the only hosts MIGRATE and friends may name. */
  readonly knownEndpoint: (id: string) => boolean
  /** limits.maxArgs: arguments of one request, all commands of a pipeline together. */
  readonly maxArgs: number
  /** limits.maxCommands: commands in one pipeline or transaction. */
  readonly maxCommands: number
  // What requests share and remember, one of each per gateway (never per process).
  /** The learned command tables' views, per route. */
  readonly commandViews: CommandViews
  /** The client's sha -> the rewritten script's sha (scripts.ts). */
  readonly scripts: ScriptShas
  /** Open event streams and the MONITOR limit. */
  readonly streams: EventStreams
  /** Sync-token formatting (its write nonce). */
  readonly syncTokens: SyncTokens
  /** Instances served as Redis Clusters (upstream/cluster.ts); absent: none. */
  readonly clusters?: ClusterLookup
}

/** The cluster of an instance served as one; suspect(): a reply said MOVED, so it is one. */
export interface ClusterLookup {
  get(name: string): ClusterInstance | undefined
  suspect(route: InstanceRoute): ClusterInstance | undefined
}

/** One request as the data plane needs it, whichever server parsed it. */
export interface DataRequest {
  readonly method: string
  /** The request target as sent: path and query, still percent-encoded. */
  readonly url: string
  /** A request header by lower-case name. */
  header(name: string): string | undefined
  /** The whole body, refused with TooLargeError beyond `limit` bytes. */
  body(limit: number): Buffer | Promise<Buffer>
  /** Whether the server carrying the request can serve an EventStream reply (Server-Sent Events). */
  readonly canStream: boolean
  /**
   * The request's share of the memory budget: the server that carries the request made it (and
   * charged the body to it) and releases it once the reply has left; replies are charged to it.
   */
  readonly lease: RequestLease
}

/** A complete JSON reply. Every reply carries a sync token. */
export interface DataReply {
  readonly status: number
  /** JSON text, or bytes as they are sent (a large result in base64: encode.ts resultBase64). */
  readonly body: string | Buffer<ArrayBuffer>
  readonly syncToken: string
  /** Further headers (lower-case names), or null. */
  readonly headers: Readonly<Record<string, string>> | null
}

/** What the handler answers: a complete reply, or an event stream for the server to attach. */
export type DataResult = DataReply | EventStream

/**
 * One request's bookkeeping, from its start until its reply: what the requestEnd event and the
 * instance's load need. Its `succeeded` and `failed` end the request; a plain function with these
 * two callbacks instead of an async function around serve(): the same work with fewer objects per
 * request (bench/README.md "Tails").
 */
class ReqState {
  instance: string | null = null
  group: string | null = null
  cls = 'none'
  /** The target instance's load (group least-request), finished when the request ends. */
  load: LoadTracker | null = null
  /** Tracing slot; null unless a subscriber wants this request's routing events. */
  scope: TraceScope | null = null
  readonly started = performance.now()

  constructor(
    private readonly req: DataRequest,
    private readonly deps: DataPlaneDeps,
  ) {}

  readonly succeeded = (res: DataResult): DataResult => {
    const status = res instanceof EventStream ? 200 : res.status
    this.end(status, status === 200 ? 'OK' : 'REDIS')
    return res
  }

  readonly failed = (err: unknown): DataReply => {
    const d = describeError(err)
    // Something thrown that no rule maps (a bug): this request gets a 500, the process serves on.
    if (d.status === 500) this.deps.events.emit('fault', { where: 'http_request', error: err instanceof Error ? err : new Error(String(err)), endpoint: null })
    this.end(d.status, d.code)
    // On errors, hand back the token the client sent so it never regresses.
    return { status: d.status, body: d.body, syncToken: this.req.header('upstash-sync-token') ?? '', headers: errorHeaders(err, d) }
  }

  private end(status: number, code: string): void {
    const now = performance.now()
    const started = this.started
    if (this.load !== null) this.load.finish(now - started, now)
    const events = this.deps.events
    if (events.listening.requestEnd) {
      // After the reply is written (emitLater): metrics, the server span and logs wait for it.
      events.emitLater('requestEnd', {
        instance: this.instance,
        group: this.group,
        class: this.cls,
        status,
        code,
        durationS: (now - started) / 1000,
        endMs: now,
        scope: this.scope,
      })
    }
  }
}

/** Serves one request; never rejects (every failure becomes an error reply). */
export function handleDataRequest(req: DataRequest, deps: DataPlaneDeps): Promise<DataResult> {
  const st = new ReqState(req, deps)
  const listening = deps.events.listening
  if (listening.requestStart) deps.events.emit('requestStart', { instance: null })
  let served: Promise<DataResult>
  try {
    if (listening.requestBegin) st.scope = beginScope(deps.events, req, st.started)
    served = serve(req, deps, st)
  } catch (err) {
    return Promise.resolve(st.failed(err))
  }
  return served.then(st.succeeded, st.failed)
}

/**
 * The request's tracing slot, when a requestBegin subscriber wants its routing events; else null.
 * An unsampled request records no span: with no slot, no resolve/select/upstream event is built for
 * it. With 1 % sampling, building them anyway cost 30 % of a core at 50 connections
 * (bench/observability-cost.ts).
 */
function beginScope(events: EventHub, req: DataRequest, startMs: number): TraceScope | null {
  const scope: TraceScope = { wanted: false, span: null }
  events.emit('requestBegin', {
    scope,
    method: req.method,
    route: routeTemplate(req.url),
    traceparent: req.header('traceparent'),
    tracestate: req.header('tracestate'),
    startMs,
    url: req.url,
    host: req.header('host'),
  })
  return scope.wanted ? scope : null
}

/** The request's target; with a tracing slot, its resolution is told as it begins and ends. */
function resolveTarget(deps: DataPlaneDeps, scope: TraceScope | null, snap: RoutingSnapshot, url: ParsedUrl, clientId: string | null): Resolved {
  if (scope === null) return deps.router.resolve(snap, url.kind, url.name, clientId)
  deps.events.emit('routeResolveBegin', { scope, kind: url.kind, name: url.name })
  let resolved: Resolved
  try {
    resolved = deps.router.resolve(snap, url.kind, url.name, clientId)
  } catch (err) {
    deps.events.emit('routeResolve', { scope, instance: null, group: null, error: err instanceof GatewayError ? err.code : 'INTERNAL' })
    throw err
  }
  deps.events.emit('routeResolve', { scope, instance: resolved.instance.name, group: resolved.group, error: null })
  return resolved
}

function checkCommand(
  args: readonly (string | Buffer)[],
  principal: Principal,
  where: string,
  inTransaction: boolean,
  /** Its class, with the instance's learned command table (classifyAll). */
  cls: CommandClass,
): CommandClass {
  switch (admission(cls, principal.access)) {
    case 'allow':
      return cls
    case 'unknown':
      // Inside MULTI, Redis would queue-fail the command and abort EXEC: answer the same way.
      if (inTransaction) {
        throw new RedisReplyError(`EXECABORT Transaction discarded because of previous errors: ${unknownCommandMessage(args)}`)
      }
      throw new UnknownCommandError(`${where}${unknownCommandMessage(args)}`)
    case 'refused':
      throw new RefusedCommandError(`${where}${(cls as { reason: string }).reason}`)
    case 'forbidden': {
      const need = cls.kind === 'refused' ? cls.forbiddenBelow : requiredAccess(cls)
      throw new ForbiddenError(
        `${where}token '${principal.name}' has ${principal.access} access; '${commandName(args).toUpperCase()}' needs ${need}`,
      )
    }
  }
}

// Learned command tables (routing/command-table.ts).
// Commands are classified with what the target instance's backends report (command-table.ts).
// A name that view does not know makes the gateway ask the endpoints whether their tables changed
// (MODULE LOAD since; at most once a second per endpoint) before answering Redis's own
// `ERR unknown command`.

function commandView(deps: DataPlaneDeps, r: Resolved): CommandView | null {
  return deps.commandViews.instanceView(r.instance, deps.router.endpointsOf(r.instance))
}

/** Classes of `commands` with the instance's view; when one is unknown, after asking the endpoints once. */
function classifyAll(deps: DataPlaneDeps, r: Resolved, commands: readonly (readonly (string | Buffer)[])[]): CommandClass[] | Promise<CommandClass[]> {
  const view = commandView(deps, r)
  const out: CommandClass[] = []
  let unknown = false
  for (const args of commands) {
    const c = classify(args, view)
    if (c.kind === 'unknown') unknown = true
    out.push(c)
  }
  if (!unknown) return out
  return learnUnknown(deps.router.endpointsOf(r.instance), deps.dispatch.commandTimeoutMs).then(() => {
    const again = commandView(deps, r)
    for (let i = 0; i < commands.length; i++) if (out[i]!.kind === 'unknown') out[i] = classify(commands[i]!, again)
    return out
  })
}

/**
 * Who an admitted command runs as: the token's identity, except that a MIGRATE or CLUSTER MEET
 * (admin only, and checked here to name a discovered endpoint) runs as the gateway's own user,
 * since the users of the token levels may not run them (they could not be checked in scripts).
 */
function runAs(args: readonly (string | Buffer)[], cls: CommandClass, identity: Identity, deps: DataPlaneDeps, where: string): Identity {
  if (cls.kind !== 'admin') return identity
  const out = outboundTarget(args)
  if (out === null) return identity
  if (!deps.knownEndpoint(out.endpoint)) {
    throw new ForbiddenError(
      `${where}${out.command} may only name an endpoint the gateway discovered (host and port as discovery lists them); ${truncate(out.endpoint)} is not one`,
    )
  }
  return out.gatewayUser && identity.kind === 'level' ? GATEWAY_IDENTITY : identity
}

/**
 * A request once its method is allowed, its token authenticated and its target resolved: what the
 * handler of each form needs. One object per request; the helpers below take it instead of being
 * closures made per request.
 */
interface Target {
  readonly req: DataRequest
  readonly deps: DataPlaneDeps
  readonly st: ReqState
  readonly url: ParsedUrl
  /** POST or PUT (else GET or HEAD). */
  readonly post: boolean
  readonly principal: Principal
  readonly resolved: Resolved
  readonly clientId: string | null
  readonly base64: boolean
  /** Upstash-Response-Format: resp2. */
  readonly resp2: boolean
  readonly incomingToken: SyncPosition | null
  /** The instance's Redis Cluster, when it is served as one. */
  readonly cluster: ClusterInstance | undefined
}

/**
 * Everything before the form's own work, synchronously: the method, the token, the target. Throws
 * the request's error; the form's handler (an async function with only its own state) does the rest.
 */
function serve(req: DataRequest, deps: DataPlaneDeps, st: ReqState): Promise<DataResult> {
  const method = req.method
  const url: ParsedUrl = parseUrl(req.url)
  const form = url.form
  // The methods Upstash allows (REST API docs, "HTTP Codes": HEAD, GET, POST and PUT): PUT is POST,
  // HEAD is GET (the reply without its body). GET is allowed for the path form and for SSE
  // (browsers' EventSource can only GET, with _token); HEAD not for SSE, a stream it cannot read.
  const post = method === 'POST' || method === 'PUT'
  const getOk = form.type === 'path' || form.type === 'subscribe' || form.type === 'monitor'
  if (!post && !((method === 'GET' && getOk) || (method === 'HEAD' && form.type === 'path'))) {
    const allow = form.type === 'path' ? 'GET, HEAD, POST, PUT, OPTIONS' : getOk ? 'GET, POST, PUT, OPTIONS' : 'POST, PUT, OPTIONS'
    throw new MethodNotAllowedError(`method ${method} not allowed; use ${allow.replace(/, OPTIONS$/, '').replace(/, (\w+)$/, ' or $1')}`, allow)
  }
  const secret = presentedToken(req.header('authorization'), url.token)
  const principal = secret === null ? null : deps.tokens().authenticate(secret)
  if (principal === null) throw new UnauthorizedError()
  if (!principal.allows(url.name)) {
    throw new ForbiddenError(`token '${principal.name}' may not access ${url.kind} '${url.name}'`)
  }
  const snap = deps.table.current
  // Resolve before reading the body: an unknown name is a 404 whatever was sent.
  const clientId = req.header(deps.clientIdHeader) ?? null
  const resolved = resolveTarget(deps, st.scope, snap, url, clientId)
  st.instance = resolved.instance.name
  st.group = resolved.group
  const encoding = req.header('upstash-encoding')
  // The SDK sends exactly `base64`: compare before lower-casing (a builtin call per request).
  const base64 = encoding !== undefined && (encoding === 'base64' || encoding.toLowerCase() === 'base64')
  const resp2 = responseFormat(req.header('upstash-response-format'), base64)
  const incomingToken = parseToken(req.header('upstash-sync-token'))
  st.load = resolved.load
  resolved.load.start()
  const t: Target = {
    req,
    deps,
    st,
    url,
    post,
    principal,
    resolved,
    clientId,
    base64,
    resp2,
    incomingToken,
    cluster: deps.clusters?.get(resolved.instance.name),
  }
  switch (form.type) {
    case 'subscribe':
      return serveSubscribe(t, form)
    case 'monitor':
      return serveMonitor(t)
    case 'command':
    case 'path':
      return serveCommand(t)
    case 'pipeline':
    case 'multi-exec':
      return serveBatch(t, form.type === 'multi-exec')
  }
}

/** Sends the request's work to its instance (dispatch.ts: endpoint choice, retries, deadline). */
function send<T>(
  t: Target,
  kind: 'read' | 'write' | 'subscribe',
  identity: Identity,
  scripted: boolean,
  run: (ep: PooledEndpoint, ctx: ExecContext) => Promise<T>,
): Promise<T> {
  return dispatch(
    t.deps.dispatch,
    { resolved: t.resolved, kind, token: t.incomingToken, clientId: t.clientId, scope: t.st.scope, lease: t.req.lease, identity, scripted },
    run,
  )
}

/** The sync token of the reply (tokenFor), or of a cluster call's. */
function replyToken(t: Target, call: ClusterCall | null, write: boolean): string {
  return call === null ? tokenFor(t.deps, t.resolved, t.incomingToken, write) : clusterTokenFor(t.deps, call, write)
}

async function serveSubscribe(t: Target, form: { readonly pattern: boolean; readonly names: readonly string[] }): Promise<DataResult> {
  const { req, deps, st, principal, cluster } = t
  st.cls = 'subscribe'
  if ((req.header('accept') ?? '').indexOf('text/event-stream') < 0) {
    throw new RefusedCommandError('subscriptions are served as Server-Sent Events; send Accept: text/event-stream')
  }
  if (form.names.length === 0) throw new BadRequestError(`${form.pattern ? 'psubscribe' : 'subscribe'} needs at least one ${form.pattern ? 'pattern' : 'channel'} in the path`)
  if (!allows(principal.access, 'read')) throw new ForbiddenError(`token '${principal.name}' may not subscribe`)
  if (!req.canStream) throw new BadRequestError('subscriptions need the Node.js HTTP server')
  // The body means nothing here (the SDK sends "[]"), but it must be read: a socket with unread
  // request bytes stops being read, and the client's hang-up would then never be noticed.
  await req.body(deps.maxBodyBytes)
  // Subscriptions follow the primary: PUBLISH is a write, so messages are there first.
  const subscribe = (ep: PooledEndpoint, syncToken: string): Promise<EventStream> =>
    deps.streams.subscribe({
      hub: ep.pubsubFor(principal.identity),
      pattern: form.pattern,
      names: form.names,
      headers: { 'upstash-sync-token': syncToken },
      logger: deps.logger,
    })
  if (cluster !== undefined) {
    const call = clusterCallFor(t, cluster, principal.identity, false)
    return clusterSubscribe(call, form.pattern ? null : keySlot(form.names[0]!), (ep) => subscribe(ep, clusterTokenFor(deps, call, false)))
  }
  return send(t, 'subscribe', principal.identity, false, (ep) => subscribe(ep, replyToken(t, null, false)))
}

/**
 * MONITOR as Server-Sent Events (README "MONITOR"): admin tokens only, on a connection of the
 * stream's own, as the token's Redis user, on the primary (where writes are).
 */
async function serveMonitor(t: Target): Promise<DataResult> {
  const { req, deps, st, principal, cluster } = t
  st.cls = 'subscribe'
  if (principal.access !== 'admin') throw new ForbiddenError(`token '${principal.name}' has ${principal.access} access; MONITOR needs admin`)
  if ((req.header('accept') ?? '').indexOf('text/event-stream') < 0) {
    throw new RefusedCommandError('MONITOR is served as Server-Sent Events; send Accept: text/event-stream')
  }
  if (!req.canStream) throw new BadRequestError('MONITOR needs the Node.js HTTP server')
  await req.body(deps.maxBodyBytes)
  const identity = principal.identity
  const run = async (ep: PooledEndpoint, ctx: ExecContext): Promise<EventStream> => {
    const options = ep.client.dedicatedOptions(identity)
    if (options === null) throw new NoEndpointError(`endpoint ${ep.id}: the Redis users are not known yet`, { retryAfterS: 1 })
    return deps.streams.monitor({
      connect: (sink) =>
        new MonitorConnection(options, sink, {
          timeoutMs: ctx.timeoutMs,
          onFault: (err) => deps.logger.warn({ err: err.message, endpoint: ep.id }, 'monitor connection fault'),
        }),
      headers: { 'upstash-sync-token': replyToken(t, null, false) },
      logger: deps.logger,
    })
  }
  // dispatch() waited for the identity's users to be provisioned (whenConnected). On a cluster,
  // MONITOR shows one node's commands: the primary of a shard picked at random.
  if (cluster !== undefined) return clusterSubscribe(clusterCallFor(t, cluster, identity, false), null, run)
  return send(t, 'subscribe', identity, false, run)
}

/** One command: the command form (a JSON array body) or the path form (`/{command}/{arg}...`). */
async function serveCommand(t: Target): Promise<DataResult> {
  const { req, deps, st, url, resolved, principal } = t
  const form = url.form
  let args: (string | Buffer)[]
  if (form.type === 'command') {
    // The fast lane has the body already: no await (a microtask turn) before the command leaves.
    const raw = req.body(deps.maxBodyBytes)
    args = parseCommandBody(Buffer.isBuffer(raw) ? raw : await raw, deps)
  } else {
    args = await pathArgs(t, (form as { readonly args: readonly string[] }).args)
  }
  // Learned command tables: one view lookup; a second pass only for an unknown name.
  let learned = classify(args, commandView(deps, resolved))
  if (learned.kind === 'unknown') learned = (await classifyAll(deps, resolved, [args]))[0]!
  const cls = checkCommand(args, principal, '', false, learned)
  if (cls.kind === 'admin') noteAdminCommand(args, deps.router.endpointsOf(resolved.instance))
  const identity = runAs(args, cls, principal.identity, deps, '')
  const write = isWriteClass(cls)
  st.cls = write ? 'write' : 'read'
  // Scripts (routing/scripts.ts): shebang flags the backend does not know dropped, EVALSHA of the
  // client's sha mapped; the command's name, class and Redis user stay those checked above.
  const script = prepareScriptCall(deps.scripts, args)
  const scripted = runsScript(args)
  let call: ClusterCall | null = null
  try {
    let value: RawReply
    if (t.cluster !== undefined) {
      call = clusterCallFor(t, t.cluster, identity, scripted)
      value = await clusterOne(call, args, script, write)
    } else {
      try {
        value = await send(t, write ? 'write' : 'read', identity, scripted, (ep, ctx) =>
          script === null ? runCommand(ep, ctx, args, write) : script.run(runCommand(ep, ctx, script.args, write)),
        )
      } catch (err) {
        // A redirection from an instance not known to be a cluster yet: it is one, and the
        // command did not run.
        const found = isRedirect(err) ? deps.clusters?.suspect(resolved.instance) : undefined
        if (found === undefined) throw err
        call = clusterCallFor(t, found, identity, scripted)
        value = await clusterOne(call, args, script, write)
      }
    }
    const syncToken = replyToken(t, call, write)
    if (t.resp2) {
      if (req.lease.bytes > SMALL_REQUEST_BYTES) chargeOutput(req.lease, respBytesBound(value), write)
      return respReply(200, respValue(value), syncToken)
    }
    if (req.lease.bytes > SMALL_REQUEST_BYTES) chargeOutput(req.lease, jsonBytesBound(value, t.base64), write)
    return reply(200, t.base64 ? resultBase64(value) : resultJson(value, false), syncToken)
  } catch (err) {
    if (err instanceof RedisReplyError) {
      const syncToken = replyToken(t, call, write)
      return t.resp2 ? respReply(400, respError(err.message), syncToken) : reply(400, errorJson(err.message), syncToken)
    }
    throw err
  }
}

/** The path form's arguments: the path's, the body's (POST or PUT) and the query's. */
async function pathArgs(t: Target, segs: readonly string[]): Promise<(string | Buffer)[]> {
  const { deps, url } = t
  if (segs.length === 0 || segs[0] === '') throw new BadRequestError('empty command in path')
  checkArgCount(segs.length + url.queryArgs.length, deps)
  const args: (string | Buffer)[] = [...segs]
  if (t.post) {
    // As Upstash: the body is the last argument, and an empty body is none (POST
    // /publish/ch/hello without a body publishes "hello").
    const b = await t.req.body(deps.maxBodyBytes)
    if (b.length > 0) {
      checkArgCount(segs.length + 1 + url.queryArgs.length, deps)
      args.push(b)
    }
  }
  for (const q of url.queryArgs) args.push(q)
  return args
}

/** A pipeline (`/pipeline`) or a transaction (`/multi-exec`, `atomic`). */
async function serveBatch(t: Target, atomic: boolean): Promise<DataResult> {
  const { req, deps, st, resolved, principal } = t
  st.cls = atomic ? 'multi' : 'pipeline'
  const body = req.body(deps.maxBodyBytes)
  const commands = parseBatchBody(Buffer.isBuffer(body) ? body : await body, deps)
  // A transaction is all or nothing: any inadmissible command rejects the request. In a
  // pipeline each command stands alone (the SDK batches unrelated calls into one pipeline),
  // so an unknown, refused or forbidden command becomes that item's error and is not sent.
  let write = atomic
  let rejected: (string | undefined)[] | null = null
  let admitted: (string | Buffer)[][] = commands
  let identity = principal.identity
  let scripted = false
  const classified = classifyAll(deps, resolved, commands)
  const classes = Array.isArray(classified) ? classified : await classified
  for (let i = 0; i < commands.length; i++) {
    try {
      const where = atomic ? `command ${i + 1}: ` : ''
      const cls = checkCommand(commands[i]!, principal, where, atomic, classes[i]!)
      if (cls.kind === 'admin') noteAdminCommand(commands[i]!, deps.router.endpointsOf(resolved.instance))
      if (isWriteClass(cls)) write = true
      // The whole batch runs on one connection: one command that needs the gateway's user takes it.
      const as = runAs(commands[i]!, cls, principal.identity, deps, where)
      if (as !== principal.identity) identity = as
      if (!scripted && runsScript(commands[i]!)) scripted = true
    } catch (err) {
      if (atomic || !(err instanceof GatewayError)) throw err
      rejected ??= new Array<string | undefined>(commands.length)
      rejected[i] = err.publicMessage
    }
  }
  if (rejected !== null) admitted = commands.filter((_, i) => rejected![i] === undefined)
  // Scripts (routing/scripts.ts): as for one command, per item.
  const scripts = prepareScriptBatch(deps.scripts, admitted)
  let call: ClusterCall | null = null
  try {
    let items: ItemResult[] = []
    const sent = scripts === null ? admitted : scripts.commands
    if (admitted.length === 0) items = []
    else if (t.cluster !== undefined) {
      call = clusterCallFor(t, t.cluster, identity, scripted)
      items = await clusterBatch(call, sent, writeFlags(classes, rejected), atomic, scripts)
    } else {
      try {
        items = await send(t, write ? 'write' : 'read', identity, scripted, (ep, ctx) =>
          scripts === null ? runPipeline(ep, ctx, admitted, write, atomic) : scripts.run(runPipeline(ep, ctx, scripts.commands, write, atomic)),
        )
      } catch (err) {
        // A transaction refused with a redirection did not run: the instance is a cluster.
        const found = atomic && err instanceof RedisReplyError && /\b(MOVED|ASK) \d+ /.test(err.message) ? deps.clusters?.suspect(resolved.instance) : undefined
        if (found === undefined) throw err
        call = clusterCallFor(t, found, identity, scripted)
        items = await clusterBatch(call, sent, writeFlags(classes, rejected), atomic, scripts)
      }
      // Pipeline items redirected (they did not run): the instance is a cluster; those again.
      const redirected: number[] = []
      for (let k = 0; k < items.length; k++) {
        const it = items[k]!
        if (!it.ok && redirectOf(it.error) !== null) redirected.push(k)
      }
      const found = !atomic && redirected.length > 0 ? deps.clusters?.suspect(resolved.instance) : undefined
      if (found !== undefined) {
        call ??= clusterCallFor(t, found, identity, scripted)
        const writes = writeFlags(classes, rejected)
        const again = await clusterBatch(call, redirected.map((k) => sent[k]!), redirected.map((k) => writes[k]!), false, null)
        redirected.forEach((k, j) => (items[k] = scripts === null ? again[j]! : scripts.itemAt(k, again[j]!)))
      }
    }
    // resp2: the replies one after another, as Redis sends a pipeline's (not for /multi-exec,
    // which Upstash answers in JSON only).
    const raw = t.resp2 && !atomic
    if (req.lease.bytes > SMALL_REQUEST_BYTES) {
      let n = 0
      for (const it of items) n += it.ok ? (raw ? respBytesBound(it.value) : jsonBytesBound(it.value, t.base64)) : it.error.length * 6
      chargeOutput(req.lease, n, write)
    }
    if (raw) {
      let out = ''
      for (let i = 0, k = 0; i < commands.length; i++) {
        const refusal = rejected?.[i]
        if (refusal !== undefined) out += respError(refusal)
        else {
          const it = items[k++]!
          out += it.ok ? respValue(it.value) : respError(it.error)
        }
      }
      return respReply(200, out, replyToken(t, call, write))
    }
    let out = '['
    for (let i = 0, k = 0; i < commands.length; i++) {
      if (i > 0) out += ','
      const refusal = rejected?.[i]
      if (refusal !== undefined) {
        out += errorJson(refusal)
        continue
      }
      const it = items[k++]!
      out += it.ok ? resultJson(it.value, t.base64) : errorJson(it.error)
    }
    out += ']'
    return reply(200, out, replyToken(t, call, write))
  } catch (err) {
    if (err instanceof RedisReplyError) {
      // An aborted transaction (EXECABORT): one error for the whole request.
      return reply(400, errorJson(err.message), replyToken(t, call, write))
    }
    throw err
  }
}

/** A cluster request's state (upstream/cluster-exec.ts). */
function clusterCallFor(t: Target, cluster: ClusterInstance, identity: Identity, scripted: boolean): ClusterCall {
  const { deps, req, resolved } = t
  const sent = parseClusterToken(req.header('upstash-sync-token'))
  return {
    dispatch: deps.dispatch,
    cluster,
    group: resolved.group,
    load: resolved.load,
    token: sent !== null && sent.instance === resolved.instance.name ? sent : null,
    clientId: t.clientId,
    scope: t.st.scope,
    lease: req.lease,
    identity,
    scripted,
    touched: new Set(),
    deadlineAt: performance.now() + deps.dispatch.commandTimeoutMs + deps.dispatch.deadlineMarginMs,
    table: cluster.commandTable(),
  }
}

/** One command on a cluster instance, with a script's sha mapped as on a plain instance. */
function clusterOne(call: ClusterCall, args: readonly (string | Buffer)[], script: ScriptCall | null, write: boolean): Promise<RawReply> {
  return script === null ? clusterCommand(call, args, write) : script.run(clusterCommand(call, script.args, write))
}

/** A pipeline or transaction on a cluster instance, with scripts' shas mapped as on a plain instance. */
function clusterBatch(
  call: ClusterCall,
  commands: readonly (readonly (string | Buffer)[])[],
  writes: readonly boolean[],
  atomic: boolean,
  scripts: ScriptBatch | null,
): Promise<ItemResult[]> {
  const p = atomic ? clusterTransaction(call, commands) : clusterPipeline(call, commands, writes)
  return scripts === null ? p : scripts.run(p)
}

/** Whether each admitted command (those `rejected` does not refuse) is a write. */
function writeFlags(classes: readonly CommandClass[], rejected: readonly (string | undefined)[] | null): boolean[] {
  const out: boolean[] = []
  for (let i = 0; i < classes.length; i++) if (rejected?.[i] === undefined) out.push(isWriteClass(classes[i]!))
  return out
}

/** The token of a cluster instance's reply: per-shard positions (routing/sync-token.ts). */
function clusterTokenFor(deps: DataPlaneDeps, call: ClusterCall, write: boolean): string {
  return formatClusterToken(deps.syncTokens, clusterPosition(call), write)
}

/**
 * The token returned with every reply: the instance's primary position (after a write, the offset
 * just reached on it), or what the client sent when that is newer, so a token never goes back.
 */
function tokenFor(deps: DataPlaneDeps, r: Resolved, incoming: SyncPosition | null, afterWrite: boolean): string {
  const primary = deps.router.primaryOf(r.instance)
  const replId = primary?.state.replId ?? incoming?.replId ?? '0'
  let offset = primary?.state.offset ?? 0
  if (incoming && incoming.instance === r.instance.name && incoming.replId === replId && incoming.offset > offset) {
    offset = incoming.offset
  }
  return deps.syncTokens.format({ instance: r.instance.name, replId, offset }, afterWrite)
}

/**
 * Charges a big reply's JSON (`bytes`, an upper bound) before it is built
 * (RequestLease.takeOutput): its text, and then its bytes waiting for the client, can be several
 * times the raw reply. A read the budget cannot take is a 503 OVERLOADED before any encoding work;
 * a write's reply is always taken (the write ran). Callers skip replies within the request's free
 * allowance: their JSON is a few hundred KiB at most.
 */
function chargeOutput(lease: RequestLease, bytes: number, write: boolean): void {
  if (!lease.takeOutput(bytes, write)) {
    throw new OverloadedError('the gateway holds as many reply bytes as limits.inflightBytes allows; retry shortly', { retryAfterS: 1 })
  }
}

function reply(status: 200 | 400, body: string | Buffer<ArrayBuffer>, syncToken: string): DataReply {
  return { status, body, syncToken, headers: null }
}

const OCTET_STREAM = { 'content-type': 'application/octet-stream' } as const

/** RESP2 bytes (a latin1 string, see respValue), sent as they are with their content type. */
function respReply(status: 200 | 400, body: string, syncToken: string): DataReply {
  return { status, body, syncToken, headers: OCTET_STREAM }
}

/**
 * `Upstash-Response-Format` (REST API docs, "RESP2 Format Responses"): `json` (the default) or
 * `resp2`; anything else is a 400, and so is resp2 with `Upstash-Encoding: base64`.
 */
function responseFormat(value: string | undefined, base64: boolean): boolean {
  if (value === undefined) return false
  const f = value.trim().toLowerCase()
  if (f === 'json') return false
  if (f !== 'resp2') throw new BadRequestError(`Upstash-Response-Format must be json or resp2, not ${JSON.stringify(truncate(value))}`)
  if (base64) throw new BadRequestError('Upstash-Response-Format: resp2 cannot be combined with Upstash-Encoding: base64')
  return true
}

