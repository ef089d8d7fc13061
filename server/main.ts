// Entry point: configuration, logger, server, signals. Everything else lives in modules.
//
// Exit codes: 0 after a graceful drain; 1 when the model cannot load at start or the inference
// engine cannot be brought back (a supervisor restarts us); 2 for bad flags; 128 + signal when a
// second SIGINT/SIGTERM cuts a drain short.
import { startServer } from './app.js';
import { configOrExit, exitIfModelFails } from './bootstrap.js';
import { createLogger } from './logger.js';

const SIGNAL_NUMBERS: Record<string, number> = { SIGINT: 2, SIGTERM: 15 };

async function main(): Promise<void> {
  const config = configOrExit(process.argv.slice(2), process.env);
  const logger = createLogger(config.logLevel, config.logPretty);
  const server = await startServer(config, logger, {
    fatal: (reason) => {
      logger.fatal({ reason }, 'exiting: the inference engine is gone');
      void server.close().finally(() => process.exit(1));
    },
  });
  exitIfModelFails(server.ready, logger, config);

  let draining = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (draining) {
      logger.warn({ signal }, 'second signal: exiting without finishing the drain');
      void server.close().finally(() => process.exit(128 + (SIGNAL_NUMBERS[signal] ?? 1)));
      return;
    }
    draining = true;
    logger.info({ signal, drainTimeoutMs: config.drainTimeoutMs }, 'shutting down');
    void server.drain(config.drainTimeoutMs).then(
      () => process.exit(0),
      (err: Error) => {
        logger.error({ err: err.message }, 'drain failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
