// ConnectionTracker.drain() against a real Node HTTP server and raw keep-alive sockets: the
// listener closes, in-flight and later requests are answered with `Connection: close`, an idle
// keep-alive connection is not closed under a client that may be writing on it, and the timeout
// cuts what is still busy.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { ConnectionRefused, KeepAliveConnection, RequestLost } from '../../test/helpers/keep-alive-client.js'
import { waitFor } from '../../test/helpers/wait.js'
import { ConnectionTracker } from './drain.js'

interface Fixture {
  server: Server
  tracker: ConnectionTracker
  port: number
  /** Requests to /hold wait here until released. */
  held: ServerResponse[]
}

const open: KeepAliveConnection[] = []
const servers: Server[] = []

afterEach(() => {
  for (const c of open.splice(0)) c.close()
  for (const s of servers.splice(0)) s.closeAllConnections()
})

async function fixture(): Promise<Fixture> {
  const held: ServerResponse[] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    if (req.url === '/hold') held.push(res)
    else res.end('ok')
  })
  const tracker = new ConnectionTracker(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  servers.push(server)
  return { server, tracker, port: (server.address() as AddressInfo).port, held }
}

async function connect(port: number): Promise<KeepAliveConnection> {
  const c = await KeepAliveConnection.open(port)
  open.push(c)
  return c
}

describe('ConnectionTracker.drain', () => {
  it('keeps an idle keep-alive connection open and answers its next request with Connection: close', async () => {
    const f = await fixture()
    const c = await connect(f.port)
    const first = await c.request('GET', '/')
    expect(first.status).toBe(200)
    expect(first.headers.connection).toBe('keep-alive')
    expect(first.headers['keep-alive']).toBe('timeout=5')

    const drained = f.tracker.drain({ idleCloseMs: 60_000, timeoutMs: 60_000 })
    // New connections are refused at once: the client goes elsewhere.
    await expect(KeepAliveConnection.open(f.port)).rejects.toBeInstanceOf(ConnectionRefused)
    // The idle connection was not closed under the client: a request written on it is answered.
    expect(c.closed).toBe(false)
    const second = await c.request('GET', '/')
    expect(second.status).toBe(200)
    expect(second.headers.connection).toBe('close')
    await waitFor(() => c.closed, { message: 'the server to close the connection after Connection: close' })

    const r = await drained
    expect(r).toMatchObject({ inflightAtStart: 0, connectionsAtStart: 1, requestsDuringDrain: 1, connectionClose: 1, idleClosed: 0, cut: 0, destroyed: 0 })
    expect(f.server.listening).toBe(false)
  })

  it('lets an in-flight request finish, with Connection: close', async () => {
    const f = await fixture()
    const c = await connect(f.port)
    const pending = c.request('GET', '/hold')
    await waitFor(() => f.held.length === 1, { message: 'the request to reach the handler' })
    expect(f.tracker.inflight).toBe(1)

    const drained = f.tracker.drain({ idleCloseMs: 60_000, timeoutMs: 60_000 })
    f.held[0]!.end('late but fine')
    const res = await pending
    expect(res.status).toBe(200)
    expect(res.text).toBe('late but fine')
    expect(res.headers.connection).toBe('close')
    expect(await drained).toMatchObject({ inflightAtStart: 1, requestsDuringDrain: 0, connectionClose: 1, cut: 0 })
  })

  it('with idleCloseMs 0 closes idle connections at once, used or never used', async () => {
    const f = await fixture()
    const used = await connect(f.port)
    expect((await used.request('GET', '/')).status).toBe(200)
    const fresh = await connect(f.port)
    await waitFor(() => f.tracker.connections === 2, { message: 'both connections accepted' })
    const r = await f.tracker.drain({ idleCloseMs: 0, timeoutMs: 60_000 })
    expect(r).toMatchObject({ connectionsAtStart: 2, idleClosed: 2, cut: 0, destroyed: 0 })
    await waitFor(() => used.closed && fresh.closed, { message: 'the client sockets to see the close' })
  })

  it('closeIdleNow() closes idle connections during a drain that would wait for them', async () => {
    const f = await fixture()
    const c = await connect(f.port)
    expect((await c.request('GET', '/')).status).toBe(200)
    const drained = f.tracker.drain({ idleCloseMs: 60_000, timeoutMs: 60_000 })
    expect(c.closed).toBe(false)
    f.tracker.closeIdleNow()
    expect(await drained).toMatchObject({ idleClosed: 1, cut: 0 })
  })

  it('destroys connections still busy at the timeout and counts the requests cut', async () => {
    const f = await fixture()
    const c = await connect(f.port)
    // Settled into a value at once: it fails while the drain is awaited.
    const outcome = c.request('GET', '/hold').then(
      () => null,
      (e: unknown) => e,
    )
    await waitFor(() => f.held.length === 1, { message: 'the request to reach the handler' })
    const r = await f.tracker.drain({ idleCloseMs: 60_000, timeoutMs: 100 })
    expect(r).toMatchObject({ inflightAtStart: 1, cut: 1, destroyed: 1 })
    expect(await outcome).toBeInstanceOf(RequestLost)
  })

  it('drain() twice returns the first drain', async () => {
    const f = await fixture()
    const a = f.tracker.drain({ idleCloseMs: 0, timeoutMs: 1000 })
    expect(f.tracker.drain({ idleCloseMs: 0, timeoutMs: 1000 })).toBe(a)
    expect((await a).connectionsAtStart).toBe(0)
  })
})
