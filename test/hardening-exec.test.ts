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
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { FAKE_APP, kubeletCall, lastReport, processesWithArgv, until, which, withPod } from './harness/pod.js';

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
        assert.match(out, new RegExp(`^loader=/proc/\\d+/root/.*/c-app/private/evil\\.so$`, 'm'));
        assert.match(out, /^libpath=\/opt\/cuda\/lib64$/m);
        const records = readFileSync(evil.records, 'utf8').trim().split('\n').filter(Boolean);
        t.diagnostic(`library records:\n${records.join('\n')}`);
        assert.ok(records.some((l) => l.includes('hook-final-command')), 'the library ran in the final command (the environment reached it)');
        for (const l of records) {
          const [uid, euid, capEff] = l.split(' ');
          assert.deepEqual([uid, euid, capEff], ['1000', '1000', '0000000000000000'], `the library ran only with the app's privileges: ${l}`);
        }
      },
    );
  });
}
