// discovery.kubernetes.labelSelector and optIn through the real loader: defaults, a malformed
// selector refused with its key path, reason, character and line, optIn's type and its clash with
// a selector that excludes the opt-in label, and both being restart-only.
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from './load.js'
import { restartOnlyChanges } from './restart-only.js'

const load = (text: string) => loadConfig({ text, env: {} })

function loadError(text: string): ConfigError {
  try {
    load(text)
  } catch (error) {
    if (error instanceof ConfigError) return error
    throw error
  }
  throw new Error('expected a ConfigError')
}

describe('discovery.kubernetes.labelSelector and optIn', () => {
  it('default to "" (every label) and false', () => {
    const k = load('discovery: { kubernetes: {} }').discovery.kubernetes
    expect(k?.labelSelector).toBe('')
    expect(k?.optIn).toBe(false)
  })

  it('keep the selector as written once it parses', () => {
    const k = load('discovery:\n  kubernetes:\n    labelSelector: team in (payments, orders), !legacy\n    optIn: true\n').discovery.kubernetes
    expect(k?.labelSelector).toBe('team in (payments, orders), !legacy')
    expect(k?.optIn).toBe(true)
  })

  it('a malformed selector stops loading with the key, the reason, the character and the line', () => {
    const err = loadError('discovery:\n  kubernetes:\n    namespaces: [a]\n    labelSelector: "team in (payments orders)"\n')
    expect(err.issues.map((i) => i.path)).toEqual(['discovery.kubernetes.labelSelector'])
    expect(err.message).toContain(
      `discovery.kubernetes.labelSelector: not a valid label selector: found 'orders' in the values of 'team', expected ',' or ')' ` +
        '(at character 19 of "team in (payments orders)") (line 4)',
    )
    expect(loadError('discovery: { kubernetes: { labelSelector: "team=pay_" } }').message).toContain(
      "value 'pay_' of label 'team' must be empty or alphanumeric characters",
    )
    expect(loadError('discovery: { kubernetes: { labelSelector: 5 } }').message).toContain('discovery.kubernetes.labelSelector: ')
  })

  it('a selector on a label the EndpointSlice controller sets itself is refused', () => {
    expect(loadError('discovery: { kubernetes: { labelSelector: "kubernetes.io/service-name=redis-a" } }').message).toContain(
      "discovery.kubernetes.labelSelector: label 'kubernetes.io/service-name' cannot be selected on",
    )
  })

  it('optIn is a boolean', () => {
    expect(loadError('discovery: { kubernetes: { optIn: "yes" } }').issues.map((i) => i.path)).toEqual(['discovery.kubernetes.optIn'])
  })

  it('optIn with a selector that excludes redis-gateway.io/expose=true would discover nothing: refused', () => {
    for (const sel of ['redis-gateway.io/expose=false', '!redis-gateway.io/expose', 'redis-gateway.io/expose notin (true)']) {
      const err = loadError(`discovery:\n  kubernetes:\n    optIn: true\n    labelSelector: "${sel}"\n`)
      expect(err.issues.map((i) => i.path), sel).toEqual(['discovery.kubernetes.labelSelector'])
      expect(err.message, sel).toContain('with optIn: true only Services labelled redis-gateway.io/expose=true are instances')
    }
    // Without optIn the same selectors are what the user asked for; with it, compatible ones are fine.
    expect(load('discovery: { kubernetes: { labelSelector: "!redis-gateway.io/expose" } }').discovery.kubernetes?.optIn).toBe(false)
    expect(load('discovery: { kubernetes: { optIn: true, labelSelector: "redis-gateway.io/expose in (true)" } }').discovery.kubernetes?.optIn).toBe(true)
  })

  it('changing either is restart-only (the watch is set up once)', () => {
    const base = load('discovery: { kubernetes: {} }')
    expect(restartOnlyChanges(base, load('discovery: { kubernetes: { labelSelector: team=payments } }'))).toEqual(['discovery.kubernetes'])
    expect(restartOnlyChanges(base, load('discovery: { kubernetes: { optIn: true } }'))).toEqual(['discovery.kubernetes'])
    expect(restartOnlyChanges(base, load('discovery: { kubernetes: { optIn: false, labelSelector: "" } }'))).toEqual([])
  })
})
