// The label selector parser (discovery.kubernetes.labelSelector): what it accepts and how it reads
// it, what it refuses and where, the canonical text sent to the API server, and the selector the
// gateway sends for labelSelector + optIn. test/kubernetes/discovery-scope.test.ts runs the same
// accept/refuse table against a real kube-apiserver.
import { describe, expect, it } from 'vitest'
import {
  LabelSelectorError,
  OPT_IN_LABEL,
  checkDiscoverySelector,
  discoverySelector,
  formatLabelSelector,
  labelKeyProblem,
  parseLabelSelector,
  requirementMatches,
} from './label-selector.js'
import { ACCEPTED, REFUSED } from '../../test/helpers/label-selector-cases.js'

describe('parseLabelSelector: what it accepts', () => {
  it('accepts the equality- and set-based syntax kube-apiserver accepts', () => {
    for (const s of ACCEPTED) expect(() => parseLabelSelector(s), JSON.stringify(s)).not.toThrow()
  })

  it('reads each requirement as the API server does', () => {
    expect(parseLabelSelector('')).toEqual([])
    expect(parseLabelSelector('  ')).toEqual([])
    expect(parseLabelSelector(' team = payments , !legacy , tier in ( b , a ) , x , y notin (), z==1, w!=2, n>5, m<6, e=')).toEqual([
      { key: 'team', operator: '=', values: ['payments'] },
      { key: 'legacy', operator: '!', values: [] },
      { key: 'tier', operator: 'in', values: ['a', 'b'] },
      { key: 'x', operator: 'exists', values: [] },
      { key: 'y', operator: 'notin', values: [''] },
      { key: 'z', operator: '==', values: ['1'] },
      { key: 'w', operator: '!=', values: ['2'] },
      { key: 'n', operator: '>', values: ['5'] },
      { key: 'm', operator: '<', values: ['6'] },
      { key: 'e', operator: '=', values: [''] },
    ])
    // Empty members of a value list are the empty value; duplicates collapse.
    expect(parseLabelSelector('k in (,a,,a,)')).toEqual([{ key: 'k', operator: 'in', values: ['', 'a'] }])
    // `in` and `notin` are keywords only where an operator is expected.
    expect(parseLabelSelector('in in (notin)')).toEqual([{ key: 'in', operator: 'in', values: ['notin'] }])
  })
})

describe('parseLabelSelector: what it refuses, and where', () => {
  it.each(REFUSED)('%j', (selector, reason, at) => {
    let error: unknown
    try {
      parseLabelSelector(selector)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(LabelSelectorError)
    const e = error as LabelSelectorError
    expect(e.message).toMatch(reason)
    expect(e.index + 1).toBe(at)
    expect(e.message).toContain(`(at character ${at} of ${JSON.stringify(selector)})`)
  })

  it('is linear: a long selector parses at once, a long bad one fails at once', () => {
    const long = Array.from({ length: 20_000 }, (_, i) => `k${i}=v`).join(',')
    const t0 = performance.now()
    expect(parseLabelSelector(long)).toHaveLength(20_000)
    expect(() => parseLabelSelector(`${'('.repeat(100_000)}`)).toThrow(LabelSelectorError)
    expect(performance.now() - t0).toBeLessThan(2_000)
  })

  it('label keys: [prefix/]name as Kubernetes defines them', () => {
    for (const ok of ['a', 'A1', 'a.b-c_d', 'redis-gateway.io/expose', 'kubernetes.io/service-name']) expect(labelKeyProblem(ok), ok).toBeUndefined()
    for (const bad of ['', 'a_', '_a', 'a b', 'x/', 'UPPER.io/a', 'a..b/c', 'a/b/c']) expect(labelKeyProblem(bad), bad).toBeDefined()
  })
})

describe('formatLabelSelector', () => {
  it('writes the canonical form, which parses back to the same requirements', () => {
    const text = ' team = payments , !legacy , tier in ( b , a ) , x , y notin (), z==1, n>5, e='
    const reqs = parseLabelSelector(text)
    const canonical = formatLabelSelector(reqs)
    expect(canonical).toBe('team=payments,!legacy,tier in (a,b),x,y notin (),z==1,n>5,e=')
    expect(parseLabelSelector(canonical)).toEqual(reqs)
    for (const s of ACCEPTED) expect(parseLabelSelector(formatLabelSelector(parseLabelSelector(s))), s).toEqual(parseLabelSelector(s))
  })
})

describe('requirementMatches', () => {
  const m = (sel: string, labels: Record<string, string>): boolean => parseLabelSelector(sel).every((r) => requirementMatches(r, labels))
  it('has the API server semantics: notin and != also match a missing label; > and < compare integers', () => {
    expect(m('team=payments', { team: 'payments' })).toBe(true)
    expect(m('team=payments', {})).toBe(false)
    expect(m('team!=payments', {})).toBe(true)
    expect(m('team notin (a)', {})).toBe(true)
    expect(m('team in (a,b)', { team: 'b' })).toBe(true)
    expect(m('team', { team: '' })).toBe(true)
    expect(m('!team', { team: '' })).toBe(false)
    expect(m('tier>9', { tier: '10' })).toBe(true)
    expect(m('tier<9', { tier: '10' })).toBe(false)
    expect(m('tier>9', { tier: 'ten' })).toBe(false)
    expect(m('toString', {})).toBe(false)
  })
})

describe('the selector discovery sends', () => {
  it('is the labelSelector, in canonical form; "" for everything', () => {
    expect(discoverySelector('', false)).toBe('')
    expect(discoverySelector('  ', false)).toBe('')
    expect(discoverySelector(' team = payments ', false)).toBe('team=payments')
    expect(discoverySelector('team in (b,a), !legacy', false)).toBe('team in (a,b),!legacy')
  })

  it('optIn ANDs redis-gateway.io/expose=true into it (once)', () => {
    expect(OPT_IN_LABEL).toBe('redis-gateway.io/expose')
    expect(discoverySelector('', true)).toBe('redis-gateway.io/expose=true')
    expect(discoverySelector('team=payments', true)).toBe('team=payments,redis-gateway.io/expose=true')
    expect(discoverySelector('redis-gateway.io/expose=true,team=payments', true)).toBe('redis-gateway.io/expose=true,team=payments')
  })

  it('refuses a malformed selector, and labels the EndpointSlice controller does not copy from the Service', () => {
    expect(() => discoverySelector('team in (a', false)).toThrow(LabelSelectorError)
    for (const key of ['kubernetes.io/service-name', 'endpointslice.kubernetes.io/managed-by', 'service.kubernetes.io/headless']) {
      expect(() => checkDiscoverySelector(`${key}=x`), key).toThrow(
        `label '${key}' cannot be selected on: the EndpointSlice controller sets it on each slice itself`,
      )
      expect(() => checkDiscoverySelector(`team=a,!${key}`), key).toThrow(/cannot be selected on/)
    }
  })
})
