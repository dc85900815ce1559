/**
 * The sidecar's only Kubernetes API call: core/v1 Events about its own Pod, posted with node:https
 * and the pod's mounted service-account token and CA. No client library (loading
 * @kubernetes/client-node blocked the event loop for seconds after readiness, issue 10.4), no read
 * of any Pod (the RBAC is `events create/patch` only, docs/security.md).
 * Best effort throughout: a bounded queue, one request at a time, never awaited by a hook; failures
 * only log (once), a 403 turns Events off.
 */
import { readFile } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Logger } from './log.js';

/** node:fs's callback API: node:fs/promises would load ~10 more modules (readline, watchers) at start. */
const readFileAsync = (path: string): Promise<Buffer> => new Promise((resolve, reject) => readFile(path, (err, data) => (err ? reject(err) : resolve(data))));

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
const EVENT_MESSAGE_MAX = 1024;
/** Where the kubelet mounts the pod's service-account token, CA and namespace. */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** Events waiting to be sent; more are dropped (counted, one warning). */
const EVENT_QUEUE_MAX = 64;
const REQUEST_TIMEOUT_MS = 5000;

export interface EventSinkOptions {
  env?: NodeJS.ProcessEnv;
  serviceAccountDir?: string;
  queueMax?: number;
}

/** The core/v1 Event for `e` (pure). */
function eventBody(pod: PodRef, e: EventInput, now: Date): Record<string, unknown> {
  const ts = now.toISOString().replace(/\.[0-9]{3}Z$/, 'Z');
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { generateName: `${pod.name}.`, namespace: pod.namespace },
    involvedObject: { apiVersion: 'v1', kind: 'Pod', name: pod.name, namespace: pod.namespace, ...(pod.uid ? { uid: pod.uid } : {}), fieldPath: `spec.containers{${e.container}}` },
    reason: e.reason,
    type: e.type,
    message: e.message.length > EVENT_MESSAGE_MAX ? `${e.message.slice(0, EVENT_MESSAGE_MAX - 1)}…` : e.message,
    firstTimestamp: ts,
    lastTimestamp: ts,
    count: 1,
    source: { component: 'hook-runner', ...(pod.node ? { host: pod.node } : {}) },
    reportingComponent: 'hook-runner',
    reportingInstance: pod.name,
  };
}

class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    detail: string,
  ) {
    super(`HTTP ${status}: ${detail}`);
  }
}

export class KubeClient {
  private eventsDisabled = false;
  private warnedEvents = false;
  private warnedDropped = false;
  private dropped = 0;
  private readonly queue: EventInput[] = [];
  private pumping?: Promise<void>;
  private readonly env: NodeJS.ProcessEnv;
  private readonly saDir: string;
  private readonly queueMax: number;

  constructor(
    private readonly pod: PodRef,
    private readonly log: Logger,
    o: EventSinkOptions = {},
  ) {
    this.env = o.env ?? process.env;
    this.saDir = o.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
    this.queueMax = o.queueMax ?? EVENT_QUEUE_MAX;
  }

  /** In a pod: the API server's address is in the environment the kubelet sets. */
  configured(): boolean {
    return !!this.pod.name && !!this.pod.namespace && !!this.env.KUBERNETES_SERVICE_HOST && !!this.env.KUBERNETES_SERVICE_PORT;
  }

  /** Fire and forget: never awaited by a hook. A 403 disables events with one warning. */
  event(e: EventInput): void {
    if (this.eventsDisabled || !this.configured()) return;
    if (this.queue.length >= this.queueMax) {
      this.dropped++;
      if (!this.warnedDropped) {
        this.warnedDropped = true;
        this.log.warn({ reason: e.reason, queueMax: this.queueMax }, 'event queue full; dropping Events (logs still carry everything)');
      }
      return;
    }
    this.queue.push(e);
    this.pumping ??= this.pump().finally(() => (this.pumping = undefined));
  }

  private async pump(): Promise<void> {
    for (let e = this.queue.shift(); e && !this.eventsDisabled; e = this.queue.shift()) {
      try {
        await this.post(e);
      } catch (err) {
        if (err instanceof HttpStatusError && err.status === 403) {
          this.eventsDisabled = true;
          this.queue.length = 0;
          this.log.warn({ reason: e.reason, err: err.message }, 'creating Events is forbidden (RBAC); hook events are off for this sidecar, logs still carry everything');
        } else if (!this.warnedEvents) {
          this.warnedEvents = true;
          this.log.warn({ err: (err as Error).message, reason: e.reason }, 'cannot create Event (best effort; further failures are not logged)');
        }
      }
    }
  }

  private async post(e: EventInput): Promise<void> {
    // Re-read each time: the kubelet rotates the projected token (about hourly).
    const [token, ca] = await Promise.all([readFileAsync(join(this.saDir, 'token')).then((b) => b.toString('utf8')), readFileAsync(join(this.saDir, 'ca.crt'))]);
    const https = await import('node:https');
    const host = this.env.KUBERNETES_SERVICE_HOST!;
    const body = JSON.stringify(eventBody(this.pod, e, new Date()));
    await new Promise<void>((resolve, reject) => {
      const req = https.request(
        {
          host: isIP(host) === 6 ? host.replace(/^\[|\]$/g, '') : host,
          port: Number(this.env.KUBERNETES_SERVICE_PORT),
          method: 'POST',
          path: `/api/v1/namespaces/${encodeURIComponent(this.pod.namespace)}/events`,
          ca,
          agent: false,
          headers: {
            Authorization: `Bearer ${token.trim()}`,
            'Content-Type': 'application/json',
            Accept: 'application/json',
            'Content-Length': Buffer.byteLength(body),
            'User-Agent': 'hook-runner-sidecar',
          },
          timeout: REQUEST_TIMEOUT_MS,
        },
        (res: IncomingMessage) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            if (text.length < 2000) text += c;
          });
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve();
            else reject(new HttpStatusError(status, text.slice(0, 300)));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from the API server within ${REQUEST_TIMEOUT_MS}ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Lets queued events go out before exit, bounded. */
  async flush(timeoutMs = 1000): Promise<void> {
    if (!this.pumping) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.pumping, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Events dropped because the queue was full. */
  droppedEvents(): number {
    return this.dropped;
  }
}
