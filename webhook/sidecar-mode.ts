/**
 * `sidecar.mode: auto` (DESIGN §4 step 1): native sidecars (init containers with
 * `restartPolicy: Always`) are on by default from Kubernetes 1.29, so the webhook asks the API
 * server's version once at start. The decision is the pure {@link modeForVersion}; the call is the
 * adapter {@link detectSidecarMode}, which falls back to `container` (works on every version) with
 * one warning when it cannot tell.
 */
import type { VersionApi } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import type { SidecarMode } from './config.js';
import type { ResolvedMode } from './mutate.js';
import { callOptions, describeError } from './kube.js';

/** First Kubernetes minor (of major 1) where the SidecarContainers feature is on by default (beta in 1.29, GA in 1.33). */
export const NATIVE_SIDECAR_MIN = { major: 1, minor: 29 } as const;

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
  const g = /^v?(\d+)\.(\d+)(?:[.+\-]|$)/.exec((v.gitVersion ?? '').trim());
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

export interface DetectSidecarModeOptions {
  /** `sidecar.mode` from the config; only `auto` makes a call. */
  configured: SidecarMode;
  version: Pick<VersionApi, 'getCode'>;
  logger: Logger;
  timeoutMs?: number;
}

/** Resolves `sidecar.mode` once; never throws (a failure is a warning and `container`). */
export async function detectSidecarMode(opts: DetectSidecarModeOptions): Promise<ResolvedMode> {
  if (opts.configured !== 'auto') return opts.configured;
  const log = opts.logger.child({ component: 'sidecar-mode' });
  let info: KubeVersionFields;
  try {
    info = await opts.version.getCode(undefined, callOptions({ timeoutMs: opts.timeoutMs ?? 10_000 }));
  } catch (e) {
    log.warn(
      { configured: 'auto', resolved: 'container', err: describeError(e) },
      'cannot read the API server version; sidecar.mode auto falls back to container (works on every Kubernetes version); set sidecar.mode: native in --config on 1.29+',
    );
    return 'container';
  }
  const mode = modeForVersion(info);
  const parsed = parseKubeVersion(info);
  if (!parsed) {
    log.warn(
      { configured: 'auto', resolved: mode, major: info.major, minor: info.minor, gitVersion: info.gitVersion },
      'cannot understand the API server version; sidecar.mode auto falls back to container; set sidecar.mode in --config to choose',
    );
  } else {
    log.info({ configured: 'auto', resolved: mode, gitVersion: info.gitVersion, major: parsed.major, minor: parsed.minor }, `sidecar.mode auto resolved to ${mode}`);
  }
  return mode;
}
