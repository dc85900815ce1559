/**
 * Pod Security Standards checks for one container (the parts that concern a container's own
 * securityContext, as the API server's PodSecurity admission evaluates them, pod-level settings
 * inherited). Returns the violations; empty means the container meets the level.
 */
import type { V1Container, V1PodSecurityContext } from '@kubernetes/client-node';

/** Capabilities "baseline" allows to be added (the default container runtime set). */
export const BASELINE_ALLOWED_CAPS = ['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT'];

export function baselineViolations(c: V1Container): string[] {
  const out: string[] = [];
  const sc = c.securityContext ?? {};
  if (sc.privileged) out.push(`${c.name}: privileged`);
  const bad = (sc.capabilities?.add ?? []).filter((cap) => !BASELINE_ALLOWED_CAPS.includes(cap));
  if (bad.length) out.push(`${c.name}: capabilities ${bad.join(', ')} are not allowed by baseline`);
  return out;
}

export function restrictedViolations(c: V1Container, pod: V1PodSecurityContext = {}): string[] {
  const out = baselineViolations(c);
  const sc = c.securityContext ?? {};
  if (sc.allowPrivilegeEscalation !== false) out.push(`${c.name}: allowPrivilegeEscalation must be false`);
  if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`${c.name}: capabilities must drop ALL`);
  const added = (sc.capabilities?.add ?? []).filter((cap) => cap !== 'NET_BIND_SERVICE');
  if (added.length) out.push(`${c.name}: only NET_BIND_SERVICE may be added, got ${added.join(', ')}`);
  const nonRoot = sc.runAsNonRoot ?? pod.runAsNonRoot;
  if (nonRoot !== true) out.push(`${c.name}: runAsNonRoot must be true`);
  if ((sc.runAsUser ?? pod.runAsUser) === 0) out.push(`${c.name}: runAsUser must not be 0`);
  const seccomp = sc.seccompProfile?.type ?? pod.seccompProfile?.type;
  if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`${c.name}: seccompProfile must be RuntimeDefault or Localhost`);
  return out;
}
