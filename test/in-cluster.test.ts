/**
 * In-cluster code against a fake API server (test/support/fake-apiserver.ts) on 127.0.0.1 over
 * verified HTTPS: certificate bootstrap (Secret create/conflict/renewal, caBundle patch), sidecar
 * mode from /version, and the namespace controller (RoleBindings, Pod Security cache). The
 * assertions are on the requests the fake received and on what it stores. The kind e2e suite is
 * the proof against a real API server.
 */
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Secret } from '@kubernetes/client-node';
import { FakeApiServer, status } from './support/fake-apiserver.js';
import { memoryLogger, peerCertificate, waitFor } from './support/https.js';
import { makeClients } from '../webhook/kube.js';
import {
  CertBootstrap,
  CertBootstrapError,
  TLS_SECRET_NAME,
  applyCertPlan,
  caBundlePatch,
  desiredCaBundle,
  planCertificates,
  readTlsSecret,
  servingDnsNames,
  splitPemCertificates,
  tlsSecretData,
  type TlsMaterial,
} from '../webhook/cert-bootstrap.js';
import { detectSidecarMode, modeForVersion, parseKubeVersion } from '../webhook/sidecar-mode.js';
import { NamespaceController, SIDECAR_ROLEBINDING_NAME, podSecurityLevelOf, sidecarRoleBinding } from '../webhook/namespace-controller.js';
import { startInCluster } from '../webhook/in-cluster.js';
import { inClusterEnvironment } from '../webhook/in-cluster-env.js';
import { defaultConfig } from '../webhook/config.js';

const NS = 'hook-runner-system';
const SVC = 'hook-runner';
const MWC = 'hook-runner';
const DAY = 24 * 3600 * 1000;
const SECRET_PATH = `/api/v1/namespaces/${NS}/secrets/${TLS_SECRET_NAME}`;
const MWC_PATH = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${MWC}`;
const RB_PATH = (ns: string) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`;

async function withFake(fn: (fake: FakeApiServer) => Promise<void>): Promise<void> {
  const fake = await FakeApiServer.start();
  try {
    await fn(fake);
  } finally {
    await fake.close();
  }
}

function seedWebhookConfig(fake: FakeApiServer, caBundle?: string): void {
  const wh = (name: string) => ({
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    clientConfig: { service: { name: SVC, namespace: NS, path: '/mutate', port: 443 }, ...(caBundle ? { caBundle } : {}) },
  });
  fake.put('mutatingwebhookconfigurations', { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: MWC }, webhooks: [wh('inject.hook-runner.dev'), wh('second.hook-runner.dev')] });
}

function bootstrap(fake: FakeApiServer, logger = memoryLogger().logger, extra: Partial<ConstructorParameters<typeof CertBootstrap>[0]> = {}): CertBootstrap {
  const c = makeClients(fake.kubeConfig());
  return new CertBootstrap({ core: c.core, admission: c.admission, logger, namespace: NS, serviceName: SVC, webhookConfigName: MWC, retryBaseMs: 10, retryMaxMs: 50, startTimeoutMs: 5000, ...extra });
}

function storedMaterial(fake: FakeApiServer): TlsMaterial {
  const s = fake.get('secrets', TLS_SECRET_NAME, NS) as V1Secret | undefined;
  assert.ok(s, 'the Secret exists');
  const r = readTlsSecret(s);
  assert.ok('material' in r, `Secret readable: ${'problem' in r ? r.problem : ''}`);
  return r.material;
}

function seedSecret(fake: FakeApiServer, m: TlsMaterial): string {
  const s = fake.put('secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: TLS_SECRET_NAME, namespace: NS, labels: { 'app.kubernetes.io/managed-by': 'hook-runner' } }, type: 'kubernetes.io/tls', data: tlsSecretData(m) });
  return s.metadata?.resourceVersion as string;
}

/** Holds the first `n` requests matching `match` until all `n` have arrived (or 5 s passed), so that n clients race. */
function barrier(n: number, match: (r: { method: string; path: string }) => boolean): FakeApiServer['intercept'] {
  let arrived = 0;
  let release!: () => void;
  const all = new Promise<void>((r) => (release = r));
  return async (r) => {
    if (!match(r) || arrived >= n) return undefined;
    arrived++;
    if (arrived === n) release();
    await Promise.race([all, new Promise((r2) => setTimeout(r2, 5000).unref())]);
    return undefined;
  };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const fresh = (now = new Date(), days = 365, caDays = 1825) => applyCertPlan(undefined, { action: 'new', reason: 'test' }, { dnsNames: servingDnsNames(SVC, NS), now, validityDays: days, caValidityDays: caDays });

describe('certificate bootstrap', () => {
  test('creates the Secret (type kubernetes.io/tls + ca.crt) and patches the caBundle of every webhook with a JSON patch', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      seedWebhookConfig(fake);
      const cb = bootstrap(fake);
      const m = await cb.start();
      await cb.stop();

      assert.deepEqual(fake.calls('GET', SECRET_PATH).map((r) => r.status), [404]);
      const creates = fake.calls('POST', `/api/v1/namespaces/${NS}/secrets`);
      assert.equal(creates.length, 1);
      assert.equal(creates[0]?.status, 201);
      const body = creates[0]?.body as V1Secret;
      assert.equal(body.type, 'kubernetes.io/tls');
      assert.equal(body.metadata?.name, TLS_SECRET_NAME);
      assert.equal(body.metadata?.labels?.['app.kubernetes.io/managed-by'], 'hook-runner');
      assert.deepEqual(Object.keys(body.data ?? {}).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
      assert.deepEqual(storedMaterial(fake), m);

      const cert = new X509Certificate(m.cert);
      const ca = new X509Certificate(m.ca);
      assert.equal(cert.subjectAltName, `DNS:${SVC}, DNS:${SVC}.${NS}, DNS:${SVC}.${NS}.svc, DNS:${SVC}.${NS}.svc.cluster.local`);
      assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'serving cert signed by the CA');
      assert.ok(ca.ca, 'ca.crt is a CA');

      const patches = fake.calls('PATCH', MWC_PATH);
      assert.equal(patches.length, 1);
      assert.equal(patches[0]?.contentType, 'application/json-patch+json');
      assert.equal(patches[0]?.status, 200);
      assert.deepEqual(patches[0]?.body, [
        { op: 'test', path: '/webhooks/0/name', value: 'inject.hook-runner.dev' },
        { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: b64(m.ca) },
        { op: 'test', path: '/webhooks/1/name', value: 'second.hook-runner.dev' },
        { op: 'add', path: '/webhooks/1/clientConfig/caBundle', value: b64(m.ca) },
      ]);
      const stored = fake.get('mutatingwebhookconfigurations', MWC) as { webhooks: { clientConfig: { caBundle?: string } }[] };
      assert.deepEqual(stored.webhooks.map((w) => w.clientConfig.caBundle), [b64(m.ca), b64(m.ca)]);

      // A second replica (or a restart) reuses the Secret and leaves a correct caBundle alone.
      const again = bootstrap(fake);
      const m2 = await again.start();
      await again.stop();
      assert.deepEqual(m2, m);
      assert.equal(fake.calls('POST', `/api/v1/namespaces/${NS}/secrets`).length, 1, 'no second create');
      assert.equal(fake.calls('PUT', SECRET_PATH).length, 0, 'no update');
      assert.equal(fake.calls('PATCH', MWC_PATH).length, 1, 'no second patch');
    }));

  test('two replicas starting together: one create wins, the other gets 409, reads it and serves the same CA', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      seedWebhookConfig(fake);
      fake.intercept = barrier(2, (r) => r.method === 'GET' && r.path === SECRET_PATH);
      const [a, b] = [bootstrap(fake), bootstrap(fake)];
      const [ma, mb] = await Promise.all([a.start(), b.start()]);
      await Promise.all([a.stop(), b.stop()]);

      const creates = fake.calls('POST', `/api/v1/namespaces/${NS}/secrets`);
      assert.deepEqual(creates.map((r) => r.status).sort(), [201, 409]);
      assert.equal(fake.list('secrets', NS).length, 1);
      assert.equal(ma.ca, mb.ca);
      assert.equal(ma.cert, mb.cert);
      assert.deepEqual(storedMaterial(fake), ma);
      // the loser re-read after its 409
      assert.deepEqual(fake.calls('GET', SECRET_PATH).map((r) => r.status).sort(), [200, 404, 404]);
      const stored = fake.get('mutatingwebhookconfigurations', MWC) as { webhooks: { clientConfig: { caBundle?: string } }[] };
      assert.deepEqual(stored.webhooks.map((w) => w.clientConfig.caBundle), [b64(ma.ca), b64(ma.ca)]);
    }));

  test('renews a serving certificate near expiry with an update carrying the resourceVersion, keeping the CA (no caBundle patch)', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      const old = fresh(new Date(Date.now() - 300 * DAY), 365, 1825); // 65 of 365 days left
      const rv = seedSecret(fake, old);
      seedWebhookConfig(fake, b64(old.ca));
      const cb = bootstrap(fake);
      const m = await cb.start();
      await cb.stop();

      const puts = fake.calls('PUT', SECRET_PATH);
      assert.equal(puts.length, 1);
      assert.equal(puts[0]?.status, 200);
      assert.equal((puts[0]?.body as V1Secret).metadata?.resourceVersion, rv, 'optimistic concurrency: the update names the version it read');
      assert.equal(fake.calls('POST', `/api/v1/namespaces/${NS}/secrets`).length, 0);
      assert.equal(m.ca, old.ca, 'same CA');
      assert.equal(m.caKey, old.caKey);
      assert.notEqual(m.cert, old.cert);
      assert.ok(Date.parse(new X509Certificate(m.cert).validTo) > Date.parse(new X509Certificate(old.cert).validTo) + 200 * DAY);
      assert.deepEqual(storedMaterial(fake), m);
      assert.equal(fake.calls('PATCH', MWC_PATH).length, 0, 'caBundle already trusts the CA');
    }));

  test('two replicas renewing at once: one update wins, the other gets 409, re-reads and serves the winner\'s certificate', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      const old = fresh(new Date(Date.now() - 300 * DAY));
      seedSecret(fake, old);
      seedWebhookConfig(fake, b64(old.ca));
      fake.intercept = barrier(2, (r) => r.method === 'GET' && r.path === SECRET_PATH);
      const [a, b] = [bootstrap(fake), bootstrap(fake)];
      const [ma, mb] = await Promise.all([a.start(), b.start()]);
      await Promise.all([a.stop(), b.stop()]);
      assert.deepEqual(fake.calls('PUT', SECRET_PATH).map((r) => r.status).sort(), [200, 409]);
      assert.equal(ma.cert, mb.cert);
      assert.deepEqual(storedMaterial(fake), ma);
      assert.notEqual(ma.cert, old.cert);
    }));

  test('rotates a CA near expiry: new CA first in ca.crt, old CA kept while valid, caBundle patched with both', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      const old = fresh(new Date(Date.now() - 1500 * DAY), 365, 1825); // CA: 325 of 1825 days left
      seedSecret(fake, old);
      seedWebhookConfig(fake, b64(old.ca));
      const cb = bootstrap(fake);
      const m = await cb.start();
      await cb.stop();
      const cas = splitPemCertificates(m.ca);
      assert.equal(cas.length, 2);
      assert.notEqual(cas[0], old.ca);
      assert.equal(cas[1], splitPemCertificates(old.ca)[0]);
      assert.ok(new X509Certificate(m.cert).checkIssued(new X509Certificate(cas[0] as string)), 'serving cert from the new CA');
      const patch = fake.calls('PATCH', MWC_PATH)[0]?.body as { op: string; value?: string }[];
      assert.deepEqual(patch.filter((o) => o.op === 'add').map((o) => o.value), [b64(m.ca), b64(m.ca)]);
    }));

  test('a replica adopts the certificate another replica renewed and swaps its server\'s secure context', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      seedWebhookConfig(fake);
      let clock = Date.now();
      const a = bootstrap(fake, undefined, { now: () => new Date(clock) });
      const b = bootstrap(fake);
      const ma = await a.start();
      await b.start();
      const contexts: { cert?: unknown }[] = [];
      b.tlsProvider().attach({ setSecureContext: (o: { cert?: unknown }) => contexts.push(o) } as never);

      clock += 300 * DAY; // a's clock says the certificate is due
      assert.equal(await a.checkNow(), true);
      const renewed = a.current();
      assert.notEqual(renewed.cert, ma.cert);
      assert.equal(await b.checkNow(), true, 'b picked up the renewed certificate');
      assert.equal(b.current().cert, renewed.cert);
      assert.deepEqual(contexts.map((c) => c.cert), [renewed.cert]);
      assert.equal(await b.checkNow(), false, 'nothing new the second time');
      await Promise.all([a.stop(), b.stop()]);
    }));

  test('a missing webhook configuration is not fatal: start resolves, the caBundle is set once it appears', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      const { logger, lines } = memoryLogger();
      const cb = bootstrap(fake, logger, { checkIntervalMs: 3_600_000 });
      const m = await cb.start();
      assert.ok(lines.some((l) => l.level === 'warn' && /caBundle/.test(l.msg) && /not found/.test(String(l.err))), 'warned');
      seedWebhookConfig(fake);
      // the background retry (10 ms backoff) sets it
      await waitFor('caBundle patched', () => fake.calls('PATCH', MWC_PATH).some((r) => r.status === 200));
      await cb.stop();
      const stored = fake.get('mutatingwebhookconfigurations', MWC) as { webhooks: { clientConfig: { caBundle?: string } }[] };
      assert.deepEqual(stored.webhooks.map((w) => w.clientConfig.caBundle), [b64(m.ca), b64(m.ca)]);
    }));

  test('start gives up with a clear error when the Secret cannot be read (RBAC)', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      fake.intercept = (r) => (r.path.includes('/secrets') ? status(403, 'Forbidden', 'secrets "hook-runner-tls" is forbidden') : undefined);
      const cb = bootstrap(fake, undefined, { startTimeoutMs: 200 });
      await assert.rejects(cb.start(), (e: Error) => e instanceof CertBootstrapError && /hook-runner-system\/hook-runner-tls/.test(e.message) && /HTTP 403/.test(e.message) && /get\/create\/update/.test(e.message));
      await cb.stop();
    }));

  test('plan and caBundle helpers (pure)', () => {
    const names = servingDnsNames(SVC, NS);
    const now = new Date();
    const m = fresh(now);
    assert.deepEqual(planCertificates(m, { dnsNames: names, now }), { action: 'keep' });
    assert.equal(planCertificates(undefined, { dnsNames: names, now }).action, 'new');
    assert.equal(planCertificates(m, { dnsNames: [...names, 'extra.example'], now }).action, 'reissue');
    assert.equal(planCertificates({ ...m, key: fresh(now).key }, { dnsNames: names, now }).action, 'reissue');
    assert.equal(planCertificates({ ...m, caKey: fresh(now).caKey }, { dnsNames: names, now }).action, 'new');
    assert.equal(planCertificates(m, { dnsNames: names, now: new Date(now.getTime() + 250 * DAY) }).action, 'reissue');
    assert.equal(planCertificates(m, { dnsNames: names, now: new Date(now.getTime() + 1300 * DAY) }).action, 'rotate-ca');

    // caBundle: ours already there → nothing; another valid CA there → kept (union); ours first.
    assert.equal(desiredCaBundle(b64(m.ca), m.ca, now), undefined);
    const other = fresh(now);
    const union = Buffer.from(desiredCaBundle(b64(other.ca), m.ca, now) as string, 'base64').toString();
    assert.deepEqual(splitPemCertificates(union), [...splitPemCertificates(m.ca), ...splitPemCertificates(other.ca)]);
    assert.equal(desiredCaBundle(b64(m.ca + other.ca), m.ca, now), undefined);
    const ops = caBundlePatch({ webhooks: [{ name: 'a', clientConfig: { caBundle: b64(m.ca) } }, { name: 'b', clientConfig: {} }] } as never, m.ca, now);
    assert.deepEqual(ops, [
      { op: 'test', path: '/webhooks/1/name', value: 'b' },
      { op: 'add', path: '/webhooks/1/clientConfig/caBundle', value: b64(m.ca) },
    ]);
  });
});

describe('sidecar mode auto', () => {
  test('modeForVersion: ≥ 1.29 native, else container; reads +, v-prefixes and vendor suffixes', () => {
    const table: [Record<string, string>, 'native' | 'container'][] = [
      [{ major: '1', minor: '29', gitVersion: 'v1.29.0' }, 'native'],
      [{ major: '1', minor: '30', gitVersion: 'v1.30.2' }, 'native'],
      [{ major: '1', minor: '29+', gitVersion: 'v1.29.4-gke.1043002' }, 'native'],
      [{ major: '1', minor: '28+', gitVersion: 'v1.28.9-eks-036c24b' }, 'container'],
      [{ major: '1', minor: '28', gitVersion: 'v1.28.15' }, 'container'],
      [{ major: '1', minor: '26', gitVersion: 'v1.26.0' }, 'container'],
      [{ major: '', minor: '', gitVersion: 'v1.30.2-eks-1552ad0' }, 'native'],
      [{ gitVersion: 'v1.29.3+k3s1' }, 'native'],
      [{ gitVersion: 'v1.27.3+k3s1' }, 'container'],
      [{ major: '2', minor: '0' }, 'native'],
      [{ major: '0', minor: '99' }, 'container'],
      [{ major: 'x', minor: 'y', gitVersion: 'unknown' }, 'container'],
      [{}, 'container'],
    ];
    for (const [v, want] of table) assert.equal(modeForVersion(v), want, JSON.stringify(v));
    assert.deepEqual(parseKubeVersion({ major: '1', minor: '31+' }), { major: 1, minor: 31 });
    assert.equal(parseKubeVersion({ gitVersion: 'garbage' }), undefined);
  });

  test('auto asks /version once; explicit modes ask nothing; a failure falls back to container with one warning', () =>
    withFake(async (fake) => {
      const { version } = makeClients(fake.kubeConfig());
      const run = async (configured: 'auto' | 'native' | 'container') => {
        const { logger, lines } = memoryLogger();
        const mode = await detectSidecarMode({ configured, version, logger });
        return { mode, warnings: lines.filter((l) => l.level === 'warn') };
      };
      fake.version = { major: '1', minor: '30', gitVersion: 'v1.30.2' };
      assert.equal((await run('auto')).mode, 'native');
      assert.equal(fake.calls('GET', '/version').length, 1);
      fake.version = { major: '1', minor: '28+', gitVersion: 'v1.28.9-eks-036c24b' };
      assert.equal((await run('auto')).mode, 'container');
      assert.equal((await run('native')).mode, 'native');
      assert.equal((await run('container')).mode, 'container');
      assert.equal(fake.calls('GET', '/version').length, 2, 'explicit modes make no call');

      fake.version = 503;
      const failed = await run('auto');
      assert.equal(failed.mode, 'container');
      assert.equal(failed.warnings.length, 1);
      assert.match(String(failed.warnings[0]?.err), /503/);
      assert.equal(failed.warnings[0]?.resolved, 'container');
    }));
});

describe('namespace controller', () => {
  const ENABLED = { 'hook-runner.dev/injection': 'enabled' };
  const controller = (fake: FakeApiServer, logger = memoryLogger().logger) => {
    const c = makeClients(fake.kubeConfig());
    return new NamespaceController({ kubeConfig: c.kc, core: c.core, rbac: c.rbac, logger, retryBaseMs: 10, retryMaxMs: 50, informerRetryBaseMs: 10, informerRetryMaxMs: 50, resyncIntervalMs: 0 });
  };
  const idle = (c: NamespaceController) => waitFor('controller idle', () => c.idle());

  test('creates the RoleBinding when the label appears, deletes it when it goes; podSecurityLevel follows the labels', () =>
    withFake(async (fake) => {
      fake.setNamespace('team-a', { ...ENABLED, 'pod-security.kubernetes.io/enforce': 'baseline' });
      fake.setNamespace('team-b');
      const { logger, lines } = memoryLogger();
      const c = controller(fake, logger);
      try {
        assert.equal(await c.start(5000), true);
        assert.equal(c.podSecurityLevel('team-a'), 'baseline');
        assert.equal(c.podSecurityLevel('team-b'), undefined);
        assert.equal(c.podSecurityLevel('no-such-namespace'), undefined);

        await waitFor('RoleBinding in team-a', () => fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-a'));
        const post = fake.calls('POST', RB_PATH('team-a'));
        assert.equal(post.length, 1);
        assert.equal(post[0]?.status, 201);
        assert.deepEqual(post[0]?.body, JSON.parse(JSON.stringify(sidecarRoleBinding('team-a'))));
        const rb = post[0]?.body as ReturnType<typeof sidecarRoleBinding>;
        assert.deepEqual(rb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'hook-runner-sidecar' });
        assert.deepEqual(rb.subjects, [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:serviceaccounts:team-a' }]);
        assert.equal(rb.metadata?.labels?.['app.kubernetes.io/managed-by'], 'hook-runner');
        await idle(c);
        assert.equal(fake.calls('POST', RB_PATH('team-b')).length, 0, 'no binding in an unlabelled namespace');

        // label changes reach the cache
        fake.setNamespace('team-a', { ...ENABLED, 'pod-security.kubernetes.io/enforce': 'restricted' });
        await waitFor('restricted', () => c.podSecurityLevel('team-a') === 'restricted');
        fake.setNamespace('team-b', { 'pod-security.kubernetes.io/enforce': 'privileged' });
        await waitFor('privileged', () => c.podSecurityLevel('team-b') === 'privileged');

        // unlabel → delete, with a precondition on the binding we read
        const uid = fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-a')?.metadata?.uid;
        fake.setNamespace('team-a', {});
        await waitFor('RoleBinding gone', () => !fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-a'));
        const del = fake.calls('DELETE', `${RB_PATH('team-a')}/${SIDECAR_ROLEBINDING_NAME}`);
        assert.equal(del.length, 1);
        assert.equal(del[0]?.status, 200);
        assert.equal((del[0]?.body as { preconditions?: { uid?: string } }).preconditions?.uid, uid);
        assert.equal(c.podSecurityLevel('team-a'), undefined);
        assert.ok(lines.some((l) => l.namespace === 'team-a' && /created/.test(l.msg)));
        assert.ok(lines.some((l) => l.namespace === 'team-a' && /deleted/.test(l.msg)));

        // label back → created again
        fake.setNamespace('team-a', ENABLED);
        await waitFor('RoleBinding back', () => fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-a'));
      } finally {
        await c.stop();
      }
    }));

  test('never deletes or replaces a RoleBinding of the same name that it does not manage', () =>
    withFake(async (fake) => {
      fake.setNamespace('team-c');
      const foreign = { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: SIDECAR_ROLEBINDING_NAME, namespace: 'team-c' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' }, subjects: [{ kind: 'User', name: 'alice', apiGroup: 'rbac.authorization.k8s.io' }] };
      fake.put('rolebindings', foreign);
      const { logger, lines } = memoryLogger();
      const c = controller(fake, logger);
      try {
        await c.start(5000);
        fake.setNamespace('team-c', ENABLED);
        await waitFor('warning about the foreign binding', () => lines.some((l) => l.level === 'warn' && l.namespace === 'team-c' && /not managed by hook-runner/.test(l.msg)));
        fake.setNamespace('team-c', {});
        await waitFor('unlabel seen', () => fake.calls('GET', `${RB_PATH('team-c')}/${SIDECAR_ROLEBINDING_NAME}`).length >= 2);
        await idle(c);
        assert.equal(fake.requests.filter((r) => r.method === 'DELETE').length, 0);
        assert.equal(fake.calls('POST', RB_PATH('team-c')).length, 0);
        assert.deepEqual(fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-c')?.roleRef, foreign.roleRef);
      } finally {
        await c.stop();
      }
    }));

  test('resync is idempotent, a changed binding of ours is recreated, errors are retried with the namespace logged', () =>
    withFake(async (fake) => {
      fake.setNamespace('team-d', ENABLED);
      let failures = 1;
      fake.intercept = (r) => (r.method === 'POST' && r.path === RB_PATH('team-d') && failures-- > 0 ? status(500, 'InternalError', 'etcd hiccup') : undefined);
      const { logger, lines } = memoryLogger();
      const c = controller(fake, logger);
      try {
        await c.start(5000);
        await waitFor('RoleBinding after a retry', () => fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-d'));
        assert.deepEqual(fake.calls('POST', RB_PATH('team-d')).map((r) => r.status), [500, 201]);
        const warn = lines.find((l) => l.level === 'warn' && l.namespace === 'team-d');
        assert.ok(warn, 'failure logged with the namespace');
        assert.match(String(warn.err), /500/);
        await idle(c);

        const writes = () => fake.requests.filter((r) => r.method !== 'GET').length;
        const before = writes();
        c.resync();
        c.resync();
        await idle(c);
        assert.equal(writes(), before, 'resync of a correct binding writes nothing');

        // someone edits our binding's subjects: the next resync puts it right (delete + create, roleRef being immutable)
        const rb = fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-d') as Record<string, unknown>;
        fake.put('rolebindings', { ...rb, subjects: [{ kind: 'User', name: 'mallory', apiGroup: 'rbac.authorization.k8s.io' }] });
        c.resync();
        await waitFor('binding repaired', () => (fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-d')?.subjects as { name: string }[] | undefined)?.[0]?.name === 'system:serviceaccounts:team-d');
      } finally {
        await c.stop();
      }
    }));

  test('two replicas converge on one binding; a dropped watch is re-established', () =>
    withFake(async (fake) => {
      fake.setNamespace('team-e');
      fake.intercept = barrier(2, (r) => r.method === 'POST' && r.path === RB_PATH('team-e'));
      const [c1, c2] = [controller(fake), controller(fake)];
      try {
        await Promise.all([c1.start(5000), c2.start(5000)]);
        fake.setNamespace('team-e', ENABLED);
        await waitFor('both tried', () => fake.calls('POST', RB_PATH('team-e')).filter((r) => r.status).length === 2);
        await Promise.all([idle(c1), idle(c2)]);
        assert.deepEqual(fake.calls('POST', RB_PATH('team-e')).map((r) => r.status).sort(), [201, 409]);
        assert.equal(fake.list('rolebindings', 'team-e').length, 1);

        fake.intercept = undefined;
        await waitFor('watches open', () => fake.watchCount() === 2);
        fake.dropWatches();
        await waitFor('watches re-opened', () => fake.watchCount() === 2);
        fake.setNamespace('team-f', ENABLED);
        await waitFor('RoleBinding in team-f', () => fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-f'));
      } finally {
        await Promise.all([c1.stop(), c2.stop()]);
      }
    }));

  test('after 410 Gone it lists again (and sees a namespace deleted meanwhile); stop() returns even while a watch waits for its response', () =>
    withFake(async (fake) => {
      fake.setNamespace('team-g', { 'pod-security.kubernetes.io/enforce': 'baseline' });
      const c = controller(fake);
      try {
        await c.start(5000);
        assert.equal(c.podSecurityLevel('team-g'), 'baseline');
        await waitFor('watch open', () => fake.watchCount() === 1);
        const lists = () => fake.requests.filter((r) => r.method === 'GET' && r.path === '/api/v1/namespaces' && r.query.watch === undefined).length;
        assert.equal(lists(), 1);
        fake.holdWatchHeaders = true;
        // the watch misses the deletion; only a new list can tell
        fake.remove('namespaces', 'team-g', undefined, { silent: true });
        fake.expireWatches();
        await waitFor('listed again', () => lists() === 2);
        await waitFor('deleted namespace forgotten', () => c.podSecurityLevel('team-g') === undefined);
        await waitFor('new watch pending', () => fake.watchCount() === 1);
      } finally {
        const stopped = await Promise.race([c.stop().then(() => true), new Promise((r) => setTimeout(() => r(false), 5000).unref())]);
        assert.equal(stopped, true, 'stop() returned');
      }
    }));

  test('podSecurityLevelOf', () => {
    assert.equal(podSecurityLevelOf(undefined), undefined);
    assert.equal(podSecurityLevelOf({}), undefined);
    assert.equal(podSecurityLevelOf({ 'pod-security.kubernetes.io/enforce': 'baseline' }), 'baseline');
    assert.equal(podSecurityLevelOf({ 'pod-security.kubernetes.io/enforce': 'privileged' }), 'privileged');
    assert.equal(podSecurityLevelOf({ 'pod-security.kubernetes.io/enforce': 'Restricted!' }), 'restricted', 'invalid levels are evaluated as restricted');
    assert.equal(podSecurityLevelOf({ 'pod-security.kubernetes.io/warn': 'restricted' }), undefined, 'only enforce counts');
  });
});

describe('startInCluster', () => {
  test('resolves the mode, serves the Secret\'s certificate (verifiable with the caBundle by the Service name), answers podSecurityLevel', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      fake.setNamespace('apps', { 'hook-runner.dev/injection': 'enabled', 'pod-security.kubernetes.io/enforce': 'baseline' });
      seedWebhookConfig(fake);
      fake.version = { major: '1', minor: '28', gitVersion: 'v1.28.3' };
      const { logger } = memoryLogger();
      const cluster = await startInCluster({
        logger,
        config: defaultConfig('0.0.0-test'),
        namespace: NS,
        serviceName: SVC,
        webhookConfigName: MWC,
        selfSigned: true,
        kubeConfig: fake.kubeConfig(),
        cert: { retryBaseMs: 10 },
        namespaces: { retryBaseMs: 10, resyncIntervalMs: 0 },
      });
      let server: https.Server | undefined;
      try {
        assert.equal(cluster.mode, 'container');
        assert.equal(cluster.synced(), true);
        assert.equal(cluster.podSecurityLevel('apps'), 'baseline');
        assert.equal(cluster.podSecurityLevel(NS), undefined);
        const tls = cluster.tls;
        assert.ok(tls && cluster.tlsProvider);
        assert.deepEqual(storedMaterial(fake).cert, tls.cert);

        const provider = cluster.tlsProvider;
        server = https.createServer(provider.serverOptions(), (_req, res) => res.end('ok'));
        provider.attach(server);
        await new Promise<void>((r) => (server as https.Server).listen(0, '127.0.0.1', () => r()));
        const peer = await peerCertificate({ port: (server.address() as AddressInfo).port, ca: tls.ca, servername: `${SVC}.${NS}.svc` });
        assert.equal(peer.serialNumber.toLowerCase(), new X509Certificate(tls.cert).serialNumber.toLowerCase());
        await waitFor('RoleBinding in apps', () => fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'apps'));
      } finally {
        server?.close();
        await cluster.stop();
      }
    }));

  test('rejects when no certificate can be had, and leaves nothing running (the namespace watch is closed)', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      fake.intercept = (r) => (r.path.includes('/secrets') ? status(403, 'Forbidden', 'secrets is forbidden') : undefined);
      await assert.rejects(
        startInCluster({ logger: memoryLogger().logger, config: defaultConfig('0.0.0-test'), namespace: NS, serviceName: SVC, selfSigned: true, kubeConfig: fake.kubeConfig(), cert: { retryBaseMs: 10, startTimeoutMs: 100 }, namespaces: { resyncIntervalMs: 0 } }),
        CertBootstrapError,
      );
      await waitFor('namespace watch closed', () => fake.watchCount() === 0);
      assert.equal(inClusterEnvironment({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }), true);
      assert.equal(inClusterEnvironment({}), false);
    }));
});
