// Preloaded by bench/alloc.ts (node --require): the inspector's sampling heap profiler, objects
// collected by scavenges and mark-compacts included, so that it counts what a request allocates, not
// what survives. The first SIGUSR2 starts sampling, the second writes the profile to HEAP_SAMPLE_OUT.
const inspector = require('node:inspector')
const { writeFileSync } = require('node:fs')

const session = new inspector.Session()
session.connect()
const out = process.env.HEAP_SAMPLE_OUT
const interval = Number(process.env.HEAP_SAMPLE_INTERVAL ?? 256)
let sampling = false
process.on('SIGUSR2', () => {
  if (!sampling) {
    sampling = true
    session.post('HeapProfiler.enable', () =>
      session.post('HeapProfiler.startSampling', {
        samplingInterval: interval,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      }),
    )
    return
  }
  session.post('HeapProfiler.stopSampling', (err, r) => {
    writeFileSync(out, err ? JSON.stringify({ error: String(err) }) : JSON.stringify(r.profile))
  })
})
