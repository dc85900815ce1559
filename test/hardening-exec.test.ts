/**
 * Issue 11 items 1 and 4, attacked for real in the namespace harness (test/harness/pod.ts: root, a
 * PID namespace, the sidecar from the built CLI with exactly the capabilities `inject` wrote):
 * - an app (uid 1000, no capabilities) that points LD_PRELOAD or LD_AUDIT at a library it wrote must
 *   never get that library run with the sidecar's uid or capabilities; the final command still sees
 *   the app's environment;
 * - no process a handler started outlives the handler (finish or timeout), setsid'd or not;
 * - a container's main process is one the runtime started (parent outside the pod's PID namespace):
 *   never a leftover of the app, never a process of another container that sets the marker.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { findExecTools, runExec } from '../sidecar/handlers.js';
import { FAKE_APP, kubeletCall, lastReport, until, which, withPod } from './harness/pod.js';

/** A shared library whose constructor appends `uid euid CapEff cmdline` to `out`; `la_version` makes it an LD_AUDIT module too. */
const EVIL_C = (out: string) => `
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
unsigned int la_version(unsigned int v) { return v; }
__attribute__((constructor)) static void evil(void) {
  char cap[64] = "?", line[256], cmd[512] = {0};
  FILE *f = fopen("/proc/self/status", "r");
  if (f) { while (fgets(line, sizeof line, f)) if (!strncmp(line, "CapEff:", 7)) sscanf(line + 7, "%63s", cap); fclose(f); }
  int fd = open("/proc/self/cmdline", O_RDONLY);
  ssize_t n = fd >= 0 ? read(fd, cmd, sizeof cmd - 1) : 0;
  if (fd >= 0) close(fd);
  for (ssize_t i = 0; i + 1 < n; i++) if (!cmd[i]) cmd[i] = ' ';
  int o = open("${out}", O_WRONLY | O_APPEND | O_CREAT, 0666);
  if (o >= 0) { dprintf(o, "%d %d %s %s\\n", (int)getuid(), (int)geteuid(), cap, cmd); close(o); }
}
`;

function buildEvilLibrary(t: TestContext): { lib: string; records: string } | undefined {
  if (!which('gcc')) {
    t.skip('needs gcc to build the malicious library');
    return undefined;
  }
  const dir = mkdtempSync('/tmp/hook-runner-evil-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const records = join(dir, 'records');
  writeFileSync(records, '');
  chmodSync(records, 0o666);
  writeFileSync(join(dir, 'evil.c'), EVIL_C(records));
  const lib = join(dir, 'evil.so');
  const r = spawnSync('gcc', ['-shared', '-fPIC', '-O2', '-o', lib, join(dir, 'evil.c')], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `gcc: ${r.stderr}`);
  chmodSync(lib, 0o644);
  return { lib, records };
}

for (const variable of ['LD_PRELOAD', 'LD_AUDIT'] as const) {
  test(`${variable} set by the app to a library it wrote never runs with the sidecar's uid or capabilities; the final command still sees the app's environment`, async (t) => {
    const evil = buildEvilLibrary(t);
    if (!evil) return;
    // The app (uid 1000, no capabilities) copies the library onto its own private mount and points
    // the loader at it through /proc/<its pid>/root, a path that resolves from the sidecar too.
    const lib = '"$(dirname "$APP_LOG")/c-app/private/evil.so"';
    const app = `cp ${evil.lib} ${lib} && export ${variable}="/proc/$$/root"${lib} && exec ${process.execPath} ${FAKE_APP}`;
    await withPod(
      t,
      {
        name: `evil-${variable.toLowerCase().replace('_', '-')}`,
        graceSeconds: 10,
        hooks: { app: { shutdownSeconds: 1, preStop: [{ exec: { command: ['sh', '-c', `: hook-final-command; echo "loader=$${variable}"; echo "libpath=$LD_LIBRARY_PATH"`] } }] } },
        containers: [{ name: 'app', uid: 1000, gid: 1000, env: { LD_LIBRARY_PATH: '/opt/cuda/lib64' }, command: ['/bin/sh', '-c', app] }],
      },
      async (pod) => {
        await until('the app runs with the library loaded', () => pod.appEvents('app').some((e) => e.ev === 'start'), 10_000);
        const r = await kubeletCall(pod.containers.get('app')!.spec.lifecycle!.preStop!.httpGet, 10_000);
        assert.equal(r.ok, true, r.error);
        const out = (await lastReport(pod, 'app', 'preStop')).handlers[0].attempts[0].outputTail as string;
        // The final command got the app's environment, loader variables included.
        assert.match(out, /^loader=\/proc\/\d+\/root\/.*\/c-app\/private\/evil\.so$/m);
        assert.match(out, /^libpath=\/opt\/cuda\/lib64$/m);
        const records = readFileSync(evil.records, 'utf8').trim().split('\n').filter(Boolean);
        t.diagnostic(`library records:\n${records.join('\n')}`);
        assert.ok(
          records.some((l) => l.includes('hook-final-command')),
          'the library ran in the final command (the environment reached it)',
        );
        for (const l of records) {
          const [uid, euid, capEff] = l.split(' ');
          assert.deepEqual([uid, euid, capEff], ['1000', '1000', '0000000000000000'], `the library ran only with the app's privileges: ${l}`);
        }
      },
    );
  });
}

test('leftovers: `sleep &`, `setsid sleep &` and a setsid grandchild are gone when the hook returns', async (t) => {
  const leftovers = ['4701', '4702', '4703', '4704'];
  await withPod(
    t,
    {
      name: 'leftovers',
      graceSeconds: 5,
      hooks: { app: { postStart: [{ exec: { command: ['sh', '-c', 'sleep 4701 & setsid sleep 4702 & (setsid sh -c "sleep 4703 & exec sleep 4704" &); echo started'] } }] } },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const ps = pod.containers.get('app')!.postStart!;
      assert.equal(ps.ok, true, ps.error);
      // Checked at once, no polling: the hook answered only after every process it started was gone.
      for (const n of leftovers) assert.deepEqual(pod.processesWithArgv(['sleep', n]), [], `sleep ${n} outlived the hook`);
      const a = (await lastReport(pod, 'app', 'postStart')).handlers[0].attempts[0];
      assert.equal(a.outcome, 'succeeded');
      assert.match(a.outputTail, /started/);
    },
  );
});

test('leftovers at a timeout: the command and its background children, setsid or not, are all ended', async (t) => {
  await withPod(
    t,
    {
      name: 'leftovers-timeout',
      graceSeconds: 5,
      hooks: { app: { postStart: [{ exec: { command: ['sh', '-c', 'trap "" TERM; sleep 4711 & setsid sleep 4712 & echo started; sleep 4713'] }, timeoutSeconds: 1 }] } },
      containers: [{ name: 'app', uid: 1000 }],
    },
    async (pod) => {
      const ps = pod.containers.get('app')!.postStart!;
      assert.equal(ps.ok, false);
      const a = (await lastReport(pod, 'app', 'postStart')).handlers[0].attempts[0];
      assert.equal(a.outcome, 'timeout');
      assert.match(a.outputTail, /started/);
      // The call is answered at the timeout; the helper ends the processes right after: bounded wait.
      await until('every process of the timed-out hook gone', () => ['4711', '4712', '4713'].every((n) => pod.processesWithArgv(['sleep', n]).length === 0), 5000);
    },
  );
});

test('a process the app forked that outlives it is never the main process: after a restart the signal hits the new app', async (t) => {
  // The app forks a child carrying the marker env, then becomes the fake app.
  const app = `sleep 4721 & exec ${process.execPath} ${FAKE_APP}`;
  await withPod(
    t,
    {
      name: 'reparented',
      graceSeconds: 10,
      hooks: { app: { shutdownSeconds: 1, preStop: [{ signal: { name: 'SIGUSR1' } }] } },
      containers: [{ name: 'app', uid: 1000, command: ['/bin/sh', '-c', app] }],
    },
    async (pod) => {
      const first = pod.containers.get('app')!;
      await until('first app run started', () => pod.appEvents('app').some((e) => e.ev === 'start'), 10_000);
      process.kill(first.pid, 'SIGKILL');
      await first.exited;
      // The child is now the pod init's (PPid 1 inside the pod), started before the next run.
      const [leftover] = pod.processesWithArgv(['sleep', '4721']);
      assert.ok(leftover, 'the forked child outlived the app');
      assert.equal(pod.podView(leftover, 'PPid'), '1');
      const second = await pod.startContainer('app');
      await until('second app run started', () => pod.appEvents('app').filter((e) => e.ev === 'start').length === 2, 10_000);
      const r = await kubeletCall(second.spec.lifecycle!.preStop!.httpGet, 15_000);
      assert.equal(r.ok, true, r.error);
      await until('SIGUSR1 at the new app', () => pod.appEvents('app').some((e) => e.ev === 'signal' && e.sig === 'SIGUSR1'), 3000);
      assert.equal(pod.processesWithArgv(['sleep', '4721']).length, 2, 'neither the leftover nor the new child got the signal');
    },
  );
});

test('another container that sets HOOK_RUNNER_CONTAINER=app is never chosen for signal or exec', async (t) => {
  await withPod(
    t,
    {
      name: 'impostor',
      graceSeconds: 10,
      hooks: { app: { shutdownSeconds: 1, preStop: [{ signal: { name: 'SIGUSR1' }, continueOnError: true }, { exec: { command: ['sh', '-c', 'touch hooked'] } }] } },
      // Started first, so it is the earliest process carrying the marker.
      containers: [
        { name: 'evil', uid: 1000, env: { HOOK_RUNNER_CONTAINER: 'app' } },
        { name: 'app', uid: 1000 },
      ],
    },
    async (pod) => {
      const r = await kubeletCall(pod.containers.get('app')!.spec.lifecycle!.preStop!.httpGet, 15_000);
      assert.equal(r.ok, false, 'the hook fails rather than act on a process that may be the wrong one');
      const rep = await lastReport(pod, 'app', 'preStop');
      for (const h of rep.handlers) assert.match(h.attempts[0].error, /processes of 2 containers claim HOOK_RUNNER_CONTAINER=app/);
      assert.ok(!pod.appEvents('evil').some((e) => e.ev === 'signal'), 'the impostor got no signal');
      assert.ok(!pod.appEvents('app').some((e) => e.ev === 'signal'));
      assert.ok(!existsSync(`${pod.dir}/c-evil/work/hooked`), 'the exec never ran in the impostor');
      await until('the refusal log line', () => pod.sidecarLines().some((l) => /refusing to pick a target/.test(l.msg ?? '')), 10_000);
    },
  );
});

test("issue 13 item 2: an exec attempt settles when the helper's pipes close, not after a fixed wait (setTimeout frozen)", async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root: entering the target root needs CAP_SYS_CHROOT');
  const tools = findExecTools();
  assert.ok(tools, 'dist/sidecar/hook-exec is missing: run npm run build first');
  const target = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.after(() => target.kill('SIGKILL'));
  const stat = readFileSync(`/proc/${target.pid}/stat`, 'utf8');
  const startTime = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  // Only setTimeout is frozen: a result that waits on any timer never comes. setInterval bounds the wait.
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const run = runExec(['/bin/sh', '-c', 'echo out; echo err >&2; exit 3'], { pid: target.pid!, startTime }, new AbortController().signal, {
    procRoot: '/proc',
    tools,
    self: { capEff: 0n, capPrm: 0n },
  });
  let bound: NodeJS.Timeout | undefined;
  const r = await Promise.race([run, new Promise<'none'>((resolve) => (bound = setInterval(() => resolve('none'), 10_000)))]);
  clearInterval(bound);
  assert.notEqual(r, 'none', 'the attempt settled without any setTimeout firing');
  assert.deepEqual(r, { ok: false, exitCode: 3, error: 'exit code 3', output: 'out\nerr\n' });
});
