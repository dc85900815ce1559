/**
 * Runs one hook's handler list in order (DESIGN §6): per-attempt timeouts, retries with a doubling
 * delay, continueOnError, and a deadline for the whole list (PreStop, DESIGN §7) that cuts the running
 * attempt and answers at once. Pure of I/O: the handler kinds are injected as an {@link Executor}.
 */
import type { HandlerKind, HandlerSpec } from '../common/spec.js';

type AttemptOutcome = 'succeeded' | 'failed' | 'timeout' | 'deadline';
type HandlerOutcome = AttemptOutcome | 'skipped';

/** What one attempt of a handler kind reports back. */
export interface AttemptResult {
  ok: boolean;
  error?: string;
  exitCode?: number | null;
  status?: number;
  output?: string;
}

interface AttemptReport {
  attempt: number;
  startedAt: string;
  durationMs: number;
  outcome: AttemptOutcome;
  error?: string;
  exitCode?: number | null;
  status?: number;
  outputTail: string;
}

export interface HandlerReport {
  index: number;
  kind: HandlerKind;
  outcome: HandlerOutcome;
  continueOnError: boolean;
  durationMs: number;
  attempts: AttemptReport[];
}

export interface ListResult {
  ok: boolean;
  /** `deadline` when the PreStop budget ran out, else failed/succeeded. */
  outcome: 'succeeded' | 'failed' | 'deadline';
  reason?: string;
  handlers: HandlerReport[];
}

/** Runs one attempt of a handler; must settle soon after `signal` aborts (the runner does not wait for it). */
type Executor = (h: HandlerSpec, signal: AbortSignal, index: number) => Promise<AttemptResult>;

/** Delay after failed attempt `attempt` (0-based) before the next one: retryDelaySeconds doubling. */
export function retryDelayMs(h: Pick<HandlerSpec, 'retryDelaySeconds'>, attempt: number): number {
  return h.retryDelaySeconds * 1000 * 2 ** attempt;
}

/** Every delay between the attempts of a handler, in order (length = retries). */
export function retrySchedule(h: Pick<HandlerSpec, 'retryDelaySeconds' | 'retries'>): number[] {
  return Array.from({ length: h.retries }, (_, i) => retryDelayMs(h, i));
}

export interface RunOptions {
  execute: Executor;
  /** Aborts at the PreStop deadline; the list stops at once. */
  deadline?: AbortSignal;
  onAttempt?: (h: HandlerSpec, index: number, a: AttemptReport) => void;
  onHandler?: (h: HandlerSpec, r: HandlerReport) => void;
}

const ABORTED = Symbol('aborted');
/** How long a cut-off attempt may take to hand back its partial output. */
const ABORT_GRACE_MS = 50;

/** Resolves to ABORTED when the signal fires (at once if it already has). */
function abortPromise(signal: AbortSignal): { promise: Promise<typeof ABORTED>; dispose: () => void } {
  let dispose = () => {};
  const promise = new Promise<typeof ABORTED>((resolve) => {
    if (signal.aborted) return resolve(ABORTED);
    const on = () => resolve(ABORTED);
    signal.addEventListener('abort', on, { once: true });
    dispose = () => signal.removeEventListener('abort', on);
  });
  return { promise, dispose };
}

/** Waits `ms` unless the signal fires first; true when it waited the whole time. */
export async function delay(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return false;
  // No wait is no timer: a 0 ms setTimeout still waits >= 1 ms (a `sleep: {seconds: 0}` handler, a 0 s retry delay).
  if (ms <= 0) return true;
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', on);
      resolve(true);
    }, ms);
    const on = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal?.addEventListener('abort', on, { once: true });
  });
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function runAttempt(h: HandlerSpec, index: number, attempt: number, opts: RunOptions): Promise<AttemptReport> {
  const started = Date.now();
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new Error('timeout')), h.timeoutSeconds * 1000);
  const signal = opts.deadline ? AbortSignal.any([timeout.signal, opts.deadline]) : timeout.signal;
  const cut = abortPromise(signal);
  let res: AttemptResult | typeof ABORTED;
  const exec = opts.execute(h, signal, index).catch((e: unknown): AttemptResult => ({ ok: false, error: errText(e) }));
  try {
    res = await Promise.race([exec, cut.promise]);
    // Cut off: a well-behaved executor settles at once with what it has (output so far); wait briefly for it.
    if (res === ABORTED) res = await Promise.race([exec, delay(ABORT_GRACE_MS).then((): typeof ABORTED => ABORTED)]);
  } finally {
    clearTimeout(timer);
    cut.dispose();
  }
  const durationMs = Date.now() - started;
  const base = { attempt, startedAt: new Date(started).toISOString(), durationMs };
  if (res === ABORTED || (!res.ok && signal.aborted)) {
    const byDeadline = !!opts.deadline?.aborted;
    const partial = res === ABORTED ? undefined : res;
    return {
      ...base,
      outcome: byDeadline ? 'deadline' : 'timeout',
      error: byDeadline ? 'cut off at the PreStop deadline (grace period − shutdownSeconds)' : `timed out after ${h.timeoutSeconds}s`,
      ...(partial?.exitCode !== undefined ? { exitCode: partial.exitCode } : {}),
      outputTail: partial?.output ?? '',
    };
  }
  return {
    ...base,
    outcome: res.ok ? 'succeeded' : 'failed',
    ...(res.error !== undefined ? { error: res.error } : {}),
    ...(res.exitCode !== undefined ? { exitCode: res.exitCode } : {}),
    ...(res.status !== undefined ? { status: res.status } : {}),
    outputTail: res.output ?? '',
  };
}

export async function runHandlerList(list: readonly HandlerSpec[], opts: RunOptions): Promise<ListResult> {
  const handlers: HandlerReport[] = [];
  let failed: string | undefined;
  let deadlineHit = false;
  for (const [index, h] of list.entries()) {
    const kind = h.kind;
    if (failed !== undefined || deadlineHit || opts.deadline?.aborted) {
      if (opts.deadline?.aborted && failed === undefined) deadlineHit = true;
      handlers.push({ index, kind, outcome: 'skipped', continueOnError: h.continueOnError, durationMs: 0, attempts: [] });
      continue;
    }
    const started = Date.now();
    const attempts: AttemptReport[] = [];
    let outcome: HandlerOutcome = 'failed';
    for (let attempt = 1; attempt <= h.retries + 1; attempt++) {
      const a = await runAttempt(h, index, attempt, opts);
      attempts.push(a);
      opts.onAttempt?.(h, index, a);
      outcome = a.outcome;
      if (a.outcome === 'succeeded' || a.outcome === 'deadline') break;
      if (attempt <= h.retries && !(await delay(retryDelayMs(h, attempt - 1), opts.deadline))) {
        outcome = 'deadline';
        break;
      }
    }
    const report: HandlerReport = { index, kind, outcome, continueOnError: h.continueOnError, durationMs: Date.now() - started, attempts };
    handlers.push(report);
    opts.onHandler?.(h, report);
    if (outcome === 'deadline') deadlineHit = true;
    else if (outcome !== 'succeeded' && !h.continueOnError) {
      const last = attempts[attempts.length - 1];
      failed = `handler [${index}] ${kind} ${outcome} after ${attempts.length} attempt(s)${last?.error ? `: ${last.error}` : ''}`;
    }
  }
  if (deadlineHit) {
    const cut = handlers.find((r) => r.outcome === 'deadline' || r.outcome === 'skipped');
    return {
      ok: false,
      outcome: 'deadline',
      reason: `PreStop deadline reached${cut ? ` at handler [${cut.index}] ${cut.kind}` : ''}; the rest of the list was cut off so the app keeps its shutdownSeconds`,
      handlers,
    };
  }
  if (failed !== undefined) return { ok: false, outcome: 'failed', reason: failed, handlers };
  return { ok: true, outcome: 'succeeded', handlers };
}
