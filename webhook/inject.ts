/**
 * Offline injection over Kubernetes documents (`hook-runner inject`, like `istioctl kube-inject`):
 * Pods and the pod templates of every workload kind go through the same pure mutation as the
 * webhook; every other document passes through unchanged.
 */
import { createHash } from 'node:crypto';
import type { V1ObjectMeta, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { OFFLINE_TOKEN_PREFIX } from '../common/names.js';
import { parseAllDocuments, stringify } from 'yaml';
import { HookSpecError, isObj, type Obj } from '../common/spec.js';
import { MutationError, mutatePod, type MutateOptions } from './mutate.js';

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

export interface InjectedDocument {
  doc: unknown;
  warnings: string[];
  injected: boolean;
}

/** A document `inject` refuses, with which document and which field. */
export class InjectError extends Error {
  constructor(
    readonly documentLabel: string,
    readonly error: Error,
  ) {
    super(`${documentLabel}: ${error.message}`);
    this.name = 'InjectError';
  }
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
export function offlineToken(doc: unknown): string {
  return OFFLINE_TOKEN_PREFIX + createHash('sha256').update(JSON.stringify(doc)).digest('hex').slice(0, 32);
}

function injectObject(doc: unknown, given: MutateOptions, label: string): InjectedDocument {
  if (!isObj(doc)) return { doc, warnings: [], injected: false };
  const opts: MutateOptions = given.newToken ? given : { ...given, newToken: () => offlineToken(doc) };
  if (doc.kind === 'List' && Array.isArray(doc.items)) {
    const results = doc.items.map((item, i) => injectObject(item, given, `${label} items[${i}]`));
    return {
      doc: { ...doc, items: results.map((r) => r.doc) },
      warnings: results.flatMap((r) => r.warnings),
      injected: results.some((r) => r.injected),
    };
  }
  try {
    if (doc.kind === 'Pod' && (doc.apiVersion ?? 'v1') === 'v1') {
      const r = mutatePod(doc as V1Pod, opts);
      return { doc: r.pod, warnings: r.warnings, injected: r.injected };
    }
    const t = templateOf(doc);
    if (!t) return { doc, warnings: [], injected: false };
    const r = mutatePod({ metadata: t.template.metadata, spec: t.template.spec } as V1Pod, opts);
    if (!r.injected) return { doc, warnings: r.warnings, injected: false };
    const out = structuredClone(doc);
    const target = templateOf(out)!;
    target.parent[target.key] = { ...target.template, metadata: r.pod.metadata, spec: r.pod.spec };
    return { doc: out, warnings: r.warnings, injected: true };
  } catch (e) {
    if (e instanceof HookSpecError || e instanceof MutationError) throw new InjectError(label, e);
    throw e;
  }
}

/** Injects every document; warnings come back prefixed with the document they belong to. */
export function injectDocuments(docs: readonly unknown[], opts: MutateOptions): InjectedDocument[] {
  return docs.map((doc, i) => {
    const label = documentLabel(i, doc);
    const r = injectObject(doc, opts, label);
    return { ...r, warnings: r.warnings.map((w) => `${label}: ${w}`) };
  });
}

/** Parses one or many YAML/JSON documents; empty documents are dropped. Throws with the document number. */
export function parseDocuments(text: string, source: string): unknown[] {
  const docs: unknown[] = [];
  for (const [i, d] of parseAllDocuments(text, { uniqueKeys: true }).entries()) {
    if (d.errors.length > 0) throw new Error(`${source}: document ${i + 1}: not valid YAML or JSON: ${d.errors[0]!.message.split('\n')[0]}`);
    // Bounded alias expansion: a manifest is data, not a YAML bomb.
    const value: unknown = d.toJS({ maxAliasCount: 50 });
    if (value !== null && value !== undefined) docs.push(value);
  }
  return docs;
}

/** YAML documents separated by `---`, no anchors, no folded lines (env values stay one line). */
export function formatYaml(docs: readonly unknown[]): string {
  return docs.map((d) => stringify(d, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n');
}
