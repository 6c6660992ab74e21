// State-change logs, fed by gateway events (never called from routing or upstream code).

import type { Logger } from 'pino'
import type { EventHub } from '../events.js'

export function subscribeLogs(events: EventHub, logger: Logger): void {
  events.on('endpointState', (e) => {
    if (e.up) logger.info({ instance: e.instance, endpoint: e.endpoint }, `endpoint up: ${e.reason}`)
    else logger.warn({ instance: e.instance, endpoint: e.endpoint }, `endpoint down: ${e.reason}`)
  })
  events.on('endpointRole', (e) =>
    logger.info({ instances: e.instances, endpoint: e.endpoint, from: e.from, to: e.to }, `endpoint role changed: ${e.from} -> ${e.to}`),
  )
  events.on('discovery', (e) => {
    const fields = { source: e.source, resource: e.resource, status: e.status, retryInMs: e.retryInMs, instance: e.instance }
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
      default:
        logger.debug({ ...fields, kind: e.kind }, 'discovery event')
    }
  })
  events.on('breaker', (e) => {
    const fields = { instances: e.instances, endpoint: e.endpoint, from: e.from, to: e.to, reason: e.reason }
    if (e.to === 'open') logger.warn(fields, `circuit breaker opened: ${e.reason}`)
    else logger.info(fields, `circuit breaker ${e.to}: ${e.reason}`)
  })
  events.on('annotationError', (e) =>
    logger.warn({ instance: e.instance, source: e.source, annotation: e.key }, `bad annotation: ${e.message}`),
  )
  events.on('table', (e) => logger.debug({ instances: e.instances, groups: e.groups, version: e.version }, 'routing table updated'))
}
