/** The pure mutation (DESIGN §4) and the AdmissionReview logic around it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_ADOPT_NATIVE,
  ANNOTATION_HOOKS,
  ANNOTATION_SIDECAR_CPU_LIMIT,
  ANNOTATION_SIDECAR_CPU_REQUEST,
  ANNOTATION_SIDECAR_MEMORY_LIMIT,
  ANNOTATION_SIDECAR_MEMORY_REQUEST,
  ANNOTATION_STATUS,
  ENV_CALLERS,
  ENV_MARKER,
  ENV_SPEC,
  ENV_TOKEN,
  HEADER_TOKEN,
  LABEL_POD_INJECT,
  PHASES,
  SIDECAR_CONTAINER_NAME,
} from '../common/names.js';
import { MAX_SECONDS, parseSpecJson } from '../common/spec.js';
import { defaultConfig, parseConfig } from '../webhook/core/config.js';
import { MAX_ENV_STRING_BYTES, MutationError, mutatePod, parseQuantity, pickSidecarPort } from '../webhook/core/mutate.js';
import { formatYaml, injectDocuments, parseDocuments } from '../webhook/core/inject.js';
import { BadReviewError, reviewAdmission } from '../webhook/core/admission.js';
import { applyPatch } from '../webhook/core/patch.js';
import { CAPS_EXEC, CAPS_SIGNAL } from '../webhook/core/security-context.js';
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

test('native mode: first init container, restartPolicy Always, PostStart wait-ready holds the app, no probes; app rewritten and marked', () => {
  const r = injected(pod('app: {postStart: [{httpGet: {path: /w, port: http}}]}', { initContainers: [{ name: 'init', image: 'i' }] }));
  const spec = r.pod.spec!;
  assert.equal(spec.initContainers![0]!.name, SIDECAR_CONTAINER_NAME);
  assert.equal(spec.initContainers![1]!.name, 'init');
  assert.equal(spec.initContainers![0]!.restartPolicy, 'Always');
  // The kubelet starts the next container only once this PostStart returns, i.e. once the sidecar
  // answers /readyz; a startupProbe would pass only on the kubelet's next 1 s tick.
  assert.deepEqual(spec.initContainers![0]!.lifecycle?.postStart, { exec: { command: ['hook-runner', 'wait-ready', '--port', '15901'] } });
  assert.equal(spec.initContainers![0]!.startupProbe, undefined);
  // A native sidecar's readiness gates the pod's Ready condition: no readinessProbe delays it.
  assert.equal(spec.initContainers![0]!.readinessProbe, undefined);
  assert.equal(spec.shareProcessNamespace, true);
  const app = spec.containers[0]!;
  assert.deepEqual(app.lifecycle?.postStart, { httpGet: { path: '/v1/hooks/app/postStart', port: 15901, scheme: 'HTTP', httpHeaders: [{ name: HEADER_TOKEN, value: TOKEN }] } });
  assert.equal(app.lifecycle?.preStop, undefined);
  assert.deepEqual(app.env, [{ name: ENV_MARKER, value: 'app' }]);
  assert.deepEqual(JSON.parse(r.pod.metadata!.annotations![ANNOTATION_STATUS]!), {
    version: 1,
    mode: 'native',
    port: 15901,
    containers: ['app'],
    lifecycle: { app: null },
    env: { app: 'create' },
    created: ['spec.shareProcessNamespace'],
  });
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
    HOOK_RUNNER_CALLERS: 'auto',
  });
  const fieldRefs = (p: V1Pod) =>
    sidecarOf(p)
      .env!.filter((e) => e.valueFrom)
      .map((e) => [e.name, e.valueFrom!.fieldRef!.fieldPath]);
  const common = [
    ['POD_NAME', 'metadata.name'],
    ['POD_NAMESPACE', 'metadata.namespace'],
    ['POD_UID', 'metadata.uid'],
    ['NODE_NAME', 'spec.nodeName'],
    ['HOOK_RUNNER_HOST_IP', 'status.hostIP'],
  ];
  assert.deepEqual(fieldRefs(r.pod), [...common, ['HOOK_RUNNER_HOST_IPS', 'status.hostIPs']]);
  // Container mode serves clusters older than native sidecars (1.29), whose API servers may refuse status.hostIPs.
  assert.deepEqual(fieldRefs(injected(pod('app: {preStop: [{http: {path: /d, port: http}}]}'), 'container').pod), common);
});

test('hookCallers: auto by default, any, or validated CIDRs joined with commas into HOOK_RUNNER_CALLERS', () => {
  const callers = (cfg: typeof config) => {
    const r = mutatePod(pod('app: {preStop: [{sleep: {seconds: 1}}]}'), { config: cfg, mode: 'native', newToken: () => TOKEN });
    assert.ok(r.injected);
    return sidecarOf(r.pod).env!.find((e) => e.name === ENV_CALLERS)!.value;
  };
  assert.equal(callers(config), 'auto');
  assert.equal(callers(parseConfig('hookCallers: any', 'test')), 'any');
  assert.equal(callers(parseConfig('hookCallers: [10.244.0.0/16, "FD00::/8", 192.168.1.7]', 'test')), '10.244.0.0/16,fd00::/8,192.168.1.7/32');
  for (const [text, msg] of [
    ['hookCallers: [10.0.0.0/33]', 'config: hookCallers[0]: must be a CIDR such as 10.0.0.0/8 or fd00::/8 (or one address), got "10.0.0.0/33"'],
    ['hookCallers: [node]', 'config: hookCallers[0]: must be a CIDR such as 10.0.0.0/8 or fd00::/8 (or one address), got "node"'],
    ['hookCallers: [10.0.0.0/8, 300.1.1.1/8]', 'config: hookCallers[1]: must be a CIDR such as 10.0.0.0/8 or fd00::/8 (or one address), got "300.1.1.1/8"'],
    ['hookCallers: []', 'config: hookCallers: is an empty list, which would refuse the kubelet itself; must be auto, any, or a list of CIDRs such as [10.0.0.0/8, "fd00::/8"]'],
    ['hookCallers: everyone', 'config: hookCallers: must be auto, any, or a list of CIDRs such as [10.0.0.0/8, "fd00::/8"], got "everyone"'],
  ]) {
    assert.throws(() => parseConfig(text!, 'test'), { message: msg });
  }
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

test('refuses a container without hooks that declares the marker env (it could deny a hooked container its exec/signal hooks)', () => {
  const hooks = 'app: {preStop: [{signal: {name: SIGTERM}}]}';
  for (const [extra, where] of [
    [
      {
        containers: [
          { name: 'app', image: 'img' },
          { name: 'evil', image: 'e', env: [{ name: ENV_MARKER, value: 'app' }] },
        ],
      },
      'spec.containers[evil].env[HOOK_RUNNER_CONTAINER]',
    ],
    [
      { containers: [{ name: 'app', image: 'img' }], initContainers: [{ name: 'init', image: 'i', env: [{ name: ENV_MARKER, value: 'app' }] }] },
      'spec.initContainers[init].env[HOOK_RUNNER_CONTAINER]',
    ],
  ] as const) {
    assert.throws(
      () => mutatePod(pod(hooks, extra as unknown as Partial<V1Pod['spec']>), { config, mode: 'native' }),
      (e: unknown) => e instanceof MutationError && e.location === where && /only the hooked container itself may carry it/.test(e.message),
      where,
    );
  }
  // The hooked container itself may set it to its own name (it is what the webhook would add).
  assert.ok(mutatePod(pod(hooks, { containers: [{ name: 'app', image: 'img', env: [{ name: ENV_MARKER, value: 'app' }] }] }), { config, mode: 'native' }).injected);
});

test('refuses hostNetwork naming it: the sidecar would bind a port of the node', () => {
  const p = pod('app: {preStop: [{sleep: {seconds: 1}}]}', { hostNetwork: true });
  assert.throws(
    () => mutatePod(p, { config, mode: 'native' }),
    (e: unknown) => e instanceof MutationError && e.location === 'spec.hostNetwork' && /port of the node itself/.test(e.message),
  );
  const r = reviewAdmission(review(p), { config, mode: 'native' });
  assert.equal(r.outcome, 'denied');
  assert.match((r.review as ReviewResponse).response.status!.message, /^spec\.hostNetwork: is true; /);
  // A hostNetwork pod that asked for nothing is not refused: it is not ours.
  assert.equal(mutatePod(pod(undefined, { hostNetwork: true }), { config, mode: 'native' }).injected, false);
});

test('refuses hostPID, an explicit shareProcessNamespace: false, and a container named hook-runner', () => {
  const hooks = 'app: {preStop: [{sleep: {seconds: 1}}]}';
  assert.throws(
    () => mutatePod(pod(hooks, { hostPID: true }), { config, mode: 'native' }),
    (e: unknown) => e instanceof MutationError && e.location === 'spec.hostPID' && /shared PID namespace/.test(e.message),
  );
  assert.throws(
    () => mutatePod(pod(hooks, { shareProcessNamespace: false }), { config, mode: 'native' }),
    (e: unknown) => e instanceof MutationError && /set to false explicitly/.test(e.message),
  );
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
  const upper = Array.from({ length: 65535 - 15901 + 1 }, (_, i) => ({ containerPort: 15901 + i }));
  assert.equal(pickSidecarPort({ containers: [{ name: 'a', ports: upper }] }, 15901), 1024);
});

test('a pod that declares every port is refused with the reason, not searched forever', () => {
  const p = pod('app: {preStop: [{sleep: {seconds: 1}}]}');
  p.spec!.containers.push({ name: 'all', image: 'x', ports: Array.from({ length: 65535 - 1024 + 1 }, (_, i) => ({ containerPort: 1024 + i })) });
  assert.equal(pickSidecarPort(p.spec!, 15901), undefined);
  assert.throws(() => mutatePod(p, { config, mode: 'native' }), {
    message: "spec.containers[*].ports: the pod's containers declare every port from 1024 to 65535 (and the configured 15901); the hook-runner sidecar needs one free port to listen on",
  });
});

test('a spec the sidecar could not receive (an environment string over 128 KiB, E2BIG) is denied; the largest that fits is admitted', () => {
  // The case: a 63 KB annotation of 2,650 sleep items, about 270 KB once defaults are filled in.
  const items = (n: number) => `app:\n  preStop:\n${'  - sleep: {seconds: 0}\n'.repeat(n)}`;
  const big = items(2650);
  assert.ok(Buffer.byteLength(big) < 64 * 1024);
  const r = reviewAdmission(review(pod(big)), { config, mode: 'native' });
  assert.equal(r.outcome, 'denied');
  assert.equal(r.reason, 'invalid-hooks');
  assert.match(
    (r.review as ReviewResponse).response.status!.message,
    /^hook-runner\.dev\/hooks: expands to \d+ bytes of HOOK_RUNNER_SPEC for the sidecar \(2650 handlers, every default filled in\); Linux refuses an environment string over 131072 bytes \(E2BIG\), so the sidecar could never start: declare fewer handlers \(about \d+ of these fit\)$/,
  );
  const fit = Number(/about (\d+) of these fit/.exec((r.review as ReviewResponse).response.status!.message)![1]);
  const ok = injected(pod(items(fit)));
  for (const e of sidecarOf(ok.pod).env!) if (e.value !== undefined) assert.ok(Buffer.byteLength(`${e.name}=${e.value}`) + 1 <= MAX_ENV_STRING_BYTES, e.name);
  // Adopted native blocks count too, and are refused before their work grows with the pod.
  const many = pod(undefined, {}, { annotations: { [ANNOTATION_ADOPT_NATIVE]: 'true' } });
  many.spec!.containers = Array.from({ length: 2000 }, (_, i) => ({ name: `c${i}`, image: 'x', lifecycle: { preStop: { sleep: { seconds: 1 } } } }));
  assert.throws(() => mutatePod(many, { config, mode: 'native' }), {
    message:
      'spec.containers[*].lifecycle: declares more than 1297 handlers (adopted native lifecycle blocks included); each takes at least 101 bytes of HOOK_RUNNER_SPEC and Linux refuses an environment string over 131072 bytes (E2BIG), so the sidecar could never start: at most 1297 handlers can fit',
  });
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

/** HOOK_RUNNER_SPEC as the sidecar receives it: the wire form, action under its kind's key (checked valid by parseSpecJson). */
type WireHandler = Record<string, unknown> & { timeoutSeconds: number };
const specOf = (p: V1Pod): Record<string, { postStart: WireHandler[]; preStop: WireHandler[] }> => {
  const text = sidecarOf(p).env!.find((e) => e.name === ENV_SPEC)!.value!;
  parseSpecJson(text);
  return JSON.parse(text);
};

test('native lifecycle in a pod with the hooks annotation: adopted first (whatever adoptNativeHooks says), warning when both', () => {
  const p = pod('app: {preStop: [{http: {path: /d, port: http}}]}');
  p.spec!.containers[0]!.lifecycle = { preStop: { exec: { command: ['/bin/drain'] } } };
  for (const cfg of [config, parseConfig('adoptNativeHooks: true', 'test')]) {
    const r = mutatePod(p, { config: cfg, mode: 'native', newToken: () => TOKEN });
    assert.ok(r.injected);
    assert.deepEqual(
      specOf(r.pod).app!.preStop.map((h) => Object.keys(h)[0]),
      ['exec', 'http'],
    );
    assert.match(r.warnings[0]!, /preStop is declared both natively .* the native handler runs first, then the annotation's 1 handler$/);
  }
});

test('native lifecycle without the hooks annotation: left alone (no-hooks) by default; adopted only on opt-in, per pod or by config', () => {
  const nativeOnly = (annotations: Record<string, string> = {}) => {
    const p = pod(undefined, {}, { annotations });
    p.spec!.containers[0]!.lifecycle = { preStop: { exec: { command: ['nginx', '-s', 'quit'] } } };
    return p;
  };
  const left = mutatePod(nativeOnly(), { config, mode: 'native' });
  assert.equal(!left.injected && left.reason, 'no-hooks');
  assert.deepEqual(left.pod, nativeOnly());
  assert.equal(config.adoptNativeHooks, false);

  const perPod = mutatePod(nativeOnly({ [ANNOTATION_ADOPT_NATIVE]: 'true' }), { config, mode: 'native', newToken: () => TOKEN });
  assert.ok(perPod.injected);
  assert.deepEqual(
    specOf(perPod.pod).app!.preStop.map((h) => Object.keys(h)[0]),
    ['exec'],
  );

  const adopting = parseConfig('adoptNativeHooks: true', 'test');
  assert.ok(mutatePod(nativeOnly(), { config: adopting, mode: 'native', newToken: () => TOKEN }).injected);
  const refused = mutatePod(nativeOnly({ [ANNOTATION_ADOPT_NATIVE]: 'false' }), { config: adopting, mode: 'native' });
  assert.equal(!refused.injected && refused.reason, 'no-hooks');

  assert.throws(() => mutatePod(nativeOnly({ [ANNOTATION_ADOPT_NATIVE]: 'yes' }), { config, mode: 'native' }), {
    message: 'metadata.annotations[hook-runner.dev/adopt-native]: must be "true" or "false", got "yes"',
  });
});

test('adopted native handlers keep native semantics: no timeout of their own, full sleeps, no budget warning for an unbounded handler', () => {
  const p = pod(undefined, { terminationGracePeriodSeconds: 30 }, { annotations: { [ANNOTATION_ADOPT_NATIVE]: 'true' } });
  p.spec!.containers[0]!.lifecycle = { postStart: { exec: { command: ['/bin/warm'] } }, preStop: { exec: { command: ['/bin/drain'] } } };
  p.spec!.containers.push({ name: 'side', image: 'x', lifecycle: { preStop: { sleep: { seconds: 55 } } } });
  const r = injected(p);
  const spec = specOf(r.pod);
  // Not the configured 30 s: the kubelet puts no timeout on a native handler (PreStop is bounded by the grace budget at run time).
  assert.equal(spec.app!.postStart[0]!.timeoutSeconds, MAX_SECONDS);
  assert.equal(spec.app!.preStop[0]!.timeoutSeconds, MAX_SECONDS);
  assert.deepEqual(spec.side!.preStop[0], { sleep: { seconds: 55 }, timeoutSeconds: 56, retries: 0, retryDelaySeconds: 1, continueOnError: false });
  // The sleep counts in full; the unbounded exec does not count as 86400 s.
  assert.deepEqual(r.warnings, [
    'container side: preStop may take up to 55s, but terminationGracePeriodSeconds 30 - shutdownSeconds 5 leaves 25s; hook-runner cuts preStop off at 25s so the app keeps its 5s (raise terminationGracePeriodSeconds to at least 60 to let every handler finish)',
  ]);
});

test('a sleep runs its full length unless an explicit timeoutSeconds is shorter, which is warned about', () => {
  const long = injected(pod('app: {preStop: [{sleep: {seconds: 55}}, {sleep: {seconds: 5}}]}', { terminationGracePeriodSeconds: 120 }));
  assert.deepEqual(
    specOf(long.pod).app!.preStop.map((h) => h.timeoutSeconds),
    [56, 30],
  );
  assert.deepEqual(long.warnings, []);
  const cut = injected(pod('app: {preStop: [{http: {path: /d, port: http}}, {sleep: {seconds: 55}, timeoutSeconds: 20}]}', { terminationGracePeriodSeconds: 120 }));
  assert.deepEqual(cut.warnings, [
    'container app: hook-runner.dev/hooks app.preStop[1] sleeps 55s but sets timeoutSeconds 20: the sleep will be cut at 20s and count as a timeout (remove timeoutSeconds to let it sleep its full length)',
  ]);
});

test('the seed example (55 s preStop sleep, 10 s shutdown, 60 s grace) gets the budget warning at admission', () => {
  const seed = injected(pod('app: {shutdownSeconds: 10, preStop: [{sleep: {seconds: 55}}]}', { terminationGracePeriodSeconds: 60 }));
  assert.deepEqual(seed.warnings, [
    'container app: preStop may take up to 55s, but terminationGracePeriodSeconds 60 - shutdownSeconds 10 leaves 50s; hook-runner cuts preStop off at 50s so the app keeps its 10s (raise terminationGracePeriodSeconds to at least 65 to let every handler finish)',
  ]); // The real-cluster test's pod (test/e2e/kind): a 40 s sleep counts 40 s, not the 30 s default timeout.
  const kind = injected(pod('app: {shutdownSeconds: 5, preStop: [{sleep: {seconds: 40}}]}', { terminationGracePeriodSeconds: 30 }));
  assert.match(kind.warnings.join('\n'), /preStop may take up to 40s, but terminationGracePeriodSeconds 30 - shutdownSeconds 5 leaves 25s/);
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

test('sidecar resources by pod annotation: validated quantities over the configured ones; a request above its limit is refused', () => {
  const withAnnotations = (a: Record<string, string>) => pod('app: {preStop: [{exec: {command: [/dump]}}]}', {}, { annotations: a });
  const r = injected(
    withAnnotations({ [ANNOTATION_SIDECAR_MEMORY_LIMIT]: '1Gi', [ANNOTATION_SIDECAR_MEMORY_REQUEST]: '256Mi', [ANNOTATION_SIDECAR_CPU_LIMIT]: '2', [ANNOTATION_SIDECAR_CPU_REQUEST]: '250m' }),
  );
  assert.deepEqual(sidecarOf(r.pod).resources, { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '1Gi', cpu: '2' } });
  // Only the limit: the configured request (64Mi) stays.
  assert.deepEqual(sidecarOf(injected(withAnnotations({ [ANNOTATION_SIDECAR_MEMORY_LIMIT]: '512Mi' })).pod).resources, { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '512Mi' } });
  assert.deepEqual(sidecarOf(injected(pod('app: {preStop: [{sleep: {seconds: 1}}]}')).pod).resources, config.sidecar.resources);
  for (const bad of ['lots', '-1Gi', '0', '1GB', '1e999', '']) {
    assert.throws(() => mutatePod(withAnnotations({ [ANNOTATION_SIDECAR_MEMORY_LIMIT]: bad }), { config, mode: 'native' }), {
      message: `metadata.annotations[hook-runner.dev/sidecar-memory-limit]: must be a positive Kubernetes quantity such as 256Mi or 1Gi, got ${JSON.stringify(bad)}`,
    });
  }
  assert.throws(() => mutatePod(withAnnotations({ [ANNOTATION_SIDECAR_MEMORY_LIMIT]: '16Mi' }), { config, mode: 'native' }), {
    message:
      "metadata.annotations[hook-runner.dev/sidecar-memory-limit]: the sidecar's memory request 64Mi (from the hook-runner configuration (sidecar.resources)) is above its limit 16Mi (from hook-runner.dev/sidecar-memory-limit); Kubernetes refuses a request above its limit, set both",
  });
  assert.equal(parseQuantity('1.5Gi'), 1.5 * 2 ** 30);
  assert.equal(parseQuantity('100m'), 0.1);
  assert.equal(parseQuantity('1e3'), 1000);
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

type ReviewResponse = {
  response: { uid: string; allowed: boolean; patch?: string; patchType?: string; warnings?: string[]; status?: { code: number; message: string }; auditAnnotations?: Record<string, string> };
};

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
    assert.deepEqual(res, { uid: 'u-1', allowed: true, auditAnnotations: { skipped: reason } });
  }
});

/** What the API server does with a second call's audit annotations: a key may be set again only to the same value. */
function overwrittenAuditKeys(first: ReviewResponse, second: ReviewResponse): string[] {
  const a = first.response.auditAnnotations ?? {};
  const b = second.response.auditAnnotations ?? {};
  return Object.keys(b).filter((k) => k in a && a[k] !== b[k]);
}

function patched(p: V1Pod, res: ReviewResponse): V1Pod {
  return res.response.patch ? applyPatch(p, JSON.parse(Buffer.from(res.response.patch, 'base64').toString())) : p;
}

test('admission: a reinvocation (reinvocationPolicy IfNeeded) never sets an audit annotation the first call set to another value', () => {
  const p = pod('app: {preStop: [{sleep: {seconds: 1}}]}');
  const first = reviewAdmission(review(p), { config, mode: 'native' });
  const firstRes = first.review as ReviewResponse;
  assert.deepEqual(firstRes.response.auditAnnotations, { injected: 'app' });
  // The API server calls again with the pod as patched (and maybe changed by another webhook).
  const again = reviewAdmission(review(patched(p, firstRes)), { config, mode: 'native' });
  assert.equal(again.reason, 'already-injected');
  assert.deepEqual(overwrittenAuditKeys(firstRes, again.review as ReviewResponse), []);

  // Another webhook adds the hooks annotation after our first call said no-hooks.
  const plain = pod(undefined);
  const skipped = reviewAdmission(review(plain), { config, mode: 'native' }).review as ReviewResponse;
  const hooked = reviewAdmission(review(pod('app: {preStop: [{sleep: {seconds: 1}}]}')), { config, mode: 'native' }).review as ReviewResponse;
  assert.deepEqual(overwrittenAuditKeys(skipped, hooked), []);
});

test('admission: an offline-injected pod (inject output) is re-keyed per admission; a webhook-injected pod is not', () => {
  const source = pod('app: {postStart: [{httpGet: {path: /w, port: http}}], preStop: [{sleep: {seconds: 1}}]}');
  const [offline] = injectDocuments([source], { config, mode: 'native' });
  const offlinePod = offline!.doc as V1Pod;
  const offlineToken = sidecarOf(offlinePod).env!.find((e) => e.name === ENV_TOKEN)!.value!;
  assert.match(offlineToken, /^offline-[0-9a-f]{32}$/);

  const tokensIn = (p: V1Pod) => {
    const headers = p
      .spec!.containers.flatMap((c) => PHASES.flatMap((ph) => c.lifecycle?.[ph]?.httpGet?.httpHeaders ?? []))
      .filter((h) => h.name === HEADER_TOKEN)
      .map((h) => h.value);
    return { env: sidecarOf(p).env!.find((e) => e.name === ENV_TOKEN)!.value!, headers };
  };
  const admit = () => {
    const r = reviewAdmission(review(offlinePod), { config, mode: 'native' });
    assert.equal(r.outcome, 'rekeyed');
    assert.deepEqual((r.review as ReviewResponse).response.auditAnnotations, { rekeyed: 'app' });
    return patched(offlinePod, r.review as ReviewResponse);
  };
  const a = admit();
  const b = admit();
  const ta = tokensIn(a);
  const tb = tokensIn(b);
  assert.match(ta.env, /^[0-9a-f]{32}$/);
  assert.deepEqual(ta.headers, [ta.env, ta.env]);
  assert.deepEqual(tb.headers, [tb.env, tb.env]);
  assert.notEqual(ta.env, tb.env);
  assert.ok(!JSON.stringify(a).includes(offlineToken), 'no trace of the committed token');
  // Only the tokens changed.
  assert.deepEqual(JSON.parse(JSON.stringify(a).replaceAll(ta.env, offlineToken)), offlinePod);

  // The reinvocation that follows is not re-keyed again, and neither is a pod the webhook injected.
  const reinvoked = reviewAdmission(review(a), { config, mode: 'native' });
  assert.equal(reinvoked.reason, 'already-injected');
  assert.equal((reinvoked.review as ReviewResponse).response.patch, undefined);
  // inject never re-keys: injecting its own output changes nothing.
  assert.deepEqual(injectDocuments([offlinePod], { config, mode: 'native' })[0]!.doc, offlinePod);
});

test('inject output is byte-identical for identical input (its token is a hash of the document)', () => {
  const docs = () => parseDocuments(`${yamlPod('web')}---\n${yamlPod('api')}`, 'test');
  const once = formatYaml(injectDocuments(docs(), { config, mode: 'native' }).map((r) => r.doc));
  const twice = formatYaml(injectDocuments(docs(), { config, mode: 'native' }).map((r) => r.doc));
  assert.equal(once, twice);
  const tokens = [...once.matchAll(/offline-[0-9a-f]{32}/g)].map((m) => m[0]);
  assert.equal(new Set(tokens).size, 2, 'one token per document, different documents differ');
});

function yamlPod(name: string): string {
  return `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  annotations:\n    hook-runner.dev/hooks: "app: {preStop: [{sleep: {seconds: 1}}]}"\nspec:\n  containers: [{name: app, image: img}]\n`;
}

// dryRun: reviewAdmission never reads it (the webhook has no side effects, sideEffects: None); the
// server reads it for the log line, tested over HTTP in test/webhook-server.test.ts.

test('admission: malformed reviews are BadReviewError with a clear message', () => {
  const bad: Array<[unknown, RegExp]> = [
    ['text', /body must be a JSON object/],
    [{ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: {} }, /expected apiVersion admission.k8s.io\/v1 and kind AdmissionReview, got apiVersion "admission.k8s.io\/v1beta1"/],
    [{ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, /request is missing/],
    [{ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { object: {} } }, /request.uid is missing/],
    [review(undefined), /request.object is missing/],
    [review({ spec: {} }), /spec.containers is missing/],
  ];
  for (const [body, msg] of bad)
    assert.throws(
      () => reviewAdmission(body, { config, mode: 'native' }),
      (e: unknown) => e instanceof BadReviewError && msg.test(e.message),
    );
});

test('Pod Security: exec/signal hooks in a baseline or restricted namespace are denied naming the hook, the capabilities and what works', () => {
  const p = pod('app: {preStop: [{sleep: {seconds: 1}}, {signal: {name: QUIT}}]}');
  for (const level of ['baseline', 'restricted'] as const) {
    assert.throws(() => mutatePod(p, { config, mode: 'native', podSecurity: { namespace: 'team-a', level } }), {
      message: `hook-runner.dev/hooks: app.preStop[1].signal: needs the hook-runner sidecar to run as uid 0 with capabilities SYS_PTRACE, DAC_READ_SEARCH, KILL, which namespace team-a forbids (pod-security.kubernetes.io/enforce: ${level}); handler kinds that work there: httpGet, http, sleep, tcpSocket`,
    });
  }
  assert.ok(mutatePod(p, { config, mode: 'native', podSecurity: { namespace: 'team-a', level: 'privileged' } }).injected);
  const httpOnly = pod('app: {preStop: [{http: {path: /d, port: 8080}}]}');
  assert.ok(mutatePod(httpOnly, { config, mode: 'native', podSecurity: { namespace: 'team-a', level: 'restricted' } }).injected);
  const r = reviewAdmission(review(p), { config, mode: 'native', podSecurityLevel: (ns) => (ns === 'team-a' ? 'baseline' : undefined) });
  assert.equal(r.outcome, 'denied');
  assert.match((r.review as ReviewResponse).response.status!.message, /^hook-runner.dev\/hooks: app.preStop\[1\].signal: needs/);
});
