/**
 * The benchmark's code path on a tiny load: every key of bench/results.json is produced and is a
 * finite number. No timing is judged here (CONTRIBUTING: timings belong in `npm run bench`).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { SIDECAR_ENTRY as CLI } from '../bench/sidecar.js';
import { PROFILES, runBench } from '../bench/run.js';

const REQUIRED = [
  'admission.rps',
  'admission.p50_ms',
  'admission.p99_ms',
  'admission.baseline_rps',
  'admission.baseline_p99_ms',
  'admission.ratio_rps',
  'admission.ratio_p99',
  ...[1, 16, 64].flatMap((c) => ['rps', 'p50_ms', 'p99_ms', 'baseline_rps', 'baseline_p99_ms', 'ratio_rps', 'ratio_p99'].map((k) => `admission.c${c}.${k}`)),
  'mutation_us.c1',
  'mutation_us.c10',
  'mutation_us.c50',
  'mutation_us.cold_c1',
  'mutation_us.cold_c50',
  'sidecar.rss_mb',
  'sidecar.baseline_rss_mb',
  'sidecar.ready_ms',
  'sidecar.baseline_start_ms',
  'sidecar.dispatch_p50_ms',
  'sidecar.dispatch_p99_ms',
  'sidecar.prestop_deadline_error_ms',
  'sidecar.ready_ratio',
  'sidecar.rss_ratio',
  'sidecar.rss_after_calls_ratio',
  'sidecar.idle_wakeups_per_min',
  'sidecar.event_loop_max_ms',
];

test('bench: a tiny run yields every results.json key as a finite number', { timeout: 120_000 }, async (t) => {
  if (!existsSync(CLI)) {
    t.skip(`needs the built CLI (${CLI}): run npm run build`);
    return;
  }
  const r = await runBench(PROFILES.smoke);
  for (const k of REQUIRED) assert.ok(Number.isFinite(r[k]), `${k} is ${r[k]}`);
  // The smoke profile takes no exec_vs_runtime samples: the step says so instead of a figure.
  assert.equal(r['exec_vs_runtime.skipped'], 'not run in this profile');
  for (const [k, v] of Object.entries(r)) assert.equal(typeof v, k.endsWith('.skipped') ? 'string' : 'number', `${k} is ${typeof v}`);
});
