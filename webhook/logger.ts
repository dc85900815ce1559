/**
 * The pino root logger, made once at the edge (the CLI) and passed down. JSON, one event a line,
 * on stdout (stderr for `inject`, whose stdout is the manifest).
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  /** Where lines go; stdout by default. Tests pass a stream to read what was logged. */
  destination?: DestinationStream | NodeJS.WritableStream;
  name?: string;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      name: opts.name ?? 'hook-runner',
      level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // The hook token must never reach a log line, whatever object carries it.
      redact: { paths: ['token', '*.token', 'headers["x-hook-runner-token"]', 'req.headers["x-hook-runner-token"]'], censor: '[redacted]' },
    },
    (opts.destination ?? process.stdout) as DestinationStream,
  );
}
