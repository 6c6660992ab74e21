// The data plane's request logic, independent of the HTTP server that carries it (the fast lane
// in fast-lane.ts for plain requests, Hono on node:http for the rest, see data-plane.ts).
// Per request: parse URL -> authenticate -> classify -> resolve target -> pick endpoint ->
// execute -> encode. Every failure is thrown as a typed error and turned into a reply in one
// place (error-response.ts).

// The global Buffer is a getter on Node 20 (~140 instructions per use): import the binding.
import { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import type { ServerResponse } from 'node:http'
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
} from '../errors.js'
import type { EventHub, TraceScope } from '../events.js'
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
import { dispatch, type DispatchOptions } from '../routing/dispatch.js'
import type { Resolved, Router } from '../routing/router.js'
import { formatToken, parseToken, type SyncPosition } from '../routing/sync-token.js'
import type { RoutingTable } from '../routing/table.js'
import { errorJson, jsonBytesBound, respBytesBound, respError, respValue, resultJson, type RawReply } from '../upstream/encode.js'
import { runCommand, runPipeline, type ExecContext } from '../upstream/execute.js'
import type { PooledEndpoint } from '../upstream/pool.js'
import type { LoadTracker } from '../balancer/least-request.js'
import { SMALL_REQUEST_BYTES, type ByteBudget, type RequestLease } from '../resilience/byte-budget.js'
import type { TokenStore, Principal } from './auth.js'
import { presentedToken } from './auth.js'
import { describeError, errorHeaders } from './error-response.js'
import { checkArgCount, parseBatchBody, parseCommandBody, parseUrl, routeTemplate, truncate, type ParsedUrl } from './request-parse.js'
import { openMonitorStream, openSseStream } from './sse.js'
import { MonitorConnection } from '../upstream/monitor.js'
import { prepareScript, prepareScripts } from '../routing/scripts.js'
import { outboundTarget } from '../routing/outbound.js'
import { GATEWAY_IDENTITY, type Identity } from '../upstream/identity.js'
import { instanceView, learnUnknown, noteAdminCommand } from '../routing/command-table.js'
import type { CommandView } from '../routing/classify.js'

export interface DataPlaneDeps {
  readonly table: RoutingTable
  readonly router: Router
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
  /** The Node response, for Server-Sent Events; null where the server cannot stream. */
  readonly outgoing: ServerResponse | null
  /**
   * The request's share of the memory budget: the server that carries the request made it (and
   * charged the body to it) and releases it once the reply has left; replies are charged to it.
   */
  readonly lease: RequestLease
}

/** A complete JSON reply. Every reply carries a sync token. */
export interface DataReply {
  readonly status: number
  readonly body: string
  readonly syncToken: string
  /** Further headers (lower-case names), or null. */
  readonly headers: Readonly<Record<string, string>> | null
  /**
   * The body is ASCII, so its length is its byte length (the fast lane skips the UTF-8 count and
   * encoding). Set only where the encoder guarantees it: results in base64 without error items.
   */
  readonly ascii: boolean
}

/** The request was answered by streaming to `outgoing` (SSE). */
export const STREAMED = Symbol('streamed')

interface ReqState {
  instance: string | null
  group: string | null
  cls: string
  role: string
  /** The target instance's load (group least-request), finished when the request ends. */
  load: LoadTracker | null
  /** Tracing slot; null when nobody traces (then no tracing event is ever built). */
  scope: TraceScope | null
  /** Target resolution, reported as route.resolve once the command class is known. */
  resolve: PendingResolve | null
}

interface PendingResolve {
  readonly startMs: number
  endMs: number
  readonly kind: 'instance' | 'group'
  readonly name: string
  error: string | null
}

/** Serves one request; never rejects (every failure becomes an error reply). */
export async function handleDataRequest(req: DataRequest, deps: DataPlaneDeps): Promise<DataReply | typeof STREAMED> {
  const started = performance.now()
  const st: ReqState = { instance: null, group: null, cls: 'none', role: 'none', load: null, scope: null, resolve: null }
  const listening = deps.events.listening
  if (listening.requestStart) deps.events.emit('requestStart', { instance: null })
  // A scope (and with it resolve/select events) exists only when someone traces or logs decisions.
  if (listening.requestBegin || listening.routeSelect) st.scope = { span: null }
  if (st.scope !== null && listening.requestBegin) {
    deps.events.emit('requestBegin', {
      scope: st.scope,
      method: req.method,
      route: routeTemplate(req.url),
      traceparent: req.header('traceparent'),
      tracestate: req.header('tracestate'),
      startMs: started,
    })
    // An unsampled request records no span: drop the slot so no resolve/select/upstream event is
    // built for it, unless routing decisions are logged (debug). With 1 % sampling this was 30 %
    // of a core at 50 connections (bench/observability-cost.ts).
    if (st.scope.span === null && !deps.logger.isLevelEnabled('debug')) st.scope = null
  }
  let status = 500
  let code = 'INTERNAL'
  try {
    const res = await serve(req, deps, st)
    status = res === STREAMED ? 200 : res.status
    code = status === 200 ? 'OK' : 'REDIS'
    return res
  } catch (err) {
    const d = describeError(err)
    status = d.status
    code = d.code
    // Something thrown that no rule maps (a bug): this request gets a 500, the process serves on.
    if (d.status === 500) deps.events.emit('fault', { where: 'http_request', error: err instanceof Error ? err : new Error(String(err)), endpoint: null })
    // On errors, hand back the token the client sent so it never regresses.
    return { status: d.status, body: d.body, syncToken: req.header('upstash-sync-token') ?? '', headers: errorHeaders(err, d), ascii: false }
  } finally {
    const now = performance.now()
    if (st.load !== null) st.load.finish(now - started, now)
    if (st.resolve !== null) emitResolve(deps.events, st)
    if (listening.requestEnd) {
      // After the reply is written (emitLater): metrics, the server span and logs wait for it.
      deps.events.emitLater('requestEnd', {
        instance: st.instance,
        group: st.group,
        class: st.cls,
        status,
        code,
        durationS: (now - started) / 1000,
        endMs: now,
        scope: st.scope,
      })
    }
  }
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
  return instanceView(r.instance, deps.router.endpointsOf(r.instance))
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

async function serve(req: DataRequest, deps: DataPlaneDeps, st: ReqState): Promise<DataReply | typeof STREAMED> {
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
  let resolved: Resolved
  if (st.scope === null) resolved = deps.router.resolve(snap, url.kind, url.name, clientId)
  else {
    const pending: PendingResolve = { startMs: performance.now(), endMs: 0, kind: url.kind, name: url.name, error: null }
    st.resolve = pending
    try {
      resolved = deps.router.resolve(snap, url.kind, url.name, clientId)
    } catch (err) {
      pending.error = err instanceof GatewayError ? err.code : 'INTERNAL'
      throw err
    } finally {
      pending.endMs = performance.now()
    }
  }
  st.instance = resolved.instance.name
  st.group = resolved.group
  const encoding = req.header('upstash-encoding')
  // The SDK sends exactly `base64`: compare before lower-casing (a builtin call per request).
  const base64 = encoding !== undefined && (encoding === 'base64' || encoding.toLowerCase() === 'base64')
  const resp2 = responseFormat(req.header('upstash-response-format'), base64)
  const incomingToken = parseToken(req.header('upstash-sync-token'))
  st.load = resolved.load
  resolved.load.start()
  const onRole = (role: string): void => {
    st.role = role
  }
  const send = <T>(
    kind: 'read' | 'write' | 'subscribe',
    identity: Identity,
    scripted: boolean,
    run: (ep: PooledEndpoint, ctx: ExecContext) => Promise<T>,
  ) =>
    dispatch(
      deps.dispatch,
      { resolved, kind, token: incomingToken, clientId, onRole, scope: resolvedScope(deps.events, st), lease: req.lease, identity, scripted },
      run,
    )
  const token = (write: boolean): string => tokenFor(deps.router, resolved, incomingToken, write)

  switch (form.type) {
    case 'subscribe': {
      st.cls = 'subscribe'
      if ((req.header('accept') ?? '').indexOf('text/event-stream') < 0) {
        throw new RefusedCommandError('subscriptions are served as Server-Sent Events; send Accept: text/event-stream')
      }
      if (form.names.length === 0) throw new BadRequestError(`${form.pattern ? 'psubscribe' : 'subscribe'} needs at least one ${form.pattern ? 'pattern' : 'channel'} in the path`)
      if (!allows(principal.access, 'read')) throw new ForbiddenError(`token '${principal.name}' may not subscribe`)
      const outgoing = req.outgoing
      if (!outgoing) throw new BadRequestError('subscriptions need the Node.js HTTP server')
      // The body means nothing here (the SDK sends "[]"), but it must be read: a socket with unread
      // request bytes stops being read, and the client's hang-up would then never be noticed.
      await req.body(deps.maxBodyBytes)
      // Subscriptions follow the primary: PUBLISH is a write, so messages are there first.
      await send('subscribe', principal.identity, false, (ep) =>
        openSseStream({
          hub: ep.pubsubFor(principal.identity),
          pattern: form.pattern,
          names: form.names,
          outgoing,
          headers: { 'upstash-sync-token': token(false) },
          logger: deps.logger,
        }),
      )
      return STREAMED
    }
    case 'monitor': {
      // MONITOR as Server-Sent Events (README "MONITOR"): admin tokens only, on a connection of
      // the stream's own, as the token's Redis user, on the primary (where writes are).
      st.cls = 'subscribe'
      if (principal.access !== 'admin') throw new ForbiddenError(`token '${principal.name}' has ${principal.access} access; MONITOR needs admin`)
      if ((req.header('accept') ?? '').indexOf('text/event-stream') < 0) {
        throw new RefusedCommandError('MONITOR is served as Server-Sent Events; send Accept: text/event-stream')
      }
      const outgoing = req.outgoing
      if (!outgoing) throw new BadRequestError('MONITOR needs the Node.js HTTP server')
      await req.body(deps.maxBodyBytes)
      const identity = principal.identity
      // dispatch() waited for the identity's users to be provisioned (whenConnected).
      await send('subscribe', identity, false, async (ep, ctx) => {
        const options = ep.client.dedicatedOptions(identity)
        if (options === null) throw new NoEndpointError(`endpoint ${ep.id}: the Redis users are not known yet`, { retryAfterS: 1 })
        return openMonitorStream({
          connect: (sink) =>
            new MonitorConnection(options, sink, {
              timeoutMs: ctx.timeoutMs,
              onFault: (err) => deps.logger.warn({ err: err.message, endpoint: ep.id }, 'monitor connection fault'),
            }),
          outgoing,
          headers: { 'upstash-sync-token': token(false) },
          logger: deps.logger,
        })
      })
      return STREAMED
    }
    case 'command':
    case 'path': {
      let args: (string | Buffer)[]
      if (form.type === 'command') {
        // The fast lane has the body already: no await (a microtask turn) before the command leaves.
        const raw = req.body(deps.maxBodyBytes)
        args = parseCommandBody((Buffer.isBuffer(raw) ? raw : await raw).toString('utf8'), deps)
      } else {
        if (form.args.length === 0 || form.args[0] === '') throw new BadRequestError('empty command in path')
        checkArgCount(form.args.length + url.queryArgs.length, deps)
        args = [...form.args]
        if (post) {
          // As Upstash: the body is the last argument, and an empty body is none (POST
          // /publish/ch/hello without a body publishes "hello").
          const b = await req.body(deps.maxBodyBytes)
          if (b.length > 0) {
            checkArgCount(form.args.length + 1 + url.queryArgs.length, deps)
            args.push(b)
          }
        }
        for (const q of url.queryArgs) args.push(q)
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
      const script = prepareScript(deps, args)
      try {
        const value = await send(write ? 'write' : 'read', identity, runsScript(args), (ep, ctx) =>
          script === null ? runCommand(ep, ctx, args, write) : script.run(runCommand(ep, ctx, script.args, write)),
        )
        if (resp2) {
          if (req.lease.bytes > SMALL_REQUEST_BYTES) chargeOutput(req.lease, respBytesBound(value), write)
          return respReply(200, respValue(value), token(write))
        }
        if (req.lease.bytes > SMALL_REQUEST_BYTES) chargeOutput(req.lease, jsonBytesBound(value, base64), write)
        // In base64, every string in a result is base64 or a number (encode.ts): ASCII.
        return reply(200, resultJson(value, base64), token(write), base64)
      } catch (err) {
        if (err instanceof RedisReplyError) {
          return resp2 ? respReply(400, respError(err.message), token(write)) : reply(400, errorJson(err.message), token(write), false)
        }
        throw err
      }
    }
    case 'pipeline':
    case 'multi-exec': {
      const atomic = form.type === 'multi-exec'
      st.cls = atomic ? 'multi' : 'pipeline'
      const raw = req.body(deps.maxBodyBytes)
      const commands = parseBatchBody((Buffer.isBuffer(raw) ? raw : await raw).toString('utf8'), deps)
      // A transaction is all or nothing: any inadmissible command rejects the request. In a
      // pipeline each command stands alone (the SDK batches unrelated calls into one pipeline),
      // so an unknown, refused or forbidden command becomes that item's error and is not sent.
      let write = atomic
      let rejected: (string | undefined)[] | null = null
      let admitted: string[][] = commands
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
      const scripts = prepareScripts(deps, admitted)
      try {
        const items =
          admitted.length > 0
            ? await send(write ? 'write' : 'read', identity, scripted, (ep, ctx) =>
                scripts === null
                  ? runPipeline(ep, ctx, admitted, write, atomic)
                  : scripts.run(runPipeline(ep, ctx, scripts.commands, write, atomic)),
              )
            : []
        // resp2: the replies one after another, as Redis sends a pipeline's (not for /multi-exec,
        // which Upstash answers in JSON only).
        const raw = resp2 && !atomic
        if (req.lease.bytes > SMALL_REQUEST_BYTES) {
          let n = 0
          for (const it of items) n += it.ok ? (raw ? respBytesBound(it.value) : jsonBytesBound(it.value, base64)) : it.error.length * 6
          chargeOutput(req.lease, n, write)
        }
        if (raw) {
          let body = ''
          for (let i = 0, k = 0; i < commands.length; i++) {
            const refusal = rejected?.[i]
            if (refusal !== undefined) body += respError(refusal)
            else {
              const it = items[k++]!
              body += it.ok ? respValue(it.value) : respError(it.error)
            }
          }
          return respReply(200, body, token(write))
        }
        let out = '['
        // Error messages can carry any text (Redis quotes the command): only results are ASCII.
        let ascii = base64
        for (let i = 0, k = 0; i < commands.length; i++) {
          if (i > 0) out += ','
          const refusal = rejected?.[i]
          if (refusal !== undefined) {
            out += errorJson(refusal)
            ascii = false
            continue
          }
          const it = items[k++]!
          if (it.ok) out += resultJson(it.value, base64)
          else {
            out += errorJson(it.error)
            ascii = false
          }
        }
        out += ']'
        return reply(200, out, token(write), ascii)
      } catch (err) {
        if (err instanceof RedisReplyError) {
          // An aborted transaction (EXECABORT): one error for the whole request.
          return reply(400, errorJson(err.message), token(write), false)
        }
        throw err
      }
    }
  }
}

/** Reports route.resolve (now that the command class is known) and returns the tracing slot. */
function resolvedScope(events: EventHub, st: ReqState): TraceScope | null {
  if (st.resolve !== null) emitResolve(events, st)
  return st.scope
}

function emitResolve(events: EventHub, st: ReqState): void {
  const r = st.resolve!
  st.resolve = null
  events.emit('routeResolve', {
    scope: st.scope!,
    startMs: r.startMs,
    endMs: r.endMs,
    kind: r.kind,
    name: r.name,
    instance: st.instance,
    group: st.group,
    class: st.cls,
    error: r.error,
  })
}

/**
 * The token returned with every reply: the instance's primary position (after a write, the offset
 * just reached on it), or what the client sent when that is newer, so a token never goes back.
 */
function tokenFor(router: Router, r: Resolved, incoming: SyncPosition | null, afterWrite: boolean): string {
  const primary = router.primaryOf(r.instance)
  const replId = primary?.state.replId ?? incoming?.replId ?? '0'
  let offset = primary?.state.offset ?? 0
  if (incoming && incoming.instance === r.instance.name && incoming.replId === replId && incoming.offset > offset) {
    offset = incoming.offset
  }
  return formatToken({ instance: r.instance.name, replId, offset }, afterWrite)
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

function reply(status: 200 | 400, body: string, syncToken: string, ascii: boolean): DataReply {
  return { status, body, syncToken, headers: null, ascii }
}

const OCTET_STREAM = { 'content-type': 'application/octet-stream' } as const

/** RESP2 bytes (a latin1 string, see respValue), sent as they are with their content type. */
function respReply(status: 200 | 400, body: string, syncToken: string): DataReply {
  return { status, body, syncToken, headers: OCTET_STREAM, ascii: true }
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

