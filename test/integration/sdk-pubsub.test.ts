// The official @upstash/redis SDK's subscribe/psubscribe (Server-Sent Events through the
// gateway) against a real redis-server: messages arrive, in order and intact, and once the SDK
// unsubscribes nothing stays subscribed on the real server.
//
// Against a Redis Cluster too (SDK_BACKEND=cluster): every node delivers every PUBLISH (the cluster
// bus carries it), but PUBSUB NUMSUB/NUMPAT/CHANNELS and PUBLISH's receiver count only cover the
// node asked (see numsub(), expectReceivers() and directPublisher() below).

import { afterEach, describe, expect, test } from 'vitest'
import { Redis } from '@upstash/redis'
import { startGateway, WRITE_TOKEN } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'
import { CLUSTER, useSdkEnv } from './sdk-env.js'

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

// PUBSUB answers for the node asked only: on a cluster, summed (or joined) over every node.
async function numsub(channel: string): Promise<number> {
  const replies = await Promise.all(env.nodes().map((n) => n.pubsub('NUMSUB', channel) as Promise<[string, number]>))
  return replies.reduce((sum, reply) => sum + Number(reply[1]), 0)
}

async function numpat(): Promise<number> {
  const replies = await Promise.all(env.nodes().map((n) => n.pubsub('NUMPAT')))
  return replies.reduce((sum: number, reply) => sum + Number(reply), 0)
}

async function channels(pattern: string): Promise<string[]> {
  const replies = await Promise.all(env.nodes().map((n) => n.pubsub('CHANNELS', pattern) as Promise<string[]>))
  return [...new Set(replies.flat())].sort()
}

/**
 * The direct client that publishes. On a cluster, one node: ioredis's Cluster client sends each
 * PUBLISH (keyless) to a node picked at random, and messages published through different nodes
 * reach a subscriber on a third one over different bus links, so they may overtake each other.
 */
function directPublisher(): Pick<typeof env.direct, 'publish'> {
  return CLUSTER ? env.nodes()[0]! : env.direct
}

/**
 * PUBLISH's reply, the number of clients that received the message. On a cluster it counts only the
 * subscribers connected to the node that ran the PUBLISH (the other nodes deliver it too, uncounted),
 * and neither the gateway (any shard for a PUBLISH) nor directPublisher() picks the subscriber's
 * node: so 0 up to `want` there. Whether the message arrived is checked by the test itself.
 */
function expectReceivers(got: number, want: number): void {
  if (CLUSTER && want > 0) {
    expect(got).toBeGreaterThanOrEqual(0)
    expect(got).toBeLessThanOrEqual(want)
  } else {
    expect(got).toBe(want)
  }
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

    // From another SDK client, through the gateway: PUBLISH reports one receiver (on a cluster, when
    // it ran on the subscriber's node: see expectReceivers()).
    expectReceivers(await publisher.publish(chan, 'hello, wörld 👋 — 你好'), 1)
    await waitFor(() => got.length === 1, { message: 'first message' })
    expect(got[0]).toEqual({ channel: chan, message: 'hello, wörld 👋 — 你好' })

    // JSON payloads: the SDK publishes objects as JSON and parses them back.
    expectReceivers(await publisher.publish(chan, { kind: 'order', id: 7, items: ['a', 'b'] }), 1)
    // (Arrived before the next publisher's message is sent: on a cluster two publishers' messages
    // travel through different nodes and are not ordered with each other.)
    await waitFor(() => got.length === 2, { message: 'second message' })
    // From ioredis directly on the server.
    expectReceivers(await directPublisher().publish(chan, 'direct,with,commas'), 1)
    await waitFor(() => got.length === 3, { message: 'three messages' })
    expect(got.slice(1)).toEqual([
      { channel: chan, message: { kind: 'order', id: 7, items: ['a', 'b'] } },
      { channel: chan, message: 'direct,with,commas' },
    ])

    // Per-channel listener.
    const perChannel: Message[] = []
    sub.on(`message:${chan}`, (m) => perChannel.push(m as Message))
    await directPublisher().publish(chan, 'again')
    await waitFor(() => perChannel.length === 1, { message: 'per-channel message' })
    expect(perChannel[0]).toEqual({ channel: chan, message: 'again' })

    await sub.unsubscribe()
    await waitFor(async () => (await numsub(chan)) === 0, { message: 'NUMSUB 0 after unsubscribe' })
    expect(await channels(`${p}*`)).toEqual([])
    expectReceivers(await directPublisher().publish(chan, 'nobody listens'), 0)
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
    for (let i = 0; i < n; i++) await directPublisher().publish(chan, `m${i}`)
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

    await directPublisher().publish(a, 'to-a')
    await directPublisher().publish(b, 'to-b')
    await waitFor(() => got.length === 2, { message: 'both messages' })
    expect(got.sort((x, y) => x.channel.localeCompare(y.channel))).toEqual([
      { channel: a, message: 'to-a' },
      { channel: b, message: 'to-b' },
    ])

    await sub.unsubscribe([a])
    await waitFor(async () => (await numsub(a)) === 0, { message: `NUMSUB ${a} 0` })
    expect(await numsub(b)).toBe(1)
    got.length = 0
    expectReceivers(await directPublisher().publish(b, 'still-b'), 1)
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

    await directPublisher().publish(chan, 'one')
    await waitFor(() => got1.length === 1 && got2.length === 1, { message: 'both got the message' })
    expect([got1, got2]).toEqual([['one'], ['one']])

    await s1.unsubscribe()
    // s2 still receives after s1 left.
    await directPublisher().publish(chan, 'two')
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
    expectReceivers(await env.sdk().publish(chan, 'ünïcödé'), 1)
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
    for (const m of [text, forged, pretty, JSON.stringify('tab\there\nnewline')]) await directPublisher().publish(a, m)
    await waitFor(() => got.length >= 4, { message: 'four messages' })
    // Give a forged event on b the time to arrive, were there one.
    await directPublisher().publish(a, 'last')
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
      await directPublisher().publish(chan, 'a\nb')
      await directPublisher().publish(chan, '{\n  "k": [1,\r\n 2]\n}')
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
    expectReceivers(await env.sdk().publish(`${p}news.sports`, { event: 'goal', minute: 42 }), 1)
    // Arrived before the direct client publishes (on a cluster, not ordered with its messages otherwise).
    await waitFor(() => got.length === 1, { message: 'first pmessage' })
    expectReceivers(await directPublisher().publish(`${p}news.tech`, JSON.stringify({ title: 'Redis 8, out', tags: ['db'] })), 1)
    expectReceivers(await directPublisher().publish(`${p}news.tech`, '"a JSON string, with commas"'), 1)
    // Not matching: no receiver.
    expectReceivers(await directPublisher().publish(`${p}weather.today`, '"rain"'), 0)
    await waitFor(() => got.length === 3, { message: 'three pmessages' })
    expect(got).toEqual([
      { pattern, channel: `${p}news.sports`, message: { event: 'goal', minute: 42 } },
      { pattern, channel: `${p}news.tech`, message: { title: 'Redis 8, out', tags: ['db'] } },
      { pattern, channel: `${p}news.tech`, message: 'a JSON string, with commas' },
    ])
    expect(perPattern).toEqual(got)
    expect(errs).toEqual([])

    // A plain-text payload does reach the SDK (which then reports it cannot parse it).
    expectReceivers(await directPublisher().publish(`${p}news.misc`, 'plain text'), 1)
    await waitFor(() => errs.length === 1, { message: 'the SDK to see the plain-text pmessage' })
    expect(errs[0]!.message).toMatch(/Failed to parse message/)
    expect(got).toHaveLength(3)

    await sub.unsubscribe()
    await waitFor(async () => (await numpat()) === numpat0, { message: 'NUMPAT back after unsubscribe' })
    expectReceivers(await directPublisher().publish(`${p}news.sports`, 'late'), 0)
  })
})

describe('gateway shutdown after SDK subscribers', () => {
  test('stop() is not held up for the grace period once the SDK has unsubscribed', async () => {
    // A gateway of its own, so stopping it does not affect the other tests.
    const gw = await startGateway({ instances: [{ name: 'main', endpoints: env.endpoints }] })
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
