/**
 * `hook-runner explain`: goldens of the text output (test/golden-explain/<case>.yaml → <case>.txt,
 * optional <case>.options.yaml with `podSecurity` and `mode`; REFRESH_GOLDEN=1 rewrites them),
 * agreement with the webhook on every test/golden case, the sidecar's real log lines read back as
 * last reports, colour only on a TTY without NO_COLOR, and the CLI's exit codes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { createSidecarLogger } from '../sidecar/log.js';
import { parseCallerEnv } from '../sidecar/callers.js';
import { defaultConfig, parseConfig, type Config } from '../webhook/core/config.js';
import { injectDocuments, parseDocuments } from '../webhook/core/inject.js';
import type { PodSecurityLevel, ResolvedMode } from '../webhook/core/mutate.js';
import { HookService } from '../sidecar/service.js';
import { KubeClient } from '../sidecar/kube.js';
import { SidecarMetrics } from '../sidecar/metrics.js';
import { parseSpecJson } from '../common/spec.js';
import { explain, lastReportsFromLog, renderExplanation, type Explanation } from '../cli/explain.js';
import { formatExplanations, offlineInputs } from '../cli/explain-cli.js';
import { drawTimeline } from '../cli/timeline.js';
import { makeStyle } from '../cli/term.js';

const DIR = join(import.meta.dirname, 'golden-explain');
const GOLDEN_DIR = join(import.meta.dirname, 'golden');
const CLI = join(import.meta.dirname, '..', 'dist', 'cli', 'main.js');
const refresh = process.env.REFRESH_GOLDEN === '1';
const plain = makeStyle({ tty: false, env: {} });
const config = defaultConfig('test');

const files = readdirSync(DIR);
const cases = files
  .filter((f) => f.endsWith('.yaml') && !f.endsWith('.options.yaml'))
  .map((f) => f.slice(0, -'.yaml'.length))
  .sort();

function explainFile(path: string, opts: { podSecurity?: PodSecurityLevel; mode?: ResolvedMode; config?: Config } = {}): Explanation[] {
  return offlineInputs([path], opts.config ?? config, opts.mode ?? 'native', opts.podSecurity).map(explain);
}

test('every golden-explain output and options file has its input', () => {
  const orphans = files.filter((f) => f.endsWith('.txt') || f.endsWith('.options.yaml')).filter((f) => !cases.includes(f.replace(/(\.options\.yaml|\.txt)$/, '')));
  assert.deepEqual(orphans, []);
  assert.ok(cases.length >= 8, `expected at least 8 cases, found ${cases.length}`);
});

for (const name of cases) {
  test(`explain golden: ${name}`, () => {
    const optPath = join(DIR, `${name}.options.yaml`);
    const opts = existsSync(optPath) ? (parseYaml(readFileSync(optPath, 'utf8')) as { podSecurity?: PodSecurityLevel; mode?: ResolvedMode }) : {};
    const xs = explainFile(join(DIR, `${name}.yaml`), opts);
    const text = formatExplanations(xs, 'text', plain).replaceAll(DIR, 'test/golden-explain');
    const goldenPath = join(DIR, `${name}.txt`);
    if (refresh) writeFileSync(goldenPath, text);
    assert.ok(existsSync(goldenPath), `missing ${goldenPath}; run REFRESH_GOLDEN=1 and review it`);
    assert.equal(text, readFileSync(goldenPath, 'utf8'), `${name}: output differs from the golden; if intended, REFRESH_GOLDEN=1 and review the diff`);
    assert.doesNotMatch(text, /\x1b\[/, 'no escape sequences without a TTY');
  });
}

test('explain agrees with the webhook on every test/golden case, before and after injection', () => {
  for (const f of readdirSync(GOLDEN_DIR).filter((x) => x.endsWith('.yaml') && !x.endsWith('.injected.yaml') && !x.endsWith('.config.yaml'))) {
    const name = f.slice(0, -'.yaml'.length);
    const cfgPath = join(GOLDEN_DIR, `${name}.config.yaml`);
    const cfg = existsSync(cfgPath) ? parseConfig(readFileSync(cfgPath, 'utf8'), 'test', cfgPath) : config;
    const mode: ResolvedMode = cfg.sidecar.mode === 'container' ? 'container' : 'native';
    const before = explainFile(join(GOLDEN_DIR, f), { config: cfg, mode });
    const input = parseDocuments(readFileSync(join(GOLDEN_DIR, f), 'utf8'), name);
    const injected = injectDocuments(input, { config: cfg, mode, newToken: () => '0123456789abcdef0123456789abcdef' });
    const dir = mkdtempSync(join(tmpdir(), 'explain-'));
    const out = join(dir, `${name}.yaml`);
    writeFileSync(out, injected.map((r) => JSON.stringify(r.doc)).join('\n---\n'));
    const after = explainFile(out, { config: cfg, mode });
    assert.equal(after.length, before.length, name);
    before.forEach((b, i) => {
      const a = after[i]!;
      const wasInjected = injected.some((r) => r.injected) && b.injection.state === 'would-inject';
      assert.equal(a.injection.state, wasInjected ? 'injected' : b.injection.state, `${name} ${b.name}: state`);
      assert.deepEqual(a.containers, b.containers, `${name} ${b.name}: the hooks the sidecar runs are the ones explained before injection`);
      assert.deepEqual(a.budgets, b.budgets, `${name} ${b.name}: budget`);
      assert.deepEqual(a.sidecar, b.sidecar, `${name} ${b.name}: sidecar privileges`);
      if (wasInjected) assert.equal(a.injection.mode, mode);
    });
  }
});

test('the timeline marks the cut-off, the shutdown window, the 2 s floor and the grace end on one scale', () => {
  const lines = drawTimeline({ graceSeconds: 30, shutdownSeconds: 5, cutoffSeconds: 24.75, handlers: [{ label: '[0] sleep 45s', startSeconds: 0, worstCaseSeconds: 45 }] }, plain);
  const bar = (label: string) => {
    const l = lines.find((x) => x.trimStart().startsWith(label))!;
    return l.slice(2 + 24, 2 + 24 + 51);
  };
  // 50 columns for a 50 s horizon (the 45 s worst case rounds up to the 10 s tick): 1 column a second.
  assert.equal(bar('[0] sleep 45s'), `${'='.repeat(25)}${'x'.repeat(20)}${' '.repeat(6)}`);
  assert.equal(bar('cut-off').indexOf('|'), 25);
  assert.equal(bar('shutdownSeconds').trimEnd(), `${' '.repeat(25)}#####`);
  assert.equal(bar('2s floor').trimEnd(), `${' '.repeat(25)}..`);
  assert.equal(bar('grace end').indexOf('|'), 30);
  assert.match(lines[0]!, /0s {8}10s {7}20s {7}30s {7}40s {7}50s/);
});

test('colour only on a TTY and never with NO_COLOR; the CLI writes none into a pipe', () => {
  const [x] = explainFile(join(DIR, 'overrun.yaml'));
  assert.match(renderExplanation(x!, makeStyle({ tty: true, env: {} })), /\x1b\[31m/);
  assert.doesNotMatch(renderExplanation(x!, makeStyle({ tty: true, env: { NO_COLOR: '1' } })), /\x1b\[/);
  assert.doesNotMatch(renderExplanation(x!, makeStyle({ tty: false, env: {} })), /\x1b\[/);
  const r = spawnSync(process.execPath, [CLI, 'explain', '-f', join(DIR, 'overrun.yaml')], { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '1' } });
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /\x1b\[/);
  assert.match(r.stdout, /does not fit/);
});

test('CLI: -o json and yaml carry the same data; denied pods exit 1; usage errors exit 2', () => {
  const json = spawnSync(process.execPath, [CLI, 'explain', '-f', '-', '-o', 'json'], { input: readFileSync(join(DIR, 'fits.yaml')), encoding: 'utf8' });
  assert.equal(json.status, 0, json.stderr);
  const xs = JSON.parse(json.stdout) as Explanation[];
  assert.equal(xs[0]!.injection.state, 'would-inject');
  assert.equal(xs[0]!.budgets[0]!.fits, true);
  const yaml = spawnSync(process.execPath, [CLI, 'explain', '-f', join(DIR, 'fits.yaml'), '-o', 'yaml'], { encoding: 'utf8' });
  assert.deepEqual(
    parseYaml(yaml.stdout),
    xs.map((x) => ({ ...x, source: x.source.replace('stdin', join(DIR, 'fits.yaml')) })),
  );

  const denied = spawnSync(process.execPath, [CLI, 'explain', '-f', join(DIR, 'exec-baseline.yaml'), '--pod-security', 'baseline'], { encoding: 'utf8' });
  assert.equal(denied.status, 1);
  assert.match(denied.stdout, /injected: no \(invalid-hooks\)/);
  for (const args of [[], ['pod'], ['-f', 'x', 'pod', 'y'], ['-f', 'x', '-o', 'xml'], ['-f', 'x', '--pod-security', 'strict']]) {
    const r = spawnSync(process.execPath, [CLI, 'explain', ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  }
  const missing = spawnSync(process.execPath, [CLI, 'explain', '-f', join(DIR, 'no-such-file.yaml')], { encoding: 'utf8' });
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read .*no-such-file\.yaml: ENOENT/);
});

test("last reports are read back from the sidecar's real log lines", async (t) => {
  // A closed port: bind, note it, close.
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const closed = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));

  const lines: string[] = [];
  const log = createSidecarLogger({ name: 'hook-runner-sidecar', level: 'info', write: (line) => lines.push(...line.split('\n').filter(Boolean)) });
  const spec = parseSpecJson(
    JSON.stringify({
      app: {
        shutdownSeconds: 1,
        postStart: [{ tcpSocket: { port: closed }, timeoutSeconds: 2, retries: 1, retryDelaySeconds: 0 }],
        preStop: [{ sleep: { seconds: 0 } }],
      },
    }),
  );
  const pod = { name: 'p', namespace: 'ns', uid: 'u', node: 'n' };
  const service = new HookService({
    env: { spec, token: 'x'.repeat(32), port: 1, graceSeconds: 3, eventOutput: false, pod, callers: parseCallerEnv({}) },
    log,
    metrics: new SidecarMetrics(),
    kube: new KubeClient(pod, log, {}),
    tools: undefined,
    self: { capEff: 0n, capPrm: 0n },
    procRoot: mkdtempSync(join(tmpdir(), 'proc-')),
  });
  await service.call('app', 'postStart');
  await service.call('app', 'preStop');
  await new Promise((r) => setImmediate(r));
  const reports = lastReportsFromLog(`not json\n${lines.join('\n')}\n{"broken`);
  assert.equal(reports.length, 2);
  const [ps, stop] = reports;
  const real = service.last('app', 'postStart')!;
  assert.equal(ps!.outcome, 'failed');
  assert.equal(ps!.reason, real.reason);
  assert.equal(ps!.durationMs, real.durationMs);
  assert.match(ps!.detail ?? '', /^\[0\] tcpSocket attempt 2: /, 'the failing attempt is named');
  assert.equal(stop!.phase, 'preStop');
  assert.equal(stop!.outcome, 'succeeded');
  t.diagnostic(JSON.stringify(reports));
});
