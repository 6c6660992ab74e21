// One way to bound a promise in time: rejects with `error()` after `ms` unless `p` settles first.
// `p` keeps running; its later outcome is ignored (and handled, so it is never unhandled).
//
// A timer's verdict waits for the I/O of the turn it fires in (ioTimeout): in a long turn of a busy
// event loop, timers run before the replies that arrived meanwhile are read, and every timeout
// would fire on answers already in the kernel. An overloaded gateway then reset healthy
// connections and opened the breakers of a healthy Redis (bench/README.md, "Cost as work grows").

/** A timeout made by ioTimeout. */
export interface IoTimeout {
  /** Cancels it, also when it has expired and its verdict waits for this turn's I/O. */
  clear(): void
  /** Does not keep the process up (Timeout.unref). */
  unref(): IoTimeout
}

/**
 * Calls fn `ms` after now, once the I/O callbacks of the turn the timer fires in have run
 * (setImmediate: the check phase follows the poll phase), unless cleared by then: a reply read in
 * that turn's poll phase can still clear it.
 */
export function ioTimeout(fn: () => void, ms: number): IoTimeout {
  let immediate: NodeJS.Immediate | null = null
  const timer = setTimeout(() => {
    immediate = setImmediate(fn)
  }, ms)
  const t: IoTimeout = {
    clear() {
      clearTimeout(timer)
      if (immediate !== null) clearImmediate(immediate)
    },
    unref() {
      timer.unref()
      return t
    },
  }
  return t
}

export function withTimer<T>(p: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: IoTimeout | undefined
  const expired = new Promise<never>((_, reject) => {
    timer = ioTimeout(() => reject(error()), ms)
  })
  return Promise.race([p, expired]).finally(() => timer?.clear())
}
