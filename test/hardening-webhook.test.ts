/**
 * Issue 7 item 2: the webhook under bad input, over real HTTPS on 127.0.0.1. Every case of the table
 * gets a clear 4xx (or a clear AdmissionReview denial) while good requests run in parallel the whole
 * time and must all succeed; afterwards the server still answers. docs/security.md lists the table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import jsonpatch, { type Operation } from 'fast-json-patch';
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_HOOKS } from '../common/names.js';
import { defaultConfig } from '../webhook/core/config.js';
import { createWebhookMetrics } from '../webhook/metrics.js';
import { DEFAULT_BODY_LIMIT_BYTES, startWebhookServer } from '../webhook/server.js';
import { makeSelfSignedBundle, staticTlsProvider, webhookServingNames } from '../webhook/cluster/tls.js';
import { memoryLogger, request, type Reply } from './support/https.js';
import { validateKubernetesObject } from './support/k8s-schema.js';

const ROOT = join(import.meta.dirname, '..');
const bundle = makeSelfSignedBundle(webhookServingNames());
const ca = bundle.caCert;
const HEADERS_TIMEOUT_MS = 1000;

type Review = { apiVersion: string; kind: string; request: Record<string, unknown> & { uid: string; object: V1Pod } };
const exampleReview = (): Review => JSON.parse(readFileSync(join(ROOT, 'examples', 'admission-review.json'), 'utf8')) as Review;

function withHooks(hooks: string, containers?: string[]): string {
  const r = exampleReview();
  r.request.object.metadata!.annotations![ANNOTATION_HOOKS] = hooks;
  if (containers) r.request.object.spec!.containers = containers.map((name) => ({ name, image: 'img' }));
  return JSON.stringify(r);
}

/** What one case got back: an HTTP status and body, or how the connection ended. */
interface Answer {
  status?: number;
  error?: string;
  allowed?: boolean;
  code?: number;
  message?: string;
  body?: string;
  closed?: string;
}

function answerOf(r: Reply): Answer {
  let j: any;
  try {
    j = r.json();
  } catch {
    return { status: r.status, body: r.text.slice(0, 300) };
  }
  return { status: r.status, error: j?.error, allowed: j?.response?.allowed, code: j?.response?.status?.code, message: j?.response?.status?.message, body: r.text.slice(0, 300) };
}

/** Raw TLS: sends the request head byte by byte, slower than the headers timeout allows. */
function slowHeaders(port: number): Promise<Answer> {
  return new Promise((resolve) => {
    const head = `POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: ${'a'.repeat(200)}`;
    let got = '';
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    const sock = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      // One byte every 50 ms: the head would take 12 s, far past the 1 s headers timeout.
      timer = setInterval(() => {
        if (i < head.length && !sock.destroyed) sock.write(head[i++]!);
      }, 50);
    });
    const giveUp = setTimeout(() => sock.destroy(new Error('no answer within 15 s')), 15_000);
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => (got += c));
    const done = (closed: string) => {
      clearInterval(timer);
      clearTimeout(giveUp);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      resolve({ status: m ? Number(m[1]) : undefined, closed, body: got.slice(0, 200) });
    };
    sock.on('close', () => done(`closed after ${i} of ${head.length} header bytes`));
    sock.on('error', () => {});
  });
}

/** Plain HTTP to the TLS port. */
function plainHttp(port: number): Promise<Answer> {
  return new Promise((resolve) => {
    let got = '';
    const sock = net.connect({ host: '127.0.0.1', port }, () => sock.write('POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}'));
    const giveUp = setTimeout(() => sock.destroy(new Error('no answer within 10 s')), 10_000);
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => (got += c));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(giveUp);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      resolve({ status: m ? Number(m[1]) : undefined, closed: 'connection closed', body: got.slice(0, 300) });
    });
  });
}

function aliasBomb(levels: number): string {
  const lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < levels; i++)
    lines.push(
      `a${i}: &a${i} [${Array(9)
        .fill(`*a${i - 1}`)
        .join(',')}]`,
    );
  return lines.join('\n');
}

test('bad-input table: every case gets a clear 4xx or denial while concurrent good requests all succeed', async (t) => {
  const { logger, lines } = memoryLogger();
  const server = await startWebhookServer({
    config: defaultConfig('0.0.0-test'),
    mode: 'native',
    logger,
    metrics: createWebhookMetrics(),
    listen: { host: '127.0.0.1', port: 0 },
    tls: staticTlsProvider(bundle, 'self-signed'),
    timeouts: { headersTimeoutMs: HEADERS_TIMEOUT_MS },
  });
  t.after(() => server.close({ timeoutMs: 2000 }));
  const port = server.address().port;
  const post = (body: string | Buffer, headers: Record<string, string> = {}) =>
    request({ port, ca, method: 'POST', path: '/mutate', body, headers: { 'content-type': 'application/json', ...headers }, timeoutMs: 20_000 });

  // Good traffic: 4 loops of real AdmissionReviews for the whole table, each checked (bounded count).
  const good = exampleReview();
  const goodBody = JSON.stringify(good);
  let stop = false;
  const goodResults: string[] = [];
  const pump = async () => {
    for (let i = 0; i < 5000 && !stop; i++) {
      try {
        const r = await post(goodBody);
        const j = r.json() as { response: { uid: string; allowed: boolean; patch?: string } };
        const patched = jsonpatch.applyPatch(structuredClone(good.request.object), JSON.parse(Buffer.from(j.response.patch ?? '', 'base64').toString()) as Operation[], true, false).newDocument;
        goodResults.push(
          r.status === 200 && j.response.allowed && j.response.uid === good.request.uid && patched.spec!.initContainers?.[0]?.name === 'hook-runner'
            ? 'ok'
            : `bad: ${r.status} ${r.text.slice(0, 200)}`,
        );
      } catch (e) {
        goodResults.push(`error: ${(e as Error).message}`);
      }
    }
  };
  const pumps = [pump(), pump(), pump(), pump()];

  const review = (req: Record<string, unknown>) => JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: req });
  const podReq = exampleReview().request;
  // JSON.stringify itself cannot write 100k levels: splice the nested text in.
  const deepPodReview = exampleReview();
  (deepPodReview.request.object.metadata as Record<string, unknown>).labels = { deep: '@DEEP@' };
  const deepPod = JSON.stringify(deepPodReview).replace('"@DEEP@"', `${'['.repeat(100_000)}"x"${']'.repeat(100_000)}`);

  const cases: Array<[string, () => Promise<Answer>, (a: Answer) => void]> = [
    [
      'not JSON',
      async () => answerOf(await post('{"apiVersion": ')),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /^the request body is not valid JSON/);
      },
    ],
    [
      'JSON of the wrong shape (a list)',
      async () => answerOf(await post('[1,2,3]')),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /body must be a JSON object: an AdmissionReview/);
      },
    ],
    [
      'JSON of the wrong shape (request a string)',
      async () => answerOf(await post(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: 'x' }))),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /request is missing or not an object/);
      },
    ],
    [
      'wrong apiVersion',
      async () => answerOf(await post(JSON.stringify({ ...exampleReview(), apiVersion: 'admission.k8s.io/v1beta1' }))),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /expected apiVersion admission\.k8s\.io\/v1 and kind AdmissionReview, got apiVersion "admission\.k8s\.io\/v1beta1"/);
      },
    ],
    [
      'wrong kind',
      async () => answerOf(await post(JSON.stringify({ ...exampleReview(), kind: 'Pod' }))),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /and kind "Pod"/);
      },
    ],
    [
      'missing request',
      async () => answerOf(await post(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }))),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /request is missing/);
      },
    ],
    [
      'missing uid',
      async () => answerOf(await post(review({ ...podReq, uid: undefined }))),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /request\.uid is missing/);
      },
    ],
    [
      'missing object (pod CREATE)',
      async () => answerOf(await post(review({ ...podReq, object: undefined }))),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /request\.object is missing/);
      },
    ],
    [
      'body over the 3 MiB limit',
      async () => answerOf(await post(Buffer.alloc(DEFAULT_BODY_LIMIT_BYTES + 1024, 0x20))),
      (a) => {
        assert.equal(a.status, 413);
        assert.match(a.error!, /larger than the limit of 3145728 bytes/);
      },
    ],
    [
      '100k levels of "[" (unclosed)',
      async () => answerOf(await post('['.repeat(100_000))),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /not valid JSON/);
      },
    ],
    [
      '100k levels of "[...]" (valid JSON)',
      async () => answerOf(await post('['.repeat(100_000) + ']'.repeat(100_000))),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /nests deeper than|body must be a JSON object/);
      },
    ],
    [
      'a Pod with 100k nested lists inside it',
      async () => answerOf(await post(deepPod)),
      (a) => {
        assert.equal(a.status, 400);
        assert.match(a.error!, /nests deeper than 100 levels/);
      },
    ],
    ['the same Pod again (the server survived the first)', async () => answerOf(await post(deepPod)), (a) => assert.equal(a.status, 400)],
    [
      'hooks annotation of 256 KiB',
      async () => answerOf(await post(withHooks(`app: {preStop: [{sleep: {seconds: 1}}]}\n#${'x'.repeat(256 * 1024)}`))),
      (a) => {
        assert.deepEqual([a.status, a.allowed, a.code], [200, false, 400]);
        assert.match(a.message!, /^hook-runner\.dev\/hooks: is 262\d+ bytes; at most 65536 are accepted$/);
      },
    ],
    [
      'YAML alias bomb ("billion laughs", 9 levels)',
      async () => answerOf(await post(withHooks(aliasBomb(9)))),
      (a) => {
        assert.deepEqual([a.status, a.allowed, a.code], [200, false, 400]);
        assert.match(a.message!, /^hook-runner\.dev\/hooks: not valid YAML or JSON: .*alias/i);
      },
    ],
    [
      'deeply nested YAML in the annotation (20k "- ")',
      async () => answerOf(await post(withHooks(`${'- '.repeat(20_000)}x`))),
      (a) => {
        assert.deepEqual([a.status, a.allowed, a.code], [200, false, 400]);
        assert.match(a.message!, /^hook-runner\.dev\/hooks: nests deeper than/);
      },
    ],
    [
      'deeply nested YAML again (a second one used to abort the process)',
      async () => answerOf(await post(withHooks('['.repeat(30_000) + ']'.repeat(30_000)))),
      (a) => {
        assert.deepEqual([a.status, a.allowed, a.code], [200, false, 400]);
        assert.match(a.message!, /^hook-runner\.dev\/hooks: nests deeper than/);
      },
    ],
    [
      'unicode container name with hooks',
      async () => answerOf(await post(withHooks('äpp-☃: {preStop: [{sleep: {seconds: 1}}]}', ['äpp-☃']))),
      (a) => {
        // Injected like any other name; the API server's own validation refuses the name afterwards.
        assert.deepEqual([a.status, a.allowed], [200, true]);
      },
    ],
    [
      'unicode name in the annotation only',
      async () => answerOf(await post(withHooks('äpp: {preStop: [{sleep: {seconds: 1}}]}'))),
      (a) => {
        assert.deepEqual([a.status, a.allowed, a.code], [200, false, 400]);
        assert.match(a.message!, /^hook-runner\.dev\/hooks: äpp: no such container in this pod/);
      },
    ],
    [
      'a container named "constructor" beside a hooked one',
      async () => answerOf(await post(withHooks('app: {preStop: [{sleep: {seconds: 1}}]}', ['app', 'constructor']))),
      (a) => {
        assert.deepEqual([a.status, a.allowed], [200, true]);
      },
    ],
    [
      'headers sent slowly',
      () => slowHeaders(port),
      (a) => {
        assert.equal(a.status, 408, `answer: ${JSON.stringify(a)}`);
      },
    ],
    [
      'plain HTTP to the TLS port',
      () => plainHttp(port),
      (a) => {
        assert.equal(a.status, 400, `answer: ${JSON.stringify(a)}`);
        assert.match(a.body!, /plain HTTP request sent to the HTTPS port/);
      },
    ],
  ];

  const results: Array<[string, Answer]> = [];
  try {
    for (const [name, send, check] of cases) {
      const a = await send();
      results.push([name, a]);
      try {
        check(a);
      } catch (e) {
        throw new Error(`case ${JSON.stringify(name)}: ${(e as Error).message}\nanswer: ${JSON.stringify(a).slice(0, 500)}`);
      }
    }
  } finally {
    stop = true;
    await Promise.all(pumps);
    for (const [name, a] of results) t.diagnostic(`${name} → ${a.status ?? a.closed} ${(a.error ?? a.message ?? '').slice(0, 120)}`);
  }
  const bad = goodResults.filter((r) => r !== 'ok');
  assert.deepEqual(bad, [], 'every concurrent good request succeeded');
  assert.ok(goodResults.length >= 20, `good requests ran throughout (${goodResults.length})`);
  const after = await request({ port, ca, path: '/healthz' });
  assert.equal(after.status, 200);
  assert.ok(!lines.some((l) => l.msg === 'internal error while answering a request'), 'no 500 for any case');
});

test("every mutated pod of the table's good cases passes the strict Pod schema check, unicode names included", async () => {
  const { reviewAdmission } = await import('../webhook/core/admission.js');
  for (const body of [withHooks('äpp-☃: {preStop: [{sleep: {seconds: 1}}]}', ['äpp-☃']), withHooks('app: {preStop: [{sleep: {seconds: 1}}]}', ['app', 'constructor'])]) {
    const rev = JSON.parse(body) as Review;
    const res = reviewAdmission(rev, { config: defaultConfig('t'), mode: 'native' }).review as { response: { patch: string } };
    const pod = jsonpatch.applyPatch(structuredClone(rev.request.object), JSON.parse(Buffer.from(res.response.patch, 'base64').toString()) as Operation[], true, false).newDocument;
    assert.deepEqual(validateKubernetesObject(pod), []);
  }
});
