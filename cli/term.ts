/**
 * Terminal styling for the operator subcommands: colour and symbols only on a TTY, never when
 * `NO_COLOR` is set (https://no-color.org) or `TERM=dumb`, so piped output and goldens stay plain.
 */
export interface Style {
  colour: boolean;
  /** Unicode marks (✔ ✖ ⚠) on a TTY, `[ok]` `[fail]` `[warn]` otherwise. */
  unicode: boolean;
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  bold(s: string): string;
  dim(s: string): string;
}

export function makeStyle(opts: { tty: boolean; env?: NodeJS.ProcessEnv }): Style {
  const env = opts.env ?? process.env;
  const colour = opts.tty && !env.NO_COLOR && env.TERM !== 'dumb';
  const wrap = (code: string) => (s: string) => (colour ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { colour, unicode: opts.tty, green: wrap('32'), red: wrap('31'), yellow: wrap('33'), bold: wrap('1'), dim: wrap('2') };
}

/** A style for a stream: TTY-ness from the stream itself. */
export function styleFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): Style {
  return makeStyle({ tty: stream.isTTY === true, env });
}
