/**
 * `hook-runner webhook --self-signed` in a pod, wired end to end against a fake API server: the
 * certificate comes from the shared Secret and the caBundle is patched, sidecar mode auto follows
 * /version, and the namespace's Pod Security level denies exec/signal hooks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Secret } from '@kubernetes/client-node';
import { FakeApiServer } from './support/fake-apiserver.js';
import { memoryLogger, request, waitFor } from './support/https.js';
import { runWebhookCli } from '../webhook/cli.js';
import { TLS_SECRET_NAME } from '../webhook/cluster/cert-bootstrap.js';
import { applyPatch } from '../webhook/core/patch.js';

const NS = 'hook-runner-system';

function review(namespace: string, hooks: string) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `uid-${namespace}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      operation: 'CREATE',
      namespace,
      object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', annotations: { 'hook-runner.dev/hooks': hooks } }, spec: { containers: [{ name: 'app', image: 'img' }] } },
    },
  };
}

test('webhook in a pod: Secret certificate, caBundle, mode from /version, Pod Security denial', async () => {
  const fake = await FakeApiServer.start();
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, kubeconfig: process.env.KUBECONFIG, ns: process.env.POD_NAMESPACE };
  const stop = new AbortController();
  let running: Promise<number> | undefined;
  try {
    fake.setNamespace(NS);
    fake.setNamespace('apps', { 'hook-runner.dev/injection': 'enabled', 'pod-security.kubernetes.io/enforce': 'baseline' });
    fake.put('mutatingwebhookconfigurations', {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: 'hook-runner' },
      webhooks: [{ name: 'inject.hook-runner.dev', admissionReviewVersions: ['v1'], sideEffects: 'None', clientConfig: { service: { name: 'hook-runner', namespace: NS, path: '/mutate' } } }],
    });
    fake.version = { major: '1', minor: '28', gitVersion: 'v1.28.9' };
    const dir = mkdtempSync(join(tmpdir(), 'hook-runner-kubeconfig-'));
    writeFileSync(join(dir, 'config'), fake.kubeConfig().exportConfig());
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBECONFIG = join(dir, 'config');
    process.env.POD_NAMESPACE = NS;

    const { logger, lines } = memoryLogger();
    const stderr = { write: () => true } as unknown as NodeJS.WritableStream;
    running = runWebhookCli(['--self-signed', '--listen', '127.0.0.1:0', '--shutdown-delay-seconds', '0'], { logger, stop: stop.signal, stderr });
    const listening = await waitFor('the webhook to listen', () => lines.find((l) => /^webhook listening/.test(l.msg)), { tries: 300, intervalMs: 100 });
    const port = listening.port as number;
    assert.equal(listening.sidecarMode, 'container', 'Kubernetes 1.28 has no native sidecars');

    const secret = fake.get('secrets', TLS_SECRET_NAME, NS) as V1Secret | undefined;
    assert.ok(secret?.data?.['ca.crt'], 'the certificate is kept in the Secret');
    const ca = Buffer.from(secret.data['ca.crt'], 'base64').toString();
    const mwc = fake.get('mutatingwebhookconfigurations', 'hook-runner') as { webhooks: Array<{ clientConfig: { caBundle?: string } }> };
    assert.equal(
      Buffer.from(mwc.webhooks[0]!.clientConfig.caBundle ?? '', 'base64')
        .toString()
        .trim(),
      ca.trim(),
      "caBundle patched with the Secret's CA",
    );

    const post = (body: unknown) =>
      request({ port, method: 'POST', path: '/mutate', ca, servername: `hook-runner.${NS}.svc`, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const denied = (await post(review('apps', 'app: {preStop: [{signal: {name: QUIT}}]}'))).json() as { response: { allowed: boolean; status: { message: string } } };
    assert.equal(denied.response.allowed, false);
    assert.match(denied.response.status.message, /app\.preStop\[0\]\.signal: needs the hook-runner sidecar .* namespace apps forbids \(pod-security\.kubernetes\.io\/enforce: baseline\)/);
    const allowed = review('apps', 'app: {preStop: [{sleep: {seconds: 1}}]}');
    const ok = (await post(allowed)).json() as { response: { allowed: boolean; patch: string } };
    assert.equal(ok.response.allowed, true);
    const patched = applyPatch(allowed.request.object, JSON.parse(Buffer.from(ok.response.patch, 'base64').toString()));
    assert.deepEqual(
      patched.spec.containers.map((c: { name: string }) => c.name),
      ['hook-runner', 'app'],
      'container mode puts the sidecar first among containers',
    );

    stop.abort();
    assert.equal(await running, 0);
    running = undefined;
  } finally {
    if (running) {
      stop.abort();
      await running.catch(() => 1);
    }
    for (const [k, v] of [
      ['KUBERNETES_SERVICE_HOST', saved.host],
      ['KUBECONFIG', saved.kubeconfig],
      ['POD_NAMESPACE', saved.ns],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await fake.close();
  }
});
