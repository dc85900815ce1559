/**
 * Prometheus metrics of the webhook (`GET /metrics`). Each call makes its own Registry rather than
 * using prom-client's global one, so tests (and any future second server in one process) never
 * collide on "metric already registered".
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

type AdmissionOutcomeLabel = 'injected' | 'rekeyed' | 'skipped' | 'denied';

/** Why a request never reached the admission logic (it got an HTTP error instead of a review). */
export type RejectReason = 'malformed' | 'too-large' | 'unsupported-encoding' | 'not-found' | 'method-not-allowed' | 'internal';

export interface WebhookMetrics {
  readonly registry: Registry;
  /** Counts one reviewed admission and records how long it took. */
  observeAdmission(outcome: AdmissionOutcomeLabel, reason: string | undefined, seconds: number): void;
  /** Counts one request answered with an HTTP error (400, 404, 405, 413, 415, 500). */
  observeRejected(reason: RejectReason): void;
  /**
   * Where the served certificate's expiry is read at each scrape (the server passes its TLS provider):
   * the self-signed setup has no cert-manager metric to alert on, so the webhook exposes its own.
   */
  watchCertificate(validTo: () => string | undefined): void;
}

/** Reasons are single greppable words from the admission logic; anything else is folded so a bug cannot explode label cardinality. */
const REASON_RE = /^[a-z][a-z0-9-]{0,47}$/;

function reasonLabel(reason: string | undefined): string {
  if (reason === undefined || reason === '') return 'none';
  return REASON_RE.test(reason) ? reason : 'other';
}

export function createWebhookMetrics(opts: { defaultMetrics?: boolean } = {}): WebhookMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  const admissions = new Counter({
    name: 'hook_runner_admissions_total',
    help: 'AdmissionReviews answered, by outcome (injected, rekeyed, skipped, denied) and reason (the greppable word; "none" when injected).',
    labelNames: ['outcome', 'reason'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'hook_runner_admission_duration_seconds',
    help: 'Time from the request arriving to the AdmissionReview answer, body parsing included.',
    labelNames: ['outcome'] as const,
    // The API server gives the webhook 5 s (timeoutSeconds in the manifests); most answers take well under 10 ms.
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const rejected = new Counter({
    name: 'hook_runner_webhook_rejected_requests_total',
    help: 'Requests answered with an HTTP error instead of an AdmissionReview, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });

  let certValidTo: () => string | undefined = () => undefined;
  new Gauge({
    name: 'hook_runner_webhook_certificate_expiry_timestamp_seconds',
    help: 'When the certificate the webhook serves now expires (notAfter), in seconds since the epoch.',
    registers: [registry],
    collect() {
      const t = Date.parse(certValidTo() ?? '');
      if (Number.isFinite(t)) this.set(t / 1000);
    },
  });

  return {
    registry,
    watchCertificate(validTo) {
      certValidTo = validTo;
    },
    observeAdmission(outcome, reason, seconds) {
      admissions.inc({ outcome, reason: reasonLabel(reason) });
      duration.observe({ outcome }, seconds);
    },
    observeRejected(reason) {
      rejected.inc({ reason });
    },
  };
}
