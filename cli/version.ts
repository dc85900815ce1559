import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';

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

/**
 * The git commit this build was made from: dist/build-info.json, written by
 * scripts/build-info.mjs at build time; `unknown` when the build had no commit to record.
 */
export function buildCommit(): string {
  // dist/cli/version.js → dist/build-info.json; cli/version.ts (tsx) → dist/build-info.json of the checkout.
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

export interface VersionInfo {
  version: string;
  commit: string;
  node: string;
  platform: string;
}

export function versionInfo(): VersionInfo {
  return { version: packageVersion(), commit: buildCommit(), node: process.version, platform: `${process.platform}/${process.arch}` };
}

const VERSION_USAGE = `Usage: hook-runner version [-o json|yaml]

Prints the version. -o json|yaml: version, git commit of the build, Node.js version and platform.
`;

/** `hook-runner version [-o json|yaml]`: plain `hook-runner X.Y.Z` by default, as before. */
export function runVersionCli(args: string[]): number {
  let output: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-h' || a === '--help') {
      process.stdout.write(VERSION_USAGE);
      return 0;
    }
    if (a === '-o' || a === '--output') output = args[++i];
    else if (a.startsWith('-o=') || a.startsWith('--output=')) output = a.slice(a.indexOf('=') + 1);
    else if (a.startsWith('-o') && a.length > 2) output = a.slice(2);
    else {
      process.stderr.write(`hook-runner version: unexpected argument ${JSON.stringify(a)}\n\n${VERSION_USAGE}`);
      return 2;
    }
    if (output !== 'json' && output !== 'yaml') {
      process.stderr.write(`hook-runner version: -o must be json or yaml, got ${JSON.stringify(output ?? '')}\n\n${VERSION_USAGE}`);
      return 2;
    }
  }
  const info = versionInfo();
  if (output === 'json') process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
  else if (output === 'yaml') process.stdout.write(stringify(info));
  else process.stdout.write(`hook-runner ${info.version}\n`);
  return 0;
}
