// Types for redis-parser 3 (ioredis's RESP parser; it ships none). The gateway parses with its own
// (src/upstream/resp-parser.ts); redis-parser is a dev dependency, the reference its tests and
// bench/resp-parser.ts compare with.
declare module 'redis-parser' {
  interface RedisParserOptions {
    returnReply: (reply: unknown) => void
    returnError: (err: Error) => void
    returnFatalError?: (err: Error) => void
    returnBuffers?: boolean
    stringNumbers?: boolean
  }
  class RedisParser {
    constructor(options: RedisParserOptions)
    execute(buffer: Buffer): void
    reset(): void
  }
  export default RedisParser
}
