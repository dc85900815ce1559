/**
 * Every public name of hook-runner: label and annotation keys, the sidecar's container name, port,
 * paths, header and environment variables. DESIGN.md §2 is the contract; docs are checked against
 * this module (test/names.test.ts), so a name is changed here or nowhere.
 */

/** Namespace label that opts every new Pod of the namespace in (`enabled`) or out (`disabled`). */
export const LABEL_NAMESPACE_INJECTION = 'hook-runner.dev/injection';
/** Value of {@link LABEL_NAMESPACE_INJECTION} that opts a namespace in. */
export const NAMESPACE_INJECTION_ENABLED = 'enabled';
/** Value of {@link LABEL_NAMESPACE_INJECTION} that excludes a namespace explicitly. */
export const NAMESPACE_INJECTION_DISABLED = 'disabled';

/** Pod label; `"false"` keeps the webhook away from this Pod even in an opted-in namespace. */
export const LABEL_POD_INJECT = 'hook-runner.dev/inject';

/** Pod annotation holding the hooks, YAML or JSON, keyed by container name (DESIGN §3). */
export const ANNOTATION_HOOKS = 'hook-runner.dev/hooks';
/**
 * Pod annotation; `"true"` makes the webhook adopt the pod's native `lifecycle` blocks although it
 * has no {@link ANNOTATION_HOOKS} (config `adoptNativeHooks` does it for every pod); `"false"` keeps
 * such a pod alone even when the config adopts by default. Pods with the hooks annotation always
 * have their native blocks adopted (DESIGN §3, §4).
 */
export const ANNOTATION_ADOPT_NATIVE = 'hook-runner.dev/adopt-native';
/** Pod annotations that set the sidecar's resources, overriding config `sidecar.resources` (a quantity each). */
export const ANNOTATION_SIDECAR_CPU_REQUEST = 'hook-runner.dev/sidecar-cpu-request';
/** See {@link ANNOTATION_SIDECAR_CPU_REQUEST}. */
export const ANNOTATION_SIDECAR_MEMORY_REQUEST = 'hook-runner.dev/sidecar-memory-request';
/** See {@link ANNOTATION_SIDECAR_CPU_REQUEST}. */
export const ANNOTATION_SIDECAR_CPU_LIMIT = 'hook-runner.dev/sidecar-cpu-limit';
/** See {@link ANNOTATION_SIDECAR_CPU_REQUEST}. */
export const ANNOTATION_SIDECAR_MEMORY_LIMIT = 'hook-runner.dev/sidecar-memory-limit';
/** Pod annotation the webhook writes: JSON record of what was injected; its presence makes injection a no-op. */
export const ANNOTATION_STATUS = 'hook-runner.dev/status';

/** Name of the injected sidecar container. */
export const SIDECAR_CONTAINER_NAME = 'hook-runner';
/** Default port of the sidecar's hook API; the webhook moves it when the pod already uses it. */
export const DEFAULT_SIDECAR_PORT = 15901;
/** Header carrying the per-pod token on every hook call. */
export const HEADER_TOKEN = 'X-Hook-Runner-Token';

/** Env var added to every hooked container; the sidecar finds the container's processes by it. */
export const ENV_MARKER = 'HOOK_RUNNER_CONTAINER';
/** Sidecar env: JSON of the normalised hooks of every hooked container. */
export const ENV_SPEC = 'HOOK_RUNNER_SPEC';
/** Sidecar env: the token the kubelet sends in {@link HEADER_TOKEN}. */
export const ENV_TOKEN = 'HOOK_RUNNER_TOKEN';
/** Sidecar env: port the hook API listens on (all interfaces). */
export const ENV_PORT = 'HOOK_RUNNER_PORT';
/** Sidecar env: the pod's terminationGracePeriodSeconds (30 when the pod sets none). */
export const ENV_GRACE_SECONDS = 'HOOK_RUNNER_GRACE_SECONDS';
/**
 * Sidecar env: who may call the hook API (config `hookCallers`): `auto` (the node's addresses, the
 * pod's default gateway, loopback), `any`, or comma-separated CIDRs.
 */
export const ENV_CALLERS = 'HOOK_RUNNER_CALLERS';
/** Sidecar env (downward API `status.hostIP`): the node's primary address, a hook caller under `auto`. */
export const ENV_HOST_IP = 'HOOK_RUNNER_HOST_IP';
/**
 * Sidecar env (downward API `status.hostIPs`, comma-separated): every node address. Set only in
 * native sidecar mode: API servers older than 1.28 reject that field path, and native mode implies 1.29+.
 */
export const ENV_HOST_IPS = 'HOOK_RUNNER_HOST_IPS';
/** Sidecar env (optional): write Events with hook output tails when `true`. */
export const ENV_EVENT_OUTPUT = 'HOOK_RUNNER_EVENT_OUTPUT';
/** Downward-API env vars of the sidecar. */
export const ENV_POD_NAME = 'POD_NAME';
export const ENV_POD_NAMESPACE = 'POD_NAMESPACE';
export const ENV_POD_UID = 'POD_UID';
export const ENV_NODE_NAME = 'NODE_NAME';

/** The two hook phases, in the spelling of Kubernetes' `lifecycle` fields. */
export const PHASES = ['postStart', 'preStop'] as const;
export type Phase = (typeof PHASES)[number];

/** Path the kubelet calls for one container's hook phase. */
export function hookPath(container: string, phase: Phase): string {
  return `/v1/hooks/${container}/${phase}`;
}

/** Kubernetes grace period when the pod sets none. */
export const DEFAULT_GRACE_SECONDS = 30;

/**
 * Prefix of the token `hook-runner inject` writes: offline output must be byte-identical for
 * identical input, so its token is a hash, not a secret. The webhook replaces such a token with a
 * random one at admission (outcome `rekeyed`), so no token committed to git is ever live.
 */
export const OFFLINE_TOKEN_PREFIX = 'offline-';

/** Version of the status annotation format and of the spec carried in {@link ENV_SPEC}. */
export const STATUS_VERSION = 1;
