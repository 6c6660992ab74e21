// Free TCP ports for test servers: ask the kernel (listen on port 0), then close.
// The kernel may hand the same port out again once it is closed, so ports given out
// by this process are remembered and never returned twice. Other processes can still
// take a port between close and use: callers that bind later should retry on EADDRINUSE.

import net from 'node:net'

const handedOut = new Set<number>()
const MAX_ATTEMPTS = 50

function listenOnce(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : undefined
      server.close(() => {
        if (port === undefined) reject(new Error(`freePort: no port from listen on ${host}:0`))
        else resolve(port)
      })
    })
  })
}

/** A TCP port that was free on `host` a moment ago and was not handed out before by this process. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const port = await listenOnce(host)
    if (!handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error(`freePort: no unused port on ${host} after ${MAX_ATTEMPTS} attempts`)
}
