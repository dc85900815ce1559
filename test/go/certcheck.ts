/**
 * Runs test/go/certcheck (Go's crypto/x509 and crypto/tls, the parser and verifier of the API
 * server and the kubelet) on certificates the project made. Built once per test process with
 * `go build` into a temp dir: GO111MODULE=off, GOPROXY=off, its own GOCACHE/GOPATH, so nothing is
 * fetched and nothing outside the temp dir is written.
 *
 * Without `go`: the test skips saying what is missing, except in CI (CI=true) where that fails.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

const SOURCE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'certcheck');
export const NEEDS_GO = 'needs go (apt-get install golang-go)';

export interface ParseCheck {
  name: string;
  pem: string;
  /** `ca`: every certificate must be a CA; `serving`: the first must be a TLS server certificate. */
  role?: 'ca' | 'serving';
}
export interface VerifyCheck {
  name: string;
  roots: string;
  leaf: string;
  dnsNames: string[];
}
export interface HandshakeCheck {
  name: string;
  addr: string;
  roots: string;
  serverName: string;
}
export interface CertChecks {
  parse?: ParseCheck[];
  verify?: VerifyCheck[];
  handshake?: HandshakeCheck[];
}
export interface CheckResult {
  check: 'parse' | 'verify' | 'handshake';
  name: string;
  ok: boolean;
  error?: string;
  detail?: string;
}

let built: { bin: string; dir: string } | undefined;

function goOnPath(): boolean {
  return spawnSync('go', ['version'], { stdio: 'ignore' }).status === 0;
}

function build(): string {
  if (built) return built.bin;
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-certcheck-'));
  const bin = join(dir, 'certcheck');
  const env = { ...process.env, GO111MODULE: 'off', GOPROXY: 'off', GOFLAGS: '', GOCACHE: join(dir, 'cache'), GOPATH: join(dir, 'gopath'), GOTOOLCHAIN: 'local', CGO_ENABLED: '0' };
  execFileSync('go', ['build', '-o', bin, '.'], { cwd: SOURCE_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] });
  built = { bin, dir };
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return bin;
}

/**
 * The checker, or undefined after `t.skip` when `go` is missing outside CI. In CI a missing `go`
 * fails the test: `.ci/run` installs golang-go, so its absence there is a broken runner.
 */
export function goCertCheck(t: TestContext): ((checks: CertChecks) => Promise<CheckResult[]>) | undefined {
  if (!goOnPath()) {
    if (process.env.CI === 'true') assert.fail(`${NEEDS_GO}: CI=true, so a missing go fails instead of skipping (.ci/run installs it)`);
    t.skip(NEEDS_GO);
    return undefined;
  }
  const bin = build();
  return (checks) => runCertCheck(bin, checks);
}

/** Runs the checker (asynchronously: a handshake needs the event loop of the server under test). */
function runCertCheck(bin: string, checks: CertChecks): Promise<CheckResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0 && code !== 1) return reject(new Error(`certcheck exited ${code ?? signal}: ${Buffer.concat(err).toString()}`));
      try {
        resolve((JSON.parse(Buffer.concat(out).toString()) as { results: CheckResult[] }).results);
      } catch (e) {
        reject(new Error(`certcheck: unreadable output: ${(e as Error).message}`));
      }
    });
    child.stdin.end(JSON.stringify(checks));
  });
}

/** Fails with every failed check's name and Go's own error. */
export function assertAllOk(results: CheckResult[], what: string): void {
  assert.ok(results.length > 0, `${what}: no checks ran`);
  const failed = results.filter((r) => !r.ok);
  assert.deepEqual(
    failed.map((r) => `${r.check} ${r.name}: ${r.error ?? ''}`),
    [],
    `${what}: Go's crypto/x509 / crypto/tls refused`,
  );
}
