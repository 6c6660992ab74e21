// Server-Sent Events for SUBSCRIBE / PSUBSCRIBE, in the Upstash format:
//   data: subscribe,<channel>,<count>    data: message,<channel>,<payload>
//   data: pmessage,<pattern>,<channel>,<payload>
// each event on one `data:` line, also when a payload has line breaks (see event()).
// The Redis side is a shared, reference-counted subscriber connection (PubSubHub); the stream's
// sink is removed when the client goes away, and Redis is unsubscribed when no stream wants the
// name any more. When the gateway ends a stream (shutdown, endpoint removed, client too slow) it
// first says so:
//   : <reason>                           a comment, for people reading the stream
//   data: unsubscribe,<channel>,<count>  (punsubscribe for patterns) one per name, as Redis
//                                        confirms an unsubscribe; the SDK reports it as 'unsubscribe'
// and then ends the response, so the client sees a clean end of stream, never a reset.
// MONITOR streams (admin tokens) use the same framing and limits on a Redis connection of their own
// (upstream/monitor.ts): `data: OK`, then `data: <line>` per command.
//
// Nothing here knows the HTTP server: a stream is set up first (so a failure is still a normal JSON
// error reply), handed back to the server that carries the request, and attached to that server's
// response through a StreamOutput (data-plane.ts writes one over node:http's response), which sends
// each event as it happens.

import { Buffer } from 'node:buffer'
import type { Logger } from 'pino'
import { NoEndpointError, OverloadedError } from '../core/errors.js'
import type { MonitorConnection, MonitorSink } from '../upstream/monitor.js'
import type { PubSubHub, SubscriptionSink } from '../upstream/pubsub.js'

/** The response a stream is written to, as the server carrying the request offers it. */
export interface StreamOutput {
  /** The client left, or the response can no longer be started or written. */
  readonly gone: boolean
  /** Bytes written and not yet taken by the client. */
  readonly backlog: number
  /** Sends status 200 and these headers (with the event-stream ones). */
  start(headers: Record<string, string>): void
  write(text: string): void
  /** Ends the response; nothing is written after it. */
  end(): void
  /** `fn` runs when the client leaves (the response closes). */
  onClose(fn: () => void): void
}

export interface StreamLimits {
  /** Comment line sent this often so idle streams survive proxies; default 15 s. */
  readonly heartbeatMs?: number
  /** A client that falls this far behind is disconnected rather than buffered without bound. */
  readonly maxBufferedBytes?: number
}

export interface SubscriptionOptions extends StreamLimits {
  readonly hub: PubSubHub
  readonly pattern: boolean
  readonly names: readonly string[]
  /** Headers of the response, besides the event-stream ones. */
  readonly headers: Record<string, string>
  readonly logger: Logger
}

export interface MonitorOptions extends StreamLimits {
  /** Makes the stream's own MONITOR connection (not started). */
  readonly connect: (sink: MonitorSink) => MonitorConnection
  readonly headers: Record<string, string>
  readonly logger: Logger
}

/**
 * MONITOR streams open at once per gateway, set-up included (README "MONITOR"): each holds a Redis
 * connection of its own, and Redis formats every command for every monitor.
 */
export const MAX_MONITOR_STREAMS = 8

/**
 * One SSE event: `data: ` and the parts joined by commas, always on one line. The SDK reads every
 * `data:` line as a message of its own (it does not join continuation lines as EventSource does),
 * so a payload split over several `data:` lines reaches it cut at the first line break, and the
 * lines after it are parsed as events: a published `x\nmessage,other,forged` would be a message
 * on `other`. A part with a line break is therefore made one line (see oneLine).
 */
function event(parts: readonly string[]): string {
  let text = parts[0]!
  for (let i = 1; i < parts.length; i++) text += `,${oneLine(parts[i]!)}`
  return `data: ${text}\n\n`
}

const LINE_BREAK = /[\r\n]/
const LINE_BREAKS = /[\r\n]/g

/**
 * A part without CR or LF as it is (the usual case, Upstash's format). With them: valid JSON text
 * (a pretty-printed object) can hold them only as whitespace between tokens, so they become spaces
 * and the SDK's JSON.parse gives the same value; any other text is sent as a JSON string literal,
 * which the SDK's JSON.parse turns back into the exact text (`"line 1\nline 2"`).
 */
function oneLine(s: string): string {
  if (!LINE_BREAK.test(s)) return s
  try {
    JSON.parse(s)
    return s.replace(LINE_BREAKS, ' ')
  } catch {
    return JSON.stringify(s)
  }
}

/**
 * The event streams of one gateway: the open ones (a draining gateway ends them, and its shutdown
 * log counts them) and the MONITOR streams against their limit. Each gateway has its own, so two
 * gateways in one process neither count nor end each other's streams.
 */
export class EventStreams {
  private readonly open = new Set<EventStream>()
  private monitors = 0
  /** Why every stream ends once the gateway began draining; streams still being set up end as they open. */
  private closing: string | null = null

  /** Told when a stream is ended for a client too slow to read it (metrics count it). */
  onSlowClient: () => void = () => {}

  constructor(readonly maxMonitors: number = MAX_MONITOR_STREAMS) {}

  /** Streams attached to a response and not ended. */
  get count(): number {
    return this.open.size
  }

  /** MONITOR streams open or being set up. */
  get monitorCount(): number {
    return this.monitors
  }

  /** Ends every stream cleanly (final events, then the end of the response), and any opened later at once. */
  endAll(reason: string): void {
    this.closing = reason
    for (const s of [...this.open]) s.end(reason, true)
  }

  /**
   * A SUBSCRIBE or PSUBSCRIBE stream, subscribed before it is returned so a failure is still a
   * normal JSON error reply; messages that arrive before it is attached are kept for it.
   */
  async subscribe(o: SubscriptionOptions): Promise<EventStream> {
    let unsubscribe: (() => void) | null = null
    const un = o.pattern ? 'punsubscribe' : 'unsubscribe'
    const kind = o.pattern ? 'psubscribe' : 'subscribe'
    const stream = new EventStream(this, o, 'sse stream', o.names.map((n, i) => event([kind, n, String(i + 1)])), {
      farewell: () => o.names.map((n, i) => event([un, n, String(o.names.length - 1 - i)])),
      cleanup: () => unsubscribe?.(),
    })
    const sink: SubscriptionSink = {
      message(pattern, channel, payload) {
        stream.write(
          pattern === null
            ? event(['message', channel.toString('utf8'), payload.toString('utf8')])
            : event(['pmessage', pattern.toString('utf8'), channel.toString('utf8'), payload.toString('utf8')]),
        )
      },
      close(reason) {
        stream.end(reason, true)
      },
    }
    unsubscribe = await o.hub.subscribe(
      o.pattern ? 'pattern' : 'channel',
      o.names.map((n) => Buffer.from(n, 'utf8')),
      sink,
    )
    // Ended while subscribing (the feed closed): undo the subscription that just arrived.
    if (stream.ended) unsubscribe()
    return stream
  }

  /**
   * A MONITOR feed: `data: <line>` per command Redis runs, in Redis's own format
   * (`1700000000.123456 [0 127.0.0.1:50000] "set" "k" "v"`: arguments quoted and escaped by Redis,
   * so a line never holds a raw line break). Throws OverloadedError beyond `maxMonitors`, and
   * NoEndpointError when Redis does not confirm MONITOR; otherwise the stream runs until the client
   * leaves, the gateway ends it (shutdown, client more than maxBufferedBytes behind), or the Redis
   * connection is lost; its connection is then closed.
   */
  async monitor(o: MonitorOptions): Promise<EventStream> {
    if (this.monitors >= this.maxMonitors) {
      throw new OverloadedError(`at most ${this.maxMonitors} MONITOR streams may be open at once on a gateway`, { retryAfterS: 1 })
    }
    this.monitors++
    let counted = true
    const release = (): void => {
      if (counted) this.monitors--
      counted = false
    }
    let monitor: MonitorConnection | null = null
    const stream = new EventStream(this, o, 'monitor stream', ['data: OK\n\n'], {
      farewell: () => [],
      cleanup: () => {
        monitor?.stop()
        release()
      },
    })
    monitor = o.connect({
      line(text) {
        stream.write(`data: ${text.replace(LINE_BREAKS, ' ')}\n\n`)
      },
      close(reason) {
        stream.end(reason, true)
      },
    })
    try {
      await monitor.start()
    } catch (err) {
      stream.discard()
      release()
      throw new NoEndpointError(`cannot monitor: ${(err as Error).message}`, { retryAfterS: 1 })
    }
    return stream
  }

  /** A stream was attached to its response (EventStream.attach); it ends at once if the gateway is draining. */
  track(s: EventStream): void {
    this.open.add(s)
    if (this.closing !== null) s.end(this.closing, true)
  }

  /** A stream ended (EventStream.end). */
  untrack(s: EventStream): void {
    this.open.delete(s)
  }
}

interface Feed {
  /** Events that tell the client the stream ends (unsubscribe confirmations). */
  readonly farewell: () => readonly string[]
  /** Undoes the feed's set-up: unsubscribe, close the connection. */
  readonly cleanup: () => void
}

/**
 * One stream, whatever feeds it: events that arrive before it is attached to a response are kept
 * and sent right after its first events; a client more than `maxBufferedBytes` behind is cut off;
 * heartbeats; and ending once, for whatever reason (client gone, gateway draining, feed closed),
 * with a comment and the feed's farewell events when the client is told, then the feed's cleanup.
 */
export class EventStream {
  private done = false
  private reason = ''
  private notify = false
  private out: StreamOutput | null = null
  private readonly early: string[] = []
  private heartbeat: NodeJS.Timeout | null = null

  constructor(
    private readonly streams: EventStreams,
    private readonly o: StreamLimits & { readonly headers: Record<string, string>; readonly logger: Logger },
    /** For the log line when it ends. */
    private readonly what: string,
    /** Sent first, once attached (subscribe confirmations, MONITOR's OK). */
    private readonly first: readonly string[],
    private readonly feed: Feed,
  ) {}

  get ended(): boolean {
    return this.done
  }

  write(s: string): void {
    if (this.done) return
    const out = this.out
    if (out === null) {
      this.early.push(s)
      return
    }
    out.write(s)
    if (out.backlog > (this.o.maxBufferedBytes ?? 1 << 20)) {
      this.end('client too slow', true)
      this.streams.onSlowClient()
    }
  }

  end(reason: string, notify: boolean): void {
    if (this.done) return
    this.done = true
    this.reason = reason
    this.notify = notify
    this.streams.untrack(this)
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.feed.cleanup()
    this.o.logger.debug({ reason }, `${this.what} ended`)
    // Not attached yet: attach() tells the client.
    if (this.out !== null) this.close(this.out)
  }

  /** Ended without cleanup: the feed could not be set up (its caller undoes what it did). */
  discard(): void {
    this.done = true
  }

  /**
   * Serves the stream on `out`: the headers, the first events, then what arrived meanwhile. A
   * client that left while the feed was being set up ends it instead; a feed that ended meanwhile
   * is told to the client, which then sees the stream end.
   */
  attach(out: StreamOutput): void {
    if (out.gone) {
      this.end('client gone before the stream opened', false)
      return
    }
    this.out = out
    out.start({
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      // A stream ends only when the client leaves or the gateway ends it (shutdown, endpoint gone,
      // client too slow); then the connection goes too, so the client reconnects, possibly to
      // another replica, instead of reusing a connection the gateway is about to close.
      connection: 'close',
      'x-accel-buffering': 'no',
      ...this.o.headers,
    })
    for (const s of this.first) out.write(s)
    if (this.done) {
      this.close(out)
      return
    }
    out.onClose(() => this.end('client disconnected', false))
    for (const s of this.early.splice(0)) this.write(s)
    if (this.done) return
    this.heartbeat = setInterval(() => this.write(': ping\n\n'), this.o.heartbeatMs ?? 15_000)
    this.heartbeat.unref()
    this.streams.track(this)
  }

  private close(out: StreamOutput): void {
    if (out.gone) return
    if (this.notify) {
      // Not through write(), which would end the stream again for a client that is behind.
      out.write(`: ${this.reason.replace(/[\r\n]+/g, ' ')}\n\n`)
      for (const s of this.feed.farewell()) out.write(s)
    }
    out.end()
  }
}
