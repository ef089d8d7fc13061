// Entry point: configuration, logger, server, signals. Everything else lives in modules.
import { startServer } from './app.js';
import { configOrExit, exitIfModelFails } from './bootstrap.js';
import { createLogger } from './logger.js';

async function main(): Promise<void> {
  const config = configOrExit(process.argv.slice(2), process.env);
  const logger = createLogger(config.logLevel, config.logPretty);
  const server = await startServer(config, logger);
  exitIfModelFails(server.ready, logger, config);
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    void server.close().finally(() => process.exit(0));
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
