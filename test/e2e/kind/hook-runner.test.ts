/**
 * hook-runner end to end on a real cluster (issue 5 item 6), run by `npm run e2e`
 * (scripts/e2e-kind.sh deploys the webhook first). Each scenario asserts what really happened in
 * the cluster: what kubectl printed, what the pod's files and logs hold, which Events were written.
 * The kubelet, not a stand-in, calls the hooks here.
 *
 * The app (kube.ts APP_SCRIPT) logs its SIGTERM and its exit with `date +%s` and the content of
 * /tmp/prestop, which PreStop hooks write: ordering and timing are read from the app's own log.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_HOOKS,
  ANNOTATION_STATUS,
  ENV_MARKER,
  HEADER_TOKEN,
  LABEL_NAMESPACE_INJECTION,
  LABEL_POD_INJECT,
  NAMESPACE_INJECTION_ENABLED,
  SIDECAR_CONTAINER_NAME,
  hookPath,
} from '../../../common/names.js';
import {
  LogFollower,
  SELF_SIGNED_SECRET,
  SIDECAR_ROLE_BINDING,
  WEBHOOK_CONFIG,
  WEBHOOK_NAME,
  WEBHOOK_NAMESPACE,
  appPod,
  appTimeline,
  containerLogs,
  createNamespace,
  createPod,
  deleteNamespaces,
  dryRunCreate,
  getJson,
  kubectl,
  kubectlOk,
  podEvents,
  sidecarOf,
  uniqueName,
  waitFor,
  waitReady,
} from './kube.js';

const run = uniqueName('hr-e2e');
const NS_ON = `${run}-on`; // opted in
const NS_OFF = `${run}-off`; // not labelled
const NS_BASELINE = `${run}-baseline`; // opted in, Pod Security "baseline" enforced
const namespaces = [NS_ON, NS_OFF, NS_BASELINE];
const APP_UID = 1000;

/** A pod the rolling-restart scenario checks is left alone; set by the PostStart scenario. */
let longLived: { name: string; uid: string; restarts: number } | undefined;

before(async () => {
  const mwc = await kubectl(['get', 'mutatingwebhookconfiguration', WEBHOOK_CONFIG, '-o', 'json']);
  assert.equal(mwc.code, 0, `hook-runner is not installed (no MutatingWebhookConfiguration ${WEBHOOK_CONFIG}): ${mwc.stderr}`);
  await createNamespace(NS_ON, { [LABEL_NAMESPACE_INJECTION]: NAMESPACE_INJECTION_ENABLED });
  await createNamespace(NS_OFF, {});
  await createNamespace(NS_BASELINE, {
    [LABEL_NAMESPACE_INJECTION]: NAMESPACE_INJECTION_ENABLED,
    'pod-security.kubernetes.io/enforce': 'baseline',
  });
  // The webhook may still be bootstrapping (self-signed caBundle, namespace cache): wait until a
  // server-side dry run in the opted-in namespace comes back injected.
  const probe = appPod('probe', NS_ON, { hooks: { app: { postStart: [{ sleep: { seconds: 1 } }] } } });
  await waitFor('the webhook to inject a dry-run pod', 180_000, async () => {
    const { pod, run: r } = await dryRunCreate(probe);
    if (!pod) throw new Error(r.stderr.trim());
    return sidecarOf(pod, SIDECAR_CONTAINER_NAME) !== undefined;
  });
});

after(async () => {
  if (process.env.E2E_KEEP === '1') {
    process.stdout.write(`E2E_KEEP=1: namespaces kept: ${namespaces.join(' ')}\n`);
    return;
  }
  await deleteNamespaces(namespaces);
});

test("injects the sidecar, and kubectl shows the webhook's warnings", { timeout: 60_000 }, async () => {
  // preStop worst case 40 s in a 30 s grace period with 5 s of shutdown: the budget warning (DESIGN §7).
  const pod = appPod('warned', NS_ON, { graceSeconds: 30, hooks: { app: { shutdownSeconds: 5, preStop: [{ sleep: { seconds: 40 } }] } } });
  const { run: r, pod: out } = await dryRunCreate(pod);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^Warning: .*preStop may take up to 40s/m, 'kubectl prints the admission warning');
  assert.ok(out);
  const sidecar = sidecarOf(out, SIDECAR_CONTAINER_NAME);
  assert.ok(sidecar, 'the sidecar is injected');
  assert.deepEqual(sidecar.args, ['sidecar']);
  assert.equal(out.spec!.shareProcessNamespace, true);
  assert.ok(out.metadata!.annotations![ANNOTATION_STATUS], `${ANNOTATION_STATUS} is written`);
  const app = out.spec!.containers.find((c) => c.name === 'app')!;
  const get = app.lifecycle?.preStop?.httpGet;
  assert.equal(get?.path, hookPath('app', 'preStop'));
  assert.ok(
    get?.httpHeaders?.some((h) => h.name === HEADER_TOKEN && h.value.length >= 32),
    'the kubelet sends the per-pod token',
  );
  assert.ok(app.env?.some((e) => e.name === ENV_MARKER && e.value === 'app'));
});

test('an invalid hooks annotation is denied with the located message', { timeout: 60_000 }, async () => {
  const pod = appPod('invalid', NS_ON, { hooks: { app: { preStop: [{ httpGet: { path: '/drain', port: 70000 } }] } } });
  const r = await createPod(pod);
  assert.notEqual(r.code, 0, 'the pod must not be created');
  assert.match(r.stderr, new RegExp(`admission webhook "${WEBHOOK_NAME.replace(/\./g, '\\.')}" denied the request`));
  assert.ok(r.stderr.includes(`${ANNOTATION_HOOKS}: app.preStop[0].httpGet.port: `), r.stderr);
  const get = await kubectl(['-n', NS_ON, 'get', 'pod', 'invalid']);
  assert.notEqual(get.code, 0, 'no such pod exists');
});

test('a PostStart exec hook runs inside the app container, as its user, and the sidecar logs its output', { timeout: 240_000 }, async () => {
  const name = 'poststart-exec';
  const pod = appPod(name, NS_ON, {
    runAsUser: APP_UID,
    hooks: { app: { postStart: [{ exec: { command: ['sh', '-c', 'echo "ran-as-$(id -u)" > /tmp/poststart; echo e2e-poststart-output'] } }] } },
  });
  const r = await createPod(pod);
  assert.equal(r.code, 0, r.stderr);
  await waitReady(NS_ON, name);
  const file = await kubectlOk(['-n', NS_ON, 'exec', name, '-c', 'app', '--', 'cat', '/tmp/poststart']);
  assert.equal(file.trim(), `ran-as-${APP_UID}`, "the file is in the app container's filesystem, written as the app's uid");
  const logs = await waitFor('the hook output in the sidecar log', 30_000, async () => {
    const l = await containerLogs(NS_ON, name, SIDECAR_CONTAINER_NAME);
    return l.includes('e2e-poststart-output') && l;
  });
  assert.ok(
    logs.split('\n').some((l) => l.startsWith('{') && l.includes('e2e-poststart-output')),
    'a JSON log line carries the output',
  );
  const live = await getJson<V1Pod>(['-n', NS_ON, 'get', 'pod', name]);
  const app = live.status!.containerStatuses!.find((c) => c.name === 'app')!;
  assert.equal(app.restartCount, 0);
  longLived = { name, uid: live.metadata!.uid!, restarts: app.restartCount };
});

test('a failing PostStart restarts the container, with a FailedPostStartHook Event naming the handler', { timeout: 240_000 }, async () => {
  const name = 'poststart-fails';
  const pod = appPod(name, NS_ON, { hooks: { app: { postStart: [{ exec: { command: ['sh', '-c', 'echo e2e-fail-output; exit 3'] } }] } } });
  const r = await createPod(pod);
  assert.equal(r.code, 0, r.stderr);
  await waitFor('the app container to be restarted after its PostStart failed', 180_000, async () => {
    const p = await getJson<V1Pod>(['-n', NS_ON, 'get', 'pod', name]);
    return (p.status?.containerStatuses?.find((c) => c.name === 'app')?.restartCount ?? 0) >= 1;
  });
  const rb = await kubectl(['-n', NS_ON, 'get', 'rolebinding', SIDECAR_ROLE_BINDING]);
  assert.equal(rb.code, 0, `the webhook keeps RoleBinding ${SIDECAR_ROLE_BINDING} in opted-in namespaces, so sidecars may write Events: ${rb.stderr}`);
  const events = await waitFor('our FailedPostStartHook Event', 60_000, async () => {
    const ev = (await podEvents(NS_ON, name)).filter((e) => e.reason === 'FailedPostStartHook');
    return ev.some((e) => /\bexec\b/.test(e.message ?? '')) && ev;
  });
  assert.ok(events.length >= 1);
  const ours = events.find((e) => /\bexec\b/.test(e.message ?? ''))!;
  assert.match(ours.message!, /\b3\b/, `the Event gives the exit code: ${ours.message}`);
  assert.ok(!(ours.message ?? '').includes('e2e-fail-output'), 'hook output stays out of Events unless eventOutput: true');
  const logs = await containerLogs(NS_ON, name, SIDECAR_CONTAINER_NAME);
  assert.ok(logs.includes('e2e-fail-output'), "the sidecar log carries the failing hook's output");
});

test('under Pod Security "baseline": an exec hook is denied with our message, an httpGet hook runs', { timeout: 240_000 }, async () => {
  const denied = await createPod(appPod('exec-denied', NS_BASELINE, { hooks: { app: { postStart: [{ exec: { command: ['true'] } }] } } }));
  assert.notEqual(denied.code, 0, 'the exec pod is refused');
  assert.match(denied.stderr, new RegExp(`admission webhook "${WEBHOOK_NAME.replace(/\./g, '\\.')}" denied the request`), 'by hook-runner, not by PodSecurity');
  assert.ok(denied.stderr.includes(ANNOTATION_HOOKS) && denied.stderr.includes('app.postStart[0]'), `the message locates the hook: ${denied.stderr}`);
  assert.match(denied.stderr, /SYS_PTRACE/, 'and names the capability the level forbids');
  assert.match(denied.stderr, /httpGet/, 'and the handler kinds that would work');

  const name = 'httpget-ok';
  const script = 'mkdir -p /www && echo ok > /www/warmup && exec httpd -f -p 8080 -h /www';
  const pod = appPod(name, NS_BASELINE, {
    script,
    ports: [{ name: 'http', containerPort: 8080 }],
    hooks: { app: { postStart: [{ httpGet: { path: '/warmup', port: 'http' }, retries: 5, retryDelaySeconds: 1 }] } },
  });
  const r = await createPod(pod);
  assert.equal(r.code, 0, r.stderr);
  await waitReady(NS_BASELINE, name);
  const live = await getJson<V1Pod>(['-n', NS_BASELINE, 'get', 'pod', name]);
  assert.equal(live.status!.containerStatuses!.find((c) => c.name === 'app')!.restartCount, 0, 'PostStart succeeded (a failure kills the container)');
  const logs = await containerLogs(NS_BASELINE, name, SIDECAR_CONTAINER_NAME);
  assert.match(logs, /httpGet/, 'the sidecar logged the httpGet handler');
});

/** Creates a pod, follows its app log, deletes it (optionally with --grace-period), returns the app's timeline. */
async function deleteAndFollow(name: string, pod: V1Pod, gracePeriod?: number) {
  const r = await createPod(pod);
  assert.equal(r.code, 0, r.stderr);
  await waitReady(NS_ON, name);
  const follower = new LogFollower(NS_ON, name, 'app', 240_000);
  try {
    await waitFor('the log follower to attach', 30_000, async () => follower.text.includes('STARTED'), 500);
    const started = Date.now();
    const del = await kubectl(['-n', NS_ON, 'delete', 'pod', name, '--wait=true', '--timeout=200s', ...(gracePeriod === undefined ? [] : [`--grace-period=${gracePeriod}`])], { timeoutMs: 220_000 });
    assert.equal(del.code, 0, del.stderr);
    const log = await follower.ended();
    return { log, t: appTimeline(log), deleteSeconds: (Date.now() - started) / 1000 };
  } finally {
    follower.stop();
  }
}

test('on delete, PreStop runs before SIGTERM and the app keeps its shutdownSeconds', { timeout: 300_000 }, async () => {
  const name = 'prestop-order';
  const pod = appPod(name, NS_ON, {
    runAsUser: APP_UID,
    graceSeconds: 30,
    shutdownSeconds: 5,
    hooks: {
      app: {
        shutdownSeconds: 5,
        preStop: [{ exec: { command: ['sh', '-c', 'date +%s > /tmp/prestop; echo e2e-prestop-output'] } }, { sleep: { seconds: 3 } }],
      },
    },
  });
  const { log, t } = await deleteAndFollow(name, pod);
  assert.ok(t.term !== undefined, `the app got SIGTERM: ${log}`);
  assert.ok(t.prestop !== undefined, `PreStop had run when SIGTERM arrived (/tmp/prestop existed): ${log}`);
  assert.ok(t.term - t.prestop >= 2, `the preStop sleep (3 s) ran before SIGTERM: prestop ${t.prestop}, TERM ${t.term}`);
  assert.ok(t.exited !== undefined, `the app finished its 5 s shutdown instead of being killed: ${log}`);
  assert.ok(t.exited - t.term >= 4, `shutdown took ${t.exited - t.term} s`);
});

test('kubectl delete --grace-period: the kubelet abandons PreStop at the shortened grace and gives the app its 2 s minimum (the sidecar cannot see it without pods get)', {
  timeout: 300_000,
}, async () => {
  const name = 'prestop-shortened';
  // Declared grace 120 s; the preStop worst case (5 + 100 s) fits in 120 − 5. Deleting with --grace-period=20: the
  // sidecar's budget stays 120 − 5 (reading deletionGracePeriodSeconds would need `pods get`, which no pod holds,
  // docs/sidecar.md), so the kubelet itself abandons PreStop at 20 s and sends SIGTERM with its 2 s minimum.
  const pod = appPod(name, NS_ON, {
    runAsUser: APP_UID,
    graceSeconds: 120,
    shutdownSeconds: 5,
    hooks: {
      app: {
        shutdownSeconds: 5,
        preStop: [
          { exec: { command: ['sh', '-c', 'date +%s > /tmp/prestop'] }, timeoutSeconds: 5 },
          { sleep: { seconds: 100 }, timeoutSeconds: 110 },
        ],
      },
    },
  });
  const { log, t, deleteSeconds } = await deleteAndFollow(name, pod, 20);
  assert.ok(t.term !== undefined && t.prestop !== undefined, `PreStop ran, then SIGTERM: ${log}`);
  assert.ok(t.term - t.prestop >= 17, `SIGTERM came ${t.term - t.prestop} s after PreStop started: not cut at 15 s by the sidecar, abandoned at 20 s by the kubelet`);
  assert.ok(t.exited === undefined || t.exited - t.term < 4, `the app got the kubelet's 2 s minimum, not its 5 s of shutdown: ${log}`);
  assert.ok(deleteSeconds < 60, `the pod was gone in ${deleteSeconds} s, within the 20 s grace period plus API latency`);
});

test('opted-out pods and other namespaces are left untouched', { timeout: 60_000 }, async () => {
  const hooks = { app: { postStart: [{ sleep: { seconds: 1 } }] } };
  for (const [pod, why] of [
    [appPod('opted-out', NS_ON, { hooks, labels: { [LABEL_POD_INJECT]: 'false' } }), `${LABEL_POD_INJECT}: "false"`],
    [appPod('elsewhere', NS_OFF, { hooks }), 'a namespace without the opt-in label'],
  ] as const) {
    const { run: r, pod: out } = await dryRunCreate(pod);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(out);
    assert.equal(sidecarOf(out, SIDECAR_CONTAINER_NAME), undefined, `${why}: no sidecar`);
    assert.equal(out.metadata!.annotations?.[ANNOTATION_STATUS], undefined, `${why}: no status annotation`);
    assert.deepEqual(
      out.spec!.containers.map((c) => c.lifecycle),
      [undefined],
      `${why}: lifecycle untouched`,
    );
    assert.doesNotMatch(r.stderr, /Warning:/, `${why}: no warnings`);
  }
  const rb = await kubectl(['-n', NS_OFF, 'get', 'rolebinding', SIDECAR_ROLE_BINDING]);
  assert.notEqual(rb.code, 0, 'no sidecar RoleBinding in a namespace that did not opt in');
});

test('restarting the webhook pods loses nothing: admissions keep working, TLS and running pods are kept', { timeout: 420_000 }, async () => {
  const caBundle = async () => (await getJson<V1MutatingWebhookConfiguration>(['get', 'mutatingwebhookconfiguration', WEBHOOK_CONFIG])).webhooks![0]!.clientConfig.caBundle;
  const selfSigned = (await kubectlOk(['-n', WEBHOOK_NAMESPACE, 'get', 'deployment', 'hook-runner', '-o', 'jsonpath={.spec.template.spec.containers[0].args}'])).includes('--self-signed');
  const secretUid = async () => (selfSigned ? kubectlOk(['-n', WEBHOOK_NAMESPACE, 'get', 'secret', SELF_SIGNED_SECRET, '-o', 'jsonpath={.metadata.uid}']) : '');
  const caBefore = await caBundle();
  const secretBefore = await secretUid();
  assert.ok(caBefore, 'caBundle is set');

  const restart = await kubectl(['-n', WEBHOOK_NAMESPACE, 'rollout', 'restart', 'deployment/hook-runner']);
  assert.equal(restart.code, 0, restart.stderr);
  const rollout = kubectl(['-n', WEBHOOK_NAMESPACE, 'rollout', 'status', 'deployment/hook-runner', '--timeout=300s'], { timeoutMs: 320_000 });
  let finished = false;
  void rollout.then(() => (finished = true));
  const failures: string[] = [];
  let admitted = 0;
  // Admission requests all through the rollout, one a second, bounded.
  for (let i = 0; i < 300 && !finished; i++) {
    const { run: r, pod } = await dryRunCreate(appPod(`during-restart-${i}`, NS_ON, { hooks: { app: { postStart: [{ sleep: { seconds: 1 } }] } } }));
    if (!pod || !sidecarOf(pod, SIDECAR_CONTAINER_NAME)) failures.push(`request ${i}: ${r.code === 0 ? 'not injected' : r.stderr.trim()}`);
    else admitted++;
    await new Promise((res) => setTimeout(res, 1000));
  }
  const status = await rollout;
  assert.equal(status.code, 0, status.stderr);
  assert.deepEqual(failures, [], `admissions failed during the rollout (${admitted} succeeded)`);
  assert.ok(admitted >= 1, 'at least one admission ran during the rollout');
  assert.equal(await caBundle(), caBefore, 'the caBundle survived the restart');
  assert.equal(await secretUid(), secretBefore, 'the self-signed Secret survived the restart (same object)');
  if (longLived) {
    const live = await getJson<V1Pod>(['-n', NS_ON, 'get', 'pod', longLived.name]);
    assert.equal(live.metadata!.uid, longLived.uid);
    assert.equal(live.status!.containerStatuses!.find((c) => c.name === 'app')!.restartCount, longLived.restarts, 'running hooked pods are not disturbed');
  }
});
