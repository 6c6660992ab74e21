// Graceful shutdown (README, "Graceful shutdown"), in order: not ready but still serving for the
// delay (load balancers take the gateway out meanwhile); then the data listener drains (drain.ts:
// responses on kept-alive connections carry `Connection: close`, idle connections close after the
// keep-alive timeout, in-flight requests get at most the timeout) and event streams end with their
// final events; then health checks, discovery and the config watch stop, Redis connections close,
// and the ops listener, which answers probes and scrapes until then, closes last. Each step is
// logged. A second signal hurries it (hurry()).

import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { ConnectionTracker } from './drain.js'
import type { Lifecycle } from './lifecycle.js'
import type { EventStreams } from './sse.js'

/** Overrides of the configured shutdown for one stop (an embedder with bounds of its own). */
export interface StopOptions {
  /** Not ready but still serving this long before the data listener closes; default `shutdown.delay`. */
  readonly delayMs?: number
  /** In-flight requests get at most this long once the listener is closed; default `shutdown.timeout`. */
  readonly timeoutMs?: number
  /** Idle connections close once idle this long; default the data listener's keep-alive timeout (see drain.ts). */
  readonly idleCloseMs?: number
}

/** A listener as the shutdown drains it. */
export interface DrainableListener {
  readonly tracker: ConnectionTracker
  /** The keep-alive timeout its replies advertise. */
  readonly keepAliveTimeout: number
}

export interface ShutdownDeps {
  readonly logger: Logger
  readonly lifecycle: Lifecycle
  readonly streams: EventStreams
  /** `shutdown.delayMs` and `timeoutMs`, read when the stop begins: they apply live from the watched config file. */
  settings(): { readonly delayMs: number; readonly timeoutMs: number }
  /** The listeners; null for one that never listened. */
  data(): DrainableListener | null
  ops(): DrainableListener | null
  /** Stops health checks, discovery and the config watch. */
  stopBackground(): Promise<void>
  /** Closes the Redis connections. */
  stopRedis(): Promise<void>
  /** Endpoints with Redis connections, for the log. */
  redisEndpoints(): number
}

/** Bound for the ops listener's last requests at the very end of a shutdown: probes and scrapes are short. */
const OPS_CLOSE_MS = 1_000

export class Shutdown {
  private running: Promise<void> | null = null
  /** Ends the delay early; set only while the delay runs. */
  private endDelay: (() => void) | null = null
  /** The data connections being drained; set only during the drain. */
  private draining: ConnectionTracker | null = null

  constructor(private readonly deps: ShutdownDeps) {}

  /** Runs the shutdown once; calling it again returns the same promise. */
  stop(opts: StopOptions = {}): Promise<void> {
    this.running ??= this.run(opts)
    return this.running
  }

  /**
   * An operator's second SIGTERM/SIGINT: ends the delay at once or, during the drain, closes idle
   * connections at once (in-flight requests still get up to the timeout).
   */
  hurry(): 'delay skipped' | 'idle connections closed' | 'nothing to hurry' {
    if (this.endDelay) {
      this.endDelay()
      return 'delay skipped'
    }
    if (this.draining) {
      this.draining.closeIdleNow()
      return 'idle connections closed'
    }
    return 'nothing to hurry'
  }

  private async run(opts: StopOptions): Promise<void> {
    const d = this.deps
    const log = d.logger
    const started = performance.now()
    const elapsedMs = (): number => Math.round(performance.now() - started)
    const settings = d.settings()
    const delayMs = opts.delayMs ?? settings.delayMs
    const timeoutMs = opts.timeoutMs ?? settings.timeoutMs
    const data = d.data()
    const idleCloseMs = opts.idleCloseMs ?? data?.keepAliveTimeout ?? 5_000
    d.lifecycle.stopBegins()
    if (delayMs > 0) {
      log.info({ phase: 'delay', delayMs, inflight: data?.tracker.inflight ?? 0 }, 'shutdown: not ready; serving while endpoints update')
      if (await this.delay(delayMs)) log.info({ phase: 'delay', elapsedMs: elapsedMs() }, 'shutdown: delay cut short by a second signal')
    }
    if (data) {
      const tracker = data.tracker
      this.draining = tracker
      log.info(
        { phase: 'drain', timeoutMs, idleCloseMs, inflight: tracker.inflight, connections: tracker.connections, streams: d.streams.count },
        'shutdown: stopped accepting; draining in-flight requests',
      )
      const drained = tracker.drain({ idleCloseMs, timeoutMs })
      // After the listener closed (clients that reconnect go elsewhere); streams set up later end as they open.
      d.streams.endAll('gateway shutting down')
      const r = await drained
      this.draining = null
      if (r.cut > 0) log.warn({ phase: 'drain', ...r }, `shutdown: ${r.cut} request(s) still in flight after shutdown.timeout were cut`)
      else log.info({ phase: 'drain', ...r }, 'shutdown: in-flight requests done; data connections closed')
    }
    await d.stopBackground()
    log.info({ phase: 'discovery' }, 'shutdown: health checks, discovery and config watch stopped')
    const endpoints = d.redisEndpoints()
    await d.stopRedis()
    log.info({ phase: 'redis', endpoints }, 'shutdown: Redis connections closed')
    await d.ops()?.tracker.drain({ idleCloseMs: 0, timeoutMs: Math.min(timeoutMs, OPS_CLOSE_MS) })
    log.info({ phase: 'done', elapsedMs: elapsedMs() }, 'shutdown complete')
  }

  /** Waits `ms`; true when a second signal cut it short. */
  private delay(ms: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.endDelay = null
        resolve(false)
      }, ms)
      this.endDelay = () => {
        clearTimeout(timer)
        this.endDelay = null
        resolve(true)
      }
    })
  }
}
