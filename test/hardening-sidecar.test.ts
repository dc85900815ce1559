/**
 * Issue 7 items 3 and 5: the sidecar under bad input and faults, and each capability of the exec and
 * signal sets proved necessary by dropping it and watching the handler fail. The pod is the
 * namespace harness (test/harness/pod.ts): root, PID and mount namespaces, the sidecar from the built
 * CLI with exactly the env, uid and capabilities `inject` wrote. Every test also checks that the
 * token is in no log line. SYS_CHROOT and SETPCAP are proved in test/sidecar-harness.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { CLI, get, kubeletCall, lastReport, missingPrerequisite, type Pod, procStatusField, sleep, until, withPod as withHarnessPod, type PodDef } from './harness/pod.js';

const missing = process.getuid?.() === 0 ? missingPrerequisite() : 'needs root: unshare/nsenter/setpriv build the pod';

/** Every scenario here also checks that the token reached no log line. */
const withPod = (t: TestContext, def: PodDef, body: (pod: Pod) => Promise<void>) => withHarnessPod(t, def, body, { tokenNeverLogged: true });

const vmRssKiB = (pid: number) => Number(/^(\d+)/.exec(procStatusField(pid, 'VmRSS') ?? '0')![1]);

// ------------------------------------------------------------------------------------------------
// Environment (no namespaces needed)

test('bad environment: the sidecar exits 1 with one message naming the variable', () => {
  const spec = JSON.stringify({ app: { preStop: [{ sleep: { seconds: 1 } }] } });
  const token = 't'.repeat(32);
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['spec missing', { HOOK_RUNNER_TOKEN: token }, /^hook-runner sidecar: HOOK_RUNNER_SPEC: is not set/],
    ['spec not JSON', { HOOK_RUNNER_SPEC: '{"app":', HOOK_RUNNER_TOKEN: token }, /^hook-runner sidecar: HOOK_RUNNER_SPEC: not valid JSON/],
    [
      'spec nested 60k deep',
      { HOOK_RUNNER_SPEC: '['.repeat(60_000) + ']'.repeat(60_000), HOOK_RUNNER_TOKEN: token },
      /^hook-runner sidecar: HOOK_RUNNER_SPEC: must be a map of container name to hooks, got a list/,
    ],
    [
      'spec with a bad field',
      { HOOK_RUNNER_SPEC: '{"app":{"preStop":[{"sleep":{"seconds":-1}}]}}', HOOK_RUNNER_TOKEN: token },
      /^hook-runner sidecar: HOOK_RUNNER_SPEC: app\.preStop\[0\]\.sleep\.seconds: must be 0 or more/,
    ],
    ['token missing', { HOOK_RUNNER_SPEC: spec }, /^hook-runner sidecar: HOOK_RUNNER_TOKEN: is not set/],
    ['token short', { HOOK_RUNNER_SPEC: spec, HOOK_RUNNER_TOKEN: 'short' }, /^hook-runner sidecar: HOOK_RUNNER_TOKEN: is 5 characters; at least 16/],
    ['port garbled', { HOOK_RUNNER_SPEC: spec, HOOK_RUNNER_TOKEN: token, HOOK_RUNNER_PORT: '15901x' }, /^hook-runner sidecar: HOOK_RUNNER_PORT: must be a port number 1-65535, got "15901x"/],
    ['port out of range', { HOOK_RUNNER_SPEC: spec, HOOK_RUNNER_TOKEN: token, HOOK_RUNNER_PORT: '70000' }, /^hook-runner sidecar: HOOK_RUNNER_PORT: must be a port number/],
    ['grace negative', { HOOK_RUNNER_SPEC: spec, HOOK_RUNNER_TOKEN: token, HOOK_RUNNER_GRACE_SECONDS: '-1' }, /^hook-runner sidecar: HOOK_RUNNER_GRACE_SECONDS: must be a number of seconds/],
    ['event output garbled', { HOOK_RUNNER_SPEC: spec, HOOK_RUNNER_TOKEN: token, HOOK_RUNNER_EVENT_OUTPUT: 'yes' }, /^hook-runner sidecar: HOOK_RUNNER_EVENT_OUTPUT: must be true or false, got "yes"/],
  ];
  for (const [name, env, re] of cases) {
    const r = spawnSync(process.execPath, [CLI, 'sidecar'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, encoding: 'utf8', timeout: 15_000 });
    assert.equal(r.status, 1, `${name}: exit code (stderr: ${r.stderr})`);
    assert.match(r.stderr, re, name);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${name}: one line`);
    assert.ok(!r.stderr.includes(token), `${name}: the token is not echoed`);
  }
});

// ------------------------------------------------------------------------------------------------
// Faults, in the namespace harness

test('wrong token (other header, query string, case) is 401 and runs nothing', async (t) => {
  await withPod(
    t,
    { name: 'tok', graceSeconds: 10, hooks: { app: { shutdownSeconds: 1, preStop: [{ exec: { command: ['sh', '-c', 'echo ran >> ran.out'] } }] } }, containers: [{ name: 'app', uid: 1000 }] },
    async (pod) => {
      const path = '/v1/hooks/app/preStop';
      for (const [p, headers] of [
        [`${path}?token=${pod.token}`, {}],
        [path, { Authorization: `Bearer ${pod.token}` }],
        [path, { 'X-Hook-Runner-Token': pod.token.toUpperCase() }],
        [path, { 'X-Hook-Runner-Token': `${pod.token}x` }],
        [path, { 'X-Hook-Runner-Token': '' }],
      ] as Array<[string, Record<string, string>]>) {
        const status = await new Promise<number>((resolve, reject) => {
          http
            .get({ host: '127.0.0.1', port: pod.port, path: p, headers, agent: false }, (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            })
            .on('error', reject);
        });
        assert.equal(status, 401, `${p} ${JSON.stringify(Object.keys(headers))}`);
      }
      assert.equal((await get(pod.port, `${path}/last`, pod.token)).status, 404, 'no run recorded');
      // Then the right token: this call runs the handler itself, once (had a refused call started a
      // run, this one would join it and the log would say so).
      const ok = await kubeletCall({ path, port: pod.port }, 15_000, pod.token);
      assert.equal(ok.status, 200, ok.error);
      assert.deepEqual(readdirSync(`${pod.dir}/c-app/work`), ['ran.out']);
      assert.equal(readFileSync(`${pod.dir}/c-app/work/ran.out`, 'utf8'), 'ran\n');
      await until('the hook log line', () => pod.sidecarLines().some((l) => l.msg === 'hook succeeded'), 10_000);
      assert.equal(pod.sidecarLines().filter((l) => l.msg?.startsWith('hook handler attempt')).length, 1, 'one attempt in all');
      assert.ok(!pod.sidecarLines().some((l) => l.msg === 'duplicate hook call joined the run already made'));
    },
  );
});

test('a target that never appears: the call fails after the discovery wait, /last says why, the sidecar keeps serving', async (t) => {
  await withPod(t, { name: 'absent', graceSeconds: 5, hooks: { app: { postStart: [{ signal: { name: 'SIGUSR1' } }] } }, containers: [{ name: 'app', uid: 1000, start: false }] }, async (pod) => {
    const hook = pod.injected.spec.containers[0].lifecycle.postStart.httpGet;
    const r = await kubeletCall(hook, 30_000);
    assert.equal(r.ok, false, 'connection closed without an answer');
    // Answered by the sidecar, not abandoned by the kubelet (the 10 s discovery wait itself is driven
    // by a fake clock in test/sidecar-unit.test.ts).
    assert.doesNotMatch(r.error ?? '', /no answer within/);
    const rep = await lastReport(pod, 'app', 'postStart');
    assert.equal(rep.outcome, 'failed');
    assert.match(rep.reason, /no process of container app found \(HOOK_RUNNER_CONTAINER=app/);
    assert.equal((await get(pod.port, '/healthz')).status, 200);
  });
});

test('the target exits mid-hook: the exec hook finishes in the file tree it entered, the sidecar answers and keeps serving', async (t) => {
  await withPod(
    t,
    {
      name: 'midexit',
      graceSeconds: 30,
      hooks: {
        app: {
          shutdownSeconds: 1,
          preStop: [
            { exec: { command: ['sh', '-c', 'echo started > started.out; until [ -e go ]; do sleep 0.05; done; echo still-here > after.out; echo done'] }, timeoutSeconds: 60 },
            { signal: { name: 'SIGTERM', waitForExit: true }, timeoutSeconds: 2 },
          ],
        },
      },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const app = pod.containers.get('app')!;
      const call = kubeletCall(app.spec.lifecycle!.preStop!.httpGet, 90_000);
      const work = `${pod.dir}/c-app/work`;
      // The exec has entered the target and runs: now end the target under it, then let the hook go on.
      await until('the exec hook runs', () => existsSync(`${work}/started.out`), 15_000);
      process.kill(app.pid, 'SIGKILL');
      await app.exited;
      writeFileSync(`${work}/go`, '');
      const r = await call;
      const rep = await lastReport(pod, 'app', 'preStop');
      assert.equal(rep.handlers[0].outcome, 'succeeded', 'the exec finished');
      assert.equal(readFileSync(`${work}/after.out`, 'utf8').trim(), 'still-here');
      // The signal handler then finds the main process gone: a clear failure, not a hang.
      assert.equal(rep.handlers[1].outcome, 'failed');
      assert.match(rep.handlers[1].attempts[0].error, /main process \d+ is not running/);
      assert.equal(r.ok, false);
      assert.equal((await get(pod.port, '/healthz')).status, 200);
    },
  );
});

test('exec of a missing binary fails with the reason in /last; a handler writing 100 MB keeps the sidecar RSS bounded', async (t) => {
  await withPod(
    t,
    {
      name: 'output',
      graceSeconds: 30,
      hooks: {
        app: {
          postStart: [
            { exec: { command: ['/no/such/binary', '--flag'] }, continueOnError: true },
            { exec: { command: ['sh', '-c', 'yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 100000000; echo; echo tail-marker'] }, timeoutSeconds: 60 },
          ],
        },
      },
      containers: [{ name: 'app', uid: 1000, start: false }],
    },
    async (pod) => {
      const baseline = vmRssKiB(pod.sidecarPid);
      let peak = baseline;
      let sampling = true;
      const sampler = (async () => {
        for (let i = 0; i < 3000 && sampling; i++) {
          peak = Math.max(peak, vmRssKiB(pod.sidecarPid));
          await sleep(20);
        }
      })();
      const rc = await pod.startContainer('app');
      sampling = false;
      await sampler;
      assert.equal(rc.postStart?.ok, true, rc.postStart?.error);
      const rep = await lastReport(pod, 'app', 'postStart');
      const miss = rep.handlers[0].attempts[0];
      assert.equal(rep.handlers[0].outcome, 'failed');
      assert.equal(miss.exitCode, 127);
      assert.match(miss.outputTail, /\/no\/such\/binary: No such file or directory/);
      const big = rep.handlers[1].attempts[0];
      assert.equal(big.outcome, 'succeeded');
      assert.match(big.outputTail, /tail-marker\n$/);
      assert.ok(big.outputTail.length <= 4097, `output tail bounded (${big.outputTail.length})`);
      // Stated bound: while 100 MB go through the pipe the sidecar grows by less than 64 MiB and stays
      // under its default memory limit (128Mi). Keeping the output would take ≥ 100 MB. (On Node 24,
      // whose idle sidecar is ~16 MiB bigger, the peak measured 121 MiB: little headroom, noted.)
      t.diagnostic(`sidecar VmRSS baseline ${baseline} KiB, peak ${peak} KiB while the handler wrote 100 MB`);
      assert.ok(peak - baseline < 64 * 1024, `RSS grew by ${peak - baseline} KiB (bound 64 MiB)`);
      assert.ok(peak < 128 * 1024, `peak RSS ${peak} KiB (bound: the 128Mi memory limit)`);
    },
  );
});

test('a handler that exits but leaves children that ignore signals holding the pipes open is answered promptly, the children ended', async (t) => {
  await withPod(
    t,
    {
      name: 'orphans',
      graceSeconds: 10,
      hooks: { app: { shutdownSeconds: 1, preStop: [{ exec: { command: ['sh', '-c', 'trap "" TERM HUP INT; (trap "" TERM HUP INT; exec sleep 4401) & echo bye'] }, timeoutSeconds: 10 }] } },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const app = pod.containers.get('app')!;
      const r = await kubeletCall(app.spec.lifecycle!.preStop!.httpGet, 30_000);
      assert.equal(r.ok, true, r.error);
      // The child sleeps for over an hour: any answer (within the 30 s this kubelet waits) did not wait for it.
      assert.match((await lastReport(pod, 'app', 'preStop')).handlers[0].attempts[0].outputTail, /bye/);
      await until('no process the handler started outlives it', () => pod.processesWithArgv(['sleep', '4401']).length === 0, 15_000);
    },
  );
});

test('200 concurrent duplicate calls: one run, every call answered 200', async (t) => {
  await withPod(
    t,
    {
      name: 'dupes',
      graceSeconds: 30,
      hooks: { app: { shutdownSeconds: 1, preStop: [{ exec: { command: ['sh', '-c', 'echo run >> prestop.count; sleep 1'] } }] } },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const hook = pod.containers.get('app')!.spec.lifecycle!.preStop!.httpGet;
      const calls = await Promise.all(Array.from({ length: 200 }, () => kubeletCall(hook, 20_000)));
      assert.deepEqual([...new Set(calls.map((c) => (c.ok ? c.status : c.error)))], [200]);
      assert.equal(readFileSync(`${pod.dir}/c-app/work/prestop.count`, 'utf8'), 'run\n');
      // The log is read from the sidecar's stdout pipe: wait until all the lines have arrived.
      const joinedLines = () => pod.sidecarLines().filter((l) => l.msg === 'duplicate hook call joined the run already made').length;
      await until('199 joined log lines', () => joinedLines() >= 199, 15_000);
      assert.equal(joinedLines(), 199);
      const m = await get(pod.port, '/metrics');
      assert.match(m.body, /hook_runner_hook_calls_total\{[^}]*result="joined"[^}]*\} 199/);
    },
  );
});

test('HTTP targets that accept and never answer, or answer headers and never finish the body: the timeout applies', async (t) => {
  if (missing) return t.skip(missing);
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
  });
  const trickle = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n');
    const iv = setInterval(() => (s.destroyed ? clearInterval(iv) : s.write('x')), 100);
    s.on('close', () => clearInterval(iv));
  });
  await Promise.all([silent, trickle].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  t.after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
    trickle.close();
  });
  const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;
  await withPod(
    t,
    {
      name: 'hang',
      graceSeconds: 5,
      hooks: {
        app: {
          postStart: [
            { httpGet: { path: '/', port: portOf(silent) }, timeoutSeconds: 1, continueOnError: true },
            { http: { method: 'POST', path: '/', port: portOf(trickle) }, timeoutSeconds: 1, retries: 1, retryDelaySeconds: 0.1 },
          ],
        },
      },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const ps = pod.containers.get('app')!.postStart!;
      assert.equal(ps.ok, false);
      // Answered by the sidecar at its timeouts, not abandoned by the kubelet's 60 s bound.
      assert.doesNotMatch(ps.error ?? '', /no answer within/);
      const rep = await lastReport(pod, 'app', 'postStart');
      assert.deepEqual(
        rep.handlers.map((h: any) => [h.outcome, h.attempts.length]),
        [
          ['timeout', 1],
          ['timeout', 2],
        ],
      );
      assert.equal(rep.handlers[1].attempts[0].error, 'timed out after 1s');
      assert.equal((await get(pod.port, '/healthz')).status, 200);
    },
  );
});

// ------------------------------------------------------------------------------------------------
// Least privilege: each capability is necessary

const EXEC_HOOK = { app: { shutdownSeconds: 0, preStop: [{ exec: { command: ['sh', '-c', 'id -u > id.out'] } }] } };

for (const cap of ['sys_ptrace', 'dac_read_search', 'setuid', 'setgid'] as const) {
  test(`exec without ${cap.toUpperCase()}: the handler fails`, async (t) => {
    // grace 3, shutdown 0: discovery waits at most 2.5 s instead of 10.
    await withPod(
      t,
      { name: `no-${cap}`, graceSeconds: 3, hooks: EXEC_HOOK, containers: [{ name: 'app', uid: 1000, gid: 1001 }], capsOverride: (caps) => caps.filter((c) => c !== cap) },
      async (pod) => {
        assert.ok(!pod.sidecarCaps.includes(cap) && pod.sidecarCaps.length === 6);
        const r = await kubeletCall(pod.containers.get('app')!.spec.lifecycle!.preStop!.httpGet, 10_000);
        assert.equal(r.ok, false, 'the kubelet sees a failed hook');
        const rep = await lastReport(pod, 'app', 'preStop');
        const a = rep.handlers[0].attempts[0];
        const why = `${a.error} ${a.outputTail}`;
        t.diagnostic(`without ${cap}: ${why.trim()}`);
        if (cap === 'sys_ptrace' || cap === 'dac_read_search') assert.match(why, /no process of container app found/, 'environ of another uid is unreadable with either one alone');
        if (cap === 'setuid') assert.match(why, /setuid failed|Operation not permitted/);
        if (cap === 'setgid') assert.match(why, /setresgid failed|setregid failed|setgroups|Operation not permitted/);
        assert.throws(() => readFileSync(`${pod.dir}/c-app/work/id.out`), 'the command never ran as the target');
      },
    );
  });
}

test("exec without KILL: the timed-out command (the target's uid) cannot be killed and outlives its timeout", async (t) => {
  for (const withKill of [true, false]) {
    await withPod(
      t,
      {
        name: withKill ? 'kill' : 'no-kill',
        graceSeconds: 10,
        hooks: { app: { postStart: [{ exec: { command: ['sleep', withKill ? '4601' : '4602'] }, timeoutSeconds: 1 }] } },
        containers: [{ name: 'app', uid: 1000 }],
        ...(withKill ? {} : { capsOverride: (caps: string[]) => caps.filter((c) => c !== 'kill') }),
      },
      async (pod) => {
        const ps = pod.containers.get('app')!.postStart!;
        assert.equal(ps.ok, false);
        assert.equal((await lastReport(pod, 'app', 'postStart')).handlers[0].outcome, 'timeout');
        const cmd = ['sleep', withKill ? '4601' : '4602'];
        // Wait for what the sidecar does after the timeout to be over: its exec helper (which ends the
        // command's processes) has exited. Then the command is gone, or, without KILL, still there.
        await until('the exec helper has exited', () => !pod.processes().some((p) => p.argv[0]?.endsWith('hook-exec')), 15_000);
        if (withKill) await until('with KILL the process group is gone', () => pod.processesWithArgv(cmd).length === 0, 15_000);
        else assert.equal(pod.processesWithArgv(cmd).length, 1, 'without KILL the command survives its timeout');
      },
    );
  }
});

for (const cap of ['sys_ptrace', 'dac_read_search', 'kill'] as const) {
  test(`signal without ${cap.toUpperCase()}: the handler fails`, async (t) => {
    await withPod(
      t,
      {
        name: `sig-no-${cap}`,
        graceSeconds: 3,
        hooks: { app: { shutdownSeconds: 0, preStop: [{ signal: { name: 'SIGUSR1' } }] } },
        containers: [{ name: 'app', uid: 1000 }],
        capsOverride: (caps) => caps.filter((c) => c !== cap),
      },
      async (pod) => {
        assert.deepEqual(pod.sidecarCaps.length, 2);
        const r = await kubeletCall(pod.containers.get('app')!.spec.lifecycle!.preStop!.httpGet, 10_000);
        assert.equal(r.ok, false);
        const a = (await lastReport(pod, 'app', 'preStop')).handlers[0].attempts[0];
        t.diagnostic(`signal without ${cap}: ${a.error}`);
        if (cap === 'kill') assert.match(a.error, /kill\(\d+, SIGUSR1\): .*EPERM.*needs CAP_KILL|operation not permitted.*CAP_KILL/i);
        else assert.match(a.error, /no process of container app found/);
        assert.ok(!pod.appEvents('app').some((e) => e.sig === 'SIGUSR1'), 'the app got no signal');
      },
    );
  });
}

test('with the full signal set the same hook works (control for the three above)', async (t) => {
  await withPod(t, { name: 'sig-ok', graceSeconds: 3, hooks: { app: { shutdownSeconds: 0, preStop: [{ signal: { name: 'SIGUSR1' } }] } }, containers: [{ name: 'app', uid: 1000 }] }, async (pod) => {
    const r = await kubeletCall(pod.containers.get('app')!.spec.lifecycle!.preStop!.httpGet, 10_000);
    assert.equal(r.ok, true, r.error);
    await until('SIGUSR1 at the app', () => pod.appEvents('app').some((e) => e.sig === 'SIGUSR1') || undefined, 3000);
  });
});
