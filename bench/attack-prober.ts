// The normal client of bench/attacks.ts, in a process of its own so that the attacks (built and
// sent by the parent) cannot delay it: GET requests one after another on one keep-alive
// connection, for as long as it runs. Each answer is one stdout line, `<Date.now()> <latency us>
// <status> [<error code>]`, so the parent can take the ones that fall inside each attack.
//   tsx bench/attack-prober.ts <port> <token> <instance> <key>

import http from 'node:http'

const [port, token, instance, key] = process.argv.slice(2)
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
const path = `/v1/instances/${instance}/get/${key}`

function once(): Promise<string> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: Number(port), path, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        if (res.statusCode === 200) return resolve('200')
        const error = /"error":"([A-Z]+)/.exec(Buffer.concat(chunks).toString('utf8'))?.[1] ?? ''
        resolve(`${res.statusCode ?? 0} ${error}`)
      })
    })
    // A refused or broken request is a sample too (status 0): the attack made the gateway fail it.
    req.on('error', () => resolve('0'))
    req.end()
  })
}

for (;;) {
  const t = process.hrtime.bigint()
  const status = await once()
  const us = Number(process.hrtime.bigint() - t) / 1000
  process.stdout.write(`${Date.now()} ${Math.round(us)} ${status}\n`)
}
