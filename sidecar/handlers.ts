/**
 * The handler kinds (DESIGN §3, §6): exec inside the target container, http/httpGet, sleep, signal,
 * tcpSocket. Each runs one attempt and honours the abort signal (timeout or PreStop deadline).
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import type { HttpAction, HttpGetAction, SignalAction, TcpSocketAction } from '../common/spec.js';
import { capBit, capNames, setprivCapList } from './caps.js';
import { isRunAlive, readEnviron, readStat, readStatus, type ProcStatus } from './proc.js';
import { delay, type AttemptResult } from './runner.js';
import { Tail } from './tail.js';

// node:child_process and node:https (with tls) load on first use: most pods never exec or call
// HTTPS, and every module loaded before the listen delays the sidecar's readiness.
const requireBuiltin = createRequire(import.meta.url);
const childProcess = (): typeof import('node:child_process') => requireBuiltin('node:child_process') as typeof import('node:child_process');
const httpsModule = (): typeof import('node:https') => requireBuiltin('node:https') as typeof import('node:https');

export interface Target {
  pid: number;
  startTime: number;
}

export interface ExecTools {
  nsenter: string;
  /** util-linux setpriv: sets the target's gid and supplementary groups, narrows the bounding set. */
  setpriv?: string;
}

export interface ExecPlan {
  file: string;
  args: string[];
  /** Capabilities a uid-0 command would hold beyond the target's bounding set (none when narrowed). */
  excessCaps: string[];
}

/**
 * Builds the command line that runs `command` in the target's root and cwd as its uid/gid. The root
 * and cwd arrive as fds 3 and 4 (opened by the sidecar, which holds SYS_PTRACE), so nsenter needs
 * only SYS_CHROOT and SETUID, and a narrowed bounding set can leave SYS_PTRACE out.
 */
export function planExec(command: readonly string[], target: Pick<ProcStatus, 'uid' | 'gid' | 'groups' | 'capBnd'>, self: { capEff: bigint; capPrm: bigint }, tools: ExecTools): ExecPlan {
  const nsenterArgs = ['--root=/proc/self/fd/3', '--wd=/proc/self/fd/4'];
  if (target.uid !== 0) nsenterArgs.push(`--setuid=${target.uid}`);
  nsenterArgs.push('--', ...command);
  let excess = target.uid === 0 ? self.capPrm & ~target.capBnd : 0n;
  const pre: string[] = [];
  if (tools.setpriv) {
    pre.push(`--regid=${target.gid}`);
    pre.push(target.groups.length ? `--groups=${target.groups.join(',')}` : '--clear-groups');
    // Narrowing the bounding set needs CAP_SETPCAP. With no_new_privs (allowPrivilegeEscalation:
    // false) the command then holds at most (target bounding ∩ ours) plus SYS_CHROOT for nsenter.
    if (excess !== 0n && (self.capEff & capBit('setpcap')) !== 0n) {
      pre.push(`--bounding-set=${setprivCapList((target.capBnd & self.capPrm) | capBit('sys_chroot'))}`);
      excess = capBit('sys_chroot') & ~target.capBnd & self.capPrm;
    }
    return { file: tools.setpriv, args: [...pre, '--', tools.nsenter, ...nsenterArgs], excessCaps: capNames(excess) };
  }
  // Without setpriv nsenter sets the gid (and clears supplementary groups).
  return { file: tools.nsenter, args: [`--setgid=${target.gid}`, ...nsenterArgs], excessCaps: capNames(excess) };
}

export function envObject(entries: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of entries) {
    const i = e.indexOf('=');
    if (i > 0) out[e.slice(0, i)] = e.slice(i + 1);
  }
  return out;
}

export interface ExecContext {
  procRoot: string;
  tools: ExecTools;
  self: { capEff: bigint; capPrm: bigint };
  /** Called once per attempt when the command will hold capabilities the target lacks. */
  onExcessCaps?: (caps: string[]) => void;
}

/** Kills a detached child's whole process group; ESRCH (already gone) is fine. */
export function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* gone already */
  }
}

export async function runExec(command: readonly string[], target: Target, signal: AbortSignal, ctx: ExecContext): Promise<AttemptResult> {
  let status: ProcStatus;
  let env: string[];
  let rootFd = -1;
  let cwdFd = -1;
  try {
    status = readStatus(target.pid, ctx.procRoot);
    env = readEnviron(target.pid, ctx.procRoot);
    rootFd = openSync(`${ctx.procRoot}/${target.pid}/root`, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    cwdFd = openSync(`${ctx.procRoot}/${target.pid}/cwd`, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    // The pid may have been reused between discovery and open: check the run is still the same.
    if (!isRunAlive(target.pid, target.startTime, ctx.procRoot)) throw new Error(`target process ${target.pid} has exited`);
  } catch (e) {
    if (rootFd >= 0) closeSync(rootFd);
    if (cwdFd >= 0) closeSync(cwdFd);
    const err = e as NodeJS.ErrnoException;
    const hint = err.code === 'EACCES' || err.code === 'EPERM' ? ' (the sidecar needs SYS_PTRACE and DAC_READ_SEARCH to reach a process of another uid)' : '';
    return { ok: false, error: `cannot reach target process ${target.pid}: ${err.message}${hint}` };
  }
  const plan = planExec(command, status, ctx.self, ctx.tools);
  if (plan.excessCaps.length) ctx.onExcessCaps?.(plan.excessCaps);
  const tail = new Tail();
  return new Promise<AttemptResult>((resolve) => {
    let settled = false;
    const finish = (r: AttemptResult) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      resolve({ ...r, output: tail.toString() });
    };
    let child: ChildProcess;
    try {
      // detached: own session and process group, so a timeout kills every process the command forked.
      child = childProcess().spawn(plan.file, plan.args, { env: envObject(env), stdio: ['ignore', 'pipe', 'pipe', rootFd, cwdFd], detached: true });
    } catch (e) {
      closeSync(rootFd);
      closeSync(cwdFd);
      finish({ ok: false, error: `cannot start ${plan.file}: ${(e as Error).message}` });
      return;
    }
    closeSync(rootFd);
    closeSync(cwdFd);
    const onAbort = () => {
      if (child.pid) killGroup(child.pid);
      finish({ ok: false, error: 'killed (process group)', exitCode: null });
    };
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    child.stdout?.on('data', (b: Buffer) => tail.push(b));
    child.stderr?.on('data', (b: Buffer) => tail.push(b));
    child.on('error', (e) => finish({ ok: false, error: `cannot start ${plan.file}: ${e.message}` }));
    child.on('exit', (code, sig) => {
      // Background children may keep the pipes open; give the output a moment, then stop reading.
      setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        if (code === 0) finish({ ok: true, exitCode: 0 });
        else finish({ ok: false, exitCode: code, error: sig ? `killed by ${sig}` : `exit code ${code}` });
      }, 30);
    });
  });
}

/** Sends the signal to the container's main process; with waitForExit, polls until that run is gone. */
export async function runSignal(a: SignalAction, target: Target, signal: AbortSignal, procRoot: string): Promise<AttemptResult> {
  if (!isRunAlive(target.pid, target.startTime, procRoot)) return { ok: false, error: `main process ${target.pid} is not running` };
  const num = osConstants.signals[a.name as keyof typeof osConstants.signals];
  try {
    process.kill(target.pid, num);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const hint = err.code === 'EPERM' ? ' (signalling a process of another uid needs CAP_KILL)' : '';
    return { ok: false, error: `kill(${target.pid}, ${a.name}): ${err.message}${hint}` };
  }
  if (!a.waitForExit) return { ok: true, output: `sent ${a.name} to pid ${target.pid}` };
  // Bounded by the attempt's timeout/deadline signal.
  while (!signal.aborted) {
    if (!isRunAlive(target.pid, target.startTime, procRoot)) return { ok: true, output: `sent ${a.name} to pid ${target.pid}; it exited` };
    await delay(50, signal);
  }
  return { ok: false, error: `pid ${target.pid} still running after ${a.name}`, output: readStat(target.pid, procRoot)?.state ?? '' };
}

const USER_AGENT = 'hook-runner';

/** httpGet and http: 200-399 is success; redirects are never followed; HTTPS is not verified (as the kubelet). */
export async function runHttp(a: HttpGetAction | HttpAction, signal: AbortSignal): Promise<AttemptResult> {
  const method = 'method' in a ? a.method : 'GET';
  const list = 'headers' in a ? a.headers : a.httpHeaders;
  const headers: Record<string, string> = { 'User-Agent': USER_AGENT, Accept: '*/*' };
  for (const h of list) headers[h.name] = h.value;
  const body = 'body' in a ? a.body : undefined;
  const mod = a.scheme === 'HTTPS' ? httpsModule() : http;
  const tail = new Tail();
  return new Promise<AttemptResult>((resolve) => {
    const req = mod.request(
      { host: a.host, port: a.port, path: a.path, method, headers, signal, agent: false, rejectUnauthorized: false },
      (res) => {
        const status = res.statusCode ?? 0;
        res.on('data', (b: Buffer) => tail.push(b));
        res.on('error', () => {});
        res.on('end', () => {
          const ok = status >= 200 && status < 400;
          resolve({ ok, status, output: tail.toString(), ...(ok ? {} : { error: `HTTP ${status}` }) });
        });
      },
    );
    req.on('error', (e) => resolve({ ok: false, error: `${method} ${a.scheme.toLowerCase()}://${a.host}:${a.port}${a.path}: ${e.message}`, output: tail.toString() }));
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

export async function runTcp(a: TcpSocketAction, signal: AbortSignal): Promise<AttemptResult> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve({ ok: false, error: `connect ${a.host}:${a.port}: aborted` });
    const sock = net.connect({ host: a.host, port: a.port });
    // destroy() without an error emits only 'close': settle here, or an aborted connect never ends.
    const onAbort = () => {
      sock.destroy();
      resolve({ ok: false, error: `connect ${a.host}:${a.port}: aborted` });
    };
    signal.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve({ ok: true });
    });
    sock.once('error', (e) => {
      signal.removeEventListener('abort', onAbort);
      resolve({ ok: false, error: `connect ${a.host}:${a.port}: ${e.message}` });
    });
  });
}

export async function runSleep(seconds: number, signal: AbortSignal): Promise<AttemptResult> {
  const full = await delay(seconds * 1000, signal);
  return full ? { ok: true } : { ok: false, error: 'sleep interrupted' };
}
