// Per-endpoint and per-instance state lines in bulk: when thousands of endpoints come up at start,
// or a whole fleet goes away at once, one line each at info or warn was most of the log and a
// measurable share of the start-up (bench/README.md "Start-up and health checks at scale"). Per
// kind of line, the first BURST_LINES of each BURST_WINDOW_MS go out at their level as before;
// the rest of that window go out at debug, and when the window ends one line at the original level
// says how many there were. A handful of changes (the usual case) logs exactly as before.

import type { Logger } from 'pino'

/** Lines of one kind logged at their own level per window. */
export const BURST_LINES = 50
export const BURST_WINDOW_MS = 1_000

type Level = 'info' | 'warn'

interface Window {
  readonly startedAt: number
  lines: number
  /** Lines of this window that went to debug. */
  quieted: number
  level: Level
}

export interface LogBurstOptions {
  readonly now?: () => number
  readonly lines?: number
  readonly windowMs?: number
}

export class LogBurst {
  private readonly windows = new Map<string, Window>()
  private readonly now: () => number
  private readonly lines: number
  private readonly windowMs: number

  constructor(
    private readonly logger: Logger,
    opts: LogBurstOptions = {},
  ) {
    this.now = opts.now ?? Date.now
    this.lines = opts.lines ?? BURST_LINES
    this.windowMs = opts.windowMs ?? BURST_WINDOW_MS
  }

  /**
   * Logs one line of `kind` (a fixed text naming the kind, e.g. "endpoint up"): at `level` while
   * the window has room, at debug beyond it (with a summary line when the window ends).
   */
  log(kind: string, level: Level, fields: object, msg: string): void {
    const now = this.now()
    let w = this.windows.get(kind)
    if (w === undefined || now - w.startedAt >= this.windowMs) {
      if (w !== undefined) this.summary(kind, w)
      w = { startedAt: now, lines: 0, quieted: 0, level }
      this.windows.set(kind, w)
    }
    if (w.lines < this.lines) {
      w.lines++
      this.logger[level](fields, msg)
      return
    }
    if (w.quieted === 0) {
      // The summary, when the window ends (also when no further line comes to notice it).
      const window = w
      setTimeout(() => {
        if (this.windows.get(kind) === window) {
          this.windows.delete(kind)
          this.summary(kind, window)
        }
      }, Math.max(1, window.startedAt + this.windowMs - now)).unref()
    }
    w.quieted++
    if (level === 'warn') w.level = 'warn'
    this.logger.debug(fields, msg)
  }

  private summary(kind: string, w: Window): void {
    if (w.quieted === 0) return
    const lines = w.quieted
    w.quieted = 0
    this.logger[w.level]({ kind, count: lines }, `${kind}: ${lines} more within ${this.windowMs} ms (past the first ${this.lines}, logged at debug)`)
  }
}
