// The gateway's prom-client Registry, whose scrape does not stall the gateway. At 5,000 instances
// /metrics is ~160,000 series and 16 MB of text, which prom-client's metrics() builds in one event-
// loop turn of about a second (issue 21) while every request waits. exposition() builds the same
// text in slices, yielding to the event loop (setImmediate) between them: the hot metrics
// (hot-metrics.ts, which hold nearly every series) a few thousand lines per slice, printed by their
// own code; every other metric (Node's defaults, the few global ones) by prom-client, one per slice.
// It returns the text in pieces of a few hundred KB, never one 16 MB string: encoding or copying
// that much is itself a turn of ~50 ms, so the ops plane sends (or gzips) piece by piece.
// A scrape is therefore no longer one instant: series change between slices; each series is
// printed whole (a histogram's buckets agree with its count).

import { setImmediate as nextTurn } from 'node:timers/promises'
import { Registry } from 'prom-client'
import { HotMetric } from './hot-metrics.js'

/** Series lines printed between two yields to the event loop: 1-3 ms per slice at 5,000 instances (bench/metrics-scale.ts). */
export const SLICE_LINES = 1_000
/** Characters per piece of exposition(): joined and encoded in well under a millisecond each. */
const PIECE_CHARS = 256 * 1024

export class MetricsRegistry extends Registry {
  constructor(private readonly sliceLines = SLICE_LINES) {
    super()
  }

  /**
   * The text prom-client's own metrics() prints for these metrics, byte for byte, in pieces (each
   * ends at a line end), built over several turns of the event loop.
   */
  async exposition(): Promise<string[]> {
    if (this.contentType !== Registry.PROMETHEUS_CONTENT_TYPE) return [await super.metrics()]
    const pieces: string[] = []
    let parts: string[] = []
    let chars = 0
    const add = (text: string): void => {
      parts.push(text)
      chars += text.length
      if (chars < PIECE_CHARS) return
      pieces.push(parts.join(''))
      parts = []
      chars = 0
    }
    let first = true
    for (const metric of this.getMetricsAsArray()) {
      // A blank line between metrics; every metric's text ends in a newline.
      if (!first) add('\n')
      first = false
      const hot: unknown = metric // (prom-client declares `type` an enum, which a HotMetric's string is not)
      if (hot instanceof HotMetric) {
        add(hot.header)
        for (const chunk of hot.exposition(this.sliceLines)) {
          add(chunk)
          await nextTurn()
        }
      } else {
        add(`${await this.getSingleMetricAsString(metric.name)}\n`)
        await nextTurn()
      }
    }
    if (parts.length > 0) pieces.push(parts.join(''))
    return pieces
  }

  /** exposition() as one string (prom-client's API; tests). The ops plane sends the pieces instead. */
  override async metrics(): Promise<string> {
    return (await this.exposition()).join('')
  }

  /** Prometheus's target labels do this job; the sliced exposition() would not print them. */
  override setDefaultLabels(_labels: object): never {
    throw new Error('MetricsRegistry: default labels are not supported (set target labels in Prometheus instead)')
  }
}
