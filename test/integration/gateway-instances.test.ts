// Two gateways in one process share nothing that requests remember: each has its own event streams
// (and MONITOR count), script shas and sync-token state, so what one learns or counts never shows
// in the other, and stopping one ends only its own streams. Against a real redis-server.

import { createHash } from 'node:crypto'
import type { Redis as IORedis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ADMIN_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { call } from '../helpers/rest.js'
import { waitFor } from '../helpers/wait.js'
import { readEventLines } from '../helpers/sse.js'

const SCRIPT = `#!lua flags=allow-key-locking
return 7
`

let redis: RedisServer
let direct: IORedis
let a: TestGateway
let b: TestGateway

beforeAll(async () => {
  redis = await startRedis()
  direct = redis.client()
  a = await startGateway({ instances: [{ name: 'main', endpoints: [redis.url] }] })
  b = await startGateway({ instances: [{ name: 'main', endpoints: [redis.url] }] })
})

afterAll(async () => {
  direct?.disconnect()
  await b?.stop()
  await a?.stop()
  await redis?.stop()
})

interface Stream {
  readonly events: string[]
  readonly ended: boolean
  close(): void
}

/** Opens an event stream (`path` under the instance) and collects its `data:` lines. */
async function open(gw: TestGateway, path: string): Promise<Stream> {
  const ac = new AbortController()
  const res = await fetch(`${gw.base('main')}/${path}`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, accept: 'text/event-stream' },
    signal: ac.signal,
  })
  expect(res.status).toBe(200)
  const lines = readEventLines(res.body!, ac.signal)
  return {
    events: lines.events,
    // A gateway that stops may end the stream or reset its connection: either way it ended.
    get ended() {
      return lines.ended || lines.failed
    },
    close: () => ac.abort(),
  }
}

describe('two gateways in one process', () => {
  test('each counts only its own MONITOR streams', async () => {
    const s = await open(a, 'monitor')
    try {
      await waitFor(() => s.events[0] === 'OK', { message: 'data: OK' })
      expect([a.gateway.streams.monitorCount, a.gateway.streams.count]).toEqual([1, 1])
      expect([b.gateway.streams.monitorCount, b.gateway.streams.count]).toEqual([0, 0])
    } finally {
      s.close()
    }
    await waitFor(() => a.gateway.streams.monitorCount === 0, { message: 'the stream to be released' })
  })

  test("a script rewrite one gateway learned is not the other's", async () => {
    await direct.script('FLUSH')
    const sha = createHash('sha1').update(SCRIPT).digest('hex')
    expect(await call(a.base('main'), WRITE_TOKEN, ['EVAL', SCRIPT, '0'])).toEqual({ status: 200, json: { result: 7 } })
    expect(a.gateway.scripts.size).toBe(1)
    expect(b.gateway.scripts.size).toBe(0)
    expect(await call(a.base('main'), WRITE_TOKEN, ['EVALSHA', sha, '0'])).toEqual({ status: 200, json: { result: 7 } })
    // Redis knows only the rewritten sha, and this gateway never mapped the client's sha to it.
    const r = await call(b.base('main'), WRITE_TOKEN, ['EVALSHA', sha, '0'])
    expect([r.status, r.json.error]).toEqual([400, expect.stringMatching(/^NOSCRIPT/)])
  })

  test("stopping one gateway ends its own streams, not the other's", async () => {
    const c = await startGateway({ instances: [{ name: 'main', endpoints: [redis.url] }] })
    const mine = await open(c, 'subscribe/instances-ch')
    const theirs = await open(b, 'subscribe/instances-ch')
    try {
      await waitFor(() => mine.events.length > 0 && theirs.events.length > 0, { message: 'both subscribed' })
      await c.stop()
      await waitFor(() => mine.ended, { message: 'the stopped gateway to end its stream' })
      expect(mine.events.at(-1)).toBe('unsubscribe,instances-ch,0')
      await direct.publish('instances-ch', 'still here')
      await waitFor(() => theirs.events.includes('message,instances-ch,still here'), { message: "the other gateway's stream to go on" })
      expect(theirs.ended).toBe(false)
    } finally {
      mine.close()
      theirs.close()
      await c.stop()
    }
  })
})
