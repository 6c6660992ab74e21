// The gateway over TLS to a real TLS-only redis-server (`--port 0 --tls-port`), with a throwaway CA
// and server certificates made by the openssl CLI. The gateway runs as a real process; the client
// is the real @upstash/redis SDK. Trusted (NODE_EXTRA_CA_CERTS) and named right (SAN IP:127.0.0.1):
// commands and pipelines work. Untrusted, or trusted but issued for another name: the endpoint
// never comes up, nothing is sent to Redis, and requests get a prompt 503 NOENDPOINT.
//
// The test redis-server helper waits for PONG over plain TCP, so TLS-only servers are spawned here
// and awaited with a TLS PING.

import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { promisify } from 'node:util'
import { Redis } from '@upstash/redis'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { stringify } from 'yaml'
import { killAll, spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js'
import { freePort } from '../helpers/ports.js'
import { findRedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const run = promisify(execFile)
const TOKEN = 'tls-test-token'
/** For /admin/routes (ops.auth: admin, the default). */
const OPS_TOKEN = 'tls-test-ops-token'

let dir: string

// ---------------------------------------------------------------------------------------------
// Certificates

interface Certs {
  readonly caFile: string
  readonly ca: Buffer
  /** SAN IP:127.0.0.1, DNS:localhost */
  readonly good: { cert: string; key: string }
  /** SAN DNS:other.example only, from the same CA. */
  readonly other: { cert: string; key: string }
}

async function openssl(...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir })
}

async function makeCerts(): Promise<Certs> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  await openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=redis-gateway test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  const leaf = async (name: string, cn: string, san: string): Promise<{ cert: string; key: string }> => {
    await writeFile(path.join(dir, `${name}.ext`), `basicConstraints=CA:FALSE\nsubjectAltName=${san}\nextendedKeyUsage=serverAuth\n`)
    await openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`)
    await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`)
    return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) }
  }
  const good = await leaf('good', 'localhost', 'IP:127.0.0.1,DNS:localhost')
  const other = await leaf('other', 'other.example', 'DNS:other.example')
  const caFile = path.join(dir, 'ca.crt')
  return { caFile, ca: readFileSync(caFile), good, other }
}

// ---------------------------------------------------------------------------------------------
// TLS-only redis-server

interface TlsRedis {
  readonly port: number
  readonly child: ChildProcess
  logs(): string
  /** Runs commands over TLS (verified against the test CA as `servername`); one reply text each. */
  command(...args: string[]): Promise<string>
}

const tlsServers: TlsRedis[] = []
process.once('exit', () => {
  for (const s of tlsServers) s.child.kill('SIGKILL')
})

function tlsCommand(port: number, ca: Buffer, servername: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername })
    let data = Buffer.alloc(0)
    const timer = setTimeout(() => finish(new Error(`no reply on TLS port ${port}`)), 2_000)
    const finish = (err?: Error): void => {
      clearTimeout(timer)
      socket.destroy()
      if (err) reject(err)
      else resolve(data.toString('utf8'))
    }
    socket.once('secureConnect', () => socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`))
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk])
      // One reply: a status/error line, or a bulk string complete with its length (in bytes).
      const bulk = /^\$(\d+)\r\n/.exec(data.toString('latin1', 0, 32))
      if (bulk ? data.length >= bulk[0].length + Number(bulk[1]) + 2 : data.toString('latin1').endsWith('\r\n')) finish()
    })
    socket.once('error', (e) => finish(e))
  })
}

async function startTlsRedis(certs: Certs, which: 'good' | 'other'): Promise<TlsRedis> {
  const { cert, key } = certs[which]
  const servername = which === 'good' ? 'localhost' : 'other.example'
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const child = spawn(findRedisServer(), [
      '--port', '0',
      '--tls-port', String(port),
      '--tls-cert-file', cert,
      '--tls-key-file', key,
      '--tls-ca-cert-file', certs.caFile,
      '--tls-auth-clients', 'no',
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
      '--protected-mode', 'no',
      '--daemonize', 'no',
      // "Accepted" lines are verbose; failed TLS accepts are logged at warning level.
      '--loglevel', 'verbose',
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr?.on('data', (c: Buffer) => (out += c.toString()))
    let exited = false
    child.once('exit', () => (exited = true))
    const server: TlsRedis = {
      port,
      child,
      logs: () => out,
      command: (...args) => tlsCommand(port, certs.ca, servername, args),
    }
    tlsServers.push(server)
    try {
      await waitFor(
        async () => {
          if (exited) throw new Error(`redis-server exited:\n${out}`)
          return (await server.command('PING')) === '+PONG\r\n'
        },
        { timeoutMs: 10_000, message: `TLS PING on ${port}` },
      )
      await server.command('CONFIG', 'RESETSTAT')
      return server
    } catch (err) {
      child.kill('SIGKILL')
      if (attempt < 3 && /address already in use/i.test(out)) continue
      throw err
    }
  }
}

/** Error lines redis-server logged for TLS handshakes that did not complete. */
function failedHandshakes(s: TlsRedis): number {
  return s.logs().split('\n').filter((l) => l.includes('Error accepting a client connection')).length
}

// ---------------------------------------------------------------------------------------------
// The gateway process

interface Gateway {
  readonly proc: GatewayProcess
  readonly opsUrl: string
  readonly base: string
}

let configNo = 0
async function startGatewayFor(redisPort: number, env: Record<string, string>): Promise<Gateway> {
  const [data, ops] = [await freePort(), await freePort()]
  const file = path.join(dir, `gateway-${++configNo}.yaml`)
  await writeFile(
    file,
    stringify({
      listen: { data: `127.0.0.1:${data}`, ops: `127.0.0.1:${ops}` },
      discovery: { static: { instances: [{ name: 'main', endpoints: [`rediss://127.0.0.1:${redisPort}`] }] } },
      auth: { tokens: [{ name: 'app', token: TOKEN, access: 'write', targets: ['*'] }, { name: 'ops', token: OPS_TOKEN, access: 'admin' }] },
      redis: { tls: true, connectTimeout: '500ms', commandTimeout: '2s' },
      health: { interval: '250ms', timeout: '500ms' },
      log: { level: 'info' },
    }),
  )
  const proc = spawnGateway(file, env)
  const opsUrl = `http://127.0.0.1:${ops}`
  await waitFor(
    async () => {
      if (proc.done) throw new Error(`gateway exited\nstdout: ${proc.stdout()}\nstderr: ${proc.stderr()}`)
      return (await fetch(`${opsUrl}/readyz`).catch(() => null))?.status === 200
    },
    { timeoutMs: 30_000, intervalMs: 100, message: 'the gateway to be ready' },
  )
  return { proc, opsUrl, base: `http://127.0.0.1:${data}/v1/instances/main` }
}

interface EndpointView {
  id: string
  connected: boolean
  up: boolean
  lastError: string | null
}

async function endpointView(gw: Gateway): Promise<EndpointView> {
  const res = await fetch(`${gw.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${OPS_TOKEN}` } })
  const body = (await res.json()) as { instances: { name: string; endpoints: EndpointView[] }[] }
  const ep = body.instances.find((i) => i.name === 'main')?.endpoints[0]
  if (!ep) throw new Error(`no endpoint in /admin/routes: ${JSON.stringify(body)}`)
  return ep
}

function sdk(gw: Gateway): Redis {
  return new Redis({ url: gw.base, token: TOKEN, retry: false, enableTelemetry: false })
}

/** A data request that must be answered (not hang): status and parsed body. */
async function post(gw: Gateway, body: unknown): Promise<{ status: number; body: { result?: unknown; error?: string } }> {
  const res = await fetch(gw.base, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  })
  return { status: res.status, body: (await res.json()) as { result?: unknown; error?: string } }
}

/** Commands Redis ran since the last CONFIG RESETSTAT, except that reset and these INFO calls. */
async function commandsRun(s: TlsRedis): Promise<string[]> {
  const text = await s.command('INFO', 'commandstats')
  return [...text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)]
    .map((m) => `${m[1]}=${m[2]}`)
    .filter((c) => !c.startsWith('config|resetstat=') && !c.startsWith('info='))
}

// ---------------------------------------------------------------------------------------------

let certs: Certs
let good: TlsRedis
let other: TlsRedis

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-tls-'))
  certs = await makeCerts()
  ;[good, other] = await Promise.all([startTlsRedis(certs, 'good'), startTlsRedis(certs, 'other')])
})
afterEach(killAll)
afterAll(async () => {
  for (const s of tlsServers.splice(0)) {
    s.child.kill('SIGKILL')
    if (s.child.exitCode === null && s.child.signalCode === null) await new Promise((r) => s.child.once('exit', r))
  }
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('TLS to Redis', () => {
  test('the redis-server is TLS only: a plain TCP client gets no Redis reply', async () => {
    const net = await import('node:net')
    const reply = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: good.port })
      let text = ''
      s.on('data', (c: Buffer) => (text += c.toString('latin1')))
      s.on('error', () => resolve(text))
      s.on('close', () => resolve(text))
      s.on('connect', () => s.write('PING\r\n'))
    })
    expect(reply).not.toContain('PONG')
  })

  test('trusted CA and a certificate for 127.0.0.1: SDK set/get/pipeline work', async () => {
    const gw = await startGatewayFor(good.port, { NODE_EXTRA_CA_CERTS: certs.caFile })
    await waitFor(async () => (await endpointView(gw)).up, { message: 'the TLS endpoint to be up' })
    expect(await endpointView(gw)).toMatchObject({ connected: true, up: true, lastError: null })

    const redis = sdk(gw)
    const p = `tls:${randomUUID().slice(0, 8)}:`
    expect(await redis.set(`${p}k`, 'über TLS')).toBe('OK')
    expect(await redis.get(`${p}k`)).toBe('über TLS')
    const results = await redis.pipeline().set(`${p}a`, 'x').incr(`${p}n`).incr(`${p}n`).get(`${p}a`).exec()
    expect(results).toEqual(['OK', 1, 2, 'x'])
    const tx = await redis.multi().incr(`${p}n`).get(`${p}n`).exec()
    expect(tx).toEqual([3, 3])

    // It really landed in the TLS-only Redis.
    expect(await good.command('GET', `${p}k`)).toBe(`$${Buffer.byteLength('über TLS')}\r\nüber TLS\r\n`)
    expect(await good.command('GET', `${p}n`)).toBe('$1\r\n3\r\n')
    expect(gw.proc.done).toBe(false)
  })

  // Once a bug: an IP endpoint was sent as SNI, which RFC 6066 forbids, and Node said so on the
  // gateway's stderr, outside its JSON logs ("[DEP0123] DeprecationWarning: Setting the TLS
  // ServerName to an IP address..."). Now SNI carries host names only; the certificate is still
  // checked against the IP (the other.example test below guards that).
  test('an IP endpoint sends no IP as SNI: no DEP0123 warning on stderr', async () => {
    const gw = await startGatewayFor(good.port, { NODE_EXTRA_CA_CERTS: certs.caFile })
    await waitFor(async () => (await endpointView(gw)).up, { message: 'the TLS endpoint to be up' })
    expect(gw.proc.stderr()).not.toContain('DEP0123')
  })

  test('without the CA (an untrusted certificate): never up, nothing sent to Redis, prompt 503 NOENDPOINT', async () => {
    await good.command('CONFIG', 'RESETSTAT')
    const handshakesBefore = failedHandshakes(good)
    const gw = await startGatewayFor(good.port, {})

    // It keeps trying (handshakes the gateway aborted), and health checks run and fail.
    await waitFor(
      async () => failedHandshakes(good) >= handshakesBefore + 2 && (await endpointView(gw)).lastError !== null,
      { message: 'refused TLS handshakes and a failed health check' },
    )
    expect(await endpointView(gw)).toMatchObject({ connected: false, up: false })

    const started = Date.now()
    const res = await post(gw, ['SET', 'tls:untrusted', 'v'])
    expect(res.status).toBe(503)
    expect(res.body.error).toMatch(/^NOENDPOINT /)
    expect(Date.now() - started).toBeLessThan(10_000)
    await expect(sdk(gw).get('tls:untrusted')).rejects.toThrow(/NOENDPOINT/)

    expect(await endpointView(gw)).toMatchObject({ connected: false, up: false })
    expect(gw.proc.done).toBe(false)
    // Not one command (no INFO ready check, no ROLE, no SET) went over an unverified connection.
    expect(await commandsRun(good)).toEqual([])
    // Operators can tell a certificate problem from a dead server: one log line per distinct
    // reason (not one per reconnect), and the reason in the endpoint's lastError.
    const lines = connectionFailureLogs(gw)
    expect(lines.length).toBe(1)
    expect(lines[0]!.reason).toMatch(/certificate/i)
    expect((await endpointView(gw)).lastError).toMatch(/certificate/i)
    // ...but a client's 503 does not carry it.
    expect(res.body.error).not.toMatch(/certificate/i)
  })

  test('a trusted certificate for another name (DNS:other.example only) is refused too', async () => {
    await other.command('CONFIG', 'RESETSTAT')
    const handshakesBefore = failedHandshakes(other)
    const gw = await startGatewayFor(other.port, { NODE_EXTRA_CA_CERTS: certs.caFile })

    await waitFor(
      async () => failedHandshakes(other) >= handshakesBefore + 2 && (await endpointView(gw)).lastError !== null,
      { message: 'refused TLS handshakes and a failed health check' },
    )
    expect(await endpointView(gw)).toMatchObject({ connected: false, up: false })

    const res = await post(gw, ['GET', 'tls:other'])
    expect(res.status).toBe(503)
    expect(res.body.error).toMatch(/^NOENDPOINT /)
    const pipe = await fetch(`${gw.base}/pipeline`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify([['SET', 'tls:other', 'v'], ['GET', 'tls:other']]),
      signal: AbortSignal.timeout(10_000),
    })
    expect(pipe.status).toBe(503)
    expect(gw.proc.done).toBe(false)
    const lines = connectionFailureLogs(gw)
    expect(lines.length).toBe(1)
    expect(lines[0]!.reason).toMatch(/altnames|does not match/i)
    expect(await commandsRun(other)).toEqual([])
    // The same CA and server are fine when asked for the name the certificate has.
    expect(await other.command('PING')).toBe('+PONG\r\n')
  })
})

/** The gateway's log lines about failed or closed Redis connections (JSON lines on stdout). */
function connectionFailureLogs(gw: { proc: { stdout(): string } }): { reason: string; endpoint: string }[] {
  return gw.proc
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; reason?: string; endpoint?: string })
    .filter((l) => l.msg === 'Redis connection closed or could not be made; reconnecting')
    .map((l) => ({ reason: l.reason ?? '', endpoint: l.endpoint ?? '' }))
}
