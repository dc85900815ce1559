/**
 * The sidecar's securityContext: the least the declared handlers need (DESIGN §5).
 *
 * Only http/httpGet/sleep/tcpSocket: Pod Security "restricted" (non-root, nothing added).
 * `exec` / `signal` must act on processes of another uid in the shared PID namespace, which needs
 * uid 0 with a handful of capabilities, measured on Linux 6.x with `setpriv --bounding-set` and
 * re-checked by the sidecar harness tests. CAP_SYS_ADMIN is never added: the exec handler enters the
 * target's file tree through /proc/PID/root instead of its mount namespace.
 */
import type { V1SecurityContext } from '@kubernetes/client-node';
import type { HandlerKind, HookSpec } from '../../common/spec.js';

/** Read another uid's /proc/PID/environ to find a container's processes: environ is 0400 and ptrace-guarded. */
const CAPS_FIND = ['SYS_PTRACE', 'DAC_READ_SEARCH'] as const;
/**
 * exec: find + enter the target's root and cwd, become its uid/gid, kill the process group at
 * timeout; SETPCAP narrows a root command's bounding set to the target's own, so the command never
 * holds more than the target (DESIGN §6). SETPCAP is within Pod Security baseline.
 */
export const CAPS_EXEC = [...CAPS_FIND, 'SYS_CHROOT', 'SETUID', 'SETGID', 'KILL', 'SETPCAP'] as const;
/** signal: find + signal a process of another uid. */
export const CAPS_SIGNAL = [...CAPS_FIND, 'KILL'] as const;

/** Uid of the sidecar when it needs no privilege (the distroless "nonroot" convention). */
const NONROOT_UID = 65532;

/** Handler kinds that need nothing beyond Pod Security "restricted". */
export const RESTRICTED_KINDS: readonly HandlerKind[] = ['httpGet', 'http', 'sleep', 'tcpSocket'];

export function handlerKindsUsed(spec: HookSpec): Set<HandlerKind> {
  const kinds = new Set<HandlerKind>();
  for (const hooks of Object.values(spec)) for (const h of [...hooks.postStart, ...hooks.preStop]) kinds.add(h.kind);
  return kinds;
}

/** Capabilities the sidecar needs for these handler kinds, in a stable order. */
export function capabilitiesFor(kinds: ReadonlySet<HandlerKind>): string[] {
  const caps = new Set<string>();
  if (kinds.has('exec')) CAPS_EXEC.forEach((c) => caps.add(c));
  if (kinds.has('signal')) CAPS_SIGNAL.forEach((c) => caps.add(c));
  const order = CAPS_EXEC as readonly string[];
  return [...caps].sort((a, b) => order.indexOf(a) - order.indexOf(b));
}

export function sidecarSecurityContext(kinds: ReadonlySet<HandlerKind>): V1SecurityContext {
  const caps = capabilitiesFor(kinds);
  const common: V1SecurityContext = {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    seccompProfile: { type: 'RuntimeDefault' },
  };
  if (caps.length === 0) {
    return {
      ...common,
      runAsNonRoot: true,
      runAsUser: NONROOT_UID,
      runAsGroup: NONROOT_UID,
      capabilities: { drop: ['ALL'] },
    };
  }
  return {
    ...common,
    // uid 0 with all capabilities dropped but these: root without them can do no more than any uid.
    runAsNonRoot: false,
    runAsUser: 0,
    runAsGroup: 0,
    capabilities: { drop: ['ALL'], add: caps },
  };
}
