/**
 * Supported Node.js versions (20, end-of-life, and 24 LTS) stated the same way everywhere: the
 * image, `engines`, CI and the README; and `hook-runner version -o json` reporting the build's commit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; engines: { node: string }; bin: Record<string, string> };
const imageNode = /^ARG NODE_IMAGE=node:(\d+\.\d+\.\d+)-/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1];

test('the image, engines, CI and the README agree: Node.js 24 LTS and 20 (end-of-life)', () => {
  assert.ok(imageNode, 'Dockerfile: ARG NODE_IMAGE=node:X.Y.Z-...');
  assert.match(imageNode, /^24\./, 'the image runs Node.js 24 LTS');
  assert.equal(PKG.engines.node, '^20.11.0 || ^24.0.0', 'engines: the two versions CI tests');

  // .ci/run runs the whole suite on the machine's Node and again on the image's exact Node version.
  const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
  const tests = [...ci.matchAll(/\bnpm test\b/g)].length;
  assert.ok(tests >= 2, '.ci/run runs npm test twice');
  assert.match(ci, /ARG NODE_IMAGE=node:/, '.ci/run reads the version from the Dockerfile');
  assert.match(ci, /npm install [^\n]*--prefix "\$node_dir" "\$node_pkg@\$image_node"/, '.ci/run installs that exact version from npm');
  assert.match(ci, /PATH="\$node_dir\/node_modules\/\$node_pkg\/bin:\$PATH"/, 'and puts it first on PATH for the second run');

  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.match(readme, /Node\.js 24 LTS/);
  assert.match(readme, /Node\.js 20[^.]*end[- ]of[- ]life/i, 'the README says Node 20 is end-of-life');
  assert.ok(readme.includes(`node:${imageNode}`), `the README names the image's Node (${imageNode})`);
});

test('this suite runs on a supported Node.js', () => {
  assert.ok(['20', '24'].includes(process.versions.node.split('.')[0]!), `running on ${process.version}`);
});

test('hook-runner version -o json: version, the commit the build was made from, Node.js and platform', (t) => {
  const main = join(ROOT, PKG.bin['hook-runner']!);
  if (!existsSync(main)) return t.skip(`needs the build output ${main} (npm test builds it first; run npm run build)`);
  const out = JSON.parse(execFileSync(process.execPath, [main, 'version', '-o', 'json'], { encoding: 'utf8', timeout: 20_000 })) as Record<string, string>;
  assert.deepEqual(Object.keys(out), ['version', 'commit', 'node', 'platform']);
  assert.equal(out.version, PKG.version);
  assert.equal(out.node, process.version);
  assert.equal(out.platform, `${process.platform}/${process.arch}`);
  let head: string | undefined;
  try {
    head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    head = undefined;
  }
  // The build ran in this checkout (npm test builds first), so it recorded HEAD, or `unknown` without git.
  if (head) assert.match(out.commit!, /^[0-9a-f]{40}$/, 'a full commit id');
  else assert.equal(out.commit, 'unknown');

  assert.equal(execFileSync(process.execPath, [main, 'version'], { encoding: 'utf8' }), `hook-runner ${PKG.version}\n`, 'plain output unchanged');
  const yaml = execFileSync(process.execPath, [main, 'version', '-o', 'yaml'], { encoding: 'utf8' });
  assert.match(yaml, new RegExp(`^version: ${PKG.version.replaceAll('.', '\\.')}$`, 'm'));
  const bad = spawnSync(process.execPath, [main, 'version', '-o', 'xml'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /-o must be json or yaml, got "xml"/);
});

test('scripts/build-info.mjs: the Docker build arg wins, git HEAD otherwise, `unknown` without git; garbage refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hr-build-info-'));
  try {
    const script = join(ROOT, 'scripts', 'build-info.mjs');
    const runIt = (env: Record<string, string>) => {
      const file = join(dir, `info-${Math.random().toString(16).slice(2)}.json`);
      const r = spawnSync(process.execPath, [script, file], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, encoding: 'utf8' });
      return { r, info: existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { commit: string }) : undefined };
    };
    const sha = 'a'.repeat(40);
    assert.deepEqual(runIt({ HOOK_RUNNER_COMMIT: sha }).info, { commit: sha });
    assert.deepEqual(runIt({ HOOK_RUNNER_COMMIT: 'unknown' }).info, { commit: 'unknown' }, 'the Dockerfile default');
    // No git repository (GIT_DIR points nowhere): unknown, and the build goes on.
    const noGit = runIt({ GIT_DIR: join(dir, 'nowhere') });
    assert.equal(noGit.r.status, 0, noGit.r.stderr);
    assert.deepEqual(noGit.info, { commit: 'unknown' });
    const bad = runIt({ HOOK_RUNNER_COMMIT: 'main; rm -rf /' });
    assert.equal(bad.r.status, 1);
    assert.match(bad.r.stderr, /HOOK_RUNNER_COMMIT: expected a git commit id .* got "main; rm -rf \/"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
