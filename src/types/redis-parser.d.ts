// Types for redis-parser 3 (the RESP parser ioredis uses; it ships none).
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
