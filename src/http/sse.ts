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

export async function openSseStream(o: SseOptions): Promise<void> {
  const out = o.outgoing
  const maxBuffered = o.maxBufferedBytes ?? 1 << 20
  let ended = false
  let started = false
  const early: string[] = []
  const write = (s: string): void => {
    if (ended) return
    if (!started) {
      early.push(s)
      return
    }
    out.write(s)
    if (out.writableLength > maxBuffered) stream.end('client too slow', true)
  }
  const sink: SubscriptionSink = {
    message(pattern, channel, payload) {
      write(
        pattern === null
          ? event(['message', channel.toString('utf8'), payload.toString('utf8')])
          : event(['pmessage', pattern.toString('utf8'), channel.toString('utf8'), payload.toString('utf8')]),
      )
    },
    close(reason) {
      stream.end(reason, true)
    },
  }
  let unsubscribe: (() => void) | null = null
  let heartbeat: NodeJS.Timeout | null = null
  const kind = o.pattern ? 'psubscribe' : 'subscribe'
  const stream: Stream = {
    end(reason: string, notify: boolean): void {
      if (ended) return
      if (started && notify && !out.writableEnded && !out.destroyed) {
        // Not through write(), which would end the stream again for a client that is behind.
        out.write(`: ${reason.replace(/[\r\n]+/g, ' ')}\n\n`)
        const un = o.pattern ? 'punsubscribe' : 'unsubscribe'
        o.names.forEach((n, i) => out.write(event([un, n, String(o.names.length - 1 - i)])))
      }
      ended = true
      streams.delete(out)
      if (heartbeat) clearInterval(heartbeat)
      unsubscribe?.()
      o.logger.debug({ reason }, 'sse stream ended')
      if (started && !out.writableEnded) out.end()
    },
  }
  // Watch for the client leaving from the start: a close that happens while Redis confirms the
  // subscription must still remove it.
  let gone = false
  out.on('close', () => {
    gone = true
    stream.end('client disconnected', false)
  })
  // Subscribe before answering, so a failure is still a normal JSON error reply.
  unsubscribe = await o.hub.subscribe(
    o.pattern ? 'pattern' : 'channel',
    o.names.map((n) => Buffer.from(n, 'utf8')),
    sink,
  )
  if (gone || ended || out.destroyed || out.headersSent || out.socket === null || out.socket.destroyed) {
    // end() may already have run while `unsubscribe` was not known yet: run it again, now with it.
    ended = false
    stream.end('client gone before the stream opened', false)
    return
  }
  streams.set(out, stream)
  out.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    // A stream ends only when the client leaves or the gateway ends it (shutdown, endpoint gone,
    // client too slow); then the connection goes too, so the client reconnects, possibly to
    // another replica, instead of reusing a connection the gateway is about to close.
    connection: 'close',
    'x-accel-buffering': 'no',
    ...o.headers,
  })
  started = true
  o.names.forEach((n, i) => out.write(event([kind, n, String(i + 1)])))
  for (const s of early.splice(0)) write(s)
  heartbeat = setInterval(() => write(': ping\n\n'), o.heartbeatMs ?? 15_000)
  heartbeat.unref()
  const pendingEnd = ending.get(out)
  if (pendingEnd !== undefined) stream.end(pendingEnd, true)
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
  const out = o.outgoing
  const maxBuffered = o.maxBufferedBytes ?? 1 << 20
  let ended = false
  let started = false
  let counted = true
  const release = (): void => {
    if (counted) monitorStreams--
    counted = false
  }
  const early: string[] = []
  const write = (s: string): void => {
    if (ended) return
    if (!started) {
      early.push(s)
      return
    }
    out.write(s)
    if (out.writableLength > maxBuffered) stream.end('client too slow', true)
  }
  const monitor = o.connect({
    line(text) {
      write(`data: ${text.replace(LINE_BREAKS, ' ')}\n\n`)
    },
    close(reason) {
      stream.end(reason, true)
    },
  })
  let heartbeat: NodeJS.Timeout | null = null
  const stream: Stream = {
    end(reason: string, notify: boolean): void {
      if (ended) return
      if (started && notify && !out.writableEnded && !out.destroyed) out.write(`: ${reason.replace(LINE_BREAKS, ' ')}\n\n`)
      ended = true
      streams.delete(out)
      if (heartbeat) clearInterval(heartbeat)
      monitor.stop()
      release()
      o.logger.debug({ reason }, 'monitor stream ended')
      if (started && !out.writableEnded) out.end()
    },
  }
  let gone = false
  out.on('close', () => {
    gone = true
    stream.end('client disconnected', false)
  })
  try {
    await monitor.start()
  } catch (err) {
    ended = true
    release()
    throw new NoEndpointError(`cannot monitor: ${(err as Error).message}`, { retryAfterS: 1 })
  }
  if (gone || ended || out.destroyed || out.headersSent || out.socket === null || out.socket.destroyed) {
    ended = false
    stream.end('client gone before the stream opened', false)
    return
  }
  streams.set(out, stream)
  out.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'close',
    'x-accel-buffering': 'no',
    ...o.headers,
  })
  started = true
  out.write('data: OK\n\n')
  for (const s of early.splice(0)) write(s)
  heartbeat = setInterval(() => write(': ping\n\n'), o.heartbeatMs ?? 15_000)
  heartbeat.unref()
  const pendingEnd = ending.get(out)
  if (pendingEnd !== undefined) stream.end(pendingEnd, true)
}
