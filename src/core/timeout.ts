// One way to bound a promise in time: rejects with `error()` after `ms` unless `p` settles first.
// `p` keeps running; its later outcome is ignored (and handled, so it is never unhandled).
//
// A timer's verdict waits for the I/O of the turn it fires in (afterIo): in a long turn of a busy
// event loop, timers run before the replies that arrived meanwhile are read, and every timeout
// would fire on answers already in the kernel. An overloaded gateway then reset healthy
// connections and opened the breakers of a healthy Redis (bench/README.md, "Cost as work grows").

/** Runs fn after the I/O callbacks of this turn (setImmediate: the check phase follows the poll phase). */
export function afterIo(fn: () => void): () => void {
  return () => setImmediate(fn)
}

export function withTimer<T>(p: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(afterIo(() => reject(error())), ms)
  })
  return Promise.race([p, expired]).finally(() => clearTimeout(timer))
}
