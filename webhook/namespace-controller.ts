/**
 * Namespace controller (issue 5 item 5, DESIGN §5/§6): one informer over namespaces that
 *
 * - keeps a RoleBinding `hook-runner-sidecar` in every namespace labelled
 *   `hook-runner.dev/injection=enabled`, binding the ClusterRole `hook-runner-sidecar` (events
 *   create/patch, pods get) to the group `system:serviceaccounts:<ns>`: the sidecar runs as the
 *   pod's ServiceAccount, whichever that is, and needs no per-team setup to write Events and read
 *   its own Pod. Created when the label appears, deleted when it goes (only a RoleBinding carrying
 *   our managed-by label is ever deleted or replaced; someone else's of the same name is left alone
 *   with a warning);
 * - answers `podSecurityLevel(ns)` from the namespace's `pod-security.kubernetes.io/enforce` label,
 *   so the webhook can deny exec/signal hooks a baseline/restricted namespace would reject.
 *
 * Several webhook replicas run this at once. Every write is safe to repeat or to lose a race on:
 * create→409 means it exists (we then check it is the one we want), delete→404 means it is gone,
 * deletes carry a uid/resourceVersion precondition so a binding recreated meanwhile is not removed.
 * Per-namespace work goes through a queue (one reconcile per namespace at a time, bounded
 * concurrency); a failure is logged with the namespace and retried with exponential backoff. A
 * periodic resync re-checks the labelled namespaces (repairs a deleted binding). Nothing here throws
 * into the webhook: the informer is restarted with backoff when its list or watch fails.
 */
import type { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, V1Namespace, V1RoleBinding } from '@kubernetes/client-node';
import { makeInformer, type Informer } from '@kubernetes/client-node';
import { LABEL_NAMESPACE_INJECTION, NAMESPACE_INJECTION_ENABLED } from '../common/names.js';
import type { Logger } from '../common/logger.js';
import type { PodSecurityLevel } from './mutate.js';
import { LABEL_MANAGED_BY, MANAGED_BY_VALUE, backoffMs, callOptions, describeError, isManagedByUs, statusCode } from './kube.js';

/** Name of the RoleBinding the webhook keeps in opted-in namespaces, and of the ClusterRole it binds. */
export const SIDECAR_ROLEBINDING_NAME = 'hook-runner-sidecar';
export const SIDECAR_CLUSTERROLE_NAME = 'hook-runner-sidecar';
/** Pod Security admission's enforce label. */
export const LABEL_POD_SECURITY_ENFORCE = 'pod-security.kubernetes.io/enforce';

const LEVELS: readonly PodSecurityLevel[] = ['privileged', 'baseline', 'restricted'];

/**
 * The enforced Pod Security level of a namespace's labels. Absent → undefined (the cluster default
 * applies, which we cannot see). An unknown value → `restricted`: Pod Security admission itself
 * evaluates an invalid level as restricted (fails closed), so that is what the pod will meet.
 */
export function podSecurityLevelOf(labels: Record<string, string> | undefined): PodSecurityLevel | undefined {
  const v = labels?.[LABEL_POD_SECURITY_ENFORCE];
  if (v === undefined) return undefined;
  return (LEVELS as readonly string[]).includes(v) ? (v as PodSecurityLevel) : 'restricted';
}

/** Whether a namespace should have the sidecar RoleBinding: opted in and not being deleted. */
export function wantsSidecarBinding(ns: V1Namespace | undefined): boolean {
  if (!ns) return false;
  if (ns.metadata?.deletionTimestamp || ns.status?.phase === 'Terminating') return false;
  return ns.metadata?.labels?.[LABEL_NAMESPACE_INJECTION] === NAMESPACE_INJECTION_ENABLED;
}

export function sidecarRoleBinding(namespace: string): V1RoleBinding {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: {
      name: SIDECAR_ROLEBINDING_NAME,
      namespace,
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE },
      annotations: { 'hook-runner.dev/why': `sidecars injected by hook-runner write Events and read their own Pod; kept while the namespace is labelled ${LABEL_NAMESPACE_INJECTION}=${NAMESPACE_INJECTION_ENABLED}` },
    },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: SIDECAR_CLUSTERROLE_NAME },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: `system:serviceaccounts:${namespace}` }],
  };
}

/** Whether an existing binding grants what {@link sidecarRoleBinding} does (roleRef and subjects; labels aside). */
export function roleBindingMatches(actual: V1RoleBinding, desired: V1RoleBinding): boolean {
  const r = actual.roleRef;
  if (r?.kind !== desired.roleRef.kind || r?.name !== desired.roleRef.name || r?.apiGroup !== desired.roleRef.apiGroup) return false;
  const key = (s: { kind: string; name: string; namespace?: string }) => `${s.kind}/${s.namespace ?? ''}/${s.name}`;
  const a = (actual.subjects ?? []).map(key).sort();
  const d = (desired.subjects ?? []).map(key).sort();
  return a.length === d.length && a.every((x, i) => x === d[i]);
}

export interface NamespaceControllerOptions {
  kubeConfig: KubeConfig;
  core: Pick<CoreV1Api, 'listNamespace'>;
  rbac: Pick<RbacAuthorizationV1Api, 'createNamespacedRoleBinding' | 'readNamespacedRoleBinding' | 'deleteNamespacedRoleBinding'>;
  logger: Logger;
  /** Parallel reconciles (different namespaces). */
  concurrency?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Informer restart backoff after a failed list/watch. */
  informerRetryBaseMs?: number;
  informerRetryMaxMs?: number;
  /** Re-check every labelled namespace this often (0: never). */
  resyncIntervalMs?: number;
  callTimeoutMs?: number;
}

interface NsInfo {
  wants: boolean;
  level: PodSecurityLevel | undefined;
}

export class NamespaceController {
  private readonly log: Logger;
  private readonly informer: Informer<V1Namespace>;
  private readonly cache = new Map<string, NsInfo>();
  /** Namespaces where we have seen (since start) that no binding of ours exists: no need to GET again until the label comes and goes. */
  private readonly knownAbsent = new Set<string>();
  private readonly warnedForeign = new Set<string>();
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly active = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Set<Promise<void>>();
  private informerFailures = 0;
  private informerTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private hasSynced = false;
  private syncWaiters: (() => void)[] = [];
  private readonly concurrency: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly informerRetryBaseMs: number;
  private readonly informerRetryMaxMs: number;
  private readonly resyncIntervalMs: number;
  private readonly callTimeoutMs: number;

  constructor(private readonly o: NamespaceControllerOptions) {
    this.log = o.logger.child({ component: 'namespace-controller' });
    this.concurrency = o.concurrency ?? 4;
    this.retryBaseMs = o.retryBaseMs ?? 1000;
    this.retryMaxMs = o.retryMaxMs ?? 5 * 60_000;
    this.informerRetryBaseMs = o.informerRetryBaseMs ?? 1000;
    this.informerRetryMaxMs = o.informerRetryMaxMs ?? 60_000;
    this.resyncIntervalMs = o.resyncIntervalMs ?? 10 * 60_000;
    this.callTimeoutMs = o.callTimeoutMs ?? 15_000;
    this.informer = makeInformer<V1Namespace>(o.kubeConfig, '/api/v1/namespaces', async () => {
      const list = await o.core.listNamespace({}, callOptions({ timeoutMs: 60_000 }));
      // The informer adds the listed items synchronously after this promise settles; mark the cache
      // synced after that (a macrotask later).
      setImmediate(() => this.markSynced());
      return list;
    });
    this.informer.on('add', (ns) => this.observe(ns));
    this.informer.on('update', (ns) => this.observe(ns));
    this.informer.on('delete', (ns) => this.forget(ns));
    this.informer.on('error', (err) => this.onInformerError(err));
  }

  /** Pod Security enforce level of a namespace from the cache; undefined when unlabelled or unknown. */
  podSecurityLevel(namespace: string): PodSecurityLevel | undefined {
    return this.cache.get(namespace)?.level;
  }

  /** Whether the first namespace list has been loaded. */
  synced(): boolean {
    return this.hasSynced;
  }

  /** Starts the informer; resolves true once the first list is in the cache, false when `timeoutMs` passed first (it keeps trying). */
  async start(timeoutMs = 30_000): Promise<boolean> {
    this.startInformer();
    if (this.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => this.resync(), this.resyncIntervalMs);
      this.resyncTimer.unref();
    }
    return this.waitForSync(timeoutMs);
  }

  waitForSync(timeoutMs: number): Promise<boolean> {
    if (this.hasSynced) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      t.unref();
      this.syncWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  /** Re-checks every opted-in namespace (what the periodic resync does). */
  resync(): void {
    for (const [name, info] of this.cache) if (info.wants) this.enqueue(name);
  }

  /** Whether no reconcile is queued, running or waiting for a retry. */
  idle(): boolean {
    return this.queue.length === 0 && this.active.size === 0 && this.retryTimers.size === 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.informerTimer) clearTimeout(this.informerTimer);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.queue.length = 0;
    this.queued.clear();
    await this.informer.stop().catch(() => undefined);
    await Promise.allSettled([...this.inFlight]);
  }

  private markSynced(): void {
    if (this.hasSynced || this.stopped) return;
    this.hasSynced = true;
    this.informerFailures = 0;
    this.log.info({ namespaces: this.cache.size, optedIn: [...this.cache.values()].filter((i) => i.wants).length }, 'namespace cache synced');
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private startInformer(): void {
    if (this.stopped) return;
    this.informer.start().catch((e) => this.onInformerError(e));
  }

  private onInformerError(err: unknown): void {
    if (this.stopped) return;
    this.informerFailures++;
    const wait = backoffMs(this.informerFailures, this.informerRetryBaseMs, this.informerRetryMaxMs);
    this.log.warn({ err: describeError(err), attempt: this.informerFailures, retryInMs: wait }, 'namespace list/watch failed; restarting it (the cache keeps its last state meanwhile)');
    if (this.informerTimer) clearTimeout(this.informerTimer);
    this.informerTimer = setTimeout(() => this.startInformer(), wait);
    this.informerTimer.unref();
  }

  private observe(ns: V1Namespace): void {
    const name = ns.metadata?.name;
    if (!name) return;
    // A watch event means the connection works again.
    if (this.hasSynced) this.informerFailures = 0;
    const info: NsInfo = { wants: wantsSidecarBinding(ns), level: podSecurityLevelOf(ns.metadata?.labels) };
    const prev = this.cache.get(name);
    this.cache.set(name, info);
    if (info.wants) this.knownAbsent.delete(name);
    if (!prev || prev.wants !== info.wants) this.enqueue(name);
  }

  private forget(ns: V1Namespace): void {
    const name = ns.metadata?.name;
    if (!name) return;
    const prev = this.cache.get(name);
    this.cache.delete(name);
    this.warnedForeign.delete(name);
    // The namespace's RoleBindings go with it; nothing to do unless it was opted in (then a delete→404 is cheap and covers a lost event).
    if (prev?.wants) this.enqueue(name);
  }

  private enqueue(name: string): void {
    if (this.stopped) return;
    if (this.active.has(name)) {
      this.dirty.add(name);
      return;
    }
    if (this.queued.has(name)) return;
    const retry = this.retryTimers.get(name);
    if (retry) {
      // New information supersedes the pending retry; the failure count (and so the backoff) stays.
      clearTimeout(retry);
      this.retryTimers.delete(name);
    }
    this.queued.add(name);
    this.queue.push(name);
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.active.size < this.concurrency && this.queue.length > 0) {
      const name = this.queue.shift() as string;
      this.queued.delete(name);
      this.active.add(name);
      const p = this.runOne(name);
      this.inFlight.add(p);
      void p.finally(() => this.inFlight.delete(p));
    }
  }

  private async runOne(namespace: string): Promise<void> {
    try {
      await this.reconcile(namespace);
      this.failures.delete(namespace);
    } catch (e) {
      const n = (this.failures.get(namespace) ?? 0) + 1;
      this.failures.set(namespace, n);
      const wait = backoffMs(n, this.retryBaseMs, this.retryMaxMs);
      if (!this.stopped) {
        this.log.warn({ namespace, attempt: n, retryInMs: wait, err: describeError(e) }, 'cannot reconcile the sidecar RoleBinding; retrying');
        const t = setTimeout(() => {
          this.retryTimers.delete(namespace);
          this.enqueue(namespace);
        }, wait);
        t.unref();
        this.retryTimers.set(namespace, t);
      }
    } finally {
      this.active.delete(namespace);
      if (this.dirty.delete(namespace)) this.enqueue(namespace);
      this.pump();
    }
  }

  private opts() {
    return callOptions({ timeoutMs: this.callTimeoutMs });
  }

  private async readBinding(namespace: string): Promise<V1RoleBinding | undefined> {
    try {
      return await this.o.rbac.readNamespacedRoleBinding({ name: SIDECAR_ROLEBINDING_NAME, namespace }, this.opts());
    } catch (e) {
      if (statusCode(e) === 404) return undefined;
      throw e;
    }
  }

  /** Makes the namespace's binding match the cache's idea of the namespace. Throws to be retried. */
  private async reconcile(namespace: string): Promise<void> {
    if (this.cache.get(namespace)?.wants) await this.ensurePresent(namespace);
    else await this.ensureAbsent(namespace);
  }

  private async ensurePresent(namespace: string): Promise<void> {
    const desired = sidecarRoleBinding(namespace);
    // Read first: in the steady state (resyncs, other replicas) it exists and one GET is all it costs.
    for (let round = 1; round <= 2; round++) {
      const existing = await this.readBinding(namespace);
      if (existing) {
        if (!isManagedByUs(existing.metadata?.labels)) {
          if (!this.warnedForeign.has(namespace)) {
            this.warnedForeign.add(namespace);
            this.log.warn(
              { namespace, roleBinding: SIDECAR_ROLEBINDING_NAME, expectedLabel: `${LABEL_MANAGED_BY}=${MANAGED_BY_VALUE}` },
              'a RoleBinding of this name exists but is not managed by hook-runner; leaving it as it is (sidecar Events may be refused if it does not grant them)',
            );
          }
          return;
        }
        if (roleBindingMatches(existing, desired)) return;
        // roleRef is immutable, so a wrong binding can only be fixed by delete + create; the
        // precondition keeps us from deleting one another replica has just fixed.
        await this.deleteIfUnchanged(namespace, existing);
        this.log.info({ namespace, roleBinding: SIDECAR_ROLEBINDING_NAME }, 'sidecar RoleBinding differed from what hook-runner keeps; deleted it to recreate it');
      }
      try {
        await this.o.rbac.createNamespacedRoleBinding({ namespace, body: desired }, this.opts());
        this.log.info({ namespace, roleBinding: SIDECAR_ROLEBINDING_NAME, subject: desired.subjects?.[0]?.name }, 'sidecar RoleBinding created');
        return;
      } catch (e) {
        const code = statusCode(e);
        // 403/404 while the namespace is being deleted or was unlabelled meanwhile: nothing to keep there.
        if ((code === 403 || code === 404) && !this.cache.get(namespace)?.wants) return;
        // 409: another replica created it between our read and our create; look at it again.
        if (code !== 409) throw e;
      }
    }
    throw new Error('the RoleBinding keeps changing under us; retrying');
  }

  private async ensureAbsent(namespace: string): Promise<void> {
    if (this.knownAbsent.has(namespace)) return;
    const existing = await this.readBinding(namespace);
    if (existing && isManagedByUs(existing.metadata?.labels)) {
      await this.deleteIfUnchanged(namespace, existing);
      this.log.info({ namespace, roleBinding: SIDECAR_ROLEBINDING_NAME }, 'sidecar RoleBinding deleted (namespace no longer opted in)');
    } else if (existing) {
      this.log.debug({ namespace, roleBinding: SIDECAR_ROLEBINDING_NAME }, 'RoleBinding of this name is not managed by hook-runner; not deleting it');
    }
    // The label may have come back while we worked; the event re-enqueues it, and `observe` clears this.
    if (!this.cache.get(namespace)?.wants) this.knownAbsent.add(namespace);
  }

  private async deleteIfUnchanged(namespace: string, existing: V1RoleBinding): Promise<void> {
    try {
      await this.o.rbac.deleteNamespacedRoleBinding(
        { name: SIDECAR_ROLEBINDING_NAME, namespace, body: { preconditions: { uid: existing.metadata?.uid, resourceVersion: existing.metadata?.resourceVersion } } },
        this.opts(),
      );
    } catch (e) {
      const code = statusCode(e);
      if (code === 404) return; // another replica deleted it
      throw e; // 409: it changed since we read it; the retry looks again
    }
  }
}
