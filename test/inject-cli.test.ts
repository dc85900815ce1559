/** `hook-runner inject`, run as the built CLI: files, stdin, YAML and JSON, errors and exit codes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
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

type Doc = { kind: string; metadata?: { annotations?: Record<string, string> }; spec?: { initContainers?: Array<{ name: string }>; template?: { metadata?: { annotations?: Record<string, string> }; spec?: { initContainers?: Array<{ name: string }> } } } };

test('multi-document YAML: Pod and Deployment injected, ConfigMap unchanged, warnings on stderr naming the document', () => {
  const r = run(['inject', '-f', file]);
  assert.equal(r.code, 0, r.stderr);
  const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Doc);
  assert.deepEqual(docs.map((d) => d.kind), ['Pod', 'Deployment', 'ConfigMap']);
  assert.equal(docs[0]!.spec!.initContainers![0]!.name, SIDECAR_CONTAINER_NAME);
  assert.ok(docs[0]!.metadata!.annotations![ANNOTATION_STATUS]);
  assert.equal(docs[1]!.spec!.template!.spec!.initContainers![0]!.name, SIDECAR_CONTAINER_NAME);
  assert.ok(docs[1]!.spec!.template!.metadata!.annotations![ANNOTATION_STATUS]);
  assert.deepEqual(docs[2], { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: { a: 'b' } });
  assert.match(r.stderr, /^Warning: document 1 \(Pod web\): container app: preStop may take up to 55s/m);
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
  assert.deepEqual(list.items.map((d) => d.kind), ['Pod', 'Deployment', 'ConfigMap']);
});

test('JSON input is accepted', () => {
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'j', annotations: { 'hook-runner.dev/hooks': '{"c":{"preStop":[{"sleep":{"seconds":1}}]}}' } }, spec: { containers: [{ name: 'c', image: 'i' }] } };
  const r = run(['inject', '-f', '-', '-o', 'json', '--sidecar-mode', 'container'], JSON.stringify(pod));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).spec.containers[0].name, SIDECAR_CONTAINER_NAME);
});

test('an invalid annotation exits 1 naming the document and the field', () => {
  const bad = MULTI.replace('"port": 8080', '"port": "nope"');
  const r = run(['inject', '-f', '-'], bad);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.trim(), 'hook-runner inject: stdin: document 2 (Deployment api): hook-runner.dev/hooks: api.postStart[0].httpGet.port: must be 1-65535 or a named port of container api');
});

test('usage errors exit 2 with a hint; --help exits 0', () => {
  assert.equal(run(['inject']).code, 2);
  assert.match(run(['inject']).stderr, /-f FILE is required/);
  assert.equal(run(['inject', '-f', file, '-o', 'xml']).code, 2);
  assert.equal(run(['inject', '--bogus']).code, 2);
  const help = run(['inject', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: hook-runner inject -f FILE\|-/);
  const missing = run(['inject', '-f', join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /ENOENT|no such file/);
  assert.match(run(['inject', '-f', file, '--config', join(dir, 'nope.yaml')]).stderr, /nope.yaml: \(file\): cannot read: ENOENT/);
});

test('top-level help and unknown commands', () => {
  const help = run(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /hook-runner inject -f FILE\|- \[--config F\] \[-o yaml\|json\]/);
  const unknown = run(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.match(run(['version']).stdout, /^hook-runner \d+\.\d+\.\d+/);
});
