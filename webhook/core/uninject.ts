/**
 * `hook-runner uninject` (like `linkerd uninject`), pure: removes exactly what the mutation added,
 * guided by the record it left in `hook-runner.dev/status` (see InjectionStatus in mutate.ts): the
 * sidecar, the rewritten lifecycle blocks (the originals come back from the record), the marker env,
 * `shareProcessNamespace` and the lists or maps hook-runner created. Documents without the status
 * annotation pass through unchanged; `uninject(inject(x))` equals `x`.
 */
import type { V1Container, V1Lifecycle, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { ANNOTATION_STATUS, ENV_MARKER, PHASES, SIDECAR_CONTAINER_NAME, hookPath } from '../../common/names.js';
import { isObj } from '../../common/spec.js';
import { documentLabel, templateOf } from './inject.js';
import type { InjectionStatus } from './mutate.js';

/** A document whose status annotation cannot be read, with where. */
export class UninjectError extends Error {
  constructor(
    readonly location: string,
    readonly detail: string,
  ) {
    super(`${location}: ${detail}`);
    this.name = 'UninjectError';
  }
}

export interface UninjectResult {
  pod: V1Pod;
  uninjected: boolean;
  warnings: string[];
}

const STATUS_LOCATION = `metadata.annotations[${ANNOTATION_STATUS}]`;

/** Reads and checks the status annotation; throws {@link UninjectError} naming the field. */
export function parseStatus(text: string): InjectionStatus {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UninjectError(STATUS_LOCATION, `is not JSON (${(e as Error).message}); expected the record hook-runner writes, e.g. {"version":1,"mode":"native","port":15901,"containers":["app"]}`);
  }
  const bad = (field: string, expected: string, got: unknown): never => {
    throw new UninjectError(`${STATUS_LOCATION}.${field}`, `is ${JSON.stringify(got) ?? 'missing'}; expected ${expected}`);
  };
  if (!isObj(v)) return bad('', 'a JSON object', v);
  if (v.mode !== 'native' && v.mode !== 'container') bad('mode', 'native or container', v.mode);
  if (typeof v.port !== 'number') bad('port', 'a port number', v.port);
  if (!Array.isArray(v.containers) || !v.containers.every((c) => typeof c === 'string')) bad('containers', 'a list of container names', v.containers);
  if (v.lifecycle !== undefined && !isObj(v.lifecycle)) bad('lifecycle', 'an object of container name to lifecycle (or null)', v.lifecycle);
  if (v.env !== undefined && !isObj(v.env)) bad('env', 'an object of container name to "append" or "create"', v.env);
  if (v.created !== undefined && !(Array.isArray(v.created) && v.created.every((c) => typeof c === 'string'))) bad('created', 'a list of field paths', v.created);
  return v as unknown as InjectionStatus;
}

function removeSidecar(list: V1Container[] | undefined): V1Container[] | undefined {
  if (!list) return undefined;
  const i = list.findIndex((c) => c.name === SIDECAR_CONTAINER_NAME);
  return i < 0 ? undefined : [...list.slice(0, i), ...list.slice(i + 1)];
}

/** Old records (no `lifecycle` field): drop only the handlers that call the sidecar. */
function dropOurHandlers(c: V1Container): void {
  if (!c.lifecycle) return;
  const lifecycle: V1Lifecycle = { ...c.lifecycle };
  for (const phase of PHASES) if (lifecycle[phase]?.httpGet?.path === hookPath(c.name, phase)) delete lifecycle[phase];
  if (Object.keys(lifecycle).length === 0) delete c.lifecycle;
  else c.lifecycle = lifecycle;
}

/** Removes what injection added to one Pod (or pod template). Never changes its input. */
export function uninjectPod(original: V1Pod): UninjectResult {
  const text = original.metadata?.annotations?.[ANNOTATION_STATUS];
  if (text === undefined) return { pod: original, uninjected: false, warnings: [] };
  const status = parseStatus(text);
  const created = new Set(status.created ?? []);
  const warnings: string[] = [];
  const pod = structuredClone(original);
  const spec: V1PodSpec | undefined = pod.spec;

  if (spec) {
    // The sidecar sits where its mode put it; look in the other list too, in case the record is off.
    const fromInit = removeSidecar(spec.initContainers);
    const fromMain = fromInit ? undefined : removeSidecar(spec.containers);
    if (fromInit) spec.initContainers = fromInit;
    else if (fromMain) spec.containers = fromMain;
    else warnings.push(`no ${SIDECAR_CONTAINER_NAME} container found to remove`);
    if (created.has('spec.initContainers') && spec.initContainers?.length === 0) delete spec.initContainers;
    if (created.has('spec.shareProcessNamespace')) delete spec.shareProcessNamespace;

    for (const name of status.containers) {
      const c = spec.containers?.find((x) => x.name === name);
      if (!c) {
        warnings.push(`container ${name} is named in ${ANNOTATION_STATUS} but not in the pod; nothing to restore there`);
        continue;
      }
      if (status.lifecycle) {
        const before = status.lifecycle[name];
        if (before === null || before === undefined) delete c.lifecycle;
        else c.lifecycle = before;
      } else {
        dropOurHandlers(c);
      }
      // Old records do not say whether the marker was the user's; it carries the container's own name either way.
      const how = status.lifecycle ? status.env?.[name] : 'create';
      if (how && c.env) {
        c.env = c.env.filter((e) => !(e.name === ENV_MARKER && e.value === name));
        if (c.env.length === 0 && how === 'create') delete c.env;
      }
    }
    if (!status.lifecycle) {
      warnings.push(
        `${ANNOTATION_STATUS} was written by an older hook-runner and does not record the original lifecycle blocks; hook-runner's handlers were removed, native handlers it had adopted are not restored`,
      );
    }
  }

  const annotations = { ...pod.metadata!.annotations };
  delete annotations[ANNOTATION_STATUS];
  pod.metadata!.annotations = annotations;
  if (created.has('metadata.annotations') && Object.keys(annotations).length === 0) delete pod.metadata!.annotations;
  if (created.has('metadata') && Object.keys(pod.metadata!).length === 0) delete pod.metadata;
  return { pod, uninjected: true, warnings };
}

export interface UninjectedDocument {
  doc: unknown;
  uninjected: boolean;
  warnings: string[];
}

function uninjectObject(doc: unknown, label: string): UninjectedDocument {
  if (!isObj(doc)) return { doc, uninjected: false, warnings: [] };
  if (doc.kind === 'List' && Array.isArray(doc.items)) {
    const results = doc.items.map((item, i) => uninjectObject(item, `${label} items[${i}]`));
    return { doc: { ...doc, items: results.map((r) => r.doc) }, uninjected: results.some((r) => r.uninjected), warnings: results.flatMap((r) => r.warnings) };
  }
  try {
    if (doc.kind === 'Pod' && (doc.apiVersion ?? 'v1') === 'v1') {
      const r = uninjectPod(doc as V1Pod);
      return { doc: r.pod, uninjected: r.uninjected, warnings: r.warnings };
    }
    const t = templateOf(doc);
    if (!t) return { doc, uninjected: false, warnings: [] };
    const r = uninjectPod({ metadata: t.template.metadata, spec: t.template.spec } as V1Pod);
    if (!r.uninjected) return { doc, uninjected: false, warnings: [] };
    const out = structuredClone(doc);
    const target = templateOf(out)!;
    const template: Record<string, unknown> = { ...target.template, metadata: r.pod.metadata, spec: r.pod.spec };
    if (r.pod.metadata === undefined) delete template.metadata;
    target.parent[target.key] = template;
    return { doc: out, uninjected: true, warnings: r.warnings };
  } catch (e) {
    if (e instanceof UninjectError) throw new UninjectError(`${label}: ${e.location}`, e.detail);
    throw e;
  }
}

/** Uninjects one document; `index` numbers it in its stream for messages. Warnings come back prefixed with the document. */
export function uninjectDocument(doc: unknown, index: number): UninjectedDocument {
  const label = documentLabel(index, doc);
  const r = uninjectObject(doc, label);
  return { ...r, warnings: r.warnings.map((w) => `${label}: ${w}`) };
}

export function uninjectDocuments(docs: readonly unknown[]): UninjectedDocument[] {
  return docs.map((doc, i) => uninjectDocument(doc, i));
}
