// Composition root: load config, start the gateway, drain on SIGTERM/SIGINT.

import { ConfigError, configPath, loadConfig, loadRuntimeEnv } from './config/load.js'
import { Gateway } from './gateway.js'
import { createLogger } from './telemetry/logger.js'

async function main(): Promise<void> {
  const path = configPath()
  let config
  try {
    config = loadConfig({ path })
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`redis-gateway: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  const logger = createLogger(config.log.level)
  const gateway = new Gateway({ config, configPath: path, logger, runtime: loadRuntimeEnv() })
  try {
    await gateway.start()
  } catch (err) {
    logger.fatal({ err }, 'could not start')
    process.exit(1)
  }
  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'shutting down')
    gateway
      .stop()
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
