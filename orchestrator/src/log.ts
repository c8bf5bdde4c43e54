import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };
import type { LogLevel } from './log-levels.js';

export { LOG_LEVELS, type LogLevel } from './log-levels.js';

/** Logs go to stderr: human-readable on a TTY, JSON lines otherwise. Command output goes to stdout. */
export function createLogger(level: LogLevel = 'info', stream: NodeJS.WritableStream = process.stderr): Logger {
  const tty = (stream as { isTTY?: boolean }).isTTY === true;
  const redact = { paths: ['*.token', '*.password', '*.HF_TOKEN', '*.REDIS_URL', 'env'], censor: '***' };
  if (tty) {
    return pino({ level, redact }, pretty({ destination: 2, sync: true, colorize: true, ignore: 'pid,hostname' }));
  }
  return pino({ level, redact, base: undefined }, pino.destination({ fd: 2, sync: true }));
}
