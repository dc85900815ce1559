/**
 * AdmissionReview (admission.k8s.io/v1) in, AdmissionReview out. Pure: the server passes the
 * parsed body and sends back `review`. Malformed requests throw {@link BadReviewError} (HTTP 400);
 * a pod the mutation refuses becomes a denial with status code 400 and the located message.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { HookSpecError, isObj, type Obj } from '../../common/spec.js';
import type { Config } from './config.js';
import { MutationError, mutatePod, type MutateOptions, type PodSecurityLevel, type ResolvedMode } from './mutate.js';
import { computePatch } from './patch.js';

export type { ResolvedMode };
type Outcome = 'injected' | 'rekeyed' | 'skipped' | 'denied';

/**
 * The AdmissionResponse's audit annotations: one key per outcome, its value the containers or the
 * reason. With `reinvocationPolicy: IfNeeded` the API server calls us again for the same request
 * after another webhook changed the pod, and it refuses (with a warning) to overwrite a key with
 * another value: a pod we injected comes back `already-injected`, which must not rewrite the key
 * the first call set. So no two outcomes share a key.
 */
function auditAnnotations(outcome: Outcome, value: string): Record<string, string> {
  return { [outcome]: value };
}

export interface AdmissionResult {
  /** The complete AdmissionReview response, sent with HTTP 200. */
  review: object;
  outcome: Outcome;
  /** One greppable word: why a pod was skipped or denied. */
  reason?: string;
  uid: string;
  namespace?: string;
  /** metadata.name, or generateName for pods that get their name from the API server. */
  name?: string;
  warnings: string[];
}

export class BadReviewError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadReviewError';
  }
}

export interface ReviewOptions {
  config: Config;
  mode: ResolvedMode;
  newToken?: MutateOptions['newToken'];
  /** The enforce level of a namespace's Pod Security label, when known (namespace cache). */
  podSecurityLevel?: (namespace: string) => PodSecurityLevel | undefined;
}

interface Request {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  resource?: { group?: string; version?: string; resource?: string };
  subResource?: string;
  operation?: string;
  namespace?: string;
  name?: string;
  object?: unknown;
}

/**
 * Deeper than any Pod (managedFields included) ever nests. JSON.parse takes any depth, but cloning
 * and diffing the pod recurse: a 100k-deep body would overflow the stack (a 500, and V8 may abort
 * the process on a later regexp compile near the stack limit).
 */
const MAX_JSON_DEPTH = 100;

/** Nesting depth of parsed JSON, walked without recursion; stops once past `limit`. */
function jsonDepth(v: unknown, limit = MAX_JSON_DEPTH): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null) continue;
    if (d > max) max = d;
    if (max > limit) return max;
    for (const c of Array.isArray(x) ? x : Object.values(x)) if (typeof c === 'object' && c !== null) stack.push([c, d + 1]);
  }
  return max;
}

function readRequest(body: unknown): Request {
  if (!isObj(body)) throw new BadReviewError('body must be a JSON object: an AdmissionReview of apiVersion admission.k8s.io/v1');
  if (jsonDepth(body) > MAX_JSON_DEPTH) throw new BadReviewError(`the body nests deeper than ${MAX_JSON_DEPTH} levels; no AdmissionReview of a Pod comes near that`);
  if (body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview') {
    throw new BadReviewError(
      `expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got apiVersion ${JSON.stringify(body.apiVersion ?? null)} and kind ${JSON.stringify(body.kind ?? null)} (admissionReviewVersions must be [v1])`,
    );
  }
  const req = body.request;
  if (!isObj(req)) throw new BadReviewError('request is missing or not an object');
  if (typeof req.uid !== 'string' || req.uid === '') throw new BadReviewError('request.uid is missing or not a string');
  for (const f of ['kind', 'resource'] as const) {
    if (req[f] !== undefined && !isObj(req[f])) throw new BadReviewError(`request.${f} must be an object`);
  }
  return req as unknown as Request;
}

function response(uid: string, extra: Obj): object {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, ...extra } };
}

function isPodCreate(req: Request): 'pod' | 'not-a-pod' | 'not-create' {
  const r = req.resource;
  const isPod = r ? r.group === '' && r.resource === 'pods' && (r.version === 'v1' || r.version === undefined) : req.kind?.kind === 'Pod' && !req.kind.group;
  if (!isPod || req.subResource) return 'not-a-pod';
  return req.operation === 'CREATE' ? 'pod' : 'not-create';
}

export function reviewAdmission(body: unknown, opts: ReviewOptions): AdmissionResult {
  const req = readRequest(body);
  const uid = req.uid;
  const base = { uid, namespace: req.namespace || undefined };
  const skip = (reason: string, name?: string, warnings: string[] = []): AdmissionResult => ({
    ...base,
    name,
    outcome: 'skipped',
    reason,
    warnings,
    review: response(uid, { allowed: true, auditAnnotations: auditAnnotations('skipped', reason), ...(warnings.length ? { warnings } : {}) }),
  });

  const what = isPodCreate(req);
  if (what !== 'pod') return skip(what, req.name || undefined);
  if (!isObj(req.object)) throw new BadReviewError('request.object is missing or not an object for a CREATE of a pod');
  const pod = req.object as V1Pod;
  if (!isObj(pod.spec) || !Array.isArray(pod.spec.containers)) throw new BadReviewError('request.object is not a Pod: spec.containers is missing');
  const name = pod.metadata?.name || pod.metadata?.generateName || req.name || undefined;

  try {
    const namespace = req.namespace || pod.metadata?.namespace;
    const level = namespace ? opts.podSecurityLevel?.(namespace) : undefined;
    const result = mutatePod(pod, {
      config: opts.config,
      mode: opts.mode,
      newToken: opts.newToken,
      rekeyOfflineTokens: true,
      podSecurity: namespace && level ? { namespace, level } : undefined,
    });
    let outcome: 'injected' | 'rekeyed';
    let containers: string[];
    if (result.injected) {
      outcome = 'injected';
      containers = result.status.containers;
    } else if (result.reason === 'rekeyed') {
      outcome = 'rekeyed';
      containers = result.containers;
    } else {
      return skip(result.reason, name, result.warnings);
    }
    const patch = computePatch(pod, result.pod);
    const warnings = result.warnings;
    return {
      ...base,
      name,
      outcome,
      ...(outcome === 'rekeyed' ? { reason: 'offline-token' } : {}),
      warnings,
      review: response(uid, {
        allowed: true,
        patchType: 'JSONPatch',
        patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
        auditAnnotations: auditAnnotations(outcome, containers.join(',')),
        ...(warnings.length ? { warnings } : {}),
      }),
    };
  } catch (e) {
    if (!(e instanceof HookSpecError || e instanceof MutationError)) throw e;
    const reason = e instanceof HookSpecError ? 'invalid-hooks' : 'unsupported-pod';
    return {
      ...base,
      name,
      outcome: 'denied',
      reason,
      warnings: [],
      review: response(uid, {
        allowed: false,
        status: { status: 'Failure', code: 400, reason: 'BadRequest', message: e.message },
        auditAnnotations: auditAnnotations('denied', reason),
      }),
    };
  }
}
