/**
 * The handler kinds (DESIGN §3, §6): exec inside the target container, http/httpGet, sleep, signal,
 * tcpSocket. Each runs one attempt and honours the abort signal (timeout or PreStop deadline).
 */
import type { ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { accessSync, closeSync, constants as fsConstants, openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { HttpAction, HttpGetAction, SignalAction, TcpSocketAction } from '../common/spec.js';
import { capBit, capNames } from './caps.js';
import { isRunAlive, readStat, readStatus, type ProcStatus } from './proc.js';
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
  /** The statically linked hook-exec helper (sidecar/native/hook-exec.c). */
  helper: string;
}

/** Where `npm run build` puts the helper: next to this module (dist/sidecar), or dist/ from the sources. */
const HELPER_CANDIDATES = ['./hook-exec', '../hook-exec', '../dist/sidecar/hook-exec'];

/** The hook-exec helper shipped with this build, or undefined when it was not built. */
export function findExecTools(): ExecTools | undefined {
  for (const rel of HELPER_CANDIDATES) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    try {
      accessSync(path, fsConstants.X_OK);
      return { helper: path };
    } catch {
      /* next */
    }
  }
  return undefined;
}

export interface ExecPlan {
  file: string;
  args: string[];
  /** Capabilities a uid-0 command would hold beyond the target's bounding set (none when narrowed). */
  excessCaps: string[];
}

/**
 * Builds the helper's command line: it runs `command` in the target's root and cwd (fds 3 and 4,
 * opened by the sidecar, which holds SYS_PTRACE) as the target's uid, gid and groups. With
 * CAP_SETPCAP the bounding set is narrowed to what the target has (∩ ours), so a uid-0 command holds
 * no more than the target; without it, a uid-0 command keeps ours and the excess is reported.
 */
export function planExec(command: readonly string[], target: Pick<ProcStatus, 'uid' | 'gid' | 'groups' | 'capBnd'>, self: { capEff: bigint; capPrm: bigint }, tools: ExecTools): ExecPlan {
  const args = ['--uid', String(target.uid), '--gid', String(target.gid), '--groups', target.groups.join(',')];
  let excess = target.uid === 0 ? self.capPrm & ~target.capBnd : 0n;
  if ((self.capEff & capBit('setpcap')) !== 0n) {
    args.push('--bounding', (target.capBnd & self.capPrm).toString(16));
    excess = 0n;
  }
  args.push('--', ...command);
  return { file: tools.helper, args, excessCaps: capNames(excess) };
}

export interface ExecContext {
  procRoot: string;
  tools: ExecTools;
  self: { capEff: bigint; capPrm: bigint };
  /** Called once per attempt when the command will hold capabilities the target lacks. */
  onExcessCaps?: (caps: string[]) => void;
}

/** Kills a detached child's whole process group; ESRCH (already gone) is fine. */
function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* gone already */
  }
}

/**
 * After the helper exits its output pipes close at once (it ends every process the command started).
 * Should something else still hold them (a descriptor passed away over a socket), stop reading after
 * this long.
 */
const PIPE_CLOSE_FALLBACK_MS = 250;
/** The helper ends the command's processes itself on SIGTERM; past this, its group is SIGKILLed. */
const HELPER_TERM_GRACE_MS = 10_000;

/** What exec needs of the target, opened now: its status, environment, and its root and cwd as descriptors. */
interface OpenedTarget {
  status: ProcStatus;
  env: Buffer;
  rootFd: number;
  cwdFd: number;
}

function openTarget(target: Target, procRoot: string): OpenedTarget | AttemptResult {
  let rootFd = -1;
  let cwdFd = -1;
  try {
    const status = readStatus(target.pid, procRoot);
    // Raw bytes: the helper hands them to the final execve unchanged (no decoding round trip).
    const env = readFileSync(`${procRoot}/${target.pid}/environ`);
    rootFd = openSync(`${procRoot}/${target.pid}/root`, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    cwdFd = openSync(`${procRoot}/${target.pid}/cwd`, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    // The pid may have been reused between discovery and open: check the run is still the same.
    if (!isRunAlive(target.pid, target.startTime, procRoot)) throw new Error(`target process ${target.pid} has exited`);
    return { status, env, rootFd, cwdFd };
  } catch (e) {
    if (rootFd >= 0) closeSync(rootFd);
    if (cwdFd >= 0) closeSync(cwdFd);
    const err = e as NodeJS.ErrnoException;
    const hint = err.code === 'EACCES' || err.code === 'EPERM' ? ' (the sidecar needs SYS_PTRACE and DAC_READ_SEARCH to reach a process of another uid)' : '';
    return { ok: false, error: `cannot reach target process ${target.pid}: ${err.message}${hint}` };
  }
}

export async function runExec(command: readonly string[], target: Target, signal: AbortSignal, ctx: ExecContext): Promise<AttemptResult> {
  const opened = openTarget(target, ctx.procRoot);
  if ('ok' in opened) return opened;
  const { status, env, rootFd, cwdFd } = opened;
  const plan = planExec(command, status, ctx.self, ctx.tools);
  if (plan.excessCaps.length) ctx.onExcessCaps?.(plan.excessCaps);
  const tail = new Tail();
  return new Promise<AttemptResult>((resolve) => {
    let settled = false;
    let fallback: NodeJS.Timeout | undefined;
    const finish = (r: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(fallback);
      signal.removeEventListener('abort', onAbort);
      resolve({ ...r, output: tail.toString() });
    };
    const outcome = (code: number | null, sig: NodeJS.Signals | null): AttemptResult =>
      code === 0 ? { ok: true, exitCode: 0 } : { ok: false, exitCode: code, error: sig ? `killed by ${sig}` : `exit code ${code}` };
    let child: ChildProcess;
    try {
      // The helper starts with an EMPTY environment: nothing the target chose (LD_PRELOAD, LD_AUDIT...)
      // reaches a privileged step. The target's environment goes on fd 5, for the final execve only.
      // detached: own process group, the last resort should the helper itself hang.
      child = childProcess().spawn(plan.file, plan.args, { env: {}, stdio: ['ignore', 'pipe', 'pipe', rootFd, cwdFd, 'pipe'], detached: true });
    } catch (e) {
      closeSync(rootFd);
      closeSync(cwdFd);
      finish({ ok: false, error: `cannot start ${plan.file}: ${(e as Error).message}` });
      return;
    }
    closeSync(rootFd);
    closeSync(cwdFd);
    // stdio[5]: the pipe asked for above (the typings list only five entries).
    const envPipe = (child.stdio as unknown as Array<Writable | null>)[5];
    envPipe?.on('error', () => {}); // EPIPE when the helper failed early: its exit status says why
    envPipe?.end(env);
    const onAbort = () => {
      // SIGTERM: the helper freezes, kills and reaps everything the command started, then exits.
      if (child.pid) {
        const pid = child.pid;
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* gone */
        }
        if (child.exitCode === null && child.signalCode === null) setTimeout(() => child.exitCode === null && child.signalCode === null && killGroup(pid), HELPER_TERM_GRACE_MS).unref();
      }
      finish({ ok: false, error: 'killed (timeout: the command and every process it started)', exitCode: null });
    };
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    child.stdout?.on('data', (b: Buffer) => tail.push(b));
    child.stderr?.on('data', (b: Buffer) => tail.push(b));
    child.on('error', (e) => finish({ ok: false, error: `cannot start ${plan.file}: ${e.message}` }));
    // 'close' comes once the helper exited and its pipes are drained: all the output is in.
    child.on('close', (code, sig) => finish(outcome(code, sig)));
    child.on('exit', (code, sig) => {
      fallback = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish(outcome(code, sig));
      }, PIPE_CLOSE_FALLBACK_MS);
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
    const req = mod.request({ host: a.host, port: a.port, path: a.path, method, headers, signal, agent: false, rejectUnauthorized: false }, (res) => {
      const status = res.statusCode ?? 0;
      res.on('data', (b: Buffer) => tail.push(b));
      res.on('error', () => {});
      res.on('end', () => {
        const ok = status >= 200 && status < 400;
        resolve({ ok, status, output: tail.toString(), ...(ok ? {} : { error: `HTTP ${status}` }) });
      });
    });
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
