/**
 * Issue 7 item 4: admission load at a fixed rate against the built `hook-runner webhook` (its own
 * process, real HTTPS on 127.0.0.1), with 0 errors and bounded memory, then SIGTERM under load: it
 * stops accepting, finishes the requests in flight, exits 0 within its grace, and no request is
 * dropped without an answer.
 *
 * Part of `npm run test:load` (not `npm test`: it is load and timing, see CONTRIBUTING.md).
 * Duration: HOOK_RUNNER_LOAD_SECONDS; 60 s when CI=true (as `bash .ci/run` runs), 15 s otherwise.
 * Rate: 50 requests/s.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { waitFor, type LogLine } from '../support/https.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const SECONDS = Number(process.env.HOOK_RUNNER_LOAD_SECONDS ?? (process.env.CI === 'true' ? 60 : 15));
const RATE = 50;
/** Stated bounds: heap used and RSS may grow this much from the end of warm-up to the end of the load. */
const HEAP_GROWTH_BOUND = 16 * 1024 * 1024;
const RSS_GROWTH_BOUND = 48 * 1024 * 1024;
const SHUTDOWN_DELAY_S = 1;
const SHUTDOWN_TIMEOUT_S = 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  kind: 'ok' | 'refused' | 'dropped' | 'bad';
  detail?: string;
  at: number;
}

test(`admission load: ${RATE} req/s for ${SECONDS} s with 0 errors and bounded memory; SIGTERM under load drops nothing`, { timeout: (SECONDS + 90) * 1000 }, async (t) => {
  if (!existsSync(CLI)) return t.skip('needs a build: dist/cli/main.js is missing (npm test builds first)');
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-load-'));
  const caOut = join(dir, 'ca.pem');
  const child = spawn(
    process.execPath,
    [CLI, 'webhook', '--self-signed', '--listen', '127.0.0.1:0', '--ca-out', caOut, '--shutdown-delay-seconds', String(SHUTDOWN_DELAY_S), '--shutdown-timeout-seconds', String(SHUTDOWN_TIMEOUT_S)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const killer = setTimeout(() => child.kill('SIGKILL'), (SECONDS + 80) * 1000);
  t.after(() => {
    clearTimeout(killer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const lines: LogLine[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as LogLine);
    } catch {
      /* not ours */
    }
  });
  const exited = new Promise<{ code: number | null; at: number }>((r) => child.on('exit', (code) => r({ code, at: Date.now() })));
  const listening = await waitFor('the listening log line', () => lines.find((l) => l.msg.startsWith('webhook listening')), { tries: 400 });
  const port = Number(listening.port);
  const ca = readFileSync(caOut);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 32, ca });
  t.after(() => agent.destroy());

  const review = JSON.parse(readFileSync(join(ROOT, 'examples', 'admission-review.json'), 'utf8')) as { request: { uid: string } };
  /** Pooled keep-alive connections until the client "sees" the endpoint removal (fresh ones after). */
  let pooled = true;
  const post = (uid: string, slowMs = 0): Promise<Outcome> =>
    new Promise((resolve) => {
      const body = JSON.stringify({ ...review, request: { ...review.request, uid } });
      const req = https.request(
        {
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          method: 'POST',
          path: '/mutate',
          agent: pooled ? agent : false,
          ca,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) => resolve({ kind: 'dropped', detail: `response: ${e.message}`, at: Date.now() }));
          res.on('end', () => {
            try {
              const r = JSON.parse(Buffer.concat(chunks).toString()) as { response: { uid: string; allowed: boolean; patch?: string } };
              const ok = res.statusCode === 200 && r.response.uid === uid && r.response.allowed && !!r.response.patch;
              resolve(ok ? { kind: 'ok', at: Date.now() } : { kind: 'bad', detail: `${res.statusCode} ${JSON.stringify(r).slice(0, 200)}`, at: Date.now() });
            } catch (e) {
              resolve({ kind: 'bad', detail: `${res.statusCode} ${(e as Error).message}`, at: Date.now() });
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
      req.on('error', (e: NodeJS.ErrnoException) => resolve({ kind: e.code === 'ECONNREFUSED' ? 'refused' : 'dropped', detail: `${e.code ?? ''} ${e.message}`, at: Date.now() }));
      if (slowMs > 0) {
        req.write(body.slice(0, 100));
        setTimeout(() => req.end(body.slice(100)), slowMs);
      } else req.end(body);
    });

  const memory = async () => {
    const text = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, servername: 'localhost', path: '/metrics', agent, timeout: 10_000 }, (res) => {
          let s = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (s += c));
          res.on('end', () => resolve(s));
        })
        .on('error', reject);
    });
    const num = (name: string) => Number(new RegExp(`^${name} ([0-9.e+]+)`, 'm').exec(text)?.[1]);
    return { heap: num('nodejs_heap_size_used_bytes'), rss: num('process_resident_memory_bytes') };
  };

  // Phase 1: fixed-rate load, every answer checked; memory sampled every 2 s.
  const results: Array<Promise<Outcome>> = [];
  const samples: Array<{ t: number; heap: number; rss: number }> = [];
  const t0 = Date.now();
  const total = SECONDS * RATE;
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / RATE;
    if (due > Date.now()) await sleep(due - Date.now());
    results.push(post(`load-${i}`));
    if (i % (2 * RATE) === 0) samples.push({ t: Date.now() - t0, ...(await memory()) });
  }
  const outcomes = await Promise.all(results);
  samples.push({ t: Date.now() - t0, ...(await memory()) });
  const failed = outcomes.filter((o) => o.kind !== 'ok');
  assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of ${outcomes.length} requests failed`);
  assert.equal(outcomes.length, total);

  // Memory: from the end of warm-up (the first quarter) to the end, median of 3 samples each side.
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const warm = samples.filter((s) => s.t >= (SECONDS * 1000) / 4);
  const head = warm.slice(0, 3);
  const tail = samples.slice(-3);
  const heapGrowth = median(tail.map((s) => s.heap)) - median(head.map((s) => s.heap));
  const rssGrowth = median(tail.map((s) => s.rss)) - median(head.map((s) => s.rss));
  t.diagnostic(
    `${total} requests in ${Date.now() - t0} ms; heap ${Math.round(median(head.map((s) => s.heap)) / 1e6)} → ${Math.round(median(tail.map((s) => s.heap)) / 1e6)} MB, RSS ${Math.round(median(head.map((s) => s.rss)) / 1e6)} → ${Math.round(median(tail.map((s) => s.rss)) / 1e6)} MB`,
  );
  assert.ok(heapGrowth < HEAP_GROWTH_BOUND, `heap grew ${heapGrowth} bytes (bound ${HEAP_GROWTH_BOUND})`);
  assert.ok(rssGrowth < RSS_GROWTH_BOUND, `RSS grew ${rssGrowth} bytes (bound ${RSS_GROWTH_BOUND})`);

  // Phase 2: SIGTERM while the load goes on, with slow requests in flight across the whole shutdown.
  const during: Array<Promise<Outcome>> = [];
  const slow = [1, 2, 3].map((i) => post(`slow-${i}`, (SHUTDOWN_DELAY_S + 2) * 1000));
  await sleep(200);
  const termAt = Date.now();
  child.kill('SIGTERM');
  const loadEnd = termAt + (SHUTDOWN_DELAY_S + 3) * 1000;
  for (let i = 0; Date.now() < loadEnd && i < 10 * RATE; i++) {
    // Halfway through the delay the client (the API server) has seen the endpoint go, as the delay
    // is there for: it sends nothing more on its pooled connections and closes the idle ones. Later
    // requests dial afresh; after the delay they are refused. Switching exactly at the delay's end
    // raced the server closing idle connections at that moment: a request written onto one just
    // then was reset (HTTP/1.1 cannot avoid that race; the margin keeps the test out of it).
    if (pooled && Date.now() - termAt >= (SHUTDOWN_DELAY_S * 1000) / 2) {
      pooled = false;
      for (const sockets of Object.values(agent.freeSockets)) for (const s of sockets ?? []) s.destroy();
    }
    during.push(post(`term-${i}`));
    await sleep(1000 / RATE);
  }
  const termOutcomes = await Promise.all(during);
  const slowOutcomes = await Promise.all(slow);
  let bound: ReturnType<typeof setTimeout> | undefined;
  const exit = await Promise.race([exited, new Promise<undefined>((r) => (bound = setTimeout(() => r(undefined), (SHUTDOWN_DELAY_S + SHUTDOWN_TIMEOUT_S + 10) * 1000)))]);
  clearTimeout(bound);

  assert.deepEqual(
    slowOutcomes.map((o) => o.kind),
    ['ok', 'ok', 'ok'],
    `requests in flight were finished: ${JSON.stringify(slowOutcomes)}`,
  );
  const dropped = termOutcomes.filter((o) => o.kind === 'dropped' || o.kind === 'bad').map((o) => ({ ...o, afterTermMs: o.at - termAt }));
  assert.deepEqual(dropped, [], 'every request got an answer or was refused at connect');
  const ok = termOutcomes.filter((o) => o.kind === 'ok');
  const refused = termOutcomes.filter((o) => o.kind === 'refused');
  t.diagnostic(`after SIGTERM: ${ok.length} answered, ${refused.length} refused at connect`);
  assert.ok(
    ok.some((o) => o.at - termAt < SHUTDOWN_DELAY_S * 1000),
    'still answering during the shutdown delay',
  );
  assert.ok(refused.length > 0, 'then stops accepting');
  assert.ok(
    refused.every((o) => o.at - termAt >= SHUTDOWN_DELAY_S * 1000 - 100),
    'nothing refused before the delay ended',
  );
  assert.ok(exit, `exited within delay + timeout + 10 s (stderr: ${stderr})`);
  assert.equal(exit.code, 0);
  assert.ok(!lines.some((l) => /still running at the shutdown bound/.test(l.msg)), 'no request was cut at the bound');
});
