// Server-Sent Events for SUBSCRIBE / PSUBSCRIBE, in the Upstash format:
//   data: subscribe,<channel>,<count>    data: message,<channel>,<payload>
//   data: pmessage,<pattern>,<channel>,<payload>
// Written straight to the Node response so each event is flushed as it happens. The Redis side
// is a shared, reference-counted subscriber connection (PubSubHub); the stream's sink is removed
// when the client goes away, and Redis is unsubscribed when no stream wants the name any more.

import type { ServerResponse } from 'node:http'
import type { Logger } from 'pino'
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

/** Open SSE streams, so shutdown can end them cleanly. */
export const openStreams = new Set<{ end(reason: string): void }>()

/**
 * SSE `data:` field for one event. Payloads are UTF-8 text; a line break inside a payload
 * starts a new `data:` line, as the SSE format requires (EventSource clients rejoin them with \n).
 */
function event(parts: readonly string[]): string {
  const text = parts.join(',')
  if (!/[\r\n]/.test(text)) return `data: ${text}\n\n`
  return `${text
    .split(/\r\n|\r|\n/)
    .map((l) => `data: ${l}`)
    .join('\n')}\n\n`
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
    if (out.writableLength > maxBuffered) stream.end('client too slow')
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
      stream.end(reason)
    },
  }
  let unsubscribe: (() => void) | null = null
  let heartbeat: NodeJS.Timeout | null = null
  const stream = {
    end(reason: string): void {
      if (ended) return
      ended = true
      openStreams.delete(stream)
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
    stream.end('client disconnected')
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
    stream.end('client gone before the stream opened')
    return
  }
  openStreams.add(stream)
  out.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    ...o.headers,
  })
  started = true
  const kind = o.pattern ? 'psubscribe' : 'subscribe'
  o.names.forEach((n, i) => out.write(event([kind, n, String(i + 1)])))
  for (const s of early.splice(0)) write(s)
  heartbeat = setInterval(() => write(': ping\n\n'), o.heartbeatMs ?? 15_000)
  heartbeat.unref()
}
