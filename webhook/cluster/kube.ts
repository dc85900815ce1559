/**
 * Thin helpers around @kubernetes/client-node 1.4 (object-parameter API) shared by the in-cluster
 * parts of the webhook: loading a KubeConfig, making the API clients, per-call timeouts, patch
 * content types, and reading the status code out of the library's errors.
 */
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  VersionApi,
  type ConfigurationOptions,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';

export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  rbac: RbacAuthorizationV1Api;
  admission: AdmissionregistrationV1Api;
  version: VersionApi;
}

/**
 * The KubeConfig the webhook runs with: the pod's ServiceAccount when it runs in a cluster
 * (KUBERNETES_SERVICE_HOST is set by the kubelet), else the usual kubeconfig (`$KUBECONFIG`,
 * `~/.kube/config`) for running it on a workstation against a cluster.
 */
export function loadKubeConfig(env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const kc = new KubeConfig();
  // An explicit KUBECONFIG wins (running beside a cluster, tests); in a pod, the ServiceAccount.
  if (env.KUBERNETES_SERVICE_HOST && !env.KUBECONFIG) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

export function makeClients(kc: KubeConfig): KubeClients {
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    rbac: kc.makeApiClient(RbacAuthorizationV1Api),
    admission: kc.makeApiClient(AdmissionregistrationV1Api),
    version: kc.makeApiClient(VersionApi),
  };
}

/** Default bound of one API call: the generated client has none, and a hung call would hang startup. */
const DEFAULT_CALL_TIMEOUT_MS = 15_000;

/**
 * Per-call options: an abort timeout, and for patches the Content-Type that selects the patch
 * strategy (the generated client would otherwise send `application/json-patch+json` only by luck
 * of its defaults; being explicit keeps the request what we mean).
 */
export function callOptions(opts: { timeoutMs?: number; patch?: PatchStrategy } = {}): ConfigurationOptions {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const patch = opts.patch;
  return {
    middleware: [
      {
        pre: (request: RequestContext) => {
          request.setSignal(AbortSignal.timeout(timeoutMs));
          if (patch) request.setHeaderParam('Content-Type', patch);
          return promiseLike(request);
        },
        post: (response: ResponseContext) => promiseLike(response),
      },
    ],
    middlewareMergeStrategy: 'append',
  } as unknown as ConfigurationOptions;
}

export const JSON_PATCH = PatchStrategy.JsonPatch;

// The library's middleware returns its own small Observable (gen/rxjsStub.js, not exported): an
// object with `toPromise()`, which is all its pipeline calls. This is the same shape as its `of(x)`.
function promiseLike<T>(value: T): { toPromise(): Promise<T> } {
  const promise = Promise.resolve(value);
  return { toPromise: () => promise };
}

/** HTTP status of a failed API call (ApiException from the generated client, or a watch error), if any. */
export function statusCode(e: unknown): number | undefined {
  if (e instanceof ApiException) return e.code;
  if (typeof e === 'object' && e !== null) {
    const o = e as { code?: unknown; statusCode?: unknown };
    if (typeof o.statusCode === 'number') return o.statusCode;
    if (typeof o.code === 'number') return o.code;
  }
  return undefined;
}

/**
 * One line about a failed call for logs and error messages: the status code and the API server's
 * own message (a `Status` object's `reason`/`message`) when there is one, else the error message.
 */
export function describeError(e: unknown): string {
  if (e instanceof ApiException) {
    const body = parseBody(e.body);
    const reason = body?.reason ? `${body.reason}: ` : '';
    const msg = body?.message ?? (typeof e.body === 'string' && e.body.length < 300 ? e.body : e.message.split('\n')[0]);
    return `HTTP ${e.code}: ${reason}${msg}`;
  }
  if (e instanceof Error) {
    const code = statusCode(e);
    return code !== undefined ? `HTTP ${code}: ${e.message}` : `${e.name === 'Error' ? '' : `${e.name}: `}${e.message}`;
  }
  return String(e);
}

function parseBody(body: unknown): { reason?: string; message?: string } | undefined {
  let b = body;
  if (typeof b === 'string') {
    try {
      b = JSON.parse(b) as unknown;
    } catch {
      return undefined;
    }
  }
  if (typeof b !== 'object' || b === null) return undefined;
  const o = b as Record<string, unknown>;
  return {
    reason: typeof o.reason === 'string' ? o.reason : undefined,
    message: typeof o.message === 'string' ? o.message : undefined,
  };
}

/** Exponential backoff: `baseMs · 2^(attempt-1)` capped at `maxMs`, with up to 20 % jitter so replicas spread out. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(raw * (1 + 0.2 * random()));
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** Label on every object the webhook creates, so it only ever deletes or replaces its own. */
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'hook-runner';

export function isManagedByUs(labels: Record<string, string> | undefined): boolean {
  return labels?.[LABEL_MANAGED_BY] === MANAGED_BY_VALUE;
}
