// A fake Redis server for tests that need Redis to misbehave: a net.Server on 127.0.0.1 (a port
// from freePort()) that parses the RESP commands it receives (arrays of bulk strings, as every
// client sends them; inline commands are not supported) and answers each with a handler.
//
// Out of the box it looks like a healthy standalone primary to the gateway, which sends:
//   INFO persistence          ready check on connect (resp-connection.ts)      -> loading:0
//   ROLE                      health checks, and after writes                   -> master, offset 0, no replicas
//   INFO replication          read-your-writes tokens                           -> role:master, a replid, offset 0
//   COMMAND LIST/INFO, ACL .. ACL-user provisioning (acl-users.ts)              -> -ERR unknown command, so the
//                             endpoint is "unmanaged" and every token runs on the gateway's own connection
//   AUTH                      only when a password is configured                -> +OK
// plus PING, ECHO, GET, SET and DEL on an in-memory map, so a test can show that a connection
// still works. Anything else is `-ERR unknown command`.
//
// Tests script hostile answers per command, e.g.
//   fake.on('GET', (args, socket) => socket.write('$-5\r\n'))
// and read what arrived: `connections` (each with the commands it carried, and whether it is
// still open and who closed it) and `commands` (all of them, in order).

import net from 'node:net'
import { freePort } from './ports.js'

/** Answers one command: `args` are the arguments after the command name, as UTF-8 text. */
export type FakeHandler = (args: string[], socket: net.Socket, conn: FakeConnection) => void

export interface FakeConnection {
  /** 1, 2, ... in the order the connections were accepted. */
  readonly id: number
  readonly socket: net.Socket
  /** The commands received on this connection, in order, each as [NAME, ...args]. */
  readonly commands: string[][]
  /** The socket has closed. */
  closed: boolean
  /** Who closed it first: the client (FIN or reset from the peer) or this server (drop(), a handler). */
  closedBy: 'client' | 'server' | null
}

/** RESP2 encoders for handlers. */
export const resp = {
  simple: (s: string): string => `+${s}\r\n`,
  error: (s: string): string => `-${s}\r\n`,
  int: (n: number | bigint): string => `:${n}\r\n`,
  bulk(v: string | Buffer | null): Buffer {
    if (v === null) return Buffer.from('$-1\r\n')
    const b = typeof v === 'string' ? Buffer.from(v) : v
    return Buffer.concat([Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n')])
  },
  array(items: (string | Buffer)[] | null): Buffer {
    if (items === null) return Buffer.from('*-1\r\n')
    return Buffer.concat([Buffer.from(`*${items.length}\r\n`), ...items.map((i) => (typeof i === 'string' ? Buffer.from(i) : i))])
  },
}

const REPLID = 'f'.repeat(40)

function defaultHandlers(store: Map<string, Buffer>): Map<string, FakeHandler> {
  const h = new Map<string, FakeHandler>()
  h.set('PING', (args, s) => s.write(args.length > 0 ? resp.bulk(args[0]!) : resp.simple('PONG')))
  h.set('ECHO', (args, s) => s.write(resp.bulk(args[0] ?? '')))
  h.set('AUTH', (_, s) => s.write(resp.simple('OK')))
  h.set('INFO', (_, s) =>
    s.write(
      resp.bulk(
        [
          '# Server',
          'redis_version:7.0.15',
          'redis_mode:standalone',
          '# Persistence',
          'loading:0',
          '# Replication',
          'role:master',
          'connected_slaves:0',
          `master_replid:${REPLID}`,
          'master_repl_offset:0',
          '',
        ].join('\r\n'),
      ),
    ),
  )
  h.set('ROLE', (_, s) => s.write(resp.array([resp.bulk('master'), resp.int(0), resp.array([])])))
  h.set('GET', (args, s) => s.write(resp.bulk(store.get(args[0] ?? '') ?? null)))
  h.set('SET', (args, s) => {
    store.set(args[0] ?? '', Buffer.from(args[1] ?? ''))
    s.write(resp.simple('OK'))
  })
  h.set('DEL', (args, s) => {
    let n = 0
    for (const k of args) if (store.delete(k)) n++
    s.write(resp.int(n))
  })
  return h
}

export class FakeRedis {
  readonly host = '127.0.0.1'
  readonly connections: FakeConnection[] = []
  /** Every command received, in order, with the id of its connection. */
  readonly commands: { conn: number; args: string[] }[] = []
  /** Keys and values of the default GET / SET / DEL. */
  readonly store = new Map<string, Buffer>()
  private handlers: Map<string, FakeHandler>

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {
    this.handlers = defaultHandlers(this.store)
  }

  /** Starts listening on a free loopback port. */
  static async start(): Promise<FakeRedis> {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort()
      const server = net.createServer()
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
            server.off('error', reject)
            resolve()
          })
        })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err
        continue
      }
      const fake = new FakeRedis(server, port)
      server.on('connection', (socket) => fake.accept(socket))
      return fake
    }
  }

  /** `redis://127.0.0.1:<port>` */
  get url(): string {
    return `redis://${this.host}:${this.port}`
  }

  /** Connections not closed yet. */
  get open(): FakeConnection[] {
    return this.connections.filter((c) => !c.closed)
  }

  /** Replaces the handler of `command` (case-insensitive) until off() or reset(). */
  on(command: string, handler: FakeHandler): this {
    this.handlers.set(command.toUpperCase(), handler)
    return this
  }

  /** Back to the default answer for `command` (or `-ERR unknown command` when it has none). */
  off(command: string): this {
    const d = defaultHandlers(this.store).get(command.toUpperCase())
    if (d) this.handlers.set(command.toUpperCase(), d)
    else this.handlers.delete(command.toUpperCase())
    return this
  }

  /** Every handler back to its default. */
  reset(): void {
    this.handlers = defaultHandlers(this.store)
  }

  /** The commands named `name` (case-insensitive) received so far, each as [NAME, ...args]. */
  seen(name: string): string[][] {
    const upper = name.toUpperCase()
    return this.commands.filter((c) => c.args[0] === upper).map((c) => c.args)
  }

  /** Destroys every open connection (the client sees the connection lost). */
  drop(): void {
    for (const c of this.open) {
      c.closedBy ??= 'server'
      c.socket.destroy()
    }
  }

  /** Stops listening and destroys every connection; resolves once the listener is closed. */
  async close(): Promise<void> {
    this.drop()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private accept(socket: net.Socket): void {
    const conn: FakeConnection = { id: this.connections.length + 1, socket, commands: [], closed: false, closedBy: null }
    this.connections.push(conn)
    socket.setNoDelay(true)
    // A handler may end() its socket; what the client sends after that is ignored.
    const end = socket.end.bind(socket)
    socket.end = ((...a: Parameters<net.Socket['end']>) => {
      conn.closedBy ??= 'server'
      return end(...a)
    }) as net.Socket['end']
    // Node itself destroys the socket with an error when the peer resets it (a read or write
    // failing): only a destroy() without one is this server's doing.
    const destroy = socket.destroy.bind(socket)
    socket.destroy = ((err?: Error) => {
      if (err === undefined) conn.closedBy ??= 'server'
      return destroy(err)
    }) as net.Socket['destroy']
    socket.on('end', () => {
      conn.closedBy ??= 'client'
      socket.end()
    })
    socket.on('error', () => {
      conn.closedBy ??= 'client'
    })
    socket.on('close', () => {
      conn.closedBy ??= 'client'
      conn.closed = true
    })
    let buf: Buffer = Buffer.alloc(0) as Buffer
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      for (;;) {
        const parsed = parseCommand(buf)
        if (parsed === 'bad') {
          socket.destroy()
          return
        }
        if (parsed === null) return
        buf = buf.subarray(parsed.next)
        this.dispatch(parsed.args, conn)
        if (socket.destroyed || socket.writableEnded) return
      }
    })
  }

  private dispatch(argv: string[], conn: FakeConnection): void {
    const name = (argv[0] ?? '').toUpperCase()
    const args = [name, ...argv.slice(1)]
    conn.commands.push(args)
    this.commands.push({ conn: conn.id, args })
    const handler = this.handlers.get(name)
    if (handler) handler(argv.slice(1), conn.socket, conn)
    else {
      const shown = argv
        .slice(1)
        .map((a) => `'${a}'`)
        .join(' ')
      conn.socket.write(resp.error(`ERR unknown command '${argv[0] ?? ''}', with args beginning with: ${shown}`))
    }
  }
}

/** Starts a FakeRedis on a free loopback port. */
export function startFakeRedis(): Promise<FakeRedis> {
  return FakeRedis.start()
}

/** One command (`*n` then n bulk strings) from the start of `buf`; null: incomplete; 'bad': not RESP. */
function parseCommand(buf: Buffer): { args: string[]; next: number } | null | 'bad' {
  if (buf.length === 0) return null
  if (buf[0] !== 0x2a /* '*' */) return 'bad'
  let at = 0
  const line = (): number | null | 'bad' => {
    const end = buf.indexOf('\r\n', at + 1)
    if (end < 0) return buf.length - at > 64 ? 'bad' : null
    const n = Number(buf.toString('latin1', at + 1, end))
    if (!Number.isSafeInteger(n) || n < 0) return 'bad'
    at = end + 2
    return n
  }
  const count = line()
  if (count === null || count === 'bad') return count
  const args: string[] = []
  for (let i = 0; i < count; i++) {
    if (at >= buf.length) return null
    if (buf[at] !== 0x24 /* '$' */) return 'bad'
    const len = line()
    if (len === null || len === 'bad') return len
    if (buf.length < at + len + 2) return null
    args.push(buf.toString('utf8', at, at + len))
    at += len + 2
  }
  return { args, next: at }
}
