// Kubernetes label selectors (discovery.kubernetes.labelSelector), parsed the way kube-apiserver
// parses the `labelSelector` query parameter (k8s.io/apimachinery/pkg/labels, Parse: the same
// lexer, grammar, key and value rules), so that a selector the API server would refuse with 400 on
// every list is refused at config load instead, with the reason and the character it is at.
// test/kubernetes/discovery-scope.test.ts checks this parser against a real kube-apiserver.
//
//   selector    ::= "" | requirement ("," requirement)*
//   requirement ::= ["!"] KEY | KEY ("=" | "==" | "!=") VALUE | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")"
//                 | KEY (">" | "<") INTEGER
//
// KEY is [prefix "/"] name (prefix: a DNS subdomain, at most 253 characters; name: at most 63 of
// A-Z a-z 0-9 - _ ., alphanumeric at both ends). VALUE is empty or like a name. Blanks between
// tokens are ignored.

export type SelectorOperator = 'exists' | '!' | '=' | '==' | '!=' | 'in' | 'notin' | '>' | '<'

export interface LabelRequirement {
  readonly key: string
  readonly operator: SelectorOperator
  /** Sorted, without duplicates; empty for `exists` and `!`. */
  readonly values: readonly string[]
}

/** A malformed selector: the selector, where (0-based character index), and why. */
export class LabelSelectorError extends Error {
  constructor(
    readonly selector: string,
    readonly index: number,
    readonly reason: string,
  ) {
    super(`not a valid label selector: ${reason} (at character ${index + 1} of ${JSON.stringify(selector)})`)
    this.name = 'LabelSelectorError'
  }
}

/** The label that opts a Service in when `discovery.kubernetes.optIn` is true (value "true"). */
export const OPT_IN_LABEL = 'redis-gateway.io/expose'

/**
 * Labels the EndpointSlice controller sets on every slice itself instead of copying them from the
 * Service (k8s.io/endpointslice, setEndpointSliceLabels / isReservedLabelKey): a selector on them
 * would pick Services and their slices differently.
 */
export const SLICE_RESERVED_LABELS = [
  'kubernetes.io/service-name',
  'endpointslice.kubernetes.io/managed-by',
  'service.kubernetes.io/headless',
] as const

// ---------------------------------------------------------------------------------------------
// Lexer

type Tok = 'end' | 'id' | 'in' | 'notin' | '(' | ')' | ',' | '!' | '=' | '==' | '!=' | '>' | '<'

interface Token {
  readonly tok: Tok
  readonly text: string
  readonly at: number
}

const SYMBOLS: ReadonlySet<string> = new Set(['(', ')', ',', '!', '=', '==', '!=', '>', '<'])
const isSpecial = (c: string): boolean => '=!(),><'.includes(c)
const isBlank = (c: string): boolean => c === ' ' || c === '\t' || c === '\r' || c === '\n'

function lex(s: string): Token[] {
  const out: Token[] = []
  let i = 0
  for (;;) {
    while (i < s.length && isBlank(s[i]!)) i++
    const at = i
    if (i >= s.length) {
      out.push({ tok: 'end', text: '', at })
      return out
    }
    if (isSpecial(s[i]!)) {
      // Longest run of symbol characters that is a token: "!=" and "==" over "!" and "=".
      let end = i + 1
      if (end < s.length && SYMBOLS.has(s.slice(i, end + 1))) end++
      const text = s.slice(i, end)
      out.push({ tok: text as Tok, text, at })
      i = end
      continue
    }
    while (i < s.length && !isSpecial(s[i]!) && !isBlank(s[i]!)) i++
    const text = s.slice(at, i)
    out.push({ tok: text === 'in' || text === 'notin' ? text : 'id', text, at })
  }
}

// ---------------------------------------------------------------------------------------------
// Keys and values (k8s.io/apimachinery/pkg/util/validation: IsQualifiedName, IsValidLabelValue)

const NAME_CHARS = "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
const LABEL_NAME_RE = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/
const DNS1123_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const LABEL_VALUE_RE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/
const INT64_MAX = 9223372036854775807n

/** Why `key` is not a label key, or undefined when it is one. */
export function labelKeyProblem(key: string): string | undefined {
  const parts = key.split('/')
  if (parts.length > 2) return `label key '${key}' has more than one '/' (a key is [prefix/]name)`
  const name = parts.at(-1)!
  if (parts.length === 2) {
    const prefix = parts[0]!
    if (prefix === '') return `label key '${key}': the prefix before '/' must not be empty`
    if (prefix.length > 253) return `label key '${key}': the prefix must be at most 253 characters`
    if (!DNS1123_SUBDOMAIN_RE.test(prefix)) {
      return `label key '${key}': the prefix must be a DNS subdomain (lower-case letters, digits, '-' and '.', alphanumeric at both ends)`
    }
  }
  if (name === '') return `label key '${key}': the name must not be empty`
  if (name.length > 63) return `label key '${key}': the name must be at most 63 characters`
  if (!LABEL_NAME_RE.test(name)) return `label key '${key}': the name must be ${NAME_CHARS}`
  return undefined
}

function labelValueProblem(value: string): string | undefined {
  if (value.length > 63) return 'must be at most 63 characters'
  if (!LABEL_VALUE_RE.test(value)) return `must be empty or ${NAME_CHARS}`
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Parser (the same recursive descent as apimachinery's, so it accepts and refuses the same inputs)

const describe = (t: Token): string => (t.tok === 'end' ? 'the end of the selector' : `'${t.text}'`)

/** Parses a label selector; throws LabelSelectorError. "" (or blanks) selects everything: []. */
export function parseLabelSelector(selector: string): LabelRequirement[] {
  const tokens = lex(selector)
  let pos = 0
  // In value position the keywords `in` and `notin` are plain identifiers (`x in (in)`).
  const peek = (asValue: boolean): Token => {
    const t = tokens[pos]!
    return asValue && (t.tok === 'in' || t.tok === 'notin') ? { ...t, tok: 'id' } : t
  }
  const next = (asValue: boolean): Token => {
    const t = peek(asValue)
    if (t.tok !== 'end') pos++
    return t
  }
  const fail = (t: Token, reason: string): never => {
    throw new LabelSelectorError(selector, t.at, reason)
  }

  const requirement = (): LabelRequirement => {
    let t = next(true)
    let negated = false
    if (t.tok === '!') {
      negated = true
      t = next(true)
    }
    if (t.tok !== 'id') fail(t, `found ${describe(t)}, expected a label key`)
    const keyToken = t
    const key = t.text
    const keyProblem = labelKeyProblem(key)
    if (keyProblem !== undefined) fail(t, keyProblem)
    if (negated) return { key, operator: '!', values: [] }
    const after = peek(true)
    if (after.tok === 'end' || after.tok === ',') return { key, operator: 'exists', values: [] }

    const opToken = next(false)
    let operator: SelectorOperator
    switch (opToken.tok) {
      case 'in':
      case 'notin':
      case '=':
      case '==':
      case '!=':
      case '>':
      case '<':
        operator = opToken.tok
        break
      default:
        return fail(opToken, `found ${describe(opToken)} after key '${key}', expected an operator: =, ==, !=, in, notin, >, <`)
    }

    const values = new Set<string>()
    const valueTokens: Token[] = []
    if (operator === 'in' || operator === 'notin') {
      const open = next(true)
      if (open.tok !== '(') fail(open, `found ${describe(open)} after '${operator}', expected '('`)
      const first = peek(true)
      if (first.tok === ')') {
        next(true)
        values.add('')
      } else if (first.tok === 'id' || first.tok === ',') {
        // A list of possibly empty values: "(a,,b)", "(,a)" and "(a,)" include "".
        for (;;) {
          const v = next(true)
          if (v.tok === 'id') {
            values.add(v.text)
            valueTokens.push(v)
            const sep = peek(true)
            if (sep.tok === ',') continue
            if (sep.tok === ')') break
            fail(sep, `found ${describe(sep)} in the values of '${key}', expected ',' or ')'`)
          } else if (v.tok === ',') {
            if (values.size === 0) values.add('')
            const n = peek(true)
            if (n.tok === ')') {
              values.add('')
              break
            }
            if (n.tok === ',') values.add('')
          } else {
            fail(v, `found ${describe(v)} in the values of '${key}', expected a value, ',' or ')'`)
          }
        }
        next(true) // ')'
      } else {
        fail(first, `found ${describe(first)} after '${operator} (', expected a value, ',' or ')'`)
      }
    } else {
      const v = peek(true)
      if (v.tok === 'end' || v.tok === ',') values.add('')
      else {
        next(true)
        if (v.tok !== 'id') fail(v, `found ${describe(v)} after '${key}${operator}', expected a value`)
        values.add(v.text)
        valueTokens.push(v)
      }
    }

    const at = (value: string): Token => valueTokens.find((v) => v.text === value) ?? keyToken
    if (operator === '>' || operator === '<') {
      for (const v of values) {
        if (!/^\d+$/.test(v) || BigInt(v) > INT64_MAX) fail(at(v), `'${key}${operator}${v}': the value of '>' and '<' must be a whole number (64-bit)`)
      }
    }
    for (const v of values) {
      const problem = labelValueProblem(v)
      if (problem !== undefined) fail(at(v), `value '${v}' of label '${key}' ${problem}`)
    }
    return { key, operator, values: [...values].sort() }
  }

  const out: LabelRequirement[] = []
  for (;;) {
    const t = peek(true)
    if (t.tok === 'end') return out
    if (t.tok !== 'id' && t.tok !== '!') fail(t, `found ${describe(t)}, expected a label key, '!' or the end of the selector`)
    out.push(requirement())
    const sep = next(true)
    if (sep.tok === 'end') return out
    if (sep.tok !== ',') fail(sep, `found ${describe(sep)}, expected ',' or the end of the selector`)
    const n = peek(true)
    if (n.tok !== 'id' && n.tok !== '!') fail(n, `found ${describe(n)} after ',', expected a label key or '!'`)
  }
}

/** The canonical text of parsed requirements (what goes into `labelSelector=`). */
export function formatLabelSelector(reqs: readonly LabelRequirement[]): string {
  return reqs
    .map((r) => {
      switch (r.operator) {
        case 'exists':
          return r.key
        case '!':
          return `!${r.key}`
        case 'in':
        case 'notin':
          return `${r.key} ${r.operator} (${r.values.join(',')})`
        default:
          return `${r.key}${r.operator}${r.values[0] ?? ''}`
      }
    })
    .join(',')
}

/** Whether a requirement holds for an object's labels (as apimachinery's Requirement.Matches). */
export function requirementMatches(r: LabelRequirement, labels: Readonly<Record<string, string>>): boolean {
  const has = Object.hasOwn(labels, r.key)
  const v = has ? labels[r.key]! : undefined
  switch (r.operator) {
    case 'exists':
      return has
    case '!':
      return !has
    case '=':
    case '==':
    case 'in':
      return v !== undefined && r.values.includes(v)
    case '!=':
    case 'notin':
      return v === undefined || !r.values.includes(v)
    case '>':
    case '<': {
      if (v === undefined || !/^[+-]?\d+$/.test(v)) return false
      const diff = BigInt(v) - BigInt(r.values[0] ?? '0')
      return r.operator === '>' ? diff > 0n : diff < 0n
    }
  }
}

/**
 * Checks discovery.kubernetes.labelSelector: a selector the API server accepts, on labels that
 * Services and their EndpointSlices both carry. Throws with the reason.
 */
export function checkDiscoverySelector(selector: string): LabelRequirement[] {
  const reqs = parseLabelSelector(selector)
  for (const r of reqs) {
    if ((SLICE_RESERVED_LABELS as readonly string[]).includes(r.key)) {
      throw new Error(
        `label '${r.key}' cannot be selected on: the EndpointSlice controller sets it on each slice itself ` +
          "instead of copying it from the Service, so Services and their EndpointSlices would be selected differently",
      )
    }
  }
  return reqs
}

/**
 * The selector the gateway sends with every list and watch of Services and EndpointSlices:
 * `labelSelector`, and with `optIn` also `redis-gateway.io/expose=true` (ANDed). "" selects all.
 */
export function discoverySelector(labelSelector: string, optIn: boolean): string {
  const reqs = checkDiscoverySelector(labelSelector)
  const optInReq: LabelRequirement = { key: OPT_IN_LABEL, operator: '=', values: ['true'] }
  const already = reqs.some((r) => r.key === OPT_IN_LABEL && (r.operator === '=' || r.operator === '==') && r.values[0] === 'true')
  return formatLabelSelector(optIn && !already ? [...reqs, optInReq] : reqs)
}
