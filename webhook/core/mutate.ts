/**
 * The mutation (DESIGN §4), as a pure function: (pod, options) → hooked pod + warnings, or a
 * skip with its one-word reason. It never edits its input; the JSONPatch is computed elsewhere
 * from the difference (patch.ts). Randomness (the per-pod token) comes in through `newToken`, so
 * the same input and token always give the same output.
 */
import { randomBytes } from 'node:crypto';
import type { V1Container, V1EnvVar, V1Lifecycle, V1LifecycleHandler, V1Pod, V1PodSpec, V1ResourceRequirements } from '@kubernetes/client-node';
import {
  ANNOTATION_ADOPT_NATIVE,
  ANNOTATION_HOOKS,
  ANNOTATION_SIDECAR_CPU_LIMIT,
  ANNOTATION_SIDECAR_CPU_REQUEST,
  ANNOTATION_SIDECAR_MEMORY_LIMIT,
  ANNOTATION_SIDECAR_MEMORY_REQUEST,
  ANNOTATION_STATUS,
  DEFAULT_GRACE_SECONDS,
  ENV_CALLERS,
  ENV_EVENT_OUTPUT,
  ENV_GRACE_SECONDS,
  ENV_HOST_IP,
  ENV_HOST_IPS,
  ENV_MARKER,
  ENV_NODE_NAME,
  ENV_POD_NAME,
  ENV_POD_NAMESPACE,
  ENV_POD_UID,
  ENV_PORT,
  ENV_SPEC,
  ENV_TOKEN,
  HEADER_TOKEN,
  LABEL_POD_INJECT,
  OFFLINE_TOKEN_PREFIX,
  PHASES,
  SIDECAR_CONTAINER_NAME,
  STATUS_VERSION,
  hookPath,
  type Phase,
} from '../../common/names.js';
import {
  HookSpecError,
  MAX_SECONDS,
  hasHooks,
  hooksOf,
  normaliseHandler,
  normaliseHooks,
  setHooks,
  specJson,
  type ContainerHooks,
  type HandlerSpec,
  type HookSpec,
  type ParseContext,
} from '../../common/spec.js';
import { checkPreStopBudget } from '../../common/budget.js';
import { deepFreeze, parseHooksText } from './hooks-text.js';
import { nativeToAnnotationItem } from './native.js';
import { handlerPolicy } from './policy.js';
import type { Config } from './config.js';
import { RESTRICTED_KINDS, capabilitiesFor, handlerKindsUsed, sidecarSecurityContext } from './security-context.js';

export type ResolvedMode = 'native' | 'container';

/** Why the webhook left a pod alone: one greppable word each. */
export type SkipReason = 'opted-out' | 'already-injected' | 'no-hooks';

export interface MutateOptions {
  config: Config;
  mode: ResolvedMode;
  /** Per-pod token; random 128 bits by default. Tests pass a fixed one; `inject` a deterministic one. */
  newToken?: () => string;
  /**
   * Give a pod that arrives already injected with an offline token ({@link OFFLINE_TOKEN_PREFIX},
   * written by `inject`) a fresh random token. The webhook sets it; `inject` never does, so that
   * injecting its own output changes nothing.
   */
  rekeyOfflineTokens?: boolean;
  /** The namespace's `pod-security.kubernetes.io/enforce` level, when the webhook knows it. */
  podSecurity?: { namespace: string; level: PodSecurityLevel };
}

export type PodSecurityLevel = 'privileged' | 'baseline' | 'restricted';

export type MutateResult =
  | { injected: false; reason: SkipReason; pod: V1Pod; warnings: string[] }
  | { injected: true; pod: V1Pod; warnings: string[]; status: InjectionStatus; rekeyed?: false }
  /** An offline-injected pod whose token was replaced; `containers` as its status annotation says. */
  | { injected: false; reason: 'rekeyed'; rekeyed: true; pod: V1Pod; warnings: string[]; containers: string[] };

/** What `hook-runner.dev/status` records. */
export interface InjectionStatus {
  version: number;
  mode: ResolvedMode;
  port: number;
  containers: string[];
  /**
   * What `uninject` needs to restore the pod exactly: each hooked container's `lifecycle` before the
   * rewrite (null: it had none), the containers whose marker env was added (`create`: with the env
   * list itself), and the fields hook-runner created (`spec.shareProcessNamespace`,
   * `spec.initContainers`, `metadata.annotations`, `metadata`). Absent in records of older versions.
   */
  lifecycle?: Record<string, V1Lifecycle | null>;
  env?: Record<string, 'append' | 'create'>;
  created?: string[];
}

/** A pod the webhook refuses; `location` is where in the pod the problem is. */
export class MutationError extends Error {
  constructor(
    readonly location: string,
    readonly detail: string,
  ) {
    super(`${location}: ${detail}`);
    this.name = 'MutationError';
  }
}

function randomToken(): string {
  return randomBytes(16).toString('hex');
}

const clone = <T>(v: T): T => structuredClone(v);

/**
 * Normalised annotations, by everything normalisation reads: the text, the containers' names and
 * named ports, and the configured defaults, handler kinds and hosts. The replicas of a workload
 * share all of it. Values are deep-frozen (callers copy before changing); only successes are kept.
 */
const normalisedCache = new Map<string, HookSpec>();
const NORMALISED_CACHE_MAX_ENTRIES = 256;
/** Bounds the keys' total size (each holds the annotation text, itself at most 256 KiB). */
const NORMALISED_CACHE_MAX_CHARS = 1024 * 1024;
let normalisedCacheChars = 0;

function normaliseCached(text: string, ctx: ParseContext, config: Config): HookSpec {
  const key = JSON.stringify([
    text,
    ctx.containers?.map((c) => [c.name, c.ports?.map((p) => [p.name ?? null, p.containerPort]) ?? null]),
    config.defaults,
    config.allowedHandlers,
    config.allowedHosts ?? null,
  ]);
  const hit = normalisedCache.get(key);
  if (hit) {
    normalisedCache.delete(key);
    normalisedCache.set(key, hit);
    return hit;
  }
  const spec = deepFreeze(normaliseHooks(parseHooksText(text), ctx));
  normalisedCache.set(key, spec);
  normalisedCacheChars += key.length;
  while (normalisedCache.size > NORMALISED_CACHE_MAX_ENTRIES || normalisedCacheChars > NORMALISED_CACHE_MAX_CHARS) {
    const oldest = normalisedCache.keys().next().value as string;
    normalisedCache.delete(oldest);
    normalisedCacheChars -= oldest.length;
  }
  return spec;
}

/**
 * Whether the pod's native lifecycle blocks are adopted: always when it has the hooks annotation
 * (DESIGN §3); otherwise only when it asks (`hook-runner.dev/adopt-native: "true"`) or the config
 * adopts by default and the pod does not refuse (`"false"`). Labelling a namespace must not change
 * pods that asked for nothing (DESIGN §4).
 */
function adoptsNativeHooks(pod: V1Pod, config: Config): boolean {
  const annotations = pod.metadata?.annotations ?? {};
  const v = annotations[ANNOTATION_ADOPT_NATIVE];
  if (v !== undefined && v !== 'true' && v !== 'false') {
    throw new MutationError(`metadata.annotations[${ANNOTATION_ADOPT_NATIVE}]`, `must be "true" or "false", got ${JSON.stringify(v)}`);
  }
  if (annotations[ANNOTATION_HOOKS] !== undefined) return true;
  return v === undefined ? config.adoptNativeHooks : v === 'true';
}

export interface CollectedHooks {
  spec: HookSpec;
  warnings: string[];
  /** Adopted native handlers other than sleeps: no timeout of their own, so the budget cannot count them. */
  unbounded: ReadonlySet<HandlerSpec>;
}

/**
 * Linux refuses to exec a program with any single argument or environment string (`NAME=value` and
 * its NUL) over MAX_ARG_STRLEN, 32 pages = 128 KiB (E2BIG): the sidecar would never start.
 */
export const MAX_ENV_STRING_BYTES = 32 * 4096;
/** The fewest bytes one handler takes in HOOK_RUNNER_SPEC (a normalised sleep of 0 s, and a comma). */
const MIN_HANDLER_SPEC_BYTES = JSON.stringify({ sleep: { seconds: 0 }, timeoutSeconds: 1, retries: 0, retryDelaySeconds: 0, continueOnError: false }).length + 1;
/**
 * More handlers than this can never fit in one environment string. Checked while adopting, before
 * the work grows with the pod: 3 MiB of containers with native blocks would be 40k handlers.
 */
const MAX_HANDLERS = Math.floor(MAX_ENV_STRING_BYTES / MIN_HANDLER_SPEC_BYTES);

/** Where the hooks of a pod come from, for messages about all of them: the annotation, or only adopted native blocks. */
function hooksSource(pod: V1Pod): string {
  return pod.metadata?.annotations?.[ANNOTATION_HOOKS] !== undefined ? ANNOTATION_HOOKS : 'spec.containers[*].lifecycle';
}

function tooManyHandlers(count: number, source: string): HookSpecError {
  return new HookSpecError(
    '',
    `declares more than ${count - 1} handlers (adopted native lifecycle blocks included); each takes at least ${MIN_HANDLER_SPEC_BYTES} bytes of ${ENV_SPEC} and Linux refuses an environment string over ${MAX_ENV_STRING_BYTES} bytes (E2BIG), ` +
      `so the sidecar could never start: at most ${MAX_HANDLERS} handlers can fit`,
    source,
  );
}

/** The hooks of the pod: annotation and adopted native lifecycle handlers, normalised. */
export function collectHooks(pod: V1Pod, config: Config): CollectedHooks {
  const containers = pod.spec?.containers ?? [];
  const ctx: ParseContext = { containers, defaults: config.defaults, policy: handlerPolicy(config.allowedHandlers, config.allowedHosts) };
  const text = pod.metadata?.annotations?.[ANNOTATION_HOOKS];
  // A copy of the top level: containers' hooks are replaced below, never changed in place.
  const spec: HookSpec = text === undefined ? {} : { ...normaliseCached(text, ctx, config) };
  const warnings: string[] = sleepCutWarnings(spec);
  const unbounded = new Set<HandlerSpec>();
  if (!adoptsNativeHooks(pod, config)) return { spec: {}, warnings: [], unbounded };

  let count = Object.values(spec).reduce((n, h) => n + h.postStart.length + h.preStop.length, 0);
  for (const c of containers) {
    for (const phase of PHASES) {
      const native = c.lifecycle?.[phase];
      if (!native) continue;
      if (++count > MAX_HANDLERS) throw tooManyHandlers(count, hooksSource(pod));
      const declared = hooksOf(spec, c.name)?.[phase] ?? [];
      const adopted = adoptNative(c.name, phase, native, ctx);
      if (adopted.kind !== 'sleep') unbounded.add(adopted);
      const hooks: ContainerHooks = { ...(hooksOf(spec, c.name) ?? { shutdownSeconds: config.defaults.shutdownSeconds, postStart: [], preStop: [] }) };
      hooks[phase] = [adopted, ...declared];
      setHooks(spec, c.name, hooks);
      if (declared.length > 0) {
        warnings.push(
          `container ${c.name}: ${phase} is declared both natively (lifecycle.${phase}) and in ${ANNOTATION_HOOKS}; ` +
            `the native handler runs first, then the annotation's ${declared.length} handler${declared.length === 1 ? '' : 's'}`,
        );
      }
    }
  }
  for (const name of Object.keys(spec)) if (!hasHooks(spec[name]!)) delete spec[name];
  return { spec, warnings, unbounded };
}

/** A sleep whose explicit timeoutSeconds does not outlast it is cut short: say so (an unset timeout never cuts a sleep). */
function sleepCutWarnings(spec: HookSpec): string[] {
  const out: string[] = [];
  for (const [name, hooks] of Object.entries(spec)) {
    for (const phase of PHASES) {
      hooks[phase].forEach((h, i) => {
        if (h.kind !== 'sleep') return;
        const seconds = h.action.seconds;
        if (seconds > 0 && h.timeoutSeconds <= seconds) {
          out.push(
            `container ${name}: ${ANNOTATION_HOOKS} ${name}.${phase}[${i}] sleeps ${seconds}s but sets timeoutSeconds ${h.timeoutSeconds}: ` +
              `the sleep will be cut at ${h.timeoutSeconds}s and count as a timeout (remove timeoutSeconds to let it sleep its full length)`,
          );
        }
      });
    }
  }
  return out;
}

/**
 * A native handler in hook-runner's form, with native semantics: no timeout of its own (the schema's
 * 24 h maximum; PreStop is bounded by the grace budget at run time, as the kubelet bounds it by the
 * grace period) and a sleep always runs its full length. Never the configured default timeout.
 */
function adoptNative(container: string, phase: Phase, native: V1LifecycleHandler, ctx: ParseContext): HandlerSpec {
  const source = `spec.containers[${container}].lifecycle`;
  const item = nativeToAnnotationItem(native);
  if (!item) throw new HookSpecError(phase, 'has no exec, httpGet, sleep or tcpSocket handler that hook-runner can adopt', source);
  const h = normaliseHandler(phase, { ...item, timeoutSeconds: MAX_SECONDS }, container, { ...ctx, source });
  if (h.kind === 'sleep') h.timeoutSeconds = Math.min(MAX_SECONDS, Math.ceil(h.action.seconds) + 1);
  return h;
}

function usedPorts(spec: V1PodSpec): Set<number> {
  const ports = new Set<number>();
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) for (const p of c.ports ?? []) ports.add(p.containerPort);
  return ports;
}

/** Where the sidecar port search wraps to: the unprivileged ports. */
const FIRST_UNPRIVILEGED_PORT = 1024;

/**
 * The configured port, or the next free one when a container of the pod already declares it
 * (upwards, then from 1024); undefined when the pod declares every one of them. Bounded: each
 * candidate is tried once.
 */
export function pickSidecarPort(spec: V1PodSpec, preferred: number): number | undefined {
  const used = usedPorts(spec);
  for (let port = preferred; port <= 65535; port++) if (!used.has(port)) return port;
  for (let port = FIRST_UNPRIVILEGED_PORT; port < preferred; port++) if (!used.has(port)) return port;
  return undefined;
}

function graceSeconds(spec: V1PodSpec): number {
  return spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
}

function budgetWarnings(spec: HookSpec, grace: number, unbounded: ReadonlySet<HandlerSpec>): string[] {
  const out: string[] = [];
  for (const [name, all] of Object.entries(spec)) {
    // Adopted native handlers have no worst case of their own: the run-time budget bounds them.
    const hooks = { ...all, preStop: all.preStop.filter((h) => !unbounded.has(h)) };
    if (all.preStop.length === 0) continue;
    if (grace === 0) {
      out.push(
        `container ${name}: terminationGracePeriodSeconds is 0, so the kubelet never calls PreStop; its ${all.preStop.length} preStop handler${all.preStop.length === 1 ? '' : 's'} will not run`,
      );
      continue;
    }
    const b = checkPreStopBudget(hooks, grace);
    if (b.availableSeconds <= 0) {
      out.push(`container ${name}: shutdownSeconds ${hooks.shutdownSeconds} leaves no time for preStop in terminationGracePeriodSeconds ${grace}; preStop will be cut off at once`);
    } else if (!b.fits) {
      out.push(
        `container ${name}: preStop may take up to ${b.worstCaseSeconds}s, but terminationGracePeriodSeconds ${grace} - shutdownSeconds ${hooks.shutdownSeconds} leaves ${b.availableSeconds}s; ` +
          `hook-runner cuts preStop off at ${b.availableSeconds}s so the app keeps its ${hooks.shutdownSeconds}s (raise terminationGracePeriodSeconds to at least ${b.worstCaseSeconds + hooks.shutdownSeconds} to let every handler finish)`,
      );
    }
  }
  return out;
}

/** Per-pod sidecar resources (12.9): annotation, the part of `resources` it sets, the resource. */
const RESOURCE_ANNOTATIONS = [
  [ANNOTATION_SIDECAR_CPU_REQUEST, 'requests', 'cpu'],
  [ANNOTATION_SIDECAR_MEMORY_REQUEST, 'requests', 'memory'],
  [ANNOTATION_SIDECAR_CPU_LIMIT, 'limits', 'cpu'],
  [ANNOTATION_SIDECAR_MEMORY_LIMIT, 'limits', 'memory'],
] as const;

const QUANTITY_SUFFIX: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A Kubernetes quantity (`250m`, `1.5`, `256Mi`, `1e3`) as a number, or undefined when it is not one. */
export function parseQuantity(text: string): number | undefined {
  const m = /^\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)|[eE]([+-]?[0-9]{1,2}))?$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[3] !== undefined ? n * 10 ** Number(m[3]) : n * QUANTITY_SUFFIX[m[2] ?? '']!;
}

/**
 * The sidecar's resources: the configured ones, with the pod's `hook-runner.dev/sidecar-*`
 * annotations over them. exec hooks run (and are charged) in the sidecar's cgroup, so a pod whose
 * hooks need more than the default asks for it here (like Istio's `sidecar.istio.io/proxyMemoryLimit`).
 * Values are validated, and a request above its limit is refused here rather than by the API server.
 */
function sidecarResources(pod: V1Pod, config: Config): V1ResourceRequirements {
  const annotations = pod.metadata?.annotations ?? {};
  const res: V1ResourceRequirements = clone(config.sidecar.resources);
  const source: Record<string, string> = {};
  for (const [key, part, resource] of RESOURCE_ANNOTATIONS) {
    const v = annotations[key];
    if (v === undefined) continue;
    const q = parseQuantity(v);
    if (v.length > 32 || q === undefined || q <= 0) {
      throw new MutationError(`metadata.annotations[${key}]`, `must be a positive Kubernetes quantity such as ${resource === 'cpu' ? '250m or 1' : '256Mi or 1Gi'}, got ${JSON.stringify(v)}`);
    }
    res[part] = { ...(res[part] ?? {}), [resource]: v };
    source[`${part}.${resource}`] = key;
  }
  for (const resource of ['cpu', 'memory'] as const) {
    const request = res.requests?.[resource];
    const limit = res.limits?.[resource];
    if (request === undefined || limit === undefined) continue;
    const r = parseQuantity(String(request));
    const l = parseQuantity(String(limit));
    // Both from the configuration: the admin's to fix, not this pod's (the API server names it).
    const where = source[`limits.${resource}`] ?? source[`requests.${resource}`];
    if (r === undefined || l === undefined || r <= l || where === undefined) continue;
    const from = (part: string) => source[`${part}.${resource}`] ?? 'the hook-runner configuration (sidecar.resources)';
    throw new MutationError(
      `metadata.annotations[${where}]`,
      `the sidecar's ${resource} request ${request} (from ${from('requests')}) is above its limit ${limit} (from ${from('limits')}); Kubernetes refuses a request above its limit, set both`,
    );
  }
  return res;
}

function env(name: string, value: string): V1EnvVar {
  return { name, value };
}

function fieldEnv(name: string, fieldPath: string): V1EnvVar {
  return { name, valueFrom: { fieldRef: { fieldPath } } };
}

function sidecarContainer(spec: HookSpec, podSpec: V1PodSpec, opts: MutateOptions, port: number, token: string, resources: V1ResourceRequirements): V1Container {
  const { config, mode } = opts;
  const c: V1Container = {
    name: SIDECAR_CONTAINER_NAME,
    image: config.sidecar.image,
    imagePullPolicy: config.sidecar.imagePullPolicy,
    args: ['sidecar'],
    ports: [{ containerPort: port, protocol: 'TCP' }],
    env: [
      env(ENV_SPEC, specJson(spec)),
      env(ENV_TOKEN, token),
      env(ENV_PORT, String(port)),
      env(ENV_GRACE_SECONDS, String(graceSeconds(podSpec))),
      env(ENV_EVENT_OUTPUT, String(config.eventOutput)),
      env(ENV_CALLERS, Array.isArray(config.hookCallers) ? config.hookCallers.join(',') : config.hookCallers),
      fieldEnv(ENV_POD_NAME, 'metadata.name'),
      fieldEnv(ENV_POD_NAMESPACE, 'metadata.namespace'),
      fieldEnv(ENV_POD_UID, 'metadata.uid'),
      fieldEnv(ENV_NODE_NAME, 'spec.nodeName'),
      fieldEnv(ENV_HOST_IP, 'status.hostIP'),
      // status.hostIPs is refused by API servers before 1.28; native sidecars mean 1.29+.
      ...(mode === 'native' ? [fieldEnv(ENV_HOST_IPS, 'status.hostIPs')] : []),
    ],
    resources,
    securityContext: sidecarSecurityContext(handlerKindsUsed(spec)),
    // No readinessProbe: a sidecar's readiness gates the pod's Ready condition, and a 5 s probe period
    // delayed every new pod by up to 5 s (issue 13.0). Readiness adds nothing here: the PostStart
    // wait-ready below already holds the app until the sidecar listens.
  };
  if (mode === 'native') c.restartPolicy = 'Always';
  // The kubelet does not wait for a listening port, and a refused PostStart call kills the app. A
  // PostStart blocks the kubelet until it returns: the next container (native mode: the next init
  // container, then the app; container mode: the app, as containers start in order) starts only
  // once the sidecar answers /readyz (Istio's holdApplicationUntilProxyStarts). Preferred to a
  // startupProbe in native mode too: a probe passes only on the kubelet's next 1 s tick, which
  // added up to a second to every pod of a rollout (docs/sidecar.md, issue 13.0).
  c.lifecycle = { postStart: { exec: { command: ['hook-runner', 'wait-ready', '--port', String(port)] } } };
  return c;
}

function rewriteContainer(c: V1Container, hooks: ContainerHooks, port: number, token: string): void {
  const lifecycle: V1Lifecycle = { ...(c.lifecycle ?? {}) };
  for (const phase of PHASES) {
    if (hooks[phase].length === 0) continue;
    lifecycle[phase] = {
      httpGet: { path: hookPath(c.name, phase), port, scheme: 'HTTP', httpHeaders: [{ name: HEADER_TOKEN, value: token }] },
    };
  }
  c.lifecycle = lifecycle;
  const marker = c.env?.find((e) => e.name === ENV_MARKER);
  if (marker) {
    if (marker.value !== c.name) {
      throw new MutationError(
        `spec.containers[${c.name}].env[${ENV_MARKER}]`,
        `is set to ${JSON.stringify(marker.value ?? '')}; hook-runner sets it to the container's name to find its processes, remove it`,
      );
    }
  } else {
    c.env = [...(c.env ?? []), env(ENV_MARKER, c.name)];
  }
}

/**
 * Our share of ARG_MAX (all of argv and envp together): a quarter of the stack limit, 2 MiB under the
 * usual 8 MiB. Half of it is left to the image's ENV and the kubelet's service-link variables.
 */
const MAX_SIDECAR_EXEC_BYTES = 1024 * 1024;

/** Refuses a sidecar that could not start because its environment is too big (DESIGN §4). */
function checkSidecarFitsExec(sidecar: V1Container, spec: HookSpec, source: string): void {
  const strings = [...(sidecar.command ?? []), ...(sidecar.args ?? []), ...(sidecar.env ?? []).filter((e) => e.value !== undefined).map((e) => `${e.name}=${e.value}`)];
  let total = 0;
  for (const str of strings) {
    const bytes = Buffer.byteLength(str, 'utf8') + 1;
    total += bytes;
    if (bytes <= MAX_ENV_STRING_BYTES) continue;
    const name = str.slice(0, str.indexOf('='));
    if (name === ENV_SPEC) {
      const handlers = Object.values(spec).reduce((n, h) => n + h.postStart.length + h.preStop.length, 0);
      throw new HookSpecError(
        '',
        `expands to ${bytes} bytes of ${ENV_SPEC} for the sidecar (${handlers} handlers, every default filled in); Linux refuses an environment string over ${MAX_ENV_STRING_BYTES} bytes (E2BIG), ` +
          `so the sidecar could never start: declare fewer handlers (about ${Math.floor((handlers * MAX_ENV_STRING_BYTES) / bytes)} of these fit)`,
        source,
      );
    }
    throw new MutationError(
      `spec.containers[${SIDECAR_CONTAINER_NAME}].env[${name}]`,
      `is ${bytes} bytes; Linux refuses an environment string over ${MAX_ENV_STRING_BYTES} bytes (E2BIG), so the sidecar could never start`,
    );
  }
  if (total > MAX_SIDECAR_EXEC_BYTES) {
    throw new MutationError(
      `spec.containers[${SIDECAR_CONTAINER_NAME}].env`,
      `the sidecar's arguments and environment take ${total} bytes, more than the ${MAX_SIDECAR_EXEC_BYTES} hook-runner allows itself of Linux's ARG_MAX; the sidecar might not start`,
    );
  }
}

/**
 * Only a hooked container may carry the marker env: the sidecar finds a container's processes by it,
 * and refuses to act when two containers claim one name. A container that declares another's marker
 * in its spec could deny that container its exec/signal hooks, so it is refused here, at admission.
 */
function checkMarkerOwners(spec: V1PodSpec, hooks: HookSpec): void {
  for (const [list, field] of [
    [spec.initContainers ?? [], 'initContainers'],
    [spec.containers, 'containers'],
  ] as const) {
    for (const c of list) {
      if (field === 'containers' && hooksOf(hooks, c.name)) continue;
      const marker = c.env?.find((e) => e.name === ENV_MARKER);
      if (!marker) continue;
      throw new MutationError(
        `spec.${field}[${c.name}].env[${ENV_MARKER}]`,
        `is set to ${JSON.stringify(marker.value ?? '')} in a container without hooks; hook-runner finds a hooked container's processes by this variable, and only the hooked container itself may carry it: remove it`,
      );
    }
  }
}

function checkPodCanBeHooked(pod: V1Pod): void {
  const spec = pod.spec!;
  if (spec.hostNetwork) {
    throw new MutationError(
      'spec.hostNetwork',
      "is true; the hook-runner sidecar would listen on a port of the node itself (two such pods on a node collide) and the pod's 127.0.0.1 would be the node's, where hooks must reach only the pod; remove hostNetwork or the hooks",
    );
  }
  if (spec.hostPID) {
    throw new MutationError(
      'spec.hostPID',
      "is true; hook-runner needs the pod's own shared PID namespace (shareProcessNamespace) to find and act on its containers, and will not run hooks across the node's processes; remove hostPID or the hooks",
    );
  }
  if (spec.shareProcessNamespace === false) {
    throw new MutationError(
      'spec.shareProcessNamespace',
      "is set to false explicitly; the hook-runner sidecar must see the containers' processes to run exec and signal handlers and to know when a container has stopped; remove the field or the hooks",
    );
  }
  const clash = [...(spec.initContainers ?? []), ...spec.containers].find((c) => c.name === SIDECAR_CONTAINER_NAME);
  if (clash) throw new MutationError(`spec.containers[${SIDECAR_CONTAINER_NAME}]`, `the container name ${SIDECAR_CONTAINER_NAME} is reserved for the injected sidecar; rename the container`);
}

/**
 * exec/signal need SYS_PTRACE and DAC_READ_SEARCH, outside Pod Security baseline. Deny here, naming
 * the hook, rather than let PodSecurity reject a pod for a container the app team never wrote.
 */
function checkPodSecurity(spec: HookSpec, ps: { namespace: string; level: PodSecurityLevel }): void {
  if (ps.level === 'privileged') return;
  for (const [name, hooks] of Object.entries(spec)) {
    for (const phase of PHASES) {
      hooks[phase].forEach((h, i) => {
        const kind = h.kind;
        if (kind !== 'exec' && kind !== 'signal') return;
        const caps = capabilitiesFor(new Set([kind]));
        throw new HookSpecError(
          `${name}.${phase}[${i}].${kind}`,
          `needs the hook-runner sidecar to run as uid 0 with capabilities ${caps.join(', ')}, which namespace ${ps.namespace} forbids ` +
            `(pod-security.kubernetes.io/enforce: ${ps.level}); handler kinds that work there: ${RESTRICTED_KINDS.join(', ')}`,
        );
      });
    }
  }
}

function modeWarnings(pod: V1Pod, mode: ResolvedMode): string[] {
  const restart = pod.spec?.restartPolicy ?? 'Always';
  if (mode === 'container' && restart !== 'Always') {
    return [
      `restartPolicy is ${restart} and the hook-runner sidecar runs as a regular container (sidecar mode container): the pod completes only when the sidecar exits too; use a cluster with native sidecars (Kubernetes 1.29+) for Jobs`,
    ];
  }
  return [];
}

function securityWarnings(pod: V1Pod, sidecar: V1Container): string[] {
  const caps = sidecar.securityContext?.capabilities?.add ?? [];
  if (pod.spec?.securityContext?.runAsNonRoot && caps.length > 0) {
    return [
      `the pod sets securityContext.runAsNonRoot, but its exec/signal hooks need the hook-runner sidecar to run as uid 0 with capabilities ${caps.join(', ')} (and nothing else); the sidecar's own securityContext says so`,
    ];
  }
  return [];
}

/** The sidecar of an injected pod, wherever the mode put it. */
function findSidecar(spec: V1PodSpec): V1Container | undefined {
  return [...(spec.initContainers ?? []), ...(spec.containers ?? [])].find((c) => c.name === SIDECAR_CONTAINER_NAME);
}

/** The containers the status annotation records (its other fields are not ours to read here). */
function statusContainers(text: string): string[] {
  try {
    const v: unknown = JSON.parse(text);
    const list = (v as { containers?: unknown } | null)?.containers;
    return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

/**
 * An already-injected pod with an offline token (`inject` output) gets a fresh random one: in the
 * sidecar's env and in every rewritten hook header that carries the old one. Undefined when the pod
 * carries no offline token (a reinvocation of our own injection, or a token set by hand).
 */
function rekey(original: V1Pod, newToken: () => string): V1Pod | undefined {
  const spec = original.spec;
  const sidecar = spec && findSidecar(spec);
  const old = sidecar?.env?.find((e) => e.name === ENV_TOKEN)?.value;
  if (!spec || !old?.startsWith(OFFLINE_TOKEN_PREFIX)) return undefined;
  const token = newToken();
  const swapHeaders = (c: V1Container): V1Container => {
    if (!c.lifecycle) return c;
    let changed = false;
    const lifecycle: V1Lifecycle = { ...c.lifecycle };
    for (const phase of PHASES) {
      const get = lifecycle[phase]?.httpGet;
      if (!get?.httpHeaders?.some((h) => h.name === HEADER_TOKEN && h.value === old)) continue;
      changed = true;
      lifecycle[phase] = { ...lifecycle[phase], httpGet: { ...get, httpHeaders: get.httpHeaders.map((h) => (h.name === HEADER_TOKEN && h.value === old ? { ...h, value: token } : h)) } };
    }
    return changed ? { ...c, lifecycle } : c;
  };
  const swap = (c: V1Container): V1Container => (c === sidecar ? { ...c, env: c.env!.map((e) => (e.name === ENV_TOKEN ? { ...e, value: token } : e)) } : swapHeaders(c));
  return {
    ...original,
    spec: { ...spec, containers: spec.containers.map(swap), ...(spec.initContainers ? { initContainers: spec.initContainers.map(swap) } : {}) },
  };
}

/** The status fields `uninject` reads (see {@link InjectionStatus}), taken from the pod before the mutation. */
function undoRecord(original: V1Pod, hooks: HookSpec, mode: ResolvedMode): Required<Pick<InjectionStatus, 'lifecycle'>> & Pick<InjectionStatus, 'env' | 'created'> {
  const lifecycle: Record<string, V1Lifecycle | null> = {};
  const env: Record<string, 'append' | 'create'> = {};
  for (const c of original.spec!.containers) {
    if (!hooksOf(hooks, c.name)) continue;
    lifecycle[c.name] = c.lifecycle ?? null;
    if (!c.env?.some((e) => e.name === ENV_MARKER)) env[c.name] = c.env ? 'append' : 'create';
  }
  const created: string[] = [];
  if (original.spec!.shareProcessNamespace === undefined) created.push('spec.shareProcessNamespace');
  if (mode === 'native' && original.spec!.initContainers === undefined) created.push('spec.initContainers');
  if (original.metadata?.annotations === undefined) created.push('metadata.annotations');
  if (original.metadata === undefined) created.push('metadata');
  return { lifecycle, ...(Object.keys(env).length > 0 ? { env } : {}), ...(created.length > 0 ? { created } : {}) };
}

/** The mutation. Throws {@link HookSpecError} or {@link MutationError} for a pod that must be denied. */
export function mutatePod(original: V1Pod, opts: MutateOptions): MutateResult {
  const labels = original.metadata?.labels ?? {};
  const annotations = original.metadata?.annotations ?? {};
  if (labels[LABEL_POD_INJECT] === 'false') return { injected: false, reason: 'opted-out', pod: original, warnings: [] };
  const status = annotations[ANNOTATION_STATUS];
  if (status !== undefined) {
    const rekeyed = opts.rekeyOfflineTokens ? rekey(original, opts.newToken ?? randomToken) : undefined;
    if (rekeyed) return { injected: false, reason: 'rekeyed', rekeyed: true, pod: rekeyed, warnings: [], containers: statusContainers(status) };
    return { injected: false, reason: 'already-injected', pod: original, warnings: [] };
  }
  if (!original.spec || !Array.isArray(original.spec.containers)) throw new MutationError('spec.containers', 'is missing; a Pod needs at least one container');

  const { spec: hooks, warnings, unbounded } = collectHooks(original, opts.config);
  if (Object.keys(hooks).length === 0) return { injected: false, reason: 'no-hooks', pod: original, warnings };
  checkPodCanBeHooked(original);
  checkMarkerOwners(original.spec, hooks);
  if (opts.podSecurity) checkPodSecurity(hooks, opts.podSecurity);
  const port = pickSidecarPort(original.spec, opts.config.sidecar.port);
  if (port === undefined) {
    throw new MutationError(
      'spec.containers[*].ports',
      `the pod's containers declare every port from ${FIRST_UNPRIVILEGED_PORT} to 65535 (and the configured ${opts.config.sidecar.port}); the hook-runner sidecar needs one free port to listen on`,
    );
  }

  // Copy on write: new objects only along the paths the mutation changes (pod, metadata, spec, the
  // containers list, each hooked container); the rest is shared with the input, which stays
  // untouched. Cheaper than a deep clone, and the JSONPatch diff skips the shared subtrees.
  const pod: V1Pod = {
    ...original,
    metadata: { ...original.metadata },
    spec: { ...original.spec, containers: original.spec.containers.map((c) => (hooksOf(hooks, c.name) ? { ...c } : c)) },
  };
  const spec = pod.spec!;
  const token = (opts.newToken ?? randomToken)();
  const sidecar = sidecarContainer(hooks, spec, opts, port, token, sidecarResources(original, opts.config));
  checkSidecarFitsExec(sidecar, hooks, hooksSource(original));

  for (const c of spec.containers) {
    const h = hooksOf(hooks, c.name);
    if (h) rewriteContainer(c, h, port, token);
  }
  if (opts.mode === 'native') spec.initContainers = [sidecar, ...(spec.initContainers ?? [])];
  else spec.containers = [sidecar, ...spec.containers];
  spec.shareProcessNamespace = true;

  const record: InjectionStatus = { version: STATUS_VERSION, mode: opts.mode, port, containers: Object.keys(hooks), ...undoRecord(original, hooks, opts.mode) };
  pod.metadata = { ...(pod.metadata ?? {}), annotations: { ...annotations, [ANNOTATION_STATUS]: JSON.stringify(record) } };

  warnings.push(...budgetWarnings(hooks, graceSeconds(spec), unbounded), ...modeWarnings(pod, opts.mode), ...securityWarnings(pod, sidecar));
  return { injected: true, pod, warnings, status: record };
}
