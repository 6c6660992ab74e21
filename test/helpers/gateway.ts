// Starts a real Gateway in-process on free loopback ports, configured through the real config
// loader (YAML text), for integration tests. Logs are silent unless GATEWAY_TEST_LOG is set.

import { mkdtemp, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { Tracer } from '@opentelemetry/api'
import type { DestinationStream } from 'pino'
import { stringify } from 'yaml'
import { loadConfig } from '../../src/config/load.js'
import { Gateway } from '../../src/gateway.js'
import { createLogger } from '../../src/telemetry/logger.js'

export const ADMIN_TOKEN = 'test-admin-token'
export const WRITE_TOKEN = 'test-write-token'
export const READ_TOKEN = 'test-read-token'

export interface TestInstance {
  name: string
  endpoints: string[]
  annotations?: Record<string, string>
}

export interface TestGatewayOptions {
  instances: TestInstance[]
  /** Extra tokens (file syntax); the three test tokens above are always present. */
  tokens?: Record<string, unknown>[]
  groups?: Record<string, { strategy: string }>
  /** Merged over the generated config object (file syntax). */
  extra?: Record<string, unknown>
  /** Write the config to a file and let the gateway watch it. */
  watch?: boolean
  /** Trace with this tracer (e.g. an in-memory exporter's provider). */
  tracer?: Tracer
  /** Send log lines here (at the config's log level) instead of stdout. */
  logDestination?: DestinationStream
  /** Runs between the gateway's construction and its start (e.g. to watch its background queue). */
  beforeStart?: (gateway: Gateway) => void
}

export interface TestGateway {
  gateway: Gateway
  url: string
  opsUrl: string
  base(instance: string): string
  configPath: string | null
  /** Rewrites the watched config file (watch: true only). */
  rewrite(opts: Omit<TestGatewayOptions, 'watch'>): Promise<void>
  stop(): Promise<void>
}

export function configObject(opts: Omit<TestGatewayOptions, 'watch'>): Record<string, unknown> {
  return {
    listen: { data: '127.0.0.1:0', ops: '127.0.0.1:0' },
    discovery: {
      static: {
        instances: opts.instances.map((i) => ({ name: i.name, endpoints: i.endpoints, annotations: i.annotations ?? {} })),
      },
    },
    groups: opts.groups ?? {},
    auth: {
      tokens: [
        { name: 'admin', token: ADMIN_TOKEN, access: 'admin', targets: ['*'] },
        { name: 'writer', token: WRITE_TOKEN, access: 'write', targets: ['*'] },
        { name: 'reader', token: READ_TOKEN, access: 'read', targets: ['*'] },
        ...(opts.tokens ?? []),
      ],
    },
    redis: { commandTimeout: '2s', connectTimeout: '1s' },
    log: { level: process.env.GATEWAY_TEST_LOG ?? 'silent' },
    // A test's requests are done when it stops the gateway: no delay, and a short drain bound.
    shutdown: { delay: '0s', timeout: '2s' },
    ...(opts.extra ?? {}),
  }
}

export async function startGateway(opts: TestGatewayOptions): Promise<TestGateway> {
  const text = stringify(configObject(opts))
  let configPath: string | null = null
  if (opts.watch) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-cfg-'))
    configPath = path.join(dir, 'gateway.yaml')
    await writeFile(configPath, text)
  }
  const config = configPath ? loadConfig({ path: configPath, env: {} }) : loadConfig({ text, env: {} })
  const logger = createLogger(config.log.level, opts.logDestination)
  const gateway = new Gateway({
    config,
    logger,
    env: {},
    ...(configPath ? { configPath } : {}),
    ...(opts.tracer ? { tracer: opts.tracer } : {}),
  })
  opts.beforeStart?.(gateway)
  await gateway.start()
  const url = gateway.dataUrl
  return {
    gateway,
    url,
    opsUrl: gateway.opsUrl,
    base: (instance) => `${url}/v1/instances/${instance}`,
    configPath,
    async rewrite(next) {
      if (!configPath) throw new Error('rewrite needs watch: true')
      const tmp = `${configPath}.tmp`
      await writeFile(tmp, stringify(configObject(next)))
      const { rename } = await import('node:fs/promises')
      await rename(tmp, configPath)
    },
    // The test client's pooled keep-alive connections are idle by now: close them at once instead
    // of after the keep-alive timeout (as an operator's second signal would).
    stop: () => gateway.stop({ idleCloseMs: 0 }),
  }
}
