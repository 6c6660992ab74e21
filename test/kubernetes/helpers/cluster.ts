// A real Kubernetes control plane for tests: etcd and kube-apiserver on loopback, built from Go
// modules by scripts/kube/tools.sh (run it first; `npm run test:kube` does). No kubelet, no
// controller-manager, no scheduler: objects are what the tests write, nothing reconciles them.
//
//   const cluster = await startCluster()
//   await cluster.request('POST', '/api/v1/namespaces', { metadata: { name: 'demo' } })
//   process.env.KUBECONFIG = cluster.kubeconfigFor(cluster.tokenFor('gateway'))
//   await cluster.restartApiServer()   // same port, same etcd data
//   await cluster.compact()            // watches from older resourceVersions now get 410 Gone
//   await cluster.stop()
//
// Authentication is by static bearer tokens (--token-auth-file): `admin` (group system:masters)
// and the users named in StartClusterOptions.users (default: gateway, outsider), who have no
// permissions until a test grants them some with RBAC (--authorization-mode=RBAC).

import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import https from 'node:https'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { freePort } from '../../helpers/ports.js'
import { onProcessExit } from '../../helpers/process-guard.js'
import { ManagedProcess } from './processes.js'

const execFileAsync = promisify(execFile)
const here = path.dirname(fileURLToPath(import.meta.url))
const repoRoot = path.resolve(here, '../../..')

export interface StaticUser {
  readonly name: string
  /** Groups besides system:authenticated (which every authenticated user gets). */
  readonly groups?: readonly string[]
}

export interface StartClusterOptions {
  /**
   * Extra static-token users besides `admin`. Default: `gateway` and `outsider`, no groups.
   * The token file is read once at apiserver start, so every identity a test needs is named here.
   */
  users?: ReadonlyArray<string | StaticUser>
  /**
   * kube-apiserver's watch cache (--watch-cache). Default false: watches and lists go to etcd,
   * so after compact() a watch from any older resourceVersion gets 410 Gone at once. With the
   * cache on, a watch from an old resourceVersion is served from the cache's event window
   * (compaction or not) and 410 comes only for versions older than that window.
   */
  watchCache?: boolean
  /** Extra kube-apiserver flags, after the defaults (a later --flag=value wins). */
  apiServerArgs?: readonly string[]
  /** Extra etcd flags, after the defaults. */
  etcdArgs?: readonly string[]
  /** Give up waiting for etcd /health and apiserver /readyz after this long. Default 120_000 ms. */
  startTimeoutMs?: number
  /** Keep the temp dir (certs, tokens, etcd data, kubeconfigs) after stop(). Default: env KEEP_KUBE_TEST_DIR=1. */
  keepDir?: boolean
  /** kube-apiserver -v level. Default 1. */
  verbosity?: number
}

export interface ApiResponse<T = unknown> {
  readonly status: number
  /** Parsed JSON, or the raw text when the body is not JSON. */
  readonly body: T
  readonly headers: http.IncomingHttpHeaders
}

export interface RequestOptions {
  /** Bearer token. Default: the admin token. */
  token?: string
  /** Content-Type for the body. Default application/json (use application/merge-patch+json for PATCH). */
  contentType?: string
  timeoutMs?: number
}

export interface WatchOptions {
  /** resourceVersion to watch from (omitted: "most recent"). */
  resourceVersion?: string
  /** Bearer token. Default: the admin token. */
  token?: string
  /** Stop after this many events. Default 1. */
  maxEvents?: number
  /** Stop collecting after this long (not an error). Default 5_000 ms. */
  timeoutMs?: number
}

export interface WatchEvent<T = unknown> {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'
  readonly object: T
}

export interface WatchResult<T = unknown> {
  /** HTTP status of the watch request (200 even when the stream carries an ERROR event). */
  readonly status: number
  /** Events received, at most maxEvents. */
  readonly events: readonly WatchEvent<T>[]
  /** The response body when the status was not 200 (parsed JSON when it is JSON). */
  readonly body?: unknown
  /** Set when the connection broke after the 200 (e.g. the apiserver stopped): the events up to then are kept. */
  readonly error?: string
}

export interface ClusterTimings {
  /** etcd spawn until /health answered true. */
  readonly etcdStartMs: number
  /** kube-apiserver spawn until /readyz answered 200, for each start (the first, then restarts). */
  readonly apiServerStartMs: readonly number[]
}

export interface KubeCluster {
  /** https://127.0.0.1:PORT */
  readonly server: string
  readonly port: number
  /** PEM file of the CA that signed the serving certificate (and the client CA). */
  readonly caFile: string
  /** The CA certificate, PEM text. */
  readonly caPem: string
  /** Base64 of the PEM, as kubeconfig's certificate-authority-data wants it. */
  readonly caData: string
  /** Token of user `admin`, group system:masters. */
  readonly adminToken: string
  /** http://127.0.0.1:PORT of etcd's client API (v3 JSON gateway under /v3/). */
  readonly etcdUrl: string
  /** The temp dir holding certs, tokens, etcd data and kubeconfigs. */
  readonly dir: string
  /** The pinned versions and binaries in use. */
  readonly versions: { readonly kubeApiServer: string; readonly etcd: string }
  readonly timings: ClusterTimings
  /** Static token of a user named in StartClusterOptions.users (or `admin`); throws for others. */
  tokenFor(user: string): string
  /** Writes a kubeconfig for this token (default admin) and returns its path. */
  kubeconfigFor(token?: string, opts?: { namespace?: string; name?: string }): string
  /** One REST call to the apiserver; JSON body in, parsed JSON out. Never throws for HTTP status codes. */
  request<T = unknown>(method: string, apiPath: string, body?: unknown, opts?: RequestOptions): Promise<ApiResponse<T>>
  /**
   * Opens a watch (`?watch=true`) on a collection path such as /api/v1/namespaces/x/services,
   * collects up to maxEvents events within timeoutMs, then closes it. A 410 Gone after
   * compaction arrives as an ERROR event with object.code 410 on an HTTP 200 stream.
   */
  watchOnce<T = unknown>(apiPath: string, opts?: WatchOptions): Promise<WatchResult<T>>
  /** Process ids while running (to check that stop() left nothing behind). */
  pids(): { etcd?: number; apiServer?: number }
  /** Stops kube-apiserver (SIGTERM, or `signal`), keeping etcd. Requests fail until startApiServer(). */
  stopApiServer(opts?: { signal?: NodeJS.Signals }): Promise<void>
  /** Starts kube-apiserver again on the same port with the same flags; resolves when /readyz is 200. */
  startApiServer(): Promise<void>
  /** stopApiServer() then startApiServer(). */
  restartApiServer(opts?: { signal?: NodeJS.Signals }): Promise<void>
  /** etcd's current revision (what resourceVersions are made of). */
  etcdRevision(): Promise<number>
  /**
   * Compacts etcd (physical, so it is done when this resolves) just past its current revision and
   * returns the compaction revision: every resourceVersion handed out before the call is then gone,
   * and a watch or an exact list from it gets 410 Expired (at once with watchCache false; see
   * StartClusterOptions.watchCache).
   */
  compact(): Promise<number>
  /** Recent output of the processes, for failure messages. */
  logs(): { etcd: string; apiServer: string }
  /** Stops both processes and removes the temp dir (unless keepDir). Safe to call twice. */
  stop(): Promise<void>
}

// ---------------------------------------------------------------------------------------------
// Binaries.

export interface KubeToolVersions {
  readonly KUBE_VERSION: string
  readonly ETCD_VERSION: string
  readonly HELM_VERSION: string
}

/** Pinned versions from scripts/kube/versions.env. */
export function toolVersions(): KubeToolVersions {
  const file = path.join(repoRoot, 'scripts/kube/versions.env')
  const values: Record<string, string> = {}
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^\s*([A-Z_]+)=(\S+)\s*$/.exec(line)
    if (match?.[1] && match[2]) values[match[1]] = match[2]
  }
  for (const name of ['KUBE_VERSION', 'ETCD_VERSION', 'HELM_VERSION']) {
    if (!values[name]) throw new Error(`${file}: no ${name}=... line`)
  }
  return values as unknown as KubeToolVersions
}

export function toolCacheDir(): string {
  return process.env['REDIS_GATEWAY_CACHE'] || path.join(os.homedir(), '.cache', 'redis-gateway')
}

/**
 * Path of a tool built by scripts/kube/tools.sh (env KUBE_APISERVER_BIN / ETCD_BIN / HELM_BIN
 * override). Throws with the command to run when it is missing.
 */
export function toolBinary(tool: 'kube-apiserver' | 'etcd' | 'helm'): string {
  const override = process.env[{ 'kube-apiserver': 'KUBE_APISERVER_BIN', etcd: 'ETCD_BIN', helm: 'HELM_BIN' }[tool]]
  const versions = toolVersions()
  const version = { 'kube-apiserver': versions.KUBE_VERSION, etcd: versions.ETCD_VERSION, helm: versions.HELM_VERSION }[tool]
  const binary = override || path.join(toolCacheDir(), 'bin', `${tool}-${version}`, tool)
  if (!existsSync(binary)) {
    throw new Error(
      `${tool} ${version} not found at ${binary}. Build it first: bash scripts/kube/tools.sh ` +
        '(or run the suite with npm run test:kube, which does).',
    )
  }
  return binary
}

// ---------------------------------------------------------------------------------------------
// Certificates, keys and tokens (openssl).

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  try {
    await execFileAsync('openssl', [...args], { cwd })
  } catch (error) {
    const e = error as { code?: string; stderr?: string; message: string }
    if (e.code === 'ENOENT') throw new Error('openssl not found: apt-get install -y openssl (scripts/kube/tools.sh does)')
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr || e.message}`)
  }
}

interface Pki {
  readonly caFile: string
  readonly certFile: string
  readonly keyFile: string
  readonly saKeyFile: string
  readonly saPubFile: string
}

async function makePki(dir: string): Promise<Pki> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  await openssl(
    ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '7', '-subj', '/CN=redis-gateway-test-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  )
  await openssl(['req', '-new', ...ec, '-keyout', 'apiserver.key', '-out', 'apiserver.csr', '-subj', '/CN=kube-apiserver'], dir)
  writeFileSync(
    path.join(dir, 'apiserver.ext'),
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1',
      '',
    ].join('\n'),
  )
  await openssl(
    ['x509', '-req', '-in', 'apiserver.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'apiserver.crt',
      '-days', '7', '-extfile', 'apiserver.ext'],
    dir,
  )
  // Service-account token signing key: RSA, as kube-apiserver's defaults expect.
  await openssl(['genrsa', '-out', 'sa.key', '2048'], dir)
  await openssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir)
  return {
    caFile: path.join(dir, 'ca.crt'),
    certFile: path.join(dir, 'apiserver.crt'),
    keyFile: path.join(dir, 'apiserver.key'),
    saKeyFile: path.join(dir, 'sa.key'),
    saPubFile: path.join(dir, 'sa.pub'),
  }
}

function csvField(value: string): string {
  return /[",\s]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value
}

// ---------------------------------------------------------------------------------------------
// HTTP.

function httpJson<T>(
  url: string,
  opts: { method: string; body?: string; headers?: Record<string, string>; ca?: string; timeoutMs: number },
): Promise<ApiResponse<T>> {
  return new Promise((resolve, reject) => {
    const target = new URL(url)
    const lib = target.protocol === 'https:' ? https : http
    const req = lib.request(
      target,
      {
        method: opts.method,
        headers: {
          Accept: 'application/json',
          ...(opts.body !== undefined ? { 'Content-Length': String(Buffer.byteLength(opts.body)) } : {}),
          ...opts.headers,
        },
        ...(opts.ca ? { ca: opts.ca } : {}),
        agent: false,
        timeout: opts.timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', reject)
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown = text
          try {
            body = text ? JSON.parse(text) : undefined
          } catch {
            // Not JSON: keep the text.
          }
          resolve({ status: res.statusCode ?? 0, body: body as T, headers: res.headers })
        })
      },
    )
    req.on('timeout', () => req.destroy(new Error(`${opts.method} ${url}: no answer within ${opts.timeoutMs}ms`)))
    req.on('error', reject)
    if (opts.body !== undefined) req.write(opts.body)
    req.end()
  })
}

function watchStream<T>(url: string, headers: Record<string, string>, ca: string, maxEvents: number, timeoutMs: number): Promise<WatchResult<T>> {
  return new Promise((resolve, reject) => {
    const events: WatchEvent<T>[] = []
    let settled = false
    let status = 0
    let timer: NodeJS.Timeout | undefined
    const finish = (result: WatchResult<T> | Error): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      if (result instanceof Error) reject(result)
      else resolve(result)
    }
    const req = https.request(url, { method: 'GET', headers: { Accept: 'application/json', ...headers }, ca, agent: false }, (res) => {
      status = res.statusCode ?? 0
      let buffer = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        buffer += chunk
        if (status !== 200) return
        let newline: number
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline).trim()
          buffer = buffer.slice(newline + 1)
          if (!line) continue
          try {
            events.push(JSON.parse(line) as WatchEvent<T>)
          } catch (error) {
            return finish(new Error(`watch ${url}: bad event line ${line.slice(0, 200)}: ${(error as Error).message}`))
          }
          if (events.length >= maxEvents) return finish({ status, events })
        }
      })
      res.on('end', () => {
        if (status === 200) return finish({ status, events })
        let body: unknown = buffer
        try {
          body = JSON.parse(buffer)
        } catch {
          // Keep the text.
        }
        finish({ status, events, body })
      })
      res.on('error', (error) => finish({ status, events, error: error.message }))
    })
    timer = setTimeout(() => finish({ status, events }), timeoutMs)
    req.on('error', (error) => finish(error))
    req.end()
  })
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function waitReady(
  what: string,
  proc: ManagedProcess,
  timeoutMs: number,
  probe: () => Promise<string | true>,
): Promise<number> {
  const started = Date.now()
  let last = 'no attempt yet'
  for (;;) {
    if (!proc.running) {
      const exit = await proc.exited
      throw new Error(
        `${what} exited (code ${exit.code}, signal ${exit.signal}) before it was ready (last probe: ${last})\n` +
          `--- ${proc.name} output (last lines) ---\n${proc.logs() || '(none)'}\n---`,
      )
    }
    try {
      const result = await probe()
      if (result === true) return Date.now() - started
      last = result
    } catch (error) {
      last = (error as Error).message
    }
    if (Date.now() - started > timeoutMs) {
      const logs = proc.logs()
      await proc.stop({ signal: 'SIGKILL' })
      throw new Error(`${what} not ready within ${timeoutMs}ms (last probe: ${last})\n--- ${proc.name} output (last lines) ---\n${logs || '(none)'}\n---`)
    }
    await delay(100)
  }
}

// ---------------------------------------------------------------------------------------------

const DEFAULT_USERS: readonly StaticUser[] = [{ name: 'gateway' }, { name: 'outsider' }]

/** Starts etcd and kube-apiserver on free loopback ports; resolves when /readyz answers 200. */
export async function startCluster(opts: StartClusterOptions = {}): Promise<KubeCluster> {
  const versions = toolVersions()
  const apiServerBin = toolBinary('kube-apiserver')
  const etcdBin = toolBinary('etcd')
  const startTimeoutMs = opts.startTimeoutMs ?? 120_000
  const keepDir = opts.keepDir ?? process.env['KEEP_KUBE_TEST_DIR'] === '1'
  const dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-kube-'))
  const unregisterDirCleanup = onProcessExit(() => {
    if (!keepDir) rmSync(dir, { recursive: true, force: true })
  })

  let etcd: ManagedProcess | undefined
  let apiServer: ManagedProcess | undefined
  let stopped = false

  const cleanup = async (): Promise<void> => {
    await apiServer?.stop()
    await etcd?.stop()
    unregisterDirCleanup()
    if (!keepDir) await rm(dir, { recursive: true, force: true })
  }

  try {
    const pki = await makePki(dir)
    const caPem = readFileSync(pki.caFile, 'utf8')

    // Static tokens: token,user,uid,"group1,group2"
    const users: StaticUser[] = [{ name: 'admin', groups: ['system:masters'] }]
    for (const user of opts.users ?? DEFAULT_USERS) {
      const u = typeof user === 'string' ? { name: user } : user
      if (u.name === 'admin') throw new Error('startCluster: user "admin" is built in')
      users.push(u)
    }
    const tokens = new Map<string, string>()
    const tokenLines = users.map((u, i) => {
      const token = `${u.name.replace(/[^A-Za-z0-9]/g, '')}-${randomBytes(16).toString('hex')}`
      tokens.set(u.name, token)
      return [token, csvField(u.name), `uid-${i}`, csvField((u.groups ?? []).join(','))].join(',')
    })
    const tokenFile = path.join(dir, 'tokens.csv')
    writeFileSync(tokenFile, `${tokenLines.join('\n')}\n`, { mode: 0o600 })
    const adminToken = tokens.get('admin') as string

    // etcd on two free loopback ports (client, peer).
    const etcdClientPort = await freePort()
    const etcdPeerPort = await freePort()
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`
    const etcdArgs = [
      '--name=test',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=test=http://127.0.0.1:${etcdPeerPort}`,
      '--initial-cluster-state=new',
      // Tests lose nothing they need on a crash; fsync on every write only slows them down.
      '--unsafe-no-fsync',
      '--log-level=warn',
      ...(opts.etcdArgs ?? []),
    ]
    const etcdStarted = Date.now()
    etcd = new ManagedProcess('etcd', etcdBin, etcdArgs)
    const etcdProc = etcd
    await waitReady(`etcd on ${etcdUrl}`, etcdProc, startTimeoutMs, async () => {
      const res = await httpJson<{ health?: string }>(`${etcdUrl}/health`, { method: 'GET', timeoutMs: 2_000 })
      return res.status === 200 && res.body?.health === 'true' ? true : `HTTP ${res.status} ${JSON.stringify(res.body)}`
    })
    const etcdStartMs = Date.now() - etcdStarted

    const port = await freePort()
    const server = `https://127.0.0.1:${port}`
    const apiServerArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${port}`,
      `--tls-cert-file=${pki.certFile}`,
      `--tls-private-key-file=${pki.keyFile}`,
      `--client-ca-file=${pki.caFile}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pki.saPubFile}`,
      `--service-account-signing-key-file=${pki.saKeyFile}`,
      `--token-auth-file=${tokenFile}`,
      '--authorization-mode=RBAC',
      '--service-cluster-ip-range=10.96.0.0/16',
      // Tests compact on demand (compact()); the default compacts every 5 minutes.
      '--etcd-compaction-interval=0',
      `--watch-cache=${opts.watchCache ?? false}`,
      // No controller-manager creates service accounts, so the ServiceAccount admission plugin
      // would reject pods; nothing here creates pods, but keep admission to what needs no controllers.
      '--disable-admission-plugins=ServiceAccount',
      // The default/kubernetes Service would get endpoints with the advertise address 127.0.0.1:
      // nothing here needs them.
      '--endpoint-reconciler-type=none',
      // On SIGTERM, close open watches and exit. Without it an apiserver with a watch open over
      // HTTP/1.1 (node clients) does not exit for a long time (SIGKILLed by stop after 15 s here).
      '--shutdown-watch-termination-grace-period=5s',
      '--profiling=false',
      `--cert-dir=${path.join(dir, 'apiserver-certs')}`,
      `-v=${opts.verbosity ?? 1}`,
      ...(opts.apiServerArgs ?? []),
    ]

    const apiServerStartMs: number[] = []
    const readyz = async (): Promise<string | true> => {
      const res = await httpJson<string>(`${server}/readyz`, {
        method: 'GET',
        headers: { Authorization: `Bearer ${adminToken}` },
        ca: caPem,
        timeoutMs: 5_000,
      })
      return res.status === 200 ? true : `HTTP ${res.status} ${String(res.body).slice(0, 500)}`
    }
    const startApiServer = async (): Promise<void> => {
      if (stopped) throw new Error('startApiServer: the cluster was stopped')
      if (apiServer?.running) throw new Error(`startApiServer: kube-apiserver is already running (pid ${apiServer.pid})`)
      const started = Date.now()
      apiServer = new ManagedProcess('kube-apiserver', apiServerBin, apiServerArgs, { logLines: 600 })
      await waitReady(`kube-apiserver on ${server}`, apiServer, startTimeoutMs, readyz)
      apiServerStartMs.push(Date.now() - started)
    }
    const stopApiServer = async (stopOpts: { signal?: NodeJS.Signals } = {}): Promise<void> => {
      await apiServer?.stop({ ...(stopOpts.signal ? { signal: stopOpts.signal } : {}), timeoutMs: 15_000 })
    }

    await startApiServer()

    const etcdCall = async <T>(endpoint: string, body: unknown): Promise<T> => {
      const res = await httpJson<T>(`${etcdUrl}${endpoint}`, { method: 'POST', body: JSON.stringify(body), timeoutMs: 10_000 })
      if (res.status !== 200) throw new Error(`etcd ${endpoint}: HTTP ${res.status} ${JSON.stringify(res.body)}`)
      return res.body
    }
    const etcdRevision = async (): Promise<number> => {
      // Any range answers with the store's header; "/" (base64 Lw==) is a key nobody writes.
      const body = await etcdCall<{ header?: { revision?: string } }>('/v3/kv/range', { key: 'Lw==', limit: 1, keys_only: true })
      const revision = Number(body.header?.revision)
      if (!Number.isSafeInteger(revision) || revision <= 0) throw new Error(`etcd /v3/kv/range: no revision in ${JSON.stringify(body)}`)
      return revision
    }

    const cluster: KubeCluster = {
      server,
      port,
      caFile: pki.caFile,
      caPem,
      caData: Buffer.from(caPem).toString('base64'),
      adminToken,
      etcdUrl,
      dir,
      versions: { kubeApiServer: versions.KUBE_VERSION, etcd: versions.ETCD_VERSION },
      timings: { etcdStartMs, apiServerStartMs },
      tokenFor(user) {
        const token = tokens.get(user)
        if (!token) {
          throw new Error(`tokenFor: no static token for user "${user}"; known: ${[...tokens.keys()].join(', ')} (add it to startCluster({ users }))`)
        }
        return token
      },
      kubeconfigFor(token = adminToken, kcOpts = {}) {
        const user = [...tokens].find(([, t]) => t === token)?.[0] ?? 'token'
        const name = kcOpts.name ?? `${user}-${randomBytes(3).toString('hex')}`
        const config = {
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'test', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
          users: [{ name: user, user: { token } }],
          contexts: [{ name: 'test', context: { cluster: 'test', user, ...(kcOpts.namespace ? { namespace: kcOpts.namespace } : {}) } }],
          'current-context': 'test',
          preferences: {},
        }
        const file = path.join(dir, `kubeconfig-${name}.yaml`)
        // JSON is YAML: kubectl and @kubernetes/client-node read it as a kubeconfig.
        writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 })
        return file
      },
      request<T>(method: string, apiPath: string, body?: unknown, reqOpts: RequestOptions = {}) {
        return httpJson<T>(`${server}${apiPath}`, {
          method,
          ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
          headers: {
            Authorization: `Bearer ${reqOpts.token ?? adminToken}`,
            ...(body !== undefined ? { 'Content-Type': reqOpts.contentType ?? 'application/json' } : {}),
          },
          ca: caPem,
          timeoutMs: reqOpts.timeoutMs ?? 30_000,
        })
      },
      watchOnce<T>(apiPath: string, watchOpts: WatchOptions = {}) {
        const query = new URLSearchParams({ watch: 'true' })
        if (watchOpts.resourceVersion !== undefined) query.set('resourceVersion', watchOpts.resourceVersion)
        const url = `${server}${apiPath}${apiPath.includes('?') ? '&' : '?'}${query}`
        return watchStream<T>(
          url,
          { Authorization: `Bearer ${watchOpts.token ?? adminToken}` },
          caPem,
          watchOpts.maxEvents ?? 1,
          watchOpts.timeoutMs ?? 5_000,
        )
      },
      pids() {
        return {
          ...(etcdProc.running && etcdProc.pid !== undefined ? { etcd: etcdProc.pid } : {}),
          ...(apiServer?.running && apiServer.pid !== undefined ? { apiServer: apiServer.pid } : {}),
        }
      },
      stopApiServer,
      startApiServer,
      async restartApiServer(restartOpts = {}) {
        await stopApiServer(restartOpts)
        await startApiServer()
      },
      etcdRevision,
      async compact() {
        // Two writes to a key outside the apiserver's /registry prefix first. A watch from
        // resourceVersion v starts at etcd revision v+1, and etcd refuses it (-> 410) only when
        // v+1 is below the compaction revision. Compacting at the bare current revision C would
        // leave a watch from C-1 starting at C: etcd then sends the event at C without its
        // previous value (compacted away) and kube-apiserver answers 500 "etcd event received with
        // PrevKv=nil" instead of 410. With two bumps every version seen before compact() is < C+1.
        const bump = { key: Buffer.from('/redis-gateway-test/compaction-bump').toString('base64'), value: Buffer.from('x').toString('base64') }
        await etcdCall('/v3/kv/put', bump)
        const put = await etcdCall<{ header?: { revision?: string } }>('/v3/kv/put', bump)
        const revision = Number(put.header?.revision)
        if (!Number.isSafeInteger(revision) || revision <= 0) throw new Error(`etcd /v3/kv/put: no revision in ${JSON.stringify(put)}`)
        await etcdCall('/v3/kv/compaction', { revision: String(revision), physical: true })
        return revision
      },
      logs() {
        return { etcd: etcdProc.logs(), apiServer: apiServer?.logs() ?? '' }
      },
      async stop() {
        if (stopped) return
        stopped = true
        await cleanup()
      },
    }
    return cluster
  } catch (error) {
    stopped = true
    await cleanup().catch(() => {})
    throw error
  }
}
