#!/usr/bin/env node
/**
 * Build step (`npm run build`): writes dist/build-info.json, `{"commit": "<git commit>"}`, which
 * `hook-runner version -o json` reports. The commit comes from HOOK_RUNNER_COMMIT when set (the
 * Dockerfile's build arg: .git is not in the image's build context), else from `git rev-parse HEAD`
 * of this checkout, else it is `unknown` (a tarball, no git). Usage: build-info.mjs [OUT_FILE].
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = resolve(process.argv[2] ?? `${root}/dist/build-info.json`);
const COMMIT_RE = /^[0-9a-f]{7,64}$/;

function commit() {
  const given = process.env.HOOK_RUNNER_COMMIT?.trim();
  if (given && given !== 'unknown') {
    if (!COMMIT_RE.test(given)) {
      throw new Error(`HOOK_RUNNER_COMMIT: expected a git commit id (7-64 hex digits, lower case) or "unknown", got ${JSON.stringify(given)}`);
    }
    return given;
  }
  if (given === 'unknown') return 'unknown';
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
    return COMMIT_RE.test(head) ? head : 'unknown';
  } catch {
    return 'unknown'; // no git, or not a checkout
  }
}

try {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ commit: commit() })}\n`);
} catch (e) {
  process.stderr.write(`build-info: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
