// What the data plane adds around the two HTTP paths so that they answer alike: which requests the
// fast lane may serve (acceptFast), and the Host handling of node:http's path (anyHost), where the
// adapter would refuse requests the lane serves. (A backslash target is refused by both: the lane
// hands it over, fast-lane/.)

import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import fc from 'fast-check'
import { afterEach, describe, expect, test } from 'vitest'
import { rawRequest } from '../../test/helpers/raw-http.js'
import { acceptFast, anyHost, plainHost } from './data-plane.js'

// @hono/node-server's reValidHost: a Host it puts in a URL without parsing it.
const VALID_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/

const servers: Server[] = []
afterEach(() => {
  for (const s of servers.splice(0)) s.close()
})

describe('acceptFast', () => {
  test('subscriptions and event streams go to node:http', () => {
    const host = ['host', '127.0.0.1:8080']
    expect(acceptFast('GET', '/v1/instances/main/get/k', host)).toBe(true)
    expect(acceptFast('GET', '/v1/instances/main/subscribe/c', host)).toBe(false)
    expect(acceptFast('GET', '/v1/instances/main/get/k', [...host, 'accept', 'text/event-stream'])).toBe(false)
  })
})

describe('anyHost', () => {
  test("plainHost agrees with the adapter's pattern, near its edges and on arbitrary text", () => {
    const edge = ['', 'a', 'A', '127.0.0.1', '127.0.0.1:8080', 'h:999', 'h:1000', 'h:9999', 'h:10000', 'h:59999', 'h:60000', 'h:65535', 'h:0999', 'h:', ':8080', 'a b', 'a/b', '[::1]:8080', 'x:99999', 'a_b-c.d:1234', 'é']
    for (const h of edge) expect(plainHost(h), JSON.stringify(h)).toBe(VALID_HOST.test(h))
    const unit = fc.constantFrom(...'az09._-:AZ/ ['.split(''))
    fc.assert(fc.property(fc.string({ unit, maxLength: 12 }), (h) => plainHost(h) === VALID_HOST.test(h)), { numRuns: 20000, seed: 15 })
    expect(plainHost(undefined)).toBe(false)
  })

  test('the listener sees a Host it can use in place of one the adapter would refuse; a plain one as sent', async () => {
    const seen: (string | undefined)[] = []
    const server = createServer(anyHost((req: IncomingMessage, res) => {
      seen.push(req.headers.host)
      res.end('ok')
    }))
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    for (const host of ['gateway:8080', 'a/b', 'x:99999', '', 'UPPER', '[::1]:8080']) {
      const r = await rawRequest(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
      expect(r.text).toBe('ok')
    }
    expect(seen).toEqual(['gateway:8080', 'localhost', 'localhost', 'localhost', 'localhost', 'localhost'])
  })
})
