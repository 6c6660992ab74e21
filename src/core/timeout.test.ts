// withTimer (timeout.ts) against a real loopback socket: a reply that arrived while the event loop
// was blocked past the timeout is seen before the timeout's verdict (ioTimeout), and a promise that
// does not settle still times out.

import { once } from 'node:events'
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { withTimer } from './timeout.js'

const closers: (() => void)[] = []
afterEach(() => {
  for (const c of closers.splice(0)) c()
})

/** A connected loopback pair: `client` and the server's side of it. */
async function pair(): Promise<{ client: net.Socket; peer: net.Socket }> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const client = net.connect(port, '127.0.0.1')
  const [peer] = (await once(server, 'connection')) as [net.Socket]
  await once(client, 'connect')
  closers.push(() => {
    client.destroy()
    peer.destroy()
    server.close()
  })
  return { client, peer }
}

function block(ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // A turn of a busy event loop.
  }
}

describe('withTimer', () => {
  it('a reply already in the kernel when the timer expires wins over the timeout', async () => {
    const { client, peer } = await pair()
    const reply = new Promise<string>((resolve) => client.once('data', (b: Buffer) => resolve(b.toString())))
    const bounded = withTimer(reply, 50, () => new Error('timed out'))
    peer.write('pong')
    // The reply arrives during this turn; the timer expires during it too.
    block(200)
    await expect(bounded).resolves.toBe('pong')
  })

  it('a promise that does not settle times out', async () => {
    await expect(withTimer(new Promise(() => {}), 20, () => new Error('timed out'))).rejects.toThrow('timed out')
  })
})
