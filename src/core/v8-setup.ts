// Imported first by main.ts: the V8 settings of v8-tuning.ts, applied before any other
// module's code runs (ES modules run in import order), so that no decision they prevent is taken
// while the rest loads.

import { tuneV8 } from './v8-tuning.js'

tuneV8()
