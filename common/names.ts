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
/** Sidecar env (optional): write Events with hook output tails when `true`. */
export const ENV_EVENT_OUTPUT = 'HOOK_RUNNER_EVENT_OUTPUT';
/** Sidecar env (optional): who may call the hook API: `auto` (default), `any`, or comma-separated CIDRs (config `hookCallers`). */
export const ENV_CALLERS = 'HOOK_RUNNER_CALLERS';
/** Sidecar env (optional, downward API `status.hostIP`): the node's address, an accepted caller under `auto`. */
export const ENV_HOST_IP = 'HOOK_RUNNER_HOST_IP';
/** Sidecar env (optional, downward API `status.hostIPs`, comma-separated): the node's addresses. */
export const ENV_HOST_IPS = 'HOOK_RUNNER_HOST_IPS';
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

/** Version of the status annotation format and of the spec carried in {@link ENV_SPEC}. */
export const STATUS_VERSION = 1;
