/**
 * Admission under load: the real webhook and a no-op baseline, each in its own child process,
 * driven by autocannon from the runner's process over HTTPS with keep-alive. Per concurrency and
 * round the two servers get the same load back to back (order alternating), so both see the same
 * machine; figures are medians over rounds. Latencies are taken from autocannon's per-response
 * event (float ms) because its histogram rounds to whole milliseconds.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { makeSelfSignedBundle } from '../webhook/cluster/tls.js';
import { MIX, admissionReview } from './fixtures.js';
import { median, percentile, round, sleep } from './stats.js';

export const CONCURRENCY = [1, 16, 64] as const;
const SERVER_ENTRY = fileURLToPath(new URL('./servers.ts', import.meta.url));
/** Bound on stored latency samples per load run. */
const MAX_SAMPLES = 2_000_000;

interface LoadStats {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
}

interface ServerChild {
  child: ChildProcess;
  port: number;
}

/** Starts a server child (tsx loader, as the runner) and waits for its port, bounded. */
async function startServerChild(kind: 'webhook' | 'baseline', tls: { cert: string; key: string }, extraArgv: string[] = []): Promise<ServerChild> {
  const child = fork(SERVER_ENTRY, [kind], {
    execArgv: ['--import', 'tsx', ...extraArgv],
    env: { ...process.env, BENCH_TLS_CERT: tls.cert, BENCH_TLS_KEY: tls.key, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${kind} server did not report its port within 20 s`)), 20_000);
    child.once('message', (m) => {
      clearTimeout(t);
      resolve((m as { port: number }).port);
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${kind} server exited with ${code} before listening`));
    });
  });
  return { child, port };
}

async function stopChild(c: ChildProcess, timeoutMs = 5000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  const within = (ms: number) => Promise.race([exited.then(() => true), sleep(ms).then(() => false)]);
  // A disconnect makes the child exit on its own (and write a --cpu-prof profile); then TERM, then KILL.
  if (c.connected) c.disconnect();
  if (await within(timeoutMs)) return;
  c.kill('SIGTERM');
  if (await within(timeoutMs)) return;
  c.kill('SIGKILL');
  await exited;
}

function mixRequests(): autocannon.Request[] {
  return MIX.map((kind, i) => ({
    method: 'POST',
    path: '/mutate',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(admissionReview(kind, `bench-${i}-${kind}`)),
  }));
}

/** One autocannon run against `port`. */
async function load(port: number, connections: number, durationSec: number, requests: autocannon.Request[]): Promise<LoadStats> {
  const lat: number[] = [];
  let errors = 0;
  let inst: autocannon.Instance | undefined;
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    inst = autocannon({ url: `https://127.0.0.1:${port}`, connections, pipelining: 1, duration: durationSec, requests, timeout: 10 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
  inst!.on('response', (_client, status, _bytes, ms) => {
    if (status !== 200) errors++;
    else if (lat.length < MAX_SAMPLES) lat.push(ms);
  });
  const r = await done;
  errors += r.errors + r.timeouts + r.non2xx;
  const seconds = Math.max(r.duration, durationSec * 0.5);
  return { rps: lat.length / seconds, p50_ms: percentile(lat, 50), p99_ms: percentile(lat, 99), errors };
}

export interface AdmissionOptions {
  rounds: number;
  durationSec: number;
  warmupSec: number;
  concurrency?: readonly number[];
  /** Extra node flags for the webhook child (e.g. --cpu-prof). */
  webhookExecArgv?: string[];
  log?: (line: string) => void;
}

export type AdmissionResults = Record<string, number>;

export async function benchAdmission(o: AdmissionOptions): Promise<AdmissionResults> {
  const concurrency = o.concurrency ?? CONCURRENCY;
  const bundle = makeSelfSignedBundle({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const tls = { cert: bundle.cert, key: bundle.key };
  const requests = mixRequests();
  const out: AdmissionResults = {};
  const children: ChildProcess[] = [];
  try {
    const webhook = await startServerChild('webhook', tls, o.webhookExecArgv);
    children.push(webhook.child);
    const baseline = await startServerChild('baseline', tls);
    children.push(baseline.child);
    const servers = { webhook: webhook.port, baseline: baseline.port };

    // Warm-up: JIT, TLS session setup, lazy requires, on both servers.
    for (const port of Object.values(servers)) {
      const w = await load(port, 16, o.warmupSec, requests);
      if (w.errors > 0) throw new Error(`warm-up against port ${port}: ${w.errors} errors (the server answered something other than 200)`);
    }
    const ratiosRps: number[] = [];
    const ratiosP99: number[] = [];
    for (const c of concurrency) {
      const runs: Record<'webhook' | 'baseline', LoadStats[]> = { webhook: [], baseline: [] };
      for (let r = 0; r < o.rounds; r++) {
        const order: Array<'webhook' | 'baseline'> = r % 2 === 0 ? ['webhook', 'baseline'] : ['baseline', 'webhook'];
        for (const which of order) {
          const s = await load(servers[which], c, o.durationSec, requests);
          if (s.errors > 0) throw new Error(`${which} at concurrency ${c}: ${s.errors} errors`);
          runs[which].push(s);
        }
      }
      const m = (which: 'webhook' | 'baseline', k: keyof LoadStats) => median(runs[which].map((s) => s[k]));
      const p = `admission.c${c}`;
      out[`${p}.rps`] = round(m('webhook', 'rps'), 1);
      out[`${p}.p50_ms`] = round(m('webhook', 'p50_ms'));
      out[`${p}.p99_ms`] = round(m('webhook', 'p99_ms'));
      out[`${p}.baseline_rps`] = round(m('baseline', 'rps'), 1);
      out[`${p}.baseline_p50_ms`] = round(m('baseline', 'p50_ms'));
      out[`${p}.baseline_p99_ms`] = round(m('baseline', 'p99_ms'));
      // Ratios per round (same conditions), then the median: steadier than a ratio of medians.
      const rr = median(runs.webhook.map((s, i) => s.rps / runs.baseline[i]!.rps));
      const rp = median(runs.webhook.map((s, i) => s.p99_ms / runs.baseline[i]!.p99_ms));
      out[`${p}.ratio_rps`] = round(rr);
      out[`${p}.ratio_p99`] = round(rp);
      ratiosRps.push(rr);
      ratiosP99.push(rp);
      o.log?.(`admission c=${c}: webhook ${out[`${p}.rps`]} rps p99 ${out[`${p}.p99_ms`]} ms; baseline ${out[`${p}.baseline_rps`]} rps p99 ${out[`${p}.baseline_p99_ms`]} ms`);
    }
    // Headline keys: the c16 figures; the ratios are the worst over every concurrency.
    const head = concurrency.includes(16) ? 16 : concurrency[0]!;
    for (const k of ['rps', 'p50_ms', 'p99_ms', 'baseline_rps', 'baseline_p50_ms', 'baseline_p99_ms']) out[`admission.${k}`] = out[`admission.c${head}.${k}`]!;
    out['admission.ratio_rps'] = round(Math.min(...ratiosRps));
    out['admission.ratio_p99'] = round(Math.max(...ratiosP99));
    return out;
  } finally {
    await Promise.all(children.map((c) => stopChild(c)));
  }
}
