/**
 * `npm run bench [-- --quick] [-- --only admission,mutation,sidecar,exec] [-- --out FILE]`
 *
 * Measures the webhook and the sidecar against baselines taken in the same run (issue 6), prints
 * a table and writes bench/results.json (flat keys, numbers; `*.skipped` keys say why a step did not run). Every figure is a median over
 * rounds. All traffic goes to 127.0.0.1; every child process is stopped before exit.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchAdmission, CONCURRENCY } from './admission.js';
import { benchMutation, MUTATION_SIZES } from './mutation.js';
import { benchExecVsRuntime } from './exec-runtime.js';
import { benchSidecar } from './sidecar.js';

export type Part = 'admission' | 'mutation' | 'sidecar' | 'exec';
export const PARTS: readonly Part[] = ['admission', 'mutation', 'sidecar', 'exec'];

export interface Profile {
  admission: { rounds: number; durationSec: number; warmupSec: number; concurrency?: readonly number[] };
  mutation: { rounds: number; budgetMs: number };
  sidecar: { startRounds: number; idleMs: number; dispatchCalls: number; prestopCalls: number; calls: number; settleMs: number; idleWindowMs: number };
  /** Alternating samples of the exec hook vs `podman exec` (0: skipped). */
  exec: { samples: number };
}

export const PROFILES: Record<'full' | 'quick' | 'smoke', Profile> = {
  full: {
    admission: { rounds: 5, durationSec: 3, warmupSec: 2 },
    mutation: { rounds: 7, budgetMs: 400 },
    sidecar: { startRounds: 7, idleMs: 1500, dispatchCalls: 200, prestopCalls: 9, calls: 1000, settleMs: 30_000, idleWindowMs: 60_000 },
    exec: { samples: 50 },
  },
  quick: {
    admission: { rounds: 3, durationSec: 1, warmupSec: 0.5 },
    mutation: { rounds: 5, budgetMs: 100 },
    sidecar: { startRounds: 5, idleMs: 1000, dispatchCalls: 100, prestopCalls: 6, calls: 1000, settleMs: 25_000, idleWindowMs: 20_000 },
    exec: { samples: 20 },
  },
  // The code path on a tiny load, for test/bench-smoke.test.ts: no timing is judged there.
  smoke: {
    admission: { rounds: 1, durationSec: 0.3, warmupSec: 0.2, concurrency: [1, 16, 64] },
    mutation: { rounds: 1, budgetMs: 10 },
    sidecar: { startRounds: 1, idleMs: 200, dispatchCalls: 3, prestopCalls: 1, calls: 8, settleMs: 100, idleWindowMs: 300 },
    exec: { samples: 0 },
  },
};

/** Numbers, plus `*.skipped` keys whose value says why a step did not run. */
export type Results = Record<string, number | string>;
type Numbers = Record<string, number>;

export async function runBench(profile: Profile, parts: readonly Part[] = PARTS, log: (l: string) => void = () => {}): Promise<Results> {
  const out: Results = {};
  if (parts.includes('mutation')) {
    const m = benchMutation(profile.mutation);
    for (const [k, v] of Object.entries(m.mutation_us)) out[`mutation_us.${k}`] = Math.round(v * 10) / 10;
    for (const [k, v] of Object.entries(m.review_us)) out[`review_us.${k}`] = Math.round(v * 10) / 10;
    log(`mutation: ${MUTATION_SIZES.map((n) => `${n} containers ${out[`mutation_us.c${n}`]} µs`).join(', ')}`);
  }
  if (parts.includes('admission')) Object.assign(out, await benchAdmission({ ...profile.admission, log }));
  if (parts.includes('sidecar')) Object.assign(out, await benchSidecar({ ...profile.sidecar, log }));
  if (parts.includes('exec')) Object.assign(out, await benchExecVsRuntime({ ...profile.exec, log }));
  return out;
}

const fmt = (v: number | undefined, digits = 2): string => (v === undefined ? '-' : Number.isInteger(v) ? String(v) : v.toFixed(digits));
const ok = (cond: boolean | undefined): string => (cond === undefined ? '' : cond ? 'met' : 'NOT met');

/** The readable table: figure, value, baseline, ratio, target. */
export function table(results: Results): string {
  const r = Object.fromEntries(Object.entries(results).filter(([, v]) => typeof v === 'number')) as Numbers;
  const rows: string[][] = [['figure', 'value', 'baseline', 'ratio', 'target', '']];
  for (const c of CONCURRENCY) {
    const p = `admission.c${c}`;
    if (r[`${p}.rps`] === undefined) continue;
    rows.push([`admission c=${c} rps`, fmt(r[`${p}.rps`], 0), fmt(r[`${p}.baseline_rps`], 0), fmt(r[`${p}.ratio_rps`]), '>= 0.8', ok(r[`${p}.ratio_rps`]! >= 0.8)]);
    rows.push([`admission c=${c} p50 ms`, fmt(r[`${p}.p50_ms`]), fmt(r[`${p}.baseline_p50_ms`]), fmt(r[`${p}.p50_ms`]! / r[`${p}.baseline_p50_ms`]!), '', '']);
    rows.push([`admission c=${c} p99 ms`, fmt(r[`${p}.p99_ms`]), fmt(r[`${p}.baseline_p99_ms`]), fmt(r[`${p}.ratio_p99`]), '<= 1.5', ok(r[`${p}.ratio_p99`]! <= 1.5)]);
  }
  for (const n of MUTATION_SIZES) {
    if (r[`mutation_us.c${n}`] === undefined) continue;
    const perC = r[`mutation_us.c${n}`]! / n;
    rows.push([
      `mutation ${n} container(s) µs`,
      fmt(r[`mutation_us.c${n}`], 1),
      '',
      `${fmt(perC, 1)}/c`,
      'linear',
      n === 50 ? ok(perC <= (r['mutation_us.c1']! / 1) * 1.1 || perC <= (r['mutation_us.c10']! / 10) * 1.1) : '',
    ]);
    rows.push([`  cold annotation (YAML parse) µs`, fmt(r[`mutation_us.cold_c${n}`], 1), '', `${fmt(r[`mutation_us.cold_c${n}`]! / n, 1)}/c`, '', '']);
    rows.push([`  whole review (+patch) µs`, fmt(r[`review_us.c${n}`], 1), '', '', '', '']);
  }
  if (r['sidecar.rss_mb'] !== undefined) {
    rows.push(['sidecar idle RSS MB', fmt(r['sidecar.rss_mb'], 1), fmt(r['sidecar.baseline_rss_mb'], 1), fmt(r['sidecar.rss_ratio']), '<= 1.15', ok(r['sidecar.rss_ratio']! <= 1.15)]);
    if (r['sidecar.rss_after_calls_mb'] !== undefined) {
      rows.push([
        '  after the hook calls, settled',
        fmt(r['sidecar.rss_after_calls_mb'], 1),
        fmt(r['sidecar.rss_after_calls_baseline_mb'], 1),
        fmt(r['sidecar.rss_after_calls_ratio']),
        '<= 1.15',
        ok(r['sidecar.rss_after_calls_ratio']! <= 1.15),
      ]);
      rows.push(['  right after the hook calls', fmt(r['sidecar.rss_after_calls_peak_mb'], 1), '', '', '', '']);
    }
    rows.push(['sidecar spawn→ready ms', fmt(r['sidecar.ready_ms'], 1), fmt(r['sidecar.baseline_start_ms'], 1), fmt(r['sidecar.ready_ratio']), '<= 1.5', ok(r['sidecar.ready_ratio']! <= 1.5)]);
    if (r['sidecar.idle_wakeups_per_min'] !== undefined) {
      rows.push(['sidecar idle wake-ups /min', fmt(r['sidecar.idle_wakeups_per_min'], 1), fmt(r['sidecar.baseline_idle_wakeups_per_min'], 1), '', '0', ok(r['sidecar.idle_wakeups_per_min']! === 0)]);
      rows.push(['  one-off, 2 s to settle after ready', fmt(r['sidecar.startup_wakeups'], 0), '', '', '', '']);
    }
    rows.push(['sidecar dispatch p50 ms (sleep 0)', fmt(r['sidecar.dispatch_p50_ms']), fmt(r['sidecar.direct_get_p50_ms']), '', '<= 2', ok(r['sidecar.dispatch_p50_ms']! <= 2)]);
    rows.push(['sidecar dispatch p99 ms (sleep 0)', fmt(r['sidecar.dispatch_p99_ms']), '', '', '', '']);
    rows.push(['sidecar dispatch p50 ms (httpGet)', fmt(r['sidecar.dispatch_http_p50_ms']), '', '', '', '']);
    rows.push(['sidecar dispatch p99 ms (httpGet)', fmt(r['sidecar.dispatch_http_p99_ms']), '', '', '', '']);
    if (r['sidecar.event_loop_max_ms'] !== undefined)
      rows.push(['sidecar event loop max ms after ready', fmt(r['sidecar.event_loop_max_ms'], 1), '', '', '<= 50', ok(r['sidecar.event_loop_max_ms']! <= 50)]);
    rows.push([
      'sidecar preStop deadline error ms',
      fmt(r['sidecar.prestop_deadline_error_ms'], 1),
      '',
      `max ${fmt(r['sidecar.prestop_deadline_error_max_ms'], 1)}`,
      '<= 100',
      ok(r['sidecar.prestop_deadline_error_ms']! <= 100),
    ]);
  }
  if (r['exec_vs_runtime.ratio_p50'] !== undefined) {
    rows.push([
      'exec hook p50 ms vs podman exec',
      fmt(r['exec_vs_runtime.hook_p50_ms'], 1),
      fmt(r['exec_vs_runtime.podman_exec_p50_ms'], 1),
      fmt(r['exec_vs_runtime.ratio_p50']),
      '<= 0.35',
      ok(r['exec_vs_runtime.ratio_p50']! <= 0.35),
    ]);
    rows.push([
      'exec hook p99 ms vs podman exec',
      fmt(r['exec_vs_runtime.hook_p99_ms'], 1),
      fmt(r['exec_vs_runtime.podman_exec_p99_ms'], 1),
      fmt(r['exec_vs_runtime.ratio_p99']),
      '<= 0.35',
      ok(r['exec_vs_runtime.ratio_p99']! <= 0.35),
    ]);
    if (r['exec_vs_runtime.ratio_runc_p50'] !== undefined) {
      rows.push([
        'exec hook p50 ms vs runc exec',
        fmt(r['exec_vs_runtime.hook_p50_ms'], 1),
        fmt(r['exec_vs_runtime.runc_exec_p50_ms'], 1),
        fmt(r['exec_vs_runtime.ratio_runc_p50']),
        '<= 0.35',
        ok(r['exec_vs_runtime.ratio_runc_p50']! <= 0.35),
      ]);
      rows.push(['exec hook p99 ms vs runc exec', fmt(r['exec_vs_runtime.hook_p99_ms'], 1), fmt(r['exec_vs_runtime.runc_exec_p99_ms'], 1), fmt(r['exec_vs_runtime.ratio_runc_p99']), '', '']);
    }
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row, j) => row.map((cell, i) => (i === 0 ? cell.padEnd(w[i]!) : cell.padStart(w[i]!))).join('  ') + (j === 0 ? `\n${w.map((n) => '-'.repeat(n)).join('  ')}` : '')).join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string', default: fileURLToPath(new URL('./results.json', import.meta.url)) },
    },
  });
  const parts = values.only ? (values.only.split(',') as Part[]) : PARTS;
  for (const p of parts) if (!PARTS.includes(p)) throw new Error(`--only ${values.only}: unknown part ${p}; expected ${PARTS.join(', ')}`);
  const profile = values.quick ? PROFILES.quick : PROFILES.full;
  const t0 = Date.now();
  const log = (l: string) => process.stderr.write(`${l}\n`);
  log(`hook-runner bench (${values.quick ? 'quick' : 'full'}): node ${process.version}, ${cpus().length} CPU(s) ${cpus()[0]?.model ?? ''}`);
  const results = await runBench(profile, parts, log);
  writeFileSync(values.out, `${JSON.stringify(results, null, 2)}\n`);
  const skipped = Object.entries(results)
    .filter(([, v]) => typeof v === 'string')
    .map(([k, v]) => `${k}: ${v}\n`)
    .join('');
  process.stdout.write(`${table(results)}\n${skipped ? `\n${skipped}` : ''}\nwrote ${values.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
