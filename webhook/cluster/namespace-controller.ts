/**
 * Namespace controller (issue 5 item 5, DESIGN §5/§6): one informer over namespaces that
 *
 * - keeps a RoleBinding `hook-runner-sidecar` in every namespace labelled
 *   `hook-runner.dev/injection=enabled`, binding the ClusterRole `hook-runner-sidecar` (events
 *   create/patch, nothing else: no `pods get`, docs/security.md) to the group
 *   `system:serviceaccounts:<ns>`: the sidecar runs as the pod's ServiceAccount, whichever that is,
 *   and needs no per-team setup to write Events. Created when the label appears, deleted when it goes (only a RoleBinding carrying
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
 * into the webhook: the list/watch is restarted with backoff when it fails.
 *
 * The informer is our own list+watch loop over client-node's `Watch` rather than `makeInformer`:
 * 1.4's ListWatch cannot be stopped while its list or watch request is still being set up (its
 * `stop()` only aborts a request it already holds), which leaves a watch running after shutdown.
 */
import { Watch, type CoreV1Api, type KubeConfig, type RbacAuthorizationV1Api, type V1Namespace, type V1RoleBinding } from '@kubernetes/client-node';
import { LABEL_NAMESPACE_INJECTION, NAMESPACE_INJECTION_ENABLED } from '../../common/names.js';
import type { Logger } from 'pino';
import type { PodSecurityLevel } from '../core/mutate.js';
import { LABEL_MANAGED_BY, MANAGED_BY_VALUE, backoffMs, callOptions, describeError, isManagedByUs, sleep, statusCode } from './kube.js';

/** Name of the RoleBinding the webhook keeps in opted-in namespaces, and of the ClusterRole it binds. */
export const SIDECAR_ROLEBINDING_NAME = 'hook-runner-sidecar';
export const SIDECAR_CLUSTERROLE_NAME = 'hook-runner-sidecar';
/** Pod Security admission's enforce label. */
const LABEL_POD_SECURITY_ENFORCE = 'pod-security.kubernetes.io/enforce';

/** How long a watch request may take to get its response headers (the API server sends them at once). */
const WATCH_SETUP_TIMEOUT_MS = 60_000;

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
function wantsSidecarBinding(ns: V1Namespace | undefined): boolean {
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
      annotations: {
        'kubernetes.io/description': `sidecars injected by hook-runner write Events and read their own Pod; kept while the namespace is labelled ${LABEL_NAMESPACE_INJECTION}=${NAMESPACE_INJECTION_ENABLED}`,
      },
    },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: SIDECAR_CLUSTERROLE_NAME },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: `system:serviceaccounts:${namespace}` }],
  };
}

/** Whether an existing binding grants what {@link sidecarRoleBinding} does (roleRef and subjects; labels aside). */
function roleBindingMatches(actual: V1RoleBinding, desired: V1RoleBinding): boolean {
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
  /** Watch timeout asked of the API server: it ends the watch after this, and we re-watch (guards against a silently dead connection). */
  watchTimeoutSeconds?: number;
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
  private readonly watch: Watch;
  private loop: Promise<void> | undefined;
  private watchCtrl: AbortController | undefined;
  private abandonWatch: (() => void) | undefined;
  private readonly abort = new AbortController();
  private readonly watchTimeoutSeconds: number;
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
    this.watchTimeoutSeconds = o.watchTimeoutSeconds ?? 300;
    this.watch = new Watch(o.kubeConfig);
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
    this.loop ??= this.listWatchLoop();
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
    this.abort.abort();
    this.watchCtrl?.abort();
    this.abandonWatch?.();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.queue.length = 0;
    this.queued.clear();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
  }

  private markSynced(): void {
    if (this.hasSynced || this.stopped) return;
    this.hasSynced = true;
    this.informerFailures = 0;
    this.log.info({ namespaces: this.cache.size, optedIn: [...this.cache.values()].filter((i) => i.wants).length }, 'namespace cache synced');
    for (const w of this.syncWaiters.splice(0)) w();
  }

  /** List, then watch from the list's resourceVersion; on a watch's end re-watch from the last version seen; on 410 Gone or an error, list again (after a backoff). */
  private async listWatchLoop(): Promise<void> {
    let resourceVersion = '';
    while (!this.stopped) {
      try {
        if (!resourceVersion) {
          const list = await this.o.core.listNamespace({}, callOptions({ timeoutMs: 60_000 }));
          if (this.stopped) return;
          const seen = new Set<string>();
          for (const ns of list.items) {
            if (ns.metadata?.name) seen.add(ns.metadata.name);
            this.observe(ns);
          }
          // Namespaces deleted while we were not watching.
          for (const name of [...this.cache.keys()]) if (!seen.has(name)) this.forget({ metadata: { name } });
          resourceVersion = list.metadata?.resourceVersion ?? '';
          this.markSynced();
        }
        const started = Date.now();
        resourceVersion = await this.watchOnce(resourceVersion);
        // A watch the server ends at once, again and again, must not become a busy loop.
        if (Date.now() - started < 1000) await sleep(this.informerRetryBaseMs, this.abort.signal);
      } catch (e) {
        if (this.stopped) return;
        if (statusCode(e) === 410) resourceVersion = '';
        this.informerFailures++;
        const wait = backoffMs(this.informerFailures, this.informerRetryBaseMs, this.informerRetryMaxMs);
        this.log.warn({ err: describeError(e), attempt: this.informerFailures, retryInMs: wait }, 'namespace list/watch failed; restarting it (the cache keeps its last state meanwhile)');
        await sleep(wait, this.abort.signal);
      }
    }
  }

  /** One watch; resolves with the resourceVersion to continue from ('' to list again) when the server ends it. */
  private watchOnce(fromVersion: string): Promise<string> {
    let rv = fromVersion;
    return new Promise<string>((resolve, reject) => {
      let settled = false;
      // The library's watch cannot be aborted before the response headers arrive; if they never do
      // (a black-holed connection) or we are stopping, we stop waiting for it instead.
      const setupTimer = setTimeout(() => done(new Error(`namespace watch got no response in ${WATCH_SETUP_TIMEOUT_MS / 1000} s`)), WATCH_SETUP_TIMEOUT_MS);
      setupTimer.unref();
      const done = (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(setupTimer);
        this.watchCtrl = undefined;
        this.abandonWatch = undefined;
        if (err && !this.stopped) reject(err);
        else resolve(rv);
      };
      this.abandonWatch = () => done(null);
      this.watch
        .watch(
          '/api/v1/namespaces',
          { resourceVersion: fromVersion, allowWatchBookmarks: true, timeoutSeconds: this.watchTimeoutSeconds },
          (type: string, obj: V1Namespace & { code?: number }) => {
            if (settled) return;
            if (type === 'ERROR') {
              // 410 Gone: our version is too old to watch from; list again.
              if (obj.code === 410) rv = '';
              return;
            }
            if (type === 'ADDED' || type === 'MODIFIED') this.observe(obj);
            else if (type === 'DELETED') this.forget(obj);
            if (rv !== '' && obj.metadata?.resourceVersion) rv = obj.metadata.resourceVersion;
            if (this.hasSynced) this.informerFailures = 0;
          },
          done,
        )
        .then((ctrl) => {
          clearTimeout(setupTimer);
          if (settled || this.stopped) ctrl.abort();
          else this.watchCtrl = ctrl;
        }, done);
    });
  }

  private observe(ns: V1Namespace): void {
    const name = ns.metadata?.name;
    if (!name) return;
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
