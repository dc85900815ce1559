/**
 * `hook-runner check` and `hook-runner explain pod` against the fake API server
 * (test/support/fake-apiserver.ts). The objects the fake does not model (Deployments,
 * EndpointSlices, ClusterRoles, Pods, Services, Events, logs) are served by this file's own
 * interceptor, so the fake itself is not changed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { FakeApiServer, status, type InterceptReply } from './support/fake-apiserver.js';
import { issueServingCert, makeCa, webhookServingNames, type PemPair } from '../webhook/cluster/tls.js';
import { defaultConfig } from '../webhook/core/config.js';
import { mutatePod } from '../webhook/core/mutate.js';
import { runChecks } from '../cli/check-cli.js';
import { checkCertificate, renderChecks, type CheckReport } from '../cli/check.js';
import { makeStyle } from '../cli/term.js';

const CLI = join(import.meta.dirname, '..', 'dist', 'cli', 'main.js');
const SYS = 'hook-runner-system';

let fake: FakeApiServer;
let ca: PemPair;
let serving: PemPair;
let otherServing: PemPair;
/** GET path → body, for what the fake does not model; collections are lists of items. */
let objects: Map<string, unknown>;
let kubeconfigPath: string;

const b64 = (s: string) => Buffer.from(s).toString('base64');

function deployment(available: number, selfSigned = true) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'hook-runner', namespace: SYS },
    spec: { replicas: 2, selector: {}, template: { spec: { containers: [{ name: 'webhook', image: 'x', args: ['webhook', ...(selfSigned ? ['--self-signed'] : [])] }] } } },
    status: {
      availableReplicas: available,
      conditions: [{ type: 'Available', status: available > 0 ? 'True' : 'False', ...(available > 0 ? {} : { message: 'Deployment does not have minimum availability.' }) }],
    },
  };
}

function list(items: unknown[]) {
  return { metadata: {}, items };
}

const hookedPod = (() => {
  const pod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'shop', uid: 'uid-web', annotations: { 'hook-runner.dev/hooks': 'app: {shutdownSeconds: 5, preStop: [{sleep: {seconds: 40}, timeoutSeconds: 60}]}' } },
    spec: { containers: [{ name: 'app', image: 'x', ports: [{ containerPort: 15901 }] }] },
  };
  // The port moves to 15902 because the app uses 15901.
  const r = mutatePod(pod, { config: defaultConfig('test'), mode: 'native', newToken: () => 't'.repeat(32) });
  assert.ok(r.injected);
  return r.pod;
})();

function installHealthy(): void {
  objects = new Map<string, unknown>([
    [`/apis/apps/v1/namespaces/${SYS}/deployments/hook-runner`, deployment(2)],
    [
      `/apis/discovery.k8s.io/v1/namespaces/${SYS}/endpointslices`,
      list([
        {
          addressType: 'IPv4',
          endpoints: [
            { addresses: ['10.0.0.5'], conditions: { ready: true } },
            { addresses: ['10.0.0.6'], conditions: { ready: true } },
          ],
        },
      ]),
    ],
    [`/api/v1/namespaces/${SYS}/serviceaccounts/hook-runner`, { metadata: { name: 'hook-runner' } }],
    ...['hook-runner-webhook', 'hook-runner-sidecar', 'hook-runner-webhook-cabundle'].map(
      (n) => [`/apis/rbac.authorization.k8s.io/v1/clusterroles/${n}`, { metadata: { name: n } }] as [string, unknown],
    ),
    ...['hook-runner-webhook', 'hook-runner-webhook-cabundle'].map((n) => [`/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${n}`, { metadata: { name: n }, roleRef: {} }] as [string, unknown]),
    [`/apis/rbac.authorization.k8s.io/v1/namespaces/${SYS}/roles/hook-runner-webhook-tls`, { metadata: { name: 'hook-runner-webhook-tls' } }],
    ['/api/v1/namespaces/shop/services', list([{ metadata: { name: 'web' }, spec: { ports: [{ port: 80, targetPort: 8080 }] } }])],
    ['/api/v1/namespaces/shop/pods', list([hookedPod])],
    ['/api/v1/namespaces/ops/services', list([])],
    ['/api/v1/namespaces/ops/pods', list([])],
  ]);
  fake.put('rolebindings', { metadata: { name: 'hook-runner-webhook-tls', namespace: SYS }, roleRef: {}, subjects: [] });
  fake.put('rolebindings', { metadata: { name: 'hook-runner-sidecar', namespace: 'shop' }, roleRef: {}, subjects: [] });
  fake.put('rolebindings', { metadata: { name: 'hook-runner-sidecar', namespace: 'ops' }, roleRef: {}, subjects: [] });
  fake.put('secrets', {
    metadata: { name: 'hook-runner-tls', namespace: SYS },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': b64(serving.cert), 'tls.key': b64(serving.key), 'ca.crt': b64(ca.cert) },
  });
  fake.put('mutatingwebhookconfigurations', {
    metadata: { name: 'hook-runner' },
    webhooks: [
      {
        name: 'inject.hook-runner.dev',
        clientConfig: { caBundle: b64(ca.cert), service: { name: 'hook-runner', namespace: SYS, path: '/mutate', port: 443 } },
        failurePolicy: 'Fail',
        timeoutSeconds: 5,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
      },
    ],
  });
  fake.setNamespace(SYS);
  fake.setNamespace('shop', { 'hook-runner.dev/injection': 'enabled', 'pod-security.kubernetes.io/enforce': 'baseline' });
  fake.setNamespace('ops', { 'hook-runner.dev/injection': 'enabled' });
  fake.setNamespace('other');
}

before(async () => {
  fake = await FakeApiServer.start();
  ca = makeCa({ validityDays: 365 });
  serving = issueServingCert({ ca, ...webhookServingNames(), validityDays: 90 });
  otherServing = issueServingCert({ ca: makeCa({ validityDays: 365 }), ...webhookServingNames(), validityDays: 90 });
  fake.intercept = (req): InterceptReply | undefined => {
    if (req.method !== 'GET') return undefined;
    const body = objects.get(req.path);
    if (body !== undefined) return { status: 200, body };
    // What the fake models falls through to it; other collections are empty, other objects absent.
    if (req.path === '/version' || /\/(namespaces|secrets|rolebindings|mutatingwebhookconfigurations)(\/[^/]+)?$/.test(req.path)) return undefined;
    if (/\/(pods|services|events|endpointslices)$/.test(req.path)) return { status: 200, body: list([]) };
    return status(404, 'NotFound', `${req.path} not found`);
  };
  installHealthy();
  const dir = mkdtempSync(join(tmpdir(), 'cluster-tools-'));
  kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(kubeconfigPath, fake.kubeConfig().exportConfig());
});

after(async () => {
  await fake?.close();
});

function byId(r: CheckReport, id: string) {
  const c = r.checks.find((x) => x.id === id);
  assert.ok(c, `check ${id} present in ${r.checks.map((x) => x.id).join(', ')}`);
  return c;
}

/** Runs the built CLI asynchronously (the fake API server lives in this process). */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, KUBECONFIG: kubeconfigPath } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('check: a healthy installation passes, with the namespaces, their levels and a warning for a Service on the sidecar port', async () => {
  installHealthy();
  objects.set(
    '/api/v1/namespaces/shop/services',
    list([
      { metadata: { name: 'web' }, spec: { ports: [{ port: 80, targetPort: 8080 }] } },
      { metadata: { name: 'leaky' }, spec: { ports: [{ port: 80, targetPort: 15902 }] } },
    ]),
  );
  objects.set('/api/v1/namespaces/ops/services', list([{ metadata: { name: 'default-port' }, spec: { ports: [{ port: 15901 }] } }]));
  const r = await runChecks(fake.kubeConfig());
  assert.equal(r.success, true, JSON.stringify(r.checks, null, 1));
  assert.match(byId(r, 'kubernetes-version').message, /v1\.30\.2: sidecar mode auto means native/);
  assert.match(byId(r, 'webhook-deployment').message, /available \(2\/2 replicas\)/);
  assert.match(byId(r, 'webhook-endpoints').message, /2 ready endpoints/);
  assert.equal(byId(r, 'webhook-certificate').status, 'ok');
  assert.equal(byId(r, 'rbac').status, 'ok');
  assert.match(byId(r, 'namespace/shop').message, /Pod Security baseline; handler kinds httpGet, http, sleep, tcpSocket \(exec, signal denied\)/);
  assert.match(byId(r, 'namespace/ops').message, /not enforced \(privileged\); handler kinds exec, httpGet, http, sleep, signal, tcpSocket$/);
  assert.equal(
    r.checks.some((c) => c.id === 'namespace/other'),
    false,
    'namespaces not opted in are not listed',
  );
  const ports = byId(r, 'sidecar-port-services');
  assert.equal(ports.status, 'warn');
  assert.match(ports.message, /shop\/leaky -> 15902, ops\/default-port -> 15901/);
  assert.doesNotMatch(ports.message, /shop\/web/);

  const text = renderChecks(r, makeStyle({ tty: false, env: {} }));
  assert.match(text, /^\[ok\] kubernetes-api: /m);
  assert.match(text, /^\[warn\] sidecar-port-services: /m);
  assert.match(text, /Status check results: all passed \(1 warning\)/);
  assert.doesNotMatch(text, /[✔✖\x1b]/);
  const tty = renderChecks(r, makeStyle({ tty: true, env: {} }));
  assert.match(tty, /✔/);
  assert.match(renderChecks(r, makeStyle({ tty: true, env: { NO_COLOR: '1' } })), /^✔ kubernetes-api/m);
});

test('check: a broken installation fails each broken check with a hint, and the CLI exits 1', async () => {
  installHealthy();
  objects.set(`/apis/apps/v1/namespaces/${SYS}/deployments/hook-runner`, deployment(0));
  objects.set(`/apis/discovery.k8s.io/v1/namespaces/${SYS}/endpointslices`, list([{ addressType: 'IPv4', endpoints: [{ addresses: ['10.0.0.5'], conditions: { ready: false } }] }]));
  objects.delete('/apis/rbac.authorization.k8s.io/v1/clusterroles/hook-runner-sidecar');
  fake.put('secrets', { metadata: { name: 'hook-runner-tls', namespace: SYS }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(otherServing.cert), 'tls.key': b64(otherServing.key) } });
  fake.remove('rolebindings', 'hook-runner-sidecar', 'ops');
  const r = await runChecks(fake.kubeConfig());
  assert.equal(r.success, false);
  assert.equal(byId(r, 'webhook-deployment').status, 'fail');
  assert.match(byId(r, 'webhook-deployment').message, /0\/2 replicas available: Deployment does not have minimum availability/);
  assert.equal(byId(r, 'webhook-endpoints').status, 'fail');
  const cert = byId(r, 'webhook-certificate');
  assert.equal(cert.status, 'fail');
  assert.match(cert.message, /is not signed by a CA in the caBundle/);
  assert.match(cert.hint ?? '', /rollout restart/);
  assert.match(byId(r, 'rbac').message, /missing: ClusterRole hook-runner-sidecar/);
  assert.equal(byId(r, 'namespace/ops').status, 'warn');

  const res = await cli(['check']);
  assert.equal(res.code, 1, res.stderr);
  assert.match(res.stdout, /^\[fail\] webhook-deployment: /m);
  assert.match(res.stdout, /^ {4}hint: kubectl -n hook-runner-system describe deployment hook-runner/m);
  const json = await cli(['check', '-o', 'json', '--kubeconfig', kubeconfigPath]);
  assert.equal(json.code, 1);
  const parsed = JSON.parse(json.stdout) as CheckReport;
  assert.equal(parsed.success, false);
  assert.equal(parsed.checks.find((c) => c.id === 'rbac')?.status, 'fail');
});

test('check: the healthy CLI run exits 0; an unreachable API server is one failed line', async () => {
  installHealthy();
  const ok = await cli(['check']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  const dir = mkdtempSync(join(tmpdir(), 'cluster-tools-'));
  const dead = join(dir, 'kubeconfig');
  const kc = fake.kubeConfig();
  writeFileSync(dead, kc.exportConfig().replace(`127.0.0.1:${fake.port}`, '127.0.0.1:1'));
  const r = await cli(['check', '--kubeconfig', dead]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^\[fail\] kubernetes-api: cannot reach the API server at https:\/\/127\.0\.0\.1:1/m);
  assert.equal(r.stdout.match(/^\[/gm)?.length, 1, 'nothing else is checked without the API server');
  const usage = await cli(['check', '-o', 'xml']);
  assert.equal(usage.code, 2);
  const ctx = await cli(['check', '--context', 'nope']);
  assert.equal(ctx.code, 1);
  assert.match(ctx.stderr, /kubeconfig has no context "nope"; contexts: fake/);
});

test('check: certificate expiry: under 30 days warns, under 7 fails, expired fails', () => {
  const validTo = Date.parse(new X509Certificate(serving.cert).validTo);
  const at = (daysLeft: number) => checkCertificate({ servingCertPem: serving.cert, secret: 'hook-runner-tls', caBundleBase64: b64(ca.cert), now: new Date(validTo - daysLeft * 86_400_000) });
  assert.equal(at(60).status, 'ok');
  assert.equal(at(20).status, 'warn');
  assert.match(at(20).message, /serving certificate expires .* \(20 days\)/);
  assert.equal(at(3).status, 'fail');
  assert.match(at(-1).message, /expired/);
  const noBundle = checkCertificate({ servingCertPem: serving.cert, secret: 'hook-runner-tls', caBundleBase64: undefined, now: new Date() });
  assert.match(noBundle.message, /has no caBundle/);
  const wrongName = issueServingCert({ ca, dnsNames: ['elsewhere.example'], validityDays: 90 });
  assert.match(checkCertificate({ servingCertPem: wrongName.cert, secret: 's', caBundleBase64: b64(ca.cert), now: new Date() }).message, /not valid for hook-runner\.hook-runner-system\.svc/);
});

test('explain pod: a live injected pod with its events and the last reports from the sidecar log', async () => {
  installHealthy();
  const logLines = [
    {
      level: 'info',
      time: '2026-01-01T00:00:01.000Z',
      msg: 'hook handler attempt timeout',
      pod: 'web',
      namespace: 'shop',
      container: 'app',
      phase: 'preStop',
      handler: 'sleep',
      index: 0,
      attempt: 1,
      durationMs: 34750,
      outcome: 'deadline',
      error: 'cut off at the grace-period deadline',
    },
    {
      level: 'warn',
      time: '2026-01-01T00:00:01.100Z',
      msg: 'hook failed',
      pod: 'web',
      namespace: 'shop',
      container: 'app',
      phase: 'preStop',
      outcome: 'deadline',
      durationMs: 34751,
      handlers: 1,
      reason: 'grace-period deadline reached',
    },
  ];
  objects.set('/api/v1/namespaces/shop/pods/web', { ...hookedPod, spec: { ...hookedPod.spec, terminationGracePeriodSeconds: 40 } });
  objects.set('/api/v1/namespaces/shop/pods/web/log', logLines.map((l) => JSON.stringify(l)).join('\n'));
  objects.set(
    '/api/v1/namespaces/shop/events',
    list([
      {
        metadata: { name: 'e1' },
        involvedObject: { kind: 'Pod', name: 'web', uid: 'uid-web' },
        reason: 'FailedPreStopHook',
        type: 'Warning',
        count: 1,
        lastTimestamp: '2026-01-01T00:00:01Z',
        message: 'PreStop hook of container app cut off at the grace-period deadline',
      },
      { metadata: { name: 'e2' }, involvedObject: { kind: 'Pod', name: 'web', uid: 'uid-web' }, reason: 'Pulled', type: 'Normal', message: 'image pulled' },
      { metadata: { name: 'e3' }, involvedObject: { kind: 'Pod', name: 'web', uid: 'old-pod' }, reason: 'HookSucceeded', type: 'Normal', message: 'an earlier pod of the same name' },
    ]),
  );
  const r = await cli(['explain', 'pod', 'web', '-n', 'shop']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Pod shop\/web {2}\(live\)$/m);
  assert.match(r.stdout, /injected: yes: already injected \(sidecar mode native, port 15902\)/);
  assert.match(r.stdout, /preStop {3}\[0\] sleep 40s/);
  assert.match(r.stdout, /does not fit: preStop may take up to 40s/);
  assert.match(r.stdout, /2026-01-01T00:00:01.000Z {2}Warning {2}FailedPreStopHook: PreStop hook of container app cut off/);
  assert.doesNotMatch(r.stdout, /image pulled|an earlier pod/);
  assert.match(r.stdout, /app preStop: deadline at 2026-01-01T00:00:01.100Z in 34751ms: grace-period deadline reached \(\[0\] sleep attempt 1: cut off at the grace-period deadline\)/);
  const logReq = fake.requests.filter((q) => q.path === '/api/v1/namespaces/shop/pods/web/log').at(-1);
  assert.equal(logReq?.query.container, 'hook-runner');

  const json = await cli(['explain', 'pod', 'web', '-n', 'shop', '-o', 'json']);
  const [x] = JSON.parse(json.stdout) as { injection: { state: string }; lastReports: unknown[]; events: unknown[] }[];
  assert.equal(x!.injection.state, 'injected');
  assert.equal(x!.lastReports.length, 1);
  assert.equal(x!.events.length, 1);

  // Being deleted with --grace-period=20: the kubelet's grace is the deletion's, and so is the budget.
  objects.set('/api/v1/namespaces/shop/pods/web', {
    ...hookedPod,
    metadata: { ...hookedPod.metadata, deletionGracePeriodSeconds: 20, deletionTimestamp: '2026-01-01T00:00:00Z' },
    spec: { ...hookedPod.spec, terminationGracePeriodSeconds: 40 },
  });
  const deleting = await cli(['explain', 'pod', 'web', '-n', 'shop']);
  assert.match(deleting.stdout, /preStop grace budget of container app: deletionGracePeriodSeconds 20, shutdownSeconds 5, worst case 40s, cut-off 14\.75s/);
  assert.match(deleting.stdout, /but deletionGracePeriodSeconds 20 - shutdownSeconds 5 leaves 15s/);

  const missing = await cli(['explain', 'pod', 'nope', '-n', 'shop']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read pod shop\/nope: HTTP 404/);
});

test('explain pod: a pod in a namespace that is not opted in says so', async () => {
  installHealthy();
  objects.set('/api/v1/namespaces/other/pods/plain', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'plain', namespace: 'other', annotations: { 'hook-runner.dev/hooks': 'app: {preStop: [{sleep: {seconds: 1}}]}' } },
    spec: { containers: [{ name: 'app', image: 'x' }] },
  });
  const r = await cli(['explain', 'pod', 'plain', '-n', 'other']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /injected: no \(namespace-not-enabled\): namespace other is not labelled hook-runner\.dev\/injection=enabled/);
});
