/**
 * The mutation (DESIGN §4), as a pure function: (pod, options) → hooked pod + warnings, or a
 * skip with its one-word reason. It never edits its input; the JSONPatch is computed elsewhere
 * from the difference (patch.ts). Randomness (the per-pod token) comes in through `newToken`, so
 * the same input and token always give the same output.
 */
import { randomBytes } from 'node:crypto';
import type { V1Container, V1EnvVar, V1Lifecycle, V1LifecycleHandler, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import {
  ANNOTATION_HOOKS,
  ANNOTATION_STATUS,
  DEFAULT_GRACE_SECONDS,
  ENV_EVENT_OUTPUT,
  ENV_GRACE_SECONDS,
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
  PHASES,
  SIDECAR_CONTAINER_NAME,
  STATUS_VERSION,
  hookPath,
  type Phase,
} from '../common/names.js';
import {
  HookSpecError,
  handlerKind,
  hasHooks,
  hooksOf,
  nativeToAnnotationItem,
  normaliseHandler,
  normaliseHooks,
  setHooks,
  type ContainerHooks,
  type HandlerSpec,
  type HookSpec,
  type ParseContext,
} from '../common/spec.js';
import { checkPreStopBudget } from '../common/budget.js';
import { deepFreeze, parseHooksText } from './hooks-text.js';
import type { Config } from './config.js';
import { RESTRICTED_KINDS, capabilitiesFor, handlerKindsUsed, sidecarSecurityContext } from './security-context.js';

export type ResolvedMode = 'native' | 'container';

/** Why the webhook left a pod alone: one greppable word each. */
export type SkipReason = 'opted-out' | 'already-injected' | 'no-hooks';

export interface MutateOptions {
  config: Config;
  mode: ResolvedMode;
  /** Per-pod token; random 128 bits by default. Tests pass a fixed one. */
  newToken?: () => string;
  /** The namespace's `pod-security.kubernetes.io/enforce` level, when the webhook knows it. */
  podSecurity?: { namespace: string; level: PodSecurityLevel };
}

export type PodSecurityLevel = 'privileged' | 'baseline' | 'restricted';

export type MutateResult =
  | { injected: false; reason: SkipReason; pod: V1Pod; warnings: string[] }
  | { injected: true; pod: V1Pod; warnings: string[]; status: InjectionStatus };

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

export function randomToken(): string {
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

/** The hooks of the pod: annotation and adopted native lifecycle handlers, normalised. */
export function collectHooks(pod: V1Pod, config: Config): { spec: HookSpec; warnings: string[] } {
  const containers = pod.spec?.containers ?? [];
  const ctx: ParseContext = { containers, defaults: config.defaults, allowedHandlers: config.allowedHandlers, allowedHosts: config.allowedHosts };
  const text = pod.metadata?.annotations?.[ANNOTATION_HOOKS];
  // A copy of the top level: containers' hooks are replaced below, never changed in place.
  const spec: HookSpec = text === undefined ? {} : { ...normaliseCached(text, ctx, config) };
  const warnings: string[] = [];

  for (const c of containers) {
    for (const phase of PHASES) {
      const native = c.lifecycle?.[phase];
      if (!native) continue;
      const declared = hooksOf(spec, c.name)?.[phase] ?? [];
      if (!config.adoptNativeHooks) {
        if (declared.length > 0) {
          throw new HookSpecError(
            `${c.name}.${phase}`,
            `container ${c.name} already has a native lifecycle.${phase} and adoptNativeHooks is false in the hook-runner configuration; remove one of the two`,
          );
        }
        continue;
      }
      const adopted = adoptNative(c.name, phase, native, ctx);
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
  return { spec, warnings };
}

function adoptNative(container: string, phase: Phase, native: V1LifecycleHandler, ctx: ParseContext): HandlerSpec {
  const source = `spec.containers[${container}].lifecycle`;
  const item = nativeToAnnotationItem(native);
  if (!item) throw new HookSpecError(phase, 'has no exec, httpGet, sleep or tcpSocket handler that hook-runner can adopt', source);
  return normaliseHandler(phase, item, container, { ...ctx, source });
}

function usedPorts(spec: V1PodSpec): Set<number> {
  const ports = new Set<number>();
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) for (const p of c.ports ?? []) ports.add(p.containerPort);
  return ports;
}

/** The configured port, or the next free one when a container of the pod already declares it. */
export function pickSidecarPort(spec: V1PodSpec, preferred: number): number {
  const used = usedPorts(spec);
  let port = preferred;
  while (used.has(port)) port = port >= 65535 ? 1024 : port + 1;
  return port;
}

function graceSeconds(spec: V1PodSpec): number {
  return spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
}

function budgetWarnings(spec: HookSpec, grace: number): string[] {
  const out: string[] = [];
  for (const [name, hooks] of Object.entries(spec)) {
    if (hooks.preStop.length === 0) continue;
    if (grace === 0) {
      out.push(`container ${name}: terminationGracePeriodSeconds is 0, so the kubelet never calls PreStop; its ${hooks.preStop.length} preStop handler${hooks.preStop.length === 1 ? '' : 's'} will not run`);
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

function env(name: string, value: string): V1EnvVar {
  return { name, value };
}

function fieldEnv(name: string, fieldPath: string): V1EnvVar {
  return { name, valueFrom: { fieldRef: { fieldPath } } };
}

function sidecarContainer(spec: HookSpec, podSpec: V1PodSpec, opts: MutateOptions, port: number, token: string): V1Container {
  const { config, mode } = opts;
  const readyz = () => ({ httpGet: { path: '/readyz', port, scheme: 'HTTP' } });
  const c: V1Container = {
    name: SIDECAR_CONTAINER_NAME,
    image: config.sidecar.image,
    imagePullPolicy: config.sidecar.imagePullPolicy,
    args: ['sidecar'],
    ports: [{ containerPort: port, protocol: 'TCP' }],
    env: [
      env(ENV_SPEC, JSON.stringify(spec)),
      env(ENV_TOKEN, token),
      env(ENV_PORT, String(port)),
      env(ENV_GRACE_SECONDS, String(graceSeconds(podSpec))),
      env(ENV_EVENT_OUTPUT, String(config.eventOutput)),
      fieldEnv(ENV_POD_NAME, 'metadata.name'),
      fieldEnv(ENV_POD_NAMESPACE, 'metadata.namespace'),
      fieldEnv(ENV_POD_UID, 'metadata.uid'),
      fieldEnv(ENV_NODE_NAME, 'spec.nodeName'),
    ],
    resources: clone(config.sidecar.resources),
    securityContext: sidecarSecurityContext(handlerKindsUsed(spec)),
    readinessProbe: { ...readyz(), periodSeconds: 5 },
  };
  if (mode === 'native') {
    c.restartPolicy = 'Always';
    // The kubelet starts the app containers only once this passes, so no PostStart hits a closed port.
    c.startupProbe = { ...readyz(), periodSeconds: 1, failureThreshold: 60 };
  } else {
    // Containers start in order and the kubelet waits for each PostStart: this holds the app back
    // until the sidecar listens (Istio's holdApplicationUntilProxyStarts).
    c.lifecycle = { postStart: { exec: { command: ['hook-runner', 'wait-ready', '--port', String(port)] } } };
  }
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
      throw new MutationError(`spec.containers[${c.name}].env[${ENV_MARKER}]`, `is set to ${JSON.stringify(marker.value ?? '')}; hook-runner sets it to the container's name to find its processes, remove it`);
    }
  } else {
    c.env = [...(c.env ?? []), env(ENV_MARKER, c.name)];
  }
}

function checkPodCanBeHooked(pod: V1Pod): void {
  const spec = pod.spec!;
  if (spec.hostPID) {
    throw new MutationError('spec.hostPID', 'is true; hook-runner needs the pod\'s own shared PID namespace (shareProcessNamespace) to find and act on its containers, and will not run hooks across the node\'s processes; remove hostPID or the hooks');
  }
  if (spec.shareProcessNamespace === false) {
    throw new MutationError('spec.shareProcessNamespace', 'is set to false explicitly; the hook-runner sidecar must see the containers\' processes to run exec and signal handlers and to know when a container has stopped; remove the field or the hooks');
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
        const kind = handlerKind(h);
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
    return [`restartPolicy is ${restart} and the hook-runner sidecar runs as a regular container (sidecar mode container): the pod completes only when the sidecar exits too; use a cluster with native sidecars (Kubernetes 1.29+) for Jobs`];
  }
  return [];
}

function securityWarnings(pod: V1Pod, sidecar: V1Container): string[] {
  const caps = sidecar.securityContext?.capabilities?.add ?? [];
  if (pod.spec?.securityContext?.runAsNonRoot && caps.length > 0) {
    return [`the pod sets securityContext.runAsNonRoot, but its exec/signal hooks need the hook-runner sidecar to run as uid 0 with capabilities ${caps.join(', ')} (and nothing else); the sidecar's own securityContext says so`];
  }
  return [];
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
  if (annotations[ANNOTATION_STATUS] !== undefined) return { injected: false, reason: 'already-injected', pod: original, warnings: [] };
  if (!original.spec || !Array.isArray(original.spec.containers)) throw new MutationError('spec.containers', 'is missing; a Pod needs at least one container');

  const { spec: hooks, warnings } = collectHooks(original, opts.config);
  if (Object.keys(hooks).length === 0) return { injected: false, reason: 'no-hooks', pod: original, warnings };
  checkPodCanBeHooked(original);
  if (opts.podSecurity) checkPodSecurity(hooks, opts.podSecurity);

  // Copy on write: new objects only along the paths the mutation changes (pod, metadata, spec, the
  // containers list, each hooked container); the rest is shared with the input, which stays
  // untouched. Cheaper than a deep clone, and the JSONPatch diff skips the shared subtrees.
  const pod: V1Pod = {
    ...original,
    metadata: { ...original.metadata },
    spec: { ...original.spec, containers: original.spec.containers.map((c) => (hooksOf(hooks, c.name) ? { ...c } : c)) },
  };
  const spec = pod.spec!;
  const port = pickSidecarPort(spec, opts.config.sidecar.port);
  const token = (opts.newToken ?? randomToken)();
  const sidecar = sidecarContainer(hooks, spec, opts, port, token);

  for (const c of spec.containers) {
    const h = hooksOf(hooks, c.name);
    if (h) rewriteContainer(c, h, port, token);
  }
  if (opts.mode === 'native') spec.initContainers = [sidecar, ...(spec.initContainers ?? [])];
  else spec.containers = [sidecar, ...spec.containers];
  spec.shareProcessNamespace = true;

  const status: InjectionStatus = { version: STATUS_VERSION, mode: opts.mode, port, containers: Object.keys(hooks), ...undoRecord(original, hooks, opts.mode) };
  pod.metadata = { ...(pod.metadata ?? {}), annotations: { ...annotations, [ANNOTATION_STATUS]: JSON.stringify(status) } };

  warnings.push(...budgetWarnings(hooks, graceSeconds(spec)), ...modeWarnings(pod, opts.mode), ...securityWarnings(pod, sidecar));
  return { injected: true, pod, warnings, status };
}
