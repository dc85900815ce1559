/** Prometheus metrics of the sidecar, on a registry of its own (no default process metrics). */
import { Counter, Histogram, Registry } from 'prom-client';

export class SidecarMetrics {
  readonly registry = new Registry();
  readonly duration = new Histogram({
    name: 'hook_runner_hook_handler_duration_seconds',
    help: 'Duration of one hook handler item (all its attempts), by container, phase and handler kind.',
    labelNames: ['container', 'phase', 'handler'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly outcomes = new Counter({
    name: 'hook_runner_hook_handler_outcomes_total',
    help: 'Hook handler items by container, phase, handler kind and outcome (succeeded, failed, timeout, deadline, skipped).',
    labelNames: ['container', 'phase', 'handler', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly calls = new Counter({
    name: 'hook_runner_hook_calls_total',
    help: 'Calls of the hook API by container, phase and result (succeeded, failed, deadline, joined).',
    labelNames: ['container', 'phase', 'result'] as const,
    registers: [this.registry],
  });
}
