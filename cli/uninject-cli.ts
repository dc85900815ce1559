/**
 * `hook-runner uninject`: the inverse of `inject` (like `linkerd uninject`). Reads every `-f`,
 * writes the documents with hook-runner's additions removed, warnings to stderr.
 */
import { parseArgs } from 'node:util';
import { formatDocuments } from '../webhook/core/inject.js';
import { UninjectError, uninjectDocument } from '../webhook/core/uninject.js';
import { readManifests } from './docs-io.js';

const HELP = `Usage: hook-runner uninject -f FILE|- [-f FILE ...] [-o yaml|json]

Removes what 'hook-runner inject' (or the webhook) added to Pods and to the pod templates of
Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs:
the hook-runner sidecar, the rewritten lifecycle blocks (the original ones come back from the
record in the hook-runner.dev/status annotation), the HOOK_RUNNER_CONTAINER env,
shareProcessNamespace when hook-runner set it, and the status annotation itself.
Documents without hook-runner pass through unchanged.

Examples:
  hook-runner uninject -f deployment.injected.yaml > deployment.yaml
  kubectl get deploy web -o yaml | hook-runner uninject -f - | kubectl apply -f -

Options:
  -f, --filename FILE     manifest to read (YAML or JSON, one or many documents); - reads stdin;
                          repeat for several files
  -o, --output FORMAT     yaml (documents separated by ---) or json (one object, or a v1 List) [yaml]
  -h, --help              this text

Warnings go to stderr. Exit status: 0 on success, 1 when a document cannot be read or its
status annotation is not hook-runner's record, 2 on a usage error.
`;

export async function runUninjectCli(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        filename: { type: 'string', short: 'f', multiple: true },
        output: { type: 'string', short: 'o', default: 'yaml' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`hook-runner uninject: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (msg: string): number => {
    process.stderr.write(`hook-runner uninject: ${msg}\nRun 'hook-runner uninject --help' for usage.\n`);
    return 2;
  };
  if (!args.filename?.length) return usage('-f FILE is required (use -f - to read standard input)');
  if (args.output !== 'yaml' && args.output !== 'json') return usage(`-o must be yaml or json, got ${JSON.stringify(args.output)}`);

  let out;
  try {
    const docs = readManifests(args.filename);
    out = docs.map(({ doc, source, index }) => {
      try {
        return uninjectDocument(doc, index);
      } catch (e) {
        if (e instanceof UninjectError) throw new Error(`${source}: ${e.message}`);
        throw e;
      }
    });
  } catch (e) {
    process.stderr.write(`hook-runner uninject: ${(e as Error).message}\n`);
    return 1;
  }
  for (const r of out) for (const w of r.warnings) process.stderr.write(`Warning: ${w}\n`);
  process.stdout.write(
    formatDocuments(
      out.map((r) => r.doc),
      args.output,
    ),
  );
  return 0;
}
