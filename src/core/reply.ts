// A Redis reply as the RESP parser (upstream/resp-parser.ts) hands it over:
//   Buffer  -> a bulk or status string (RESP2 cannot tell them apart once parsed)
//   string  -> an integer reply, as decimal text (exact even beyond 2^53)
//   null    -> nil
//   array   -> multi-bulk, recursively
//   Error   -> an error reply nested in an array (EXEC results)

import type { Buffer } from 'node:buffer'

export type RawReply = Buffer | string | number | null | RawReply[] | Error

/** One command's outcome inside a pipeline or transaction: its reply, or Redis's error text. */
export type ItemResult = { ok: true; value: RawReply } | { ok: false; error: string }
