/**
 * The adapter of `sidecar.mode: auto`: asks the API server's version once at start and decides with
 * the pure {@link modeForVersion}; falls back to `container` (works on every version) with one
 * warning when it cannot tell.
 */
import type { VersionApi } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { SidecarMode } from '../core/config.js';
import type { ResolvedMode } from '../core/mutate.js';
import { modeForVersion, parseKubeVersion, type KubeVersionFields } from '../core/sidecar-mode.js';
import { callOptions, describeError } from './kube.js';

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
