// Keeps the README true: every admin-only and refused command, every environment variable and every
// metric the code declares must be documented there.

import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import { ADMIN, REFUSED } from '../src/routing/classify.js'
import { ENV_VARS } from '../src/config/load.js'
import { GatewayMetrics } from '../src/telemetry/metrics.js'
import { VERSION } from '../src/core/version.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

describe('README', () => {
  test('names every admin-only command', () => {
    const missing = ADMIN.map((c) => c.split(' ')[0]!).filter((c) => !new RegExp(`\\b${c}\\b`).test(readme))
    expect(missing).toEqual([])
  })

  test('names every refused command', () => {
    const missing = REFUSED.map((r) => r.command.split(' ')[0]!).filter((c) => !new RegExp(`\\b${c}\\b`).test(readme))
    expect(missing).toEqual([])
  })

  test('documents every environment variable', () => {
    const missing = ENV_VARS.map((v) => v.name).filter((n) => !readme.includes(`\`${n}\``))
    expect(missing).toEqual([])
  })

  test('documents every metric', async () => {
    const m = new GatewayMetrics({ defaultMetrics: false })
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name.replace(/^redis_gateway_/, ''))
    expect(names.length).toBeGreaterThan(5)
    const missing = names.filter((n) => !readme.includes(n))
    expect(missing).toEqual([])
  })

  test('src/core/version.ts matches package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    expect(VERSION).toBe(pkg.version)
  })
})
