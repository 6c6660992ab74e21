// Which reloaded keys wait for a restart, and the one warning per key that says so.

import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { loadConfig } from './load.js'
import { restartOnlyChanges, warnRestartOnly } from './restart-only.js'

const config = (text: string) => loadConfig({ text, env: {} })

describe('restartOnlyChanges', () => {
  it('names the restart-only keys that changed, and nothing for live ones or the same config', () => {
    const base = config('listen: { data: "127.0.0.1:8080" }\nhttp: { fastLane: true }\n')
    expect(restartOnlyChanges(base, base)).toEqual([])
    expect(restartOnlyChanges(base, config('listen: { data: "127.0.0.1:8080" }\nhttp: { fastLane: true }\n'))).toEqual([])
    // Live keys (tokens, groups, static instances, shutdown, the health-check timeout, ops.auth) are not restart-only.
    expect(restartOnlyChanges(base, config('listen: { data: "127.0.0.1:8080" }\nshutdown: { timeout: 1s }\nhealth: { timeout: 3s }\nops: { auth: none }\n'))).toEqual([])
    const next = config('listen: { data: "127.0.0.1:8081" }\nhttp: { fastLane: false, cors: { origins: [] } }\nlog: { level: debug }\n')
    expect(restartOnlyChanges(base, next)).toEqual(['listen', 'log', 'http.fastLane', 'http.cors'])
    // Read once at start: the client-id header, metrics, the check interval, the Kubernetes watch.
    const more = config(
      'listen: { data: "127.0.0.1:8080" }\nhttp: { fastLane: true, clientIdHeader: x-user }\nmetrics: { enabled: false }\n' +
        'health: { interval: 5s }\ndiscovery: { kubernetes: { namespaces: [other] } }\n',
    )
    expect(restartOnlyChanges(base, more)).toEqual(['http.clientIdHeader', 'metrics', 'health.interval', 'discovery.kubernetes'])
  })

  it('warns once per changed key', () => {
    const lines: { key: string; msg: string }[] = []
    const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s) as { key: string; msg: string }) })
    warnRestartOnly(config('limits: { maxBody: 1MiB }\n'), config('limits: { maxBody: 2MiB }\n'), logger)
    expect(lines.map((l) => [l.key, l.msg])).toEqual([['limits', "config key 'limits' changed; it takes effect after a restart"]])
  })
})
