/**
 * A pod and a kubelet made of real Linux primitives, for the sidecar's integration tests.
 *
 * - The pod: a PID namespace (`unshare --pid --fork --mount-proc`) whose init reaps orphans. Each
 *   "container" enters it with `nsenter --pid --mount`, which forks the main process into the
 *   namespace, so its parent is outside it (PPid 0 inside, as with a runtime's shim or conmon;
 *   checked at every start), takes its own mount namespace with a private
 *   tmpfs (a marker file only it can see), and runs as its uid/gid with its env.
 * - The manifest goes through the built `hook-runner inject`, and the sidecar runs from the built
 *   CLI with exactly the env, uid and capabilities that `inject` wrote (setpriv; no_new_privs for
 *   allowPrivilegeEscalation: false).
 * - The kubelet role calls the rewritten lifecycle httpGet as the kubelet does (GET, the header,
 *   only transport errors count), sends SIGTERM after PreStop and SIGKILL when the grace ends.
 * Every wait is bounded; `destroy()` kills the namespace's init, which ends every process in it.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants as fsConstants, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as toYaml } from 'yaml';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(REPO, 'dist/cli/main.js');
export const FAKE_APP = join(REPO, 'test/harness/fake-app.mjs');

export function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    try {
      accessSync(join(dir, name), fsConstants.X_OK);
      return join(dir, name);
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** Why the harness cannot run here, or undefined. */
export function missingPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (PID and mount namespaces)';
  if (process.getuid?.() !== 0) return 'needs root: unshare/nsenter/setpriv build the pod';
  for (const t of ['unshare', 'nsenter', 'setpriv']) if (!which(t)) return `needs ${t} (util-linux) on PATH`;
  const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { timeout: 5000, encoding: 'utf8' });
  if (r.status !== 0) return `needs PID namespaces: unshare --pid --fork --mount-proc failed (${(r.stderr ?? '').trim() || r.error?.message})`;
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (the harness tests the built CLI)`);
  return undefined;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` every `everyMs` until it returns a value, at most `timeoutMs`. */
export async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 15_000, everyMs = 20): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; i < timeoutMs / everyMs + 2; i++) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) break;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function childOf(ppid: number): number | undefined {
  for (const n of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(n)) continue;
    try {
      const st = readFileSync(`/proc/${n}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === ppid) return Number(n);
    } catch {
      /* gone */
    }
  }
  return undefined;
}

export function procStatusField(pid: number, field: string): string | undefined {
  try {
    return new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.trim();
  } catch {
    return undefined;
  }
}

/** The PID namespace of host pid `pid` (`pid:[4026…]`), or undefined when it is gone. */
export function pidNamespace(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/**
 * Host pids whose command line is exactly `argv`; with `pidNs`, only those in that PID namespace
 * (a pod's own: other test runs on the machine may run the same command at the same time).
 */
export function processesWithArgv(argv: string[], pidNs?: string): number[] {
  const want = `${argv.join('\0')}\0`;
  const out: number[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(n)) continue;
    try {
      if (readFileSync(`/proc/${n}/cmdline`, 'utf8') === want && (pidNs === undefined || pidNamespace(Number(n)) === pidNs)) out.push(Number(n));
    } catch {
      /* gone */
    }
  }
  return out;
}

export interface HookCall {
  ok: boolean;
  status?: number;
  error?: string;
  start: number;
  end: number;
}

export interface HttpGetHook {
  path: string;
  port: number;
  httpHeaders?: Array<{ name: string; value: string }>;
}

/** The kubelet's lifecycle httpGet: any response is success (body discarded); only transport errors fail. */
export function kubeletCall(h: HttpGetHook, timeoutMs: number, token?: string): Promise<HookCall> {
  const start = Date.now();
  const headers: Record<string, string> = { 'User-Agent': 'kube-lifecycle/1.30' };
  for (const x of h.httpHeaders ?? []) headers[x.name] = x.value;
  if (token !== undefined) headers['X-Hook-Runner-Token'] = token;
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: h.port, path: h.path, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ ok: true, status: res.statusCode, start, end: Date.now() }));
      res.on('error', (e) => resolve({ ok: false, error: e.message, start, end: Date.now() }));
    });
    // The kubelet abandons PreStop when the grace period runs out.
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs}ms`)));
    req.on('error', (e) => resolve({ ok: false, error: e.message, start, end: Date.now() }));
  });
}

/** Plain GET to the sidecar returning the body (for /last, /metrics). */
export function get(port: number, path: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers: token ? { 'X-Hook-Runner-Token': token } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export interface ContainerDef {
  name: string;
  uid?: number;
  gid?: number;
  /** Bounding set of a uid-0 container, like a runtime's default capability set. */
  bounding?: string[];
  env?: Record<string, string>;
  /** argv of the app; the fake app by default. */
  command?: string[];
  /** Not started when false (e.g. started later by the test). */
  start?: boolean;
}

export interface PodDef {
  name: string;
  graceSeconds: number;
  /** The hooks annotation (YAML or JSON text, or an object). */
  hooks: unknown;
  containers: ContainerDef[];
  /** Changes the capability list `inject` wrote, to show what a missing one does. */
  capsOverride?: (caps: string[]) => string[];
  /** Extra sidecar env, e.g. KUBERNETES_SERVICE_HOST/PORT of a fake API server. */
  sidecarEnv?: Record<string, string>;
  /** Files (token, ca.crt) mounted at /var/run/secrets/kubernetes.io/serviceaccount in the pod's mount namespace. */
  serviceAccountDir?: string;
  /** A network namespace (`ip netns` name) the sidecar runs in, as in a pod; callers then use its address. */
  netns?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  t: number;
}

export interface RunningContainer {
  def: ContainerDef;
  /** Host pid of the container's main process (the app itself: unshare/bash/env/setpriv all exec). */
  pid: number;
  child: ChildProcess;
  exited: Promise<ExitInfo>;
  exit?: ExitInfo;
  spec: { env?: Array<{ name: string; value?: string }>; lifecycle?: { postStart?: { httpGet: HttpGetHook }; preStop?: { httpGet: HttpGetHook } } };
  postStart?: HookCall;
}

export interface TerminateResult {
  preStop?: HookCall;
  termAt: number;
  killAt?: number;
  exit: ExitInfo;
}

export class Pod {
  readonly dir: string;
  readonly containers = new Map<string, RunningContainer>();
  readonly sidecarLog: string[] = [];
  sidecarStderr = '';
  injected!: Record<string, any>;
  sidecarSpec!: Record<string, any>;
  sidecarPid = 0;
  sidecarCaps: string[] = [];
  sidecarExited!: Promise<ExitInfo>;
  sidecarExit?: ExitInfo;
  port = 0;
  token = '';
  private init?: ChildProcess;
  private initPid = 0;
  private pidNs?: string;
  private readonly children: ChildProcess[] = [];

  private constructor(readonly def: PodDef) {
    this.dir = mkdtempSync('/tmp/hook-runner-harness-');
    chmodSync(this.dir, 0o777);
  }

  log(name: string): string {
    return join(this.dir, `${name}.log`);
  }

  /** Events the fake app wrote. */
  appEvents(name: string): Array<Record<string, any>> {
    try {
      return readFileSync(this.log(name), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, any>);
    } catch {
      return [];
    }
  }

  sidecarLines(): Array<Record<string, any>> {
    return this.sidecarLog.map((l) => {
      try {
        return JSON.parse(l) as Record<string, any>;
      } catch {
        return { raw: l };
      }
    });
  }

  static async start(def: PodDef): Promise<Pod> {
    const pod = new Pod(def);
    try {
      await pod.boot();
    } catch (e) {
      await pod.destroy();
      throw e;
    }
    return pod;
  }

  private async boot(): Promise<void> {
    this.port = await freePort();
    this.inject();
    // The pod's PID namespace; its init (pid 1) reaps orphans, as the pause container does.
    this.init = spawn('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child', 'bash', '-c', 'trap "" TERM; while :; do sleep 3600 & wait $!; done'], { stdio: 'ignore' });
    this.children.push(this.init);
    this.initPid = await until('pod init', () => {
      const fork = childOf(this.init!.pid!); // unshare --fork: the child is pid 1 of the namespace
      return fork && procStatusField(fork, 'NSpid')?.split(/\s+/)[1] === '1' ? fork : undefined;
    });
    if (this.def.serviceAccountDir) {
      // As the kubelet mounts it: a tmpfs over /run, only in the pod's mount namespace.
      const sa = '/run/secrets/kubernetes.io/serviceaccount';
      const r = spawnSync(
        'nsenter',
        [
          '--target',
          String(this.initPid),
          '--mount',
          '--',
          'sh',
          '-c',
          `mount -t tmpfs -o mode=0755 hr-run /run && mkdir -p ${sa} && cp ${q(this.def.serviceAccountDir)}/* ${sa}/ && chmod -R a+rX /run/secrets`,
        ],
        { encoding: 'utf8', timeout: 10_000 },
      );
      if (r.status !== 0) throw new Error(`cannot mount the service-account files: ${r.stderr}`);
    }
    await this.startSidecar();
    for (const c of this.def.containers) if (c.start !== false) await this.startContainer(c.name);
  }

  /** Runs the built `hook-runner inject` on the pod manifest: the sidecar half meets the webhook half here. */
  private inject(): void {
    const manifest = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: this.def.name,
        namespace: 'harness',
        uid: `uid-${this.def.name}`,
        annotations: { 'hook-runner.dev/hooks': typeof this.def.hooks === 'string' ? this.def.hooks : JSON.stringify(this.def.hooks) },
      },
      spec: { terminationGracePeriodSeconds: this.def.graceSeconds, containers: this.def.containers.map((c) => ({ name: c.name, image: 'harness/fake-app' })) },
    };
    writeFileSync(join(this.dir, 'pod.yaml'), toYaml(manifest));
    writeFileSync(join(this.dir, 'config.yaml'), toYaml({ sidecar: { port: this.port, mode: 'native' } }));
    const r = spawnSync(process.execPath, [CLI, 'inject', '-f', join(this.dir, 'pod.yaml'), '--config', join(this.dir, 'config.yaml'), '-o', 'json'], { encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new Error(`hook-runner inject failed (${r.status}): ${r.stderr}`);
    this.injected = JSON.parse(r.stdout) as Record<string, any>;
    const all = [...(this.injected.spec.initContainers ?? []), ...this.injected.spec.containers] as Array<Record<string, any>>;
    const sc = all.find((c) => c.name === 'hook-runner');
    if (!sc) throw new Error('inject wrote no hook-runner container');
    this.sidecarSpec = sc;
  }

  private downward(fieldPath: string): string {
    const m = this.injected.metadata;
    return ({ 'metadata.name': m.name, 'metadata.namespace': m.namespace, 'metadata.uid': m.uid ?? '', 'spec.nodeName': 'harness-node' } as Record<string, string>)[fieldPath] ?? '';
  }

  private envOf(spec: { env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }> }): Record<string, string> {
    const out: Record<string, string> = {};
    for (const e of spec.env ?? []) out[e.name] = e.value ?? (e.valueFrom?.fieldRef ? this.downward(e.valueFrom.fieldRef.fieldPath) : '');
    return out;
  }

  private async startSidecar(): Promise<void> {
    const sc = this.sidecarSpec.securityContext ?? {};
    const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...this.envOf(this.sidecarSpec), ...(this.def.sidecarEnv ?? {}) };
    this.token = env.HOOK_RUNNER_TOKEN ?? '';
    const uid = Number(sc.runAsUser ?? 0);
    const gid = Number(sc.runAsGroup ?? uid);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) throw new Error('inject wrote a sidecar securityContext that does not drop ALL capabilities');
    let caps = ((sc.capabilities?.add ?? []) as string[]).map((c) => c.toLowerCase());
    if (this.def.capsOverride) caps = this.def.capsOverride(caps);
    this.sidecarCaps = caps;
    const capList = caps.map((c) => `,+${c}`).join('');
    // uid 0: exec gives it the bounding set; another uid: caps must be inheritable and ambient.
    const setpriv = [
      `--reuid=${uid}`,
      `--regid=${gid}`,
      '--clear-groups',
      `--bounding-set=-all${capList}`,
      uid === 0 || !caps.length ? '--inh-caps=-all' : `--inh-caps=-all${capList}`,
      ...(uid !== 0 && caps.length ? [`--ambient-caps=-all${capList}`] : []),
    ];
    if (sc.allowPrivilegeEscalation === false) setpriv.push('--nnp');
    const net = this.def.netns ? [`--net=/run/netns/${this.def.netns}`] : [];
    const child = spawn(
      'nsenter',
      ['--target', String(this.initPid), '--pid', '--mount', ...net, '--', 'setpriv', ...setpriv, '--', process.execPath, CLI, ...(this.sidecarSpec.args ?? ['sidecar'])],
      { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' },
    );
    this.children.push(child);
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      buf += c;
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      this.sidecarLog.push(...lines.filter(Boolean));
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (this.sidecarStderr += c));
    // Resolves once its stdout is read to the end too (bounded): 'exit' can come before the last log lines.
    const outClosed = new Promise<void>((r) => child.stdout!.once('close', () => r()));
    this.sidecarExited = new Promise((res) => {
      child.on('exit', (code, signal) => {
        const info = (this.sidecarExit = { code, signal, t: Date.now() });
        void Promise.race([outClosed, sleep(5000)]).then(() => res(info));
      });
    });
    this.sidecarPid = await until('sidecar process', () => childOf(child.pid!));
    // What the sidecar's PostStart does in both modes: hook-runner wait-ready.
    const waitReady = [process.execPath, CLI, 'wait-ready', '--port', String(this.port), '--timeout-seconds', '15'];
    const r = this.def.netns
      ? spawnSync('ip', ['netns', 'exec', this.def.netns, ...waitReady], { encoding: 'utf8', timeout: 20_000 })
      : spawnSync(waitReady[0]!, waitReady.slice(1), { encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new Error(`sidecar not ready: ${r.stderr}\nsidecar stderr: ${this.sidecarStderr}\nlog: ${this.sidecarLog.join('\n')}`);
  }

  private podPidNs(): string {
    const ns = (this.pidNs ??= pidNamespace(this.initPid));
    if (!ns) throw new Error(`pod ${this.def.name}: its init ${this.initPid} is gone, so its PID namespace cannot be read`);
    return ns;
  }

  /** Host pids of this pod's PID namespace whose command line is exactly `argv`. */
  processesWithArgv(argv: string[]): number[] {
    return processesWithArgv(argv, this.podPidNs());
  }

  /** Every process of this pod's PID namespace, with its command line. */
  processes(): Array<{ pid: number; argv: string[] }> {
    const ns = this.podPidNs();
    const out: Array<{ pid: number; argv: string[] }> = [];
    for (const n of readdirSync('/proc')) {
      if (!/^[0-9]+$/.test(n) || pidNamespace(Number(n)) !== ns) continue;
      try {
        out.push({ pid: Number(n), argv: readFileSync(`/proc/${n}/cmdline`, 'utf8').split('\0').slice(0, -1) });
      } catch {
        /* gone */
      }
    }
    return out;
  }

  /** A /proc/PID/status field of host pid `pid` as the pod sees it (through the pod's own /proc). */
  podView(pid: number, field: string): string | undefined {
    const nsPid = procStatusField(pid, 'NSpid')?.split(/\s+/)[1];
    if (!nsPid) return undefined;
    try {
      return new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${this.initPid}/root/proc/${nsPid}/status`, 'utf8'))?.[1]?.trim();
    } catch {
      return undefined;
    }
  }

  /** Starts a container (own mount ns, private tmpfs, its uid) and, as the kubelet does, calls its PostStart. */
  async startContainer(name: string): Promise<RunningContainer> {
    const def = this.def.containers.find((c) => c.name === name)!;
    const spec = (this.injected.spec.containers as Array<Record<string, any>>).find((c) => c.name === name)!;
    const uid = def.uid ?? 0;
    const gid = def.gid ?? uid;
    const cdir = join(this.dir, `c-${name}`);
    mkdirSync(join(cdir, 'private'), { recursive: true });
    mkdirSync(join(cdir, 'work'), { recursive: true });
    spawnSync('chown', ['-R', `${uid}:${gid}`, cdir]);
    const env: Record<string, string> = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/',
      APP_LOG: this.log(name),
      ...this.envOf(spec),
      ...(def.env ?? {}),
    };
    const command = def.command ?? [process.execPath, FAKE_APP];
    const bounding = def.bounding ? [`--bounding-set=-all${def.bounding.map((c) => `,+${c}`).join('')}`] : [];
    const script = [
      'set -e',
      `mount -t tmpfs -o mode=0755 hr-private ${q(join(cdir, 'private'))}`,
      `echo ${q(`secret-of-${name}`)} > ${q(join(cdir, 'private/marker'))}`,
      `chown ${uid}:${gid} ${q(join(cdir, 'private'))} ${q(join(cdir, 'private/marker'))}`,
      `cd ${q(join(cdir, 'work'))}`,
      `exec env -i ${Object.entries(env)
        .map(([k, v]) => q(`${k}=${v}`))
        .join(' ')} setpriv --reuid=${uid} --regid=${gid} --clear-groups --inh-caps=-all ${bounding.join(' ')} -- ${command.map(q).join(' ')}`,
    ].join('\n');
    // A restart appends to the same event log: wait for a start event of this run, not an earlier one.
    const startsBefore = this.appEvents(name).filter((e) => e.ev === 'start').length;
    const child = spawn('nsenter', ['--target', String(this.initPid), '--pid', '--mount', '--', 'unshare', '--mount', '--propagation', 'private', '--', 'bash', '-c', script], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.children.push(child);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const rc: RunningContainer = { def, pid: 0, child, spec, exited: undefined as unknown as Promise<ExitInfo> };
    rc.exited = new Promise((res) => child.on('exit', (code, signal) => res((rc.exit = { code, signal, t: Date.now() }))));
    rc.pid = await until(`container ${name}`, () => childOf(child.pid!));
    // As under a runtime (shim, conmon): seen from inside the pod, the main process's parent is
    // outside the PID namespace (nsenter forked it into the namespace), so its PPid there is 0.
    const ppid = this.podView(rc.pid, 'PPid');
    if (ppid !== '0') throw new Error(`container ${name}: main process ${rc.pid} has PPid ${ppid} inside the pod, want 0 (started by the runtime)`);
    // Wait until the app itself runs (the exec chain ends in it, same pid).
    await until(
      `container ${name} app start (stderr: ${stderr})`,
      () => (def.command ? procStatusField(rc.pid, 'Uid')?.split(/\s+/)[0] === String(uid) : this.appEvents(name).filter((e) => e.ev === 'start').length > startsBefore),
      10_000,
    );
    this.containers.set(name, rc);
    const ps = spec.lifecycle?.postStart?.httpGet as HttpGetHook | undefined;
    if (ps) rc.postStart = await kubeletCall(ps, 60_000);
    return rc;
  }

  /** The kubelet stopping one container: PreStop (bounded by the grace), SIGTERM, SIGKILL at the end of the grace. */
  async terminate(name: string, graceSeconds = this.def.graceSeconds): Promise<TerminateResult> {
    const c = this.containers.get(name)!;
    const t0 = Date.now();
    const graceEnd = t0 + graceSeconds * 1000;
    const ps = c.spec.lifecycle?.preStop?.httpGet as HttpGetHook | undefined;
    let preStop: HookCall | undefined;
    if (ps && graceSeconds > 0) preStop = await kubeletCall(ps, graceSeconds * 1000);
    const termAt = Date.now();
    try {
      process.kill(c.pid, 'SIGTERM');
    } catch {
      /* exited already */
    }
    // After PreStop the container always gets at least 2 s (minimumGracePeriodInSeconds).
    const killAtMs = Math.max(graceEnd, termAt + 2000);
    const exited = await Promise.race([c.exited, sleep(Math.max(0, killAtMs - Date.now())).then(() => undefined)]);
    if (exited) return { ...(preStop ? { preStop } : {}), termAt, exit: exited };
    const killAt = Date.now();
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    const exit = await Promise.race([c.exited, sleep(5000).then(() => ({ code: null, signal: null, t: -1 }) as ExitInfo)]);
    return { ...(preStop ? { preStop } : {}), termAt, killAt, exit };
  }

  /** SIGTERM to the sidecar, SIGKILL after `graceSeconds`; resolves with how it ended. */
  async stopSidecar(graceSeconds = this.def.graceSeconds): Promise<ExitInfo & { termAt: number; killed: boolean }> {
    const termAt = Date.now();
    try {
      process.kill(this.sidecarPid, 'SIGTERM');
    } catch {
      /* gone */
    }
    const e = await Promise.race([this.sidecarExited, sleep(graceSeconds * 1000).then(() => undefined)]);
    if (e) return { ...e, termAt, killed: false };
    try {
      process.kill(this.sidecarPid, 'SIGKILL');
    } catch {
      /* gone */
    }
    return { ...(await this.sidecarExited), termAt, killed: true };
  }

  /** Kills the namespace's init (the kernel then kills every process in the pod) and removes the files. */
  async destroy(): Promise<void> {
    if (this.initPid) {
      try {
        process.kill(this.initPid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.race([Promise.all(this.children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r))))), sleep(5000)]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A self-signed certificate for the HTTPS target (openssl), or undefined when openssl is missing. */
export function selfSignedCert(dir: string): { cert: string; key: string } | undefined {
  if (!which('openssl')) return undefined;
  const cert = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=app.local', '-days', '1', '-keyout', key, '-out', cert], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  if (r.status !== 0) return undefined;
  chmodSync(key, 0o644);
  return { cert, key };
}

export { parseYaml };

/**
 * Starts a pod for one test and always destroys it; on failure, prints what the sidecar said.
 * Skips, saying why, where the harness cannot run. With `tokenNeverLogged`, also asserts the token
 * appears in no line the sidecar wrote.
 */
export async function withPod(t: TestContext, def: PodDef, body: (pod: Pod) => Promise<void>, opts: { tokenNeverLogged?: boolean } = {}): Promise<void> {
  const missing = missingPrerequisite();
  if (missing) {
    t.skip(missing);
    return;
  }
  const pod = await Pod.start(def);
  try {
    await body(pod);
    if (opts.tokenNeverLogged) assert.ok(!pod.sidecarLog.join('\n').includes(pod.token) && !pod.sidecarStderr.includes(pod.token), 'the token is in no log line');
  } catch (e) {
    t.diagnostic(`sidecar log:\n${pod.sidecarLog.slice(-40).join('\n')}\nstderr: ${pod.sidecarStderr}`);
    throw e;
  } finally {
    await pod.destroy();
  }
}

/** The sidecar's report of the last run of a container's phase (`GET .../last`, token sent). */
export async function lastReport(pod: Pod, container: string, phase: string): Promise<Record<string, any>> {
  const r = await get(pod.port, `/v1/hooks/${container}/${phase}/last`, pod.token);
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as Record<string, any>;
}
