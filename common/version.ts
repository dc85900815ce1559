/**
 * The package's identity (version and build commit) that every binary reports: the webhook, `inject`,
 * `explain`, `version` and the bench.
 */
import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** The package version, read once from package.json (two levels up from dist/common or one from common/). */
export function packageVersion(): string {
  if (cached) return cached;
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      cached = (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
      return cached;
    } catch {
      // try the next location: compiled (dist/common) and source (common/) layouts differ by one level
    }
  }
  return '0.0.0';
}

/**
 * The git commit this build was made from: dist/build-info.json, written by
 * scripts/build-info.mjs at build time; `unknown` when the build had no commit to record.
 */
export function buildCommit(): string {
  // dist/common/version.js → dist/build-info.json; common/version.ts (tsx) → dist/build-info.json of the checkout.
  for (const rel of ['../build-info.json', '../dist/build-info.json']) {
    try {
      const info = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { commit?: unknown };
      if (typeof info.commit === 'string' && /^([0-9a-f]{7,64}|unknown)$/.test(info.commit)) return info.commit;
    } catch {
      // not built yet, or the other layout
    }
  }
  return 'unknown';
}
