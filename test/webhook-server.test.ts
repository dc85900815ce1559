/**
 * The webhook over real HTTPS on 127.0.0.1: AdmissionReview round trips with the real admission
 * logic, HTTP errors, health, metrics, the per-admission log line, graceful shutdown, and the
 * `hook-runner webhook` command both in-process and as the built binary.
 */
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import https from 'node:https';
import { createInterface } from 'node:readline';
import jsonpatch, { type Operation } from 'fast-json-patch';
import { parse as parseYaml } from 'yaml';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_ADOPT_NATIVE, ANNOTATION_HOOKS, ANNOTATION_STATUS, ENV_TOKEN, SIDECAR_CONTAINER_NAME } from '../common/names.js';
import { defaultConfig } from '../webhook/core/config.js';
import { createWebhookMetrics } from '../webhook/metrics.js';
import { DEFAULT_BODY_LIMIT_BYTES, startWebhookServer, type StartWebhookServerOptions } from '../webhook/server.js';
import { issueServingCert, makeCa, makeSelfSignedBundle, staticTlsProvider, webhookServingNames } from '../webhook/cluster/tls.js';
import { runWebhookCli } from '../webhook/cli.js';
import { memoryLogger, request, waitFor, type LogLine, type Reply } from './support/https.js';

const ROOT = join(import.meta.dirname, '..');
const bundle = makeSelfSignedBundle(webhookServingNames());
const ca = bundle.caCert;

interface Review {
  apiVersion: string;
  kind: string;
  request: { uid: string; namespace?: string; operation: string; dryRun?: boolean; object: unknown; kind?: object; resource?: object; name?: string };
}
interface ReviewResponse {
  apiVersion: string;
  kind: string;
  response: {
    uid: string;
    allowed: boolean;
    patchType?: string;
    patch?: string;
    warnings?: string[];
    status?: { code: number; message: string };
    auditAnnotations?: Record<string, string>;
  };
}

/** The AdmissionReview shipped in examples/ (a Pod with hooks), a fresh copy each time. */
function exampleReview(): Review {
  return JSON.parse(readFileSync(join(ROOT, 'examples', 'admission-review.json'), 'utf8')) as Review;
}

async function startServer(t: { after(fn: () => unknown): void }, extra: Partial<StartWebhookServerOptions> = {}) {
  const { logger, lines } = memoryLogger();
  const metrics = createWebhookMetrics();
  const server = await startWebhookServer({
    config: defaultConfig('0.0.0-test'),
    mode: 'native',
    logger,
    metrics,
    listen: { host: '127.0.0.1', port: 0 },
    tls: staticTlsProvider(bundle, 'self-signed'),
    ...extra,
  });
  t.after(() => server.close({ timeoutMs: 2000 }));
  const port = server.address().port;
  const post = (body: string | Buffer, o: { path?: string; headers?: Record<string, string | number>; chunked?: boolean } = {}) =>
    request({ port, ca, method: 'POST', path: o.path ?? '/mutate', body, headers: { 'content-type': 'application/json', ...o.headers }, chunked: o.chunked });
  const get = (path: string, method = 'GET') => request({ port, ca, method, path });
  return { server, port, lines, post, get, metrics };
}

const reviewOf = (r: Reply): ReviewResponse => r.json() as ReviewResponse;
const admissionLines = (lines: LogLine[]) => lines.filter((l) => l.msg.startsWith('admission '));

function decodePatch(res: ReviewResponse): Operation[] {
  assert.equal(res.response.patchType, 'JSONPatch');
  assert.ok(res.response.patch, 'a patch is present');
  return JSON.parse(Buffer.from(res.response.patch, 'base64').toString('utf8')) as Operation[];
}

test('examples/admission-review.json carries exactly the Pod of examples/pod.yaml', () => {
  const pod = parseYaml(readFileSync(join(ROOT, 'examples', 'pod.yaml'), 'utf8')) as unknown;
  assert.deepEqual(exampleReview().request.object, pod);
});

test('POST /mutate: a Pod with hooks is allowed with a base64 JSONPatch that applies and injects the sidecar', async (t) => {
  const { post, lines } = await startServer(t);
  const review = exampleReview();
  const r = await post(JSON.stringify(review));
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  const res = reviewOf(r);
  assert.equal(res.apiVersion, 'admission.k8s.io/v1');
  assert.equal(res.kind, 'AdmissionReview');
  assert.equal(res.response.uid, review.request.uid);
  assert.equal(res.response.allowed, true);
  const ops = decodePatch(res);
  const pod = jsonpatch.applyPatch(structuredClone(review.request.object), ops, true, false).newDocument as V1Pod;
  assert.equal(pod.spec?.initContainers?.[0]?.name, SIDECAR_CONTAINER_NAME);
  assert.equal(pod.spec?.initContainers?.[0]?.restartPolicy, 'Always', 'native sidecar');
  assert.equal(pod.spec?.shareProcessNamespace, true);
  assert.equal(pod.spec?.containers[0]?.lifecycle?.preStop?.httpGet?.path, '/v1/hooks/app/preStop');
  assert.ok(pod.metadata?.annotations?.[ANNOTATION_STATUS], 'status annotation written');
  assert.equal(pod.metadata?.annotations?.[ANNOTATION_HOOKS], (review.request.object as V1Pod).metadata?.annotations?.[ANNOTATION_HOOKS], 'hooks annotation kept');

  const [line, ...more] = admissionLines(lines);
  assert.equal(more.length, 0, 'one log line per admission');
  assert.ok(line);
  assert.equal(line.level, 'info');
  assert.equal(line.msg, 'admission injected');
  assert.equal(line.uid, review.request.uid);
  assert.equal(line.namespace, 'demo');
  assert.equal(line.pod, 'web');
  assert.equal(line.name, 'hook-runner', 'the logger name is not overwritten');
  assert.equal(line.outcome, 'injected');
  assert.deepEqual(line.warnings, []);
  assert.equal(typeof line.latencyMs, 'number');
  assert.equal(line.operation, 'CREATE');
  const text = JSON.stringify(lines);
  const token = pod.spec?.initContainers?.[0]?.env?.find((e) => e.name === ENV_TOKEN)?.value;
  assert.ok(token && !text.includes(token), 'the hook token never reaches the log');
});

test('POST /mutate: invalid hooks are denied with status code 400 and the located message', async (t) => {
  const { post, lines } = await startServer(t);
  const review = exampleReview();
  const pod = review.request.object as V1Pod;
  pod.metadata!.annotations![ANNOTATION_HOOKS] = 'db:\n  preStop: [{sleep: {seconds: 1}}]\n';
  const r = await post(JSON.stringify(review));
  assert.equal(r.status, 200, 'a denial is an AdmissionReview, not an HTTP error');
  const res = reviewOf(r);
  assert.equal(res.response.uid, review.request.uid);
  assert.equal(res.response.allowed, false);
  assert.equal(res.response.status?.code, 400);
  assert.match(res.response.status?.message ?? '', /^hook-runner\.dev\/hooks: db: no such container in this pod \(containers: app\)/);
  assert.equal(res.response.patch, undefined);
  const line = admissionLines(lines)[0];
  assert.equal(line?.outcome, 'denied');
  assert.equal(line?.reason, 'invalid-hooks');
  assert.match(String(line?.message), /no such container/);
});

test('POST /mutate: objects that are not Pods, and Pods without hooks, are allowed unchanged with the reason', async (t) => {
  const { post, lines } = await startServer(t);
  const cm: Review = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'cm-1',
      kind: { group: '', version: 'v1', kind: 'ConfigMap' },
      resource: { group: '', version: 'v1', resource: 'configmaps' },
      namespace: 'demo',
      name: 'settings',
      operation: 'CREATE',
      object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: { a: '1' } },
    },
  };
  const r1 = reviewOf(await post(JSON.stringify(cm)));
  assert.deepEqual([r1.response.uid, r1.response.allowed, r1.response.patch, r1.response.patchType], ['cm-1', true, undefined, undefined]);

  const plain = exampleReview();
  delete (plain.request.object as V1Pod).metadata!.annotations;
  const r2 = reviewOf(await post(JSON.stringify(plain)));
  assert.deepEqual([r2.response.allowed, r2.response.patch], [true, undefined]);

  assert.deepEqual(
    admissionLines(lines).map((l) => [l.outcome, l.reason, l.pod]),
    [
      ['skipped', 'not-a-pod', 'settings'],
      ['skipped', 'no-hooks', 'web'],
    ],
  );
});

test('POST /mutate: a dryRun request gets the same answer (the token aside, which is new per pod)', async (t) => {
  const { post, lines } = await startServer(t);
  const normalised = async (dryRun: boolean) => {
    const review = exampleReview();
    review.request.dryRun = dryRun;
    const res = reviewOf(await post(JSON.stringify(review)));
    const pod = jsonpatch.applyPatch(structuredClone(review.request.object), decodePatch(res), true, false).newDocument as V1Pod;
    const token = pod.spec?.initContainers?.[0]?.env?.find((e) => e.name === ENV_TOKEN)?.value;
    assert.ok(token, 'the sidecar carries a token');
    return JSON.stringify({ ...res, response: { ...res.response, patch: undefined }, pod })
      .split(token)
      .join('<token>');
  };
  assert.equal(await normalised(true), await normalised(false));
  assert.deepEqual(
    admissionLines(lines).map((l) => l.dryRun),
    [true, undefined],
  );
});

test('POST /mutate: malformed requests get HTTP 400 with a message saying what was expected', async (t) => {
  const { post, port, lines } = await startServer(t);
  const error = (r: Reply) => (r.json() as { error: string }).error;

  const notJson = await post('{"apiVersion": ');
  assert.equal(notJson.status, 400);
  assert.match(error(notJson), /^the request body is not valid JSON \(.+\); expected an AdmissionReview \(apiVersion admission\.k8s\.io\/v1\) as JSON$/);

  const wrongKind = await post(JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'x' } }));
  assert.equal(wrongKind.status, 400);
  assert.match(error(wrongKind), /^malformed AdmissionReview: expected apiVersion admission\.k8s\.io\/v1 and kind AdmissionReview, got apiVersion "admission\.k8s\.io\/v1beta1"/);

  const noUid = await post(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }));
  assert.equal(noUid.status, 400);
  assert.match(error(noUid), /^malformed AdmissionReview: request\.uid is missing/);

  const noBody = await request({ port, ca, method: 'POST', path: '/mutate' });
  assert.equal(noBody.status, 400);
  assert.equal(error(noBody), 'the request has no body; expected an AdmissionReview (apiVersion admission.k8s.io/v1) as JSON');

  const gzip = await post('{}', { headers: { 'content-encoding': 'br' } });
  assert.equal(gzip.status, 415);
  assert.equal(error(gzip), 'content-encoding "br" is not accepted; send the AdmissionReview as uncompressed UTF-8 JSON');

  const rejected = lines.filter((l) => l.msg === 'request rejected');
  assert.deepEqual(
    rejected.map((l) => [l.level, l.status]),
    [
      ['warn', 400],
      ['warn', 400],
      ['warn', 400],
      ['warn', 400],
      ['warn', 415],
    ],
  );
  assert.equal(admissionLines(lines).length, 0, 'no admission line for a request that was not reviewed');
});

test('POST /mutate: JSON sent without a JSON content type (curl --data) is still reviewed', async (t) => {
  const { post } = await startServer(t);
  const r = await post(JSON.stringify(exampleReview()), { headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 200);
  assert.equal(reviewOf(r).response.allowed, true);
});

test('POST /mutate: bodies over the 3 MiB limit get 413, with or without Content-Length', async (t) => {
  const { post, get, lines } = await startServer(t);
  assert.equal(DEFAULT_BODY_LIMIT_BYTES, 3 * 1024 * 1024);
  // A valid AdmissionReview padded past the limit: only its size is wrong.
  const review = exampleReview();
  (review.request.object as V1Pod).metadata!.labels = { pad: 'x'.repeat(DEFAULT_BODY_LIMIT_BYTES) };
  const body = JSON.stringify(review);
  for (const chunked of [false, true]) {
    const r = await post(body, { chunked });
    assert.equal(r.status, 413, `chunked=${chunked}`);
    assert.match((r.json() as { error: string }).error, /is larger than the limit of 3145728 bytes \(3\.0 MiB, the API server's own request size limit\)/);
  }
  // A body just under the limit is read and reviewed.
  (review.request.object as V1Pod).metadata!.labels = { pad: 'x'.repeat(DEFAULT_BODY_LIMIT_BYTES - 8192) };
  assert.equal((await post(JSON.stringify(review))).status, 200);
  assert.equal((await get('/healthz')).status, 200, 'the server is still fine');
  assert.equal(lines.filter((l) => l.status === 413).length, 2);
});

test('wrong paths get 404 and wrong methods 405, as JSON naming what is served', async (t) => {
  const { get, post } = await startServer(t);
  const nf = await get('/nope');
  assert.equal(nf.status, 404);
  assert.match(String(nf.headers['content-type']), /^application\/json/);
  assert.deepEqual(nf.json(), { error: 'no route GET /nope; this server answers POST /mutate, GET /healthz, GET /readyz, GET /metrics' });
  const getMutate = await get('/mutate');
  assert.equal(getMutate.status, 405);
  assert.equal(getMutate.headers.allow, 'POST');
  assert.deepEqual(getMutate.json(), { error: 'method GET is not allowed on /mutate; use POST' });
  const postHealth = await post('{}', { path: '/healthz' });
  assert.equal(postHealth.status, 405);
  assert.equal(postHealth.headers.allow, 'GET, HEAD');
  assert.equal((await get('/metrics', 'DELETE')).status, 405);
  assert.equal((await post('{}', { path: '/validate' })).status, 404);
});

test('GET /healthz and /readyz answer 200; /readyz fails with 503 once draining', async (t) => {
  const { get, server } = await startServer(t);
  const h = await get('/healthz');
  assert.deepEqual([h.status, h.json()], [200, { status: 'ok' }]);
  const r = await get('/readyz');
  assert.deepEqual([r.status, r.json()], [200, { status: 'ok' }]);
  assert.equal((await get('/healthz', 'HEAD')).status, 200);
  server.state.draining = true;
  const d = await get('/readyz');
  assert.deepEqual([d.status, d.json()], [503, { status: 'draining' }]);
  assert.equal(d.headers.connection, 'close', 'no keep-alive while draining');
  assert.equal((await get('/healthz')).status, 200, 'still alive while draining');
});

/** Items of `make(i)` for i = 0, 1, … while their JSON stays within `budget` bytes. */
function fillTo<T>(make: (i: number) => T, budget: number): T[] {
  const out: T[] = [];
  for (let i = 0, size = 0; ; i++) {
    const x = make(i);
    size += JSON.stringify(x).length + 1;
    if (size > budget) return out;
    out.push(x);
  }
}

/** An annotation text of `line(i)` lines up to 64 KiB (the annotation limit), and the keys it names. */
function annotationOf(line: (i: number) => string, head = ''): string {
  let text = head;
  for (let i = 0; ; i++) {
    const next = line(i);
    if (Buffer.byteLength(text + next) > 64 * 1024) return text;
    text += next;
  }
}

/**
 * The worst pods we could build under the limits (3 MiB body, 64 KiB annotation), each aimed at a
 * cost that grows with the input: the port search, lookups of thousands of annotation keys or named
 * ports among 100k containers or ports, adoption of native blocks of 40k containers, the YAML
 * parser, the size of the expanded spec, and the JSONPatch of a shifted 30k-element list.
 */
function worstCasePods(): Array<{ name: string; pod: V1Pod; expect: string }> {
  // Room for the annotation (64 KiB, more once JSON escapes its newlines) and the AdmissionReview around the pod.
  const body = DEFAULT_BODY_LIMIT_BYTES - 160 * 1024;
  const pod = (annotations: Record<string, string>, spec: V1Pod['spec']): V1Pod => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'worst', annotations }, spec });
  const keyLines = annotationOf((i) => `c${i}: {}\n`);
  const keys = keyLines
    .trim()
    .split('\n')
    .map((l) => l.slice(0, l.indexOf(':')));
  const hookedLines = annotationOf((i) => `c${i}: {preStop: [sleep: {seconds: 0}]}\n`);
  const hookedKeys = hookedLines
    .trim()
    .split('\n')
    .map((l) => l.slice(0, l.indexOf(':')));
  // Other containers, filling what the named ones leave of the body.
  const among = (named: V1Container[]) => [...fillTo((i) => ({ name: `d${i}`, image: 'i' }), body - JSON.stringify(named).length), ...named];
  const keyContainers = among(keys.map((k) => ({ name: k, image: 'i' })));
  const hookedContainers = among(hookedKeys.map((k) => ({ name: k, image: 'i' })));
  const oneHook = { [ANNOTATION_HOOKS]: 'app: {preStop: [{sleep: {seconds: 1}}]}' };
  return [
    {
      name: 'every port 1024-65535 declared',
      pod: pod(oneHook, {
        containers: [
          { name: 'app', image: 'i' },
          { name: 'all', image: 'i', ports: Array.from({ length: 65535 - 1024 + 1 }, (_, i) => ({ containerPort: 1024 + i })) },
        ],
      }),
      expect: 'denied',
    },
    { name: `${keys.length} annotation keys among ${keyContainers.length} containers`, pod: pod({ [ANNOTATION_HOOKS]: keyLines }, { containers: keyContainers }), expect: 'skipped' },
    { name: `${hookedKeys.length} hooked containers among ${hookedContainers.length}`, pod: pod({ [ANNOTATION_HOOKS]: hookedLines }, { containers: hookedContainers }), expect: 'denied' },
    {
      name: 'named-port lookups among 150k ports',
      pod: pod(
        { [ANNOTATION_HOOKS]: annotationOf(() => '  - tcpSocket: {port: zz}\n', 'app:\n  preStop:\n') },
        { containers: [{ name: 'app', image: 'i', ports: [...fillTo((i) => ({ name: `p${i}`, containerPort: 1 + (i % 1000) }), body), { name: 'zz', containerPort: 80 }] }] },
      ),
      expect: 'denied',
    },
    {
      name: 'native blocks of 40k containers adopted',
      pod: pod({ [ANNOTATION_ADOPT_NATIVE]: 'true' }, { containers: fillTo((i) => ({ name: `c${i}`, image: 'i', lifecycle: { preStop: { sleep: { seconds: 1 } } } }), body) }),
      expect: 'denied',
    },
    { name: '64 KiB of YAML flow maps', pod: pod({ [ANNOTATION_HOOKS]: annotationOf((i) => `{c${i}: {}}: 1\n`) }, { containers: [{ name: 'app', image: 'i' }] }), expect: 'denied' },
    {
      name: '30k init containers shifted by the sidecar',
      pod: pod(oneHook, { containers: [{ name: 'app', image: 'i' }], initContainers: fillTo((i) => ({ name: `i${i}`, image: 'i', env: [{ name: 'A', value: 'b' }] }), body) }),
      expect: 'injected',
    },
  ];
}

test('worst inputs under the size limits: each is answered, and /healthz keeps answering meanwhile', async (t) => {
  const { post, get, lines } = await startServer(t);
  const cases = worstCasePods();
  const health = { ok: 0, failed: [] as string[] };
  let done = false;
  // /healthz polled on its own connections for as long as the admissions run.
  const poller = (async () => {
    for (let i = 0; i < 100_000 && !done; i++) {
      try {
        const h = await get('/healthz');
        if (h.status === 200) health.ok++;
        else health.failed.push(`status ${h.status}`);
      } catch (e) {
        health.failed.push((e as Error).message);
      }
    }
  })();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  try {
    for (const [i, c] of cases.entries()) {
      const review = exampleReview();
      review.request.uid = `worst-${i}`;
      review.request.object = c.pod;
      const body = JSON.stringify(review);
      assert.ok(body.length <= DEFAULT_BODY_LIMIT_BYTES, `${c.name}: ${body.length} bytes, within the limit`);
      const before = health.ok;
      const r = await post(body);
      assert.equal(r.status, 200, `${c.name}: ${r.text.slice(0, 200)}`);
      const res = reviewOf(r).response;
      const line = admissionLines(lines).find((l) => l.uid === review.request.uid)!;
      assert.equal(line.outcome, c.expect, `${c.name}: ${res.status?.message ?? ''}`);
      t.diagnostic(
        `${c.name}: ${(body.length / 1024 / 1024).toFixed(2)} MiB, ${line.outcome}${line.reason ? ` (${String(line.reason)})` : ''}, admission ${Number(line.latencyMs).toFixed(0)} ms, response ${(r.text.length / 1024).toFixed(0)} KiB`,
      );
      // Between two admissions the health poller gets its turn.
      await waitFor(`/healthz answered after ${c.name}`, () => health.ok > before, { tries: 200, intervalMs: 25 });
    }
  } finally {
    done = true;
    delay.disable();
    await poller;
  }
  t.diagnostic(
    `worst admission ${Math.max(...admissionLines(lines).map((l) => Number(l.latencyMs))).toFixed(0)} ms; event loop delay max ${(delay.max / 1e6).toFixed(0)} ms; /healthz answered ${health.ok} times meanwhile`,
  );
  assert.deepEqual(health.failed, []);
});

test('GET /metrics: admission counters by outcome and reason, the latency histogram, process metrics', async (t) => {
  const { post, get } = await startServer(t);
  const pod = JSON.stringify(exampleReview());
  await post(pod);
  await post(pod);
  const denied = exampleReview();
  (denied.request.object as V1Pod).metadata!.annotations![ANNOTATION_HOOKS] = 'app: {preStop: [{bogus: {}}]}';
  await post(JSON.stringify(denied));
  const plain = exampleReview();
  delete (plain.request.object as V1Pod).metadata!.annotations;
  await post(JSON.stringify(plain));
  await post('not json');
  await get('/nope');

  const m = await get('/metrics');
  assert.equal(m.status, 200);
  assert.match(String(m.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const has = (line: string) => assert.ok(m.text.split('\n').includes(line), `metrics should contain the line: ${line}`);
  has('hook_runner_admissions_total{outcome="injected",reason="none"} 2');
  has('hook_runner_admissions_total{outcome="denied",reason="invalid-hooks"} 1');
  has('hook_runner_admissions_total{outcome="skipped",reason="no-hooks"} 1');
  has('hook_runner_admission_duration_seconds_count{outcome="injected"} 2');
  has('hook_runner_admission_duration_seconds_bucket{le="+Inf",outcome="denied"} 1');
  has('hook_runner_webhook_rejected_requests_total{reason="malformed"} 1');
  has('hook_runner_webhook_rejected_requests_total{reason="not-found"} 1');
  assert.match(m.text, /^process_cpu_user_seconds_total \d/m);
  assert.match(m.text, /^nodejs_eventloop_lag_seconds /m);
  // The served certificate's notAfter, for the certificate-expiry alert of the self-signed setup.
  const notAfter = new X509Certificate(bundle.cert).validTo;
  has(`hook_runner_webhook_certificate_expiry_timestamp_seconds ${Date.parse(notAfter) / 1000}`);
});

test('an unexpected error in the admission logic is a 500 with a JSON body and an error log line', async (t) => {
  const { post, lines } = await startServer(t, {
    review: () => {
      throw new Error('boom');
    },
  });
  const r = await post(JSON.stringify(exampleReview()));
  assert.equal(r.status, 500);
  assert.deepEqual(r.json(), { error: 'internal error in hook-runner webhook; see its log' });
  const line = lines.find((l) => l.msg === 'internal error while answering a request');
  assert.equal(line?.level, 'error');
  assert.match(JSON.stringify(line?.err), /boom/);
});

/** Opens a POST whose body is not finished yet; returns the way to finish it and the reply. */
function openPost(port: number, body: string) {
  let finish!: () => void;
  const reply = new Promise<Reply>((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/mutate', ca, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) as unknown });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.write(body.slice(0, 10));
    finish = () => req.end(body.slice(10));
  });
  return { reply, finish: () => finish() };
}

test('graceful close: stops accepting, finishes the request in flight, then resolves', async (t) => {
  const { server, port } = await startServer(t);
  const review = JSON.stringify(exampleReview());
  const inflight = openPost(port, review);
  await waitFor('the request to be in flight', () => server.state.inFlight === 1);
  const closed = server.close({ timeoutMs: 10_000 });
  // New connections are refused at once; the open one is still served.
  await assert.rejects(request({ port, ca, path: '/healthz' }), /ECONNREFUSED/);
  inflight.finish();
  const r = await inflight.reply;
  assert.equal(r.status, 200);
  assert.equal((r.json() as ReviewResponse).response.allowed, true);
  await closed;
  assert.equal(server.server.listening, false);
});

test('graceful close: a keep-alive connection is closed after its last response instead of idling until keepAliveTimeout', async (t) => {
  const { server, port, lines } = await startServer(t);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const body = JSON.stringify(exampleReview());
  let finish!: () => void;
  let socketClosed = false;
  const reply = new Promise<number>((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/mutate', ca, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('socket', (sock) => sock.once('close', () => (socketClosed = true)));
    req.on('error', reject);
    req.write(body.slice(0, 10));
    finish = () => req.end(body.slice(10));
  });
  await waitFor('the request to be in flight', () => server.state.inFlight === 1);
  const closed = server.close({ timeoutMs: 15_000 });
  finish();
  assert.equal(await reply, 200);
  // Polled, not awaited: a keep-alive socket back in the agent's pool is unref'd and would not keep the test alive.
  await waitFor('the server to close the kept-alive connection', () => socketClosed);
  await closed;
  assert.ok(!lines.some((l) => l.msg.startsWith('requests still running')), 'closed without reaching the bound');
});

test('graceful close is bounded: a request that never completes is cut at the timeout', async (t) => {
  const { server, port, lines } = await startServer(t);
  const stuck = openPost(port, JSON.stringify(exampleReview()));
  await waitFor('the request to be in flight', () => server.state.inFlight === 1);
  await server.close({ timeoutMs: 200 });
  await assert.rejects(stuck.reply, /socket hang up|ECONNRESET/);
  assert.ok(lines.some((l) => l.msg === 'requests still running at the shutdown bound; closing their connections' && l.inFlight === 1));
});

// ------------------------------------------------------------------------------------------------
// The CLI

function capture() {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (c: Buffer) => (stdout += c.toString()));
  err.on('data', (c: Buffer) => (stderr += c.toString()));
  return { io: { stdout: out, stderr: err }, text: () => ({ stdout, stderr }) };
}

test('hook-runner webhook: usage errors exit 2 with a message saying what is wrong; --help prints usage', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-cli-'));
  const cases: [string[], number, RegExp][] = [
    [['--bogus'], 2, /^hook-runner webhook: Unknown option '--bogus'/],
    [['--listen', '127.0.0.1:0'], 2, /no TLS: the API server calls webhooks over HTTPS only; pass --tls-cert-file F --tls-key-file F, or --self-signed/],
    [['--tls-cert-file', 'a.crt'], 2, /--tls-cert-file needs --tls-key-file/],
    [['--tls-key-file', 'a.key'], 2, /--tls-key-file needs --tls-cert-file/],
    [['--self-signed', '--tls-cert-file', 'a.crt', '--tls-key-file', 'a.key'], 2, /--self-signed and --tls-cert-file\/--tls-key-file exclude each other/],
    [['--tls-cert-file', 'a', '--tls-key-file', 'b', '--ca-out', 'c'], 2, /--ca-out applies only with --self-signed/],
    [['--self-signed', '--listen', '8443'], 2, /--listen "8443": expected HOST:PORT/],
    [['--self-signed', '--listen', '127.0.0.1:70000'], 2, /port must be 0-65535/],
    [['--self-signed', '--service-name', 'Bad_Name'], 2, /--service-name "Bad_Name": expected a DNS label/],
    [['--self-signed', 'extra'], 2, /Unexpected argument 'extra'/],
    [['--self-signed', '--shutdown-delay-seconds', 'soon'], 2, /--shutdown-delay-seconds "soon": expected a number of seconds 0-600/],
    [['--self-signed', '--config', join(dir, 'missing.yaml')], 1, /--config: .*missing\.yaml: \(file\): cannot read: ENOENT/],
    [['--tls-cert-file', join(dir, 'x.crt'), '--tls-key-file', join(dir, 'x.key')], 1, /--tls-cert-file .*x\.crt: cannot read: ENOENT/],
  ];
  writeFileSync(join(dir, 'bad.yaml'), 'sidecar: {mode: sometimes}\n');
  cases.push([['--self-signed', '--config', join(dir, 'bad.yaml'), '--listen', '127.0.0.1:0'], 1, /bad\.yaml: sidecar\.mode: must be one of auto, native, container/]);
  for (const [args, code, re] of cases) {
    const c = capture();
    const { logger } = memoryLogger();
    assert.equal(await runWebhookCli(args, { ...c.io, logger }), code, args.join(' '));
    assert.match(c.text().stderr, re, args.join(' '));
  }
  const h = capture();
  assert.equal(await runWebhookCli(['--help'], h.io), 0);
  assert.match(h.text().stdout, /^Usage: hook-runner webhook \[--listen HOST:PORT\] \[--tls-cert-file F --tls-key-file F \| --self-signed\] \[--config F\]/);
  for (const flag of ['--listen', '--tls-cert-file', '--tls-key-file', '--self-signed', '--ca-out', '--service-name', '--service-namespace', '--config']) {
    assert.ok(h.text().stdout.includes(flag), `--help documents ${flag}`);
  }
});

test('hook-runner webhook: an address in use exits 1 naming the address', async (t) => {
  const { port } = await startServer(t);
  const c = capture();
  const { logger } = memoryLogger();
  assert.equal(await runWebhookCli(['--self-signed', '--listen', `127.0.0.1:${port}`], { ...c.io, logger }), 1);
  assert.match(c.text().stderr, new RegExp(`^hook-runner webhook: cannot listen on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`, 'm'));
});

test('hook-runner webhook --self-signed (in-process): CA on stderr verifies the server; config mode applies; stops on request', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-cli-'));
  writeFileSync(join(dir, 'config.yaml'), 'sidecar: {mode: container}\n');
  const c = capture();
  const { logger, lines } = memoryLogger();
  const stop = new AbortController();
  const done = runWebhookCli(['--self-signed', '--listen', '127.0.0.1:0', '--service-name', 'hooks', '--service-namespace', 'ops', '--config', join(dir, 'config.yaml')], {
    ...c.io,
    logger,
    stop: stop.signal,
  });
  const listening = await waitFor('the listening log line', () => lines.find((l) => l.msg.startsWith('webhook listening on 127.0.0.1:')));
  const port = Number(listening.port);
  assert.ok(port > 0);
  assert.equal(listening.sidecarMode, 'container');
  assert.equal(listening.try, `curl -sk https://127.0.0.1:${port}/mutate -H 'content-type: application/json' --data @examples/admission-review.json`);
  const caPem = c.text().stderr;
  assert.match(caPem, /^-----BEGIN CERTIFICATE-----\r?\n[\s\S]+-----END CERTIFICATE-----\r?\n$/, 'stderr holds the CA certificate and nothing else');
  for (const servername of ['hooks.ops.svc', 'localhost', undefined]) {
    const r = await request({ port, ca: caPem, path: '/healthz', servername });
    assert.equal(r.status, 200, `verified as ${servername ?? '127.0.0.1'}`);
  }
  const review = exampleReview();
  const res = (await request({ port, ca: caPem, method: 'POST', path: '/mutate', body: JSON.stringify(review), headers: { 'content-type': 'application/json' } })).json() as ReviewResponse;
  const pod = jsonpatch.applyPatch(structuredClone(review.request.object), decodePatch(res), true, false).newDocument as V1Pod;
  assert.equal(pod.spec?.containers[0]?.name, SIDECAR_CONTAINER_NAME, 'container mode: the sidecar is the first regular container');
  stop.abort();
  assert.equal(await done, 0);
  assert.ok(lines.some((l) => l.msg === 'webhook stopped'));
});

test('hook-runner webhook --tls-cert-file/--tls-key-file (in-process): serves the certificate from the files and stops on request', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-cli-'));
  const caPair = makeCa({ validityDays: 1 });
  const leaf = issueServingCert({ ca: caPair, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 1 });
  writeFileSync(join(dir, 'tls.crt'), leaf.cert);
  writeFileSync(join(dir, 'tls.key'), leaf.key);
  const c = capture();
  const { logger, lines } = memoryLogger();
  const stop = new AbortController();
  const done = runWebhookCli(['--tls-cert-file', join(dir, 'tls.crt'), '--tls-key-file', join(dir, 'tls.key'), '--listen', '127.0.0.1:0'], { ...c.io, logger, stop: stop.signal });
  const listening = await waitFor('the listening log line', () => lines.find((l) => l.msg.startsWith('webhook listening')));
  assert.equal(listening.tls, `files ${join(dir, 'tls.crt')}`);
  const r = await request({ port: Number(listening.port), ca: caPair.cert, path: '/readyz' });
  assert.equal(r.status, 200);
  stop.abort();
  assert.equal(await done, 0);
  assert.equal(c.text().stderr, '');
});

test('the built binary: node dist/cli/main.js webhook --self-signed --listen 127.0.0.1:0 answers /healthz and exits 0 on SIGTERM', async (t) => {
  const cli = join(ROOT, 'dist', 'cli', 'main.js');
  if (!existsSync(cli)) {
    t.skip('needs a build: dist/cli/main.js is missing (npm test builds first; or run npm run build)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-cli-'));
  const caOut = join(dir, 'ca.pem');
  const child = spawn(process.execPath, [cli, 'webhook', '--self-signed', '--listen', '127.0.0.1:0', '--ca-out', caOut, '--shutdown-delay-seconds', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  t.after(() => {
    clearTimeout(killer);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines: LogLine[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l) as LogLine));

  const listening = await Promise.race([
    waitFor('the listening log line', () => lines.find((l) => l.msg.startsWith('webhook listening')), { tries: 400 }),
    exited.then((code) => {
      throw new Error(`the webhook exited early with ${code}: ${stderr}`);
    }),
  ]);
  const port = Number(listening.port);
  assert.equal(listening.try, `curl -s --cacert ${caOut} https://localhost:${port}/mutate -H 'content-type: application/json' --data @examples/admission-review.json`);
  const r = await request({ port, ca: readFileSync(caOut), servername: 'localhost', path: '/healthz' });
  assert.deepEqual([r.status, r.json()], [200, { status: 'ok' }]);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, `exit code after SIGTERM; stderr: ${stderr}`);
  assert.ok(lines.some((l) => l.msg === 'webhook stopped' && l.signal === 'SIGTERM'));
});
