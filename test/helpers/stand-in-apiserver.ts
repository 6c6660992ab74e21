// A stand-in Kubernetes API server for unit tests of the discovery source (plain HTTP on loopback):
// lists answer with fixed Services and EndpointSlices (in pages when asked: `limit`, and `continue`
// tokens that are the next item's index), watches are held open until close(), and
// every request is recorded (path and query). The real client (@kubernetes/client-node) talks to it
// through kubeConfigFor(). What the source does against a real kube-apiserver is tested in
// test/kubernetes/.

import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { KubeConfig } from '@kubernetes/client-node'

export interface RecordedRequest {
  readonly path: string
  readonly query: Record<string, string>
}

export interface StandInApiServer {
  readonly url: string
  readonly requests: RecordedRequest[]
  close(): Promise<void>
}

export async function startStandInApiServer(objects: { services?: unknown[]; slices?: unknown[] } = {}): Promise<StandInApiServer> {
  const requests: RecordedRequest[] = []
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    requests.push({ path: u.pathname, query: Object.fromEntries(u.searchParams) })
    res.writeHead(200, { 'content-type': 'application/json' })
    if (u.searchParams.get('watch') === 'true') return // open until closed
    const all = u.pathname.endsWith('/services') ? (objects.services ?? []) : (objects.slices ?? [])
    const from = Number(u.searchParams.get('continue') ?? 0)
    const limit = Number(u.searchParams.get('limit') ?? 0) || all.length
    const items = all.slice(from, from + limit)
    const next = from + limit < all.length ? { continue: String(from + limit), remainingItemCount: all.length - from - limit } : {}
    res.end(JSON.stringify({ kind: 'List', apiVersion: 'v1', metadata: { resourceVersion: '7', ...next }, items }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** A kubeconfig for the stand-in (a bearer token it ignores). */
export function kubeConfigFor(server: string): KubeConfig {
  const kc = new KubeConfig()
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  })
  return kc
}
