// Runs commands on an endpoint: one command, a pipeline (in order, not atomic) or a MULTI/EXEC
// transaction, optionally followed by ROLE on the same connection to learn the primary's
// replication offset after writes (for read-your-writes sync tokens). Each round trip feeds the
// endpoint's load (in-flight, peak-EWMA latency) and is reported as an `upstream` event.

import { RedisReplyError, TimeoutError } from '../errors.js'
import type { EventHub, TraceScope } from '../events.js'
import { parseRole } from '../routing/endpoint-state.js'
import { wireName, type Args } from './endpoint-client.js'
import type { RawReply } from './encode.js'
import { countsAsBreakerFailure } from '../resilience/breaker.js'
import { failureKind, toGatewayError } from './errors.js'
import type { PooledEndpoint } from './pool.js'

/** One item of a pipeline/transaction result: a reply or Redis's error message. */
export type ItemResult = { ok: true; value: RawReply } | { ok: false; error: string }

export interface ExecContext {
  readonly instance: string
  readonly role: string
  readonly events: EventHub
  /** The attempt was admitted as a half-open breaker probe. */
  readonly probe: boolean
  /** The request's tracing slot, or null/absent when tracing is off. */
  readonly scope?: TraceScope | null
  /** The attempt fails with TimeoutError (a transport failure) after this long. */
  readonly timeoutMs: number
}

function finish(
  ctx: ExecContext,
  ep: PooledEndpoint,
  started: number,
  err: unknown,
  operation: string | Args,
  commands: number,
): void {
  const now = performance.now()
  ep.state.load.finish(now - started, now)
  const breaker = ep.state.breaker
  // The transition is only for a traced request's client span (logs and metrics hear it from the
  // breaker itself); each read of breaker.state reads the clock, so untraced requests skip it.
  const traced = ctx.scope != null
  const before = traced ? breaker.state.kind : null
  // Only transport failures say the endpoint is broken; any reply (WRONGTYPE included) proves it alive.
  if (err !== undefined && countsAsBreakerFailure(err)) breaker.onFailure(ctx.probe)
  else breaker.onSuccess(ctx.probe)
  if (!ctx.events.has('upstream')) return
  const after = traced ? breaker.state.kind : null
  ctx.events.emit('upstream', {
    instance: ctx.instance,
    endpoint: ep.id,
    role: ctx.role,
    outcome: err === undefined ? 'ok' : failureOutcome(err),
    durationS: (now - started) / 1000,
    scope: ctx.scope ?? null,
    operation: typeof operation === 'string' ? operation : operationOf(ctx, operation),
    commands,
    host: ep.client.spec.host,
    port: ep.client.spec.port,
    startMs: started,
    breaker: before === after ? null : `${before}->${after}`,
  })
}

/**
 * One round trip on an endpoint, bounded by the attempt's timeout. The first of reply, failure
 * and timeout settles it and is accounted once (load, breaker, upstream event); whatever ioredis
 * reports later is ignored. One timer per attempt: ioredis runs without its own commandTimeout.
 */
class Attempt<T> {
  private settled = false
  private readonly timer: NodeJS.Timeout
  private readonly started = performance.now()

  constructor(
    private readonly ep: PooledEndpoint,
    private readonly ctx: ExecContext,
    private readonly operation: string | Args,
    private readonly commands: number,
    private readonly resolve: (v: T) => void,
    private readonly reject: (e: unknown) => void,
  ) {
    ep.state.load.start()
    this.timer = setTimeout(expire, ctx.timeoutMs, this)
  }

  ok(v: T): void {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.timer)
    finish(this.ctx, this.ep, this.started, undefined, this.operation, this.commands)
    this.resolve(v)
  }

  fail(err: unknown): void {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.timer)
    finish(this.ctx, this.ep, this.started, err, this.operation, this.commands)
    this.reject(toGatewayError(err, this.ep.id, this.ctx.timeoutMs))
  }

  expired(): void {
    this.fail(new TimeoutError(`endpoint ${this.ep.id} did not answer within ${this.ctx.timeoutMs} ms`))
  }
}

function expire(a: { expired(): void }): void {
  a.expired()
}

/** The command name for a client span; untraced requests skip building it (a string per request). */
function operationOf(ctx: ExecContext, args: Args): string {
  if (ctx.scope == null) return ''
  const name = args[0]
  return typeof name === 'string' ? name.toUpperCase() : name === undefined ? '' : name.toString('latin1').toUpperCase()
}

export function failureOutcome(err: unknown): string {
  switch (failureKind(err)) {
    case 'reply':
      return 'reply_error'
    case 'busy-server':
      return 'busy'
    case 'timeout':
      return 'timeout'
    case 'unavailable':
      return 'unavailable'
    case 'reset':
      return 'reset'
  }
}

/** ROLE issued in the same tick as the write rides the same batch and reports the offset after it. */
function roleAfterWrite(ep: PooledEndpoint): Promise<void> {
  return ep.client.role().then(
    (reply) => {
      const r = parseRole(reply)
      if (r.role === 'primary' && r.offset > ep.state.offset) ep.state.offset = r.offset
    },
    () => {},
  )
}

/** Runs one command. Rejects with RedisReplyError (Redis said no) or a GatewayError (transport). */
export function runCommand(ep: PooledEndpoint, ctx: ExecContext, args: Args, withRole: boolean): Promise<RawReply> {
  return new Promise<RawReply>((resolve, reject) => {
    const a = new Attempt<RawReply>(ep, ctx, args, 1, resolve, reject)
    const p = ep.client.send(args)
    if (withRole) {
      const role = roleAfterWrite(ep)
      p.then((v) => role.then(() => a.ok(v)), (e: unknown) => a.fail(e))
    } else p.then((v) => a.ok(v), (e: unknown) => a.fail(e))
  })
}

/**
 * Runs commands in order on one connection. Redis error replies are per item; a transport
 * failure fails the whole request, since which items ran is then unknown.
 */
export function runPipeline(
  ep: PooledEndpoint,
  ctx: ExecContext,
  commands: readonly Args[],
  withRole: boolean,
  atomic: boolean,
): Promise<ItemResult[]> {
  return new Promise<ItemResult[]>((resolve, reject) => {
    const a = new Attempt<ItemResult[]>(ep, ctx, atomic ? 'MULTI' : 'PIPELINE', commands.length, resolve, reject)
    const run = exec(ep, commands, withRole, atomic)
    run.then((v) => a.ok(v), (e: unknown) => a.fail(withQueueErrors(e)))
  })
}

async function exec(ep: PooledEndpoint, commands: readonly Args[], withRole: boolean, atomic: boolean): Promise<ItemResult[]> {
  const pipe = atomic ? ep.client.redis.multi() : ep.client.redis.pipeline()
  for (const c of commands) {
    const name = typeof c[0] === 'string' ? c[0] : c[0]!.toString('latin1')
    pipe.callBuffer(wireName(name.toLowerCase()), ...(c.slice(1) as (string | Buffer)[]))
  }
  const done = pipe.exec()
  const role = withRole ? roleAfterWrite(ep) : undefined
  const res = (await done) as [Error | null, RawReply][] | null
  if (role) await role
  if (res === null) {
    // EXEC answered nil: only happens after WATCH, which the gateway refuses.
    throw new RedisReplyError('EXECABORT Transaction discarded')
  }
  const out: ItemResult[] = new Array(res.length)
  let transport: unknown
  for (let i = 0; i < res.length; i++) {
    const [e, v] = res[i]!
    if (e) {
      const kind = failureKind(e)
      if (kind !== 'reply' && kind !== 'busy-server') transport ??= e
      out[i] = { ok: false, error: e.message }
    } else out[i] = { ok: true, value: v }
  }
  if (transport !== undefined) throw transport
  return out
}

/** EXECABORT alone does not say what was wrong; add the errors Redis gave while queueing. */
function withQueueErrors(err: unknown): unknown {
  const prev = (err as { previousErrors?: Error[] } | null)?.previousErrors
  if (err instanceof Error && err.name === 'ReplyError' && Array.isArray(prev) && prev.length > 0) {
    return new RedisReplyError(`${err.message.replace(/\.$/, '')}: ${prev.map((e) => e.message.trim()).join('; ')}`)
  }
  return err
}
