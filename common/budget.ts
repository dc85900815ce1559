/**
 * The PreStop grace budget (DESIGN §7), shared by the webhook (warnings at admission) and the
 * sidecar (the deadline at run time). The seed's rule: the grace countdown starts before PreStop,
 * and PreStop and the app's own shutdown share it.
 */
import type { ContainerHooks, HandlerSpec } from './spec.js';

/** Margin kept back from the deadline so the answer reaches the kubelet before the app's time starts. */
export const DEADLINE_MARGIN_MS = 250;

/** Longest a handler item can take: every attempt at its worst, plus the doubling retry delays. */
export function worstCaseSeconds(h: HandlerSpec): number {
  const attempts = h.retries + 1;
  let perAttempt = h.timeoutSeconds;
  if (h.kind === 'sleep') perAttempt = Math.min(h.timeoutSeconds, h.action.seconds);
  const delays = h.retries > 0 ? h.retryDelaySeconds * (2 ** h.retries - 1) : 0;
  return attempts * perAttempt + delays;
}

/** Worst case of a whole preStop list, run in order. */
function preStopWorstCaseSeconds(hooks: ContainerHooks): number {
  return hooks.preStop.reduce((sum, h) => sum + worstCaseSeconds(h), 0);
}

export interface BudgetCheck {
  /** grace − shutdownSeconds: what the preStop list may use. */
  availableSeconds: number;
  worstCaseSeconds: number;
  fits: boolean;
}

export function checkPreStopBudget(hooks: ContainerHooks, graceSeconds: number): BudgetCheck {
  const availableSeconds = graceSeconds - hooks.shutdownSeconds;
  const worst = preStopWorstCaseSeconds(hooks);
  return { availableSeconds, worstCaseSeconds: worst, fits: worst <= availableSeconds };
}

/**
 * When a preStop call that arrived at `arrivalMs` must be answered so the app still gets its
 * `shutdownSeconds` after the stop signal: arrival + grace − shutdown − margin (never before arrival).
 */
export function preStopDeadlineMs(arrivalMs: number, graceSeconds: number, shutdownSeconds: number, marginMs = DEADLINE_MARGIN_MS): number {
  return arrivalMs + Math.max(0, (graceSeconds - shutdownSeconds) * 1000 - marginMs);
}
