// Holds many client connections open against the gateway, for bench/memory.ts. Raw sockets (no
// http.Agent), so the client itself stays small and fast.
//   keepalive: each connection sends one GET request (path form, keep-alive) and reads the reply,
//              then stays open, idle but for one more request every 4 s (the gateway, with Node's
//              default keepAliveTimeout, closes a keep-alive connection idle for 5 s; clients such as
//              undici keep theirs 4 s);
//   sse:       each connection opens a Server-Sent Events subscription to its own channel and
//              waits for the `subscribe` event.
// Prints "READY {json}" once every connection is in that state, then "OPEN n" whenever asked on
// stdin ("count\n"); exits (closing everything) when stdin ends.
// Usage: node --import tsx bench/conn-holder.ts <keepalive|sse> <port> <count> <token> <instance>

import net from 'node:net'

const [mode, portArg, countArg, token, instance] = process.argv.slice(2)
const port = Number(portArg)
const count = Number(countArg)
const CONCURRENT_OPENS = 256
const REFRESH_MS = 3800

const sockets = new Set<net.Socket>()
let ready = 0
let failed = 0
let firstError = ''
let closedByServer = 0
const t0 = performance.now()

function request(i: number): string {
  if (mode === 'sse') {
    return (
      `POST /v1/instances/${instance}/subscribe/bench-sse-${i} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      `Authorization: Bearer ${token}\r\nAccept: text/event-stream\r\nContent-Length: 2\r\n\r\n[]`
    )
  }
  return (
    `GET /v1/instances/${instance}/get/bench:k HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    `Authorization: Bearer ${token}\r\nConnection: keep-alive\r\n\r\n`
  )
}

function open(i: number): Promise<void> {
  return new Promise((resolve) => {
    // Spread over source addresses 127.0.0.2-127.0.0.65: one address's ephemeral ports (and the
    // TIME_WAIT sockets earlier runs left) would make connect() slow long before 10,000.
    const s = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 64)}` })
    let buf = ''
    let done = false
    const finish = (ok: boolean, err?: string): void => {
      if (done) return
      done = true
      if (ok) ready++
      else {
        failed++
        firstError ||= err ?? 'failed'
        s.destroy()
      }
      resolve()
    }
    s.setNoDelay(true)
    s.once('connect', () => {
      sockets.add(s)
      s.write(request(i))
      if (mode === 'keepalive') {
        const t = setInterval(() => s.write(request(i)), REFRESH_MS + Math.floor(Math.random() * 200))
        s.once('close', () => clearInterval(t))
      }
    })
    s.on('data', (b: Buffer) => {
      if (done) return
      buf += b.toString('latin1')
      if (mode === 'sse') {
        if (buf.includes('data: subscribe,')) finish(true)
        else if (buf.startsWith('HTTP/1.1 ') && !buf.startsWith('HTTP/1.1 200')) finish(false, buf.split('\r\n')[0])
        return
      }
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      const m = /content-length: *(\d+)/i.exec(buf.slice(0, end))
      if (m && buf.length >= end + 4 + Number(m[1])) finish(buf.startsWith('HTTP/1.1 200'), buf.split('\r\n')[0])
    })
    s.on('error', (e) => finish(false, e.message))
    s.on('close', () => {
      sockets.delete(s)
      if (done) closedByServer++
      finish(false, 'closed')
    })
  })
}

let next = 0
async function worker(): Promise<void> {
  while (next < count) await open(next++)
}
await Promise.all(Array.from({ length: Math.min(CONCURRENT_OPENS, count) }, worker))
process.stdout.write(
  `READY ${JSON.stringify({ mode, ready, failed, firstError, open: sockets.size, openingMs: Math.round(performance.now() - t0) })}\n`,
)

let stdinBuf = ''
process.stdin.on('data', (b: Buffer) => {
  stdinBuf += b.toString('utf8')
  while (stdinBuf.includes('\n')) {
    stdinBuf = stdinBuf.slice(stdinBuf.indexOf('\n') + 1)
    process.stdout.write(`OPEN ${sockets.size} ${closedByServer}\n`)
  }
})
process.stdin.on('end', () => {
  for (const s of sockets) s.destroy()
  process.exit(0)
})
