// The official @upstash/redis SDK's subscribe/psubscribe (Server-Sent Events through the
// gateway) against a real redis-server: messages arrive, in order and intact, and once the SDK
// unsubscribes nothing stays subscribed on the real server.

import { afterEach, describe, expect, test } from 'vitest'
import { Redis } from '@upstash/redis'
import { startGateway, WRITE_TOKEN } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'
import { useSdkEnv } from './sdk-env.js'

const env = useSdkEnv()

interface Message {
  channel: string
  message: unknown
}
interface PMessage extends Message {
  pattern: string
}

type Subscriber = ReturnType<ReturnType<typeof env.sdk>['subscribe']>
const open: Subscriber[] = []
afterEach(async () => {
  for (const s of open.splice(0)) await s.unsubscribe()
})

function track<T extends Subscriber>(s: T): T {
  open.push(s)
  return s
}

async function numsub(channel: string): Promise<number> {
  const reply = (await env.direct.pubsub('NUMSUB', channel)) as [string, number]
  return Number(reply[1])
}

async function numpat(): Promise<number> {
  return Number(await env.direct.pubsub('NUMPAT'))
}

async function channels(pattern: string): Promise<string[]> {
  return (await env.direct.pubsub('CHANNELS', pattern)) as string[]
}

describe('SDK subscribe', () => {
  test('receives messages published by another SDK client and by ioredis; unsubscribe leaves nothing subscribed', async () => {
    const p = env.prefix()
    const chan = `${p}chan`
    const subscriber = env.sdk()
    const publisher = env.sdk()

    const sub = track(subscriber.subscribe([chan]))
    const got: Message[] = []
    const acks: number[] = []
    const errs: unknown[] = []
    sub.on('message', (m) => got.push(m as Message))
    sub.on('subscribe', (n) => acks.push(n as number))
    sub.on('error', (e) => errs.push(e))

    await waitFor(() => acks.length === 1, { message: 'subscribe confirmation over SSE' })
    expect(acks).toEqual([1])
    // The gateway subscribed the real server before confirming.
    expect(await numsub(chan)).toBe(1)
    expect(await channels(`${p}*`)).toEqual([chan])

    // From another SDK client, through the gateway: PUBLISH reports one receiver.
    expect(await publisher.publish(chan, 'hello, wörld 👋 — 你好')).toBe(1)
    await waitFor(() => got.length === 1, { message: 'first message' })
    expect(got[0]).toEqual({ channel: chan, message: 'hello, wörld 👋 — 你好' })

    // JSON payloads: the SDK publishes objects as JSON and parses them back.
    expect(await publisher.publish(chan, { kind: 'order', id: 7, items: ['a', 'b'] })).toBe(1)
    // From ioredis directly on the server.
    expect(await env.direct.publish(chan, 'direct,with,commas')).toBe(1)
    await waitFor(() => got.length === 3, { message: 'three messages' })
    expect(got.slice(1)).toEqual([
      { channel: chan, message: { kind: 'order', id: 7, items: ['a', 'b'] } },
      { channel: chan, message: 'direct,with,commas' },
    ])

    // Per-channel listener.
    const perChannel: Message[] = []
    sub.on(`message:${chan}`, (m) => perChannel.push(m as Message))
    await env.direct.publish(chan, 'again')
    await waitFor(() => perChannel.length === 1, { message: 'per-channel message' })
    expect(perChannel[0]).toEqual({ channel: chan, message: 'again' })

    await sub.unsubscribe()
    await waitFor(async () => (await numsub(chan)) === 0, { message: 'NUMSUB 0 after unsubscribe' })
    expect(await channels(`${p}*`)).toEqual([])
    expect(await env.direct.publish(chan, 'nobody listens')).toBe(0)
    expect(errs).toEqual([])
  })

  test('messages arrive in publish order', async () => {
    const p = env.prefix()
    const chan = `${p}ordered`
    const sub = track(env.sdk().subscribe([chan]))
    const got: unknown[] = []
    let subscribed = false
    sub.on('message', (m) => got.push((m as Message).message))
    sub.on('subscribe', () => (subscribed = true))
    await waitFor(() => subscribed, { message: 'subscribed' })

    const n = 50
    for (let i = 0; i < n; i++) await env.direct.publish(chan, `m${i}`)
    await waitFor(() => got.length >= n, { message: `${n} messages` })
    expect(got).toEqual(Array.from({ length: n }, (_, i) => `m${i}`))

    await sub.unsubscribe()
    await waitFor(async () => (await numsub(chan)) === 0, { message: 'NUMSUB 0' })
  })

  test('several channels in one subscribe; unsubscribing one keeps the other', async () => {
    const p = env.prefix()
    const a = `${p}a`
    const b = `${p}b`
    const sub = track(env.sdk().subscribe([a, b]))
    const got: Message[] = []
    const acks: number[] = []
    sub.on('message', (m) => got.push(m as Message))
    sub.on('subscribe', (n) => acks.push(n as number))
    await waitFor(() => acks.length === 2, { message: 'two subscribe confirmations' })
    expect(sub.getSubscribedChannels().sort()).toEqual([a, b].sort())
    expect(await numsub(a)).toBe(1)
    expect(await numsub(b)).toBe(1)

    await env.direct.publish(a, 'to-a')
    await env.direct.publish(b, 'to-b')
    await waitFor(() => got.length === 2, { message: 'both messages' })
    expect(got.sort((x, y) => x.channel.localeCompare(y.channel))).toEqual([
      { channel: a, message: 'to-a' },
      { channel: b, message: 'to-b' },
    ])

    await sub.unsubscribe([a])
    await waitFor(async () => (await numsub(a)) === 0, { message: `NUMSUB ${a} 0` })
    expect(await numsub(b)).toBe(1)
    got.length = 0
    expect(await env.direct.publish(b, 'still-b')).toBe(1)
    await waitFor(() => got.length === 1, { message: 'message on the remaining channel' })
    expect(got[0]).toEqual({ channel: b, message: 'still-b' })

    await sub.unsubscribe()
    await waitFor(async () => (await numsub(b)) === 0, { message: `NUMSUB ${b} 0` })
    expect(await channels(`${p}*`)).toEqual([])
  })

  test('two SDK subscribers on one channel: both receive; the subscription ends only when both leave', async () => {
    const p = env.prefix()
    const chan = `${p}shared`
    const s1 = track(env.sdk().subscribe([chan]))
    const s2 = track(env.sdk().subscribe([chan]))
    const got1: unknown[] = []
    const got2: unknown[] = []
    let ready = 0
    s1.on('message', (m) => got1.push((m as Message).message))
    s2.on('message', (m) => got2.push((m as Message).message))
    s1.on('subscribe', () => ready++)
    s2.on('subscribe', () => ready++)
    await waitFor(() => ready === 2, { message: 'both subscribed' })
    expect(await numsub(chan)).toBeGreaterThanOrEqual(1)

    await env.direct.publish(chan, 'one')
    await waitFor(() => got1.length === 1 && got2.length === 1, { message: 'both got the message' })
    expect([got1, got2]).toEqual([['one'], ['one']])

    await s1.unsubscribe()
    // s2 still receives after s1 left.
    await env.direct.publish(chan, 'two')
    await waitFor(() => got2.length === 2, { message: 'second message for s2' })
    expect(got2).toEqual(['one', 'two'])
    expect(await numsub(chan)).toBeGreaterThanOrEqual(1)
    expect(got1).toEqual(['one'])

    await s2.unsubscribe()
    await waitFor(async () => (await numsub(chan)) === 0, { message: 'NUMSUB 0 after both left' })
  })

  test('unicode channel names', async () => {
    const p = env.prefix()
    const chan = `${p}ñews-📣-频道`
    const sub = track(env.sdk().subscribe([chan]))
    const got: Message[] = []
    let subscribed = false
    sub.on('message', (m) => got.push(m as Message))
    sub.on('subscribe', () => (subscribed = true))
    await waitFor(() => subscribed, { message: 'subscribed' })
    // The real server knows the channel under its UTF-8 name.
    expect(await numsub(chan)).toBe(1)
    expect(await env.sdk().publish(chan, 'ünïcödé')).toBe(1)
    await waitFor(() => got.length === 1, { message: 'message' })
    expect(got[0]).toEqual({ channel: chan, message: 'ünïcödé' })
    await sub.unsubscribe()
    await waitFor(async () => (await numsub(chan)) === 0, { message: 'NUMSUB 0' })
  })
})

describe('messages with line breaks (the SDK reads each data: line as one message)', () => {
  test('arrive whole, as published, and cannot forge events for another channel', async () => {
    const p = env.prefix()
    const a = `${p}lb-a`
    const b = `${p}lb-b`
    const sub = track(env.sdk().subscribe([a, b]))
    const got: Message[] = []
    const errs: unknown[] = []
    let acks = 0
    sub.on('message', (m) => got.push(m as Message))
    sub.on('subscribe', () => acks++)
    sub.on('error', (e) => errs.push(e))
    await waitFor(() => acks === 2, { message: 'both subscribed' })

    // Text with LF, CRLF and a lone CR; one that looks like an event for the other channel; a
    // pretty-printed JSON object (the SDK parses JSON payloads); a JSON string with an escaped \n.
    const text = 'line 1\nline 2\r\nline 3\rend, with commas'
    const forged = `x\nmessage,${b},forged\n\ndata: message,${b},forged too`
    const pretty = JSON.stringify({ kind: 'order', lines: ['a\nb'], n: 7 }, null, 2)
    for (const m of [text, forged, pretty, JSON.stringify('tab\there\nnewline')]) await env.direct.publish(a, m)
    await waitFor(() => got.length >= 4, { message: 'four messages' })
    // Give a forged event on b the time to arrive, were there one.
    await env.direct.publish(a, 'last')
    await waitFor(() => got.length >= 5, { message: 'the last message' })
    expect(got).toEqual([
      { channel: a, message: text },
      { channel: a, message: forged },
      { channel: a, message: { kind: 'order', lines: ['a\nb'], n: 7 } },
      { channel: a, message: 'tab\there\nnewline' },
      { channel: a, message: 'last' },
    ])
    expect(errs).toEqual([])
  })

  test('over the wire: one data: line per event', async () => {
    const p = env.prefix()
    const chan = `${p}lb-raw`
    const ac = new AbortController()
    const res = await fetch(`${env.baseUrl}/subscribe/${chan}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${WRITE_TOKEN}`, accept: 'text/event-stream' },
      signal: ac.signal,
    })
    const reader = res.body!.getReader()
    let text = ''
    const read = async (until: string): Promise<void> => {
      while (!text.includes(until)) {
        const { value, done } = await reader.read()
        if (done) throw new Error(`stream ended before ${until}: ${text}`)
        text += new TextDecoder().decode(value)
      }
    }
    try {
      await read(`data: subscribe,${chan},1\n\n`)
      await env.direct.publish(chan, 'a\nb')
      await env.direct.publish(chan, '{\n  "k": [1,\r\n 2]\n}')
      await read('\n\ndata: message')
      await read('}\n\n')
      expect(text).toBe(`data: subscribe,${chan},1\n\ndata: message,${chan},"a\\nb"\n\ndata: message,${chan},{   "k": [1,   2] }\n\n`)
    } finally {
      ac.abort()
    }
  })
})

describe('SDK psubscribe', () => {
  test('pmessage events for channels matching the pattern; punsubscribed on the server afterwards', async () => {
    const p = env.prefix()
    const pattern = `${p}news.*`
    const numpat0 = await numpat()
    const sub = track(env.sdk().psubscribe([pattern]))
    const got: PMessage[] = []
    const perPattern: PMessage[] = []
    const acks: number[] = []
    const errs: Error[] = []
    sub.on('pmessage', (m) => got.push(m as PMessage))
    sub.on(`pmessage:${pattern}`, (m) => perPattern.push(m as PMessage))
    sub.on('psubscribe', (n) => acks.push(n as number))
    sub.on('error', (e) => errs.push(e as Error))
    await waitFor(() => acks.length === 1, { message: 'psubscribe confirmation' })
    expect(acks).toEqual([1])
    expect(await numpat()).toBe(numpat0 + 1)

    // SDK 1.39 JSON.parses pmessage payloads strictly (plain 'message' payloads fall back to the
    // raw text), so JSON payloads here; a plain-text one is checked below via the error event.
    expect(await env.sdk().publish(`${p}news.sports`, { event: 'goal', minute: 42 })).toBe(1)
    expect(await env.direct.publish(`${p}news.tech`, JSON.stringify({ title: 'Redis 8, out', tags: ['db'] }))).toBe(1)
    expect(await env.direct.publish(`${p}news.tech`, '"a JSON string, with commas"')).toBe(1)
    // Not matching: no receiver.
    expect(await env.direct.publish(`${p}weather.today`, '"rain"')).toBe(0)
    await waitFor(() => got.length === 3, { message: 'three pmessages' })
    expect(got).toEqual([
      { pattern, channel: `${p}news.sports`, message: { event: 'goal', minute: 42 } },
      { pattern, channel: `${p}news.tech`, message: { title: 'Redis 8, out', tags: ['db'] } },
      { pattern, channel: `${p}news.tech`, message: 'a JSON string, with commas' },
    ])
    expect(perPattern).toEqual(got)
    expect(errs).toEqual([])

    // A plain-text payload does reach the SDK (which then reports it cannot parse it).
    expect(await env.direct.publish(`${p}news.misc`, 'plain text')).toBe(1)
    await waitFor(() => errs.length === 1, { message: 'the SDK to see the plain-text pmessage' })
    expect(errs[0]!.message).toMatch(/Failed to parse message/)
    expect(got).toHaveLength(3)

    await sub.unsubscribe()
    await waitFor(async () => (await numpat()) === numpat0, { message: 'NUMPAT back after unsubscribe' })
    expect(await env.direct.publish(`${p}news.sports`, 'late')).toBe(0)
  })
})

describe('gateway shutdown after SDK subscribers', () => {
  test('stop() is not held up for the grace period once the SDK has unsubscribed', async () => {
    // A gateway of its own, so stopping it does not affect the other tests.
    const gw = await startGateway({ instances: [{ name: 'main', endpoints: [env.redis.url] }] })
    let stopped = false
    try {
      const sdk = new Redis({ url: gw.base('main'), token: WRITE_TOKEN, retry: false, enableTelemetry: false })
      const chan = `${env.prefix()}bye`
      const sub = sdk.subscribe([chan])
      let subscribed = false
      sub.on('subscribe', () => (subscribed = true))
      await waitFor(() => subscribed, { message: 'subscribed' })
      expect(await sdk.set(`${chan}:k`, 'v')).toBe('OK')
      await sub.unsubscribe()
      await waitFor(async () => (await numsub(chan)) === 0, { message: 'NUMSUB 0' })

      // Nothing is in flight: stop() should finish well within its 2 s grace period.
      const started = Date.now()
      await gw.stop()
      stopped = true
      expect(Date.now() - started).toBeLessThan(1_000)
    } finally {
      if (!stopped) await gw.stop()
    }
  })
})
