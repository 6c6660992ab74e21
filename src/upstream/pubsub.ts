// One subscriber connection per endpoint (and per operator-managed Redis user), shared by every
// SSE stream that reads from it. Channels and patterns are reference-counted: Redis is subscribed
// while at least one stream wants a name and unsubscribed when the last one leaves, and the
// connection is closed when no name is left, so nothing stays subscribed after clients disconnect.
//
// The connection is a RespConnection in push mode (resp-connection.ts): the same connect, TLS,
// AUTH and reconnect path as the command connections, and the same parser (resp-parser.ts),
// iterative and charged. Each reply, a message included, is held to limits.maxReply: a larger one
// (a script can PUBLISH 200 MB) or one nested deeper than 128 arrays is skipped as it streams in,
// never buffered or fanned out, reported as a fault, and the connection stays subscribed. Anything
// that breaks the protocol or the order of confirmations resets the connection; like any loss it
// is then re-established and every current name subscribed again, and the streams stay open
// (messages published in between are lost: Redis pub/sub is at-most-once). Streams are ended only
// by stop(), when Redis refuses a name on resubscribing (an ACL change), or when their own sink
// throws.
//
// Confirmations are matched to what was sent: Redis answers SUBSCRIBE a b with one
// ["subscribe", name, count] per name, in order, or with one error reply for the whole command;
// messages may come between commands but never inside one command's confirmations.

import { Buffer } from 'node:buffer'
import type { EndpointSpec } from '../core/topology.js'
import { NoEndpointError, TooLargeError } from '../core/errors.js'
import { REPLY_ELEMENT_BYTES } from '../resilience/byte-budget.js'
import { withTimer } from '../core/timeout.js'
import { ConnectionSlot } from './connection-slot.js'
import { connectionOptions, type UpstreamOptions } from './endpoint-client.js'
import { ProtocolError, ReplyError } from './resp-parser.js'

export type SubscriptionKind = 'channel' | 'pattern'

export interface SubscriptionSink {
  /** pattern is null for plain channel messages. */
  message(pattern: Buffer | null, channel: Buffer, payload: Buffer): void
  /** The hub is going away (endpoint removed, gateway stopping): end the stream. */
  close(reason: string): void
}

export interface PubSubHooks {
  /**
   * The subscriber connection was reset (Redis broke the protocol, or confirmations came out of
   * step), a message was dropped (over limits.maxReply or nested too deep), or a sink threw.
   */
  onFault?(err: Error): void
}

/** Redis's own default (proto-max-bulk-len), as RespConnection's, when no cap is configured. */
const DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024
/** What the parser charges for a confirmation besides its name: three slots and the longest kind. */
const CONFIRMATION_BYTES = 3 * REPLY_ELEMENT_BYTES + 'punsubscribe'.length

type Command = 'subscribe' | 'psubscribe' | 'unsubscribe' | 'punsubscribe'

/** A resolvable promise: the subscribe() calls waiting for Redis to confirm one name. */
interface Deferred {
  readonly promise: Promise<void>
  resolve(): void
  reject(err: Error): void
}

function deferred(): Deferred {
  let resolve!: () => void
  let reject!: (err: Error) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  // Rejected with nobody waiting any more (its callers gave up first): not an unhandled rejection.
  promise.catch(() => {})
  return { promise, resolve, reject }
}

/** One channel or pattern and the streams that want it. */
interface Subscription {
  readonly name: Buffer
  readonly sinks: Set<SubscriptionSink>
  /** Until Redis first confirms it: what its subscribe() calls wait for. null once confirmed. */
  pending: Deferred | null
}

/** A command written on the current connection whose confirmations are still (partly) to come. */
interface InFlight {
  readonly command: Command
  /** The names, in the order Redis confirms them. */
  readonly names: readonly Buffer[]
  /** For (P)SUBSCRIBE, each name's subscription; null for (P)UNSUBSCRIBE. */
  readonly subs: readonly Subscription[] | null
  /** Confirmations received so far. */
  next: number
}

const COMMAND_NAMES: Record<Command, string> = {
  subscribe: 'SUBSCRIBE',
  psubscribe: 'PSUBSCRIBE',
  unsubscribe: 'UNSUBSCRIBE',
  punsubscribe: 'PUNSUBSCRIBE',
}

export class PubSubHub {
  private slot: ConnectionSlot | null = null
  /** By name as latin1 text (one char per byte: binary-safe keys). */
  private readonly channels = new Map<string, Subscription>()
  private readonly patterns = new Map<string, Subscription>()
  /** Written on the current connection, oldest first; cleared when it closes. */
  private inflight: InFlight[] = []
  private readonly maxMessageBytes: number
  private stopped = false

  constructor(
    private readonly spec: EndpointSpec,
    /** The subscriber authenticates as opts.username (the gateway's own user, or an operator-managed one). */
    private readonly opts: UpstreamOptions,
    private readonly hooks: PubSubHooks = {},
  ) {
    this.maxMessageBytes = opts.maxReplyBytes ?? DEFAULT_MAX_MESSAGE_BYTES
  }

  /** Number of distinct channels and patterns currently subscribed in Redis. */
  get size(): { channels: number; patterns: number; connected: boolean } {
    return { channels: this.channels.size, patterns: this.patterns.size, connected: this.slot?.ready === true }
  }

  /** The subscriber connection, opened on first use. */
  private connection(): ConnectionSlot {
    if (this.slot !== null) return this.slot
    const slot: ConnectionSlot = new ConnectionSlot(
      {
        ...connectionOptions(this.spec, this.opts, this.opts.username, this.opts.password, false),
        push: (v) => this.pushed(slot, v),
      },
      {
        onReady: () => this.connected(slot),
        onClose: () => this.lost(slot, 'connection lost before Redis confirmed the subscription'),
        onFault: (err) => this.hooks.onFault?.(err),
      },
    )
    this.slot = slot
    slot.start()
    return slot
  }

  /**
   * Adds a sink for the given names. Resolves once Redis confirmed every new subscription (and any
   * of these names another stream is still waiting for); returns the function that removes the sink
   * again (idempotent). Rejects with NoEndpointError, the sink removed, when the connection is not
   * ready within redis.connectTimeout, when Redis does not confirm within redis.commandTimeout,
   * refuses a name (ACL), or the connection is lost before it confirmed.
   */
  async subscribe(kind: SubscriptionKind, names: readonly Buffer[], sink: SubscriptionSink): Promise<() => void> {
    if (this.stopped) throw new NoEndpointError(`endpoint ${this.spec.id} is shutting down`, { retryAfterS: 1 })
    for (const n of names) {
      // Its confirmation would be refused like an oversized message, and the hub could no longer
      // tell confirmations from dropped messages (and every message on it would be dropped anyway).
      if (n.length + CONFIRMATION_BYTES > this.maxMessageBytes) {
        throw new TooLargeError(`a ${kind} name of ${n.length} bytes does not fit in limits.maxReply (${this.maxMessageBytes} bytes)`)
      }
    }
    const table = kind === 'channel' ? this.channels : this.patterns
    const fresh: Subscription[] = []
    const waits: Promise<void>[] = []
    const keys = names.map((n) => n.toString('latin1'))
    keys.forEach((k, i) => {
      let sub = table.get(k)
      if (sub === undefined) {
        sub = { name: names[i]!, sinks: new Set(), pending: deferred() }
        table.set(k, sub)
        fresh.push(sub)
      }
      // New, or someone else's SUBSCRIBE for it is not confirmed yet: wait for its outcome.
      if (sub.pending !== null) waits.push(sub.pending.promise)
      sub.sinks.add(sink)
    })
    let removed = false
    const unsubscribe = (): void => {
      if (removed) return
      removed = true
      const gone: Buffer[] = []
      for (const k of keys) {
        const sub = table.get(k)
        // Gone, or another subscription of the name since (Redis refused this one on a reconnect).
        if (sub === undefined || !sub.sinks.delete(sink)) continue
        if (sub.sinks.size === 0) {
          table.delete(k)
          gone.push(sub.name)
        }
      }
      if (this.channels.size === 0 && this.patterns.size === 0) {
        // Nothing is wanted any more: close the subscriber connection (which also ends every
        // subscription in Redis); the next subscribe opens a new one.
        this.close('subscriber connection closed')
      } else if (gone.length > 0) {
        // Not connected: nothing to undo, the next connection subscribes only what the tables hold.
        this.write(kind === 'channel' ? 'unsubscribe' : 'punsubscribe', gone, null)
      }
    }
    if (waits.length === 0) return unsubscribe
    const slot = this.connection()
    // Not ready yet: connected() subscribes every name in the tables, these included.
    if (fresh.length > 0 && slot.ready) this.write(kind === 'channel' ? 'subscribe' : 'psubscribe', fresh.map((s) => s.name), fresh)
    try {
      if (!slot.ready) {
        const timeoutMs = this.opts.connectTimeoutMs
        const ok = await slot.whenReady(timeoutMs)
        if (!ok) throw new Error(`not connected within ${timeoutMs} ms${slot.failure === null ? '' : ` (${slot.failure})`}`)
      }
      const timeoutMs = this.opts.commandTimeoutMs
      await withTimer(Promise.all(waits), timeoutMs, () => new Error(`Redis did not confirm within ${timeoutMs} ms`))
    } catch (err) {
      unsubscribe()
      throw new NoEndpointError(`cannot subscribe on endpoint ${this.spec.id}: ${(err as Error).message}`, {
        retryAfterS: 1,
      })
    }
    return unsubscribe
  }

  stop(reason = 'endpoint removed'): void {
    this.stopped = true
    const sinks = new Set<SubscriptionSink>()
    for (const sub of this.channels.values()) for (const s of sub.sinks) sinks.add(s)
    for (const sub of this.patterns.values()) for (const s of sub.sinks) sinks.add(s)
    this.channels.clear()
    this.patterns.clear()
    this.close(reason)
    for (const s of sinks) this.closeSink(s, reason)
  }

  /**
   * Writes a (P)(UN)SUBSCRIBE for `names` on the current connection and expects its confirmations.
   * Nothing when not ready: connected() subscribes from the tables.
   */
  private write(command: Command, names: readonly Buffer[], subs: readonly Subscription[] | null): void {
    const slot = this.slot
    if (slot === null || !slot.connection.send([COMMAND_NAMES[command], ...names])) return
    this.inflight.push({ command, names, subs, next: 0 })
  }

  /**
   * Connected (first connect or reconnect): subscribe every current name. One command per name, all
   * in one write: Redis refuses a command as a whole, and a name the user may no longer subscribe
   * to must end only its own streams.
   */
  private connected(slot: ConnectionSlot): void {
    if (slot !== this.slot) return
    const c = slot.connection
    c.cork()
    for (const sub of [...this.channels.values()]) this.write('subscribe', [sub.name], [sub])
    for (const sub of [...this.patterns.values()]) this.write('psubscribe', [sub.name], [sub])
    c.uncork()
  }

  /**
   * The connection closed (it reconnects by itself) or is being closed: what was written on it will
   * not be confirmed there. A subscribe() still waiting to be confirmed fails, as before.
   */
  private lost(slot: ConnectionSlot, why: string): void {
    if (slot !== this.slot) return
    const inflight = this.inflight
    this.inflight = []
    for (const f of inflight) {
      if (f.subs === null) continue
      for (let i = f.next; i < f.subs.length; i++) f.subs[i]!.pending?.reject(new Error(why))
    }
  }

  /** Closes the subscriber connection for good (nothing is wanted, or stop()). */
  private close(why: string): void {
    const slot = this.slot
    if (slot === null) return
    this.lost(slot, why)
    this.slot = null
    slot.stop()
  }

  /**
   * One reply from Redis. Throwing resets the connection (RespConnection reports it as a fault):
   * the stream is out of step and nothing after this can be matched to what was sent.
   */
  private pushed(slot: ConnectionSlot, v: unknown): void {
    // The connection was closed while a read was still being handed over (a sink left, the last one).
    if (slot !== this.slot) return
    if (Array.isArray(v)) {
      const type = Buffer.isBuffer(v[0]) ? v[0].toString('latin1') : null
      switch (type) {
        case 'message':
          if (v.length === 3) return this.deliver(null, v[1], v[2])
          break
        case 'pmessage':
          if (v.length === 4) return this.deliver(v[1], v[2], v[3])
          break
        case 'subscribe':
        case 'psubscribe':
        case 'unsubscribe':
        case 'punsubscribe':
          if (v.length === 3) return this.confirmed(type, v[1])
          break
      }
    } else if (v instanceof TooLargeError) {
      // Only a message can be this large: names are checked against the cap in subscribe().
      this.hooks.onFault?.(new Error(`pub/sub message on endpoint ${this.spec.id} dropped: ${v.message}`))
      return
    } else if (v instanceof ReplyError) {
      return this.refused(v)
    }
    throw new ProtocolError('Redis protocol error: unexpected reply on the subscriber connection')
  }

  /** A message (pattern null) or pmessage: to the sinks of its channel or pattern, in order. */
  private deliver(pattern: unknown, channel: unknown, payload: unknown): void {
    if ((pattern !== null && !Buffer.isBuffer(pattern)) || !Buffer.isBuffer(channel) || !Buffer.isBuffer(payload)) {
      throw new ProtocolError('Redis protocol error: a malformed pub/sub message')
    }
    const sub = pattern === null ? this.channels.get(channel.toString('latin1')) : this.patterns.get(pattern.toString('latin1'))
    if (sub === undefined) return
    for (const s of sub.sinks) {
      try {
        s.message(pattern, channel, payload)
      } catch (err) {
        // One stream's failure ends that stream, not the connection every other stream shares.
        this.hooks.onFault?.(err instanceof Error ? err : new Error(String(err)))
        this.closeSink(s, 'internal error')
      }
    }
  }

  /** One name's confirmation: the next one the oldest command in flight expects. */
  private confirmed(type: Command, name: unknown): void {
    const head = this.inflight[0]
    if (head === undefined || head.command !== type || !Buffer.isBuffer(name) || !name.equals(head.names[head.next]!)) {
      throw new ProtocolError(`Redis protocol error: a ${type} confirmation that matches nothing sent`)
    }
    const sub = head.subs?.[head.next]
    if (++head.next === head.names.length) this.inflight.shift()
    const p = sub?.pending
    if (p != null) {
      sub!.pending = null
      p.resolve()
    }
  }

  /** An error reply: the oldest command in flight was refused as a whole (ACL, a broken server). */
  private refused(err: ReplyError): void {
    const head = this.inflight.shift()
    if (head === undefined) throw new ProtocolError(`Redis protocol error: an error reply nobody asked for (${err.message})`)
    // A refused (P)UNSUBSCRIBE changes nothing the streams see (the name left the tables already).
    if (head.subs === null) return
    const table = head.command === 'subscribe' ? this.channels : this.patterns
    const ended = new Set<SubscriptionSink>()
    for (let i = head.next; i < head.subs.length; i++) {
      const sub = head.subs[i]!
      if (sub.pending !== null) {
        // A first subscribe: its callers fail (and remove their sinks).
        sub.pending.reject(err)
        continue
      }
      // A name subscribed again after a reconnect (permissions changed meanwhile): it is not
      // subscribed any more, so it leaves the table, and its streams end so clients hear of it.
      const key = sub.name.toString('latin1')
      if (table.get(key) === sub) table.delete(key)
      for (const s of sub.sinks) ended.add(s)
    }
    for (const s of ended) this.closeSink(s, `Redis refused the subscription: ${err.message}`)
    if (this.channels.size === 0 && this.patterns.size === 0) this.close('subscriber connection closed')
  }

  private closeSink(s: SubscriptionSink, reason: string): void {
    try {
      s.close(reason)
    } catch (err) {
      this.hooks.onFault?.(err instanceof Error ? err : new Error(String(err)))
    }
  }
}
