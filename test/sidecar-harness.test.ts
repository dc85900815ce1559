/**
 * The sidecar for real: a pod made of a PID namespace and mount namespaces, the sidecar from the
 * built CLI with the env and capabilities `hook-runner inject` wrote, and a kubelet role
 * (test/harness/pod.ts). Every scenario asserts what really happened: files, signals, timestamps.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { test } from 'node:test';
import { DEADLINE_MARGIN_MS } from '../common/budget.js';
import { capMask, capNames, type CapName } from '../sidecar/caps.js';
import { get, kubeletCall, lastReport, missingPrerequisite, withPod, procStatusField, selfSignedCert, until } from './harness/pod.js';

const missing = missingPrerequisite();
const await_rm = (d: string) => rmSync(d, { recursive: true, force: true });

const EXEC_CAPS: CapName[] = ['sys_ptrace', 'dac_read_search', 'sys_chroot', 'setuid', 'setgid', 'kill', 'setpcap'];

test('exec runs in the target container: its mount namespace, uid/gid, env and cwd; PreStop exec runs before SIGTERM', async (t) => {
  const probe = 'id -u; id -g; pwd; cat ../private/marker; echo "$APP_FLAVOUR"; grep -E "^Cap(Eff|Prm):" /proc/self/status';
  await withPod(
    t,
    {
      name: 'exec',
      graceSeconds: 10,
      hooks: {
        app: {
          shutdownSeconds: 1,
          postStart: [{ exec: { command: ['sh', '-c', `(${probe}) > poststart.out 2>&1`] } }],
          preStop: [{ exec: { command: ['sh', '-c', 'date +%s%3N > prestop.out; echo bye'] } }],
        },
      },
      containers: [{ name: 'app', uid: 1000, gid: 1001, env: { APP_FLAVOUR: 'mint' } }],
    },
    async (pod) => {
      // The sidecar holds exactly what inject granted for exec, no more.
      assert.deepEqual(pod.sidecarCaps.sort(), [...EXEC_CAPS].sort());
      assert.equal(BigInt(`0x${procStatusField(pod.sidecarPid, 'CapEff')}`), capMask(EXEC_CAPS), `sidecar CapEff ${procStatusField(pod.sidecarPid, 'CapEff')}`);
      assert.equal(procStatusField(pod.sidecarPid, 'NoNewPrivs'), '1');
      assert.equal(procStatusField(pod.sidecarPid, 'Uid')?.split(/\s+/)[0], '0');
      const app = pod.containers.get('app')!;
      assert.equal(app.postStart?.ok, true, app.postStart?.error);
      const work = `${pod.dir}/c-app/work`;
      const lines = readFileSync(`${work}/poststart.out`, 'utf8').trim().split('\n');
      assert.deepEqual(lines.slice(0, 5), ['1000', '1001', work, 'secret-of-app', 'mint']);
      assert.deepEqual(lines.slice(5), ['CapPrm:\t0000000000000000', 'CapEff:\t0000000000000000'], 'the command holds no capability');
      // The marker lives on a mount private to the container: the host (and the sidecar's own root) cannot see it.
      assert.equal(existsSync(`${pod.dir}/c-app/private/marker`), false);
      const r = await pod.terminate('app');
      assert.equal(r.preStop?.ok, true, r.preStop?.error);
      const preStopAt = Number(readFileSync(`${work}/prestop.out`, 'utf8'));
      const sig = pod.appEvents('app').find((e) => e.ev === 'signal' && e.sig === 'SIGTERM');
      assert.ok(sig, 'app got SIGTERM');
      assert.ok(preStopAt <= sig.t, `PreStop (${preStopAt}) ran before SIGTERM (${sig.t})`);
      const rep = await lastReport(pod, 'app', 'preStop');
      assert.equal(rep.outcome, 'succeeded');
      assert.match(rep.handlers[0].attempts[0].outputTail, /bye/);
      // One log line per attempt, with the output tail; the token is in no log line.
      // (read from the sidecar's stdout pipe: wait for the line to arrive)
      await until(
        'the PreStop attempt log line',
        () =>
          pod
            .sidecarLines()
            .some(
              (l) =>
                l.msg?.startsWith('hook handler attempt') &&
                l.phase === 'preStop' &&
                l.handler === 'exec' &&
                l.attempt === 1 &&
                l.output.includes('bye') &&
                typeof l.durationMs === 'number' &&
                l.pod === 'exec' &&
                l.namespace === 'harness',
            ),
        10_000,
      );
      assert.ok(!pod.sidecarLog.join('\n').includes(pod.token), 'token never logged');
    },
  );
});

test('HTTP handlers: PostStart httpGet, PreStop sleep then http POST with body and headers, HTTPS without verification', async (t) => {
  if (missing) return t.skip(missing);
  const ports = { http: 0, https: 0 };
  const { freePort } = await import('./harness/pod.js');
  ports.http = await freePort();
  ports.https = await freePort();
  const certDir = (await import('node:fs')).mkdtempSync('/tmp/hook-runner-cert-');
  (await import('node:fs')).chmodSync(certDir, 0o755);
  t.after(() => await_rm(certDir));
  const tls = selfSignedCert(certDir);
  if (!tls) return t.skip('needs openssl for the HTTPS target');
  await withPod(
    t,
    {
      name: 'http',
      graceSeconds: 10,
      hooks: {
        app: {
          shutdownSeconds: 1,
          postStart: [
            { httpGet: { path: '/warmup', port: ports.http, httpHeaders: [{ name: 'X-Test', value: 'warm' }] }, retries: 5, retryDelaySeconds: 0.1 },
            { httpGet: { path: '/secure', port: ports.https, scheme: 'HTTPS' } },
            { httpGet: { path: '/redirect', port: ports.http } },
          ],
          preStop: [{ sleep: { seconds: 0.5 } }, { http: { method: 'POST', path: '/drain', port: ports.http, headers: { 'X-Test': 'drain' }, body: 'now' } }],
        },
      },
      containers: [{ name: 'app', uid: 1000, env: { APP_HTTP_PORT: String(ports.http), APP_HTTPS_PORT: String(ports.https), APP_TLS_CERT: tls.cert, APP_TLS_KEY: tls.key } }],
    },
    async (pod) => {
      // The restricted securityContext: inject granted nothing, and the sidecar holds nothing.
      assert.deepEqual(pod.sidecarCaps, []);
      assert.equal(procStatusField(pod.sidecarPid, 'CapEff'), '0000000000000000');
      assert.equal(procStatusField(pod.sidecarPid, 'Uid')?.split(/\s+/)[0], '65532');
      const app = pod.containers.get('app')!;
      assert.equal(app.postStart?.ok, true, app.postStart?.error);
      const r = await pod.terminate('app');
      assert.equal(r.preStop?.ok, true);
      const ev = pod.appEvents('app');
      const warm = ev.find((e) => e.ev === 'http' && e.path === '/warmup');
      assert.equal(warm?.headers['x-test'], 'warm');
      assert.equal(ev.find((e) => e.path === '/secure')?.scheme, 'https');
      // The redirect answer (302) counts as success and is not followed off the pod.
      assert.ok(ev.some((e) => e.path === '/redirect'));
      const drain = ev.find((e) => e.ev === 'http' && e.path === '/drain')!;
      assert.deepEqual([drain.method, drain.body, drain.headers['x-test']], ['POST', 'now', 'drain']);
      // In order: the POST went out only after the sleep handler had finished (its report says so).
      const pre = await lastReport(pod, 'app', 'preStop');
      assert.deepEqual(
        pre.handlers.map((h: any) => [h.kind, h.outcome]),
        [
          ['sleep', 'succeeded'],
          ['http', 'succeeded'],
        ],
      );
      const sleptUntil = Date.parse(pre.handlers[0].attempts[0].startedAt) + pre.handlers[0].attempts[0].durationMs;
      assert.ok(drain.t >= sleptUntil, `drain (${drain.t}) came after the sleep handler ended (${sleptUntil})`);
      const term = ev.find((e) => e.ev === 'signal' && e.sig === 'SIGTERM')!;
      assert.ok(term.t >= drain.t);
      // Restricted sidecar: environ of another uid is unreadable; said once, hooks still ran.
      const unreadable = () => pod.sidecarLines().filter((l) => /cannot read \/proc\/PID\/environ/.test(l.msg ?? '')).length;
      await until('the unreadable-environ warning', () => unreadable() >= 1, 10_000);
      await until('the PreStop log line', () => pod.sidecarLines().some((l) => l.msg === 'hook succeeded' && l.phase === 'preStop'), 10_000);
      assert.equal(unreadable(), 1, 'said once');
    },
  );
});

test('failed PostStart: the kubelet sees a transport error, /last says why, retries were made', async (t) => {
  await withPod(
    t,
    {
      name: 'fail',
      graceSeconds: 5,
      hooks: { app: { postStart: [{ exec: { command: ['sh', '-c', 'echo out-of-hook; echo err-of-hook >&2; exit 3'] }, retries: 1, retryDelaySeconds: 0.1 }] } },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const ps = pod.containers.get('app')!.postStart!;
      assert.equal(ps.ok, false, 'connection closed without a response');
      assert.equal(ps.status, undefined);
      const rep = await lastReport(pod, 'app', 'postStart');
      assert.equal(rep.outcome, 'failed');
      assert.match(rep.reason, /handler \[0\] exec failed after 2 attempt\(s\): exit code 3/);
      assert.deepEqual(
        rep.handlers[0].attempts.map((a: any) => a.exitCode),
        [3, 3],
      );
      assert.match(rep.handlers[0].attempts[1].outputTail, /out-of-hook[\s\S]*err-of-hook|err-of-hook[\s\S]*out-of-hook/);
      const metrics = await get(pod.port, '/metrics');
      assert.match(metrics.body, /hook_runner_hook_handler_outcomes_total\{container="app",phase="postStart",handler="exec",outcome="failed"\} 1/);
    },
  );
});

test("the seed's budget case scaled down: grace 6 s, a 5.5 s PreStop, 1 s shutdown: the app still gets its second", async (t) => {
  await withPod(
    t,
    {
      name: 'budget',
      graceSeconds: 6,
      hooks: { app: { shutdownSeconds: 1, preStop: [{ exec: { command: ['sleep', '5.5'] }, timeoutSeconds: 10 }] } },
      containers: [{ name: 'app', uid: 1000, env: { APP_SHUTDOWN_MS: '900' } }],
    },
    async (pod) => {
      const r = await pod.terminate('app');
      // Cut at the deadline: seen by the kubelet as a failed PreStop (answered, not abandoned at the
      // end of the grace), then the stop signal; the app finishes its own shutdown, not SIGKILLed.
      assert.equal(r.preStop!.ok, false);
      assert.doesNotMatch(r.preStop!.error ?? '', /no answer within/, 'the sidecar answered before the grace ran out');
      await until('the app logs its exit', () => pod.appEvents('app').find((e) => e.ev === 'exit'), 10_000);
      assert.ok(
        pod.appEvents('app').some((e) => e.ev === 'signal' && e.sig === 'SIGTERM'),
        'the app got SIGTERM',
      );
      assert.equal(r.killAt, undefined);
      const rep = await lastReport(pod, 'app', 'preStop');
      assert.equal(rep.outcome, 'deadline');
      assert.equal(rep.graceSeconds, 6);
      assert.equal(rep.handlers[0].outcome, 'deadline');
      // Where the deadline is (the same arithmetic the design states): arrival + grace − shutdown − 250 ms margin.
      // When the answer then reaches the app is timing (test/load/timing.test.ts); the cut itself is
      // driven by a fake clock in test/sidecar-unit.test.ts.
      assert.equal(Date.parse(rep.deadlineAt) - Date.parse(rep.arrivedAt), (6 - 1) * 1000 - DEADLINE_MARGIN_MS);
      // The hook's process was killed with its group, not left running (its helper ends it right after the answer).
      await until('sleep 5.5 gone', () => pod.processesWithArgv(['sleep', '5.5']).length === 0, 10_000);
    },
  );
});

test('a handler that forks children ignoring SIGTERM is cut off with every process it started', async (t) => {
  await withPod(
    t,
    {
      name: 'pgroup',
      graceSeconds: 5,
      hooks: {
        app: { postStart: [{ exec: { command: ['sh', '-c', 'trap "" TERM; sleep 4301 & sleep 4302 & (trap "" TERM; sleep 4303; echo late > late.out) & echo started; wait'] }, timeoutSeconds: 1 }] },
      },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const ps = pod.containers.get('app')!.postStart!;
      assert.equal(ps.ok, false);
      // Answered by the sidecar (the children sleep for an hour; the kubelet's own 60 s bound did not end the call).
      assert.doesNotMatch(ps.error ?? '', /no answer within/);
      await until('children gone', () => ['4301', '4302', '4303'].every((n) => pod.processesWithArgv(['sleep', n]).length === 0) || undefined, 15_000);
      const rep = await lastReport(pod, 'app', 'postStart');
      assert.equal(rep.handlers[0].outcome, 'timeout');
      assert.match(rep.handlers[0].attempts[0].outputTail, /started/);
      assert.equal(existsSync(`${pod.dir}/c-app/work/late.out`), false);
    },
  );
});

test('duplicate calls: concurrent ones join, later ones get the stored answer, a new container run starts afresh', async (t) => {
  await withPod(
    t,
    {
      name: 'dupe',
      graceSeconds: 10,
      hooks: {
        app: {
          shutdownSeconds: 1,
          postStart: [{ exec: { command: ['sh', '-c', 'echo run >> poststart.count'] } }],
          preStop: [{ exec: { command: ['sh', '-c', 'echo run >> prestop.count; sleep 1'] } }],
        },
      },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const work = `${pod.dir}/c-app/work`;
      const count = (f: string) => readFileSync(`${work}/${f}`, 'utf8').split('\n').filter(Boolean).length;
      const app = pod.containers.get('app')!;
      const again = await Promise.all([kubeletCall(app.spec.lifecycle!.postStart!.httpGet, 10_000), kubeletCall(app.spec.lifecycle!.postStart!.httpGet, 10_000)]);
      assert.ok(again.every((c) => c.ok && c.status === 200));
      assert.equal(count('poststart.count'), 1, 'PostStart ran once for this run');
      const pre = await Promise.all([1, 2, 3].map(() => kubeletCall(app.spec.lifecycle!.preStop!.httpGet, 10_000)));
      assert.ok(pre.every((c) => c.ok && c.status === 200));
      assert.equal(count('prestop.count'), 1, 'three concurrent PreStop calls ran the handler once');
      // The log is read from the sidecar's stdout pipe: wait until the lines have arrived.
      const joinedLines = () => pod.sidecarLines().filter((l) => l.msg === 'duplicate hook call joined the run already made').length;
      await until('4 joined log lines', () => joinedLines() >= 4, 10_000);
      assert.equal(joinedLines(), 4);
      // New run of the container (a restart): its PostStart runs again.
      await pod.terminate('app');
      await pod.startContainer('app');
      assert.equal(pod.containers.get('app')!.postStart?.ok, true);
      assert.equal(count('poststart.count'), 2);
    },
  );
});

test('token and routing: wrong or missing token 401 without running anything, unknown container or phase 404', async (t) => {
  await withPod(
    t,
    {
      name: 'auth',
      graceSeconds: 5,
      hooks: { app: { shutdownSeconds: 1, preStop: [{ exec: { command: ['sh', '-c', 'echo ran >> ran.out'] } }] } },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const path = '/v1/hooks/app/preStop';
      assert.equal((await get(pod.port, path, 'x'.repeat(32))).status, 401);
      assert.equal((await get(pod.port, path)).status, 401);
      assert.equal((await get(pod.port, `${path}/last`)).status, 401);
      assert.equal((await get(pod.port, `${path}/last`, pod.token)).status, 404, 'no run recorded');
      // Then the right token: this call runs the handler itself (had a refused call started a run,
      // this one would join it), once.
      assert.equal((await get(pod.port, path, pod.token)).status, 200);
      assert.equal(readFileSync(`${pod.dir}/c-app/work/ran.out`, 'utf8'), 'ran\n');
      await until('the hook log line', () => pod.sidecarLines().some((l) => l.msg === 'hook succeeded'), 10_000);
      assert.equal(pod.sidecarLines().filter((l) => l.msg?.startsWith('hook handler attempt')).length, 1, 'one attempt in all');
      assert.ok(!pod.sidecarLines().some((l) => l.msg === 'duplicate hook call joined the run already made'));
      assert.equal((await get(pod.port, '/v1/hooks/nope/preStop', pod.token)).status, 404);
      assert.equal((await get(pod.port, '/v1/hooks/app/midLife', pod.token)).status, 404);
      assert.equal((await get(pod.port, '/v1/hooks/app/postStart', pod.token)).status, 404, 'no postStart hook declared');
      assert.equal((await get(pod.port, '/healthz')).status, 200);
      assert.ok(!pod.sidecarLog.join('\n').includes(pod.token));
    },
  );
});

test('sidecar SIGTERM: keeps serving until the hooked container has exited, then exits 0', async (t) => {
  await withPod(
    t,
    {
      name: 'sigterm',
      graceSeconds: 20,
      hooks: { app: { preStop: [{ signal: { name: 'SIGUSR1' } }] } },
      containers: [{ name: 'app', uid: 1000, env: { APP_SHUTDOWN_MS: '200' } }],
    },
    async (pod) => {
      const stopping = pod.stopSidecar(20);
      // Wait for the sidecar to say it got the signal and keeps serving (not for a fixed time).
      await until('the sidecar took the stop signal', () => pod.sidecarLines().some((l) => l.msg?.startsWith('stop signal: serving until')), 15_000);
      // Container mode: the app's PreStop call goes through the stopping sidecar.
      const app = pod.containers.get('app')!;
      const pre = await kubeletCall(app.spec.lifecycle!.preStop!.httpGet, 15_000);
      assert.equal(pre.ok, true, pre.error);
      assert.equal(pre.status, 200);
      assert.equal(pod.sidecarExit, undefined, 'still running while the app runs');
      // The app writes its event after the signal arrives: wait for it.
      await until('SIGUSR1 at the app', () => pod.appEvents('app').some((e) => e.sig === 'SIGUSR1'), 10_000);
      process.kill(app.pid, 'SIGTERM');
      const appExit = await app.exited;
      const s = await stopping;
      assert.equal(s.killed, false, 'exited by itself within the grace, not SIGKILLed');
      assert.equal(s.code, 0);
      assert.ok(s.t >= appExit.t, 'exited after the app');
      const exiting = pod.sidecarLines().find((l) => l.msg === 'sidecar exiting');
      assert.deepEqual([exiting?.hookedProcessesLeft, exiting?.inFlight], [0, 0], 'it left because the app had exited');
    },
  );
});

test('sidecar SIGTERM during a PreStop that outlives the app (signal waitForExit, then more handlers): the call is answered before the sidecar exits', async (t) => {
  await withPod(
    t,
    {
      name: 'sigterm-inflight',
      graceSeconds: 20,
      hooks: { app: { shutdownSeconds: 1, preStop: [{ signal: { name: 'SIGTERM', waitForExit: true } }, { sleep: { seconds: 1 } }] } },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      // Container mode: the kubelet stops every container at once; the PreStop call goes through the stopping sidecar.
      const app = pod.containers.get('app')!;
      const call = kubeletCall(app.spec.lifecycle!.preStop!.httpGet, 20_000);
      const stopping = pod.stopSidecar(20);
      const r = await call;
      assert.equal(r.ok, true, `the PreStop call is answered, not cut by the sidecar's own exit: ${r.error}`);
      await app.exited;
      const s = await stopping;
      assert.equal(s.killed, false);
      assert.equal(s.code, 0);
      const exiting = pod.sidecarLines().find((l) => l.msg === 'sidecar exiting');
      assert.equal(exiting?.inFlight, 0, 'no call in flight when the sidecar exits');
    },
  );
});

test('signal with waitForExit: PreStop returns once the main process has exited', async (t) => {
  await withPod(
    t,
    {
      name: 'signal',
      graceSeconds: 10,
      hooks: { app: { shutdownSeconds: 1, preStop: [{ signal: { name: 'SIGQUIT', waitForExit: true }, timeoutSeconds: 5 }] } },
      containers: [{ name: 'app', uid: 1000, env: { APP_SHUTDOWN_MS: '700' } }],
    },
    async (pod) => {
      assert.deepEqual(pod.sidecarCaps.sort(), ['dac_read_search', 'kill', 'sys_ptrace']);
      const r = await pod.terminate('app');
      assert.equal(r.preStop?.ok, true, r.preStop?.error);
      const ev = pod.appEvents('app');
      const quit = ev.find((e) => e.sig === 'SIGQUIT')!;
      const exit = ev.find((e) => e.ev === 'exit')!;
      assert.ok(quit && exit && exit.t >= quit.t, "SIGQUIT, then the app's own exit");
      assert.ok(r.preStop!.end >= exit.t, 'PreStop answered after the app exited');
      assert.ok(!ev.some((e) => e.sig === 'SIGTERM'), 'nothing left to receive the kubelet SIGTERM');
    },
  );
});

test('a missing capability makes exec fail: without SYS_CHROOT the helper cannot enter the target root', async (t) => {
  await withPod(
    t,
    {
      name: 'nocap',
      graceSeconds: 5,
      hooks: { app: { postStart: [{ exec: { command: ['true'] } }] } },
      containers: [{ name: 'app', uid: 1000 }],
      capsOverride: (caps) => caps.filter((c) => c !== 'sys_chroot'),
    },
    async (pod) => {
      assert.equal(BigInt(`0x${procStatusField(pod.sidecarPid, 'CapEff')}`), capMask(EXEC_CAPS.filter((c) => c !== 'sys_chroot')));
      assert.equal(pod.containers.get('app')!.postStart?.ok, false);
      const rep = await lastReport(pod, 'app', 'postStart');
      assert.match(rep.handlers[0].attempts[0].outputTail, /chroot/i);
    },
  );
});

test("a uid-0 target: with the injected SETPCAP the command is narrowed to the target's bounding set; without it, it holds no more than the sidecar and the excess is reported", async (t) => {
  const runtimeDefault: CapName[] = [
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
  ];
  const hooks = { app: { postStart: [{ exec: { command: ['sh', '-c', 'id -u > id.out; grep -E "^Cap(Eff|Bnd):" /proc/self/status > caps.out'] } }] } };
  for (const withSetpcap of [false, true]) {
    await withPod(
      t,
      {
        name: withSetpcap ? 'root-setpcap' : 'root',
        graceSeconds: 5,
        hooks,
        containers: [{ name: 'app', uid: 0, bounding: runtimeDefault }],
        ...(withSetpcap ? {} : { capsOverride: (caps: string[]) => caps.filter((c) => c !== 'setpcap') }),
      },
      async (pod) => {
        assert.equal(pod.containers.get('app')!.postStart?.ok, true);
        const work = `${pod.dir}/c-app/work`;
        assert.equal(readFileSync(`${work}/id.out`, 'utf8').trim(), '0');
        const caps = Object.fromEntries(
          readFileSync(`${work}/caps.out`, 'utf8')
            .trim()
            .split('\n')
            .map((l) => l.split(':\t'))
            .map(([k, v]) => [k, BigInt(`0x${v}`)]),
        );
        const eff = capNames(caps.CapEff as bigint);
        if (!withSetpcap) {
          assert.deepEqual(eff, capNames(capMask(EXEC_CAPS.filter((c) => c !== 'setpcap'))), 'holds the sidecar set (no_new_privs caps it)');
          await until('the cannot-narrow warning', () => pod.sidecarLines().some((l) => /cannot narrow the exec command/.test(l.msg ?? '') && l.caps.join() === 'dac_read_search,sys_ptrace'), 10_000);
        } else {
          assert.deepEqual(eff, ['kill', 'setgid', 'setuid', 'setpcap', 'sys_chroot'], 'narrowed to target ∩ sidecar (SYS_PTRACE and DAC_READ_SEARCH gone)');
          // The warning would come before the hook's own log line: wait for that one, then look.
          await until('the PostStart log line', () => pod.sidecarLines().some((l) => l.msg === 'hook succeeded' && l.phase === 'postStart'), 10_000);
          assert.ok(!pod.sidecarLines().some((l) => /cannot narrow/.test(l.msg ?? '')));
        }
      },
    );
  }
});

// Events over HTTPS with the service-account files, and the budget's grace from HOOK_RUNNER_GRACE_SECONDS
// (the deletionGracePeriodSeconds override is gone with `pods get`): test/sidecar-net.test.ts.
