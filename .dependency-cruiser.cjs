// The gateway's layers, checked by `npm run lint` (and so by `npm test` and CI). A module may import
// its own layer and the layers before it, never a later one; docs/design.md draws the same list.
// Unit tests (*.test.ts) may wire later layers in (a router test with a real pool); the code they
// test may not.
const LAYERS = [
  ['core', 'shared leaf types: errors and failure kinds, events, topology, roles, identities, replies'],
  ['config', 'schema, defaults, loading and reloading'],
  ['discovery', 'static file and Kubernetes sources of instances and endpoints'],
  ['routing', 'routing table and command classification (what a request is, where it may go)'],
  ['balancer', 'balancing strategies'],
  ['resilience', 'endpoint state, breakers, outlier ejection, budgets, health checks'],
  ['selection', 'resolving a target and picking an endpoint'],
  ['upstream', 'execution: RESP connections, the pool, attempts, retries and hedges'],
  ['encoding', 'replies as Upstash JSON'],
  ['http', 'the HTTP front door: parsing, auth, the data and ops planes, SSE'],
  ['telemetry', 'subscribers to events: metrics, traces, logs'],
]
const ROOT = '^src/(gateway|main)\\.ts$'

const layerRules = LAYERS.map(([name], i) => {
  const later = LAYERS.slice(i + 1).map(([n]) => n)
  return {
    name: `layer-${name}`,
    comment: `${name} (${LAYERS[i][1]}) must not import a later layer (${later.join(', ') || 'none'}) or the composition root`,
    severity: 'error',
    from: { path: `^src/${name}/`, pathNot: '\\.test\\.ts$' },
    to: { path: later.length ? [`^src/(${later.join('|')})/`, ROOT] : [ROOT] },
  }
})

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Import cycles make initialisation order matter and layers meaningless.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'layered-folders-only',
      comment: 'Every source file lives in a layer folder (or is the composition root), so the rules above see it.',
      severity: 'error',
      from: { path: '^src/', pathNot: [ROOT, `^src/(${LAYERS.map(([n]) => n).join('|')})/`, '^src/types/'] },
      to: {},
    },
    {
      name: 'kubernetes-client-lazy',
      comment:
        'Kubernetes discovery and @kubernetes/client-node (~0.37 s and ~20 MB to load) are loaded only when configured: outside src/discovery/kubernetes/ they are imported dynamically (gateway.ts) or for types only.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/discovery/kubernetes/', '\\.test\\.ts$'] },
      to: { path: ['^src/discovery/kubernetes/', '@kubernetes/client-node'], dependencyTypesNot: ['dynamic-import', 'type-only'] },
    },
    {
      name: 'no-test-code-in-src',
      comment: 'Shipped code never imports test helpers.',
      severity: 'error',
      from: { path: '^src/', pathNot: '\\.test\\.ts$' },
      to: { path: '^test/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
}
