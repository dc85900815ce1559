/**
 * The sidecar's few Kubernetes API calls: its own Pod's deletionGracePeriodSeconds and Events.
 * @kubernetes/client-node is loaded lazily, on first use: most sidecars never need it before a hook.
 * Best effort throughout: no call ever delays a hook beyond its bound, and failures only log.
 */
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';

export interface PodRef {
  name: string;
  namespace: string;
  uid: string;
  node: string;
}

export interface EventInput {
  reason: string;
  type: 'Normal' | 'Warning';
  message: string;
  container: string;
}

/** Events carry at most this much text (events.k8s.io keeps notes under 1 KiB). */
export const EVENT_MESSAGE_MAX = 1024;

export class KubeClient {
  private api?: Promise<CoreV1Api | undefined>;
  private eventsDisabled = false;
  private warnedEvents = false;
  private warnedGrace = false;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly pod: PodRef,
    private readonly log: Logger,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** In a pod (service account) or with KUBECONFIG set; never a developer's ~/.kube/config by accident. */
  configured(): boolean {
    return !!this.pod.name && !!this.pod.namespace && (!!this.env.KUBECONFIG || !!this.env.KUBERNETES_SERVICE_HOST);
  }

  /**
   * Loads the client ahead of the first PreStop. Loading @kubernetes/client-node takes 1-2 s of
   * blocked event loop on Node 20, so the CLI calls this once, after readiness, while no hook runs.
   */
  warm(): void {
    if (this.configured()) void this.client();
  }

  private client(): Promise<CoreV1Api | undefined> {
    this.api ??= (async () => {
      if (!this.configured()) return undefined;
      try {
        const t0 = performance.now();
        const k8s = await import('@kubernetes/client-node');
        const kc = new k8s.KubeConfig();
        if (this.env.KUBECONFIG) kc.loadFromFile(this.env.KUBECONFIG);
        else kc.loadFromCluster();
        const api = kc.makeApiClient(k8s.CoreV1Api);
        this.log.info({ loadMs: Math.round(performance.now() - t0) }, 'kubernetes client loaded');
        return api;
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'kubernetes client unavailable; no events, grace period from HOOK_RUNNER_GRACE_SECONDS');
        return undefined;
      }
    })();
    return this.api;
  }

  /**
   * The pod's grace period: deletionGracePeriodSeconds when the pod is being deleted (a shortened
   * `kubectl delete --grace-period` shortens it), else `fallback`. Bounded by `timeoutMs`.
   */
  async graceSeconds(fallback: number, timeoutMs = 1000): Promise<{ seconds: number; source: 'api' | 'env' }> {
    if (!this.configured()) return { seconds: fallback, source: 'env' };
    const read = (async () => {
      const api = await this.client();
      if (!api) return undefined;
      const pod = await api.readNamespacedPod({ name: this.pod.name, namespace: this.pod.namespace });
      return pod.metadata?.deletionGracePeriodSeconds;
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), timeoutMs);
    });
    try {
      const v = await Promise.race([read, timeout]);
      if (typeof v === 'number' && v >= 0) return { seconds: v, source: 'api' };
      if (v === 'timeout') this.warnGrace(`no answer within ${timeoutMs}ms`);
    } catch (e) {
      this.warnGrace((e as Error).message);
    } finally {
      clearTimeout(timer);
    }
    read.catch(() => {});
    return { seconds: fallback, source: 'env' };
  }

  private warnGrace(why: string): void {
    if (this.warnedGrace) return;
    this.warnedGrace = true;
    this.log.warn({ err: why }, 'cannot read own pod for deletionGracePeriodSeconds; using HOOK_RUNNER_GRACE_SECONDS');
  }

  /** Fire and forget: never awaited by a hook. A 403 disables events with one warning. */
  event(e: EventInput): void {
    if (this.eventsDisabled || !this.configured()) return;
    const p = (async () => {
      const api = await this.client();
      if (!api) return;
      const now = new Date();
      const body: CoreV1Event = {
        metadata: { generateName: `${this.pod.name}.`, namespace: this.pod.namespace },
        involvedObject: { apiVersion: 'v1', kind: 'Pod', name: this.pod.name, namespace: this.pod.namespace, uid: this.pod.uid || undefined, fieldPath: `spec.containers{${e.container}}` },
        reason: e.reason,
        type: e.type,
        message: e.message.length > EVENT_MESSAGE_MAX ? `${e.message.slice(0, EVENT_MESSAGE_MAX - 1)}…` : e.message,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
        source: { component: 'hook-runner', host: this.pod.node || undefined },
        reportingComponent: 'hook-runner',
        reportingInstance: this.pod.name,
      };
      await api.createNamespacedEvent({ namespace: this.pod.namespace, body });
    })().catch((err: unknown) => {
      const code = (err as { code?: number }).code;
      if (code === 403) {
        this.eventsDisabled = true;
        this.log.warn({ reason: e.reason }, 'creating Events is forbidden (RBAC); hook events are off for this sidecar, logs still carry everything');
      } else if (!this.warnedEvents) {
        this.warnedEvents = true;
        this.log.warn({ err: (err as Error).message, reason: e.reason }, 'cannot create Event (best effort; further failures are not logged)');
      }
    });
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** Lets queued events go out before exit, bounded. */
  async flush(timeoutMs = 1000): Promise<void> {
    if (this.pending.size === 0) return;
    await Promise.race([Promise.allSettled([...this.pending]), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }
}
