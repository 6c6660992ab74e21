// The gateway's version, reported as the tracer's instrumentation version. Kept equal to
// package.json's by test/docs.test.ts.
export const VERSION = '0.2.0'
