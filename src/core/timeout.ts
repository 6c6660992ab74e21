// One way to bound a promise in time: rejects with `error()` after `ms` unless `p` settles first.
// `p` keeps running; its later outcome is ignored (and handled, so it is never unhandled).

export function withTimer<T>(p: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms)
  })
  return Promise.race([p, expired]).finally(() => clearTimeout(timer))
}
