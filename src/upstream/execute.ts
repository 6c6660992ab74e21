// Runs commands on an endpoint: one command, a pipeline (in order, not atomic) or a MULTI/EXEC
// transaction, optionally followed by ROLE on the same connection to learn the primary's
// replication offset after writes (for read-your-writes sync tokens). Each round trip feeds the
// endpoint's load (in-flight, peak-EWMA latency) and is reported as an `upstream` event.
// Replies arrive through sinks (resp-connection.ts): one object per attempt, no promise per command.

// performance from perf_hooks, not the global: on Node 20 the global is a getter run on every read.
import { performance } from 'node:perf_hooks'
import { GatewayError, OverloadedError, RedisReplyError, TimeoutError, TooLargeError } from '../core/errors.js'
import type { EventHub, TraceScope } from '../core/events.js'
import { notConnected, type Args } from './endpoint-client.js'
import { countsAsBreakerFailure } from '../resilience/breaker.js'
import { failureKind, toGatewayError } from '../core/failures.js'
import type { PooledEndpoint } from './pool.js'
import type { ReplySink, RespConnection } from './resp-connection.js'
import type { Deadlines, Expiring } from './deadlines.js'
import type { Charge, RequestLease } from '../resilience/byte-budget.js'
import type { Identity } from '../core/identity.js'
import { parseRole } from '../core/role.js'
import type { ItemResult, RawReply } from '../core/reply.js'


/** One item of a pipeline/transaction result: a reply or Redis's error message. */

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
  /** The gateway's attempt timeouts: one timer per distinct duration, not one per attempt (deadlines.ts). */
  readonly deadlines: Deadlines
  /** The request's memory (limits.maxReply, limits.inflightBytes), charged as replies arrive; null: uncharged. */
  readonly lease: RequestLease | null
  /** The Redis user the commands run as (its connection carries them). */
  readonly identity: Identity
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
  const before = breaker.state.kind
  // Only transport failures say the endpoint is broken; any reply (WRONGTYPE included) proves it alive.
  if (err !== undefined && countsAsBreakerFailure(err)) breaker.onFailure(ctx.probe)
  else breaker.onSuccess(ctx.probe)
  if (!ctx.events.listening.upstream) return
  const after = breaker.state.kind
  ctx.events.emitLater('upstream', {
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
    redisError: ctx.scope == null || err === undefined ? null : redisErrorPrefix(err),
  })
}

/**
 * One round trip on an endpoint, bounded by the attempt's timeout. The first of reply, failure
 * and timeout settles it and is accounted once (load, breaker, upstream event); whatever arrives
 * later is ignored. No timer of its own (ctx.deadlines), none per command.
 */
abstract class Attempt<T> implements ReplySink, Expiring {
  private settled = false
  private readonly started = performance.now()
  /** The connection it was written on, and its read count then (RespConnection.timedOut). */
  private conn: RespConnection | null = null
  private readsAtSend = 0

  constructor(
    protected readonly ep: PooledEndpoint,
    private readonly ctx: ExecContext,
    private readonly operation: string | Args,
    private readonly commands: number,
    private readonly resolve: (v: T) => void,
    private readonly reject: (e: unknown) => void,
  ) {
    ep.state.load.start()
    ctx.deadlines.add(this, ctx.timeoutMs, this.started)
  }

  get done(): boolean {
    return this.settled
  }

  /** Reply bytes are kept only within the request's lease; beyond it the reply becomes this error. */
  charge(bytes: number): Error | null {
    const lease = this.ctx.lease
    if (lease === null) return null
    const c = lease.takeReply(bytes)
    return c === 'ok' ? null : refusal(c, lease)
  }

  abstract reply(value: unknown): void

  lost(err: Error): void {
    this.fail(err)
  }

  protected ok(v: T): void {
    if (this.settled) return
    this.settled = true
    finish(this.ctx, this.ep, this.started, undefined, this.operation, this.commands)
    this.resolve(v)
  }

  fail(err: unknown): void {
    if (this.settled) return
    this.settled = true
    finish(this.ctx, this.ep, this.started, err, this.operation, this.commands)
    this.reject(toGatewayError(err, this.ep.id, this.ctx.timeoutMs))
  }

  /** Written on `conn` (before its commands go out). */
  sentOn(conn: RespConnection): void {
    this.conn = conn
    this.readsAtSend = conn.reads
  }

  expire(): void {
    this.fail(new TimeoutError(`endpoint ${this.ep.id} did not answer within ${this.ctx.timeoutMs} ms`))
    // Nothing at all arrived on its connection meanwhile: stalled, not slow; reset it.
    this.conn?.timedOut(this.readsAtSend)
  }

  /**
   * ROLE after a write was refused on this connection (an operator-managed Redis user without
   * +role): ask on the gateway's own connection instead, once the write's reply is in (the offset
   * it reports is then at least the write's), and settle either way.
   */
  protected roleElsewhere(settle: () => void): void {
    this.ep.client.role().then(
      (r) => {
        this.role(r)
        settle()
      },
      settle,
    )
  }

  /** The ROLE reply that followed a write: the primary's offset just after it. */
  protected role(reply: unknown): void {
    if (reply instanceof Error) return
    try {
      const r = parseRole(reply)
      if (r.role === 'primary' && r.offset > this.ep.state.offset) this.ep.state.offset = r.offset
    } catch {
      // Not a ROLE reply the gateway understands: the token keeps the last known offset.
    }
  }
}

const ROLE: Args = ['ROLE']

/** One command, then ROLE after a write. */
class CommandAttempt extends Attempt<RawReply> {
  private value: unknown = undefined
  private got = false

  constructor(
    ep: PooledEndpoint,
    ctx: ExecContext,
    args: Args,
    private readonly withRole: boolean,
    resolve: (v: RawReply) => void,
    reject: (e: unknown) => void,
  ) {
    super(ep, ctx, args, 1, resolve, reject)
  }

  reply(v: unknown): void {
    if (!this.got) {
      this.got = true
      this.value = v
      if (!this.withRole) this.settle()
      return
    }
    if (v instanceof Error && !(this.value instanceof Error)) return this.roleElsewhere(() => this.settle())
    this.role(v)
    this.settle()
  }

  override lost(err: Error): void {
    // The command's reply is in; only its ROLE was lost: the answer stands.
    if (this.got) this.settle()
    else this.fail(err)
  }

  override expire(): void {
    // The command's reply is in; only its ROLE is late: the answer stands (a write that ran is
    // never answered with a timeout).
    if (this.got) this.settle()
    else super.expire()
  }

  private settle(): void {
    const v = this.value
    if (v instanceof Error) this.fail(v)
    else this.ok(v as RawReply)
  }
}

/**
 * A pipeline (each reply stands alone) or a transaction (MULTI, the commands, EXEC), then ROLE
 * after writes. Redis error replies are per item; EXECABORT fails the whole request with the
 * errors Redis gave while queueing.
 */
class BatchAttempt extends Attempt<ItemResult[]> {
  private readonly out: ItemResult[]
  private seen = 0
  private queueErrors: string[] | null = null
  private execReply: unknown = undefined

  constructor(
    ep: PooledEndpoint,
    ctx: ExecContext,
    operation: string,
    private readonly n: number,
    private readonly atomic: boolean,
    private readonly withRole: boolean,
    resolve: (v: ItemResult[]) => void,
    reject: (e: unknown) => void,
  ) {
    super(ep, ctx, operation, n, resolve, reject)
    this.out = new Array<ItemResult>(n)
  }

  /** Replies expected: the commands, MULTI and EXEC around them, ROLE after. */
  get expected(): number {
    return this.n + (this.atomic ? 2 : 0) + (this.withRole ? 1 : 0)
  }

  reply(v: unknown): void {
    const i = this.seen++
    if (!this.atomic) {
      if (i < this.n) this.out[i] = item(v)
    } else if (i >= 1 && i <= this.n) {
      // MULTI's +OK, then +QUEUED or the error that will abort EXEC.
      if (v instanceof Error) (this.queueErrors ??= []).push(v.message.trim())
    } else if (i === this.n + 1) this.execReply = v
    if (i >= this.n + (this.atomic ? 2 : 0)) {
      if (v instanceof Error) return this.roleElsewhere(() => this.settle())
      this.role(v)
    }
    if (this.seen === this.expected) this.settle()
  }

  /** Every command's reply is in; only ROLE's is missing. */
  private get onlyRoleMissing(): boolean {
    return this.withRole && this.seen === this.expected - 1
  }

  override lost(err: Error): void {
    // Only ROLE was lost: the answer stands.
    if (this.onlyRoleMissing) this.settle()
    else this.fail(err)
  }

  override expire(): void {
    // Only ROLE is late: the answer stands (writes that ran are never answered with a timeout).
    if (this.onlyRoleMissing) this.settle()
    else super.expire()
  }

  private settle(): void {
    if (!this.atomic) return this.ok(this.out)
    const r = this.execReply
    // EXEC's reply was refused by the lease (too large): that verdict, not Redis's.
    if (r instanceof GatewayError) return this.fail(r)
    if (r instanceof Error) {
      const prev = this.queueErrors
      return this.fail(new RedisReplyError(prev === null ? r.message : `${r.message.replace(/\.$/, '')}: ${prev.join('; ')}`))
    }
    // EXEC answered nil: only happens after WATCH, which the gateway refuses.
    if (!Array.isArray(r)) return this.fail(new RedisReplyError('EXECABORT Transaction discarded'))
    for (let i = 0; i < this.n; i++) this.out[i] = item(r[i])
    this.ok(this.out)
  }
}

function item(v: unknown): ItemResult {
  if (!(v instanceof Error)) return { ok: true, value: v as RawReply }
  // The gateway's own verdict on a reply (too large, no memory left) keeps its code.
  return { ok: false, error: v instanceof GatewayError ? v.publicMessage : v.message }
}

function refusal(c: Exclude<Charge, 'ok'>, lease: RequestLease): GatewayError {
  if (c === 'too-large') {
    return new TooLargeError(
      `reply is larger than limits.maxReply (${lease.maxReplyBytes} bytes); read it in parts (GETRANGE, LRANGE, HSCAN, SSCAN, ZSCAN, XRANGE)`,
    )
  }
  return new OverloadedError('the gateway holds as many reply bytes as limits.inflightBytes allows; retry shortly', { retryAfterS: 1 })
}

/** The command name for a client span; untraced requests skip building it (a string per request). */
function operationOf(ctx: ExecContext, args: Args): string {
  if (ctx.scope == null) return ''
  const name = args[0]
  return typeof name === 'string' ? name.toUpperCase() : name === undefined ? '' : name.toString('latin1').toUpperCase()
}

/**
 * A batch's name for its client span (OpenTelemetry's Redis conventions): `PIPELINE` / `MULTI`, or
 * `PIPELINE GET` / `MULTI INCR` when every command is the same one. A pipeline of one command is
 * that command: a one-operation batch is a single operation. Untraced: no per-command work.
 */
function batchOperationOf(ctx: ExecContext, commands: readonly Args[], atomic: boolean): string {
  const kind = atomic ? 'MULTI' : 'PIPELINE'
  if (ctx.scope == null || commands.length === 0) return kind
  const first = operationOf(ctx, commands[0]!)
  for (let i = 1; i < commands.length; i++) if (operationOf(ctx, commands[i]!) !== first) return kind
  return atomic || commands.length > 1 ? `${kind} ${first}` : first
}

/**
 * A Redis error reply's prefix (the first word: ERR, WRONGTYPE, EXECABORT...), '' when the
 * message starts with no such code (a script's own error text), null when Redis did not answer with
 * an error (a transport failure, or the gateway's own verdict on a reply).
 */
function redisErrorPrefix(err: unknown): string | null {
  if (!(err instanceof RedisReplyError) && !(err instanceof Error && err.name === 'ReplyError')) return null
  const m = /^[A-Z][A-Z0-9_-]{0,31}(?= |$)/.exec(err.message)
  return m === null ? '' : m[0]
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

/** Runs one command. Rejects with RedisReplyError (Redis said no) or a GatewayError (transport). */
export function runCommand(ep: PooledEndpoint, ctx: ExecContext, args: Args, withRole: boolean): Promise<RawReply> {
  return new Promise<RawReply>((resolve, reject) => {
    const a = new CommandAttempt(ep, ctx, args, withRole, resolve, reject)
    const conn = ep.client.connectionFor(ctx.identity)
    if (conn !== null) a.sentOn(conn)
    // ROLE in the same write, right behind it: the offset just after the write.
    const sent = conn !== null && (withRole ? conn.commands([args, ROLE], a) : conn.command(args, a))
    if (!sent) a.fail(notConnected(ep.id))
  })
}

const MULTI: Args = ['MULTI']
const EXEC: Args = ['EXEC']

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
    const a = new BatchAttempt(ep, ctx, batchOperationOf(ctx, commands, atomic), commands.length, atomic, withRole, resolve, reject)
    const conn = ep.client.connectionFor(ctx.identity)
    if (conn === null || !conn.ready) return a.fail(notConnected(ep.id))
    a.sentOn(conn)
    conn.cork()
    try {
      if (atomic) conn.command(MULTI, a)
      conn.commands(commands, a)
      if (atomic) conn.command(EXEC, a)
      if (withRole) conn.command(ROLE, a)
    } finally {
      conn.uncork()
    }
  })
}
