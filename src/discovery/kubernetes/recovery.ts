// Recovery after an API server outage, shared by every list and watch of one source. Each watch
// backs off on its own (list-watch.ts: capped exponential, full jitter, up to 30 s), which is right
// for an error that persists (an RBAC 403 on one namespace must not be retried every second) but
// wrong after an outage: by the time the API server is back, every watch may be asleep for up to
// 30 s. So the source tells this object what its lists and watches see, and it keeps one state:
//
//   up         lists and watches work (or fail with HTTP answers: that is their own business)
//   down       a list or watch got no HTTP answer at all (refused, reset, timed out): the API server
//              is unreachable. A cheap probe (GET /readyz) runs until it answers, jittered, first
//              after 0.25-0.5 s, then every 0.5-1 s, then every 1-2 s; each watch keeps its own
//              backoff meanwhile.
//   answering  the API server answers again (the probe got 200, or 401/403/404, which say nothing
//              about readiness; or a list or watch got any HTTP status) but no list or watch has
//              succeeded yet, e.g. 403s while its authorizer starts.
//
// Leaving `down` and leaving `answering` each reset every watch's failure count and wake those
// asleep in backoff: they retry at once, and a failure then backs off from the start (250 ms)
// instead of from where the outage left it. A persistent 403 therefore costs at most two extra
// requests per outage and otherwise backs off as before; a probe answered with 5xx or 429 (starting,
// overloaded) wakes nobody. Pure state and timers: the probe, sleep and random are injected.

export type ApiState = 'up' | 'down' | 'answering'

/** Something that backs off: start over from no failures, and retry now if asleep. */
export interface BackoffMember {
  resetBackoff(): void
}

export interface ApiRecoveryOptions {
  /** GET /readyz: resolves to the HTTP status; rejects when there is no answer. */
  readonly probe: (signal: AbortSignal) => Promise<number>
  /** First probe interval; it doubles up to probeMaxMs, each one jittered down to half. */
  readonly probeBaseMs?: number
  readonly probeMaxMs?: number
  /** One probe's deadline. */
  readonly probeTimeoutMs?: number
  readonly random?: () => number
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  /** State changes, for tests and logs. */
  readonly onState?: (state: ApiState, why: string) => void
}

export const API_RECOVERY_DEFAULTS = { probeBaseMs: 500, probeMaxMs: 2_000, probeTimeoutMs: 2_000 } as const

/** Probe answers that end `down`: ready, or an answer that cannot tell (no right to see /readyz, no /readyz). */
function answersProbe(status: number): boolean {
  return status === 200 || status === 401 || status === 403 || status === 404
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    // The listener goes away with the timer: a long outage must not pile up abort listeners.
    const onAbort = (): void => {
      clearTimeout(t)
      resolve()
    }
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

export class ApiRecovery {
  private current: ApiState = 'up'
  private readonly members = new Set<BackoffMember>()
  private running = false
  private stopping = new AbortController()
  private probing: Promise<void> | null = null
  /** Probes sent since the API server went down. */
  probes = 0

  constructor(private readonly opts: ApiRecoveryOptions) {}

  get state(): ApiState {
    return this.current
  }

  join(member: BackoffMember): void {
    this.members.add(member)
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.stopping = new AbortController()
    if (this.current === 'down') this.startProbing()
  }

  async stop(): Promise<void> {
    this.running = false
    this.stopping.abort()
    await this.probing
  }

  /** A list or watch got no HTTP answer (connection refused or reset, TLS failure, timeout). */
  unreachable(): void {
    if (this.current === 'down') return
    this.set('down', 'a list or watch got no answer')
    this.startProbing()
  }

  /** A list or watch got an HTTP error status (403, 500, 429...): the API server is there. */
  answered(status: number): void {
    if (this.current !== 'down') return
    this.set('answering', `a list or watch got HTTP ${status}`)
    this.resetAll()
  }

  /** A list succeeded or a watch opened. */
  succeeded(): void {
    if (this.current === 'up') return
    this.set('up', 'a list or watch succeeded')
    this.resetAll()
  }

  private set(state: ApiState, why: string): void {
    this.current = state
    this.opts.onState?.(state, why)
  }

  private resetAll(): void {
    for (const m of this.members) m.resetBackoff()
  }

  private startProbing(): void {
    if (!this.running || this.probing !== null) return
    this.probes = 0
    this.probing = this.probeLoop().finally(() => {
      this.probing = null
      // Down again while the last probe was in flight: keep probing.
      if (this.running && this.current === 'down') this.startProbing()
    })
  }

  /** Jittered, doubling from probeBaseMs up to probeMaxMs: uniform in [interval/2, interval). */
  probeDelayMs(n: number): number {
    const base = this.opts.probeBaseMs ?? API_RECOVERY_DEFAULTS.probeBaseMs
    const max = this.opts.probeMaxMs ?? API_RECOVERY_DEFAULTS.probeMaxMs
    const interval = Math.min(max, base * 2 ** Math.min(n, 20))
    return Math.floor(interval / 2 + (this.opts.random ?? Math.random)() * (interval / 2))
  }

  private async probeLoop(): Promise<void> {
    const sleep = this.opts.sleep ?? abortableSleep
    const timeoutMs = this.opts.probeTimeoutMs ?? API_RECOVERY_DEFAULTS.probeTimeoutMs
    while (this.running && this.current === 'down') {
      await sleep(this.probeDelayMs(this.probes), this.stopping.signal)
      if (!this.running || this.current !== 'down') return
      this.probes++
      let status: number | null = null
      const deadline = new AbortController()
      const timer = setTimeout(() => deadline.abort(), timeoutMs)
      try {
        status = await this.opts.probe(deadline.signal)
      } catch {
        status = null
      } finally {
        clearTimeout(timer)
      }
      if (!this.running || this.current !== 'down') return
      if (status !== null && answersProbe(status)) {
        this.set('answering', `GET /readyz answered ${status}`)
        this.resetAll()
        return
      }
    }
  }
}
