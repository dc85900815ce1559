/**
 * Helpers for the cluster e2e suite: kubectl as a child process (the suite drives the cluster the
 * way a user does, and sees what kubectl shows, warnings included), bounded polling, test pods.
 * Every wait is bounded in time; nothing here retries forever.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_HOOKS } from '../../../common/names.js';
import { TLS_SECRET_NAME } from '../../../webhook/cluster/cert-bootstrap.js';
import { DEFAULT_WEBHOOK_CONFIG_NAME } from '../../../webhook/cluster/in-cluster.js';
import { SIDECAR_ROLEBINDING_NAME } from '../../../webhook/cluster/namespace-controller.js';
import { DEFAULT_SERVICE_NAMESPACE } from '../../../webhook/cluster/tls.js';

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export const APP_IMAGE = process.env.E2E_APP_IMAGE || 'busybox:1.36.1';
export const WEBHOOK_NAMESPACE = DEFAULT_SERVICE_NAMESPACE;
export const WEBHOOK_CONFIG = DEFAULT_WEBHOOK_CONFIG_NAME;
/** The webhook's name in manifests/base/mutatingwebhookconfiguration.yaml (kubectl quotes it in denials). */
export const WEBHOOK_NAME = 'inject.hook-runner.dev';
export const SIDECAR_ROLE_BINDING = SIDECAR_ROLEBINDING_NAME;
export const SELF_SIGNED_SECRET = TLS_SECRET_NAME;

/** Runs kubectl; resolves with its exit code and output (never rejects on a non-zero exit). */
export function kubectl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('kubectl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 90_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: signal ? null : code, stdout, stderr: signal ? `${stderr}\n(kubectl killed after ${opts.timeoutMs ?? 90_000} ms)` : stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** kubectl that must succeed; returns stdout. */
export async function kubectlOk(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await kubectl(args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

export async function getJson<T>(args: string[]): Promise<T> {
  return JSON.parse(await kubectlOk([...args, '-o', 'json'])) as T;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a value other than undefined/false; fails after `timeoutMs` saying what it waited for. */
export async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false>, intervalMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() + intervalMs > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `; last error: ${(last as Error).message}` : ''}`);
    await sleep(intervalMs);
  }
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}

export async function createNamespace(name: string, labels: Record<string, string>): Promise<void> {
  const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'hook-runner-e2e': 'true', ...labels } } };
  await kubectlOk(['apply', '-f', '-'], { input: JSON.stringify(ns) });
}

export async function deleteNamespaces(names: string[]): Promise<void> {
  if (names.length) await kubectl(['delete', 'namespace', ...names, '--ignore-not-found', '--wait=false']);
}

/**
 * The test app: logs `STARTED <epoch>`; on SIGTERM logs `TERM <epoch> prestop=<content of
 * /tmp/prestop>`, takes SHUTDOWN seconds to shut down, then logs `EXITED <epoch>` and exits 0.
 * `date +%s` on both sides: the hooks and the app read the same node clock.
 */
export const APP_SCRIPT = [
  `trap 'echo "TERM $(date +%s) prestop=$(cat /tmp/prestop 2>/dev/null || echo none)"; sleep "\${SHUTDOWN:-5}"; echo "EXITED $(date +%s)"; exit 0' TERM`,
  'echo "STARTED $(date +%s)"',
  'sleep 100000 & wait $!',
].join('\n');

export interface PodOptions {
  hooks?: unknown;
  labels?: Record<string, string>;
  graceSeconds?: number;
  shutdownSeconds?: number;
  script?: string;
  runAsUser?: number;
  ports?: { name: string; containerPort: number }[];
}

/** A one-container Pod named `name` whose container is `app`; `hooks` becomes the hooks annotation. */
export function appPod(name: string, namespace: string, o: PodOptions = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace,
      labels: { 'hook-runner-e2e': 'true', ...(o.labels ?? {}) },
      annotations: o.hooks === undefined ? {} : { [ANNOTATION_HOOKS]: JSON.stringify(o.hooks) },
    },
    spec: {
      terminationGracePeriodSeconds: o.graceSeconds ?? 30,
      containers: [
        {
          name: 'app',
          image: APP_IMAGE,
          imagePullPolicy: 'IfNotPresent',
          command: ['sh', '-c', o.script ?? APP_SCRIPT],
          env: [{ name: 'SHUTDOWN', value: String(o.shutdownSeconds ?? 5) }],
          ports: o.ports,
          securityContext: o.runAsUser === undefined ? undefined : { runAsUser: o.runAsUser, runAsGroup: o.runAsUser },
        },
      ],
    },
  };
}

/** `kubectl create --dry-run=server`: what the API server (and so the webhook) would make of it. */
export async function dryRunCreate(pod: V1Pod): Promise<{ run: Run; pod?: V1Pod }> {
  const run = await kubectl(['create', '--dry-run=server', '-o', 'json', '-f', '-'], { input: JSON.stringify(pod) });
  return { run, pod: run.code === 0 ? (JSON.parse(run.stdout) as V1Pod) : undefined };
}

export async function createPod(pod: V1Pod): Promise<Run> {
  return kubectl(['create', '-f', '-'], { input: JSON.stringify(pod) });
}

export async function waitReady(namespace: string, name: string, timeoutMs = 180_000): Promise<void> {
  const r = await kubectl(['-n', namespace, 'wait', '--for=condition=Ready', `pod/${name}`, `--timeout=${Math.round(timeoutMs / 1000)}s`], { timeoutMs: timeoutMs + 15_000 });
  if (r.code !== 0) {
    const describe = await kubectl(['-n', namespace, 'describe', 'pod', name]);
    throw new Error(`pod ${namespace}/${name} not Ready: ${r.stderr.trim()}\n${describe.stdout}`);
  }
}

export function sidecarOf(pod: V1Pod, sidecarName: string) {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === sidecarName);
}

export async function containerLogs(namespace: string, pod: string, container: string): Promise<string> {
  return kubectlOk(['-n', namespace, 'logs', pod, '-c', container]);
}

export interface EventLite {
  reason?: string;
  message?: string;
  type?: string;
  source?: { component?: string };
  reportingComponent?: string;
}

export async function podEvents(namespace: string, pod: string): Promise<EventLite[]> {
  const list = await getJson<{ items: EventLite[] }>(['-n', namespace, 'get', 'events', '--field-selector', `involvedObject.kind=Pod,involvedObject.name=${pod}`]);
  return list.items;
}

/**
 * Follows a container's log while something happens to it (e.g. the pod is deleted): resolves with
 * everything it printed once the container has ended, or after `timeoutMs`.
 */
export class LogFollower {
  private child: ChildProcessWithoutNullStreams;
  private out = '';
  private done: Promise<string>;

  constructor(namespace: string, pod: string, container: string, timeoutMs: number) {
    this.child = spawn('kubectl', ['-n', namespace, 'logs', '-f', pod, '-c', container], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin.end();
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    this.done = new Promise((resolve) => {
      this.child.on('close', () => {
        clearTimeout(timer);
        resolve(this.out);
      });
      this.child.on('error', () => {
        clearTimeout(timer);
        resolve(this.out);
      });
    });
  }

  get text(): string {
    return this.out;
  }

  ended(): Promise<string> {
    return this.done;
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/** Parses `WORD <epoch> ...` lines of the test app's log into the first epoch of each word. */
export function appTimeline(log: string): { started?: number; term?: number; exited?: number; prestop?: number } {
  const num = (re: RegExp) => {
    const m = re.exec(log);
    return m ? Number(m[1]) : undefined;
  };
  return {
    started: num(/^STARTED (\d+)/m),
    term: num(/^TERM (\d+)/m),
    exited: num(/^EXITED (\d+)/m),
    prestop: num(/^TERM \d+ prestop=(\d+)/m),
  };
}
