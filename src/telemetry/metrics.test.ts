// GatewayMetrics fed with events directly: which series exist, start at 0 and go (the integration
// tests, test/integration/metrics*.test.ts, drive the same through real Redis servers).

import { describe, expect, it } from 'vitest'
import { EventHub } from '../core/events.js'
import { GatewayMetrics } from './metrics.js'

function setup(): { events: EventHub; metrics: GatewayMetrics; text: () => Promise<string> } {
  const events = new EventHub()
  const metrics = new GatewayMetrics({ defaultMetrics: false })
  metrics.subscribe(events)
  return { events, metrics, text: () => metrics.registry.metrics() }
}

/** Lines of series `name` (exactly), without HELP/TYPE. */
function series(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
}

const added = (instance: string, endpoints: string[]) =>
  ({ instance, change: 'added', maintenance: null, weight: null, removedEndpoints: [], addedEndpoints: endpoints }) as const
const removed = (instance: string, endpoints: string[]) =>
  ({ instance, change: 'removed', maintenance: null, weight: null, removedEndpoints: endpoints, addedEndpoints: [] }) as const
const topology = (instance: string, nodeIds: string[]) =>
  ({ instance, kind: 'changed', shards: 1, slots: 16384, nodes: nodeIds.length, nodeIds, message: null }) as const

describe('GatewayMetrics', () => {
  it('starts the request series of every class @upstash/redis sends, and the budget series, at 0', async () => {
    const { events, text } = setup()
    events.emit('instanceChange', added('a', ['h:1']))
    const t = await text()
    for (const cls of ['read', 'write', 'pipeline', 'multi']) {
      expect(t).toContain(`redis_gateway_requests_total{redis_instance="a",group="",class="${cls}",outcome="success",code="OK"} 0`)
    }
    expect(series(t, 'redis_gateway_budget_exhausted_total')).toEqual([
      'redis_gateway_budget_exhausted_total{redis_instance="a",budget="retry"} 0',
      'redis_gateway_budget_exhausted_total{redis_instance="a",budget="hedge"} 0',
    ])
  })

  it('counts spent budgets and slow clients; the slow-client reasons exist from the start', async () => {
    const { events, text } = setup()
    expect(series(await text(), 'redis_gateway_slow_client_disconnects_total')).toEqual([
      'redis_gateway_slow_client_disconnects_total{reason="sse_backlog"} 0',
      'redis_gateway_slow_client_disconnects_total{reason="write_timeout"} 0',
      'redis_gateway_slow_client_disconnects_total{reason="request_timeout"} 0',
    ])
    events.emit('instanceChange', added('a', ['h:1']))
    events.emit('budgetExhausted', { instance: 'a', budget: 'hedge' })
    events.emit('slowClient', { reason: 'write_timeout' })
    const t = await text()
    expect(t).toContain('redis_gateway_budget_exhausted_total{redis_instance="a",budget="hedge"} 1')
    expect(t).toContain('redis_gateway_slow_client_disconnects_total{reason="write_timeout"} 1')
  })

  it('reads open event streams at scrape time', async () => {
    const { metrics, text } = setup()
    expect(series(await text(), 'redis_gateway_sse_streams')).toEqual(['redis_gateway_sse_streams 0'])
    let open = 3
    metrics.countStreams(() => open)
    expect(series(await text(), 'redis_gateway_sse_streams')).toEqual(['redis_gateway_sse_streams 3'])
    open = 1
    expect(series(await text(), 'redis_gateway_sse_streams')).toEqual(['redis_gateway_sse_streams 1'])
  })

  it('sets replica lag, and removes it (not 0) when it is unknown', async () => {
    const { events, text } = setup()
    events.emit('instanceChange', added('a', ['p:1', 'r:1']))
    events.emit('replicaLag', { instance: 'a', endpoint: 'r:1', bytes: 2048 })
    expect(series(await text(), 'redis_gateway_replica_lag_bytes')).toEqual([
      'redis_gateway_replica_lag_bytes{redis_instance="a",redis_endpoint="r:1"} 2048',
    ])
    events.emit('replicaLag', { instance: 'a', endpoint: 'r:1', bytes: null })
    expect(series(await text(), 'redis_gateway_replica_lag_bytes')).toEqual([])
  })

  it('starts and drops the series of cluster nodes that discovery does not list', async () => {
    const { events, text } = setup()
    const up = async (): Promise<string[]> => series(await text(), 'redis_gateway_endpoint_up')
    events.emit('instanceChange', added('c', ['seed:1']))
    events.emit('clusterTopology', topology('c', ['seed:1', 'n:2', 'n:3']))
    expect(await up()).toEqual([
      'redis_gateway_endpoint_up{redis_instance="c",redis_endpoint="seed:1"} 0',
      'redis_gateway_endpoint_up{redis_instance="c",redis_endpoint="n:2"} 0',
      'redis_gateway_endpoint_up{redis_instance="c",redis_endpoint="n:3"} 0',
    ])
    expect(await text()).toContain('redis_gateway_breaker_transitions_total{redis_instance="c",redis_endpoint="n:2",to="open"} 0')
    events.emit('endpointState', { instance: 'c', endpoint: 'n:2', up: true, reason: 'ok' })
    // The next map drops n:3; n:2 keeps its state (no restart at 0).
    events.emit('clusterTopology', topology('c', ['seed:1', 'n:2']))
    expect(await up()).toEqual([
      'redis_gateway_endpoint_up{redis_instance="c",redis_endpoint="seed:1"} 0',
      'redis_gateway_endpoint_up{redis_instance="c",redis_endpoint="n:2"} 1',
    ])
    expect(await text()).not.toContain('redis_endpoint="n:3"')
    events.emit('instanceChange', removed('c', ['seed:1']))
    expect(await text()).not.toContain('redis_instance="c"')
  })
})
