// Server-Sent Events for SUBSCRIBE / PSUBSCRIBE, in the Upstash format:
//   data: subscribe,<channel>,<count>    data: message,<channel>,<payload>
//   data: pmessage,<pattern>,<channel>,<payload>
// each event on one `data:` line, also when a payload has line breaks (see event()).
// Written straight to the Node response so each event is flushed as it happens. The Redis side
// is a shared, reference-counted subscriber connection (PubSubHub); the stream's sink is removed
// when the client goes away, and Redis is unsubscribed when no stream wants the name any more.
// When the gateway ends a stream (shutdown, endpoint removed, client too slow) it first says so:
//   : <reason>                           a comment, for people reading the stream
//   data: unsubscribe,<channel>,<count>  (punsubscribe for patterns) one per name, as Redis
//                                        confirms an unsubscribe; the SDK reports it as 'unsubscribe'
// and then ends the response, so the client sees a clean end of stream, never a reset.
// MONITOR streams (openMonitorStream, admin tokens) use the same framing and limits on a Redis
// connection of their own (upstream/monitor.ts): `data: OK`, then `data: <line>` per command.

// The global Buffer is a getter on Node 20 (~140 instructions per use): import the binding.
import { Buffer } from 'node:buffer'
import type { ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { NoEndpointError, OverloadedError } from '../errors.js'
import type { MonitorConnection, MonitorSink } from '../upstream/monitor.js'
import type { PubSubHub, SubscriptionSink } from '../upstream/pubsub.js'

export interface SseOptions {
  readonly hub: PubSubHub
  readonly pattern: boolean
  readonly names: readonly string[]
  readonly outgoing: ServerResponse
  readonly headers: Record<string, string>
  readonly logger: Logger
  /** Comment line sent this often so idle streams survive proxies; default 15 s. */
  readonly heartbeatMs?: number
  /** A client that falls this far behind is disconnected rather than buffered without bound. */
  readonly maxBufferedBytes?: number
}

interface Stream {
  end(reason: string, notify: boolean): void
}

/** Open SSE streams by the response they write to, so a draining server can end its own. */
const streams = new Map<ServerResponse, Stream>()
/** Responses whose stream must end as soon as it opens (the server began draining meanwhile). */
const ending = new WeakMap<ServerResponse, string>()

/** Number of open SSE streams in this process. */
export function openStreamCount(): number {
  return streams.size
}

/**
 * Ends the SSE stream answering `res` cleanly (final events, then the end of the response); a
 * stream still being set up for `res` ends as soon as it opens. Nothing happens for other responses.
 */
export function endSseStream(res: ServerResponse, reason: string): void {
  const s = streams.get(res)
  if (s) s.end(reason, true)
  else ending.set(res, reason)
}

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
 * What every stream does alike, whatever feeds it: events that arrive before the response opens
 * are kept and sent right after its first events; a client more than `maxBufferedBytes` behind is
 * cut off; heartbeats; and ending once, for whatever reason (client gone, gateway draining, feed
 * closed), with a comment and the feed's `farewell` events when the client is told, then `cleanup`
 * (the feed's own: unsubscribe, close the connection).
 */
class EventStream implements Stream {
  private ended = false
  private started = false
  private gone = false
  private readonly early: string[] = []
  private heartbeat: NodeJS.Timeout | null = null

  constructor(
    private readonly out: ServerResponse,
    private readonly o: { readonly headers: Record<string, string>; readonly logger: Logger; readonly heartbeatMs?: number; readonly maxBufferedBytes?: number },
    /** For the log line when it ends. */
    private readonly what: string,
    private readonly farewell: () => readonly string[],
    private readonly cleanup: () => void,
  ) {
    // Watch for the client leaving from the start: a close that happens while the feed is being
    // set up must still end it.
    out.on('close', () => {
      this.gone = true
      this.end('client disconnected', false)
    })
  }

  write(s: string): void {
    if (this.ended) return
    if (!this.started) {
      this.early.push(s)
      return
    }
    this.out.write(s)
    if (this.out.writableLength > (this.o.maxBufferedBytes ?? 1 << 20)) this.end('client too slow', true)
  }

  end(reason: string, notify: boolean): void {
    if (this.ended) return
    const out = this.out
    if (this.started && notify && !out.writableEnded && !out.destroyed) {
      // Not through write(), which would end the stream again for a client that is behind.
      out.write(`: ${reason.replace(/[\r\n]+/g, ' ')}\n\n`)
      for (const s of this.farewell()) out.write(s)
    }
    this.ended = true
    streams.delete(out)
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.cleanup()
    this.o.logger.debug({ reason }, `${this.what} ended`)
    if (this.started && !out.writableEnded) out.end()
  }

  /** Ended without cleanup: the feed could not be set up (its caller undoes what it did). */
  discard(): void {
    this.ended = true
  }

  /**
   * The feed is set up: sends the headers, `first`, then what arrived meanwhile. If the client left
   * (or the stream ended) while the feed was being set up, ends it again instead, now that the
   * feed's cleanup has everything to undo.
   */
  open(first: readonly string[]): void {
    const out = this.out
    if (this.gone || this.ended || out.destroyed || out.headersSent || out.socket === null || out.socket.destroyed) {
      this.ended = false
      this.end('client gone before the stream opened', false)
      return
    }
    streams.set(out, this)
    out.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      // A stream ends only when the client leaves or the gateway ends it (shutdown, endpoint gone,
      // client too slow); then the connection goes too, so the client reconnects, possibly to
      // another replica, instead of reusing a connection the gateway is about to close.
      connection: 'close',
      'x-accel-buffering': 'no',
      ...this.o.headers,
    })
    this.started = true
    for (const s of first) out.write(s)
    for (const s of this.early.splice(0)) this.write(s)
    this.heartbeat = setInterval(() => this.write(': ping\n\n'), this.o.heartbeatMs ?? 15_000)
    this.heartbeat.unref()
    const pendingEnd = ending.get(out)
    if (pendingEnd !== undefined) this.end(pendingEnd, true)
  }
}

export async function openSseStream(o: SseOptions): Promise<void> {
  let unsubscribe: (() => void) | null = null
  const un = o.pattern ? 'punsubscribe' : 'unsubscribe'
  const stream = new EventStream(
    o.outgoing,
    o,
    'sse stream',
    () => o.names.map((n, i) => event([un, n, String(o.names.length - 1 - i)])),
    () => unsubscribe?.(),
  )
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
  // Subscribe before answering, so a failure is still a normal JSON error reply.
  unsubscribe = await o.hub.subscribe(
    o.pattern ? 'pattern' : 'channel',
    o.names.map((n) => Buffer.from(n, 'utf8')),
    sink,
  )
  const kind = o.pattern ? 'psubscribe' : 'subscribe'
  stream.open(o.names.map((n, i) => event([kind, n, String(i + 1)])))
}

/**
 * MONITOR streams open at once per gateway process, set-up included (README "MONITOR"): each holds
 * a Redis connection of its own, and Redis formats every command for every monitor.
 */
export const MAX_MONITOR_STREAMS = 8

let monitorStreams = 0

/** Number of MONITOR streams open or being set up in this process. */
export function monitorStreamCount(): number {
  return monitorStreams
}

export interface MonitorSseOptions {
  /** Makes the stream's own MONITOR connection (not started). */
  readonly connect: (sink: MonitorSink) => MonitorConnection
  readonly outgoing: ServerResponse
  readonly headers: Record<string, string>
  readonly logger: Logger
  readonly heartbeatMs?: number
  readonly maxBufferedBytes?: number
}

/**
 * A MONITOR feed as Server-Sent Events: `data: <line>` per command Redis runs, in Redis's own
 * format (`1700000000.123456 [0 127.0.0.1:50000] "set" "k" "v"`: arguments quoted and escaped by
 * Redis, so a line never holds a raw line break). Throws OverloadedError beyond
 * MAX_MONITOR_STREAMS, and NoEndpointError when Redis does not confirm MONITOR; otherwise the
 * stream runs until the client leaves, the gateway ends it (shutdown, client more than
 * maxBufferedBytes behind), or the Redis connection is lost; its connection is then closed.
 */
export async function openMonitorStream(o: MonitorSseOptions): Promise<void> {
  if (monitorStreams >= MAX_MONITOR_STREAMS) {
    throw new OverloadedError(`at most ${MAX_MONITOR_STREAMS} MONITOR streams may be open at once on a gateway`, { retryAfterS: 1 })
  }
  monitorStreams++
  let counted = true
  const release = (): void => {
    if (counted) monitorStreams--
    counted = false
  }
  let monitor: MonitorConnection | null = null
  const stream = new EventStream(
    o.outgoing,
    o,
    'monitor stream',
    () => [],
    () => {
      monitor?.stop()
      release()
    },
  )
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
  stream.open(['data: OK\n\n'])
}
