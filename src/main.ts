// Composition root: load config, start the gateway, drain on SIGTERM/SIGINT.

import './core/v8-setup.js'
import { ConfigError, configPath, loadConfig, loadRuntimeEnv } from './config/load.js'
import { Gateway } from './gateway.js'
import { createLogger } from './telemetry/logger.js'
import { startTracing } from './telemetry/otel.js'
import { VERSION } from './core/version.js'

async function main(): Promise<void> {
  const path = configPath()
  let config
  const configFiles = new Map<string, string | null>()
  try {
    config = loadConfig({ path, onFileRead: (file, sha256) => configFiles.set(file, sha256) })
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`redis-gateway: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  const logger = createLogger(config.log.level)
  const runtime = loadRuntimeEnv()
  // OTEL_* variables decide; a broken tracing set-up is logged and the gateway runs untraced.
  const tracing = await startTracing(runtime.tracing, logger, VERSION).catch((err: unknown) => {
    logger.error({ err }, 'OpenTelemetry tracing could not start; running without it')
    return null
  })
  const gateway = new Gateway({
    config,
    configPath: path,
    configFiles,
    logger,
    runtime,
    ...(tracing !== null && { tracer: tracing.tracer }),
  })
  try {
    await gateway.start()
  } catch (err) {
    logger.fatal({ err }, 'could not start')
    process.exit(1)
  }
  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) {
      // Operators expect a second Ctrl-C or SIGTERM to hurry things along, not to be ignored: it
      // skips the rest of the delay, or closes idle connections at once during the drain.
      logger.info({ signal, action: gateway.hurryShutdown() }, 'second signal during shutdown')
      return
    }
    stopping = true
    const { delayMs, timeoutMs } = gateway.currentConfig().shutdown
    logger.info({ signal, delayMs, timeoutMs }, 'shutting down')
    gateway
      .stop()
      .then(() => tracing?.shutdown()) // flush the last spans
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        logger.error({ err }, 'error during shutdown')
        process.exit(1)
      })
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
}

void main()
