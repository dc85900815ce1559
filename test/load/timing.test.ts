/**
 * Wall-clock timing of the sidecar in the namespace harness (test/harness/pod.ts): part of
 * `npm run test:load`, not `npm test`, because it measures time on a real clock and so depends on
 * the machine's load. `npm test` proves the same logic on a mocked clock (test/sidecar-unit.test.ts)
 * and the behaviour without timing (test/sidecar-harness.test.ts).
 *
 * The stated margin (docs/sidecar.md): the sidecar answers a PreStop call DEADLINE_MARGIN_MS (250 ms)
 * before the app's shutdownSeconds begin, for the answer's way back to the kubelet and the stop
 * signal; the app is asserted at least shutdownSeconds minus that margin, so up to 500 ms of latency.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEADLINE_MARGIN_MS } from '../../common/budget.js';
import { kubeletCall, lastReport, until, withPod } from '../harness/pod.js';

test("the seed's budget case scaled down, on the wall clock: grace 6 s, a 5.5 s PreStop, 1 s shutdown: the app gets its second, less the stated margin", async (t) => {
  const grace = 6;
  const shutdownSeconds = 1;
  await withPod(
    t,
    {
      name: 'budget-timing',
      graceSeconds: grace,
      hooks: { app: { shutdownSeconds, preStop: [{ exec: { command: ['sleep', '5.5'] }, timeoutSeconds: 10 }] } },
      containers: [{ name: 'app', uid: 1000, env: { APP_SHUTDOWN_MS: '900' } }],
    },
    async (pod) => {
      const r = await pod.terminate('app');
      assert.equal(r.preStop!.ok, false, 'cut at the deadline');
      assert.equal((await lastReport(pod, 'app', 'preStop')).outcome, 'deadline');
      const graceEnd = r.preStop!.start + grace * 1000;
      const term = await until('SIGTERM at the app', () => pod.appEvents('app').find((e) => e.ev === 'signal' && e.sig === 'SIGTERM'), 10_000);
      const share = graceEnd - term.t;
      t.diagnostic(`the app got SIGTERM ${share} ms before the grace ended (shutdownSeconds ${shutdownSeconds} s + margin ${DEADLINE_MARGIN_MS} ms, less the latency)`);
      assert.ok(share >= shutdownSeconds * 1000 - DEADLINE_MARGIN_MS, `app got SIGTERM ${share} ms before the grace ended; want ≥ ${shutdownSeconds * 1000 - DEADLINE_MARGIN_MS}`);
      assert.equal(r.killAt, undefined, 'and finished its own shutdown, not SIGKILLed');
    },
  );
});

test('a target that never appears, on the wall clock: the call waits the 10 s discovery bound, no less', async (t) => {
  await withPod(
    t,
    { name: 'absent-timing', graceSeconds: 5, hooks: { app: { postStart: [{ signal: { name: 'SIGUSR1' } }] } }, containers: [{ name: 'app', uid: 1000, start: false }] },
    async (pod) => {
      const hook = pod.injected.spec.containers[0].lifecycle.postStart.httpGet;
      const r = await kubeletCall(hook, 30_000);
      assert.equal(r.ok, false);
      t.diagnostic(`answered after ${r.end - r.start} ms`);
      assert.ok(r.end - r.start >= 10_000 - 50 && r.end - r.start < 20_000, `waited the 10 s discovery bound (${r.end - r.start} ms)`);
    },
  );
});
