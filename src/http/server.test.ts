// createHttpServer (server.ts) with a plain listener and raw sockets: what node:http leaves to its
// user and the gateway now decides. Pipelined requests run one at a time and none after a reply
// that closes the connection; a parse error is answered after the replies to the whole requests
// before it; requests are refused before the listener for too many header lines, no Host or an
// unknown Expect; a FIN gets what arrived whole answered; a client that does not read is
// disconnected after the write timeout; an event stream ends at the FIN.

import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, test } from 'vitest'
import { exchange, RawConnection } from '../../test/helpers/raw-http.js'
import { waitFor } from '../../test/helpers/wait.js'
import { createHttpServer } from './server.js'

const servers: Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections()
    await new Promise<void>((resolve) => s.close(() => resolve()))
  }
})

interface Fixture {
  port: number
  /** 'start <url>' and 'end <url>' as the listener runs. */
  events: string[]
  /** What the server reported through onSlowClient. */
  slow: string[]
}

/**
 * A server whose listener answers `<method> <url>` after a few turns of the event loop (/slow: after
 * 50 ms), /close with Connection: close, /stream as an endless stream; bodies are read first.
 */
async function fixture(o: { maxHeaders?: number; writeTimeoutMs?: number; headersTimeoutMs?: number } = {}): Promise<Fixture> {
  const events: string[] = []
  const slow: string[] = []
  const { server } = createHttpServer(
    (req: IncomingMessage, res: ServerResponse) => {
      events.push(`start ${req.url}`)
      req.resume()
      req.on('end', () => {
        if (req.url === '/stream') {
          res.writeHead(200, { 'content-type': 'text/event-stream' })
          res.write('data: 1\n\n')
          return
        }
        if (req.url === '/big') {
          res.end('x'.repeat(32 * 1024 * 1024))
          return
        }
        setTimeout(() => {
          events.push(`end ${req.url}`)
          if (req.url === '/close') res.setHeader('connection', 'close')
          res.end(`${req.method} ${req.url}`)
        }, req.url === '/slow' ? 50 : 1)
      })
    },
    { maxHeaderBytes: 16 * 1024, maxHeaders: o.maxHeaders ?? 10, writeTimeoutMs: o.writeTimeoutMs ?? 30_000, onSlowClient: (r) => slow.push(r) },
  )
  if (o.headersTimeoutMs !== undefined) server.headersTimeout = o.headersTimeoutMs
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as AddressInfo).port, events, slow }
}

const get = (url: string, extra = ''): string => `GET ${url} HTTP/1.1\r\nHost: h\r\n${extra}\r\n`

describe('createHttpServer', () => {
  test('pipelined requests run one at a time, in order', async () => {
    const f = await fixture()
    const x = await exchange(f.port, [get('/slow') + get('/a') + get('/b')])
    expect(x.responses.map((r) => r.text)).toEqual(['GET /slow', 'GET /a', 'GET /b'])
    expect(f.events).toEqual(['start /slow', 'end /slow', 'start /a', 'end /a', 'start /b', 'end /b'])
  })

  test('nothing pipelined behind a reply that closes the connection runs', async () => {
    const f = await fixture()
    const x = await exchange(f.port, [get('/close') + get('/never')])
    expect(x.responses.map((r) => [r.text, r.headers.connection])).toEqual([['GET /close', 'close']])
    expect(f.events).toEqual(['start /close', 'end /close'])
  })

  test('a parse error after a whole request: its reply first, then the JSON 400', async () => {
    const f = await fixture()
    const x = await exchange(f.port, [`${get('/slow')}GARBAGE\r\n\r\n`], { fin: false })
    expect(x.responses.map((r) => [r.status, r.text])).toEqual([
      [200, 'GET /slow'],
      [400, '{"error":"BADREQUEST malformed HTTP request"}'],
    ])
  })

  test('more than maxHeaders lines: 431 before the listener; no Host: 400; an unknown Expect: 417; each JSON, each closing', async () => {
    const f = await fixture({ maxHeaders: 3 })
    const lines = (n: number): string => Array.from({ length: n }, (_, i) => `X-${i}: v\r\n`).join('')
    const cases: [string, number, string][] = [
      [get('/three', lines(2)), 200, 'GET /three'],
      [get('/four', lines(3)), 431, '{"error":"TOOLARGE more than 3 header lines (limits.maxHeaders)"}'],
      ['GET /nohost HTTP/1.1\r\n\r\n', 400, '{"error":"BADREQUEST the request has no Host header"}'],
      [get('/expect', 'Expect: something\r\n'), 417, '{"error":"EXPECTATION only \\"Expect: 100-continue\\" is supported"}'],
    ]
    for (const [bytes, status, text] of cases) {
      const x = await exchange(f.port, [bytes + get('/after')])
      expect(x.responses.map((r) => [r.status, r.text]), bytes).toEqual([[status, text], ...(status === 200 ? [[200, 'GET /after']] : [])])
    }
    expect(f.events).toEqual(['start /three', 'end /three', 'start /after', 'end /after'])
  })

  test('a FIN after pipelined requests: each is answered, then the connection closes', async () => {
    const f = await fixture()
    const x = await exchange(f.port, [get('/slow') + get('/a')])
    expect(x.end).toBe('closed')
    expect(x.responses.map((r) => [r.text, r.headers.connection])).toEqual([
      ['GET /slow', 'keep-alive'],
      ['GET /a', 'keep-alive'],
    ])
  })

  test('a FIN ends an event stream at once', async () => {
    const f = await fixture()
    const c = await RawConnection.open(f.port, { allowHalfOpen: true })
    c.write(get('/stream'))
    await c.waitFor((t) => t.includes('data: 1'), 'the stream to start')
    c.socket.end()
    await waitFor(() => c.ended, { message: 'the server to end the stream' })
    c.close()
  })

  test('a client that does not take its reply is disconnected after the write timeout', async () => {
    const f = await fixture({ writeTimeoutMs: 300 })
    const c = await RawConnection.open(f.port)
    c.socket.pause()
    c.write(get('/big'))
    // Reading again once the server gave up: the reply stops short, then the connection ends.
    await waitFor(async () => !(await stillOpen(f.port)), { message: 'the server to drop the connection' })
    c.socket.resume()
    await waitFor(() => c.ended, { message: 'the client to see the end' })
    expect(c.buf().length).toBeLessThan(32 * 1024 * 1024)
    expect(f.slow).toEqual(['write_timeout'])
  })

  test('a request that does not arrive in time gets a 408 and is reported as a slow client', async () => {
    const f = await fixture({ headersTimeoutMs: 300 })
    const c = await RawConnection.open(f.port)
    c.write('GET /slowloris HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ')
    await waitFor(() => c.ended, { timeoutMs: 5_000, message: 'the server to end the connection' })
    expect(c.buf().toString('latin1')).toMatch(/^HTTP\/1\.1 408 /)
    expect(f.slow).toEqual(['request_timeout'])
  })
})

/** Whether the server still has an established connection on `port`. */
async function stillOpen(port: number): Promise<boolean> {
  const { execFile } = await import('node:child_process')
  const out = await new Promise<string>((resolve, reject) =>
    execFile('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], (err, stdout) => (err ? reject(err) : resolve(stdout))),
  )
  return out.trim().length > 0
}
