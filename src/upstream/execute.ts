// Runs commands on an endpoint: one command, a pipeline (in order, not atomic) or a MULTI/EXEC
// transaction, optionally followed by ROLE on the same connection to learn the primary's
// replication offset after writes (for read-your-writes sync tokens).

import { RedisReplyError, type GatewayError } from '../errors.js'
import type { EventHub } from '../events.js'
import { wireName, type Args, type EndpointClient } from './endpoint-client.js'
import type { RawReply } from './encode.js'
import { failureKind, toGatewayError } from './errors.js'

/** One item of a pipeline/transaction result: a reply or Redis's error message. */
export type ItemResult = { ok: true; value: RawReply } | { ok: false; error: string }

export interface ExecContext {
  readonly instance: string
  readonly role: string
  readonly events: EventHub
}

function report(ctx: ExecContext, ep: EndpointClient, started: number, err: unknown): void {
  if (!ctx.events.has('upstream')) return
  const outcome = err === undefined ? 'ok' : failureOutcome(err)
  ctx.events.emit('upstream', {
    instance: ctx.instance,
    endpoint: ep.id,
    role: ctx.role,
    outcome,
    durationS: (performance.now() - started) / 1000,
  })
}

function failureOutcome(err: unknown): string {
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

function fail(ep: EndpointClient, err: unknown): GatewayError | RedisReplyError {
  return toGatewayError(err, ep.id, ep.commandTimeoutMs)
}

/** Runs one command. Rejects with RedisReplyError (Redis said no) or a GatewayError (transport). */
export async function runCommand(ep: EndpointClient, ctx: ExecContext, args: Args, withRole: boolean): Promise<RawReply> {
  const started = performance.now()
  ep.inflight++
  const p = ep.send(args)
  // Issued in the same tick, so ROLE rides the same auto-pipeline batch right behind the write.
  const role = withRole ? ep.role() : undefined
  try {
    const v = await p
    if (role) await role
    report(ctx, ep, started, undefined)
    return v
  } catch (err) {
    report(ctx, ep, started, err)
    throw fail(ep, err)
  } finally {
    ep.inflight--
  }
}

/**
 * Runs commands in order on one connection. Redis error replies are per item; a transport
 * failure fails the whole request, since which items ran is then unknown.
 */
export async function runPipeline(
  ep: EndpointClient,
  ctx: ExecContext,
  commands: readonly Args[],
  withRole: boolean,
  atomic: boolean,
): Promise<ItemResult[]> {
  const started = performance.now()
  ep.inflight++
  const pipe = atomic ? ep.redis.multi() : ep.redis.pipeline()
  for (const c of commands) {
    const name = typeof c[0] === 'string' ? c[0] : c[0]!.toString('latin1')
    pipe.callBuffer(wireName(name.toLowerCase()), ...(c.slice(1) as (string | Buffer)[]))
  }
  const exec = pipe.exec()
  const role = withRole ? ep.role() : undefined
  try {
    const res = (await exec) as [Error | null, RawReply][] | null
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
        if (failureKind(e) !== 'reply' && failureKind(e) !== 'busy-server') transport ??= e
        out[i] = { ok: false, error: e.message }
      } else out[i] = { ok: true, value: v }
    }
    if (transport !== undefined) throw transport
    report(ctx, ep, started, undefined)
    return out
  } catch (err) {
    report(ctx, ep, started, err)
    throw fail(ep, withQueueErrors(err))
  } finally {
    ep.inflight--
  }
}

/** EXECABORT alone does not say what was wrong; add the errors Redis gave while queueing. */
function withQueueErrors(err: unknown): unknown {
  const prev = (err as { previousErrors?: Error[] } | null)?.previousErrors
  if (err instanceof Error && err.name === 'ReplyError' && Array.isArray(prev) && prev.length > 0) {
    return new RedisReplyError(`${err.message.replace(/\.$/, '')}: ${prev.map((e) => e.message.trim()).join('; ')}`)
  }
  return err
}
