/**
 * README.md agrees with the CLI: every command in its shell code blocks that needs no cluster runs
 * and exits 0 (bounded in time); the rest are skipped by name, each with its reason. `npm start` is
 * a server: it is started, reached over HTTPS on /healthz, used by the commands after it, and
 * stopped. The CLI synopsis block names only commands and flags the binary has.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request, waitFor } from './support/https.js';

const ROOT = join(import.meta.dirname, '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const COMMAND_TIMEOUT_MS = 60_000;

/** Commands not run here, by prefix, and why. */
const NOT_RUN: Array<[prefix: string, reason: string]> = [
  ['kubectl ', 'needs a Kubernetes cluster'],
  ['docker ', 'needs a Docker engine'],
  ['kind ', 'needs kind and a container engine'],
  ['npm ci', 'reinstalls node_modules under the running test suite; CI runs it before npm test'],
  ['npm test', 'is the suite this test runs in'],
  ['npm run e2e', 'needs kind, podman or root: the end-to-end tiers of docs/e2e.md'],
  ['npm run bench', 'takes minutes and measures timings, which belong to npm run bench, not npm test'],
];

/** The commands of README's sh/bash code blocks: `\` continuations joined, comments cut, `&&` split. */
export function readmeCommands(markdown: string): string[] {
  const out: string[] = [];
  for (const m of markdown.matchAll(/^```(?:sh|bash|shell|console)\n([\s\S]*?)^```$/gm)) {
    const joined = m[1]!.replace(/\\\n\s*/g, ' ');
    for (const raw of joined.split('\n')) {
      const line = raw
        .replace(/^\$ /, '')
        .replace(/\s+#\s.*$/, '')
        .trim();
      if (line === '' || line.startsWith('#')) continue;
      out.push(...line.split(' && ').map((c) => c.trim()));
    }
  }
  return out;
}

function notRunReason(cmd: string): string | undefined {
  return NOT_RUN.find(([prefix]) => cmd === prefix.trim() || cmd.startsWith(prefix))?.[1];
}

interface Launched {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
}

interface Server {
  port: number;
  ca: string;
}

/**
 * `npm start` on a free port: README's port 8443 may be taken on a shared machine, so the listen
 * address is overridden (`npm start -- --listen 127.0.0.1:0`; the last --listen wins), and the
 * commands after it get the port the server chose.
 */
function launch(cmd: string): Launched {
  // Its own process group, so that stopping it reaches sh, npm and node, and nothing else.
  const proc = spawn('sh', ['-c', `${cmd} -- --listen 127.0.0.1:0`], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return { proc, stdout: () => stdout, stderr: () => stderr };
}

async function startServer(cmd: string, launched: Launched): Promise<Server> {
  const { proc } = launched;
  // npm start builds first (tsc and esbuild): minutes on a loaded machine, so the bound is generous.
  // The log line (stdout) and the CA (stderr) come through two pipes: wait for both.
  const [line, ca] = await waitFor(
    `${cmd} to log "webhook listening" and write the CA certificate to stderr`,
    () => {
      if (proc.exitCode !== null) throw new Error(`${cmd} exited ${proc.exitCode} before listening:\n${launched.stderr()}`);
      const l = launched
        .stdout()
        .split('\n')
        .find((x) => x.includes('"msg":"webhook listening'));
      const c = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\r?\n/.exec(launched.stderr())?.[0];
      return l !== undefined && c !== undefined && ([l, c] as const);
    },
    { tries: 2400, intervalMs: 100 },
  );
  const listening = JSON.parse(line) as { port: number };
  return { port: listening.port, ca };
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to the process group this test started; SIGKILL if it outlives 30 s. */
async function stopServer(proc: ChildProcess): Promise<void> {
  const pgid = proc.pid!;
  if (!groupAlive(pgid)) return;
  process.kill(-pgid, 'SIGTERM');
  try {
    await waitFor('npm start to stop', () => !groupAlive(pgid), { tries: 300, intervalMs: 100 });
  } catch (e) {
    if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
    throw e;
  }
}

test('README: every shell command that needs no cluster exits 0; the others are skipped with their reason', async (t) => {
  const commands = readmeCommands(README);
  assert.ok(
    commands.some((c) => c === 'npm start'),
    `README's quick start runs npm start: ${commands.join(' | ')}`,
  );
  assert.ok(
    commands.some((c) => c.includes('inject -f examples/pod.yaml')),
    'README shows inject',
  );
  let server: Server | undefined;
  let launched: Launched | undefined;
  try {
    for (const cmd of commands) {
      const reason = notRunReason(cmd);
      if (reason) {
        await t.test(cmd, (st) => st.skip(reason));
        continue;
      }
      if (cmd === 'npm start') {
        await t.test(cmd, async () => {
          launched = launch(cmd);
          server = await startServer(cmd, launched);
          const health = await request({ port: server.port, path: '/healthz', ca: server.ca, timeoutMs: 10_000 });
          assert.equal(health.status, 200, health.text);
        });
        continue;
      }
      await t.test(cmd, (st) => {
        let run = cmd;
        if (/https:\/\/127\.0\.0\.1:8443\b/.test(cmd)) {
          if (!server) return void st.skip('needs the server npm start runs, which did not start');
          if (cmd.startsWith('curl ') && spawnSync('sh', ['-c', 'command -v curl']).status !== 0) return void st.skip('needs curl');
          run = cmd.replace(/127\.0\.0\.1:8443/g, `127.0.0.1:${server.port}`);
        }
        const r = spawnSync('sh', ['-c', run], { cwd: ROOT, encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
        assert.equal(r.status, 0, `${run}\nexit ${r.status} ${r.signal ?? ''}\nstderr: ${r.stderr}`);
        if (cmd.startsWith('curl ') && cmd.includes('/mutate')) {
          const review = JSON.parse(r.stdout) as { response: { allowed: boolean; patchType?: string } };
          assert.equal(review.response.allowed, true);
          assert.equal(review.response.patchType, 'JSONPatch', 'the sample AdmissionReview gets the sidecar');
        }
      });
    }
  } finally {
    if (launched) {
      await stopServer(launched.proc);
      if (server) assert.match(launched.stdout(), /"msg":"webhook stopped"/, 'npm start stops cleanly on SIGTERM');
    }
  }
});

test('README: the CLI reference names only commands and flags the binary has', () => {
  const block = /## CLI reference\n\n```\n([\s\S]*?)```/.exec(README)?.[1];
  assert.ok(block, 'README has a CLI reference block');
  for (const line of block.trim().split('\n')) {
    const cmd = /^hook-runner ([a-z-]+)/.exec(line)?.[1];
    assert.ok(cmd, `not a hook-runner command: ${line}`);
    const help = spawnSync(process.execPath, [CLI, cmd, '--help'], { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
    assert.equal(help.status, 0, `${cmd} --help: ${help.stderr}`);
    for (const flag of line.match(/(?<=[\s[])-{1,2}[a-zA-Z][-a-zA-Z]*/g) ?? []) {
      assert.ok(help.stdout.includes(flag), `README's ${JSON.stringify(line)} names ${flag}, which '${cmd} --help' does not list`);
    }
  }
});

test('README: the denial example is what the webhook says for that annotation', async () => {
  const { reviewAdmission } = await import('../webhook/core/admission.js');
  const { defaultConfig } = await import('../webhook/core/config.js');
  const example = /^admission webhook "inject\.hook-runner\.dev" denied the request: (.+)$/m.exec(README)?.[1];
  assert.ok(example, 'README shows a denial');
  const hooks = 'app: {preStop: [{sleep: {seconds: 5}}, {httpGet: {path: /drain, port: 70000}, timeoutSecond: 10}]}';
  assert.ok(README.includes(hooks.slice('app: {preStop: '.length, -1)), 'README shows the annotation of its denial example');
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', annotations: { 'hook-runner.dev/hooks': hooks } }, spec: { containers: [{ name: 'app', image: 'x' }] } };
  const body = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'u', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: 'd', object: pod },
  };
  const r = reviewAdmission(body, { config: defaultConfig('test'), mode: 'native' });
  const review = r.review as { response: { status: { message: string } } };
  assert.equal(review.response.status.message, example);
});
