// The ceiling of Node's HTTP layer: a raw node:http server that reads the request body and answers
// a fixed JSON reply, with nothing else in the way. Plain JavaScript (no tsx loader), run with the
// same `node` as the gateway. Usage: node bench/hello-server.mjs <port>
// A request header `x-reply-bytes: N` makes the reply N bytes long, so a scenario can compare
// against a reply the same size as the gateway's.

import { createServer } from 'node:http'

const port = Number(process.argv[2] ?? 8081)
const SMALL = Buffer.from('{"result":"aGVsbG8="}')
const sized = new Map()

function body(n) {
  let b = sized.get(n)
  if (b === undefined) {
    // {"result":"xxxx..."}: n bytes in all
    const pad = Math.max(0, n - 13)
    b = Buffer.from(`{"result":"${'x'.repeat(pad)}"}`)
    sized.set(n, b)
  }
  return b
}

createServer((req, res) => {
  const want = req.headers['x-reply-bytes']
  const reply = want === undefined ? SMALL : body(Number(want))
  req.on('data', () => {})
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': reply.length })
    res.end(reply)
  })
}).listen(port, '127.0.0.1')

// Exit normally on a signal, so `node --cpu-prof` writes its profile.
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0))
