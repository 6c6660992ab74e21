// Many Redis endpoints that are one redis-server, for benchmarks of instances "on endpoints of their
// own" (bench/sizing.ts, bench/cost.ts). Endpoint i is the loopback address endpointHost(i):<port>
// (127.77.x.y), a listening socket of a forwarder process that pipes every accepted connection to
// the redis-server on 127.0.0.1:<redisPort>: every endpoint is a real Redis, reachable on loopback
// only, that the gateway cannot tell from a separate server. 2,500 endpoints per forwarder process,
// all on the client core (they share it with the load generator and the redis-server).
//
// startForwarders() starts them; this file is also the forwarder process itself:
//   node --import tsx bench/lib/forwarder.ts <redisPort> <port> <first> <count>
// listens for endpoints first..first+count-1, prints "LISTENING <count>" when all listen and runs
// until killed.

import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { freePort } from '../../test/helpers/ports.js'
import { CLIENT_CORE, pinned, sleep, start, type Proc } from './procs.js'

const SELF = fileURLToPath(import.meta.url)
/** Endpoints per forwarder process. */
export const PER_FORWARDER = 2500

/** Endpoint i's loopback address: 127.77.0.1 ... (250 per third octet). */
export function endpointHost(i: number): string {
  return `127.77.${Math.floor(i / 250)}.${1 + (i % 250)}`
}

/** The forwarder process's body: listens for endpoints first..first+count-1 on `port`. */
export async function forwarder(redisPort: number, port: number, first: number, count: number): Promise<void> {
  const listenOne = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const srv = net.createServer((c) => {
        // Spread over source addresses, as conn-holder.ts does, so 10,000 connections to one port
        // do not crowd one address's ephemeral ports.
        const up = net.connect({ port: redisPort, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 64)}` })
        c.setNoDelay(true)
        up.setNoDelay(true)
        c.pipe(up)
        up.pipe(c)
        const kill = (): void => {
          c.destroy()
          up.destroy()
        }
        c.on('error', kill)
        up.on('error', kill)
        c.on('close', kill)
        up.on('close', kill)
      })
      srv.once('error', reject)
      srv.listen({ host: endpointHost(i), port, backlog: 511 }, () => resolve())
    })
  for (let i = first; i < first + count; i += 250) {
    await Promise.all(Array.from({ length: Math.min(250, first + count - i) }, (_, k) => listenOne(i + k)))
  }
  process.stdout.write(`LISTENING ${count}\n`)
  setInterval(() => {}, 1 << 30)
}

export interface Forwarders {
  /** The port every endpoint listens on. */
  readonly port: number
  readonly procs: readonly Proc[]
  /** Endpoint i's URL, for a gateway config. */
  endpoint(i: number): string
  stop(): Promise<void>
}

/**
 * Starts forwarder processes (pinned to the client core) for endpoints 0..n-1 to the redis-server
 * on 127.0.0.1:<redisPort> and waits until all listen. Turns that redis-server's protected mode off:
 * it accepts only 127.0.0.1 as loopback, and the forwarders connect from 127.0.0.2-65 (the server
 * listens on 127.0.0.1 only anyway).
 */
export async function startForwarders(redisPort: number, n: number, timeoutMs = 60_000): Promise<Forwarders> {
  const rc = new Redis({ port: redisPort, host: '127.0.0.1' })
  await rc.config('SET', 'protected-mode', 'no')
  rc.disconnect()
  const port = await freePort()
  const procs: Proc[] = []
  for (let first = 0; first < n; first += PER_FORWARDER) {
    const count = Math.min(PER_FORWARDER, n - first)
    procs.push(start('forwarder', pinned(CLIENT_CORE, [process.execPath, '--import', 'tsx', SELF, String(redisPort), String(port), String(first), String(count)])))
  }
  const until = Date.now() + timeoutMs
  for (const p of procs) {
    while (!p.log().includes('LISTENING')) {
      if (p.child.exitCode !== null || Date.now() > until) throw new Error(`forwarder did not listen:\n${p.log()}`)
      await sleep(100)
    }
  }
  return {
    port,
    procs,
    endpoint: (i) => `redis://${endpointHost(i)}:${port}`,
    stop: async () => {
      for (const p of procs) await p.stop()
    },
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === SELF) {
  const [redisPort, port, first, count] = process.argv.slice(2).map(Number)
  await forwarder(redisPort!, port!, first!, count!)
}
