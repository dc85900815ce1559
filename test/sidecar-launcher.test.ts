// The image's entry point, dist/sidecar/hook-runner.cjs (sidecar/launcher.ts, issue 13.1): `sidecar`
// runs from one CommonJS file without node's ES module loader; every other command is the ES module CLI.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort, get, REPO, until } from './harness/pod.js';

const LAUNCHER = join(REPO, 'dist/sidecar/hook-runner.cjs');

test('the launcher bundle requires node builtins only and has no ES module import', (t) => {
  if (!existsSync(LAUNCHER)) return t.skip('needs npm run build (dist/sidecar/hook-runner.cjs)');
  const text = readFileSync(LAUNCHER, 'utf8');
  const required = [...text.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!);
  assert.ok(required.length > 0);
  assert.deepEqual(
    required.filter((s) => !s.startsWith('node:')),
    [],
  );
  // Dynamic imports: builtins loaded after readiness (node:https for Events), and the hand-over of
  // every other command to the ES module CLI.
  const imported = [...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!);
  assert.deepEqual(
    imported.filter((s) => !s.startsWith('node:')),
    ['../cli/main.js'],
  );
  for (const m of ['node:module', 'node:fs/promises']) assert.ok(!required.includes(m), `${m} is required at start`);
});

test('hook-runner.cjs sidecar serves /readyz and a hook call without loading the ES module loader; other commands go to the ES module CLI', async (t) => {
  if (!existsSync(LAUNCHER)) return t.skip('needs npm run build (dist/sidecar/hook-runner.cjs)');
  const version = spawnSync(process.execPath, [LAUNCHER, 'version'], { encoding: 'utf8' });
  assert.equal(version.status, 0, version.stderr);
  assert.match(version.stdout, /^hook-runner \d+\.\d+\.\d+/);

  // Writes the internal modules node loaded to a file when the process exits.
  const dir = mkdtempSync(join(tmpdir(), 'hr-launcher-'));
  const preload = join(dir, 'modules.cjs');
  const out = join(dir, 'modules.json');
  writeFileSync(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.moduleLoadList)));\n`);
  const port = await freePort();
  const token = 'launcher-test-token-0123456789';
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOOK_RUNNER_SPEC: JSON.stringify({ app: { postStart: [{ sleep: { seconds: 0 } }], preStop: [] } }),
    HOOK_RUNNER_TOKEN: token,
    HOOK_RUNNER_PORT: String(port),
    HOOK_RUNNER_CALLERS: 'any',
  };
  const child = spawn(process.execPath, ['--require', preload, LAUNCHER, 'sidecar'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await until('the sidecar to answer /readyz', () => stdout.includes('sidecar ready'), 10_000);
    assert.equal((await get(port, '/readyz')).status, 200);
    // No process carries the marker: a sleep-only list runs after the short discovery wait.
    const call = await get(port, '/v1/hooks/app/postStart', token);
    assert.equal(call.status, 200, call.body);
  } finally {
    child.kill('SIGINT');
  }
  assert.equal(await exited, 0);
  const loaded = JSON.parse(readFileSync(out, 'utf8')) as string[];
  assert.ok(loaded.includes('NativeModule http'), 'the module list is the sidecar process');
  // Against what a bare CommonJS script loads on the same Node: Node 22+ loads parts of the ES module
  // loader for every entry point, so only what the sidecar adds beyond that counts.
  const bareScript = join(mkdtempSync(join(tmpdir(), 'bare-')), 'bare.cjs');
  writeFileSync(bareScript, 'process.stdout.write(JSON.stringify(process.moduleLoadList));\n');
  const bare = JSON.parse(execFileSync(process.execPath, [bareScript], { encoding: 'utf8' })) as string[];
  for (const m of ['NativeModule internal/modules/esm/loader', 'NativeModule internal/modules/esm/module_job', 'NativeModule internal/fs/promises']) {
    assert.ok(!loaded.includes(m) || bare.includes(m), `${m} loaded (a bare CommonJS script on this Node does not load it)`);
  }
});
