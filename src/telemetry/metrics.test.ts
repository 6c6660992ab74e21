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

  it('drops the series of an endpoint an instance no longer lists, every metric of it, and restarts them at 0', async () => {
    const { events, text } = setup()
    events.emit('instanceChange', added('a', ['e:1', 'e:2']))
    events.emit('endpointState', { instance: 'a', endpoint: 'e:1', up: true, reason: 'ok' })
    events.emit('breaker', { instances: ['a'], endpoint: 'e:2', from: 'closed', to: 'open', reason: 'failures' })
    events.emit('replicaLag', { instance: 'a', endpoint: 'e:2', bytes: 10 })
    events.emit('endpointRole', { instances: ['a'], endpoint: 'e:2', from: 'replica', to: 'primary' })
    const e2 = (t: string): string[] => t.split('\n').filter((l) => l.includes('redis_endpoint="e:2"'))
    expect(e2(await text())).toHaveLength(10) // up, lag, breaker state, 3 + 2 + 2 transitions
    events.emit('instanceChange', { ...added('a', []), change: 'updated', removedEndpoints: ['e:2'] })
    const t = await text()
    expect(e2(t)).toEqual([])
    expect(t).toContain('redis_gateway_endpoint_up{redis_instance="a",redis_endpoint="e:1"} 1')
    events.emit('instanceChange', { ...added('a', ['e:2']), change: 'updated' })
    expect(e2(await text())).toContain('redis_gateway_breaker_transitions_total{redis_instance="a",redis_endpoint="e:2",to="open"} 0')
  })

  it('starts the zero series of 1,000 instances, each printed once, with its count when it has one', async () => {
    const { events, text } = setup()
    for (let i = 0; i < 1_000; i++) events.emit('instanceChange', added(`i-${i}`, [`h:${i}`]))
    events.emit('retry', { instance: 'i-7', reason: 'TIMEOUT', scope: null })
    events.emit('endpointState', { instance: 'i-7', endpoint: 'h:7', up: false, reason: 'timeout' })
    const t = await text()
    const lines = (prefix: string): string[] => t.split('\n').filter((l) => l.startsWith(prefix))
    expect(lines('redis_gateway_requests_total{redis_instance="i-')).toHaveLength(13 * 1_000)
    expect(lines('redis_gateway_retries_total{redis_instance="i-7"')).toEqual([
      'redis_gateway_retries_total{redis_instance="i-7",code="TIMEOUT"} 1',
      'redis_gateway_retries_total{redis_instance="i-7",code="UPSTREAMRESET"} 0',
      'redis_gateway_retries_total{redis_instance="i-7",code="NOENDPOINT"} 0',
    ])
    expect(lines('redis_gateway_endpoint_transitions_total{redis_instance="i-7"')).toEqual([
      'redis_gateway_endpoint_transitions_total{redis_instance="i-7",redis_endpoint="h:7",to="up"} 0',
      'redis_gateway_endpoint_transitions_total{redis_instance="i-7",redis_endpoint="h:7",to="down"} 1',
    ])
    expect(lines('redis_gateway_role_changes_total{redis_instance="i-999",redis_endpoint="h:999"')).toHaveLength(2)
  })

  it('drops every series of an instance or endpoint that goes right after it came', async () => {
    const { events, text } = setup()
    events.emit('instanceChange', added('a', ['e:1', 'e:2']))
    events.emit('instanceChange', { ...added('a', []), change: 'updated', removedEndpoints: ['e:2'] })
    events.emit('instanceChange', added('b', ['e:3']))
    events.emit('instanceChange', removed('b', ['e:3']))
    const t = await text()
    expect(t).toContain('redis_gateway_endpoint_up{redis_instance="a",redis_endpoint="e:1"} 0')
    expect(t).not.toContain('e:2')
    expect(t).not.toContain('redis_instance="b"')
  })
})
