/**
 * The sidecar's three Prometheus metrics, written as text exposition format 0.0.4 directly.
 * prom-client cost ~250 ms of blocked event loop to load, after readiness, for three metrics
 * (docs/design-decisions.md); these few lines have no load cost and no timers.
 */

type Labels = Record<string, string>;

const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];

/** A label value in exposition format: backslash, double quote and newline escaped. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(names: readonly string[], labels: Labels, extra?: [string, string]): string {
  const parts = names.map((n) => `${n}="${escapeLabel(labels[n] ?? '')}"`);
  if (extra) parts.push(`${extra[0]}="${extra[1]}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function formatNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : n > 0 ? '+Inf' : n < 0 ? '-Inf' : 'NaN';
}

class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  inc(labels: Labels): void {
    const key = labelText(this.labelNames, labels);
    const v = this.values.get(key);
    if (v) v.value++;
    else this.values.set(key, { labels, value: 1 });
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const [key, v] of this.values) out += `${this.name}${key} ${formatNumber(v.value)}\n`;
    return out;
  }
}

class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly buckets: readonly number[],
  ) {}

  observe(labels: Labels, value: number): void {
    const key = labelText(this.labelNames, labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => (out += `${this.name}_bucket${labelText(this.labelNames, s.labels, ['le', formatNumber(b)])} ${s.counts[i]}\n`));
      out += `${this.name}_bucket${labelText(this.labelNames, s.labels, ['le', '+Inf'])} ${s.count}\n`;
      out += `${this.name}_sum${labelText(this.labelNames, s.labels)} ${formatNumber(s.sum)}\n`;
      out += `${this.name}_count${labelText(this.labelNames, s.labels)} ${s.count}\n`;
    }
    return out;
  }
}

export class SidecarMetrics {
  private readonly duration = new Histogram(
    'hook_runner_hook_handler_duration_seconds',
    'Duration of one hook handler item (all its attempts), by container, phase and handler kind.',
    ['container', 'phase', 'handler'],
    DURATION_BUCKETS,
  );
  private readonly outcomes = new Counter(
    'hook_runner_hook_handler_outcomes_total',
    'Hook handler items by container, phase, handler kind and outcome (succeeded, failed, timeout, deadline, skipped).',
    ['container', 'phase', 'handler', 'outcome'],
  );
  private readonly calls = new Counter('hook_runner_hook_calls_total', 'Calls of the hook API by container, phase and result (succeeded, failed, deadline, joined).', ['container', 'phase', 'result']);

  observeDuration(labels: Labels, seconds: number): void {
    this.duration.observe(labels, seconds);
  }

  countOutcome(labels: Labels): void {
    this.outcomes.inc(labels);
  }

  countCall(labels: Labels): void {
    this.calls.inc(labels);
  }

  render(): { contentType: string; text: string } {
    return { contentType: METRICS_CONTENT_TYPE, text: this.duration.render() + this.outcomes.render() + this.calls.render() };
  }
}
