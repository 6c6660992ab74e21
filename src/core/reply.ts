// A Redis reply as the RESP parser (upstream/resp-parser.ts) hands it over:
//   Buffer  -> a bulk or status string (RESP2 cannot tell them apart once parsed)
//   string  -> an integer reply, as decimal text (exact even beyond 2^53)
//   null    -> nil
//   array   -> multi-bulk, recursively
//   Error   -> an error reply nested in an array (EXEC results)

import type { Buffer } from 'node:buffer'

export type RawReply = Buffer | string | number | null | RawReply[] | Error

/**
 * An integer reply as decimal text, as the gateway keeps it: `n` (its parsed value) while the line is
 * short enough for that to be exact, else the digits as sent. `colon` and `lf`: where the reply's
 * line begins and the LF that ends it, in `buf`. The RESP parser and the command-table reader both
 * give integers this way.
 */
export function integerText(buf: Buffer, colon: number, lf: number, n: number): string {
  return lf - colon <= 17 ? String(n) : buf.toString('latin1', colon + 1, lf - 1)
}

/** One command's outcome inside a pipeline or transaction: its reply, or Redis's error text. */
export type ItemResult = { ok: true; value: RawReply } | { ok: false; error: string }
