// What a Redis command is made of, from the request body to the RESP bytes sent upstream.

import type { Buffer } from 'node:buffer'

/** One word of a command (its name or an argument): text, or bytes kept as they came. */
export type Arg = string | Buffer
