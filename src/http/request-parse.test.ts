// Tests for parsing the Upstash REST request forms (README "API (data plane)"): every URL form on the raw request
// target, names that must never escape their route, and the JSON body rules with the exact
// messages clients see.

import { describe, expect, it } from 'vitest'
import { BadRequestError, GatewayError, NotFoundError, TooLargeError, statusOf } from '../core/errors.js'
import fc from 'fast-check'
import { NAME_RE } from '../core/topology.js'
import { checkArgCount, isName, parseBatchBody, parseCommandBody, parseUrl, type Arg, type BodyLimits, type ParsedUrl, routeTemplate } from './request-parse.js'

/** The defaults (src/config/schema.ts). */
const LIMITS: BodyLimits = { maxArgs: 100_000, maxCommands: 10_000 }

/** The error thrown by fn; fails the test when nothing is thrown. */
function thrown(fn: () => unknown): GatewayError {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError)
    return e as GatewayError
  }
  throw new Error('expected an error, got none')
}

function expectBadRequest(fn: () => unknown, message: string): void {
  const e = thrown(fn)
  expect(e).toBeInstanceOf(BadRequestError)
  expect(statusOf(e.code)).toBe(400)
  expect(e.message).toContain(message)
}

function expectNotFound(url: string): GatewayError {
  const e = thrown(() => parseUrl(url))
  expect(e).toBeInstanceOf(NotFoundError)
  expect(statusOf(e.code)).toBe(404)
  return e
}

describe('parseUrl: forms', () => {
  it('POST {base}: one command', () => {
    expect(parseUrl('/v1/instances/orders')).toEqual<ParsedUrl>({
      kind: 'instance',
      name: 'orders',
      form: { type: 'command' },
      token: null,
      queryArgs: [],
    })
    expect(parseUrl('/v1/groups/sessions')).toMatchObject({ kind: 'group', name: 'sessions', form: { type: 'command' } })
  })

  it('a single trailing slash is the same as none', () => {
    expect(parseUrl('/v1/instances/orders/').form).toEqual({ type: 'command' })
    expect(parseUrl('/v1/instances/orders/pipeline/').form).toEqual({ type: 'pipeline' })
    expect(parseUrl('/v1/instances/orders/get/k/').form).toEqual({ type: 'path', args: ['get', 'k'] })
  })

  it('pipeline and multi-exec, for instances and groups', () => {
    expect(parseUrl('/v1/instances/orders/pipeline').form).toEqual({ type: 'pipeline' })
    expect(parseUrl('/v1/instances/orders/multi-exec').form).toEqual({ type: 'multi-exec' })
    expect(parseUrl('/v1/groups/g1/pipeline')).toMatchObject({ kind: 'group', name: 'g1', form: { type: 'pipeline' } })
    expect(parseUrl('/v1/groups/g1/multi-exec')).toMatchObject({ kind: 'group', form: { type: 'multi-exec' } })
  })

  it('subscribe and psubscribe with several (percent-decoded) names', () => {
    expect(parseUrl('/v1/instances/chat/subscribe/news/sport%2Fscores/a%20b').form).toEqual({
      type: 'subscribe',
      pattern: false,
      names: ['news', 'sport/scores', 'a b'],
    })
    expect(parseUrl('/v1/instances/chat/psubscribe/news.*/h%3Fllo').form).toEqual({
      type: 'subscribe',
      pattern: true,
      names: ['news.*', 'h?llo'],
    })
    expect(parseUrl('/v1/instances/chat/subscribe/one').form).toEqual({ type: 'subscribe', pattern: false, names: ['one'] })
    expect(parseUrl('/v1/instances/chat/subscribe').form).toEqual({ type: 'subscribe', pattern: false, names: [] })
  })

  it('path form: command and percent-decoded arguments, %2F stays inside its argument', () => {
    expect(parseUrl('/v1/instances/orders/set/user%2F42/hello%20world').form).toEqual({
      type: 'path',
      args: ['set', 'user/42', 'hello world'],
    })
    expect(parseUrl('/v1/instances/orders/get/a%2Fb%2Fc').form).toEqual({ type: 'path', args: ['get', 'a/b/c'] })
    // Unicode, %25 (a literal %), and + which is a literal plus in a path (not a space).
    expect(parseUrl('/v1/instances/orders/set/caf%C3%A9/100%25/a+b').form).toEqual({
      type: 'path',
      args: ['set', 'café', '100%', 'a+b'],
    })
    // Dots are plain characters of an argument, never a path traversal.
    expect(parseUrl('/v1/instances/orders/get/../..').form).toEqual({ type: 'path', args: ['get', '..', '..'] })
  })

  it('path form: empty segments are empty arguments', () => {
    expect(parseUrl('/v1/instances/orders/set/k//').form).toEqual({ type: 'path', args: ['set', 'k', ''] })
    expect(parseUrl('/v1/instances/orders/echo//x').form).toEqual({ type: 'path', args: ['echo', '', 'x'] })
    expect(parseUrl('/v1/instances/orders/set///').form).toEqual({ type: 'path', args: ['set', '', ''] })
  })

  it('pipeline and multi-exec only as the whole remainder; otherwise they are path commands', () => {
    expect(parseUrl('/v1/instances/orders/pipeline/x').form).toEqual({ type: 'path', args: ['pipeline', 'x'] })
  })
})

describe('parseUrl: query string', () => {
  it('extracts _token and keeps it out of the arguments', () => {
    expect(parseUrl('/v1/instances/orders?_token=abc')).toMatchObject({ token: 'abc', queryArgs: [] })
    expect(parseUrl('/v1/instances/orders/pipeline?_token=abc').form).toEqual({ type: 'pipeline' })
    expect(parseUrl('/v1/instances/orders/get/k?_token=t%2Bx%3D')).toMatchObject({
      token: 't+x=',
      queryArgs: [],
      form: { type: 'path', args: ['get', 'k'] },
    })
    expect(parseUrl('/v1/instances/orders')).toMatchObject({ token: null })
  })

  it('other parameters become KEY VALUE arguments in order, around _token', () => {
    const p = parseUrl('/v1/instances/orders/set/k/v?EX=100&_token=tok&PX=5&GET=x')
    expect(p.token).toBe('tok')
    expect(p.queryArgs).toEqual(['EX', '100', 'PX', '5', 'GET', 'x'])
  })

  it('decodes + as space and percent-escapes in query keys and values', () => {
    expect(parseUrl('/v1/instances/orders/set/k/v?a+b=c%20d&e%2Ff=%E2%82%AC').queryArgs).toEqual(['a b', 'c d', 'e/f', '€'])
  })

  it('a ? inside the path after decoding does not start the query', () => {
    const p = parseUrl('/v1/instances/orders/get/what%3F?x=1')
    expect(p.form).toEqual({ type: 'path', args: ['get', 'what?'] })
    expect(p.queryArgs).toEqual(['x', '1'])
  })
})

describe('parseUrl: routes and names', () => {
  it.each([
    '/',
    '/v1',
    '/v1/',
    '/v1/instances',
    '/v1/groups',
    '/v1/instancesorders',
    '/v2/instances/orders',
    '/V1/instances/orders',
    '/v1/Instances/orders',
    '/v1/other/orders',
    '/admin/routes',
    '/metrics',
    '//v1/instances/orders',
  ])('404 outside /v1/instances|groups: %s', (url) => {
    expectNotFound(url)
  })

  it.each([
    ['empty name (trailing slash)', '/v1/instances/'],
    ['empty name (double slash)', '/v1/instances//get/k'],
    ['..', '/v1/instances/../get/k'],
    ['.', '/v1/instances/./get/k'],
    ['%2e%2e', '/v1/instances/%2e%2e/get/k'],
    ['%2E%2E in a group', '/v1/groups/%2E%2E'],
    ['a%2Fb', '/v1/instances/a%2Fb'],
    ['a%2fb', '/v1/instances/a%2fb/pipeline'],
    ['upper-case', '/v1/instances/Orders'],
    ['64 characters', `/v1/instances/${'a'.repeat(64)}`],
    ['leading dash', '/v1/instances/-orders'],
    ['trailing dash', '/v1/instances/orders-'],
    ['underscore', '/v1/instances/my_orders'],
    ['dot', '/v1/instances/orders.eu'],
    ['host-like', '/v1/instances/redis.example.com:6379'],
    ['percent-encoded space', '/v1/instances/or%20ders'],
    ['invalid percent-encoding in the name', '/v1/instances/%zz'],
    ['encoded NUL', '/v1/instances/a%00b'],
  ])('bad name -> 404: %s', (_, url) => {
    expectNotFound(url)
  })

  it('accepts valid DNS-label names up to 63 characters', () => {
    expect(parseUrl(`/v1/instances/${'a'.repeat(63)}`).name).toBe('a'.repeat(63))
    expect(parseUrl('/v1/instances/a').name).toBe('a')
    expect(parseUrl('/v1/groups/orders-eu-1').name).toBe('orders-eu-1')
    expect(parseUrl('/v1/instances/0').name).toBe('0')
  })

  it('the 404 message names the (truncated) target, never echoing megabytes', () => {
    const e = expectNotFound(`/v1/instances/${'A'.repeat(10_000)}`)
    expect(e.message.length).toBeLessThan(200)
    expect(expectNotFound('/v1/groups/Bad').message).toContain("unknown group 'Bad'")
  })
})

describe('parseUrl: invalid percent-encoding -> 400', () => {
  it.each([
    ['bad hex in an argument', '/v1/instances/orders/get/%zz'],
    ['truncated escape', '/v1/instances/orders/get/abc%4'],
    ['lone %', '/v1/instances/orders/set/k/%'],
    ['truncated UTF-8 sequence', '/v1/instances/orders/get/%E2%82'],
    ['encoded surrogate', '/v1/instances/orders/get/%ED%A0%80'],
  ])('%s', (_, url) => {
    expectBadRequest(() => parseUrl(url), 'invalid percent-encoding')
  })

  it.each([
    ['bad hex in a query value', '/v1/instances/orders/set/k/v?EX=%zz'],
    ['truncated escape in a query key', '/v1/instances/orders/set/k/v?E%5=1'],
    ['invalid UTF-8 in a query value', '/v1/instances/orders/set/k/v?EX=%E2%82'],
    ['bad escape in _token', '/v1/instances/orders?_token=%zz'],
  ])('query string: %s', (_, url) => {
    expectBadRequest(() => parseUrl(url), 'invalid percent-encoding')
  })

  it('in the command name and in channel names', () => {
    expectBadRequest(() => parseUrl('/v1/instances/orders/g%zzet/k'), 'command has an invalid percent-encoding')
    expectBadRequest(() => parseUrl('/v1/instances/orders/get/%zz'), 'argument has an invalid percent-encoding')
    expectBadRequest(() => parseUrl('/v1/instances/chat/subscribe/ok/%zz'), 'channel has an invalid percent-encoding')
  })
})

describe('parseCommandBody', () => {
  it('strings pass through; numbers and booleans become their text', () => {
    expect(parseCommandBody('["SET","k","v","EX",100]', LIMITS)).toEqual(['SET', 'k', 'v', 'EX', '100'])
    expect(parseCommandBody('["set","k",1.5,-7,0,true,false]', LIMITS)).toEqual(['set', 'k', '1.5', '-7', '0', 'true', 'false'])
    expect(parseCommandBody('["GET",""]', LIMITS)).toEqual(['GET', ''])
    expect(parseCommandBody(' \n ["PING"] \n', LIMITS)).toEqual(['PING'])
    expect(parseCommandBody('["SET","k","\\u00e9\\n\\"q\\""]', LIMITS)).toEqual(['SET', 'k', 'é\n"q"'])
  })

  it('an integer beyond 2^53 is never silently rounded: sent as its exact text, or refused with 400', () => {
    // JSON.parse turns 9007199254740993 into 9007199254740992; sending that would change the value.
    for (const [body, text, where] of [
      ['["INCRBY","k",9007199254740993]', '9007199254740993', 'body[2]'],
      ['["SET","k",12345678901234567890]', '12345678901234567890', 'body[2]'],
    ] as const) {
      let args: Arg[] | undefined
      try {
        args = parseCommandBody(body, LIMITS)
      } catch (e) {
        expect(e).toBeInstanceOf(BadRequestError)
        expect((e as Error).message).toContain(where)
      }
      if (args !== undefined) expect(args[2]).toBe(text)
    }
    // Safe integers are exact either way.
    expect(parseCommandBody('["INCRBY","k",9007199254740991]', LIMITS)).toEqual(['INCRBY', 'k', '9007199254740991'])
    expect(parseCommandBody('["INCRBY","k",-9007199254740991]', LIMITS)).toEqual(['INCRBY', 'k', '-9007199254740991'])
  })

  it.each([
    ['empty body', '', 'request body is empty; expected a JSON array'],
    ['invalid JSON', '["SET","k"', 'request body is not valid JSON'],
    ['trailing garbage', '["PING"] x', 'request body is not valid JSON'],
    ['a JSON object', '{"cmd":"GET"}', 'body must be a JSON array like ["SET","key","value"]'],
    ['a JSON string', '"GET k"', 'body must be a JSON array'],
    ['a JSON number', '42', 'body must be a JSON array'],
    ['JSON null', 'null', 'body must be a JSON array'],
    ['empty command', '[]', 'body is an empty command'],
    ['nested array', '["SET","k",["v"]]', 'body[2] must be a string, number or boolean, got an array'],
    ['array as the name', '[["GET"],"k"]', 'body[0] must be a string, number or boolean, got an array'],
    ['nested object', '["SET","k",{"a":1}]', 'body[2] must be a string, number or boolean'],
    ['null argument', '["GET",null]', 'body[1] must be a string, number or boolean, got null'],
    ['non-finite number', '["SET","k",1e999]', 'body[2] is not a finite number'],
    ['negative non-finite number', '["INCRBYFLOAT","k",-1e999]', 'body[2] is not a finite number'],
    ['empty command name', '["","k"]', 'body has an empty command name'],
  ])('%s -> 400', (_, body, message) => {
    expectBadRequest(() => parseCommandBody(body, LIMITS), message)
  })
})

describe('parseBatchBody', () => {
  it('a list of commands, arguments converted like single commands', () => {
    expect(parseBatchBody('[["SET","k",1],["GET","k"],["EXPIRE","k",true]]', LIMITS)).toEqual([
      ['SET', 'k', '1'],
      ['GET', 'k'],
      ['EXPIRE', 'k', 'true'],
    ])
  })

  it.each([
    ['empty body', '', 'request body is empty'],
    ['invalid JSON', '[["GET","k"]', 'request body is not valid JSON'],
    ['an object', '{"commands":[]}', 'body must be a JSON array of commands like [["SET","k","v"],["GET","k"]]'],
    ['null', 'null', 'body must be a JSON array of commands'],
    ['empty list', '[]', 'body is an empty list of commands'],
    ['a flat command instead of a list', '["SET","k","v"]', 'body[0] must be a JSON array like ["SET","key","value"]'],
    ['null command', '[["GET","k"],null]', 'body[1] must be a JSON array'],
    ['object command', '[["GET","k"],{"0":"GET"}]', 'body[1] must be a JSON array'],
    ['empty command', '[["GET","k"],[]]', 'body[1] is an empty command'],
    ['nested array argument', '[["SET","k",["v"]]]', 'body[0][2] must be a string, number or boolean, got an array'],
    ['object argument', '[["PING"],["SET","k",{"v":1}]]', 'body[1][2] must be a string, number or boolean'],
    ['null argument', '[["SET","k",null]]', 'body[0][2] must be a string, number or boolean, got null'],
    ['non-finite number', '[["PING"],["SET","k",1e400]]', 'body[1][2] is not a finite number'],
    ['empty command name', '[["PING"],["","k"]]', 'body[1] has an empty command name'],
  ])('%s -> 400', (_, body, message) => {
    expectBadRequest(() => parseBatchBody(body, LIMITS), message)
  })
})

describe('routeTemplate (span names)', () => {
  it('names the route by the same rules as parseUrl, without names, commands or arguments', () => {
    expect(routeTemplate('/v1/instances/orders')).toBe('/v1/instances/{name}')
    expect(routeTemplate('/v1/instances/orders/?_token=t')).toBe('/v1/instances/{name}')
    expect(routeTemplate('/v1/groups/shop/pipeline')).toBe('/v1/groups/{name}/pipeline')
    expect(routeTemplate('/v1/instances/orders/multi-exec')).toBe('/v1/instances/{name}/multi-exec')
    expect(routeTemplate('/v1/instances/orders/SUBSCRIBE/news/sport')).toBe('/v1/instances/{name}/subscribe/{channels}')
    expect(routeTemplate('/v1/instances/orders/set/secret-key/secret-value')).toBe('/v1/instances/{name}/{command...}')
    expect(routeTemplate('/v1/instances/orders/pipeline/x')).toBe('/v1/instances/{name}/{command...}')
    expect(routeTemplate('/elsewhere/secret')).toBe('/{unknown}')
  })
})

describe('isName (the per-request check of an instance or group name)', () => {
  it('agrees with NAME_RE on names near the rules and on arbitrary strings', () => {
    const edge = ['', 'a', '-', 'a-', '-a', 'a-b', 'A', 'a_b', 'a.b', '0', '9z', 'a'.repeat(63), 'a'.repeat(64), `a${'-'.repeat(61)}a`, 'é', 'a b']
    for (const s of edge) expect(isName(s), JSON.stringify(s)).toBe(NAME_RE.test(s))
    const alphabet = fc.constantFrom(...'abz09-A_.%é '.split(''))
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: alphabet, maxLength: 70 })), (s) => isName(s) === NAME_RE.test(s)),
      { numRuns: 5000, seed: 8 },
    )
  })
})

describe('limits.maxArgs, limits.maxCommands and nesting, checked before the body is parsed', () => {
  function expectTooLarge(fn: () => unknown, message: string): void {
    const e = thrown(fn)
    expect(e).toBeInstanceOf(TooLargeError)
    expect(statusOf(e.code)).toBe(413)
    // Read whole: the connection is kept.
    expect(e.closeConnection).toBe(false)
    expect(e.message).toContain(message)
  }

  it('arguments and commands at the limits pass; one more is a 413 naming the limit and its key', () => {
    const limits: BodyLimits = { maxArgs: 40_000, maxCommands: 9_000 }
    const ping = (n: number): string => JSON.stringify(Array.from({ length: n }, () => ['PING']))
    expect(parseBatchBody(ping(9_000), limits)).toHaveLength(9_000)
    expectTooLarge(() => parseBatchBody(ping(9_001), limits), 'more than 9000 commands (limits.maxCommands)')
    const echo = (n: number): string => JSON.stringify(['ECHO', ...Array.from({ length: n - 1 }, () => 1)])
    expect(parseCommandBody(echo(40_000), limits)).toHaveLength(40_000)
    expectTooLarge(() => parseCommandBody(echo(40_001), limits), 'more than 40000 arguments (limits.maxArgs)')
    // All commands of a batch together.
    const sets = (n: number): string => JSON.stringify(Array.from({ length: n }, (_, i) => ['SET', `k${i}`, 'v', 'EX', 100]))
    expect(parseBatchBody(sets(8_000), limits)).toHaveLength(8_000)
    expectTooLarge(() => parseBatchBody(sets(8_001), limits), 'more than 40000 arguments (limits.maxArgs)')
  })

  it('the path form counts its segments, the POST body and the query pairs', () => {
    const limits: BodyLimits = { maxArgs: 4, maxCommands: 1 }
    expect(() => checkArgCount(4, limits)).not.toThrow()
    expectTooLarge(() => checkArgCount(5, limits), 'more than 4 arguments (limits.maxArgs)')
  })

  it('5 million [ are a 400 found in one pass, without a deep parse', () => {
    const bomb = '['.repeat(5_000_000)
    expectBadRequest(() => parseCommandBody(bomb, LIMITS), 'body nests arrays or objects too deep: a command is a flat array')
    expectBadRequest(() => parseBatchBody(bomb, LIMITS), 'body nests arrays or objects too deep: a list of commands is an array of flat arrays')
    expectBadRequest(() => parseCommandBody(`["SET","k",${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}]`, LIMITS), 'too deep')
    // One level too deep keeps the parse's answer, which names the element.
    const oneLevel = `["SET","k",["v"],"${'x'.repeat(20_000)}"]`
    expectBadRequest(() => parseCommandBody(oneLevel, LIMITS), 'body[2] must be a string, number or boolean, got an array')
  })

  it('brackets, commas, quotes and backslashes inside strings count for nothing', () => {
    const limits: BodyLimits = { maxArgs: 3, maxCommands: 2 }
    for (const text of ['[[[[', ']]]]', ',,,,,,', '\\', '\\\\', '\\"', '"[', '\\\\\\"],[', 'é[😀,']) {
      const body = JSON.stringify([['SET', text, text]])
      expect(body.length).toBeGreaterThan(2 * limits.maxArgs)
      expect(parseBatchBody(body, limits)).toEqual([['SET', text, text]])
    }
    // An unterminated string ends the scan; the parse reports the body.
    expectBadRequest(() => parseCommandBody(`["SET","k","${'['.repeat(20_000)}`, LIMITS), 'request body is not valid JSON')
  })

  it('agrees with counting the parsed body, element by element, in order (fast-check)', () => {
    // A reference over the parsed value, in document order: what the scan decides from the text.
    type Outcome = 'deep' | 'args' | 'commands' | 'ok'
    function reference(v: unknown, argDepth: 1 | 2, limits: BodyLimits): Outcome {
      let args = 0
      let commands = 0
      const count = (depth: number, by: number): Outcome | null => {
        if (depth === argDepth) args += by
        else if (depth === 1) commands += by
        return args > limits.maxArgs ? 'args' : commands > limits.maxCommands ? 'commands' : null
      }
      const walk = (x: unknown, depth: number): Outcome | null => {
        if (typeof x !== 'object' || x === null) return null
        const d = depth + 1
        if (d > argDepth + 1) return 'deep'
        const items = Array.isArray(x) ? x : Object.values(x)
        const first = count(d, 1)
        if (first !== null) return first
        if (items.length === 0) count(d, -1)
        for (let i = 0; i < items.length; i++) {
          const r = (i > 0 ? count(d, 1) : null) ?? walk(items[i], d)
          if (r !== null) return r
        }
        return null
      }
      return walk(v, 0) ?? 'ok'
    }
    const outcome = (fn: () => unknown): Outcome => {
      try {
        fn()
        return 'ok'
      } catch (e) {
        if (e instanceof TooLargeError) return e.message.includes('maxArgs') ? 'args' : 'commands'
        if (e instanceof BadRequestError && e.message.includes('too deep')) return 'deep'
        return 'ok' // any other 400 comes from the parse, after the scan let the body through
      }
    }
    const scalar = fc.oneof(fc.string({ unit: fc.constantFrom('a', '[', ']', '{', '}', ',', '"', '\\', ' ', 'é') }), fc.integer(), fc.boolean(), fc.constant(null))
    const value = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, fc.array(tie('v'), { maxLength: 5 }), fc.dictionary(fc.string({ maxLength: 3 }), tie('v'), { maxKeys: 3 })),
    })).v
    fc.assert(
      fc.property(value, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4 }), fc.constantFrom(0, 1), (v, maxArgs, maxCommands, indent) => {
        const limits = { maxArgs, maxCommands }
        const text = JSON.stringify(v, null, indent)
        // Short bodies are not scanned (they cannot exceed the limits): compare where the scan runs.
        if (text.length <= 2 * Math.min(maxArgs, maxCommands)) return
        expect(outcome(() => parseCommandBody(text, limits)), text).toBe(reference(v, 1, limits))
        expect(outcome(() => parseBatchBody(text, limits)), text).toBe(reference(v, 2, limits))
      }),
      { numRuns: 5000, seed: 15 },
    )
  })
})
