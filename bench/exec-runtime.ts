/**
 * Exec hook latency against the runtime's own exec (issue 13.2). In the podman pod of tier 2
 * (test/e2e/local/podman.ts: real containers under podman + runc, the sidecar in container mode),
 * alternating: a hook call whose only handler is `exec: [true]` (the kubelet's httpGet, new
 * connection) versus `podman exec <app> true` and `runc exec <app> true`, which is what a native exec
 * hook costs (the kubelet's ExecSync ends in `runc exec`). A second call for the same container run
 * gets the stored answer, so the app container is restarted (untimed) before every sample.
 * Everything that uses podman runs under `flock /tmp/e2e-local.lock`, as e2e:local does.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { kubeletCall, type HttpGetHook } from '../test/harness/pod.js';
import { percentile, round } from './stats.js';

export interface ExecVsRuntimeOptions {
  /** Alternating samples of each; 0 skips the step. */
  samples: number;
  log?: (line: string) => void;
}

export type ExecVsRuntimeResults = Record<string, number | string>;

const LOCK = '/tmp/e2e-local.lock';
const MANIFEST = fileURLToPath(new URL('./exec-vs-runtime.yaml', import.meta.url));
const APP_SH = fileURLToPath(new URL('../test/e2e/local/app.sh', import.meta.url));

type Obj = Record<string, any>;

function sh(cmd: string, args: string[], timeoutMs = 60_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.error?.message}): ${r.stderr}`);
  return r.stdout;
}

/**
 * The bench's pod, played as e2e:local plays one (test/e2e/local/podman.ts: inject in container
 * mode, host network, downward-API fields filled in, annotations and ports dropped), with the
 * node's address fields (status.hostIP/hostIPs) as 127.0.0.1.
 */
interface BenchPod {
  app: string;
  hook: HttpGetHook;
  destroy: () => void;
}

async function playPod(images: { sidecar: string; app: string }, cli: string, freePort: () => Promise<number>): Promise<BenchPod> {
  const dir = mkdtempSync('/tmp/hook-runner-bench-exec-');
  chmodSync(dir, 0o777); // the app runs as uid 1000 and writes its events here
  const m = parseYaml(readFileSync(MANIFEST, 'utf8')) as Obj;
  const name = String(m.metadata.name);
  const played = join(dir, 'played.json');
  const destroy = () => {
    spawnSync('podman', ['kube', 'play', '--down', played], { stdio: 'ignore', timeout: 60_000 });
    spawnSync('podman', ['pod', 'rm', '-f', '--ignore', name], { stdio: 'ignore', timeout: 60_000 });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    spawnSync('podman', ['pod', 'rm', '-f', '--ignore', name], { stdio: 'ignore', timeout: 60_000 });
    copyFileSync(APP_SH, join(dir, 'app.sh'));
    const [sidecarPort, appPort] = [await freePort(), await freePort()];
    for (const v of m.spec.volumes) if (v.hostPath) v.hostPath.path = dir;
    for (const c of m.spec.containers as Obj[]) for (const e of c.env ?? []) if (e.name === 'APP_PORT') e.value = String(appPort);
    writeFileSync(join(dir, 'pod.yaml'), toYaml(m));
    writeFileSync(join(dir, 'config.yaml'), toYaml({ sidecar: { image: images.sidecar, imagePullPolicy: 'Never', port: sidecarPort } }));
    const injected = JSON.parse(sh(process.execPath, [cli, 'inject', '-f', join(dir, 'pod.yaml'), '--config', join(dir, 'config.yaml'), '-o', 'json', '--sidecar-mode', 'container'])) as Obj;
    const p = structuredClone(injected);
    p.spec.hostNetwork = true;
    delete p.metadata.annotations;
    const downward: Obj = {
      'metadata.name': name,
      'metadata.namespace': 'e2e-local',
      'metadata.uid': `uid-${name}`,
      'spec.nodeName': 'bench',
      'status.hostIP': '127.0.0.1',
      'status.hostIPs': '127.0.0.1',
    };
    for (const c of p.spec.containers as Obj[]) {
      delete c.ports;
      for (const e of c.env ?? []) {
        const path = e.valueFrom?.fieldRef?.fieldPath as string | undefined;
        if (path === undefined) continue;
        if (!(path in downward)) throw new Error(`the bench cannot resolve fieldRef ${path}`);
        e.value = String(downward[path]);
        delete e.valueFrom;
      }
    }
    writeFileSync(played, JSON.stringify(p, null, 2));
    sh('podman', ['kube', 'play', played], 120_000);
    const sidecar = (injected.spec.containers as Obj[])[0]!;
    const ps = sidecar.lifecycle?.postStart?.exec?.command as string[];
    sh('podman', ['exec', `${name}-${sidecar.name}`, ...ps, '--timeout-seconds', '30'], 45_000);
    const hook = (injected.spec.containers as Obj[]).find((c) => c.name === 'app')?.lifecycle?.postStart?.httpGet as HttpGetHook | undefined;
    if (!hook) throw new Error('inject wrote no postStart httpGet for app');
    return { app: `${name}-app`, hook, destroy };
  } catch (e) {
    destroy();
    throw e;
  }
}

/** Holds `flock LOCK` until `release()`: a flock process that keeps the lock while its stdin is open. */
async function lock(timeoutSec: number): Promise<{ release: () => void }> {
  const holder: ChildProcess = spawn('flock', ['-w', String(timeoutSec), LOCK, '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    holder.once('error', (e) => reject(new Error(`flock ${LOCK}: ${e.message}`)));
    holder.once('exit', (code) => reject(new Error(`flock ${LOCK} gave up after ${timeoutSec} s (exit ${code}): e2e:local holds the lock`)));
    holder.stdout!.once('data', () => resolve());
  });
  return { release: () => holder.stdin!.end() };
}

function timedRun(cmd: string, args: string[]): { ms: number; ok: boolean; err: string } {
  const t = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  return { ms: performance.now() - t, ok: r.status === 0, err: `${r.error?.message ?? ''}${r.stderr ?? ''}`.trim() };
}

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

export async function benchExecVsRuntime(o: ExecVsRuntimeOptions): Promise<ExecVsRuntimeResults> {
  const skip = (why: string): ExecVsRuntimeResults => {
    o.log?.(`exec vs runtime: skipped (${why})`);
    return { 'exec_vs_runtime.skipped': why };
  };
  if (o.samples <= 0) return skip('not run in this profile');
  if (!has('flock')) return skip('needs flock (util-linux)');
  const podman = await import('../test/e2e/local/podman.js');
  const missing = podman.missingPrerequisite();
  if (missing) return skip(missing);

  const held = await lock(600);
  let pod: BenchPod | undefined;
  try {
    pod = await playPod({ sidecar: podman.IMAGE, app: podman.APP_IMAGE }, podman.CLI, podman.freePort);
    const { app } = pod;
    const id = spawnSync('podman', ['inspect', '--format', '{{.Id}}', app], { encoding: 'utf8', timeout: 30_000 }).stdout.trim();
    // podman (as root) keeps runc's state under /run/runc, runc's own default.
    const runcOk = id !== '' && spawnSync('runc', ['--root', '/run/runc', 'state', id], { stdio: 'ignore', timeout: 30_000 }).status === 0;
    const hook: number[] = [];
    const viaPodman: number[] = [];
    const viaRunc: number[] = [];
    const warm = 2;
    for (let i = 0; i < o.samples + warm; i++) {
      // A new run of the app for every hook sample (untimed): the same run gets the stored answer.
      const r = timedRun('podman', ['restart', '-t', '0', app]);
      if (!r.ok) throw new Error(`podman restart ${app}: ${r.err}`);
      const timeHook = async () => {
        const t = performance.now();
        const c = await kubeletCall(pod!.hook, 30_000);
        if (!c.ok || c.status !== 200) throw new Error(`hook call (exec true): ${c.error ?? `HTTP ${c.status}`}`);
        return performance.now() - t;
      };
      const timePodman = () => {
        const p = timedRun('podman', ['exec', app, 'true']);
        if (!p.ok) throw new Error(`podman exec ${app} true: ${p.err}`);
        return p.ms;
      };
      const timeRunc = () => {
        const p = timedRun('runc', ['--root', '/run/runc', 'exec', id, 'true']);
        if (!p.ok) throw new Error(`runc exec ${id} true: ${p.err}`);
        return p.ms;
      };
      // Alternating order, so neither side always runs first after the restart.
      let h: number, p: number, rc: number | undefined;
      if (i % 2 === 0) {
        h = await timeHook();
        p = timePodman();
        rc = runcOk ? timeRunc() : undefined;
      } else {
        rc = runcOk ? timeRunc() : undefined;
        p = timePodman();
        h = await timeHook();
      }
      if (i < warm) continue;
      hook.push(h);
      viaPodman.push(p);
      if (rc !== undefined) viaRunc.push(rc);
    }
    const out: ExecVsRuntimeResults = {
      'exec_vs_runtime.samples': hook.length,
      'exec_vs_runtime.hook_p50_ms': round(percentile(hook, 50), 1),
      'exec_vs_runtime.hook_p99_ms': round(percentile(hook, 99), 1),
      'exec_vs_runtime.podman_exec_p50_ms': round(percentile(viaPodman, 50), 1),
      'exec_vs_runtime.podman_exec_p99_ms': round(percentile(viaPodman, 99), 1),
      'exec_vs_runtime.ratio_p50': round(percentile(hook, 50) / percentile(viaPodman, 50), 2),
      'exec_vs_runtime.ratio_p99': round(percentile(hook, 99) / percentile(viaPodman, 99), 2),
    };
    if (viaRunc.length) {
      Object.assign(out, {
        'exec_vs_runtime.runc_exec_p50_ms': round(percentile(viaRunc, 50), 1),
        'exec_vs_runtime.runc_exec_p99_ms': round(percentile(viaRunc, 99), 1),
        'exec_vs_runtime.ratio_runc_p50': round(percentile(hook, 50) / percentile(viaRunc, 50), 2),
        'exec_vs_runtime.ratio_runc_p99': round(percentile(hook, 99) / percentile(viaRunc, 99), 2),
      });
    } else out['exec_vs_runtime.runc_skipped'] = `runc --root /run/runc state ${id || '(no id)'} failed: podman's runc state is elsewhere`;
    o.log?.(
      `exec vs runtime: hook (exec true) p50 ${out['exec_vs_runtime.hook_p50_ms']} ms vs podman exec ${out['exec_vs_runtime.podman_exec_p50_ms']} ms (${out['exec_vs_runtime.ratio_p50']}x)${viaRunc.length ? `, runc exec ${out['exec_vs_runtime.runc_exec_p50_ms']} ms (${out['exec_vs_runtime.ratio_runc_p50']}x)` : ''}`,
    );
    return out;
  } finally {
    try {
      pod?.destroy();
    } finally {
      held.release();
    }
  }
}
