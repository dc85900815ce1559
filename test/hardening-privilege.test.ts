/**
 * Issue 7 item 5 (the parts that need no namespaces): the sidecar's securityContext per handler set
 * against the Pod Security Standards, and the hosts network handlers may reach (`allowedHosts`).
 * The capability-by-capability proofs run in test/hardening-sidecar.test.ts (root, namespaces); the
 * webhook's RBAC is asserted by test/manifests.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_HOOKS, SIDECAR_CONTAINER_NAME } from '../common/names.js';
import { HANDLER_KINDS, HookSpecError, type HandlerKind } from '../common/spec.js';
import { DEFAULT_ALLOWED_HOSTS, hostAllowed } from '../webhook/core/policy.js';
import { ConfigError, defaultConfig, parseConfig } from '../webhook/core/config.js';
import { mutatePod } from '../webhook/core/mutate.js';
import { reviewAdmission } from '../webhook/core/admission.js';
import { CAPS_EXEC, CAPS_SIGNAL, RESTRICTED_KINDS } from '../webhook/core/security-context.js';
import { BASELINE_ALLOWED_CAPS, baselineViolations, restrictedViolations } from './support/pod-security.js';

const config = defaultConfig('test');

const ITEM: Record<HandlerKind, unknown> = {
  exec: { exec: { command: ['/bin/true'] } },
  httpGet: { httpGet: { path: '/', port: 8080 } },
  http: { http: { method: 'POST', path: '/drain', port: 8080 } },
  sleep: { sleep: { seconds: 1 } },
  signal: { signal: { name: 'SIGTERM' } },
  tcpSocket: { tcpSocket: { port: 8080 } },
};

function pod(hooks: unknown, containers: V1Container[] = [{ name: 'app', image: 'img' }]): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', annotations: { [ANNOTATION_HOOKS]: JSON.stringify(hooks) } }, spec: { containers } };
}

function sidecarOf(p: V1Pod): V1Container {
  return [...(p.spec!.initContainers ?? []), ...p.spec!.containers].find((c) => c.name === SIDECAR_CONTAINER_NAME)!;
}

test('Pod Security per handler set: restricted for http/httpGet/sleep/tcpSocket; exactly the measured sets for exec and signal; never SYS_ADMIN', () => {
  // Every one of the 63 non-empty sets of handler kinds, split over both phases.
  for (let mask = 1; mask < 1 << HANDLER_KINDS.length; mask++) {
    const kinds = HANDLER_KINDS.filter((_, i) => mask & (1 << i));
    const items = kinds.map((k) => ITEM[k]);
    const r = mutatePod(pod({ app: { postStart: items.filter((_, i) => i % 2 === 0), preStop: items.filter((_, i) => i % 2 === 1) } }), { config, mode: 'native' });
    assert.ok(r.injected);
    const c = sidecarOf(r.pod);
    const sc = c.securityContext!;
    const label = kinds.join('+');
    // Held in every case.
    assert.equal(sc.allowPrivilegeEscalation, false, label);
    assert.equal(sc.readOnlyRootFilesystem, true, label);
    assert.equal(sc.seccompProfile?.type, 'RuntimeDefault', label);
    assert.deepEqual(sc.capabilities?.drop, ['ALL'], label);
    assert.notEqual(sc.privileged, true, label);
    assert.ok(!(sc.capabilities?.add ?? []).includes('SYS_ADMIN'), label);
    if (kinds.every((k) => RESTRICTED_KINDS.includes(k))) {
      assert.deepEqual(restrictedViolations(c), [], label);
      assert.equal(sc.runAsUser, 65532, label);
      assert.equal(sc.capabilities?.add, undefined, label);
    } else {
      const want = kinds.includes('exec') ? [...CAPS_EXEC] : [...CAPS_SIGNAL];
      assert.deepEqual(sc.capabilities?.add, want, label);
      assert.equal(sc.runAsUser, 0, label);
      // Outside baseline by exactly the two capabilities that find the target (DESIGN §5).
      assert.deepEqual(baselineViolations(c), ['hook-runner: capabilities SYS_PTRACE, DAC_READ_SEARCH are not allowed by baseline'], label);
      assert.deepEqual(
        want.filter((cap) => !BASELINE_ALLOWED_CAPS.includes(cap)),
        ['SYS_PTRACE', 'DAC_READ_SEARCH'],
        label,
      );
    }
  }
});

test('allowedHosts: by default network handlers may name only the pod itself (loopback)', () => {
  assert.deepEqual(config.allowedHosts, [...DEFAULT_ALLOWED_HOSTS]);
  assert.deepEqual([...DEFAULT_ALLOWED_HOSTS], ['127.0.0.1', '::1', 'localhost']);
  for (const host of [undefined, '127.0.0.1', '::1', 'localhost', 'LOCALHOST']) {
    for (const kind of ['httpGet', 'http', 'tcpSocket'] as const) {
      const r = mutatePod(pod({ app: { preStop: [{ [kind]: { port: 8080, ...(host ? { host } : {}) } }] } }), { config, mode: 'native' });
      assert.ok(r.injected, `${kind} host ${host}`);
    }
  }
  const cases: Array<[string, string]> = [
    ['httpGet', '169.254.169.254'],
    ['http', 'kubernetes.default.svc'],
    ['tcpSocket', '10.0.0.1'],
    ['http', '127.0.0.2'],
    ['httpGet', 'localhost.evil.example'],
  ];
  for (const [kind, host] of cases) {
    assert.throws(
      () => mutatePod(pod({ app: { preStop: [{ sleep: { seconds: 1 } }, { [kind]: { port: 8080, host } }] } }), { config, mode: 'native' }),
      (e: unknown) =>
        e instanceof HookSpecError &&
        e.message ===
          `hook-runner.dev/hooks: app.preStop[1].${kind}.host: ${JSON.stringify(host)} is not allowed by this cluster's hook-runner configuration (allowedHosts: 127.0.0.1, ::1, localhost); handlers reach the pod itself (the default host 127.0.0.1) unless the cluster admin allows more`,
      `${kind} ${host}`,
    );
  }
});

test('allowedHosts: an AdmissionReview naming another host is denied with the located message; a native httpGet host too', () => {
  const review = (object: unknown) => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'u', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: 'n', object },
  });
  const r = reviewAdmission(review(pod({ app: { postStart: [{ httpGet: { port: 80, host: 'metadata.google.internal' } }] } })), { config, mode: 'native' });
  assert.equal(r.outcome, 'denied');
  assert.equal(r.reason, 'invalid-hooks');
  assert.match(
    (r.review as { response: { status: { message: string } } }).response.status.message,
    /^hook-runner\.dev\/hooks: app\.postStart\[0\]\.httpGet\.host: "metadata\.google\.internal" is not allowed/,
  );
  // Adopting a native lifecycle httpGet with a host applies the same rule, located in the container.
  const native = pod({}, [{ name: 'app', image: 'img', lifecycle: { preStop: { httpGet: { port: 80, host: '10.1.2.3' } } } }]);
  native.metadata!.annotations = { 'hook-runner.dev/adopt-native': 'true' };
  assert.throws(
    () => mutatePod(native, { config, mode: 'native' }),
    (e: unknown) => e instanceof HookSpecError && /^spec\.containers\[app\]\.lifecycle: preStop\.httpGet\.host: "10\.1\.2\.3" is not allowed/.test(e.message),
  );
});

test('allowedHosts: the config may allow more (exact, *.domain, *), and refuses malformed entries', () => {
  const cfg = parseConfig('allowedHosts: [127.0.0.1, "*.svc.cluster.local", Metrics.Example]', 'test');
  assert.deepEqual(cfg.allowedHosts, ['127.0.0.1', '*.svc.cluster.local', 'metrics.example']);
  const ok = (host: string) => mutatePod(pod({ app: { preStop: [{ http: { port: 80, host } }] } }), { config: cfg, mode: 'native' }).injected;
  assert.equal(ok('drain.team.svc.cluster.local'), true);
  assert.equal(ok('metrics.example'), true);
  assert.throws(() => ok('svc.cluster.local'), /is not allowed/, '*.domain does not match the domain itself');
  assert.throws(() => ok('localhost'), /is not allowed/, 'the list replaces the default');
  assert.equal(hostAllowed('anything.example', ['*']), true);
  const any = parseConfig('allowedHosts: ["*"]', 'test');
  assert.equal(mutatePod(pod({ app: { preStop: [{ tcpSocket: { port: 5432, host: 'db.example' } }] } }), { config: any, mode: 'native' }).injected, true);
  for (const [text, msg] of [
    ['allowedHosts: localhost', /allowedHosts: must be a list/],
    ['allowedHosts: ["a b"]', /allowedHosts\[0\]: must be a host name or IP address/],
    ['allowedHosts: ["http://x"]', /allowedHosts\[0\]/],
    ['allowedHosts: ["*x.example"]', /allowedHosts\[0\]/],
    ['allowedHosts: [1]', /allowedHosts\[0\]/],
  ] as const) {
    assert.throws(
      () => parseConfig(text, 'test', 'cfg.yaml'),
      (e: unknown) => e instanceof ConfigError && msg.test(e.message) && e.message.startsWith('cfg.yaml: '),
      text,
    );
  }
});
