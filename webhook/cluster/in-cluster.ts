/**
 * Everything the webhook does with the API server, behind one call for `webhook/cli.ts`.
 *
 * Contract of {@link startInCluster}:
 *
 * ```ts
 * const cluster = await startInCluster({ logger, config, namespace, serviceName, webhookConfigName, selfSigned });
 * cluster.mode                 // 'native' | 'container': config.sidecar.mode, with `auto` resolved
 *                              // from the API server's /version (≥ 1.29 → native); when /version
 *                              // fails: 'container' and one warning line. Never throws for this.
 * cluster.tls                  // with selfSigned: {cert, key, ca} (PEM) in service now; else undefined
 * cluster.tlsProvider          // with selfSigned: a TlsProvider (webhook/tls.ts) for startWebhookServer
 *                              // that follows renewals and other replicas' certificates
 *                              // (setSecureContext, no restart); else undefined
 * cluster.podSecurityLevel(ns) // namespace cache: the pod-security.kubernetes.io/enforce level, or
 *                              // undefined (unlabelled, unknown namespace, cache not synced yet).
 *                              // Pass as ReviewOptions.podSecurityLevel / WebhookAppOptions.podSecurityLevel.
 * cluster.synced()             // whether the namespace cache has loaded (e.g. for /readyz)
 * await cluster.stop()         // stops the informer, the renewal timer and pending retries
 * ```
 *
 * - Rejects (CertBootstrapError) only when `selfSigned` and no certificate could be read or made
 *   in the Secret within `startTimeoutMs` (60 s): without one the webhook cannot serve at all.
 *   Missing RBAC for the caBundle patch or the namespace controller is logged and retried, never fatal.
 * - Waits up to `cacheSyncTimeoutMs` (30 s) for the first namespace list, then returns anyway
 *   (logged; the informer keeps retrying, `podSecurityLevel` answers undefined until then).
 * - `kubeConfig`: defaults to the pod's ServiceAccount (or ~/.kube/config outside a cluster).
 *
 * Wiring (cli.ts, with `--self-signed` in a cluster): names from `--service-name`,
 * `--service-namespace` (or POD_NAMESPACE), and the MutatingWebhookConfiguration name `hook-runner`.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { CertBootstrap, type CertBootstrapOptions } from './cert-bootstrap.js';
import type { Config } from '../core/config.js';
import { loadKubeConfig, makeClients } from './kube.js';
import type { PodSecurityLevel, ResolvedMode } from '../core/mutate.js';
import { NamespaceController, type NamespaceControllerOptions } from './namespace-controller.js';
import { detectSidecarMode } from './detect-sidecar-mode.js';
import type { TlsProvider } from './tls.js';

export const DEFAULT_WEBHOOK_CONFIG_NAME = 'hook-runner';

export interface StartInClusterOptions {
  logger: Logger;
  config: Config;
  /** The webhook's own namespace (Secret, Service). */
  namespace: string;
  serviceName: string;
  webhookConfigName?: string;
  /** Keep a self-signed CA + serving certificate in the Secret and the caBundle (`--self-signed`). */
  selfSigned?: boolean;
  kubeConfig?: KubeConfig;
  /** Whether to run the namespace controller (RoleBindings + Pod Security cache); default true. */
  namespaceController?: boolean;
  cacheSyncTimeoutMs?: number;
  /** Tuning and test hooks. */
  cert?: Partial<Omit<CertBootstrapOptions, 'core' | 'admission' | 'logger' | 'namespace' | 'serviceName' | 'webhookConfigName'>>;
  namespaces?: Partial<Omit<NamespaceControllerOptions, 'kubeConfig' | 'core' | 'rbac' | 'logger'>>;
}

export interface InCluster {
  mode: ResolvedMode;
  tls?: { cert: string; key: string; ca: string };
  tlsProvider?: TlsProvider;
  podSecurityLevel(namespace: string): PodSecurityLevel | undefined;
  synced(): boolean;
  stop(): Promise<void>;
}

export async function startInCluster(opts: StartInClusterOptions): Promise<InCluster> {
  const log = opts.logger.child({ component: 'in-cluster' });
  const kc = opts.kubeConfig ?? loadKubeConfig();
  const clients = makeClients(kc);

  const modePromise = detectSidecarMode({ configured: opts.config.sidecar.mode, version: clients.version, logger: opts.logger });

  let controller: NamespaceController | undefined;
  let syncPromise: Promise<boolean> = Promise.resolve(true);
  if (opts.namespaceController !== false) {
    controller = new NamespaceController({ ...opts.namespaces, kubeConfig: kc, core: clients.core, rbac: clients.rbac, logger: opts.logger });
    syncPromise = controller.start(opts.cacheSyncTimeoutMs ?? 30_000);
  }

  let cert: CertBootstrap | undefined;
  const stop = async () => {
    await Promise.allSettled([cert?.stop(), controller?.stop()]);
  };

  try {
    if (opts.selfSigned) {
      cert = new CertBootstrap({
        ...opts.cert,
        core: clients.core,
        admission: clients.admission,
        logger: opts.logger,
        namespace: opts.namespace,
        serviceName: opts.serviceName,
        webhookConfigName: opts.webhookConfigName ?? DEFAULT_WEBHOOK_CONFIG_NAME,
      });
      await cert.start();
    }
  } catch (e) {
    await stop();
    throw e;
  }

  const [mode, synced] = await Promise.all([modePromise, syncPromise]);
  if (!synced)
    log.warn(
      { timeoutMs: opts.cacheSyncTimeoutMs ?? 30_000 },
      'namespace cache not loaded yet; Pod Security levels are unknown until it is (the webhook then leaves exec/signal checks to PodSecurity admission)',
    );

  const tlsProvider = cert?.tlsProvider();
  const c = cert;
  return {
    mode,
    get tls() {
      if (!c) return undefined;
      const m = c.current();
      return { cert: m.cert, key: m.key, ca: m.ca };
    },
    tlsProvider,
    podSecurityLevel: (ns) => controller?.podSecurityLevel(ns),
    synced: () => controller?.synced() ?? true,
    stop,
  };
}
