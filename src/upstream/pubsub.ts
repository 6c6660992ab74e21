// One subscriber connection per endpoint, shared by every SSE stream that reads from it.
// Channels and patterns are reference-counted: Redis is subscribed while at least one stream
// wants a name and unsubscribed when the last one leaves, so nothing stays subscribed after
// clients disconnect.

import { Redis } from 'ioredis'
import type { EndpointSpec } from '../discovery/topology.js'
import { NoEndpointError } from '../errors.js'
import { clientOptions, type UpstreamOptions } from './endpoint-client.js'

export type SubscriptionKind = 'channel' | 'pattern'

export interface SubscriptionSink {
  /** pattern is null for plain channel messages. */
  message(pattern: Buffer | null, channel: Buffer, payload: Buffer): void
  /** The hub is going away (endpoint removed, gateway stopping): end the stream. */
  close(reason: string): void
}

export class PubSubHub {
  private redis: Redis | null = null
  private readonly channels = new Map<string, Set<SubscriptionSink>>()
  private readonly patterns = new Map<string, Set<SubscriptionSink>>()
  /** SUBSCRIBE/PSUBSCRIBE still waiting for Redis, by kind and name: later joiners wait for it too. */
  private readonly pending = new Map<string, Promise<unknown>>()
  private stopped = false

  constructor(
    private readonly spec: EndpointSpec,
    private readonly opts: UpstreamOptions,
  ) {}

  /** Number of distinct channels and patterns currently subscribed in Redis. */
  get size(): { channels: number; patterns: number; connected: boolean } {
    return { channels: this.channels.size, patterns: this.patterns.size, connected: this.redis?.status === 'ready' }
  }

  private connection(): Redis {
    if (this.redis) return this.redis
    const r = new Redis(
      clientOptions(this.spec, this.opts, {
        // Subscribe/unsubscribe must reach Redis in the order the gateway issues them.
        enableAutoPipelining: false,
        // Queue the first SUBSCRIBE until connected; maxRetriesPerRequest 0 still fails it fast
        // when the endpoint cannot be reached.
        enableOfflineQueue: true,
        autoResubscribe: true,
        // ioredis's ready check (INFO) may still be in flight when the first SUBSCRIBE is let
        // through; the connection is then in subscriber mode and the queued INFO and SUBSCRIBEs
        // fail. A subscriber connection needs no ready check.
        enableReadyCheck: false,
      }),
    )
    r.on('error', () => {})
    r.on('messageBuffer', (channel: Buffer, payload: Buffer) => {
      const sinks = this.channels.get(channel.toString('latin1'))
      if (sinks) for (const s of sinks) s.message(null, channel, payload)
    })
    r.on('pmessageBuffer', (pattern: Buffer, channel: Buffer, payload: Buffer) => {
      const sinks = this.patterns.get(pattern.toString('latin1'))
      if (sinks) for (const s of sinks) s.message(pattern, channel, payload)
    })
    r.connect().catch(() => {})
    this.redis = r
    return r
  }

  /**
   * Adds a sink for the given names. Resolves once Redis confirmed every new subscription;
   * returns the function that removes the sink again (idempotent).
   */
  async subscribe(kind: SubscriptionKind, names: readonly Buffer[], sink: SubscriptionSink): Promise<() => void> {
    if (this.stopped) throw new NoEndpointError(`endpoint ${this.spec.id} is shutting down`, { retryAfterS: 1 })
    const table = kind === 'channel' ? this.channels : this.patterns
    const fresh: Buffer[] = []
    const freshKeys: string[] = []
    const waits: Promise<unknown>[] = []
    const keys = names.map((n) => n.toString('latin1'))
    keys.forEach((k, i) => {
      let set = table.get(k)
      if (!set) {
        set = new Set()
        table.set(k, set)
        fresh.push(names[i]!)
        freshKeys.push(`${kind}:${k}`)
      } else {
        // Someone else's SUBSCRIBE for this name may not be confirmed yet: share its outcome.
        const p = this.pending.get(`${kind}:${k}`)
        if (p) waits.push(p)
      }
      set.add(sink)
    })
    let removed = false
    const unsubscribe = (): void => {
      if (removed) return
      removed = true
      const gone: Buffer[] = []
      keys.forEach((k, i) => {
        const set = table.get(k)
        if (!set) return
        set.delete(sink)
        if (set.size === 0) {
          table.delete(k)
          gone.push(names[i]!)
        }
      })
      if (this.channels.size === 0 && this.patterns.size === 0 && this.redis) {
        // Nothing is wanted any more: close the subscriber connection (which also ends every
        // subscription in Redis); the next subscribe opens a new one.
        this.redis.disconnect(false)
        this.redis = null
      } else if (gone.length > 0 && this.redis && !this.stopped) {
        // ioredis's types say string, but it writes Buffers as they are (binary-safe names).
        const names = gone as unknown as string[]
        const p = kind === 'channel' ? this.redis.unsubscribe(...names) : this.redis.punsubscribe(...names)
        p.catch(() => {})
      }
    }
    if (fresh.length > 0) {
      const r = this.connection()
      const asStrings = fresh as unknown as string[]
      const p = kind === 'channel' ? r.subscribe(...asStrings) : r.psubscribe(...asStrings)
      for (const k of freshKeys) this.pending.set(k, p)
      p.finally(() => {
        for (const k of freshKeys) if (this.pending.get(k) === p) this.pending.delete(k)
      }).catch(() => {})
      waits.push(p)
    }
    try {
      await Promise.all(waits)
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
    for (const set of this.channels.values()) for (const s of set) sinks.add(s)
    for (const set of this.patterns.values()) for (const s of set) sinks.add(s)
    this.channels.clear()
    this.patterns.clear()
    for (const s of sinks) s.close(reason)
    this.redis?.disconnect(false)
    this.redis = null
  }
}
