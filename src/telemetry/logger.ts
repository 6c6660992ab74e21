// Structured JSON logs (pino). Never log tokens, keys, values or command arguments.

import { pino, type Logger, type LevelWithSilent } from 'pino'

export function createLogger(level: LevelWithSilent, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'redis-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Defence in depth: headers and tokens must never reach a log line.
      redact: { paths: ['token', 'authorization', '*.token', '*.authorization', 'headers.authorization'], remove: true },
    },
    destination,
  )
}
