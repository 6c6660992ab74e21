// Bad input against the data plane: every malformed request gets a precise 400 (or the status
// the contract names), the gateway keeps serving after each one, and nothing leaks: at the end
// the redis-server sees only the gateway's one command connection, and the gateway's HTTP server
// holds no sockets once the clients are gone (checked with `ss`, from the server's side).
//
// Requests go through node:http with an Agent that does not keep connections alive, so every
// connection is closed after its reply and a lingering socket can only be the gateway's.

import { execFile } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import { promisify } from 'node:util'
import type { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { ADMIN_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { head, rawRequest } from '../helpers/raw-http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const run = promisify(execFile)

let redis: RedisServer
let gw: TestGateway
let direct: Redis
let port: number
let baselineClients: number
const agent = new http.Agent({ keepAlive: false })
const BASE = '/v1/instances/main'

interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
  json: any
}

function request(
  method: string,
  path: string,
  o: { body?: string | Buffer; token?: string | null; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...(o.headers ?? {}) }
    const token = o.token === undefined ? WRITE_TOKEN : o.token
    if (token !== null) headers.authorization = `Bearer ${token}`
    if (o.body !== undefined) headers['content-length'] = Buffer.byteLength(o.body)
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = undefined
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
      })
    })
    req.on('error', reject)
    req.end(o.body)
  })
}

const post = (path: string, body: string | Buffer, o: { token?: string | null; headers?: Record<string, string> } = {}): Promise<Reply> =>
  request('POST', path, { ...o, body })

/** 400 with a JSON `{"error": ...}` containing `mention`. */
function expect400(r: Reply, mention: string | RegExp): void {
  expect(r.status, r.text).toBe(400)
  expect(r.headers['content-type']).toMatch(/^application\/json/)
  expect(typeof r.json?.error, r.text).toBe('string')
  if (typeof mention === 'string') expect(r.json.error).toContain(mention)
  else expect(r.json.error).toMatch(mention)
}

/** Connections of the gateway's own user (and ours); the token-level users' are checked apart. */
async function connectedClients(): Promise<number> {
  return (await redis.gatewayConnections()).own
}

/** TCP sockets whose local port is the gateway's data port, other than the listener and TIME-WAIT. */
async function serverSockets(): Promise<string[]> {
  const { stdout } = await run('ss', ['-Htan', `( sport = :${port} )`])
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !/^(LISTEN|TIME-WAIT)\s/.test(l))
}

beforeAll(async () => {
  redis = await startRedis()
  gw = await startGateway({ instances: [{ name: 'main', endpoints: [redis.url] }] })
  port = gw.gateway.dataAddress.port
  direct = redis.client()
  await direct.set('bi:alive', 'yes')
  // Warm-up: the gateway's command connection is up once requests went through.
  await waitFor(async () => (await request('GET', `${BASE}/get/bi:alive`)).status === 200, { message: 'gateway serving' })
  await post(BASE, '["SET","bi:warm","1"]')
  baselineClients = await connectedClients()
})

afterAll(async () => {
  agent.destroy()
  await gw?.stop()
  await redis?.stop()
})

// After every bad request the gateway still serves an ordinary request.
afterEach(async () => {
  const r = await request('GET', `${BASE}/get/bi:alive`)
  expect([r.status, r.text]).toEqual([200, '{"result":"yes"}'])
})

describe('malformed bodies: POST {base}', () => {
  test('malformed JSON', async () => {
    for (const body of ['["SET","k"', '{', 'SET k v', '["SET",\'k\']', '[1,]', '\u0000']) {
      expect400(await post(BASE, body), 'request body is not valid JSON')
    }
  })

  test('empty body', async () => {
    expect400(await post(BASE, ''), 'request body is empty')
    // No body at all (no Content-Length, no Transfer-Encoding).
    expect400(await request('POST', BASE), 'request body is empty')
  })

  test('non-array bodies: object, string, number, null, boolean', async () => {
    for (const body of ['{"cmd":"GET","key":"k"}', '"GET k"', '42', 'null', 'true']) {
      const r = await post(BASE, body)
      expect400(r, 'must be a JSON array')
    }
  })

  test('nested arrays, objects and null as arguments', async () => {
    expect400(await post(BASE, '["SET","bi:k",["a","b"]]'), 'body[2] must be a string, number or boolean, got an array')
    expect400(await post(BASE, '["SET","bi:k",{"a":1}]'), 'body[2] must be a string, number or boolean, got object')
    expect400(await post(BASE, '["SET","bi:k",null]'), 'body[2] must be a string, number or boolean, got null')
    expect400(await post(BASE, '[["SET","bi:k","v"]]'), 'body[0] must be a string, number or boolean, got an array')
    expect400(await post(BASE, '[null]'), 'body[0] must be a string, number or boolean, got null')
    expect(await direct.exists('bi:k')).toBe(0)
  })

  test('empty command and empty command name', async () => {
    expect400(await post(BASE, '[]'), 'empty command')
    expect400(await post(BASE, '[""]'), 'empty command name')
    expect400(await post(BASE, '["","k"]'), 'empty command name')
  })

  test('a command name that is a number or boolean is an unknown command', async () => {
    expect400(await post(BASE, '[1,"k"]'), "ERR unknown command '1'")
    expect400(await post(BASE, '[true]'), "ERR unknown command 'true'")
  })

  test('deeply nested JSON is a 400, not a crash', async () => {
    const depth = 100_000
    const r = await post(BASE, '['.repeat(depth) + ']'.repeat(depth))
    expect400(r, 'body nests arrays or objects too deep: a command is a flat array')
  })

  test('a very long unknown command name is answered with a bounded message', async () => {
    const name = 'X'.repeat(10_000)
    const r = await post(BASE, JSON.stringify([name, 'k']))
    expect400(r, "ERR unknown command 'XXXX")
    expect(r.text.length).toBeLessThan(400)
  })
})

describe('malformed bodies: /pipeline and /multi-exec', () => {
  for (const form of ['pipeline', 'multi-exec']) {
    test(`${form}: empty list, non-array body, non-array item, bad arguments`, async () => {
      const url = `${BASE}/${form}`
      expect400(await post(url, '[]'), 'body is an empty list of commands')
      expect400(await post(url, ''), 'request body is empty')
      expect400(await post(url, '[["SET","k","v"]'), 'request body is not valid JSON')
      for (const body of ['{"a":1}', '"GET"', '7', 'null']) {
        expect400(await post(url, body), 'body must be a JSON array of commands')
      }
      expect400(await post(url, '[["SET","bi:p","v"],"GET"]'), 'body[1] must be a JSON array')
      expect400(await post(url, '[["SET","bi:p","v"],{"0":"GET"}]'), 'body[1] must be a JSON array')
      expect400(await post(url, '[["SET","bi:p","v"],null]'), 'body[1] must be a JSON array')
      expect400(await post(url, '[["SET","bi:p","v"],[]]'), 'body[1] is an empty command')
      expect400(await post(url, '[["SET","bi:p",null]]'), 'body[0][2] must be a string, number or boolean, got null')
      expect400(await post(url, '[["SET","bi:p",["v"]]]'), 'body[0][2] must be a string, number or boolean, got an array')
      expect400(await post(url, '[["SET","bi:p",{"v":1}]]'), 'body[0][2] must be a string, number or boolean, got object')
      // A flat command where a list of commands is expected.
      expect400(await post(url, '["SET","bi:p","v"]'), 'body[0] must be a JSON array')
      // Nothing of a rejected batch ran.
      expect(await direct.exists('bi:p')).toBe(0)
    })
  }
})

describe('URLs', () => {
  test('invalid percent-encoding in the command or an argument', async () => {
    expect400(await request('GET', `${BASE}/get/%zz`), 'argument has an invalid percent-encoding')
    expect400(await request('GET', `${BASE}/get/bi%`), 'argument has an invalid percent-encoding')
    expect400(await request('GET', `${BASE}/set/bi:pe/%E0%A4%A`), 'argument has an invalid percent-encoding')
    // A lone byte that is not UTF-8.
    expect400(await request('GET', `${BASE}/set/bi:pe/%FF`), 'argument has an invalid percent-encoding')
    expect400(await request('GET', `${BASE}/%zz/k`), 'command has an invalid percent-encoding')
    expect400(await post(`${BASE}/subscribe/%zz`, '', { headers: { accept: 'text/event-stream' } }), 'channel has an invalid percent-encoding')
    expect(await direct.exists('bi:pe')).toBe(0)
  })

  test('invalid percent-encoding in the instance name is a 404', async () => {
    const r = await post('/v1/instances/ma%zzin', '["GET","k"]')
    expect(r.status, r.text).toBe(404)
    expect(r.json.error).toMatch(/^NOTFOUND /)
  })

  test('invalid percent-encoding in a query parameter is a 400, not a literal "%zz" argument', async () => {
    await direct.del('bi:qh')
    const r = await request('GET', `${BASE}/hset/bi:qh?f%zz=v%zz`)
    const stored = await direct.hgetall('bi:qh')
    expect400(r, 'percent-encoding')
    expect(stored).toEqual({})
  })

  test('a long URL under the header limit is served; the value arrives intact', async () => {
    const value = 'v'.repeat(60 * 1024)
    const r = await request('GET', `${BASE}/set/bi:long/${value}`)
    expect([r.status, r.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.strlen('bi:long')).toBe(value.length)
  })

  test('a URL over the header limit is 431 with a JSON body', async () => {
    const r = await request('GET', `${BASE}/get/${'k'.repeat(100 * 1024)}`)
    expect(r.status).toBe(431)
    expect(r.headers['content-type']).toMatch(/^application\/json/)
    expect(r.json.error).toMatch(/^TOOLARGE /)
  })

  test('many query parameters become many arguments, in order', async () => {
    const n = 2000
    const qs = Array.from({ length: n }, (_, i) => `bi:q${i}=${i}`).join('&')
    const r = await request('GET', `${BASE}/mset?${qs}`)
    expect([r.status, r.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('bi:q0')).toBe('0')
    expect(await direct.get(`bi:q${n - 1}`)).toBe(String(n - 1))
    // A query that makes the command wrong is Redis's 400, with Redis's message.
    const bad = await request('GET', `${BASE}/set/bi:qs/v?${Array.from({ length: 500 }, (_, i) => `X${i}=1`).join('&')}`)
    expect400(bad, 'ERR syntax error')
    expect(await direct.exists('bi:qs')).toBe(0)
    // A parameter without a value is KEY "" (and `_token` is never an argument).
    const flag = await request('GET', `${BASE}/set/bi:qf/v?GET`)
    expect([flag.status, flag.text]).toEqual([400, '{"error":"ERR syntax error"}'])
  })

  test('empty path segments are empty arguments, and an empty command is refused', async () => {
    expect400(await request('GET', `${BASE}//k`), 'empty command in path')
    const r = await request('GET', `${BASE}/set/bi:es//`)
    // `{base}/set/bi:es//`: one trailing slash is dropped, the other segment is an empty value.
    expect([r.status, r.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('bi:es')).toBe('')
  })
})

describe('numbers', () => {
  test('non-finite numbers are refused', async () => {
    expect400(await post(BASE, '["SET","bi:n",1e400]'), 'body[2] is not a finite number')
    expect400(await post(BASE, '["SET","bi:n",-1e400]'), 'body[2] is not a finite number')
    expect400(await post(`${BASE}/pipeline`, '[["SET","bi:n",1e999]]'), 'body[0][2] is not a finite number')
    expect(await direct.exists('bi:n')).toBe(0)
  })

  test('NaN and Infinity literals are not JSON', async () => {
    expect400(await post(BASE, '["SET","bi:n",NaN]'), 'request body is not valid JSON')
    expect400(await post(BASE, '["SET","bi:n",Infinity]'), 'request body is not valid JSON')
    expect400(await post(BASE, '["SET","bi:n",-Infinity]'), 'request body is not valid JSON')
  })

  test('NaN-like strings are ordinary strings; Redis judges them as numbers', async () => {
    expect((await post(BASE, '["SET","bi:nan","NaN"]')).text).toBe('{"result":"OK"}')
    expect(await direct.get('bi:nan')).toBe('NaN')
    expect400(await post(BASE, '["INCRBY","bi:cnt","NaN"]'), 'ERR value is not an integer or out of range')
    expect400(await request('GET', `${BASE}/incrby/bi:cnt/Infinity`), 'ERR value is not an integer or out of range')
    expect400(await post(BASE, '["INCRBYFLOAT","bi:cnt","inf"]'), 'ERR increment would produce NaN or Infinity')
    expect400(await post(BASE, '["SET","bi:cnt","v","EX","1e3"]'), 'ERR value is not an integer or out of range')
    expect(await direct.exists('bi:cnt')).toBe(0)
  })

  test('an integer beyond 2^53 is sent as written, or refused; never silently rounded', async () => {
    const r = await post(BASE, '["SET","bi:huge",9007199254740993]')
    if (r.status === 200) {
      expect(await direct.get('bi:huge')).toBe('9007199254740993')
    } else {
      expect400(r, /number/)
      expect(await direct.exists('bi:huge')).toBe(0)
    }
    const r2 = await post(BASE, '["SET","bi:huge2",123456789012345678901234567890]')
    if (r2.status === 200) {
      expect(await direct.get('bi:huge2')).toBe('123456789012345678901234567890')
    } else {
      expect400(r2, /number/)
    }
    // As strings they are exact.
    await post(BASE, '["SET","bi:huge3","123456789012345678901234567890"]')
    expect(await direct.get('bi:huge3')).toBe('123456789012345678901234567890')
  })
})

describe('malformed HTTP', () => {
  test('a garbage request line is a 400 with a JSON body', async () => {
    const r = await rawRequest(port, 'GARBAGE\r\n\r\n')
    expect(r.status).toBe(400)
    expect(r.headers['content-type']).toMatch(/^application\/json/)
    expect(JSON.parse(r.text).error).toMatch(/^BADREQUEST /)
  })

  test('an invalid Content-Length is a 400 with a JSON body', async () => {
    const r = await rawRequest(port, head('POST', BASE, { authorization: `Bearer ${WRITE_TOKEN}`, 'content-length': 'abc' }) + '["PING"]')
    expect(r.status).toBe(400)
    expect(JSON.parse(r.text).error).toMatch(/^BADREQUEST /)
  })

  test('a client that goes away in the middle of a body leaves nothing behind', async () => {
    await new Promise<void>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.write(head('POST', `${BASE}/set/bi:cut`, { authorization: `Bearer ${WRITE_TOKEN}`, 'content-length': 1000 }))
        s.write('only a part of the body', () => {
          s.destroy()
          resolve()
        })
      })
      s.on('error', reject)
    })
    // And one that goes away after the headers of a JSON command.
    await new Promise<void>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.end(head('POST', BASE, { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-length': 50 }) + '["SET"', () => resolve())
      })
      s.on('error', reject)
    })
    await waitFor(async () => expect(await serverSockets()).toEqual([]), { message: 'gateway closed the cut connections' })
    expect(await direct.exists('bi:cut')).toBe(0)
  })
})

// Last in the file: the state after all of the above.
describe('no leaks', () => {
  test('redis-server sees only the gateway command connection (and ours), as after warm-up, and one per token-level user', async () => {
    await waitFor(async () => expect(await connectedClients()).toBe(baselineClients), {
      message: `connected_clients back to ${baselineClients}`,
    })
    const c = await redis.gatewayConnections()
    expect(c.subscribers).toBe(0)
    for (const n of Object.values(c.levels)) expect(n).toBe(1)
  })

  test('the gateway HTTP server holds no sockets once clients have closed', async () => {
    // The probe sees a live connection (so an empty list below means something)...
    const live = net.connect({ host: '127.0.0.1', port })
    live.on('error', () => {})
    await new Promise<void>((resolve) => {
      live.once('data', () => resolve())
      live.write(head('GET', `${BASE}/get/bi:alive`, { authorization: `Bearer ${WRITE_TOKEN}`, connection: 'keep-alive' }))
    })
    await waitFor(async () => (await serverSockets()).some((l) => l.startsWith('ESTAB')), { message: 'probe sees the keep-alive connection' })
    live.destroy()
    // ...and once every client has gone, the server keeps nothing open.
    await waitFor(async () => expect(await serverSockets()).toEqual([]), { message: 'no open sockets on the data port' })
  })
})
