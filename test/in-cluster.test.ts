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
import { makeClients } from '../webhook/cluster/kube.js';
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
} from '../webhook/cluster/cert-bootstrap.js';
import { issueServingCert, staticTlsProvider, type TlsProvider } from '../webhook/cluster/tls.js';
import { assertAllOk, goCertCheck, type CertChecks, type CheckResult } from './go/certcheck.js';
import { legacyGoUnparseableBundle } from './go/fixtures.js';
import { detectSidecarMode } from '../webhook/cluster/detect-sidecar-mode.js';
import { modeForVersion, parseKubeVersion } from '../webhook/core/sidecar-mode.js';
import { NamespaceController, SIDECAR_ROLEBINDING_NAME, podSecurityLevelOf, sidecarRoleBinding } from '../webhook/cluster/namespace-controller.js';
import { startInCluster } from '../webhook/cluster/in-cluster.js';
import { inClusterEnvironment } from '../webhook/cluster/in-cluster-env.js';
import { defaultConfig } from '../webhook/core/config.js';

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

/** Puts the configuration with two webhook entries; returns its resourceVersion. */
function seedWebhookConfig(fake: FakeApiServer, caBundle?: string): string {
  const wh = (name: string) => ({
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    clientConfig: { service: { name: SVC, namespace: NS, path: '/mutate', port: 443 }, ...(caBundle ? { caBundle } : {}) },
  });
  return fake.put('mutatingwebhookconfigurations', {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: MWC },
    webhooks: [wh('inject.hook-runner.dev'), wh('second.hook-runner.dev')],
  }).metadata?.resourceVersion as string;
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
  const s = fake.put('secrets', {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: TLS_SECRET_NAME, namespace: NS, labels: { 'app.kubernetes.io/managed-by': 'hook-runner' } },
    type: 'kubernetes.io/tls',
    data: tlsSecretData(m),
  });
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
const fresh = (now = new Date(), days = 365, caDays = 1825) =>
  applyCertPlan(undefined, { action: 'new', reason: 'test' }, { dnsNames: servingDnsNames(SVC, NS), now, validityDays: days, caValidityDays: caDays });

/** The certificates in each webhook entry's caBundle. */
function caBundles(fake: FakeApiServer): string[][] {
  const cfg = fake.get('mutatingwebhookconfigurations', MWC) as { webhooks: { clientConfig: { caBundle?: string } }[] };
  return cfg.webhooks.map((w) => splitPemCertificates(Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8')));
}

/** An HTTPS server on 127.0.0.1:0 serving what `provider` serves (a webhook pod, for the handshake). */
async function serveTls(provider: TlsProvider): Promise<{ addr: string; close: () => Promise<void> }> {
  const server = https.createServer(provider.serverOptions(), (_req, res) => res.end('ok'));
  provider.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    addr: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * What the API server and the kubelet do with the state in the fake, done by Go: parse the
 * Secret's CA and serving certificate and every caBundle (all of it: one bad block fails the
 * API server's call), verify the serving chain against the Secret's CA for every Service name and
 * against the caBundle for `<svc>.<ns>.svc`, and a crypto/tls handshake to each pod by that name.
 */
async function goCheckState(check: (c: CertChecks) => Promise<CheckResult[]>, fake: FakeApiServer, label: string, pods: { name: string; addr: string }[] = []): Promise<CheckResult[]> {
  const m = storedMaterial(fake);
  const bundles = caBundles(fake).map((b) => b.join(''));
  const svc = `${SVC}.${NS}.svc`;
  const results = await check({
    parse: [
      { name: 'Secret ca.crt', pem: m.ca, role: 'ca' },
      { name: 'Secret tls.crt', pem: m.cert, role: 'serving' },
      ...bundles.map((pem, i) => ({ name: `caBundle of webhooks[${i}]`, pem, role: 'ca' as const })),
    ],
    verify: [
      { name: 'tls.crt by ca.crt', roots: m.ca, leaf: m.cert, dnsNames: servingDnsNames(SVC, NS) },
      ...bundles.map((roots, i) => ({ name: `tls.crt by caBundle of webhooks[${i}]`, roots, leaf: m.cert, dnsNames: [svc] })),
    ],
    handshake: pods.map((p) => ({ name: p.name, addr: p.addr, roots: bundles[0] ?? '', serverName: svc })),
  });
  assertAllOk(results, label);
  return results;
}

describe('certificate bootstrap', () => {
  test('creates the Secret (type kubernetes.io/tls + ca.crt) and patches the caBundle of every webhook with a JSON patch', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      const mwcRv = seedWebhookConfig(fake);
      const cb = bootstrap(fake);
      const m = await cb.start();
      await cb.stop();

      assert.deepEqual(
        fake.calls('GET', SECRET_PATH).map((r) => r.status),
        [404],
      );
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
        { op: 'test', path: '/metadata/resourceVersion', value: mwcRv },
        { op: 'test', path: '/webhooks/0/name', value: 'inject.hook-runner.dev' },
        { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: b64(m.ca) },
        { op: 'test', path: '/webhooks/1/name', value: 'second.hook-runner.dev' },
        { op: 'add', path: '/webhooks/1/clientConfig/caBundle', value: b64(m.ca) },
      ]);
      const stored = fake.get('mutatingwebhookconfigurations', MWC) as { webhooks: { clientConfig: { caBundle?: string } }[] };
      assert.deepEqual(
        stored.webhooks.map((w) => w.clientConfig.caBundle),
        [b64(m.ca), b64(m.ca)],
      );

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
      assert.deepEqual(
        fake
          .calls('GET', SECRET_PATH)
          .map((r) => r.status)
          .sort(),
        [200, 404, 404],
      );
      const stored = fake.get('mutatingwebhookconfigurations', MWC) as { webhooks: { clientConfig: { caBundle?: string } }[] };
      assert.deepEqual(
        stored.webhooks.map((w) => w.clientConfig.caBundle),
        [b64(ma.ca), b64(ma.ca)],
      );
    }));

  test('renews a serving certificate near expiry with an update carrying the resourceVersion, keeping the CA (no caBundle patch); Go reads the renewed one', (t) =>
    withFake(async (fake) => {
      const check = goCertCheck(t);
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
      assert.equal((puts[0]!.body as V1Secret).metadata?.resourceVersion, rv, 'optimistic concurrency: the update names the version it read');
      assert.equal(fake.calls('POST', `/api/v1/namespaces/${NS}/secrets`).length, 0);
      assert.equal(m.ca, old.ca, 'same CA');
      assert.equal(m.caKey, old.caKey);
      assert.notEqual(m.cert, old.cert);
      assert.ok(Date.parse(new X509Certificate(m.cert).validTo) > Date.parse(new X509Certificate(old.cert).validTo) + 200 * DAY);
      assert.deepEqual(storedMaterial(fake), m);
      assert.equal(fake.calls('PATCH', MWC_PATH).length, 0, 'caBundle already trusts the CA');
      if (check) await goCheckState(check, fake, 'renewed');
    }));

  test("two replicas renewing at once: one update wins, the other gets 409, re-reads and serves the winner's certificate", () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      const old = fresh(new Date(Date.now() - 300 * DAY));
      seedSecret(fake, old);
      seedWebhookConfig(fake, b64(old.ca));
      fake.intercept = barrier(2, (r) => r.method === 'GET' && r.path === SECRET_PATH);
      const [a, b] = [bootstrap(fake), bootstrap(fake)];
      const [ma, mb] = await Promise.all([a.start(), b.start()]);
      await Promise.all([a.stop(), b.stop()]);
      assert.deepEqual(
        fake
          .calls('PUT', SECRET_PATH)
          .map((r) => r.status)
          .sort(),
        [200, 409],
      );
      assert.equal(ma.cert, mb.cert);
      assert.deepEqual(storedMaterial(fake), ma);
      assert.notEqual(ma.cert, old.cert);
    }));

  test('rotates a CA near expiry: ca.crt is the new CA alone, the caBundle holds new + previous during the overlap, then the new one alone; Go verifies both pods meanwhile', (t) =>
    withFake(async (fake) => {
      const check = goCertCheck(t);
      fake.setNamespace(NS);
      const old = fresh(new Date(Date.now() - 1500 * DAY), 365, 1825); // CA: 325 of 1825 days left
      seedSecret(fake, old);
      seedWebhookConfig(fake, b64(old.ca));
      let clock = Date.now();
      const cb = bootstrap(fake, undefined, { now: () => new Date(clock) });
      // a pod that has not re-read the Secret yet, serving a (still valid) certificate of the old CA
      const oldPod = await serveTls(staticTlsProvider(issueServingCert({ ca: { cert: old.ca, key: old.caKey }, dnsNames: servingDnsNames(SVC, NS), validityDays: 30 })));
      const m = await cb.start();
      const newPod = await serveTls(cb.tlsProvider());
      try {
        assert.deepEqual(splitPemCertificates(m.ca), [m.ca], 'one CA in the Secret');
        assert.notEqual(m.ca, old.ca);
        assert.ok(new X509Certificate(m.cert).checkIssued(new X509Certificate(m.ca)), 'serving cert from the new CA');
        assert.deepEqual(storedMaterial(fake), m);
        assert.deepEqual(
          caBundles(fake),
          [
            [m.ca, old.ca],
            [m.ca, old.ca],
          ],
          'current + previous',
        );
        if (check)
          await goCheckState(check, fake, 'mid-rotation', [
            { name: 'new pod', addr: newPod.addr },
            { name: 'old pod (previous CA)', addr: oldPod.addr },
          ]);

        clock += 3 * 3600_000; // past the overlap (2 check intervals of 1 h)
        await cb.checkNow();
        assert.deepEqual(caBundles(fake), [[m.ca], [m.ca]], 'previous CA gone after the overlap');
        if (check) await goCheckState(check, fake, 'after the rotation', [{ name: 'new pod', addr: newPod.addr }]);
      } finally {
        await cb.stop();
        await Promise.all([oldPod.close(), newPod.close()]);
      }
    }));

  test("a replica adopts the certificate another replica renewed and swaps its server's secure context", () =>
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
      assert.deepEqual(
        contexts.map((c) => c.cert),
        [renewed.cert],
      );
      assert.equal(await b.checkNow(), false, 'nothing new the second time');
      await Promise.all([a.stop(), b.stop()]);
    }));

  test('a missing webhook configuration is not fatal: start resolves, the caBundle is set once it appears', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      const { logger, lines } = memoryLogger();
      const cb = bootstrap(fake, logger, { checkIntervalMs: 3_600_000 });
      const m = await cb.start();
      assert.ok(
        lines.some((l) => l.level === 'warn' && /caBundle/.test(l.msg) && /not found/.test(String(l.err))),
        'warned',
      );
      seedWebhookConfig(fake);
      // the background retry (10 ms backoff) sets it
      await waitFor('caBundle patched', () => fake.calls('PATCH', MWC_PATH).some((r) => r.status === 200));
      await cb.stop();
      const stored = fake.get('mutatingwebhookconfigurations', MWC) as { webhooks: { clientConfig: { caBundle?: string } }[] };
      assert.deepEqual(
        stored.webhooks.map((w) => w.clientConfig.caBundle),
        [b64(m.ca), b64(m.ca)],
      );
    }));

  test('start gives up with a clear error when the Secret cannot be read (RBAC)', () =>
    withFake(async (fake) => {
      fake.setNamespace(NS);
      fake.intercept = (r) => (r.path.includes('/secrets') ? status(403, 'Forbidden', 'secrets "hook-runner-tls" is forbidden') : undefined);
      const cb = bootstrap(fake, undefined, { startTimeoutMs: 200 });
      await assert.rejects(
        cb.start(),
        (e: Error) => e instanceof CertBootstrapError && /hook-runner-system\/hook-runner-tls/.test(e.message) && /HTTP 403/.test(e.message) && /get\/create\/update/.test(e.message),
      );
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

    assert.deepEqual(planCertificates({ ...m, ca: m.ca + fresh(now).ca }, { dnsNames: names, now }).action, 'tidy');

    // caBundle (overlap 2 h): ours alone → nothing; a CA made within the overlap is kept as the
    // previous one (either order is fine); after the overlap only ours.
    const H = 3600_000;
    const decoded = (b?: string) => splitPemCertificates(Buffer.from(b ?? '', 'base64').toString());
    assert.equal(desiredCaBundle(b64(m.ca), m.ca, now, 2 * H), undefined);
    const other = fresh(now);
    assert.deepEqual(decoded(desiredCaBundle(b64(other.ca), m.ca, now, 2 * H)), [m.ca, other.ca]);
    assert.equal(desiredCaBundle(b64(other.ca + m.ca), m.ca, now, 2 * H), undefined);
    assert.deepEqual(decoded(desiredCaBundle(b64(m.ca + other.ca), m.ca, new Date(now.getTime() + 3 * H), 2 * H)), [m.ca]);
    assert.deepEqual(decoded(desiredCaBundle(b64(m.ca + m.ca), m.ca, now, 2 * H)), [m.ca], 'duplicates go');
    assert.deepEqual(decoded(desiredCaBundle(b64(`junk\n${m.ca}`), m.ca, now, 2 * H)), [m.ca], 'text around the PEM goes');
    const ops = caBundlePatch(
      {
        metadata: { resourceVersion: '42' },
        webhooks: [
          { name: 'a', clientConfig: { caBundle: b64(m.ca) } },
          { name: 'b', clientConfig: {} },
        ],
      } as never,
      m.ca,
      now,
      2 * H,
    );
    assert.deepEqual(ops, [
      { op: 'test', path: '/metadata/resourceVersion', value: '42' },
      { op: 'test', path: '/webhooks/1/name', value: 'b' },
      { op: 'add', path: '/webhooks/1/clientConfig/caBundle', value: b64(m.ca) },
    ]);
  });
});

describe('certificate convergence from any starting state (issue 10)', () => {
  const H = 3600_000;
  const svcNames = () => servingDnsNames(SVC, NS);
  const secretWrites = (fake: FakeApiServer) => fake.requests.filter((r) => r.path.startsWith(`/api/v1/namespaces/${NS}/secrets`) && r.method !== 'GET');

  test('Secret deleted while old pods run: the new pod starts (no restart loop) with a new CA; old and new pods both verify against the caBundle; old pods adopt; the previous CA goes after the overlap', (t) =>
    withFake(async (fake) => {
      const check = goCertCheck(t);
      fake.setNamespace(NS);
      seedWebhookConfig(fake);
      let clock = Date.now();
      const now = () => new Date(clock);
      const oldPod = bootstrap(fake, undefined, { now });
      const m1 = await oldPod.start();
      const oldServer = await serveTls(oldPod.tlsProvider());
      fake.remove('secrets', TLS_SECRET_NAME, NS);

      const newPod = bootstrap(fake, undefined, { now });
      const m2 = await newPod.start(); // a rejection here is the restart loop
      const newServer = await serveTls(newPod.tlsProvider());
      try {
        assert.notEqual(m2.ca, m1.ca, 'a new CA');
        assert.deepEqual(splitPemCertificates(storedMaterial(fake).ca), [m2.ca], 'one CA in the Secret');
        assert.deepEqual(
          caBundles(fake),
          [
            [m2.ca, m1.ca],
            [m2.ca, m1.ca],
          ],
          'new CA + the one the old pods still serve',
        );
        if (check)
          await goCheckState(check, fake, 're-bootstrap', [
            { name: 'old pod', addr: oldServer.addr },
            { name: 'new pod', addr: newServer.addr },
          ]);

        // the old pod's hourly check adopts the Secret's certificate; the caBundle is already right
        const patches = fake.calls('PATCH', MWC_PATH).length;
        assert.equal(await oldPod.checkNow(), true);
        assert.equal(oldPod.current().cert, m2.cert);
        assert.equal(fake.calls('PATCH', MWC_PATH).length, patches, 'no caBundle flip-flop');
        if (check) {
          const r = await goCheckState(check, fake, 'old pod adopted', [{ name: 'old pod', addr: oldServer.addr }]);
          assert.match(
            String(r.find((x) => x.check === 'handshake')?.detail),
            new RegExp(`serial 0*${new X509Certificate(m2.cert).serialNumber}$`, 'i'),
            'the old pod serves the new certificate (no restart)',
          );
        }
        // a restart of the new pod keeps everything
        const restarted = bootstrap(fake, undefined, { now });
        assert.deepEqual(await restarted.start(), m2);
        await restarted.stop();

        clock += 3 * H;
        await Promise.all([oldPod.checkNow(), newPod.checkNow()]);
        assert.deepEqual(caBundles(fake), [[m2.ca], [m2.ca]], 'previous CA gone after the overlap');
        assert.equal(secretWrites(fake).length, 2, 'two creates (one per bootstrap), nothing else');
      } finally {
        await Promise.all([oldPod.stop(), newPod.stop()]);
        await Promise.all([oldServer.close(), newServer.close()]);
      }
    }));

  test('CA expired (and the serving certificate with it): a new CA replaces it; the expired CA leaves the caBundle at once', (t) =>
    withFake(async (fake) => {
      const check = goCertCheck(t);
      fake.setNamespace(NS);
      const old = fresh(new Date(Date.now() - 400 * DAY), 30, 30);
      seedSecret(fake, old);
      seedWebhookConfig(fake, b64(old.ca));
      const cb = bootstrap(fake);
      const m = await cb.start();
      await cb.stop();
      assert.notEqual(m.ca, old.ca);
      assert.deepEqual(storedMaterial(fake), m);
      assert.deepEqual(splitPemCertificates(m.ca), [m.ca]);
      assert.deepEqual(caBundles(fake), [[m.ca], [m.ca]]);
      if (check) await goCheckState(check, fake, 'after an expired CA');
    }));

  test('serving certificate expired, CA fine: re-issued by the same CA, the caBundle untouched', (t) =>
    withFake(async (fake) => {
      const check = goCertCheck(t);
      fake.setNamespace(NS);
      const old = fresh(new Date(Date.now() - 400 * DAY), 365, 1825);
      assert.ok(Date.parse(new X509Certificate(old.cert).validTo) < Date.now(), 'the seeded serving certificate has expired');
      seedSecret(fake, old);
      seedWebhookConfig(fake, b64(old.ca));
      const cb = bootstrap(fake);
      const m = await cb.start();
      await cb.stop();
      assert.equal(m.ca, old.ca);
      assert.notEqual(m.cert, old.cert);
      assert.equal(fake.calls('PATCH', MWC_PATH).length, 0);
      if (check) await goCheckState(check, fake, 'after an expired serving certificate');
    }));

  test('caBundle holding junk, 3 old CAs, a certificate Go cannot parse, duplicates: replaced by the current CA (+ the newest other while the current one is fresh)', (t) =>
    withFake(async (fake) => {
      const check = goCertCheck(t);
      fake.setNamespace(NS);
      const current = fresh(new Date(Date.now() - 100 * DAY)); // a steady Secret, made 100 days ago
      seedSecret(fake, current);
      const olds = [300, 200, 150].map((d) => fresh(new Date(Date.now() - d * DAY)).ca);
      const legacy = legacyGoUnparseableBundle(svcNames()).ca.cert;
      const junk = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
      const states = [`not PEM at all`, olds.join(''), `${current.ca}${legacy}`, `${current.ca}${current.ca}${junk}`];
      for (const state of states) {
        seedWebhookConfig(fake, b64(state));
        const cb = bootstrap(fake);
        await cb.start();
        await cb.stop();
        assert.deepEqual(caBundles(fake), [[current.ca], [current.ca]], `from ${state.slice(0, 40)}`);
        if (check) await goCheckState(check, fake, `from ${state.slice(0, 40)}`);
      }
      assert.equal(secretWrites(fake).length, 0, 'the Secret was fine throughout');

      // The same junk with a fresh CA (the Secret was just made): the newest valid old CA stays as the previous one.
      fake.remove('secrets', TLS_SECRET_NAME, NS);
      seedWebhookConfig(fake, b64(`junk\n${olds.join('')}${legacy}`));
      const cb = bootstrap(fake);
      const m = await cb.start();
      await cb.stop();
      assert.deepEqual(caBundles(fake), [
        [m.ca, olds[2]],
        [m.ca, olds[2]],
      ]);
      if (check) await goCheckState(check, fake, 'fresh CA over junk');
    }));

  test('a Secret left by a version Go could not read (PrintableString CN with @), or with 3 CAs in ca.crt: converges to one Go-readable CA', (t) =>
    withFake(async (fake) => {
      const check = goCertCheck(t);
      fake.setNamespace(NS);
      const legacy = legacyGoUnparseableBundle(svcNames());
      seedSecret(fake, { cert: legacy.serving.cert, key: legacy.serving.key, ca: legacy.ca.cert, caKey: legacy.ca.key });
      seedWebhookConfig(fake, b64(legacy.ca.cert));
      const { logger, lines } = memoryLogger();
      const cb = bootstrap(fake, logger);
      const m = await cb.start();
      await cb.stop();
      assert.notEqual(m.ca, legacy.ca.cert);
      assert.deepEqual(caBundles(fake), [[m.ca], [m.ca]], 'the unreadable CA is not kept as the previous one');
      assert.ok(
        lines.some((l) => l.action === 'new' && /Go's crypto\/x509 .* cannot read the CA: .*PrintableString/.test(String(l.reason))),
        'the reason is logged',
      );
      if (check) await goCheckState(check, fake, 'after a legacy Secret');

      const three = [fresh().ca, fresh().ca];
      seedSecret(fake, { ...m, ca: m.ca + three.join('') });
      const again = bootstrap(fake);
      assert.equal((await again.start()).cert, m.cert, 'same serving certificate');
      await again.stop();
      assert.deepEqual(storedMaterial(fake), m, 'ca.crt trimmed to the current CA');
      if (check) await goCheckState(check, fake, 'after trimming ca.crt');
    }));

  test('two replicas racing from a broken state (legacy Secret, junk caBundle): one Secret write wins, both serve it, one caBundle patch, Go verifies both', (t) =>
    withFake(async (fake) => {
      const check = goCertCheck(t);
      fake.setNamespace(NS);
      const legacy = legacyGoUnparseableBundle(svcNames());
      seedSecret(fake, { cert: legacy.serving.cert, key: legacy.serving.key, ca: legacy.ca.cert, caKey: legacy.ca.key });
      const older = fresh(new Date(Date.now() - 200 * DAY)).ca;
      seedWebhookConfig(fake, b64(`junk${legacy.ca.cert}${older}`));
      const gates = [barrier(2, (r) => r.method === 'GET' && r.path === SECRET_PATH), barrier(2, (r) => r.method === 'GET' && r.path === MWC_PATH)];
      fake.intercept = async (r) => {
        for (const g of gates) await g?.(r);
        return undefined;
      };
      const [a, b] = [bootstrap(fake), bootstrap(fake)];
      const [ma, mb] = await Promise.all([a.start(), b.start()]);
      const servers = await Promise.all([serveTls(a.tlsProvider()), serveTls(b.tlsProvider())]);
      try {
        assert.deepEqual(
          fake
            .calls('PUT', SECRET_PATH)
            .map((r) => r.status)
            .sort(),
          [200, 409],
        );
        assert.equal(ma.cert, mb.cert);
        assert.deepEqual(storedMaterial(fake), ma);
        // both read the configuration before either patched: the second patch fails its resourceVersion test, re-reads, and finds nothing to do
        assert.deepEqual(
          fake
            .calls('PATCH', MWC_PATH)
            .map((r) => r.status)
            .sort(),
          [200, 422],
        );
        // the new CA is fresh, so the newest readable other CA stays as the previous one; junk and the unreadable one go
        assert.deepEqual(caBundles(fake), [
          [ma.ca, older],
          [ma.ca, older],
        ]);
        if (check)
          await goCheckState(check, fake, 'after the race', [
            { name: 'replica a', addr: servers[0].addr },
            { name: 'replica b', addr: servers[1].addr },
          ]);
      } finally {
        await Promise.all([a.stop(), b.stop()]);
        await Promise.all(servers.map((s) => s.close()));
      }
    }));
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
        assert.equal((del[0]!.body as { preconditions?: { uid?: string } }).preconditions?.uid, uid);
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
      const foreign = {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: SIDECAR_ROLEBINDING_NAME, namespace: 'team-c' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
        subjects: [{ kind: 'User', name: 'alice', apiGroup: 'rbac.authorization.k8s.io' }],
      };
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
        assert.deepEqual(
          fake.calls('POST', RB_PATH('team-d')).map((r) => r.status),
          [500, 201],
        );
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
        await waitFor(
          'binding repaired',
          () => (fake.get('rolebindings', SIDECAR_ROLEBINDING_NAME, 'team-d')?.subjects as { name: string }[] | undefined)?.[0]?.name === 'system:serviceaccounts:team-d',
        );
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
        assert.deepEqual(
          fake
            .calls('POST', RB_PATH('team-e'))
            .map((r) => r.status)
            .sort(),
          [201, 409],
        );
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
  test("resolves the mode, serves the Secret's certificate (verifiable with the caBundle by the Service name, by Node and by Go), answers podSecurityLevel", (t) =>
    withFake(async (fake) => {
      const check = goCertCheck(t);
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
        if (check) await goCheckState(check, fake, 'startInCluster', [{ name: 'the webhook, as the API server calls it', addr: `127.0.0.1:${(server.address() as AddressInfo).port}` }]);
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
        startInCluster({
          logger: memoryLogger().logger,
          config: defaultConfig('0.0.0-test'),
          namespace: NS,
          serviceName: SVC,
          selfSigned: true,
          kubeConfig: fake.kubeConfig(),
          cert: { retryBaseMs: 10, startTimeoutMs: 100 },
          namespaces: { resyncIntervalMs: 0 },
        }),
        CertBootstrapError,
      );
      await waitFor('namespace watch closed', () => fake.watchCount() === 0);
      assert.equal(inClusterEnvironment({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }), true);
      assert.equal(inClusterEnvironment({}), false);
    }));
});
