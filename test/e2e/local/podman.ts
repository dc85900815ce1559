/**
 * The local real-container tier (docs/e2e.md, tier 2): pods that `hook-runner inject` produced, run
 * as real containers by podman + runc (`podman kube play`), with this file in the kubelet's role.
 *
 * What the kubelet role does, and why (podman 4.3 is not a kubelet):
 * - inject runs on a manifest from this directory with `--sidecar-mode container` (kube play runs
 *   init containers to completion first, so a native sidecar cannot work there) and a config naming
 *   the locally built image (scripts/build-local-images.sh) and a sidecar port found free here.
 * - on the injected pod it sets `hostNetwork: true` (so the kubelet role reaches the sidecar on
 *   127.0.0.1), and then, because podman refuses them or cannot do them: drops `ports` (podman
 *   refuses port mappings with the host network), resolves the downward-API env (`fieldRef`) as the
 *   kubelet would (podman 4.3 rejects `metadata.namespace`), and drops `metadata.annotations`
 *   (podman 4.3 refuses annotation values over 63 characters; nothing in the pod reads them, the
 *   sidecar is configured by its env alone). Everything else is played exactly as inject wrote it:
 *   images, args, env, securityContext (user, capabilities, no_new_privs, read-only root, seccomp).
 * - podman never runs lifecycle hooks (checked by the tests), so this role calls them: the sidecar's
 *   own PostStart exec (`hook-runner wait-ready`) with `podman exec`, then the app's rewritten
 *   `httpGet` the way the kubelet does (GET, the token header, any response is success, only a
 *   transport error fails); on stop, PreStop first, then `podman stop -t <remaining grace>`.
 * Traffic goes only to 127.0.0.1. Every podman command and every wait is bounded.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { get, kubeletCall, processesWithArgv, which, type HookCall, type HttpGetHook } from '../../harness/pod.js';
export { processesWithArgv };

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '../../..');
export const CLI = join(REPO, 'dist/cli/main.js');
export const IMAGE = process.env.E2E_LOCAL_IMAGE ?? 'localhost/hook-runner:e2e-local';
export const APP_IMAGE = process.env.E2E_LOCAL_APP_IMAGE ?? 'localhost/hook-runner-app:e2e-local';
const NAMESPACE = 'e2e-local';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Seconds since boot: the clock the test app stamps its events with (no time namespace in a pod). */
export function uptime(): number {
  return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command without blocking the event loop (hook calls are in flight meanwhile), bounded. */
export function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((res) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      // err.code: the exit status, or a string when the command could not run; killed: timed out.
      const e = err as (Error & { code?: number | string; killed?: boolean }) | null;
      const code = !e ? 0 : typeof e.code === 'number' ? e.code : null;
      res({ code, stdout, stderr: e && code === null ? `${stderr}${e.killed ? `killed after ${timeoutMs}ms` : e.message}` : stderr });
    });
  });
}

async function podman(args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await run('podman', args, timeoutMs);
  if (r.code !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Why this tier cannot run here, or undefined. */
export function missingPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root (podman kube play with runc, reading /proc of container processes)';
  for (const t of ['podman', 'runc']) if (!which(t)) return `needs ${t} on PATH (apt-get install podman runc busybox-static)`;
  if (!existsSync(CLI)) return `${CLI} is missing: run npm run build`;
  for (const image of [IMAGE, APP_IMAGE]) {
    if (spawnSync('podman', ['image', 'exists', image], { timeout: 30_000 }).status !== 0) return `needs the image ${image}: run scripts/build-local-images.sh`;
  }
  return undefined;
}

/** A TCP port nothing listens on, on any address (the sidecar listens on all interfaces of the host network). */
export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '0.0.0.0', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

/** Refuses to play a pod whose port is taken: its sidecar would fail to listen, or we would call someone else. */
export async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((res, rej) => {
    const s = net.createServer();
    s.once('error', (e) => rej(new Error(`port ${port} is not free on this machine (${e.message}); the pod would need it on the host network`)));
    s.listen(port, '0.0.0.0', () => s.close(() => res()));
  });
}

export interface AppEvent {
  t: number;
  ev: string;
  detail: string;
}

export interface ContainerState {
  exitCode: number;
  running: boolean;
  /** Wall clock ms of the exit (podman's FinishedAt), NaN while it runs. */
  finishedAt: number;
  pid: number;
}

type Obj = Record<string, any>;

export class LocalPod {
  readonly dir: string;
  readonly name: string;
  injected!: Obj;
  played!: Obj;
  injectWarnings = '';
  token = '';
  sidecarPort = 0;
  appPort = 0;

  private constructor(readonly manifestFile: string) {
    this.dir = mkdtempSync('/tmp/hook-runner-e2e-local-');
    chmodSync(this.dir, 0o777); // the app runs as uid 1000 and writes its events here
    const m = parseYaml(readFileSync(join(HERE, manifestFile), 'utf8')) as Obj;
    this.name = String(m.metadata.name);
  }

  /** Injects the manifest, plays it, runs the sidecar's own PostStart. Destroyed again if any step fails. */
  static async play(manifestFile: string): Promise<LocalPod> {
    const pod = new LocalPod(manifestFile);
    try {
      await pod.boot();
    } catch (e) {
      await pod.destroy();
      throw e;
    }
    return pod;
  }

  container(name: string): string {
    return `${this.name}-${name}`;
  }

  private async boot(): Promise<void> {
    // A pod of the same name left over by an interrupted run would make the play fail.
    await run('podman', ['pod', 'rm', '-f', '--ignore', this.name], 60_000);
    this.sidecarPort = await freePort();
    this.appPort = await freePort();
    copyFileSync(join(HERE, 'app.sh'), join(this.dir, 'app.sh'));

    // The manifest as an app team wrote it, with this run's volume directory and app port.
    const m = parseYaml(readFileSync(join(HERE, this.manifestFile), 'utf8')) as Obj;
    for (const v of m.spec.volumes ?? []) if (v.hostPath) v.hostPath.path = this.dir;
    for (const c of m.spec.containers as Obj[]) {
      for (const p of c.ports ?? []) if (p.name === 'http') p.containerPort = this.appPort;
      for (const e of c.env ?? []) if (e.name === 'APP_PORT') e.value = String(this.appPort);
    }
    writeFileSync(join(this.dir, 'pod.yaml'), toYaml(m));
    writeFileSync(join(this.dir, 'config.yaml'), toYaml({ sidecar: { image: IMAGE, imagePullPolicy: 'Never', port: this.sidecarPort } }));

    const r = await run(process.execPath, [CLI, 'inject', '-f', join(this.dir, 'pod.yaml'), '--config', join(this.dir, 'config.yaml'), '-o', 'json', '--sidecar-mode', 'container'], 30_000);
    if (r.code !== 0) throw new Error(`hook-runner inject failed (${r.code}): ${r.stderr}`);
    this.injectWarnings = r.stderr;
    this.injected = JSON.parse(r.stdout) as Obj;
    const first = this.injected.spec.containers[0] as Obj;
    if (first?.name !== 'hook-runner') throw new Error('inject (container mode) did not put the hook-runner sidecar first');
    this.token = (first.env as Obj[]).find((e) => e.name === 'HOOK_RUNNER_TOKEN')?.value ?? '';

    // The kubelet role's adaptations for podman (see the top of this file); nothing else changes.
    const played = structuredClone(this.injected);
    played.spec.hostNetwork = true;
    delete played.metadata.annotations;
    const downward: Obj = {
      'metadata.name': played.metadata.name,
      'metadata.namespace': played.metadata.namespace ?? NAMESPACE,
      'metadata.uid': `uid-${played.metadata.name}`,
      'spec.nodeName': 'e2e-local',
      'status.hostIP': '127.0.0.1',
      'status.hostIPs': '127.0.0.1',
    }; // host network: the node is this machine, its kubelet role calls from 127.0.0.1
    for (const c of played.spec.containers as Obj[]) {
      delete c.ports;
      for (const e of c.env ?? []) {
        const path = e.valueFrom?.fieldRef?.fieldPath as string | undefined;
        if (path === undefined) continue;
        if (!(path in downward)) throw new Error(`the kubelet role cannot resolve fieldRef ${path}`);
        e.value = String(downward[path]);
        delete e.valueFrom;
      }
    }
    this.played = played;
    writeFileSync(join(this.dir, 'played.json'), JSON.stringify(played, null, 2));

    await assertPortFree(this.sidecarPort);
    await assertPortFree(this.appPort);
    await podman(['kube', 'play', join(this.dir, 'played.json')], 120_000);
    // The container-mode sidecar's own PostStart, as inject wrote it, in the sidecar container.
    const ps = first.lifecycle?.postStart?.exec?.command as string[] | undefined;
    if (!ps) throw new Error('the container-mode sidecar has no PostStart exec');
    const w = await run('podman', ['exec', this.container('hook-runner'), ...ps, '--timeout-seconds', '30'], 45_000);
    if (w.code !== 0) throw new Error(`sidecar PostStart ${ps.join(' ')} failed (${w.code}): ${w.stderr}\nsidecar log:\n${await this.logs('hook-runner')}`);
  }

  /** The rewritten lifecycle httpGet of a container, as inject wrote it. */
  hook(container: string, phase: 'postStart' | 'preStop'): HttpGetHook {
    const c = (this.injected.spec.containers as Obj[]).find((x) => x.name === container);
    const h = c?.lifecycle?.[phase]?.httpGet as (HttpGetHook & { host?: string }) | undefined;
    if (!h) throw new Error(`inject wrote no ${phase} httpGet for ${container}`);
    return h;
  }

  /** The kubelet calling a rewritten hook on the (host-network) pod's address, 127.0.0.1. */
  call(container: string, phase: 'postStart' | 'preStop', timeoutMs: number): Promise<HookCall> {
    return kubeletCall(this.hook(container, phase), timeoutMs);
  }

  /** `GET /v1/hooks/{c}/{phase}/last` with the token: status and parsed body. */
  async last(container: string, phase: string): Promise<{ status: number; body: Obj | undefined }> {
    const r = await get(this.sidecarPort, `/v1/hooks/${container}/${phase}/last`, this.token);
    try {
      return { status: r.status, body: JSON.parse(r.body) as Obj };
    } catch {
      return { status: r.status, body: undefined };
    }
  }

  /** What the test app recorded (app.sh), in order. */
  events(): AppEvent[] {
    let text = '';
    try {
      text = readFileSync(join(this.dir, 'events'), 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [t = '', ev = '', ...rest] = l.split(' ');
        return { t: Number(t), ev, detail: rest.join(' ') };
      });
  }

  /** Waits (bounded) for an app event. */
  async waitEvent(pred: (e: AppEvent) => boolean, what: string, timeoutMs = 10_000): Promise<AppEvent> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const e = this.events().find(pred);
      if (e) return e;
      await sleep(50);
    }
    throw new Error(`timed out after ${timeoutMs}ms waiting for the app to record ${what}; events:\n${readFileSafe(join(this.dir, 'events'))}`);
  }

  async state(container: string): Promise<ContainerState> {
    const out = await podman(['inspect', '--format', 'json', this.container(container)], 30_000);
    const st = (JSON.parse(out) as Obj[])[0]?.State as Obj;
    return { exitCode: Number(st.ExitCode), running: Boolean(st.Running), finishedAt: st.Running ? NaN : parseTime(String(st.FinishedAt)), pid: Number(st.Pid) };
  }

  async inspect(container: string): Promise<Obj> {
    return (JSON.parse(await podman(['inspect', '--format', 'json', this.container(container)], 30_000)) as Obj[])[0] as Obj;
  }

  /** Host pid of a container's main process. */
  async pid(container: string): Promise<number> {
    const s = await this.state(container);
    if (!s.running || !s.pid) throw new Error(`container ${this.container(container)} is not running`);
    return s.pid;
  }

  async logs(container: string): Promise<string> {
    const r = await run('podman', ['logs', this.container(container)], 30_000);
    return r.stdout + r.stderr;
  }

  /** The sidecar's log lines as JSON (pino); a line that is not JSON fails the caller's assertion. */
  async sidecarLines(): Promise<Obj[]> {
    const r = await run('podman', ['logs', this.container('hook-runner')], 30_000);
    return r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        try {
          return JSON.parse(l) as Obj;
        } catch {
          return { notJson: l };
        }
      });
  }

  /** The kubelet's stop of one container: SIGTERM, SIGKILL after `graceSeconds`. Resolves when podman returns. */
  stop(container: string, graceSeconds: number): Promise<Run> {
    return run('podman', ['stop', '-t', String(Math.max(0, Math.round(graceSeconds))), this.container(container)], Math.round((graceSeconds + 30) * 1000));
  }

  /** Sends a signal to a container's main process (`podman kill --signal`), without waiting. */
  async signal(container: string, sig: string): Promise<void> {
    await podman(['kill', '--signal', sig, this.container(container)], 30_000);
  }

  /**
   * Waits (bounded) for a container to exit on its own; sends SIGKILL at the end, as the kubelet does
   * when the grace period is over. Not `podman stop`: two `podman stop`s running at once in a
   * shared-PID pod were seen here to SIGKILL the container of the one still waiting (exit 137)
   * as soon as the other returned.
   */
  async waitExit(container: string, timeoutMs: number): Promise<{ killed: boolean }> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (!(await this.state(container)).running) return { killed: false };
      await sleep(50);
    }
    await run('podman', ['kill', '--signal', 'KILL', this.container(container)], 30_000);
    return { killed: true };
  }

  /** Tears the pod down; never throws. */
  async destroy(): Promise<void> {
    if (existsSync(join(this.dir, 'played.json'))) await run('podman', ['kube', 'play', '--down', join(this.dir, 'played.json')], 60_000);
    await run('podman', ['pod', 'rm', '-f', '--ignore', this.name], 60_000);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function readFileSafe(f: string): string {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '(none)';
  }
}

/** podman's time ("2026-11-26T01:00:41.526023354Z" or "2026-11-26 01:00:41.526023354 +0000 UTC") to ms. */
export function parseTime(s: string): number {
  const m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?/.exec(s);
  if (!m) return NaN;
  const frac = (m[3] ?? '0').slice(0, 3).padEnd(3, '0');
  const zone = !m[4] || m[4] === 'Z' ? 'Z' : m[4].replace(/^([+-]\d\d)(\d\d)$/, '$1:$2');
  return Date.parse(`${m[1]}T${m[2]}.${frac}${zone}`);
}
