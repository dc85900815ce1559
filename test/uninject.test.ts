/**
 * `hook-runner uninject`: removes exactly what injection added. Every golden case round-trips
 * (uninject(inject(x)) deep-equals x, key order included in the YAML), documents without hook-runner
 * pass through, and the CLI reads files and stdin like inject.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_STATUS, ENV_MARKER } from '../common/names.js';
import { defaultConfig, parseConfig, type Config } from '../webhook/core/config.js';
import { formatYaml, injectDocuments, parseDocuments } from '../webhook/core/inject.js';
import { mutatePod, type ResolvedMode } from '../webhook/core/mutate.js';
import { UninjectError, uninjectDocuments, uninjectPod } from '../webhook/core/uninject.js';

const DIR = join(import.meta.dirname, 'golden');
const CLI = join(import.meta.dirname, '..', 'dist', 'cli', 'main.js');
const cases = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml') && !f.endsWith('.injected.yaml') && !f.endsWith('.config.yaml'))
  .map((f) => f.slice(0, -'.yaml'.length))
  .sort();

function setup(name: string): { config: Config; mode: ResolvedMode } {
  const cfgPath = join(DIR, `${name}.config.yaml`);
  const config = existsSync(cfgPath) ? parseConfig(readFileSync(cfgPath, 'utf8'), 'test', cfgPath) : defaultConfig('test');
  return { config, mode: config.sidecar.mode === 'container' ? 'container' : 'native' };
}

for (const name of cases) {
  test(`golden round trip: uninject(inject(${name})) == ${name}`, () => {
    const { config, mode } = setup(name);
    const input = parseDocuments(readFileSync(join(DIR, `${name}.yaml`), 'utf8'), name);
    const injected = injectDocuments(input, { config, mode, newToken: () => '0123456789abcdef0123456789abcdef' }).map((r) => r.doc);
    const back = uninjectDocuments(injected);
    back.forEach((r, i) => {
      assert.deepEqual(r.warnings, [], `${name} document ${i + 1}: no warnings`);
      assert.deepEqual(r.doc, input[i], `${name} document ${i + 1}: uninject(inject(x)) must equal x`);
    });
    // Same YAML text: the restored fields sit where they were.
    assert.equal(formatYaml(back.map((r) => r.doc)), formatYaml(input), `${name}: same YAML, key order included`);
  });
}

const config = defaultConfig('test');
const hooks = 'app: {preStop: [{sleep: {seconds: 1}}]}';

test('uninject restores a native lifecycle the annotation left alone and an env list that already existed', () => {
  const pod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', annotations: { 'hook-runner.dev/hooks': 'app: {postStart: [{sleep: {seconds: 1}}]}' } },
    spec: {
      shareProcessNamespace: true,
      initContainers: [],
      containers: [{ name: 'app', image: 'x', env: [], lifecycle: { preStop: { exec: { command: ['/bin/stop'] } } } }],
    },
  };
  const r = mutatePod(pod, { config, mode: 'native', newToken: () => 't' });
  assert.ok(r.injected);
  assert.deepEqual(r.status.lifecycle, { app: { preStop: { exec: { command: ['/bin/stop'] } } } });
  assert.deepEqual(r.status.env, { app: 'append' });
  assert.equal(r.status.created, undefined, 'nothing was created: shareProcessNamespace, initContainers and annotations existed');
  assert.deepEqual(uninjectPod(r.pod).pod, pod);
});

test('a pod that already carried the marker env keeps it', () => {
  const pod: V1Pod = { metadata: { annotations: { 'hook-runner.dev/hooks': hooks } }, spec: { containers: [{ name: 'app', image: 'x', env: [{ name: ENV_MARKER, value: 'app' }] }] } };
  const r = mutatePod(pod, { config, mode: 'container', newToken: () => 't' });
  assert.ok(r.injected);
  assert.equal(r.status.env, undefined);
  assert.deepEqual(uninjectPod(r.pod).pod, pod);
});

test('adopted native hooks in a template without metadata: the metadata and annotations hook-runner created go away again', () => {
  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'd' },
    spec: { selector: {}, template: { spec: { containers: [{ name: 'app', image: 'x', lifecycle: { preStop: { sleep: { seconds: 2 } } } }] } } },
  };
  const [injected] = injectDocuments([deployment], { config: { ...config, adoptNativeHooks: true }, mode: 'native', newToken: () => 't' });
  assert.ok(injected!.injected);
  const template = (injected!.doc as { spec: { template: { metadata?: { annotations?: Record<string, string> } } } }).spec.template;
  assert.deepEqual(JSON.parse(template.metadata!.annotations![ANNOTATION_STATUS]!).created, ['spec.shareProcessNamespace', 'spec.initContainers', 'metadata.annotations', 'metadata']);
  const [back] = uninjectDocuments([injected!.doc]);
  assert.deepEqual(back!.doc, deployment);
  assert.equal(formatYaml([back!.doc]), formatYaml([deployment]));
});

test('documents without hook-runner pass through unchanged (the same object)', () => {
  const docs: unknown[] = [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }, { kind: 'Pod', spec: { containers: [{ name: 'a' }] } }, 'text', 42];
  const out = uninjectDocuments(docs);
  out.forEach((r, i) => {
    assert.equal(r.doc, docs[i]);
    assert.equal(r.uninjected, false);
  });
});

test('an older status record without the restore fields: hook-runner handlers are removed, with a warning', () => {
  const pod: V1Pod = { kind: 'Pod', metadata: { annotations: { 'hook-runner.dev/hooks': hooks } }, spec: { containers: [{ name: 'app', image: 'x' }] } };
  const r = mutatePod(pod, { config, mode: 'native', newToken: () => 't' });
  assert.ok(r.injected);
  const old = structuredClone(r.pod);
  old.metadata!.annotations![ANNOTATION_STATUS] = JSON.stringify({ version: 1, mode: 'native', port: 15901, containers: ['app'] });
  const [back] = uninjectDocuments([old]);
  const p = back!.doc as V1Pod;
  assert.equal(p.spec!.initContainers!.length, 0);
  assert.equal(p.spec!.containers[0]!.lifecycle, undefined);
  assert.equal(p.spec!.containers[0]!.env, undefined);
  assert.match(back!.warnings.join('\n'), /older hook-runner/);
});

test("a status annotation that is not hook-runner's record is an error naming the document and field", () => {
  const pod = { kind: 'Pod', metadata: { name: 'web', annotations: { [ANNOTATION_STATUS]: '{"version":1,"mode":"sideways","port":1,"containers":[]}' } }, spec: { containers: [] } };
  assert.throws(
    () => uninjectDocuments([{ kind: 'ConfigMap' }, pod]),
    (e: unknown) => {
      assert.ok(e instanceof UninjectError);
      assert.match(e.message, /^document 2 \(Pod web\): metadata\.annotations\[hook-runner\.dev\/status\]\.mode: is "sideways"; expected native or container/);
      return true;
    },
  );
});

test('CLI: uninject of inject output from stdin and a file gives back the input; -o json; usage errors exit 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'uninject-'));
  const input = readFileSync(join(DIR, 'multi-doc.yaml'), 'utf8');
  const injected = execFileSync(process.execPath, [CLI, 'inject', '-f', '-'], { input, encoding: 'utf8' });
  const f = join(dir, 'injected.yaml');
  writeFileSync(f, injected);
  const fromFile = execFileSync(process.execPath, [CLI, 'uninject', '-f', f], { encoding: 'utf8' });
  assert.deepEqual(parseDocuments(fromFile, 'out'), parseDocuments(input, 'in'));
  const both = execFileSync(process.execPath, [CLI, 'uninject', '-f', f, '-f', '-', '-o', 'json'], { input: injected, encoding: 'utf8' });
  const list = JSON.parse(both) as { kind: string; items: unknown[] };
  assert.equal(list.kind, 'List');
  assert.deepEqual(list.items, [...parseDocuments(input, 'in'), ...parseDocuments(input, 'in')]);

  const noFile = spawnSync(process.execPath, [CLI, 'uninject'], { encoding: 'utf8' });
  assert.equal(noFile.status, 2);
  assert.match(noFile.stderr, /-f FILE is required/);
  const help = spawnSync(process.execPath, [CLI, 'uninject', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: hook-runner uninject/);
  writeFileSync(f, `apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  annotations:\n    ${ANNOTATION_STATUS}: "not json"\nspec: {containers: []}\n`);
  const bad = spawnSync(process.execPath, [CLI, 'uninject', '-f', f], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /injected\.yaml: document 1 \(Pod bad\): metadata\.annotations\[hook-runner\.dev\/status\]: is not JSON/);
});
