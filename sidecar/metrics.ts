/**
 * Prometheus metrics of the sidecar, on a registry of its own (no default process metrics).
 * prom-client costs ~250 ms to import on Node 20, so it loads after readiness; what is recorded
 * before that is queued and replayed, so no observation is lost.
 */
import type { Counter, Histogram, Registry } from 'prom-client';

type Labels = Record<string, string>;

interface Impl {
  registry: Registry;
  duration: Histogram<string>;
  outcomes: Counter<string>;
  calls: Counter<string>;
}

async function createImpl(): Promise<Impl> {
  // prom-client is CommonJS: its module.exports is the default export both under Node's ESM loader
  // and in the bundle's lazy chunk (which has no named exports).
  const { Counter, Histogram, Registry } = (await import('prom-client')).default;
  const registry = new Registry();
  return {
    registry,
    duration: new Histogram({
      name: 'hook_runner_hook_handler_duration_seconds',
      help: 'Duration of one hook handler item (all its attempts), by container, phase and handler kind.',
      labelNames: ['container', 'phase', 'handler'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers: [registry],
    }),
    outcomes: new Counter({
      name: 'hook_runner_hook_handler_outcomes_total',
      help: 'Hook handler items by container, phase, handler kind and outcome (succeeded, failed, timeout, deadline, skipped).',
      labelNames: ['container', 'phase', 'handler', 'outcome'],
      registers: [registry],
    }),
    calls: new Counter({
      name: 'hook_runner_hook_calls_total',
      help: 'Calls of the hook API by container, phase and result (succeeded, failed, deadline, joined).',
      labelNames: ['container', 'phase', 'result'],
      registers: [registry],
    }),
  };
}

export class SidecarMetrics {
  private impl?: Impl;
  private loading?: Promise<Impl>;
  private readonly queue: Array<(i: Impl) => void> = [];

  load(): Promise<Impl> {
    this.loading ??= createImpl().then((i) => {
      this.impl = i;
      for (const f of this.queue.splice(0)) f(i);
      return i;
    });
    return this.loading;
  }

  private use(f: (i: Impl) => void): void {
    if (this.impl) f(this.impl);
    else {
      this.queue.push(f);
      void this.load();
    }
  }

  observeDuration(labels: Labels, seconds: number): void {
    this.use((i) => i.duration.observe(labels, seconds));
  }

  countOutcome(labels: Labels): void {
    this.use((i) => i.outcomes.inc(labels));
  }

  countCall(labels: Labels): void {
    this.use((i) => i.calls.inc(labels));
  }

  async render(): Promise<{ contentType: string; text: string }> {
    const i = await this.load();
    return { contentType: i.registry.contentType, text: await i.registry.metrics() };
  }
}
