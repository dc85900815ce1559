/**
 * `hook-runner inject`: reads YAML/JSON documents from a file or stdin, writes them injected to
 * stdout, warnings to stderr. Exit 1 names the document and field of an invalid hooks annotation.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig, SIDECAR_MODES, type SidecarMode } from './config.js';
import { InjectError, formatYaml, injectDocuments, parseDocuments } from './inject.js';
import type { ResolvedMode } from './mutate.js';
import { packageVersion } from '../cli/version.js';

const HELP = `Usage: hook-runner inject -f FILE|- [--config F] [-o yaml|json] [--sidecar-mode native|container]

Injects the hook-runner sidecar offline, as the webhook would, into Pods and the pod templates of
Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs.
Every other document passes through unchanged. Injecting the output again changes nothing.

Options:
  -f, --filename FILE     manifest to read (YAML or JSON, one or many documents); - reads stdin
      --config FILE       hook-runner configuration (DESIGN §9); defaults otherwise
  -o, --output FORMAT     yaml (documents separated by ---) or json (one object, or a v1 List) [yaml]
      --sidecar-mode M    native or container; overrides the config's sidecar.mode
                          (inject has no API server to ask, so mode auto means native)
  -h, --help              this text

Warnings go to stderr. Exit status: 0 on success, 1 when a document is invalid, 2 on a usage error.
`;

export async function runInjectCli(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        filename: { type: 'string', short: 'f' },
        config: { type: 'string' },
        output: { type: 'string', short: 'o', default: 'yaml' },
        'sidecar-mode': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`hook-runner inject: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (msg: string): number => {
    process.stderr.write(`hook-runner inject: ${msg}\nRun 'hook-runner inject --help' for usage.\n`);
    return 2;
  };
  if (!args.filename) return usage('-f FILE is required (use -f - to read standard input)');
  if (args.output !== 'yaml' && args.output !== 'json') return usage(`-o must be yaml or json, got ${JSON.stringify(args.output)}`);
  const modeFlag = args['sidecar-mode'];
  if (modeFlag !== undefined && (modeFlag === 'auto' || !SIDECAR_MODES.includes(modeFlag as SidecarMode))) {
    return usage(`--sidecar-mode must be native or container, got ${JSON.stringify(modeFlag)}`);
  }

  let config;
  let text: string;
  try {
    config = loadConfig(args.config, packageVersion());
    text = readFileSync(args.filename === '-' ? 0 : args.filename, 'utf8');
  } catch (e) {
    process.stderr.write(`hook-runner inject: ${(e as Error).message}\n`);
    return 1;
  }
  const mode: ResolvedMode = (modeFlag as ResolvedMode | undefined) ?? (config.sidecar.mode === 'container' ? 'container' : 'native');

  const source = args.filename === '-' ? 'stdin' : args.filename;
  let docs: unknown[];
  try {
    docs = parseDocuments(text, source);
  } catch (e) {
    process.stderr.write(`hook-runner inject: ${(e as Error).message}\n`);
    return 1;
  }

  let results;
  try {
    results = injectDocuments(docs, { config, mode });
  } catch (e) {
    if (e instanceof InjectError) {
      process.stderr.write(`hook-runner inject: ${source}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  for (const r of results) for (const w of r.warnings) process.stderr.write(`Warning: ${w}\n`);

  const out = results.map((r) => r.doc);
  if (args.output === 'json') {
    const value = out.length === 1 ? out[0] : { apiVersion: 'v1', kind: 'List', items: out };
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  } else {
    process.stdout.write(formatYaml(out));
  }
  return 0;
}
