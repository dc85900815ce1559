import { stringify } from 'yaml';
import { buildCommit, packageVersion } from '../common/version.js';

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
