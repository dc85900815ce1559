/** The pure mutation (DESIGN §4) and the AdmissionReview logic around it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_HOOKS, ANNOTATION_STATUS, ENV_MARKER, ENV_SPEC, HEADER_TOKEN, LABEL_POD_INJECT, SIDECAR_CONTAINER_NAME } from '../common/names.js';
import { parseSpecJson } from '../common/spec.js';
import { defaultConfig, parseConfig } from '../webhook/config.js';
import { MutationError, mutatePod, pickSidecarPort } from '../webhook/mutate.js';
import { BadReviewError, reviewAdmission } from '../webhook/admission.js';
import { applyPatch } from '../webhook/patch.js';
import { CAPS_EXEC, CAPS_SIGNAL } from '../webhook/security-context.js';
import { baselineViolations, restrictedViolations } from './support/pod-security.js';

const config = defaultConfig('test');
const TOKEN = 'f'.repeat(32);

function pod(hooks: string | undefined, extra: Partial<V1Pod['spec']> = {}, meta: V1Pod['metadata'] = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', ...meta, annotations: { ...(meta.annotations ?? {}), ...(hooks ? { [ANNOTATION_HOOKS]: hooks } : {}) } },
    spec: { containers: [{ name: 'app', image: 'img', ports: [{ name: 'http', containerPort: 8080 }] }], ...extra },
  };
}

function injected(p: V1Pod, mode: 'native' | 'container' = 'native') {
  const r = mutatePod(p, { config, mode, newToken: () => TOKEN });
  assert.ok(r.injected, 'expected the pod to be injected');
  return r;
}

function sidecarOf(p: V1Pod): V1Container {
  const c = [...(p.spec!.initContainers ?? []), ...p.spec!.containers].find((x) => x.name === SIDECAR_CONTAINER_NAME);
  assert.ok(c, 'sidecar present');
  return c;
}

test('native mode: first init container, restartPolicy Always, startupProbe on /readyz; app rewritten and marked', () => {
  const r = injected(pod('app: {postStart: [{httpGet: {path: /w, port: http}}]}', { initContainers: [{ name: 'init', image: 'i' }] }));
  const spec = r.pod.spec!;
  assert.equal(spec.initContainers![0]!.name, SIDECAR_CONTAINER_NAME);
  assert.equal(spec.initContainers![1]!.name, 'init');
  assert.equal(spec.initContainers![0]!.restartPolicy, 'Always');
  assert.deepEqual(spec.initContainers![0]!.startupProbe?.httpGet, { path: '/readyz', port: 15901, scheme: 'HTTP' });
  assert.equal(spec.shareProcessNamespace, true);
  const app = spec.containers[0]!;
  assert.deepEqual(app.lifecycle?.postStart, { httpGet: { path: '/v1/hooks/app/postStart', port: 15901, scheme: 'HTTP', httpHeaders: [{ name: HEADER_TOKEN, value: TOKEN }] } });
  assert.equal(app.lifecycle?.preStop, undefined);
  assert.deepEqual(app.env, [{ name: ENV_MARKER, value: 'app' }]);
  assert.deepEqual(JSON.parse(r.pod.metadata!.annotations![ANNOTATION_STATUS]!), { version: 1, mode: 'native', port: 15901, containers: ['app'] });
});

test('container mode: first regular container with a wait-ready PostStart on the chosen port', () => {
  const r = injected(pod('app: {preStop: [{sleep: {seconds: 1}}]}'), 'container');
  const [first, second] = r.pod.spec!.containers;
  assert.equal(first!.name, SIDECAR_CONTAINER_NAME);
  assert.equal(second!.name, 'app');
  assert.deepEqual(first!.lifecycle?.postStart?.exec?.command, ['hook-runner', 'wait-ready', '--port', '15901']);
  assert.equal(first!.restartPolicy, undefined);
  assert.equal(r.pod.spec!.initContainers, undefined);
});

test('the sidecar env carries the normalised spec the sidecar parser accepts', () => {
  const r = injected(pod('app: {preStop: [{http: {path: /d, port: http}}]}'));
  const env = sidecarOf(r.pod).env!;
  const spec = parseSpecJson(env.find((e) => e.name === ENV_SPEC)!.value!);
  assert.equal(spec.app!.preStop[0]!.timeoutSeconds, 30);
  assert.deepEqual(Object.fromEntries(env.filter((e) => e.value !== undefined && e.name !== ENV_SPEC).map((e) => [e.name, e.value])), {
    HOOK_RUNNER_TOKEN: TOKEN,
    HOOK_RUNNER_PORT: '15901',
    HOOK_RUNNER_GRACE_SECONDS: '30',
    HOOK_RUNNER_EVENT_OUTPUT: 'false',
  });
  assert.deepEqual(env.filter((e) => e.valueFrom).map((e) => [e.name, e.valueFrom!.fieldRef!.fieldPath]), [
    ['POD_NAME', 'metadata.name'],
    ['POD_NAMESPACE', 'metadata.namespace'],
    ['POD_UID', 'metadata.uid'],
    ['NODE_NAME', 'spec.nodeName'],
  ]);
});

test('the input pod is never modified', () => {
  const p = pod('app: {preStop: [{sleep: {seconds: 1}}]}');
  const before = structuredClone(p);
  injected(p);
  assert.deepEqual(p, before);
});

test('tokens are random, 128 bits, per pod', () => {
  const a = mutatePod(pod('app: {preStop: [{sleep: {seconds: 1}}]}'), { config, mode: 'native' });
  const b = mutatePod(pod('app: {preStop: [{sleep: {seconds: 1}}]}'), { config, mode: 'native' });
  assert.ok(a.injected && b.injected);
  const tok = (r: typeof a) => sidecarOf(r.pod).env!.find((e) => e.name === 'HOOK_RUNNER_TOKEN')!.value!;
  assert.match(tok(a), /^[0-9a-f]{32}$/);
  assert.notEqual(tok(a), tok(b));
});

test('skips: opted-out, already-injected, no-hooks, with the reason', () => {
  assert.deepEqual(mutatePod(pod(undefined), { config, mode: 'native' }).injected, false);
  assert.equal((mutatePod(pod(undefined), { config, mode: 'native' }) as { reason: string }).reason, 'no-hooks');
  const out = mutatePod(pod('app: {preStop: [{sleep: {seconds: 1}}]}', {}, { labels: { [LABEL_POD_INJECT]: 'false' } }), { config, mode: 'native' });
  assert.equal(!out.injected && out.reason, 'opted-out');
  const once = injected(pod('app: {preStop: [{sleep: {seconds: 1}}]}'));
  const twice = mutatePod(once.pod, { config, mode: 'native' });
  assert.equal(!twice.injected && twice.reason, 'already-injected');
  assert.equal(twice.pod, once.pod);
  const empty = mutatePod(pod('app: {postStart: [], preStop: []}'), { config, mode: 'native' });
  assert.equal(!empty.injected && empty.reason, 'no-hooks');
});

test('refuses hostPID, an explicit shareProcessNamespace: false, and a container named hook-runner', () => {
  const hooks = 'app: {preStop: [{sleep: {seconds: 1}}]}';
  assert.throws(() => mutatePod(pod(hooks, { hostPID: true }), { config, mode: 'native' }), (e: unknown) => e instanceof MutationError && e.location === 'spec.hostPID' && /shared PID namespace/.test(e.message));
  assert.throws(() => mutatePod(pod(hooks, { shareProcessNamespace: false }), { config, mode: 'native' }), (e: unknown) => e instanceof MutationError && /set to false explicitly/.test(e.message));
  const clash = pod(hooks);
  clash.spec!.containers.push({ name: SIDECAR_CONTAINER_NAME, image: 'x' });
  assert.throws(() => mutatePod(clash, { config, mode: 'native' }), /reserved for the injected sidecar/);
  assert.equal(injected(pod(hooks, { shareProcessNamespace: true })).pod.spec!.shareProcessNamespace, true);
});

test('a marker env the user set to another value is refused, not overridden', () => {
  const p = pod('app: {preStop: [{sleep: {seconds: 1}}]}');
  p.spec!.containers[0]!.env = [{ name: ENV_MARKER, value: 'other' }];
  assert.throws(() => mutatePod(p, { config, mode: 'native' }), /HOOK_RUNNER_CONTAINER\]: is set to "other"/);
});

test('port collision: the sidecar port skips every port a container or init container declares', () => {
  assert.equal(pickSidecarPort({ containers: [{ name: 'a', ports: [{ containerPort: 15901 }] }], initContainers: [{ name: 'b', ports: [{ containerPort: 15902 }] }] }, 15901), 15903);
  assert.equal(pickSidecarPort({ containers: [{ name: 'a' }] }, 15901), 15901);
});

test('grace budget warnings: the seed case, grace 0, and shutdown longer than grace', () => {
  const seed = injected(pod('app: {shutdownSeconds: 10, preStop: [{sleep: {seconds: 55}, timeoutSeconds: 60}]}', { terminationGracePeriodSeconds: 60 }));
  assert.match(seed.warnings.join('\n'), /preStop may take up to 55s, but terminationGracePeriodSeconds 60 - shutdownSeconds 10 leaves 50s/);
  const zero = injected(pod('app: {preStop: [{sleep: {seconds: 1}}]}', { terminationGracePeriodSeconds: 0 }));
  assert.match(zero.warnings.join('\n'), /terminationGracePeriodSeconds is 0, so the kubelet never calls PreStop/);
  const none = injected(pod('app: {shutdownSeconds: 40, preStop: [{sleep: {seconds: 1}}]}'));
  assert.match(none.warnings.join('\n'), /shutdownSeconds 40 leaves no time for preStop in terminationGracePeriodSeconds 30/);
  const fits = injected(pod('app: {shutdownSeconds: 10, preStop: [{sleep: {seconds: 5}}]}', { terminationGracePeriodSeconds: 60 }));
  assert.deepEqual(fits.warnings, []);
});

test('native lifecycle: adopted first, warning when both; refused when adoption is off and both declare the phase', () => {
  const p = pod('app: {preStop: [{http: {path: /d, port: http}}]}');
  p.spec!.containers[0]!.lifecycle = { preStop: { exec: { command: ['/bin/drain'] } } };
  const r = injected(p);
  const spec = parseSpecJson(sidecarOf(r.pod).env!.find((e) => e.name === ENV_SPEC)!.value!);
  assert.deepEqual(spec.app!.preStop.map((h) => Object.keys(h)[0]), ['exec', 'http']);
  assert.match(r.warnings[0]!, /preStop is declared both natively .* the native handler runs first, then the annotation's 1 handler$/);
  const off = parseConfig('adoptNativeHooks: false', 'test');
  assert.throws(() => mutatePod(p, { config: off, mode: 'native' }), /adoptNativeHooks is false/);
  const nativeOnly = pod(undefined);
  nativeOnly.spec!.containers[0]!.lifecycle = { preStop: { exec: { command: ['/bin/drain'] } } };
  const skipped = mutatePod(nativeOnly, { config: off, mode: 'native' });
  assert.equal(!skipped.injected && skipped.reason, 'no-hooks');
});

test('security context: restricted for http/sleep/tcp, exactly the measured sets for exec and signal, never SYS_ADMIN', () => {
  const restricted = sidecarOf(injected(pod('app: {preStop: [{sleep: {seconds: 1}}, {httpGet: {port: 80}}, {http: {port: 80}}, {tcpSocket: {port: 80}}]}')).pod);
  assert.deepEqual(restrictedViolations(restricted), []);
  assert.equal(restricted.securityContext!.readOnlyRootFilesystem, true);
  const exec = sidecarOf(injected(pod('app: {preStop: [{exec: {command: [x]}}]}')).pod).securityContext!;
  assert.deepEqual(exec.capabilities, { drop: ['ALL'], add: [...CAPS_EXEC] });
  assert.deepEqual([...CAPS_EXEC], ['SYS_PTRACE', 'DAC_READ_SEARCH', 'SYS_CHROOT', 'SETUID', 'SETGID', 'KILL', 'SETPCAP']);
  assert.equal(exec.runAsUser, 0);
  assert.equal(exec.allowPrivilegeEscalation, false);
  const signal = sidecarOf(injected(pod('app: {preStop: [{signal: {name: TERM}}]}')).pod).securityContext!;
  assert.deepEqual(signal.capabilities, { drop: ['ALL'], add: [...CAPS_SIGNAL] });
  assert.deepEqual([...CAPS_SIGNAL], ['SYS_PTRACE', 'DAC_READ_SEARCH', 'KILL']);
  for (const sc of [exec, signal]) assert.ok(!sc.capabilities!.add!.includes('SYS_ADMIN'));
  // exec/signal sidecars are outside baseline: SYS_PTRACE and DAC_READ_SEARCH (DESIGN §5).
  assert.deepEqual(baselineViolations({ name: 'hook-runner', securityContext: signal }), ['hook-runner: capabilities SYS_PTRACE, DAC_READ_SEARCH are not allowed by baseline']);
});

test('container mode with restartPolicy Never warns that the pod would not complete', () => {
  const r = injected(pod('app: {preStop: [{sleep: {seconds: 1}}]}', { restartPolicy: 'Never' }), 'container');
  assert.match(r.warnings.join('\n'), /pod completes only when the sidecar exits too/);
});

// --- AdmissionReview ---------------------------------------------------------------------------

function review(object: unknown, request: Record<string, unknown> = {}) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u-1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      operation: 'CREATE',
      namespace: 'team-a',
      object,
      ...request,
    },
  };
}

type ReviewResponse = { response: { uid: string; allowed: boolean; patch?: string; patchType?: string; warnings?: string[]; status?: { code: number; message: string }; auditAnnotations?: Record<string, string> } };

test('admission: injects with a base64 JSONPatch that turns the pod into the mutated pod', () => {
  const p = pod('app: {shutdownSeconds: 10, preStop: [{sleep: {seconds: 55}, timeoutSeconds: 60}]}', { terminationGracePeriodSeconds: 60 }, { generateName: 'web-' });
  delete p.metadata!.name;
  const r = reviewAdmission(review(p), { config, mode: 'native', newToken: () => TOKEN });
  const res = (r.review as ReviewResponse).response;
  assert.equal(r.outcome, 'injected');
  assert.equal(r.name, 'web-');
  assert.equal(res.uid, 'u-1');
  assert.equal(res.allowed, true);
  assert.equal(res.patchType, 'JSONPatch');
  const patched = applyPatch(p, JSON.parse(Buffer.from(res.patch!, 'base64').toString()));
  assert.deepEqual(patched, (mutatePod(p, { config, mode: 'native', newToken: () => TOKEN }) as { pod: V1Pod }).pod);
  assert.equal(res.warnings?.length, 1);
});

test('admission: denial carries status 400 and the located message', () => {
  const r = reviewAdmission(review(pod('app: {preStop: [{sleep: {seconds: 1}}, {httpGet: {path: /x, port: 0}}]}')), { config, mode: 'native' });
  const res = (r.review as ReviewResponse).response;
  assert.equal(r.outcome, 'denied');
  assert.equal(r.reason, 'invalid-hooks');
  assert.equal(res.allowed, false);
  assert.equal(res.status!.code, 400);
  assert.equal(res.status!.message, 'hook-runner.dev/hooks: app.preStop[1].httpGet.port: must be 1-65535 or a named port of container app, got 0');
});

test('admission: non-pods, subresources, non-CREATE and re-invocations are allowed unchanged with a reason', () => {
  const cases: Array<[unknown, string]> = [
    [review({ metadata: { name: 'cm' } }, { kind: { group: '', version: 'v1', kind: 'ConfigMap' }, resource: { group: '', version: 'v1', resource: 'configmaps' } }), 'not-a-pod'],
    [review(pod('app: {preStop: [{sleep: {seconds: 1}}]}'), { subResource: 'ephemeralcontainers' }), 'not-a-pod'],
    [review(pod('app: {preStop: [{sleep: {seconds: 1}}]}'), { operation: 'UPDATE' }), 'not-create'],
    [review(pod(undefined)), 'no-hooks'],
    [review(injected(pod('app: {preStop: [{sleep: {seconds: 1}}]}')).pod), 'already-injected'],
  ];
  for (const [body, reason] of cases) {
    const r = reviewAdmission(body, { config, mode: 'native' });
    const res = (r.review as ReviewResponse).response;
    assert.equal(r.outcome, 'skipped');
    assert.equal(r.reason, reason);
    assert.deepEqual(res, { uid: 'u-1', allowed: true, auditAnnotations: { outcome: 'skipped', reason } });
  }
});

test('admission: dryRun gets the same answer', () => {
  const p = pod('app: {preStop: [{sleep: {seconds: 1}}]}');
  const a = reviewAdmission(review(p), { config, mode: 'native', newToken: () => TOKEN });
  const b = reviewAdmission(review(p, { dryRun: true }), { config, mode: 'native', newToken: () => TOKEN });
  assert.deepEqual(a.review, b.review);
});

test('admission: malformed reviews are BadReviewError with a clear message', () => {
  const bad: Array<[unknown, RegExp]> = [
    ['text', /body must be a JSON object/],
    [{ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: {} }, /expected apiVersion admission.k8s.io\/v1 and kind AdmissionReview, got apiVersion "admission.k8s.io\/v1beta1"/],
    [{ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, /request is missing/],
    [{ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { object: {} } }, /request.uid is missing/],
    [review(undefined), /request.object is missing/],
    [review({ spec: {} }), /spec.containers is missing/],
  ];
  for (const [body, msg] of bad) assert.throws(() => reviewAdmission(body, { config, mode: 'native' }), (e: unknown) => e instanceof BadReviewError && msg.test(e.message));
});

test('Pod Security: exec/signal hooks in a baseline or restricted namespace are denied naming the hook, the capabilities and what works', () => {
  const p = pod('app: {preStop: [{sleep: {seconds: 1}}, {signal: {name: QUIT}}]}');
  for (const level of ['baseline', 'restricted'] as const) {
    assert.throws(
      () => mutatePod(p, { config, mode: 'native', podSecurity: { namespace: 'team-a', level } }),
      {
        message: `hook-runner.dev/hooks: app.preStop[1].signal: needs the hook-runner sidecar to run as uid 0 with capabilities SYS_PTRACE, DAC_READ_SEARCH, KILL, which namespace team-a forbids (pod-security.kubernetes.io/enforce: ${level}); handler kinds that work there: httpGet, http, sleep, tcpSocket`,
      },
    );
  }
  assert.ok(mutatePod(p, { config, mode: 'native', podSecurity: { namespace: 'team-a', level: 'privileged' } }).injected);
  const httpOnly = pod('app: {preStop: [{http: {path: /d, port: 8080}}]}');
  assert.ok(mutatePod(httpOnly, { config, mode: 'native', podSecurity: { namespace: 'team-a', level: 'restricted' } }).injected);
  const r = reviewAdmission(review(p), { config, mode: 'native', podSecurityLevel: (ns) => (ns === 'team-a' ? 'baseline' : undefined) });
  assert.equal(r.outcome, 'denied');
  assert.match((r.review as ReviewResponse).response.status!.message, /^hook-runner.dev\/hooks: app.preStop\[1\].signal: needs/);
});
