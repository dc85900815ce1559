/** `hook-runner inject`, run as the built CLI: files, stdin, YAML and JSON, errors and exit codes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { ANNOTATION_STATUS, SIDECAR_CONTAINER_NAME } from '../common/names.js';

const CLI = join(import.meta.dirname, '..', 'dist', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'hook-runner-inject-'));

function run(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const MULTI = `apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    hook-runner.dev/hooks: |
      app:
        shutdownSeconds: 10
        preStop: [{sleep: {seconds: 55}, timeoutSeconds: 60}]
spec:
  terminationGracePeriodSeconds: 60
  containers: [{name: app, image: nginx}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api}
      annotations:
        hook-runner.dev/hooks: '{"api": {"postStart": [{"httpGet": {"path": "/warm", "port": 8080}}]}}'
    spec:
      containers: [{name: api, image: api}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
`;

const file = join(dir, 'multi.yaml');
writeFileSync(file, MULTI);

type Doc = {
  kind: string;
  metadata?: { annotations?: Record<string, string> };
  spec?: { initContainers?: Array<{ name: string }>; template?: { metadata?: { annotations?: Record<string, string> }; spec?: { initContainers?: Array<{ name: string }> } } };
};

test('multi-document YAML: Pod and Deployment injected, ConfigMap unchanged, warnings on stderr naming the document', () => {
  const r = run(['inject', '-f', file]);
  assert.equal(r.code, 0, r.stderr);
  const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Doc);
  assert.deepEqual(
    docs.map((d) => d.kind),
    ['Pod', 'Deployment', 'ConfigMap'],
  );
  assert.equal(docs[0]!.spec!.initContainers![0]!.name, SIDECAR_CONTAINER_NAME);
  assert.ok(docs[0]!.metadata!.annotations![ANNOTATION_STATUS]);
  assert.equal(docs[1]!.spec!.template!.spec!.initContainers![0]!.name, SIDECAR_CONTAINER_NAME);
  assert.ok(docs[1]!.spec!.template!.metadata!.annotations![ANNOTATION_STATUS]);
  assert.deepEqual(docs[2], { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: { a: 'b' } });
  assert.match(r.stderr, new RegExp(`^Warning: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: document 1 \\(Pod web\\): container app: preStop may take up to 55s`, 'm'));
});

test('injecting the output again changes nothing', () => {
  const once = run(['inject', '-f', file]);
  const twice = run(['inject', '-f', '-'], once.stdout);
  assert.equal(twice.code, 0, twice.stderr);
  assert.equal(twice.stdout, once.stdout);
});

test('stdin and -o json: one document is the object itself, several are a v1 List', () => {
  const one = run(['inject', '-f', '-', '-o', 'json'], MULTI.split('---')[0]);
  assert.equal(one.code, 0, one.stderr);
  assert.equal(JSON.parse(one.stdout).kind, 'Pod');
  const many = run(['inject', '-f', '-', '-o', 'json'], MULTI);
  const list = JSON.parse(many.stdout) as { apiVersion: string; kind: string; items: Doc[] };
  assert.equal(list.apiVersion, 'v1');
  assert.equal(list.kind, 'List');
  assert.deepEqual(
    list.items.map((d) => d.kind),
    ['Pod', 'Deployment', 'ConfigMap'],
  );
});

test('JSON input is accepted', () => {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'j', annotations: { 'hook-runner.dev/hooks': '{"c":{"preStop":[{"sleep":{"seconds":1}}]}}' } },
    spec: { containers: [{ name: 'c', image: 'i' }] },
  };
  const r = run(['inject', '-f', '-', '-o', 'json', '--sidecar-mode', 'container'], JSON.stringify(pod));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).spec.containers[0].name, SIDECAR_CONTAINER_NAME);
});

test('an invalid annotation exits 1 naming the document and the field', () => {
  const bad = MULTI.replace('"port": 8080', '"port": "nope"');
  const r = run(['inject', '-f', '-'], bad);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(
    r.stderr.trim(),
    'hook-runner inject: stdin: document 2 (Deployment api): hook-runner.dev/hooks: api.postStart[0].httpGet.port: must be 1-65535 or a named port of container api, got the string "nope"; it names no ports',
  );
});

test('usage errors exit 2 with a hint; --help exits 0', () => {
  assert.equal(run(['inject']).code, 2);
  assert.match(run(['inject']).stderr, /-f FILE is required/);
  assert.equal(run(['inject', '-f', file, '-o', 'xml']).code, 2);
  assert.equal(run(['inject', '--bogus']).code, 2);
  const help = run(['inject', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: hook-runner inject -f FILE\|DIR\|- \[-f \.\.\.\] \[-R\]/);
  const missing = run(['inject', '-f', join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, `hook-runner inject: ${join(dir, 'nope.yaml')}: no such file\n`);
  assert.match(run(['inject', '-f', file, '--config', join(dir, 'nope.yaml')]).stderr, /nope.yaml: \(file\): cannot read: ENOENT/);
});

test('top-level help and unknown commands', () => {
  const help = run(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /hook-runner inject -f FILE\|DIR\|- \[-f \.\.\.\] \[-R\] \[--config F\] \[-o yaml\|json\]/);
  const unknown = run(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.match(run(['version']).stdout, /^hook-runner \d+\.\d+\.\d+/);
});

function pod(name: string, hooks?: string, extra: { labels?: Record<string, string>; annotations?: Record<string, string> } = {}): string {
  const annotations = { ...(hooks === undefined ? {} : { 'hook-runner.dev/hooks': hooks }), ...extra.annotations };
  return `${JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: extra.labels ?? {}, annotations }, spec: { containers: [{ name: 'app', image: 'x' }] } })}\n`;
}
const SLEEP = 'app: {preStop: [{sleep: {seconds: 1}}]}';

test('every -f is read, in order: files, stdin, a directory (sorted, manifests only) and -R', () => {
  const d = mkdtempSync(join(dir, 'many-'));
  writeFileSync(join(d, 'a.yaml'), pod('a', SLEEP));
  writeFileSync(join(d, 'b.yaml'), pod('b', SLEEP));
  const tree = join(d, 'tree');
  mkdirSync(join(tree, 'sub'), { recursive: true });
  writeFileSync(join(tree, '2.yml'), pod('t2'));
  writeFileSync(join(tree, '1.json'), pod('t1'));
  writeFileSync(join(tree, 'notes.txt'), 'not a manifest');
  writeFileSync(join(tree, 'sub', '3.yaml'), pod('t3'));
  const names = (stdout: string) => parseAllDocuments(stdout).map((x) => (x.toJS() as { metadata: { name: string } }).metadata.name);

  const two = run(['inject', '-f', join(d, 'a.yaml'), '-f', join(d, 'b.yaml')]);
  assert.equal(two.code, 0, two.stderr);
  assert.deepEqual(names(two.stdout), ['a', 'b']);
  assert.equal(two.stderr, 'pod "a" injected\npod "b" injected\n');

  const withStdin = run(['inject', '-f', join(d, 'b.yaml'), '-f', '-', '-f', join(d, 'a.yaml')], pod('s'));
  assert.deepEqual(names(withStdin.stdout), ['b', 's', 'a']);

  const flat = run(['inject', '-f', tree]);
  assert.equal(flat.code, 0, flat.stderr);
  assert.deepEqual(names(flat.stdout), ['t1', 't2'], 'a directory: .json/.yaml/.yml files in name order, no subdirectories');
  const deep = run(['inject', '-R', '-f', tree]);
  assert.deepEqual(names(deep.stdout), ['t1', 't2', 't3'], '-R reads subdirectories too');
  assert.deepEqual(names(run(['inject', '--recursive', '-f', tree, '-o', 'yaml']).stdout), ['t1', 't2', 't3']);

  const json = JSON.parse(run(['inject', '-f', join(d, 'a.yaml'), '-f', join(d, 'b.yaml'), '-o', 'json']).stdout) as { kind: string; items: unknown[] };
  assert.equal(json.kind, 'List');
  assert.equal(json.items.length, 2);

  const empty = mkdtempSync(join(dir, 'empty-'));
  const none = run(['inject', '-f', empty]);
  assert.equal(none.code, 1);
  assert.equal(none.stderr, `hook-runner inject: ${empty}: no .json, .yaml or .yml files in this directory (-R reads its subdirectories too)\n`);
  assert.equal(run(['inject', '-f', '-', '-f', '-'], '').code, 2, 'stdin only once');
});

test('a missing file among others says so in words, lists every unreadable file, writes nothing, exits 1', () => {
  const d = mkdtempSync(join(dir, 'missing-'));
  writeFileSync(join(d, 'ok.yaml'), pod('ok', SLEEP));
  const r = run(['inject', '-f', 'a.yaml', '-f', join(d, 'ok.yaml'), '-f', join(d, 'b.yaml')]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `hook-runner inject: a.yaml: no such file\nhook-runner inject: ${join(d, 'b.yaml')}: no such file\n`);
  assert.doesNotMatch(r.stderr, /ENOENT|open/);
});

test('stderr says per object what inject did or why it left it alone', () => {
  const input = [
    pod('web', SLEEP),
    pod('plain'),
    pod('out', SLEEP, { labels: { 'hook-runner.dev/inject': 'false' } }),
    pod('done', SLEEP, { annotations: { 'hook-runner.dev/status': '{"version":1}' } }),
    'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n',
    'apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: svc}}\n',
  ].join('---\n');
  const r = run(['inject', '-f', '-'], input);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stderr,
    [
      'pod "web" injected',
      'pod "plain" skipped: no-hooks',
      'pod "out" skipped: opted-out',
      'pod "done" skipped: already-injected',
      'configmap "settings" skipped: not-a-pod-template',
      'service "svc" skipped: not-a-pod-template',
      '',
    ].join('\n'),
  );
});

test('every error is reported with its document and path: three in one annotation, documents 1 and 3', () => {
  const three = 'app: {shutdownSeconds: -1, preStop: [{exec: {}}, {sleep: {seconds: 1}, timeoutSecond: 2}]}';
  const input = [pod('one', three), pod('two', SLEEP), pod('three', 'app: {postStart: [{httpGet: {port: 0}}]}')].join('---\n');
  const r = run(['inject', '-f', '-'], input);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(
    r.stderr,
    [
      'hook-runner inject: stdin: document 1 (Pod one): hook-runner.dev/hooks: app.shutdownSeconds: must be 0 or more, got -1',
      'hook-runner inject: stdin: document 1 (Pod one): hook-runner.dev/hooks: app.preStop[0].exec.command: must be a non-empty list of strings (argv, no shell), got nothing (the field is missing)',
      'hook-runner inject: stdin: document 1 (Pod one): hook-runner.dev/hooks: app.preStop[1].timeoutSecond: unknown field; did you mean timeoutSeconds? expected one of sleep, timeoutSeconds, retries, retryDelaySeconds, continueOnError',
      'hook-runner inject: stdin: document 3 (Pod three): hook-runner.dev/hooks: app.postStart[0].httpGet.port: must be 1-65535 or a named port of container app, got 0',
      '',
    ].join('\n'),
  );
});

test('YAML errors name the line, column and the line itself, in the manifest and in the annotation', () => {
  const manifest = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  labels: {x: [y}\n';
  const r = run(['inject', '-f', '-'], manifest);
  assert.equal(r.code, 1);
  const line = r.stderr.trim();
  assert.match(line, /^hook-runner inject: stdin: document 2: not valid YAML or JSON: .+ at line 9, column \d+: ".*"$/);
  assert.ok(line.endsWith('"  labels: {x: [y}"'), line);
  const annotation = run(['inject', '-f', '-'], pod('p', 'app:\n  preStop: [\n  - x: 1'));
  assert.equal(annotation.code, 1);
  assert.match(annotation.stderr.trim(), /^hook-runner inject: stdin: document 1 \(Pod p\): hook-runner\.dev\/hooks: not valid YAML or JSON: .+ at line \d+, column \d+ of the annotation: ".+"$/);
});

/** Strings YAML 1.1 (kubectl's go-yaml, PyYAML) reads as something else when written plain. */
/** Keys are strings too: `yes:` is the key true in YAML 1.1, `<<:` a merge. */
const KEY_TRAPS = { b: 'yes', yes: 'no', on: 'off', '<<': '=', '1:20': 'x' };
const YAML11_TRAPS = [
  'yes',
  'no',
  'on',
  'off',
  'y',
  'n',
  'Y',
  'N',
  'True',
  'true',
  'NO',
  '1_000',
  '1:20',
  '0777',
  '0x1F',
  '0b101',
  '0o17',
  '1e3',
  '+12',
  '.5',
  '.inf',
  '-.inf',
  '.nan',
  '~',
  'null',
  'Null',
  '',
  '2001-12-14',
  '2001-12-14 21:59:43.10 -5',
  '=',
  '<<',
  'nginx',
  '10m',
  'on-call',
];

test('-o yaml quotes every string a YAML 1.1 reader would misread: the yaml package in 1.1 mode reads back the same strings', () => {
  const labels = Object.fromEntries(YAML11_TRAPS.map((v, i) => [`l${i}`, v]));
  const data = Object.fromEntries(YAML11_TRAPS.map((v) => [v === '' ? 'empty' : `k-${v}`, v]));
  const input = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', labels }, data: { ...data, ...KEY_TRAPS } });
  const hooked = pod('p', SLEEP, { labels });
  const r = run(['inject', '-f', '-'], `${input}\n---\n${hooked}`);
  assert.equal(r.code, 0, r.stderr);
  for (const version of ['1.1', '1.2'] as const) {
    const docs = r.stdout.split(/^---$/m).map((t) => parse(t, { version }) as { metadata: { labels: Record<string, string> }; data?: Record<string, string> });
    assert.deepEqual(docs[0]!.metadata.labels, labels, `YAML ${version}: ConfigMap labels`);
    assert.deepEqual(docs[0]!.data, { ...data, ...KEY_TRAPS }, `YAML ${version}: ConfigMap data`);
    assert.deepEqual(docs[1]!.metadata.labels, labels, `YAML ${version}: injected Pod labels`);
  }
  assert.match(r.stdout, /^ {2}b: "yes"$/m);
  assert.match(r.stdout, /^ {2}"yes": "no"$/m);
});

test("-o yaml round-trips through PyYAML, a YAML 1.1 reader like kubectl's", (t) => {
  const probe = spawnSync('python3', ['-c', 'import yaml'], { encoding: 'utf8', timeout: 20_000 });
  if (probe.status !== 0) {
    t.skip('needs python3 with PyYAML (Debian: python3-yaml)');
    return;
  }
  const labels = Object.fromEntries(YAML11_TRAPS.map((v, i) => [`l${i}`, v]));
  const input = `${JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', labels }, data: { ...KEY_TRAPS, ...labels } })}\n---\n${pod('p', SLEEP, { labels })}`;
  const r = run(['inject', '-f', '-'], input);
  assert.equal(r.code, 0, r.stderr);
  const py = spawnSync('python3', ['-c', 'import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))'], { input: r.stdout, encoding: 'utf8', timeout: 20_000 });
  assert.equal(py.status, 0, py.stderr);
  const docs = JSON.parse(py.stdout) as Array<{ metadata: { labels: Record<string, string> }; data?: Record<string, string> }>;
  assert.deepEqual(docs[0]!.metadata.labels, labels);
  assert.deepEqual(docs[0]!.data, { ...KEY_TRAPS, ...labels });
  assert.deepEqual(docs[1]!.metadata.labels, labels);
  const injectedPod = docs[1] as unknown as { metadata: { annotations: Record<string, string> } };
  assert.equal(injectedPod.metadata.annotations['hook-runner.dev/hooks'], SLEEP, 'the hooks annotation reads back as written');
});
