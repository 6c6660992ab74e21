// State-change logs, fed by gateway events (never called from routing or upstream code). In bulk
// (thousands of endpoints coming up at start, a config with thousands of instances) they stay
// readable and cheap: a routing-table change of more than INSTANCE_LINES instances is one summary
// line at info (its per-instance lines at debug), and endpoint up/down and role lines beyond
// BURST_LINES a second go to debug with one count line (log-burst.ts).

import type { Logger } from 'pino'
import type { EventHub, InstanceChangeEvent } from '../core/events.js'
import { onRouteResolved } from './route-resolve.js'
import { LogBurst } from './log-burst.js'

/** Instances one routing-table change may add, remove or update with a line each at info; beyond, a summary. */
export const INSTANCE_LINES = 50

export function subscribeLogs(events: EventHub, logger: Logger): void {
  const burst = new LogBurst(logger)
  events.on('endpointState', (e) => {
    if (e.up) burst.log('endpoint up', 'info', { instance: e.instance, endpoint: e.endpoint }, `endpoint up: ${e.reason}`)
    else burst.log('endpoint down', 'warn', { instance: e.instance, endpoint: e.endpoint }, `endpoint down: ${e.reason}`)
  })
  events.on('endpointRole', (e) =>
    burst.log(
      'endpoint role changed',
      'info',
      { instances: e.instances, endpoint: e.endpoint, from: e.from, to: e.to },
      `endpoint role changed: ${e.from} -> ${e.to}`,
    ),
  )
  events.on('clusterTopology', (e) => {
    const fields = { instance: e.instance, shards: e.shards, slots: e.slots, nodes: e.nodes }
    if (e.kind === 'changed') logger.info(fields, 'cluster slot map learned')
    else if (e.kind === 'refused') logger.warn({ ...fields, refused: e.message }, 'cluster announces nodes the gateway will not use')
    else logger.warn({ ...fields, err: e.message }, 'cluster slot map refresh failed; the last map stays')
  })
  events.on('discovery', (e) => {
    const fields = { source: e.source, resource: e.resource, status: e.status, retryInMs: e.retryInMs, instance: e.instance, reason: e.reason }
    switch (e.kind) {
      case 'error':
        logger.warn(fields, `discovery watch error: ${e.error}`)
        break
      case 'conflict':
        logger.warn(fields, `discovery conflict: ${e.error}`)
        break
      case 'gone':
        logger.info(fields, 'discovery watch expired (410 Gone); relisting')
        break
      case 'listed':
        logger.info({ ...fields, items: e.items }, 'discovery listed')
        break
      case 'api_down':
        logger.warn(fields, 'kubernetes API server unreachable; the routing table stays as it is, probing GET /readyz')
        break
      case 'api_answering':
        logger.info(fields, 'kubernetes API server answers again; every watch retries now')
        break
      case 'api_up':
        logger.info(fields, 'kubernetes API server back: lists and watches work')
        break
      default:
        logger.debug({ ...fields, kind: e.kind }, 'discovery event')
    }
  })
  events.on('breaker', (e) => {
    const fields = { instances: e.instances, endpoint: e.endpoint, from: e.from, to: e.to, reason: e.reason }
    if (e.to === 'open') logger.warn(fields, `circuit breaker opened: ${e.reason}`)
    else logger.info(fields, `circuit breaker ${e.to}: ${e.reason}`)
  })
  // A peer that keeps causing faults must not flood the log: at most one line per place per second,
  // with how many were left out since the last one (the metric counts every fault).
  const lastFault = new Map<string, { at: number; skipped: number }>()
  events.on('fault', (e) => {
    const now = Date.now()
    const last = lastFault.get(e.where)
    if (last !== undefined && now - last.at < 1_000) {
      last.skipped++
      return
    }
    lastFault.set(e.where, { at: now, skipped: 0 })
    logger.error(
      { where: e.where, endpoint: e.endpoint ?? undefined, err: e.error, suppressed: last?.skipped || undefined },
      `fault contained (${e.where}): ${e.error.message}`,
    )
  })
  events.on('annotationError', (e) =>
    logger.warn({ instance: e.instance, source: e.source, annotation: e.key }, `bad annotation: ${e.message}`),
  )
  // One routing-table change's instance events arrive together, then its 'table' event.
  let changes: InstanceChangeEvent[] = []
  const flush = (): void => {
    const batch = changes
    if (batch.length === 0) return
    changes = []
    if (batch.length <= INSTANCE_LINES) {
      for (const e of batch) logInstanceChange(logger, e, false)
      return
    }
    let added = 0
    let removed = 0
    let updated = 0
    let maintenance = 0
    let intoMaintenance = 0
    for (const e of batch) {
      if (e.change === 'added') added++
      else if (e.change === 'removed') removed++
      else updated++
      if (e.maintenance !== null) {
        maintenance++
        if (e.maintenance.to !== 'off') intoMaintenance++
      }
      logInstanceChange(logger, e, true)
    }
    const fields = { added, removed, updated, maintenance }
    const msg = `routing table: ${added} instances added, ${removed} removed, ${updated} updated (${maintenance} maintenance changes); per-instance lines at debug`
    if (intoMaintenance > 0) logger.warn(fields, msg)
    else logger.info(fields, msg)
  }
  events.on('instanceChange', (e) => {
    // Flushed by the change's 'table' event; the microtask only when none follows.
    if (changes.length === 0) queueMicrotask(flush)
    changes.push(e)
  })
  // Routing decisions, one line each, only when debug is on: then every request's scope is wanted,
  // so its routing events are built (otherwise only sampled traces want them).
  if (logger.isLevelEnabled('debug')) {
    events.on('requestBegin', (e) => {
      e.scope.wanted = true
    })
    onRouteResolved(events, (e) => {
      if (e.group !== null || e.error !== null) {
        logger.debug({ target: e.name, kind: e.kind, group: e.group, instance: e.instance, class: e.class, error: e.error }, 'route resolved')
      }
    })
    events.on('routeSelect', (e) =>
      logger.debug(
        {
          instance: e.instance,
          endpoint: e.endpoint,
          role: e.role,
          strategy: e.balancer,
          attempt: e.attempt,
          candidates: e.candidates,
          reason: e.reason,
          ...(e.error !== null && { error: e.error }),
        },
        e.endpoint === null ? 'no endpoint selected' : 'endpoint selected',
      ),
    )
  }
  events.on('table', (e) => {
    flush()
    logger.debug({ instances: e.instances, groups: e.groups, version: e.version }, 'routing table updated')
  })
}

/** One instance's change, as before; `quiet`: at debug (part of a bulk change summarised at info). */
function logInstanceChange(logger: Logger, e: InstanceChangeEvent, quiet: boolean): void {
  const info = (fields: object, msg: string): void => (quiet ? logger.debug(fields, msg) : logger.info(fields, msg))
  const fields = { instance: e.instance, removedEndpoints: e.removedEndpoints, addedEndpoints: e.addedEndpoints }
  if (e.change !== 'updated') info(fields, `instance ${e.change}`)
  if (e.maintenance !== null) {
    const msg = `maintenance: ${e.maintenance.from} -> ${e.maintenance.to}`
    if (e.maintenance.to === 'off' || quiet) info({ ...fields, from: e.maintenance.from, to: e.maintenance.to }, msg)
    else logger.warn({ ...fields, from: e.maintenance.from, to: e.maintenance.to }, msg)
  }
  if (e.weight !== null) info({ instance: e.instance, from: e.weight.from, to: e.weight.to }, `weight: ${e.weight.from} -> ${e.weight.to}`)
  if (e.change === 'updated' && e.maintenance === null && e.weight === null) info(fields, 'instance endpoints changed')
}
