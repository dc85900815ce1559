/**
 * Offline injection over Kubernetes documents (`hook-runner inject`, like `istioctl kube-inject`):
 * Pods and the pod templates of every workload kind go through the same pure mutation as the
 * webhook; every other document passes through unchanged.
 */
import { createHash } from 'node:crypto';
import type { V1ObjectMeta, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { OFFLINE_TOKEN_PREFIX } from '../../common/names.js';
import { Document, parse, parseAllDocuments, visit } from 'yaml';
import { HookSpecError, isObj, type Obj } from '../../common/spec.js';
import { yamlErrorText } from './hooks-text.js';
import { MutationError, mutatePod, type MutateOptions, type SkipReason } from './mutate.js';

interface Template {
  metadata?: V1ObjectMeta;
  spec?: V1PodSpec;
}

/** Where each workload kind keeps its pod template. */
const TEMPLATE_PATHS: Record<string, string[]> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

/** What `inject` did with one object, in one greppable word (the webhook's words, plus one). */
type InjectOutcome = 'injected' | 'rekeyed' | SkipReason | 'not-a-pod-template';

/** One object's outcome, for the per-document lines on stderr (`deployment "web" injected`). */
export interface ObjectReport {
  kind: string;
  /** metadata.name, or generateName. */
  name?: string;
  outcome: InjectOutcome;
}

export interface InjectedDocument {
  doc: unknown;
  warnings: string[];
  injected: boolean;
  /** One entry per object: the document itself, or each item of a v1 List. */
  reports: ObjectReport[];
}

/** One problem of a document: its number in its file (1-based) and a line naming it and the field. */
export interface DocumentProblem {
  document: number;
  /** `document 2 (Deployment api): hook-runner.dev/hooks: api.postStart[0].httpGet.port: ...` */
  message: string;
}

/** The documents `inject` refuses: one problem per error, in document order. */
export class InjectError extends Error {
  constructor(readonly problems: readonly DocumentProblem[]) {
    super(problems.map((p) => p.message).join('\n'));
    this.name = 'InjectError';
  }
}

/** `label: source: path: message` for each problem of a refused document. */
function problemLines(label: string, e: HookSpecError | MutationError): string[] {
  if (e instanceof MutationError) return [`${label}: ${e.message}`];
  return e.errors.map((p) => `${label}: ${e.source}: ${p.path ? `${p.path}: ` : ''}${p.message}`);
}

function reportOf(doc: Obj, outcome: InjectOutcome): ObjectReport {
  const name = isObj(doc.metadata) ? (doc.metadata.name ?? doc.metadata.generateName) : undefined;
  return { kind: typeof doc.kind === 'string' ? doc.kind : 'object', ...(typeof name === 'string' ? { name } : {}), outcome };
}

export function documentLabel(index: number, doc: unknown): string {
  if (!isObj(doc)) return `document ${index + 1}`;
  const name = isObj(doc.metadata) ? (doc.metadata.name ?? doc.metadata.generateName) : undefined;
  return `document ${index + 1} (${String(doc.kind ?? 'unknown kind')}${name ? ` ${String(name)}` : ''})`;
}

export function templateOf(doc: Obj): { parent: Obj; key: string; template: Template } | undefined {
  const path = typeof doc.kind === 'string' ? TEMPLATE_PATHS[doc.kind] : undefined;
  if (!path) return undefined;
  let parent: Obj = doc;
  for (const key of path.slice(0, -1)) {
    const next = parent[key];
    if (!isObj(next)) return undefined;
    parent = next;
  }
  const key = path[path.length - 1]!;
  const template = parent[key];
  return isObj(template) ? { parent, key, template: template as Template } : undefined;
}

/**
 * The token `inject` writes: a hash of the document, so identical input gives byte-identical output
 * (GitOps diffs stay quiet). Not a secret: the webhook replaces it with a random one when the pod is
 * created (outcome `rekeyed`).
 */
function offlineToken(doc: unknown): string {
  return OFFLINE_TOKEN_PREFIX + createHash('sha256').update(JSON.stringify(doc)).digest('hex').slice(0, 32);
}

function injectObject(doc: unknown, given: MutateOptions, label: string, problems: string[]): InjectedDocument {
  if (!isObj(doc)) return { doc, warnings: [], injected: false, reports: [{ kind: 'object', outcome: 'not-a-pod-template' }] };
  const opts: MutateOptions = given.newToken ? given : { ...given, newToken: () => offlineToken(doc) };
  if (doc.kind === 'List' && Array.isArray(doc.items)) {
    const results = doc.items.map((item, i) => injectObject(item, given, `${label} items[${i}]`, problems));
    return {
      doc: { ...doc, items: results.map((r) => r.doc) },
      warnings: results.flatMap((r) => r.warnings),
      injected: results.some((r) => r.injected),
      reports: results.flatMap((r) => r.reports),
    };
  }
  const unchanged = (outcome: InjectOutcome, warnings: string[] = []): InjectedDocument => ({ doc, warnings, injected: false, reports: [reportOf(doc, outcome)] });
  try {
    if (doc.kind === 'Pod' && (doc.apiVersion ?? 'v1') === 'v1') {
      const r = mutatePod(doc as V1Pod, opts);
      return { doc: r.pod, warnings: r.warnings, injected: r.injected, reports: [reportOf(doc, r.injected ? 'injected' : r.reason)] };
    }
    const t = templateOf(doc);
    if (!t) return unchanged('not-a-pod-template');
    const r = mutatePod({ metadata: t.template.metadata, spec: t.template.spec } as V1Pod, opts);
    if (!r.injected) return unchanged(r.reason, r.warnings);
    const out = structuredClone(doc);
    const target = templateOf(out)!;
    target.parent[target.key] = { ...target.template, metadata: r.pod.metadata, spec: r.pod.spec };
    return { doc: out, warnings: r.warnings, injected: true, reports: [reportOf(doc, 'injected')] };
  } catch (e) {
    if (!(e instanceof HookSpecError || e instanceof MutationError)) throw e;
    // Recorded, and the other documents still checked; injectDocuments then throws with them all,
    // so this placeholder result is never written out.
    problems.push(...problemLines(label, e));
    return unchanged('not-a-pod-template');
  }
}

/**
 * Injects every document; warnings come back prefixed with the document they belong to. Every
 * document is checked: an {@link InjectError} lists the problems of all refused documents.
 */
export function injectDocuments(docs: readonly unknown[], opts: MutateOptions, numbers?: readonly number[]): InjectedDocument[] {
  const problems: DocumentProblem[] = [];
  const results = docs.map((doc, i) => {
    // `numbers` gives each document's place in its file when empty documents were dropped.
    const document = numbers?.[i] ?? i + 1;
    const label = documentLabel(document - 1, doc);
    const lines: string[] = [];
    const r = injectObject(doc, opts, label, lines);
    problems.push(...lines.map((message) => ({ document, message })));
    return { ...r, warnings: r.warnings.map((w) => `${label}: ${w}`) };
  });
  if (problems.length > 0) throw new InjectError(problems);
  return results;
}

/**
 * Parses one or many YAML/JSON documents; empty documents are dropped. Every document is parsed:
 * `problems` names each broken one with its number, line, column and the line's text; `numbers`
 * is each parsed document's number in the text (1-based).
 */
export function parseDocumentsCollecting(text: string, source: string): { docs: unknown[]; numbers: number[]; problems: DocumentProblem[] } {
  const docs: unknown[] = [];
  const numbers: number[] = [];
  const problems: DocumentProblem[] = [];
  for (const [i, d] of parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false }).entries()) {
    const broken = (e: unknown) => problems.push({ document: i + 1, message: `${source}: document ${i + 1}: not valid YAML or JSON: ${yamlErrorText(e, text)}` });
    if (d.errors.length > 0) {
      broken(d.errors[0]);
      continue;
    }
    try {
      // Bounded alias expansion: a manifest is data, not a YAML bomb.
      const value: unknown = d.toJS({ maxAliasCount: 50 });
      if (value !== null && value !== undefined) {
        docs.push(value);
        numbers.push(i + 1);
      }
    } catch (e) {
      broken(e);
    }
  }
  return { docs, numbers, problems };
}

/** {@link parseDocumentsCollecting}, throwing an {@link InjectError} with every problem. */
export function parseDocuments(text: string, source: string): unknown[] {
  const { docs, problems } = parseDocumentsCollecting(text, source);
  if (problems.length > 0) throw new InjectError(problems);
  return docs;
}

/** YAML 1.1 reads these plain scalars as something else than the string: merge key, value key. */
const YAML11_SPECIAL = new Set(['<<', '=']);

function readsAs(s: string, version: '1.1' | '1.2'): unknown {
  try {
    return parse(s, { version });
  } catch {
    return undefined;
  }
}

/**
 * True for a string that a YAML 1.1 reader (kubectl's go-yaml, PyYAML) or a YAML 1.2 reader would
 * not read back as that string if written plain: `yes`, `on`, `y`, `0777`, `1_000`, `1:20`,
 * `2001-12-14`, `0o17`, `~`, `<<`... Every such scalar starts with one of the characters below
 * and has none of YAML's flow or comment characters.
 */
function plainIsAmbiguous(s: string): boolean {
  if (s === '' || s.includes('\n') || !/^[-+.0-9~=<nNyYtTfFoO]/.test(s)) return false;
  // No boolean, number, date or null contains these; skipping them also keeps flow collections,
  // aliases and anchors (nesting and alias bombs hidden in a string) away from the parser.
  if (/[[\]{},#&*!|>'"%@`]|: /.test(s)) return false;
  return YAML11_SPECIAL.has(s) || readsAs(s, '1.1') !== s || readsAs(s, '1.2') !== s;
}

/**
 * YAML documents separated by `---`, no anchors, no folded lines (env values stay one line).
 * Strings that YAML 1.1 would read as booleans, numbers, dates or null are double-quoted: the
 * `yaml` package writes YAML 1.2, where `yes` is a string, but kubectl reads YAML 1.1.
 */
/** `-o yaml|json` output of documents: JSON is the object itself for one document, a `v1 List` of them for several (DESIGN §2). */
export function formatDocuments(docs: readonly unknown[], output: 'yaml' | 'json'): string {
  if (output === 'json') return `${JSON.stringify(docs.length === 1 ? docs[0] : { apiVersion: 'v1', kind: 'List', items: docs }, null, 2)}\n`;
  return formatYaml(docs);
}

export function formatYaml(docs: readonly unknown[]): string {
  return docs
    .map((d) => {
      const doc = new Document(d, { aliasDuplicateObjects: false });
      visit(doc, {
        Scalar(_key, node) {
          if (typeof node.value === 'string' && plainIsAmbiguous(node.value)) node.type = 'QUOTE_DOUBLE';
        },
      });
      return doc.toString({ lineWidth: 0 });
    })
    .join('---\n');
}
