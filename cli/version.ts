import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** The package version, read once from package.json (two levels up from dist/cli or cli/). */
export function packageVersion(): string {
  if (cached) return cached;
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      cached = (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
      return cached;
    } catch {
      // try the next location: compiled (dist/cli) and source (cli/) layouts differ by one level
    }
  }
  return '0.0.0';
}
