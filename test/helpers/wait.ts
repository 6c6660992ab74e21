// Polling for test conditions. Tests wait with waitFor, never with fixed sleeps:
// a sleep is either too short on a slow CI machine or wastes time on a fast one.

import { inspect } from 'node:util'

export interface WaitForOptions {
  /** Give up after this long. Default 10_000 ms. */
  timeoutMs?: number
  /** Pause between attempts. Default 50 ms. */
  intervalMs?: number
  /** What is being waited for; goes first in the timeout error. */
  message?: string
}

export const WAIT_DEFAULTS = { timeoutMs: 10_000, intervalMs: 50 } as const

/** What a successful attempt can return: falsy values other than undefined mean "not yet". */
export type WaitResult<T> = Exclude<T, false | null | 0 | 0n | ''>

type Attempt<T> =
  | { readonly kind: 'none' }
  | { readonly kind: 'value'; readonly value: T }
  | { readonly kind: 'error'; readonly error: unknown }

const PENDING = Symbol('pending')

function describe(attempt: Attempt<unknown>): string {
  switch (attempt.kind) {
    case 'none':
      return 'no attempt finished'
    case 'value':
      return `last value: ${inspect(attempt.value, { depth: 3, breakLength: Infinity })}`
    case 'error':
      return `last error: ${attempt.error instanceof Error ? (attempt.error.stack ?? attempt.error.message) : inspect(attempt.error)}`
  }
}

/**
 * Calls `fn` until it succeeds and returns what it returned.
 *
 * Success: `fn` does not throw (or reject) and returns either a truthy value or
 * `undefined`. `undefined` counts as success so assertion-style callbacks work:
 * `await waitFor(async () => expect(await r.get('k')).toBe('v'))`.
 * Any other falsy value (`false`, `null`, `0`, `''`) means "not yet", so
 * `await waitFor(async () => (await r.get('k')) === 'v')` also works.
 * Beware: a callback that returns `map.get(key)` succeeds at once when the key is missing.
 *
 * An attempt that is still running at the deadline does not hold the caller:
 * waitFor rejects on time and leaves that attempt behind.
 */
export async function waitFor<T>(fn: () => T | Promise<T>, opts: WaitForOptions = {}): Promise<WaitResult<T>> {
  const timeoutMs = opts.timeoutMs ?? WAIT_DEFAULTS.timeoutMs
  const intervalMs = opts.intervalMs ?? WAIT_DEFAULTS.intervalMs
  const started = Date.now()
  const deadline = started + timeoutMs
  let last: Attempt<T> = { kind: 'none' }
  let attempts = 0

  for (;;) {
    attempts++
    const remaining = deadline - Date.now()
    let timer: NodeJS.Timeout | undefined
    const outcome = await Promise.race([
      (async (): Promise<Attempt<T>> => {
        try {
          return { kind: 'value', value: await fn() }
        } catch (error) {
          return { kind: 'error', error }
        }
      })(),
      new Promise<typeof PENDING>((resolve) => {
        timer = setTimeout(() => resolve(PENDING), Math.max(remaining, 0))
      }),
    ])
    clearTimeout(timer)

    if (outcome !== PENDING) {
      if (outcome.kind === 'value' && (outcome.value === undefined || outcome.value)) return outcome.value as WaitResult<T>
      last = outcome
    }

    const now = Date.now()
    if (outcome === PENDING || now >= deadline) {
      const what = opts.message ?? 'condition'
      const pending = outcome === PENDING ? '; the last attempt was still running at the deadline' : ''
      throw new Error(
        `waitFor timed out after ${now - started}ms (${attempts} attempts) waiting for ${what}${pending}; ${describe(last)}`,
        last.kind === 'error' ? { cause: last.error } : undefined,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, deadline - now)))
  }
}
