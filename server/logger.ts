// JSON logs to stdout by default (machine-readable, cheap); pino-pretty only when asked because it
// runs a transport thread and formats every line.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, pretty: boolean): Logger {
  if (pretty) {
    return pino({ level, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return pino({ level, base: { pid: process.pid } });
}
