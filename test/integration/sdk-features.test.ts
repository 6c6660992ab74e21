// The official @upstash/redis SDK, used unchanged, against the gateway against a real
// redis-server: the SDK's own features (JSON values, base64 response encoding and its absence,
// auto-pipelining, explicit pipelines and transactions, error messages, read-your-writes) and
// the awkward payloads (unicode, binary-ish text, a 5 MiB value).

import { randomBytes } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import { errors } from '@upstash/redis'
import { READ_TOKEN, WRITE_TOKEN } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'
import { requestCount, useSdkEnv } from './sdk-env.js'

const env = useSdkEnv()

const WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'

describe('SDK values', () => {
  test('JSON objects, arrays and numbers round-trip as JSON text in Redis', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const obj = { a: 1, b: [1, 2], c: { d: 'x', e: null, f: true }, g: 'ü' }
    expect(await sdk.set(`${p}obj`, obj)).toBe('OK')
    expect(await env.direct.get(`${p}obj`)).toBe(JSON.stringify(obj))
    expect(await sdk.get(`${p}obj`)).toEqual(obj)

    expect(await sdk.set(`${p}arr`, [1, 'two', { three: 3 }])).toBe('OK')
    expect(await sdk.get(`${p}arr`)).toEqual([1, 'two', { three: 3 }])

    expect(await sdk.set(`${p}num`, 42)).toBe('OK')
    expect(await env.direct.get(`${p}num`)).toBe('42')
    expect(await sdk.get(`${p}num`)).toBe(42)
    expect(await sdk.set(`${p}bool`, true)).toBe('OK')
    expect(await sdk.get(`${p}bool`)).toBe(true)

    // A JSON object as a hash field value and a list element.
    expect(await sdk.hset(`${p}h`, { profile: { name: 'ann', tags: ['x'] } })).toBe(1)
    expect(await sdk.hget(`${p}h`, 'profile')).toEqual({ name: 'ann', tags: ['x'] })
    expect(await sdk.hgetall(`${p}h`)).toEqual({ profile: { name: 'ann', tags: ['x'] } })
    expect(await sdk.rpush(`${p}l`, { i: 1 }, { i: 2 })).toBe(2)
    expect(await sdk.lrange(`${p}l`, 0, -1)).toEqual([{ i: 1 }, { i: 2 }])
  })

  test('unicode keys and values: emoji, CJK, combining characters, RTL, astral planes', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const samples = [
      '😀🎉',
      '中文字符，日本語のテキスト、한국어',
      'e\u0301 n\u0303 a\u030a', // combining accents (not NFC-normalised)
      '\u00e9', // precomposed é, must stay distinct from e + U+0301
      '👨‍👩‍👧‍👦 family (ZWJ sequence)',
      '𠜎𠜱𠝹 (CJK extension B, astral plane)',
      'مرحبا بالعالم',
      '\u2028\u2029 line/paragraph separators',
    ]
    for (const [i, value] of samples.entries()) {
      const key = `${p}ключ:${i}:${value}`
      expect(await sdk.set(key, value)).toBe('OK')
      // Bytes in Redis are exactly the UTF-8 of what the SDK was given, key and value.
      expect(await env.direct.getBuffer(Buffer.from(key, 'utf8'))).toEqual(Buffer.from(value, 'utf8'))
      expect(await sdk.get(key)).toBe(value)
    }
    // Precomposed and decomposed forms are different keys.
    await sdk.set(`${p}\u00e9`, 'precomposed')
    await sdk.set(`${p}e\u0301`, 'decomposed')
    expect(await sdk.mget(`${p}\u00e9`, `${p}e\u0301`)).toEqual(['precomposed', 'decomposed'])

    // Unicode in hash fields, set members, sorted-set members, written directly, read via the SDK.
    await env.direct.hset(`${p}h`, '名前', '太郎', '🔑', '🗝️')
    expect(await sdk.hgetall(`${p}h`)).toEqual({ 名前: '太郎', '🔑': '🗝️' })
    await env.direct.sadd(`${p}s`, '🍎', '🍐')
    expect((await sdk.smembers(`${p}s`)).sort()).toEqual(['🍎', '🍐'].sort())
    await env.direct.zadd(`${p}z`, 1, 'α', 2, 'β')
    expect(await sdk.zrange(`${p}z`, 0, -1, { withScores: true })).toEqual(['α', 1, 'β', 2])
    // Lengths are byte lengths in Redis.
    expect(await sdk.strlen(`${p}ключ:0:😀🎉`)).toBe(8)
  })

  test('binary-ish strings: NUL, control characters, latin-1 range, quotes, backslashes', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const values = [
      'a\u0000b\u0000', // NUL bytes
      '\u0001\u0002\u0003\u001f\u007f',
      '\u0080\u00ff\u00fe latin-1 range',
      'tab\tcr\rlf\ncrlf\r\n',
      '"quoted" \\back\\slash\\ \'single\'',
      '{"looks":"like json"', // invalid JSON: must come back as the same string
      'SGVsbG8=', // valid base64 text: must not be decoded twice
      '', // empty string
    ]
    for (const [i, value] of values.entries()) {
      const key = `${p}bin:${i}`
      expect(await sdk.set(key, value)).toBe('OK')
      expect(await env.direct.getBuffer(key)).toEqual(Buffer.from(value, 'utf8'))
      expect(await sdk.get(key)).toBe(value)
    }
    expect(await sdk.mget(...values.map((_, i) => `${p}bin:${i}`))).toEqual(values)
  })

  test('the value "OK" is returned as "OK" at top level and inside array replies (mget, lrange, hgetall, smembers)', async () => {
    // With base64 encoding the status reply OK is sent as the plain text "OK"; the SDK keeps a
    // top-level "OK" as is but base64-decodes every string inside an array (atob("OK") is "8").
    const sdk = env.sdk()
    const p = env.prefix()
    expect(await sdk.set(`${p}a`, 'OK')).toBe('OK')
    expect(await env.direct.get(`${p}a`)).toBe('OK')
    expect(await sdk.get(`${p}a`)).toBe('OK')
    await env.direct.set(`${p}b`, 'x')
    expect(await sdk.mget(`${p}a`, `${p}b`)).toEqual(['OK', 'x'])
    await env.direct.rpush(`${p}l`, 'OK', 'fine')
    expect(await sdk.lrange(`${p}l`, 0, -1)).toEqual(['OK', 'fine'])
    await env.direct.hset(`${p}h`, 'status', 'OK')
    expect(await sdk.hgetall(`${p}h`)).toEqual({ status: 'OK' })
    await env.direct.sadd(`${p}s`, 'OK')
    expect(await sdk.smembers(`${p}s`)).toEqual(['OK'])
    // In a pipeline each item is its own top-level result: the status and the value both read "OK".
    const pipe = sdk.pipeline()
    pipe.set(`${p}c`, 'OK')
    pipe.get(`${p}c`)
    pipe.mget(`${p}c`, `${p}b`)
    expect(await pipe.exec()).toEqual(['OK', 'OK', ['OK', 'x']])
  })

  test('raw bytes written directly reach the SDK byte-exact through the base64 encoding', async () => {
    const sdk = env.sdk()
    const k = `${env.prefix()}raw`
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    await env.direct.set(k, bytes)
    // The SDK decodes base64 to bytes and then as UTF-8 (invalid sequences become U+FFFD).
    expect(await sdk.get(k)).toBe(new TextDecoder().decode(bytes))
    // The wire reply the SDK decoded is the base64 of exactly those bytes.
    const res = await fetch(env.baseUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${WRITE_TOKEN}`, 'upstash-encoding': 'base64' },
      body: JSON.stringify(['GET', k]),
    })
    expect(res.status).toBe(200)
    const body = (await res.json()) as { result: string }
    expect(Buffer.from(body.result, 'base64')).toEqual(bytes)
    expect(await sdk.strlen(k)).toBe(256)
  })

  test('a 5 MiB value round-trips (set, get, strlen)', async () => {
    const sdk = env.sdk()
    const k = `${env.prefix()}big`
    const size = 5 * 1024 * 1024
    const value = randomBytes((size / 4) * 3).toString('base64')
    expect(value.length).toBe(size)
    expect(await sdk.set(k, value)).toBe('OK')
    expect(await env.direct.strlen(k)).toBe(size)
    expect(await sdk.strlen(k)).toBe(size)
    const back = await sdk.get<string>(k)
    expect(back?.length).toBe(size)
    expect(back === value).toBe(true) // not toBe(value): a 5 MiB diff would drown the report
    expect((await env.direct.get(k)) === value).toBe(true)
  })
})

describe('SDK responseEncoding: false (plain UTF-8 JSON replies)', () => {
  test('strings, numbers, arrays, hashes and status replies without base64', async () => {
    const sdk = env.sdk({ responseEncoding: false })
    const p = env.prefix()
    expect(await sdk.set(`${p}s`, 'héllo 😀 世界')).toBe('OK')
    expect(await sdk.get(`${p}s`)).toBe('héllo 😀 世界')
    // The gateway really did answer in plain text: check the wire without the header.
    const res = await fetch(env.baseUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${WRITE_TOKEN}` },
      body: JSON.stringify(['GET', `${p}s`]),
    })
    expect(await res.json()).toEqual({ result: 'héllo 😀 世界' })

    expect(await sdk.set(`${p}obj`, { a: [1, 2] })).toBe('OK')
    expect(await sdk.get(`${p}obj`)).toEqual({ a: [1, 2] })
    expect(await sdk.incrby(`${p}n`, 7)).toBe(7)
    expect(await sdk.incrbyfloat(`${p}n`, 0.5)).toBe(7.5)
    expect(await sdk.mget(`${p}s`, `${p}none`, `${p}n`)).toEqual(['héllo 😀 世界', null, 7.5])
    expect(await sdk.hset(`${p}h`, { f1: 'v1', f2: '2' })).toBe(2)
    expect(await sdk.hgetall(`${p}h`)).toEqual({ f1: 'v1', f2: 2 })
    expect(await sdk.type(`${p}h`)).toBe('hash')
    expect(await sdk.rpush(`${p}l`, 'x', 'y')).toBe(2)
    expect(await sdk.lrange(`${p}l`, 0, -1)).toEqual(['x', 'y'])
    expect(await sdk.zadd(`${p}z`, { score: 1.5, member: 'm' })).toBe(1)
    expect(await sdk.zrange(`${p}z`, 0, -1, { withScores: true })).toEqual(['m', 1.5])

    const pipe = sdk.pipeline()
    pipe.get(`${p}s`)
    pipe.hget(`${p}h`, 'f1')
    pipe.exists(`${p}s`, `${p}none`)
    expect(await pipe.exec()).toEqual(['héllo 😀 世界', 'v1', 1])
  })
})

describe('SDK auto-pipelining', () => {
  test('with the default limits, 600 concurrent 20 KiB writes and then reads (one ~12 MiB batch each) all succeed', async () => {
    // The SDK batches every command issued in the same tick into one /pipeline request (up to
    // 1000 commands, reads and writes apart: AutoPipelineExecutor, MAX_PIPELINE_SIZE), so 600
    // concurrent 20 KiB SETs are one 12 MiB body, and 600 GETs one 12 MiB reply.
    const sdk = env.sdk({ enableAutoPipelining: true })
    const p = env.prefix()
    const n = 600
    const value = (i: number): string => `${i}:`.padEnd(20 * 1024, 'x')
    const before = (sdk as unknown as { pipelineCounter: number }).pipelineCounter
    const sets = await Promise.all(Array.from({ length: n }, (_, i) => sdk.set(`${p}big${i}`, value(i))))
    expect(sets).toEqual(Array.from({ length: n }, () => 'OK'))
    const gets = await Promise.all(Array.from({ length: n }, (_, i) => sdk.get<string>(`${p}big${i}`)))
    expect(gets.every((g, i) => g === value(i))).toBe(true)
    // One request each way.
    expect((sdk as unknown as { pipelineCounter: number }).pipelineCounter - before).toBe(2)
    expect(await env.direct.strlen(`${p}big${n - 1}`)).toBe(20 * 1024)
  })

  test('Promise.all of many commands: results in order, sent as /pipeline requests', async () => {
    const sdk = env.sdk({ enableAutoPipelining: true })
    const p = env.prefix()
    const n = 60
    const counted = (): Promise<[number, number, number]> =>
      Promise.all([
        requestCount(env.gw, { redis_instance: 'main', class: 'pipeline' }),
        requestCount(env.gw, { redis_instance: 'main', class: 'write' }),
        requestCount(env.gw, { redis_instance: 'main', class: 'read' }),
      ])
    const stats0 = await env.commandStats()
    const [pipe0, write0, read0] = await counted()

    // Writes: INCR on one counter. Order of the results is the order of the calls.
    const incrs = await Promise.all(Array.from({ length: n }, () => sdk.incr(`${p}counter`)))
    expect(incrs).toEqual(Array.from({ length: n }, (_, i) => i + 1))
    // Distinct keys and values, so a shuffle would show.
    const sets = await Promise.all(Array.from({ length: n }, (_, i) => sdk.set(`${p}k${i}`, `v${i}`)))
    expect(sets).toEqual(Array.from({ length: n }, () => 'OK'))
    // Reads in one batch.
    const gets = await Promise.all(Array.from({ length: n }, (_, i) => sdk.get(`${p}k${i}`)))
    expect(gets).toEqual(Array.from({ length: n }, (_, i) => `v${i}`))
    // A mixed batch of reads with different reply shapes.
    const mixed = await Promise.all([
      sdk.get(`${p}k0`),
      sdk.exists(`${p}k1`, `${p}none`),
      sdk.strlen(`${p}k59`),
      sdk.get(`${p}none`),
      sdk.mget(`${p}k2`, `${p}k3`),
      sdk.get(`${p}counter`),
    ])
    expect(mixed).toEqual(['v0', 1, 3, null, ['v2', 'v3'], n])

    const stats1 = await env.commandStats()
    // Every command reached Redis exactly once.
    expect((stats1['incr'] ?? 0) - (stats0['incr'] ?? 0)).toBe(n)
    expect((stats1['set'] ?? 0) - (stats0['set'] ?? 0)).toBe(n)

    // The SDK batched: a handful of HTTP requests, all of them /pipeline, none single-command.
    const clientPipelines = (sdk as unknown as { pipelineCounter: number }).pipelineCounter
    expect(clientPipelines).toBeGreaterThanOrEqual(4)
    expect(clientPipelines).toBeLessThanOrEqual(8)
    // Metrics are counted once the reply is written; the last one may trail the SDK's promise.
    const [pipe1, write1, read1] = await waitFor(
      async () => {
        const c = await counted()
        return c[0] >= pipe0 + clientPipelines ? c : null
      },
      { message: 'pipeline requests counted' },
    )
    expect(pipe1 - pipe0).toBe(clientPipelines)
    expect(write1 - write0).toBe(0)
    expect(read1 - read0).toBe(0)
  })

  test('without auto-pipelining, concurrent commands are single requests and all succeed', async () => {
    const sdk = env.sdk({ enableAutoPipelining: false })
    const p = env.prefix()
    const n = 100
    const pipe0 = await requestCount(env.gw, { redis_instance: 'main', class: 'pipeline' })
    const write0 = await requestCount(env.gw, { redis_instance: 'main', class: 'write' })
    const incrs = await Promise.all(Array.from({ length: n }, () => sdk.incr(`${p}c`)))
    // Each INCR ran once: the replies are exactly 1..n (in whatever order they were served).
    expect([...incrs].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1))
    expect(await env.direct.get(`${p}c`)).toBe(String(n))
    await waitFor(async () => (await requestCount(env.gw, { redis_instance: 'main', class: 'write' })) - write0 >= n, {
      message: `${n} single write requests counted`,
    })
    expect((await requestCount(env.gw, { redis_instance: 'main', class: 'write' })) - write0).toBe(n)
    expect((await requestCount(env.gw, { redis_instance: 'main', class: 'pipeline' })) - pipe0).toBe(0)
  })

  test('an error in an auto-pipelined batch fails only its own promise, with the full Redis message', async () => {
    const sdk = env.sdk({ enableAutoPipelining: true })
    const p = env.prefix()
    await env.direct.hset(`${p}hash`, 'f', 'v')
    await env.direct.set(`${p}s`, 'ok')
    const results = await Promise.allSettled([sdk.get(`${p}s`), sdk.get(`${p}hash`), sdk.strlen(`${p}s`)])
    expect(results[0]).toEqual({ status: 'fulfilled', value: 'ok' })
    expect(results[1]!.status).toBe('rejected')
    const reason = (results[1] as PromiseRejectedResult).reason as Error
    expect(reason).toBeInstanceOf(errors.UpstashError)
    expect(reason.message).toContain(WRONGTYPE)
    expect(results[2]).toEqual({ status: 'fulfilled', value: 2 })
  })
})

describe('SDK explicit pipeline', () => {
  test('mixed success and a WRONGTYPE in the middle: exec() throws, later commands still ran', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const pipe = sdk.pipeline()
    pipe.set(`${p}a`, '1')
    pipe.hset(`${p}h`, { f: 'v' })
    pipe.get(`${p}h`) // WRONGTYPE
    pipe.incr(`${p}a`)
    const err = await pipe.exec().then(
      () => null,
      (e: unknown) => e as Error,
    )
    expect(err).toBeInstanceOf(errors.UpstashError)
    expect(err!.message).toBe(`Command 3 [ get ] failed: ${WRONGTYPE}`)
    // Not atomic and not aborted: the commands around the failure all ran, in order.
    expect(await env.direct.get(`${p}a`)).toBe('2')
    expect(await env.direct.hget(`${p}h`, 'f')).toBe('v')
  })

  test('exec({ keepErrors: true }) returns per-command results and errors', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    await env.direct.hset(`${p}h`, 'f', 'v')
    const pipe = sdk.pipeline()
    pipe.set(`${p}a`, 'x')
    pipe.get(`${p}h`) // WRONGTYPE
    pipe.get(`${p}a`)
    pipe.incr(`${p}a`) // not an integer
    pipe.hget(`${p}h`, 'f')
    const res = await pipe.exec({ keepErrors: true })
    expect(res).toHaveLength(5)
    expect(res[0]).toEqual({ result: 'OK', error: undefined })
    expect(res[1]!.error).toBe(WRONGTYPE)
    // As from Upstash (the SDK's own keepErrors test): a failed item has no result.
    expect(res[1]!.result).toBeUndefined()
    expect(res[2]).toEqual({ result: 'x', error: undefined })
    expect(res[3]!.error).toBe('ERR value is not an integer or out of range')
    expect(res[4]).toEqual({ result: 'v', error: undefined })
  })

  test('a 1000-command pipeline comes back complete and in order', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const pipe = sdk.pipeline()
    for (let i = 0; i < 500; i++) pipe.set(`${p}k${i}`, `v${i}`)
    for (let i = 0; i < 500; i++) pipe.get(`${p}k${i}`)
    const res = await pipe.exec()
    expect(res).toHaveLength(1000)
    expect(res.slice(0, 500).every((r) => r === 'OK')).toBe(true)
    expect(res.slice(500)).toEqual(Array.from({ length: 500 }, (_, i) => `v${i}`))
    expect(await env.direct.get(`${p}k499`)).toBe('v499')
  })

  test('a pipeline is not a transaction on the server', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const before = await env.commandStats()
    const pipe = sdk.pipeline()
    for (let i = 0; i < 10; i++) pipe.rpush(`${p}l`, i)
    pipe.lrange(`${p}l`, 0, -1)
    const res = await pipe.exec()
    expect(res).toEqual([...Array.from({ length: 10 }, (_, i) => i + 1), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    const after = await env.commandStats()
    expect((after['multi'] ?? 0) - (before['multi'] ?? 0)).toBe(0)
    expect((after['rpush'] ?? 0) - (before['rpush'] ?? 0)).toBe(10)
  })
})

describe('SDK multi (transactions)', () => {
  test('multi().exec() runs MULTI/EXEC on the server and returns the results array', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const before = await env.commandStats()
    const tx = sdk.multi()
    tx.set(`${p}a`, '10')
    tx.incrby(`${p}a`, 5)
    tx.get(`${p}a`)
    tx.rpush(`${p}l`, 'x', 'y')
    tx.lrange(`${p}l`, 0, -1)
    tx.hset(`${p}h`, { f: { nested: true } })
    tx.hgetall(`${p}h`)
    expect(await tx.exec()).toEqual(['OK', 15, 15, 2, ['x', 'y'], 1, { f: { nested: true } }])
    const after = await env.commandStats()
    expect((after['multi'] ?? 0) - (before['multi'] ?? 0)).toBe(1)
    expect((after['exec'] ?? 0) - (before['exec'] ?? 0)).toBe(1)
    expect(await env.direct.get(`${p}a`)).toBe('15')
  })

  test('transactions are atomic: concurrent multi blocks never interleave', async () => {
    const sdk = env.sdk({ enableAutoPipelining: false })
    const p = env.prefix()
    // Each transaction appends its id twice; an interleaving would split a pair.
    const rounds = 25
    await Promise.all(
      Array.from({ length: rounds }, (_, i) => {
        const tx = sdk.multi()
        tx.rpush(`${p}l`, `t${i}`)
        tx.rpush(`${p}l`, `t${i}`)
        return tx.exec()
      }),
    )
    const list = await env.direct.lrange(`${p}l`, 0, -1)
    expect(list).toHaveLength(rounds * 2)
    for (let i = 0; i < list.length; i += 2) expect(list[i + 1]).toBe(list[i])
    expect(new Set(list).size).toBe(rounds)
  })

  test('a runtime error inside the transaction: other commands applied, exec() reports it', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    await env.direct.hset(`${p}h`, 'f', 'v')
    const tx = sdk.multi()
    tx.set(`${p}a`, '1')
    tx.get(`${p}h`)
    tx.set(`${p}b`, '2')
    await expect(tx.exec()).rejects.toThrow(`Command 2 [ get ] failed: ${WRONGTYPE}`)
    expect(await env.direct.mget(`${p}a`, `${p}b`)).toEqual(['1', '2'])

    const tx2 = sdk.multi()
    tx2.incr(`${p}a`)
    tx2.get(`${p}h`)
    const res = await tx2.exec({ keepErrors: true })
    expect(res[0]).toEqual({ result: 2, error: undefined })
    expect(res[1]!.error).toBe(WRONGTYPE)
  })
})

describe('SDK errors', () => {
  test("Redis's full error message reaches the SDK, with and without auto-pipelining", async () => {
    const p = env.prefix()
    await env.direct.hset(`${p}h`, 'f', 'v')
    await env.direct.set(`${p}s`, 'text')

    const plain = env.sdk({ enableAutoPipelining: false })
    const e1 = await plain.get(`${p}h`).then(
      () => null,
      (e: unknown) => e as Error,
    )
    expect(e1).toBeInstanceOf(errors.UpstashError)
    // The SDK appends the command to the gateway's error text.
    expect(e1!.message).toBe(`${WRONGTYPE}, command was: ${JSON.stringify(['get', `${p}h`])}`)
    await expect(plain.incr(`${p}s`)).rejects.toThrow(/^ERR value is not an integer or out of range, command was/)
    await expect(plain.lpush(`${p}s`, 'x')).rejects.toThrow(WRONGTYPE)
    await expect(plain.eval("return redis.error_reply('MYERR custom failure')", [], [])).rejects.toThrow(
      /^MYERR custom failure, command was/,
    )

    const auto = env.sdk()
    await expect(auto.get(`${p}h`)).rejects.toThrow(`Command failed: ${WRONGTYPE}`)
    await expect(auto.zadd(`${p}s`, { score: 1, member: 'm' })).rejects.toThrow(WRONGTYPE)
  })

  test('gateway-made errors reach the SDK with their code: FORBIDDEN, REFUSED, Unauthorized', async () => {
    const p = env.prefix()
    await env.direct.set(`${p}k`, 'orig')
    const reader = env.sdk({ token: READ_TOKEN, enableAutoPipelining: false })
    expect(await reader.get(`${p}k`)).toBe('orig')
    const forbidden = await reader.set(`${p}k`, 'changed').then(
      () => null,
      (e: unknown) => e as Error,
    )
    expect(forbidden).toBeInstanceOf(errors.UpstashError)
    expect(forbidden!.message).toMatch(/^FORBIDDEN /)
    expect(await env.direct.get(`${p}k`)).toBe('orig')

    // Admin-only for a write token.
    await expect(env.sdk({ enableAutoPipelining: false }).flushdb()).rejects.toThrow(/^FORBIDDEN /)
    expect(await env.direct.get(`${p}k`)).toBe('orig')

    // Blocking reads need a private connection: refused, not left hanging.
    const writer = env.sdk({ enableAutoPipelining: false })
    await expect(writer.xread(`${p}stream`, '$', { blockMS: 50 })).rejects.toThrow(/^REFUSED /)

    const stranger = env.sdk({ token: 'not-a-token', enableAutoPipelining: false })
    await expect(stranger.get(`${p}k`)).rejects.toThrow(/^Unauthorized/)
  })
})

describe('SDK read-your-writes', () => {
  for (const autoPipelining of [true, false]) {
    test(`the sync token is set after a write and changes after every write (autoPipelining ${autoPipelining})`, async () => {
      const sdk = env.sdk({ enableAutoPipelining: autoPipelining })
      const p = env.prefix()
      expect(sdk.readYourWritesSyncToken).toBe('')

      await sdk.set(`${p}a`, '1')
      const t1 = sdk.readYourWritesSyncToken
      expect(typeof t1).toBe('string')
      expect(t1).not.toBe('')

      await sdk.set(`${p}a`, '2')
      const t2 = sdk.readYourWritesSyncToken
      expect(t2).not.toBe('')
      expect(t2).not.toBe(t1)

      await sdk.incr(`${p}n`)
      const t3 = sdk.readYourWritesSyncToken
      expect(t3).not.toBe('')
      expect(new Set([t1, t2, t3]).size).toBe(3)

      // The read right after the write sees it.
      expect(await sdk.get(`${p}a`)).toBe(2)
      expect(sdk.readYourWritesSyncToken).not.toBe('')

      const pipe = sdk.pipeline()
      pipe.set(`${p}b`, 'x')
      pipe.get(`${p}b`)
      expect(await pipe.exec()).toEqual(['OK', 'x'])
      const t4 = sdk.readYourWritesSyncToken
      expect(t4).not.toBe('')
      expect([t1, t2, t3]).not.toContain(t4)

      const tx = sdk.multi()
      tx.incr(`${p}n`)
      expect(await tx.exec()).toEqual([2])
      const t5 = sdk.readYourWritesSyncToken
      expect(t5).not.toBe('')
      expect([t1, t2, t3, t4]).not.toContain(t5)
    })
  }

  test('a token handed from one SDK client to another is accepted and the read sees the write', async () => {
    const writer = env.sdk()
    const reader = env.sdk()
    const p = env.prefix()
    await writer.set(`${p}k`, 'fresh')
    reader.readYourWritesSyncToken = writer.readYourWritesSyncToken
    expect(await reader.get(`${p}k`)).toBe('fresh')
    expect(reader.readYourWritesSyncToken).not.toBe('')
  })
})
