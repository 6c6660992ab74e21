// A userspace TCP proxy in front of a real server (usually a redis-server), listening on
// 127.0.0.1 on a port from freePort(), with faults that a test switches on and off at run time:
//
//   delay(ms)   every chunk, in both directions, is forwarded ms later; order is preserved
//               (one FIFO per direction), so a changed delay never reorders bytes.
//   stall()     nothing is forwarded in either direction; sockets stay open and what arrives
//               is held. resume() forwards what was held, in order. Models a hung endpoint
//               (SIGSTOP, a black-holed network): connects still succeed, nothing answers.
//   reset()     every current connection (both halves) is destroyed with an RST
//               (socket.resetAndDestroy()), as when the endpoint crashes or a middlebox kills
//               the flow: the client sees ECONNRESET / a closed connection.
//   refuse(on)  the listener is closed, so new connects get a kernel RST to the SYN, i.e. a real
//               ECONNREFUSED, exactly what a client sees when nothing listens on the port (a
//               stopped process, a restarting pod). Accept-then-reset would instead look like a
//               connection that opened and then broke (ECONNRESET after 'connect'), a different
//               path in clients. Existing connections are untouched (combine with reset() to
//               model a crash). refuse(false) listens again on the same port (SO_REUSEADDR;
//               retried briefly if another process grabbed it meanwhile).
//   heal()      clears every fault: no delay, forwarding resumed (held data flushed), listening.
//
// Every socket and timer is tracked; close() resets all connections, closes the listener and
// resolves once every socket has emitted 'close'. A connection to the target that fails
// (target down) resets the client socket.

import net from 'node:net'
import { freePort } from './ports.js'

export interface FaultProxyOptions {
  /** Where to forward. */
  target: { host?: string; port: number }
  /** Port to listen on. Default: one from freePort(), so this process never hands it out again (it must stay ours while refuse() has the listener closed). */
  port?: number
  /** Listen address. Default 127.0.0.1. */
  host?: string
}

export interface FaultState {
  readonly delayMs: number
  readonly stalled: boolean
  readonly refusing: boolean
}

/** Above this many held bytes in one direction the source is paused (back-pressure), so a stall cannot grow memory without bound. */
const HIGH_WATER = 8 * 1024 * 1024

type Held = { readonly chunk: Buffer; readonly dueAt: number }

/** One direction of a connection: from `src` to `dst`, through a FIFO of held chunks. */
class Lane {
  private readonly queue: Held[] = []
  private heldBytes = 0
  private timer: NodeJS.Timeout | null = null
  private srcEnded = false
  private pausedForBackpressure = false

  constructor(
    private readonly proxy: FaultProxy,
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
  ) {}

  start(): void {
    this.src.on('data', (chunk: Buffer) => this.push(chunk))
    this.src.on('end', () => {
      this.srcEnded = true
      this.pump()
    })
    this.dst.on('drain', () => this.onDrain())
  }

  private push(chunk: Buffer): void {
    const delayMs = this.proxy.delayMs
    if (this.queue.length === 0 && !this.proxy.stalled && delayMs === 0) {
      this.write(chunk)
      return
    }
    this.queue.push({ chunk, dueAt: performance.now() + delayMs })
    this.heldBytes += chunk.length
    if (this.heldBytes > HIGH_WATER && !this.src.isPaused()) {
      this.pausedForBackpressure = true
      this.src.pause()
    }
    this.pump()
  }

  private write(chunk: Buffer): void {
    if (this.dst.destroyed || this.dst.writableEnded) return
    if (!this.dst.write(chunk) && !this.src.isPaused()) {
      this.pausedForBackpressure = true
      this.src.pause()
    }
  }

  private onDrain(): void {
    if (this.pausedForBackpressure && this.heldBytes <= HIGH_WATER && !this.src.destroyed) {
      this.pausedForBackpressure = false
      this.src.resume()
    }
  }

  /** Forwards every chunk that is due, unless stalled; schedules itself for the next one. */
  pump(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
    }
    if (this.proxy.stalled || this.dst.destroyed) return
    const now = performance.now()
    while (this.queue.length > 0) {
      const head = this.queue[0]!
      // Timers may fire up to ~1 ms early against performance.now(); never forward early.
      if (head.dueAt > now) {
        this.timer = setTimeout(() => this.pump(), Math.max(1, Math.ceil(head.dueAt - now)))
        return
      }
      this.queue.shift()
      this.heldBytes -= head.chunk.length
      this.write(head.chunk)
    }
    if (this.pausedForBackpressure && this.dst.writableLength === 0) this.onDrain()
    if (this.srcEnded && !this.dst.destroyed && !this.dst.writableEnded) this.dst.end()
  }

  /** Drops held data and the timer (the connection is going away). */
  dispose(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.queue.length = 0
    this.heldBytes = 0
  }
}

class Pair {
  readonly lanes: Lane[] = []
  private closedCount = 0
  readonly closed: Promise<void>
  private resolveClosed!: () => void

  constructor(
    readonly client: net.Socket,
    readonly upstream: net.Socket,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve))
    for (const s of [client, upstream]) {
      s.once('close', () => {
        if (++this.closedCount === 2) {
          for (const lane of this.lanes) lane.dispose()
          this.resolveClosed()
        }
      })
    }
  }

  reset(): void {
    for (const lane of this.lanes) lane.dispose()
    for (const s of [this.client, this.upstream]) resetSocket(s)
  }
}

function resetSocket(s: net.Socket): void {
  if (s.destroyed) return
  // resetAndDestroy() needs a connected handle; before 'connect' it throws ERR_SOCKET_CLOSED.
  try {
    if (typeof s.resetAndDestroy === 'function' && !s.connecting) {
      s.resetAndDestroy()
      return
    }
  } catch {
    // Fall through to a plain destroy.
  }
  s.destroy()
}

export class FaultProxy {
  readonly host: string
  private _port: number
  private readonly targetHost: string
  private readonly targetPort: number
  private server: net.Server | null = null
  private readonly pairs = new Set<Pair>()
  private _delayMs = 0
  private _stalled = false
  private _refusing = false
  private _accepted = 0
  private closing = false

  private constructor(opts: FaultProxyOptions) {
    this.host = opts.host ?? '127.0.0.1'
    this._port = opts.port ?? 0
    this.targetHost = opts.target.host ?? '127.0.0.1'
    this.targetPort = opts.target.port
  }

  /** Starts a proxy listening on a free loopback port (or opts.port) that forwards to opts.target. */
  static async start(opts: FaultProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(opts)
    if (opts.port !== undefined) {
      await proxy.listen()
      return proxy
    }
    // Another process may take a free port before we bind it: try a few.
    for (let attempt = 1; ; attempt++) {
      proxy._port = await freePort(proxy.host)
      try {
        await proxy.listen(false)
        return proxy
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err
      }
    }
  }

  get port(): number {
    return this._port
  }
  /** `host:port` of the proxy. */
  get address(): string {
    return `${this.host}:${this._port}`
  }
  /** `redis://host:port`, for a redis-server behind the proxy without a password. */
  get url(): string {
    return `redis://${this.host}:${this._port}`
  }
  get delayMs(): number {
    return this._delayMs
  }
  get stalled(): boolean {
    return this._stalled
  }
  get faults(): FaultState {
    return { delayMs: this._delayMs, stalled: this._stalled, refusing: this._refusing }
  }
  /** Open client-side sockets (connections accepted and not yet closed). */
  get connections(): number {
    let n = 0
    for (const p of this.pairs) if (!p.client.destroyed) n++
    return n
  }
  /** Connections accepted since start. */
  get accepted(): number {
    return this._accepted
  }

  /** Adds ms of latency to every chunk in both directions (0 removes it). Order is preserved. */
  delay(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`delay: expected ms >= 0, got ${ms}`)
    this._delayMs = ms
  }

  /** Stops forwarding in both directions; sockets stay open and data is held until resume() or heal(). */
  stall(): void {
    this._stalled = true
  }

  /** Forwards what stall() held, in order, and resumes forwarding. */
  resume(): void {
    this._stalled = false
    for (const p of this.pairs) for (const lane of p.lanes) lane.pump()
  }

  /** Destroys every current connection with an RST (both the client side and the upstream side). Resolves when all are closed. */
  async reset(): Promise<void> {
    const pairs = [...this.pairs]
    for (const p of pairs) p.reset()
    await Promise.all(pairs.map((p) => p.closed))
  }

  /**
   * refuse(true): closes the listener, so new connects fail with ECONNREFUSED (existing
   * connections keep working). refuse(false): listens again on the same port.
   */
  async refuse(on: boolean): Promise<void> {
    if (this.closing) throw new Error('refuse: the proxy is closed')
    if (on === this._refusing) return
    this._refusing = on
    if (on) await this.closeListener()
    else await this.listen()
  }

  /** Clears every fault: no delay, forwarding resumed (held data flushed), accepting connections. */
  async heal(): Promise<void> {
    this._delayMs = 0
    this.resume()
    await this.refuse(false)
  }

  /** Closes the listener, resets every connection, clears every timer; resolves when all sockets are closed. Safe to call twice. */
  async close(): Promise<void> {
    this.closing = true
    this._stalled = false
    await this.closeListener()
    await this.reset()
  }

  private closeListener(): Promise<void> {
    const server = this.server
    this.server = null
    if (server === null) return Promise.resolve()
    // close() frees the port at once; its callback would wait for connections, which the
    // listener does not own here (they are tracked in pairs), so wait only for the handle.
    return new Promise((resolve) => {
      server.close()
      // The listening handle closes synchronously with close(); one tick lets 'close' bookkeeping settle.
      setImmediate(resolve)
    })
  }

  /** Listens on this._port; on EADDRINUSE retries for up to 2 s when `retry` (re-opening after refuse()). */
  private async listen(retry = true): Promise<void> {
    const deadline = Date.now() + (retry ? 2_000 : 0)
    for (;;) {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket))
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen({ host: this.host, port: this._port }, () => {
            server.off('error', reject)
            resolve()
          })
        })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && this._port !== 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20))
          continue
        }
        throw err
      }
      const address = server.address()
      if (typeof address === 'object' && address !== null) this._port = address.port
      server.on('error', () => {
        // A listener error after listen (rare) must not crash the test process.
      })
      this.server = server
      return
    }
  }

  private accept(client: net.Socket): void {
    this._accepted++
    if (this.closing) {
      resetSocket(client)
      return
    }
    client.setNoDelay(true)
    const upstream = net.connect({ host: this.targetHost, port: this.targetPort, allowHalfOpen: true })
    upstream.setNoDelay(true)
    const pair = new Pair(client, upstream)
    this.pairs.add(pair)
    void pair.closed.then(() => this.pairs.delete(pair))
    // An error on either side (an RST, or the target refusing the connect) kills the pair and is
    // passed on as an RST, so the other side sees the connection break rather than end cleanly.
    const onError = (peer: net.Socket) => (): void => {
      for (const lane of pair.lanes) lane.dispose()
      resetSocket(peer)
    }
    client.on('error', onError(upstream))
    upstream.on('error', onError(client))
    // Whichever side closes completely takes the other with it once its data is flushed.
    client.once('close', () => {
      if (!upstream.destroyed && upstream.writableLength === 0) upstream.destroy()
      else upstream.once('drain', () => upstream.destroy())
    })
    upstream.once('close', () => {
      if (!client.destroyed && client.writableLength === 0 && client.readableEnded) client.destroy()
    })
    upstream.once('connect', () => {
      const toUpstream = new Lane(this, client, upstream)
      const toClient = new Lane(this, upstream, client)
      pair.lanes.push(toUpstream, toClient)
      toUpstream.start()
      toClient.start()
      client.resume()
    })
  }
}

/** Starts a FaultProxy forwarding to `target` (anything with a host and port, e.g. a RedisServer). */
export function startFaultProxy(target: { host?: string; port: number }, opts: Omit<FaultProxyOptions, 'target'> = {}): Promise<FaultProxy> {
  return FaultProxy.start({ ...opts, target })
}
