/**
 * Issue 12.9: exec hooks run in (and are charged to) the sidecar's cgroup, so a hook that needs more
 * memory than the sidecar's limit gets the sidecar OOM-killed mid-hook. Whatever kills it, the
 * kubelet must see a failed hook, never a success: the call's connection dies with the process, and
 * the kubelet judges a lifecycle httpGet only by transport errors (DESIGN §6).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kubeletCall, until, withPod } from './harness/pod.js';

test('the sidecar killed mid-hook (SIGKILL, as the OOM killer does): the kubelet sees a failed hook, never a success', async (t) => {
  const hooks = { app: { preStop: [{ sleep: { seconds: 0.2 } }, { sleep: { seconds: 60 } }] } };
  await withPod(t, { name: 'crash', graceSeconds: 90, hooks, containers: [{ name: 'app', uid: 1000 }] }, async (pod) => {
    const call = kubeletCall({ path: '/v1/hooks/app/preStop', port: pod.port }, 30_000, pod.token);
    // The first handler has finished, so the call is inside the 60 s sleep: kill the sidecar there.
    await until('the first preStop handler to finish', () => pod.sidecarLines().some((l) => l.msg === 'hook handler attempt succeeded' && l.phase === 'preStop'), 10_000);
    assert.equal(pod.sidecarExit, undefined, 'the sidecar is still running before the kill');
    process.kill(pod.sidecarPid, 'SIGKILL');
    const result = await call;
    assert.equal(result.ok, false, `the call must fail, got status ${result.status}`);
    assert.equal(result.status, undefined, 'no HTTP status reached the kubelet');
    assert.match(result.error ?? '', /socket hang up|ECONNRESET|EPIPE/, 'a transport error, as the kubelet counts a failed hook');
    const exit = await pod.sidecarExited;
    assert.equal(exit.signal, 'SIGKILL');
  });
});
