// Config keys a running gateway cannot apply: its listeners, Redis connection settings, limits, log
// level, HTTP server set-up, metrics, the health-check interval and the Kubernetes watch are fixed
// when it starts. A reload that changes one of them is applied for the rest, and says per key that
// the change waits for a restart (README, "Live reload"). Everything else (tokens, groups, static
// instances, shutdown timings, the health-check timeout, ops.auth) applies at once.

import type { Logger } from 'pino'
import type { GatewayConfig } from './schema.js'

/**
 * Keys whose changes take effect only after a restart: the key as a user writes it, and its dotted
 * path in the parsed config (durations are parsed into `...Ms`).
 */
export const RESTART_ONLY_KEYS: readonly (readonly [key: string, path: string])[] = [
  ['listen', 'listen'],
  ['redis', 'redis'],
  ['limits', 'limits'],
  ['log', 'log'],
  ['http.clientIdHeader', 'http.clientIdHeader'],
  ['http.fastLane', 'http.fastLane'],
  ['http.cors', 'http.cors'],
  ['metrics', 'metrics'],
  ['health.interval', 'health.intervalMs'],
  ['discovery.kubernetes', 'discovery.kubernetes'],
]

/** The restart-only keys whose values differ between two configs. */
export function restartOnlyChanges(prev: GatewayConfig, next: GatewayConfig): string[] {
  if (prev === next) return []
  return RESTART_ONLY_KEYS.filter(([, path]) => JSON.stringify(valueAt(prev, path)) !== JSON.stringify(valueAt(next, path))).map(
    ([key]) => key,
  )
}

/** One warning per restart-only key that `next` changes. */
export function warnRestartOnly(prev: GatewayConfig, next: GatewayConfig, logger: Logger): void {
  for (const key of restartOnlyChanges(prev, next)) {
    logger.warn({ key }, `config key '${key}' changed; it takes effect after a restart`)
  }
}

function valueAt(cfg: GatewayConfig, path: string): unknown {
  let v: unknown = cfg
  for (const k of path.split('.')) v = (v as Record<string, unknown> | undefined)?.[k]
  return v
}
