// The floor of a Node HTTP gateway: a raw `net` server (no node:http) that finds each request's end
// (CR LF CR LF plus Content-Length), and answers it either with a fixed JSON reply (`hello` mode) or
// with the reply to one GET sent to Redis over a single shared connection, commands of a turn in one
// write (`proxy` mode: what the gateway does for a GET, with no auth, routing, metrics or checks).
// Plain JavaScript (no tsx loader), run with the same `node` as the gateway, for `bench:tails`.
// Usage: node bench/raw-server.mjs <port> hello
//        node bench/raw-server.mjs <port> proxy <redis-port> <key>

import { createConnection, createServer } from 'node:net'

const [portArg, mode = 'hello', redisPort, key = 'k'] = process.argv.slice(2)
const HELLO = Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n{"result":"aGVsbG8="}')
const CRLF2 = Buffer.from('\r\n\r\n')

// Proxy mode: one Redis connection; replies (bulk strings) go to the waiting sockets in order.
const waiting = []
let out = ''
let flushing = false
let redis = null
let pending = Buffer.alloc(0)
const COMMAND = `*2\r\n$3\r\nGET\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`
if (mode === 'proxy') {
  redis = createConnection({ port: Number(redisPort), host: '127.0.0.1', noDelay: true })
  redis.on('data', (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    let i = 0
    for (;;) {
      // $<len>\r\n<bytes>\r\n or $-1\r\n
      const nl = pending.indexOf(10, i)
      if (nl < 0) break
      const len = Number(pending.toString('latin1', i + 1, nl - 1))
      const end = len < 0 ? nl + 1 : nl + 1 + len + 2
      if (end > pending.length) break
      const value = len < 0 ? null : pending.toString('base64', nl + 1, nl + 1 + len)
      const body = value === null ? '{"result":null}' : `{"result":"${value}"}`
      waiting.shift().write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`, 'latin1')
      i = end
    }
    pending = i === pending.length ? Buffer.alloc(0) : pending.subarray(i)
  })
}

function flush() {
  flushing = false
  redis.write(out, 'latin1')
  out = ''
}

function answer(socket) {
  if (redis === null) {
    socket.write(HELLO)
    return
  }
  waiting.push(socket)
  out += COMMAND
  if (!flushing) {
    flushing = true
    setImmediate(flush)
  }
}

createServer({ noDelay: true }, (socket) => {
  let buf = Buffer.alloc(0)
  socket.on('data', (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    for (;;) {
      const end = buf.indexOf(CRLF2)
      if (end < 0) return
      const head = buf.toString('latin1', 0, end).toLowerCase()
      const m = /content-length: *(\d+)/.exec(head)
      const total = end + 4 + (m === null ? 0 : Number(m[1]))
      if (buf.length < total) return
      buf = buf.subarray(total)
      answer(socket)
    }
  })
  socket.on('error', () => {})
}).listen(Number(portArg), '127.0.0.1')

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0))
