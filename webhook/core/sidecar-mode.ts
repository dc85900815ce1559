/**
 * `sidecar.mode: auto` (DESIGN §4 step 1): native sidecars (init containers with
 * `restartPolicy: Always`) are on by default from Kubernetes 1.29, so the webhook asks the API
 * server's version once at start. The decision is the pure {@link modeForVersion}; the call is the
 * adapter `detectSidecarMode` (webhook/cluster/detect-sidecar-mode.ts).
 */
import type { ResolvedMode } from './mutate.js';

/** First Kubernetes minor (of major 1) where the SidecarContainers feature is on by default (beta in 1.29, GA in 1.33). */
const NATIVE_SIDECAR_MIN = { major: 1, minor: 29 } as const;

/** The `/version` fields we read (VersionInfo of @kubernetes/client-node). */
export interface KubeVersionFields {
  major?: string;
  minor?: string;
  gitVersion?: string;
}

/**
 * Major and minor of a `/version` answer. `major`/`minor` are tried first and may carry a `+`
 * (GKE/EKS report `minor: "29+"`); when they are missing or not numbers, `gitVersion`
 * (`v1.30.2-eks-1552ad0`, `v1.29.3+k3s1`) is read. Undefined when neither says.
 */
export function parseKubeVersion(v: KubeVersionFields): { major: number; minor: number } | undefined {
  const num = (s: string | undefined): number | undefined => {
    const m = /^\s*(\d+)\+?\s*$/.exec(s ?? '');
    return m ? Number(m[1]) : undefined;
  };
  const major = num(v.major);
  const minor = num(v.minor);
  if (major !== undefined && minor !== undefined) return { major, minor };
  const g = /^v?(\d+)\.(\d+)(?:[.+-]|$)/.exec((v.gitVersion ?? '').trim());
  if (g) return { major: Number(g[1]), minor: Number(g[2]) };
  return undefined;
}

/** native from 1.29 (and any later major), container below, and container when the version cannot be read. */
export function modeForVersion(v: KubeVersionFields): ResolvedMode {
  const p = parseKubeVersion(v);
  if (!p) return 'container';
  if (p.major !== NATIVE_SIDECAR_MIN.major) return p.major > NATIVE_SIDECAR_MIN.major ? 'native' : 'container';
  return p.minor >= NATIVE_SIDECAR_MIN.minor ? 'native' : 'container';
}
