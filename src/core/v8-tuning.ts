// V8 settings the gateway applies to itself as it starts (main.ts), whatever starts the process.
//
// No allocation-site pretenuring. V8 moves an object literal's allocations to the old generation
// for good once most of its objects survive one young collection. The first collection after the
// traffic turned to pipelines or big values, with the first of them still in flight, did that to a
// site whose objects live as long as a request: each then held young replies alive through every
// scavenge, 16-35 MB was promoted per scavenge, and every later request cost 1.3-1.7x the CPU, with
// a p99 of 20-50 ms, for the rest of the process's life (bench/README.md, "Tails", fifth pass).
// Turning it off cost nothing measurable. Set here rather than as a command-line flag: Node refuses
// it in NODE_OPTIONS, and a deployment's own command line would drop it. The heap reads the flag at
// every collection, so setting it at run time takes effect from the next one.

import { setFlagsFromString } from 'node:v8'

export function tuneV8(): void {
  setFlagsFromString('--no-allocation-site-pretenuring')
}
