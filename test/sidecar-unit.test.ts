/** Unit tests of the sidecar's pure parts: /proc parsing, retry schedule, runner, deadline, dedupe, exec plan, env. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { DEADLINE_MARGIN_MS, preStopDeadlineMs, worstCaseSeconds } from '../common/budget.js';
import { parseSpecJson, type CommonFields, type HandlerAction, type HandlerSpec } from '../common/spec.js';
import { capMask, capNames } from '../sidecar/caps.js';
import { EnvError, loadSidecarEnv } from '../sidecar/env.js';
import { planExec } from '../sidecar/handlers.js';
import { chooseMain, containerProcesses, environValue, mainProcess, parseEnviron, parseStat, parseStatus, runId, type ProcSnapshot } from '../sidecar/proc.js';
import type { KubeClient } from '../sidecar/kube.js';
import type { Logger } from '../sidecar/log.js';
import { SidecarMetrics } from '../sidecar/metrics.js';
import { HookRegistry } from '../sidecar/registry.js';
import { DISCOVERY_WAIT_MS, HookService, type HookReport } from '../sidecar/service.js';
import type { SidecarEnv } from '../sidecar/env.js';
import { retryDelayMs, retrySchedule, runHandlerList, type AttemptResult } from '../sidecar/runner.js';
import { tokenMatches } from '../sidecar/server.js';
import { Tail } from '../sidecar/tail.js';

const STAT = '4242 (my (weird) app) S 4200 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 987654 10485760 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0';
const STATUS = `Name:\tapp\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4242\nPPid:\t4200\nUid:\t1000\t1001\t1001\t1001\nGid:\t2000\t2001\t2001\t2001\nGroups:\t5 6 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n`;

test('parseStat reads pid, ppid and start time past a comm with spaces and parentheses', () => {
  const s = parseStat(STAT);
  assert.deepEqual(
    { pid: s.pid, comm: s.comm, state: s.state, ppid: s.ppid, pgrp: s.pgrp, startTime: s.startTime },
    { pid: 4242, comm: 'my (weird) app', state: 'S', ppid: 4200, pgrp: 4242, startTime: 987654 },
  );
  assert.throws(() => parseStat('garbage'), /malformed/);
});

test('parseEnviron and environValue: NUL-separated, last definition wins', () => {
  const env = parseEnviron(Buffer.from('PATH=/bin\0HOOK_RUNNER_CONTAINER=app\0X=a=b\0HOOK_RUNNER_CONTAINER=web\0'));
  assert.equal(environValue(env, 'HOOK_RUNNER_CONTAINER'), 'web');
  assert.equal(environValue(env, 'X'), 'a=b');
  assert.equal(environValue(env, 'NOPE'), undefined);
});

test('parseStatus reads effective uid/gid, groups and capability sets', () => {
  const s = parseStatus(STATUS);
  assert.equal(s.uid, 1001);
  assert.equal(s.gid, 2001);
  assert.deepEqual(s.groups, [5, 6]);
  assert.equal(s.capBnd, 0xa80425fbn);
  // The runtime default set (docker/containerd) decodes to the expected names.
  // An empty Groups line must not swallow the next line.
  assert.deepEqual(parseStatus(STATUS.replace('Groups:\t5 6 \n', 'Groups:\t\nNStgid:\t7\n')).groups, []);
  assert.deepEqual(capNames(s.capBnd), [
    'chown',
    'dac_override',
    'fowner',
    'fsetid',
    'kill',
    'setgid',
    'setuid',
    'setpcap',
    'net_bind_service',
    'net_raw',
    'sys_chroot',
    'mknod',
    'audit_write',
    'setfcap',
  ]);
});

test('containerProcesses and chooseMain: marker, zombies, our own descendants; the main process is one the runtime started (PPid 0), earliest in its mount namespace', () => {
  const e = (pid: number, ppid: number, startTime: number, marker?: string, state = 'S', mntNs?: string) => ({
    pid,
    ppid,
    startTime,
    marker,
    state,
    comm: 'x',
    pgrp: pid,
    unreadable: false,
    ...(mntNs ? { mntNs } : {}),
  });
  const entries = [
    e(1, 0, 1),
    e(10, 0, 100, 'app', 'S', 'mnt:[1]'), // the app's main process: its parent is outside the pod's PID namespace
    e(11, 10, 110, 'app'), // its child
    e(20, 0, 50), // the sidecar (no marker)
    e(21, 20, 300, 'app'), // an exec hook the sidecar started: carries the target env, but is ours
    e(22, 21, 301, 'app'),
    e(30, 1, 40, 'web', 'Z'), // zombie of another container
    e(31, 1, 400, 'app'), // a process the app forked, reparented to the pod's init
    e(32, 1, 20, 'app'), // a leftover of an earlier run, started before the app: still never the main process
    e(40, 0, 500, 'app', 'S', 'mnt:[1]'), // an exec into the container (probe, kubectl exec): same namespace, later
  ];
  const snap: ProcSnapshot = { unreadable: 0, entries };
  const procs = containerProcesses(snap, 'app', 20);
  assert.deepEqual(
    procs.map((p) => p.pid),
    [10, 11, 31, 32, 40],
  );
  const main = mainProcess(procs)!;
  assert.equal(main.pid, 10);
  assert.equal(runId(main), '10@100');
  assert.deepEqual(containerProcesses(snap, 'web', 20), []);
  // Only leftovers: no main process at all.
  assert.deepEqual(chooseMain(procs.filter((p) => p.ppid !== 0)), {});
  // Another container sets the marker (its own mount namespace, started earlier): nothing is chosen.
  const hostile = containerProcesses({ unreadable: 0, entries: [...entries, e(50, 0, 10, 'app', 'S', 'mnt:[2]')] }, 'app', 20);
  const choice = chooseMain(hostile);
  assert.equal(choice.main, undefined);
  assert.deepEqual(
    choice.conflict?.map((p) => p.pid),
    [50, 10],
  );
  // A namespace that could not be read never matches another.
  assert.deepEqual(
    chooseMain([e(10, 0, 100, 'app'), e(40, 0, 500, 'app')]).conflict?.map((p) => p.pid),
    [10, 40],
  );
});

const h = (over: Partial<CommonFields> = {}, action: HandlerAction = { kind: 'sleep', action: { seconds: 0 } }): HandlerSpec => ({
  ...action,
  timeoutSeconds: 5,
  retries: 0,
  retryDelaySeconds: 1,
  continueOnError: false,
  ...over,
});

test('retry schedule doubles from retryDelaySeconds, matching the admission budget', () => {
  assert.deepEqual(retrySchedule(h({ retries: 4, retryDelaySeconds: 1 })), [1000, 2000, 4000, 8000]);
  assert.deepEqual(retrySchedule(h({ retries: 0 })), []);
  assert.equal(retryDelayMs(h({ retryDelaySeconds: 0.5 }), 2), 2000);
  // The admission budget's worst case is exactly what the runner can spend: every attempt at its
  // timeout plus the delays the runner waits between them.
  const http: HandlerAction = { kind: 'http', action: { method: 'GET', path: '/', port: 80, host: '127.0.0.1', scheme: 'HTTP', headers: [] } };
  for (const x of [h({ retries: 4, retryDelaySeconds: 1, timeoutSeconds: 3 }, http), h({ retries: 0, timeoutSeconds: 7 }, http), h({ retries: 2, retryDelaySeconds: 0.5, timeoutSeconds: 2 }, http)]) {
    const delays = retrySchedule(x).reduce((a, b) => a + b, 0);
    assert.equal(worstCaseSeconds(x) * 1000, (x.retries + 1) * x.timeoutSeconds * 1000 + delays, JSON.stringify(x));
  }
});

test('runHandlerList: retries until success, continueOnError goes on, a failure stops the list', async () => {
  const calls: number[] = [];
  const plan: Record<number, boolean[]> = { 0: [false, false, true], 1: [false], 2: [false], 3: [true] };
  const execute = async (_h: HandlerSpec, _s: AbortSignal, index: number): Promise<AttemptResult> => {
    calls.push(index);
    const ok = plan[index]!.shift()!;
    return ok ? { ok } : { ok, error: 'nope', exitCode: 3 };
  };
  const list = [h({ retries: 2, retryDelaySeconds: 0.001 }), h({ continueOnError: true }), h(), h()];
  const r = await runHandlerList(list, { execute });
  assert.deepEqual(calls, [0, 0, 0, 1, 2]);
  assert.equal(r.ok, false);
  assert.equal(r.outcome, 'failed');
  assert.deepEqual(
    r.handlers.map((x) => x.outcome),
    ['succeeded', 'failed', 'failed', 'skipped'],
  );
  assert.deepEqual(
    r.handlers[0]!.attempts.map((a) => a.outcome),
    ['failed', 'failed', 'succeeded'],
  );
  assert.match(r.reason!, /handler \[2\] sleep failed after 1 attempt\(s\): nope/);
});

test('runHandlerList: a per-attempt timeout counts as a failed attempt and is retried', async () => {
  let n = 0;
  const execute = (_h: HandlerSpec, s: AbortSignal): Promise<AttemptResult> => {
    n++;
    if (n === 2) return Promise.resolve({ ok: true });
    return new Promise(() => void s); // never settles: only the timeout ends it
  };
  const r = await runHandlerList([h({ timeoutSeconds: 0.05, retries: 1, retryDelaySeconds: 0.001 })], { execute });
  assert.equal(r.ok, true);
  assert.deepEqual(
    r.handlers[0]!.attempts.map((a) => a.outcome),
    ['timeout', 'succeeded'],
  );
});

/** Lets promise continuations run (and schedule their timers) between steps of a mocked clock. */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** Advances the mocked clock `ms` in `step` ms steps, letting continuations run between steps. */
async function advance(t: TestContext, ms: number, step = 1): Promise<void> {
  for (let done = 0; done < ms; done += step) {
    t.mock.timers.tick(Math.min(step, ms - done));
    await settle();
  }
}

test('runHandlerList: the deadline cuts the running attempt at once and skips the rest (mocked clock)', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const deadline = new AbortController();
  let sawAbort = false;
  const execute = (_h: HandlerSpec, s: AbortSignal): Promise<AttemptResult> =>
    new Promise((resolve) => {
      s.addEventListener('abort', () => {
        sawAbort = true;
        setTimeout(() => resolve({ ok: false }), 10_000); // a slow cleanup must not delay the answer
      });
    });
  setTimeout(() => deadline.abort(), 30);
  let r: Awaited<ReturnType<typeof runHandlerList>> | undefined;
  void runHandlerList([h({ timeoutSeconds: 60 }), h()], { execute, deadline: deadline.signal }).then((x) => (r = x));
  await advance(t, 30);
  assert.ok(sawAbort, 'the running attempt saw the deadline');
  // A cut attempt gets 50 ms to hand back its partial output, then the list answers without it.
  await advance(t, 49);
  assert.equal(r, undefined, 'still within the 50 ms an aborted attempt gets');
  await advance(t, 1);
  const res = r as Awaited<ReturnType<typeof runHandlerList>> | undefined; // set by the .then above
  assert.ok(res, "answered 50 ms after the deadline, not after the handler's 10 s cleanup");
  assert.equal(res.outcome, 'deadline');
  assert.deepEqual(
    res.handlers.map((x) => x.outcome),
    ['deadline', 'skipped'],
  );
  assert.equal(res.handlers[0]!.attempts[0]!.durationMs, 80);
});

/** A HookService with no process to find (an empty /proc) and stand-ins for its outputs. */
function serviceFor(t: TestContext, spec: unknown, graceSeconds: number): HookService {
  const procRoot = mkdtempSync(join(tmpdir(), 'hook-runner-noproc-'));
  t.after(() => rmSync(procRoot, { recursive: true, force: true }));
  const log: Logger = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;
  const kube = { event() {}, flush: async () => {} } as unknown as KubeClient;
  const env = {
    spec: parseSpecJson(JSON.stringify(spec)),
    token: 't'.repeat(32),
    port: 1,
    graceSeconds,
    eventOutput: false,
    callers: { mode: 'any' },
    pod: { name: 'p', namespace: 'n', uid: 'u', node: 'x' },
  } as unknown as SidecarEnv;
  return new HookService({ env, log, metrics: new SidecarMetrics(), kube, tools: undefined, self: { capEff: 0n, capPrm: 0n }, procRoot });
}

test('PreStop deadline, on a mocked clock: grace 6 s, shutdown 1 s, a 5.5 s sleep is cut at arrival + 4.75 s (the 250 ms margin)', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  const svc = serviceFor(t, { app: { shutdownSeconds: 1, preStop: [{ sleep: { seconds: 5.5 }, timeoutSeconds: 10 }] } }, 6);
  let done: { report: HookReport } | undefined;
  void svc.call('app', 'preStop').then((x) => (done = x));
  await advance(t, 4749, 10);
  assert.equal(done, undefined, 'not answered before the deadline');
  await advance(t, 1);
  const answered = done as { report: HookReport } | undefined; // set by the .then above
  assert.ok(answered, 'answered at the deadline');
  const rep = answered.report;
  assert.equal(rep.outcome, 'deadline');
  assert.equal(Date.parse(rep.arrivedAt), 1_000_000);
  assert.equal(Date.parse(rep.deadlineAt!), 1_000_000 + (6 - 1) * 1000 - DEADLINE_MARGIN_MS);
  assert.equal(Date.parse(rep.finishedAt), Date.parse(rep.deadlineAt!));
  assert.deepEqual(
    rep.handlers.map((x) => x.outcome),
    ['deadline'],
  );
});

test('discovery wait, on a mocked clock: an exec hook whose container never shows fails after exactly the 10 s bound', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const svc = serviceFor(t, { app: { postStart: [{ exec: { command: ['true'] } }] } }, 30);
  let done: { report: HookReport } | undefined;
  void svc.call('app', 'postStart').then((x) => (done = x));
  await advance(t, DISCOVERY_WAIT_MS - 50, 50);
  assert.equal(done, undefined, 'still waiting for the container');
  await advance(t, 50, 50);
  const answered = done as { report: HookReport } | undefined; // set by the .then above
  assert.ok(answered, 'gave up at the bound');
  assert.equal(answered.report.outcome, 'failed');
  assert.match(answered.report.reason!, /no process of container app found/);
});

test('PreStop deadline: arrival + grace − shutdown − margin, never before arrival', () => {
  assert.equal(preStopDeadlineMs(1000, 6, 1, 250), 1000 + 4750);
  assert.equal(preStopDeadlineMs(1000, 1, 5, 250), 1000);
});

test('HookRegistry: joins in flight, returns the stored result, starts afresh for a new run', async () => {
  const reg = new HookRegistry<string>();
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const start = () => {
    runs++;
    return gate.then(() => `result-${runs}`);
  };
  const a = reg.join('app', 'preStop', '10@100', start);
  const b = reg.join('app', 'preStop', '10@100', start);
  assert.equal(a.joined, false);
  assert.equal(b.joined, true);
  assert.equal(reg.inFlight(), 1);
  release();
  assert.equal(await a.promise, 'result-1');
  assert.equal(await b.promise, 'result-1');
  const c = reg.join('app', 'preStop', '10@100', start);
  assert.equal(c.joined, true, 'after it finished: the stored answer');
  const d = reg.join('app', 'preStop', '77@900', start);
  assert.equal(d.joined, false, 'new container run: afresh');
  assert.equal(await d.promise, 'result-2');
  // Unknown run (environ unreadable): joined only while in flight.
  const e1 = reg.join('app', 'postStart', undefined, () => Promise.resolve('x'));
  assert.equal(reg.join('app', 'postStart', undefined, () => Promise.resolve('y')).joined, true);
  await e1.promise;
  assert.equal(reg.join('app', 'postStart', undefined, () => Promise.resolve('z')).joined, false);
});

test("planExec: the helper gets the target's uid, gid and groups, then exactly the argv; no namespace is entered", () => {
  const six = capMask(['sys_ptrace', 'dac_read_search', 'sys_chroot', 'setuid', 'setgid', 'kill']);
  const tools = { helper: '/app/dist/sidecar/hook-exec' };
  const p = planExec(['/bin/sh', '-c', 'id'], { uid: 1000, gid: 2000, groups: [5, 7], capBnd: 0n }, { capEff: six, capPrm: six }, tools);
  assert.deepEqual([p.file, ...p.args], ['/app/dist/sidecar/hook-exec', '--uid', '1000', '--gid', '2000', '--groups', '5,7', '--', '/bin/sh', '-c', 'id']);
  assert.deepEqual(p.excessCaps, []);
  const q = planExec(['true'], { uid: 1000, gid: 1000, groups: [], capBnd: 0n }, { capEff: six, capPrm: six }, tools);
  assert.deepEqual(q.args, ['--uid', '1000', '--gid', '1000', '--groups', '', '--', 'true']);
});

test("planExec: with SETPCAP the bounding set is narrowed to target ∩ sidecar (any uid); without it a uid-0 target's excess is reported", () => {
  const six = capMask(['sys_ptrace', 'dac_read_search', 'sys_chroot', 'setuid', 'setgid', 'kill']);
  const target = { uid: 0, gid: 0, groups: [], capBnd: capMask(['chown', 'kill', 'setuid', 'setgid', 'sys_chroot']) };
  const tools = { helper: '/h' };
  const without = planExec(['true'], target, { capEff: six, capPrm: six }, tools);
  assert.deepEqual(without.excessCaps, ['dac_read_search', 'sys_ptrace']);
  assert.ok(!without.args.includes('--bounding'));
  const withPcap = capMask(['setpcap']) | six;
  const narrowed = planExec(['true'], target, { capEff: withPcap, capPrm: withPcap }, tools);
  assert.deepEqual(narrowed.args.slice(6, 8), ['--bounding', capMask(['kill', 'setgid', 'setuid', 'sys_chroot']).toString(16)]);
  assert.deepEqual(narrowed.excessCaps, []);
  // The helper enters the root before it narrows: a target without SYS_CHROOT leaves no excess.
  const noChroot = planExec(['true'], { ...target, capBnd: 0n }, { capEff: withPcap, capPrm: withPcap }, tools);
  assert.deepEqual(noChroot.excessCaps, []);
  assert.deepEqual(noChroot.args.slice(6, 8), ['--bounding', '0']);
});

test('tokenMatches: exact match only', () => {
  assert.equal(tokenMatches('0123456789abcdef', '0123456789abcdef'), true);
  assert.equal(tokenMatches('0123456789abcdef', '0123456789abcdeF'), false);
  assert.equal(tokenMatches('0123456789abcdef', '0123'), false);
  assert.equal(tokenMatches('0123456789abcdef', undefined), false);
  assert.equal(tokenMatches('0123456789abcdef', ['0123456789abcdef', 'x']), false);
});

test('loadSidecarEnv: every bad variable is named in one message', () => {
  const ok = { HOOK_RUNNER_SPEC: '{"app":{"preStop":[{"sleep":{"seconds":1}}]}}', HOOK_RUNNER_TOKEN: 'x'.repeat(32) };
  const env = loadSidecarEnv(ok);
  assert.equal(env.port, 15901);
  assert.equal(env.graceSeconds, 30);
  assert.equal(env.eventOutput, false);
  assert.equal(env.spec.app!.preStop[0]!.timeoutSeconds, 30);
  const bad: Array<[Record<string, string>, string]> = [
    [{ HOOK_RUNNER_TOKEN: ok.HOOK_RUNNER_TOKEN }, 'HOOK_RUNNER_SPEC'],
    [{ ...ok, HOOK_RUNNER_SPEC: '{nope' }, 'HOOK_RUNNER_SPEC'],
    [{ ...ok, HOOK_RUNNER_SPEC: '{"app":{"preStop":[{"sleep":{"seconds":-1}}]}}' }, 'HOOK_RUNNER_SPEC'],
    [{ HOOK_RUNNER_SPEC: ok.HOOK_RUNNER_SPEC }, 'HOOK_RUNNER_TOKEN'],
    [{ ...ok, HOOK_RUNNER_TOKEN: 'short' }, 'HOOK_RUNNER_TOKEN'],
    [{ ...ok, HOOK_RUNNER_PORT: '70000' }, 'HOOK_RUNNER_PORT'],
    [{ ...ok, HOOK_RUNNER_GRACE_SECONDS: 'soon' }, 'HOOK_RUNNER_GRACE_SECONDS'],
    [{ ...ok, HOOK_RUNNER_EVENT_OUTPUT: 'yes' }, 'HOOK_RUNNER_EVENT_OUTPUT'],
  ];
  for (const [e, variable] of bad) {
    assert.throws(
      () => loadSidecarEnv(e),
      (err: unknown) => err instanceof EnvError && err.variable === variable && err.message.startsWith(`${variable}: `),
      variable,
    );
  }
  assert.match(
    (() => {
      try {
        loadSidecarEnv(bad[2]![0]);
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })(),
    /app\.preStop\[0\]\.sleep\.seconds/,
  );
});

test('Tail keeps only the last bytes and marks the cut', () => {
  const t = new Tail(10);
  for (let i = 0; i < 100; i++) t.push(`line${i}\n`);
  const s = t.toString();
  assert.ok(s.startsWith('…'));
  assert.ok(s.endsWith('line99\n'));
  assert.ok(Buffer.byteLength(s) <= 10 + Buffer.byteLength('…'));
  const u = new Tail(100);
  u.push('short');
  assert.equal(u.toString(), 'short');
});
