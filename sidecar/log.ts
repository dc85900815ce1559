/**
 * The sidecar's logger: the same JSON lines as the webhook's pino logger (`webhook/logger.ts`:
 * `level` label, ISO `time`, `name`, the data fields, `msg`), written synchronously to stdout
 * with node builtins only. pino and its stand-ins in the bundle cost start time and memory in
 * every hooked pod for what is one `JSON.stringify` and one write (docs/design-decisions.md).
 */
import { writeSync } from 'node:fs';

type Fields = Record<string, unknown>;

/** What the sidecar logs through; a pino Logger fits it too (tests pass one). */
export interface Logger {
  debug(fields: Fields, msg: string): void;
  info(fields: Fields, msg: string): void;
  warn(fields: Fields, msg: string): void;
  error(fields: Fields, msg: string): void;
}

const LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const;
type Level = keyof typeof LEVELS;

/** Keys whose values never reach a log line, at any depth: the hook token. */
const REDACTED = new Set(['token', 'x-hook-runner-token']);

function replacer(key: string, value: unknown): unknown {
  if (REDACTED.has(key.toLowerCase())) return '[redacted]';
  if (value instanceof Error) return { type: value.name, message: value.message };
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export interface SidecarLoggerOptions {
  name: string;
  /** debug | info | warn | error; default LOG_LEVEL, else info. */
  level?: string;
  /** Where a line goes; stdout (fd 1) by default. */
  write?: (line: string) => void;
}

/** Synchronous write to fd 1; a non-blocking stdout that is full (EAGAIN) falls back to the stream. */
function writeStdout(line: string): void {
  try {
    writeSync(1, line);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN') process.stdout.write(line);
    // Any other error (stdout closed): nothing sensible to do with a log line.
  }
}

export function createSidecarLogger(o: SidecarLoggerOptions): Logger {
  const wanted = (o.level ?? process.env.LOG_LEVEL ?? 'info') as string;
  const min = wanted in LEVELS ? LEVELS[wanted as Level] : LEVELS.info;
  const write = o.write ?? writeStdout;
  const name = JSON.stringify(o.name);
  const at = (level: Level) => (fields: Fields, msg: string) => {
    if (LEVELS[level] < min) return;
    let body: string;
    try {
      body = JSON.stringify({ ...fields, msg }, replacer);
    } catch (e) {
      body = JSON.stringify({ msg, logError: `fields not serialisable: ${(e as Error).message}` });
    }
    write(`{"level":"${level}","time":"${new Date().toISOString()}","name":${name},${body.slice(1)}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
