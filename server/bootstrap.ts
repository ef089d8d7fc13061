// What every process that serves the realtime hub does first and last: configuration that exits
// with status 2 and a readable message when wrong, and an exit with status 1 when the model cannot
// load. Shared by the server's entry and the bench's ws peer so both fail the same way.
import { ConfigError, loadConfig, USAGE, type ServerConfig } from './config.js';
import type { Logger } from './logger.js';

/** The configuration, or exit: usage on --help (status 0), the reason on a bad flag (status 2). */
export function configOrExit(argv: readonly string[], env: NodeJS.ProcessEnv): ServerConfig {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    process.exit(0);
  }
  try {
    return loadConfig(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
}

/** Logs `model failed to load` (tests and the bench wait for that line) and exits with status 1. */
export function exitIfModelFails(ready: Promise<void>, logger: Logger, config: ServerConfig): void {
  ready.catch((err: Error) => {
    logger.fatal({ err: err.message, model: config.modelDir }, 'model failed to load');
    process.exit(1);
  });
}
