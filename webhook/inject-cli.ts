/**
 * `hook-runner inject`: reads YAML/JSON documents from files, directories or stdin (every -f, in
 * order, as kubectl does), writes them injected to stdout; on stderr, per object, what it did or
 * why it left it alone, and warnings. Exit 1 lists every invalid document and field.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, SIDECAR_MODES, type SidecarMode } from './core/config.js';
import { InjectError, formatDocuments, injectDocuments, parseDocumentsCollecting, type InjectedDocument, type ObjectReport } from './core/inject.js';
import type { ResolvedMode } from './core/mutate.js';
import { packageVersion } from '../common/version.js';

const HELP = `Usage: hook-runner inject -f FILE|DIR|- [-f ...] [-R] [--config F] [-o yaml|json] [--sidecar-mode native|container]

Injects the hook-runner sidecar offline, as the webhook would, into Pods and the pod templates of
Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs.
Every other document passes through unchanged. Injecting the output again changes nothing.

Options:
  -f, --filename FILE     manifest to read (YAML or JSON, one or many documents); repeat it to read
                          several, in order; - reads stdin; a directory reads its .json, .yaml and
                          .yml files in name order
  -R, --recursive         with a directory: read its subdirectories too
      --config FILE       hook-runner configuration (YAML; see "Configuration" in the README);
                          defaults otherwise
  -o, --output FORMAT     yaml (documents separated by ---) or json (one object, or a v1 List) [yaml]
      --sidecar-mode M    native or container; overrides the config's sidecar.mode
                          (inject has no API server to ask, so mode auto means native)
  -h, --help              this text

Stdout: the documents. Stderr: one line per object saying what inject did, as linkerd inject
does (deployment "web" injected; configmap "settings" skipped: not-a-pod-template; other reasons:
no-hooks, opted-out, already-injected), and warnings.
Exit status: 0 on success, 1 when a file cannot be read or a document is invalid (every problem
is listed, nothing is written to stdout), 2 on a usage error.
`;

/** The file extensions kubectl reads from a directory. */
const MANIFEST_EXTENSIONS = ['.json', '.yaml', '.yml'];

/** Why a path cannot be read, in words (no raw `ENOENT: ... open`). */
function readProblem(path: string, e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `${path}: no such file`;
  if (code === 'EACCES' || code === 'EPERM') return `${path}: permission denied`;
  if (code === 'EISDIR') return `${path}: is a directory`;
  return `${path}: cannot read: ${code ?? (e as Error).message}`;
}

/** The manifest files of a directory, in name order; subdirectories only when recursive (as kubectl -R). */
function directoryFiles(dir: string, recursive: boolean): string[] {
  const out: string[] = [];
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    // Symbolic links to files are read; to directories they are not followed (no loops), as kubectl.
    const isFile = entry.isFile() || (entry.isSymbolicLink() && statSync(path, { throwIfNoEntry: false })?.isFile() === true);
    if (isFile && MANIFEST_EXTENSIONS.includes(extname(entry.name).toLowerCase())) out.push(path);
    else if (entry.isDirectory() && recursive) out.push(...directoryFiles(path, recursive));
  }
  return out;
}

interface Source {
  /** Shown in messages: the path, or stdin. */
  name: string;
  text: string;
}

/** Every -f, in order, expanded and read; problems for those that cannot be read. */
function readSources(args: readonly string[], recursive: boolean): { sources: Source[]; problems: string[] } {
  const sources: Source[] = [];
  const problems: string[] = [];
  const read = (name: string, path: string | 0): void => {
    try {
      sources.push({ name, text: readFileSync(path, 'utf8') });
    } catch (e) {
      problems.push(readProblem(name, e));
    }
  };
  for (const arg of args) {
    if (arg === '-') {
      read('stdin', 0);
      continue;
    }
    let isDir: boolean;
    try {
      isDir = statSync(arg).isDirectory();
    } catch (e) {
      problems.push(readProblem(arg, e));
      continue;
    }
    if (!isDir) {
      read(arg, arg);
      continue;
    }
    let files: string[];
    try {
      files = directoryFiles(arg, recursive);
    } catch (e) {
      problems.push(readProblem(arg, e));
      continue;
    }
    if (files.length === 0) problems.push(`${arg}: no .json, .yaml or .yml files in this directory${recursive ? ' or below' : ' (-R reads its subdirectories too)'}`);
    for (const f of files) read(f, f);
  }
  return { sources, problems };
}

/** `deployment "web" injected`, `configmap "settings" skipped: not-a-pod-template`, as linkerd inject. */
export function reportLine(r: ObjectReport): string {
  const what = `${r.kind.toLowerCase()}${r.name !== undefined ? ` ${JSON.stringify(r.name)}` : ''}`;
  return r.outcome === 'injected' ? `${what} injected` : `${what} skipped: ${r.outcome}`;
}

export async function runInjectCli(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        filename: { type: 'string', short: 'f', multiple: true },
        recursive: { type: 'boolean', short: 'R', default: false },
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
  const filenames = args.filename ?? [];
  if (filenames.length === 0) return usage('-f FILE is required (use -f - to read standard input)');
  if (filenames.filter((f) => f === '-').length > 1) return usage('-f - is given more than once; standard input can be read only once');
  if (args.output !== 'yaml' && args.output !== 'json') return usage(`-o must be yaml or json, got ${JSON.stringify(args.output)}`);
  const modeFlag = args['sidecar-mode'];
  if (modeFlag !== undefined && (modeFlag === 'auto' || !SIDECAR_MODES.includes(modeFlag as SidecarMode))) {
    return usage(`--sidecar-mode must be native or container, got ${JSON.stringify(modeFlag)}`);
  }
  const fail = (problems: readonly string[]): number => {
    for (const p of problems) process.stderr.write(`hook-runner inject: ${p}\n`);
    return 1;
  };

  let config;
  try {
    config = loadConfig(args.config, packageVersion());
  } catch (e) {
    return fail([(e as Error).message]);
  }
  const mode: ResolvedMode = (modeFlag as ResolvedMode | undefined) ?? (config.sidecar.mode === 'container' ? 'container' : 'native');

  // Every source and every document is checked before anything is written, so one run lists
  // every problem (as kubectl's validation does) and a broken input never yields half an output.
  const { sources, problems } = readSources(filenames, args.recursive);
  const results: Array<{ source: string; result: InjectedDocument }> = [];
  for (const { name: source, text } of sources) {
    const parsed = parseDocumentsCollecting(text, source);
    const found = [...parsed.problems];
    try {
      for (const result of injectDocuments(parsed.docs, { config, mode }, parsed.numbers)) results.push({ source, result });
    } catch (e) {
      if (!(e instanceof InjectError)) throw e;
      found.push(...e.problems.map((p) => ({ ...p, message: `${source}: ${p.message}` })));
    }
    // Broken YAML and invalid hooks, in the order of the documents (sort is stable).
    problems.push(...found.sort((a, b) => a.document - b.document).map((p) => p.message));
  }
  if (problems.length > 0) return fail(problems);

  for (const { source, result } of results) {
    for (const w of result.warnings) process.stderr.write(`Warning: ${source}: ${w}\n`);
    for (const r of result.reports) process.stderr.write(`${reportLine(r)}\n`);
  }
  process.stdout.write(
    formatDocuments(
      results.map((r) => r.result.doc),
      args.output,
    ),
  );
  return 0;
}
