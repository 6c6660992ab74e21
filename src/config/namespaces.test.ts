// discovery.kubernetes.namespaces: namespace names, or ["*"] alone for every namespace. Through the
// real loader, so the messages are checked as the user sees them (key path and line).
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from './load.js'
import { ALL_NAMESPACES } from './schema.js'

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

describe('discovery.kubernetes.namespaces', () => {
  it('["*"] means every namespace; repeated "*" is still every namespace', () => {
    expect(ALL_NAMESPACES).toBe('*')
    expect(load('discovery: { kubernetes: { namespaces: ["*"] } }').discovery.kubernetes).toEqual({ namespaces: ['*'], servicePrefix: 'redis-', labelSelector: '', optIn: false, operators: true })
    expect(load('discovery: { kubernetes: { namespaces: ["*", "*"] } }').discovery.kubernetes?.namespaces).toEqual(['*'])
  })

  it('names still work as before: default, duplicates dropped', () => {
    expect(load('discovery: { kubernetes: {} }').discovery.kubernetes?.namespaces).toEqual(['redis-system'])
    expect(load('discovery: { kubernetes: { namespaces: [a, b, a] } }').discovery.kubernetes?.namespaces).toEqual(['a', 'b'])
  })

  it('"*" mixed with names is an error naming the key and the names, wherever "*" is', () => {
    for (const list of ['["*", redis-system]', '[redis-system, "*"]', '[a, "*", b, "*"]']) {
      const err = loadError(`discovery:\n  kubernetes:\n    namespaces: ${list}\n`)
      expect(err.issues.map((i) => i.path), list).toEqual(['discovery.kubernetes.namespaces'])
      expect(err.message, list).toContain('discovery.kubernetes.namespaces: "*" (every namespace) must be the only element')
      expect(err.message, list).toContain('write ["*"] alone, or the namespaces without "*"')
      expect(err.message, list).toContain('(line 3)')
    }
    expect(loadError('discovery: { kubernetes: { namespaces: [a, "*", b] } }').message).toContain('(["a","b"])')
  })

  it('the other rules stay: not empty, each a namespace name or "*", a list', () => {
    expect(loadError('discovery: { kubernetes: { namespaces: [] } }').message).toContain(
      'discovery.kubernetes.namespaces: expected at least one namespace, or ["*"] for every namespace',
    )
    for (const bad of ['"**"', '"redis-*"', 'Redis_System', '"*a"', '""']) {
      const err = loadError(`discovery: { kubernetes: { namespaces: [ok, ${bad}] } }`)
      expect(err.issues.map((i) => i.path), bad).toEqual(['discovery.kubernetes.namespaces[1]'])
      expect(err.message, bad).toContain('expected a namespace name (lower-case letters, digits and "-"')
      expect(err.message, bad).toContain('or "*" for every namespace')
    }
    expect(loadError('discovery: { kubernetes: { namespaces: "*" } }').message).toContain('discovery.kubernetes.namespaces: expected a list')
  })
})
