/**
 * The webhook's HTTPS server (DESIGN §2, §4): `POST /mutate`, `GET /healthz`, `GET /readyz`,
 * `GET /metrics`. The admission decision is the pure {@link reviewAdmission}; this module only
 * parses, times, logs, counts and answers.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../common/logger.js';
import { BadReviewError, reviewAdmission, type AdmissionResult, type ResolvedMode, type ReviewOptions } from './admission.js';
import type { Config } from './config.js';
import type { RejectReason, WebhookMetrics } from './metrics.js';
import type { TlsProvider } from './tls.js';

/**
 * 3 MiB: the kube-apiserver refuses request bodies over 3 MiB itself, so no real AdmissionReview
 * (the object plus its oldObject) comes near it; anything bigger is not from the API server.
 */
export const DEFAULT_BODY_LIMIT_BYTES = 3 * 1024 * 1024;

export const ROUTES = ['POST /mutate', 'GET /healthz', 'GET /readyz', 'GET /metrics'] as const;

/** Shared between the app (readiness, Connection: close) and the server (drain on shutdown). */
export interface ServerState {
  /** Set when shutdown begins: /readyz fails so endpoints drop us, and connections are not kept alive. */
  draining: boolean;
  /** Requests being answered now. */
  inFlight: number;
}

export type ReviewFn = (body: unknown, opts: ReviewOptions) => AdmissionResult;

export interface WebhookAppOptions {
  config: Config;
  mode: ResolvedMode;
  /** The root logger; the server logs through a child with `component: webhook`. */
  logger: Logger;
  metrics: WebhookMetrics;
  bodyLimitBytes?: number;
  state?: ServerState;
  /** Namespace Pod Security levels, when a namespace cache is running (passed to the admission). */
  podSecurityLevel?: ReviewOptions['podSecurityLevel'];
  /** The admission decision; {@link reviewAdmission} unless a caller wraps it. */
  review?: ReviewFn;
}

/** Body-parser and http-errors errors carry these; anything else is ours (a bug: 500). */
interface HttpErrorLike {
  status?: number;
  type?: string;
  length?: number;
  message: string;
}

function isHttpErrorLike(e: unknown): e is HttpErrorLike {
  return e instanceof Error && typeof (e as { status?: unknown }).status === 'number';
}

const round3 = (n: number): number => Math.round(n * 1000) / 1000;

function elapsedSeconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** `request.dryRun`/`operation` for the log line; the body has been validated by then. */
function requestField(body: unknown, field: 'dryRun' | 'operation'): unknown {
  const req = (body as { request?: Record<string, unknown> } | undefined)?.request;
  return req?.[field];
}

/** The denial's message, so the log line says what the user got without decoding the review. */
function denialMessage(review: object): string | undefined {
  const msg = (review as { response?: { status?: { message?: unknown } } }).response?.status?.message;
  return typeof msg === 'string' ? msg : undefined;
}

export function createWebhookApp(opts: WebhookAppOptions): express.Express {
  const { config, mode, metrics } = opts;
  const log = opts.logger.child({ component: 'webhook' });
  const state: ServerState = opts.state ?? { draining: false, inFlight: 0 };
  const limit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const review = opts.review ?? reviewAdmission;

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');

  const fail = (res: Response, status: number, reason: RejectReason, error: string, extra: Record<string, unknown> = {}): void => {
    metrics.observeRejected(reason);
    log.warn({ status, reason, error, method: res.req.method, path: res.req.path, remoteAddress: res.req.socket.remoteAddress, ...extra }, 'request rejected');
    res.status(status).json({ error });
  };

  const methodNotAllowed = (allow: string) => (req: Request, res: Response) => {
    res.setHeader('Allow', allow);
    fail(res, 405, 'method-not-allowed', `method ${req.method} is not allowed on ${req.path}; use ${allow.split(', ').join(' or ')}`);
  };

  app.use((req, res, next) => {
    res.locals.start = process.hrtime.bigint();
    if (state.draining) res.setHeader('Connection', 'close');
    state.inFlight++;
    res.once('close', () => state.inFlight--);
    next();
  });

  // Every content type is read as JSON: the API server sends application/json, and a person
  // trying `curl --data @file` without a content-type header should get the review, not a 415.
  const json = express.json({
    limit,
    type: () => true,
    strict: true,
    // The API server never compresses AdmissionReviews; refusing encodings keeps the limit about bytes on the wire.
    inflate: false,
    // Records the raw size, so an empty body gets its own message instead of "not an AdmissionReview".
    verify: (_req, res, buf) => {
      (res as Response).locals.bodyBytes = buf.length;
    },
  });

  app.post('/mutate', json, (req, res) => {
    const start = res.locals.start as bigint;
    const body: unknown = req.body;
    if (body === undefined || res.locals.bodyBytes === 0) {
      fail(res, 400, 'malformed', 'the request has no body; expected an AdmissionReview (apiVersion admission.k8s.io/v1) as JSON');
      return;
    }
    let result: AdmissionResult;
    try {
      result = review(body, { config, mode, podSecurityLevel: opts.podSecurityLevel });
    } catch (e) {
      if (e instanceof BadReviewError) {
        fail(res, 400, 'malformed', `malformed AdmissionReview: ${e.message}`);
        return;
      }
      throw e;
    }
    const seconds = elapsedSeconds(start);
    metrics.observeAdmission(result.outcome, result.reason, seconds);
    const dryRun = requestField(body, 'dryRun') === true;
    const operation = requestField(body, 'operation');
    log.info(
      {
        uid: result.uid,
        namespace: result.namespace,
        // `pod`, not `name`: the root logger already writes `name: hook-runner`, and a second
        // `name` key in the same JSON line is read differently by different log processors.
        pod: result.name,
        outcome: result.outcome,
        reason: result.reason,
        warnings: result.warnings,
        latencyMs: round3(seconds * 1000),
        ...(typeof operation === 'string' ? { operation } : {}),
        ...(dryRun ? { dryRun } : {}),
        ...(result.outcome === 'denied' ? { message: denialMessage(result.review) } : {}),
      },
      `admission ${result.outcome}`,
    );
    res.status(200).json(result.review);
  });
  app.all('/mutate', methodNotAllowed('POST'));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.all('/healthz', methodNotAllowed('GET, HEAD'));

  app.get('/readyz', (_req, res) => {
    if (state.draining) res.status(503).json({ status: 'draining' });
    else res.json({ status: 'ok' });
  });
  app.all('/readyz', methodNotAllowed('GET, HEAD'));

  app.get('/metrics', async (_req, res) => {
    const text = await metrics.registry.metrics();
    res.setHeader('Content-Type', metrics.registry.contentType);
    res.send(text);
  });
  app.all('/metrics', methodNotAllowed('GET, HEAD'));

  app.use((req, res) => {
    fail(res, 404, 'not-found', `no route ${req.method} ${req.path}; this server answers ${ROUTES.join(', ')}`);
  });

  // Express 5 hands rejected promises and thrown errors here, body-parser's included.
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    if (isHttpErrorLike(err)) {
      switch (err.type) {
        case 'entity.too.large':
          fail(
            res,
            413,
            'too-large',
            `request body ${err.length !== undefined ? `of ${err.length} bytes ` : ''}is larger than the limit of ${limit} bytes (${(limit / 1024 / 1024).toFixed(1)} MiB, the API server's own request size limit); an AdmissionReview is never that big`,
          );
          return;
        case 'entity.parse.failed':
          fail(res, 400, 'malformed', `the request body is not valid JSON (${err.message}); expected an AdmissionReview (apiVersion admission.k8s.io/v1) as JSON`);
          return;
        case 'charset.unsupported':
        case 'encoding.unsupported': {
          const what = err.type === 'encoding.unsupported' ? `content-encoding ${JSON.stringify(req.headers['content-encoding'])} is not accepted` : err.message;
          fail(res, 415, 'unsupported-encoding', `${what}; send the AdmissionReview as uncompressed UTF-8 JSON`);
          return;
        }
        default:
          if (err.status !== undefined && err.status >= 400 && err.status < 500) {
            fail(res, err.status, 'malformed', err.message);
            return;
          }
      }
    }
    log.error({ err, method: req.method, path: req.path }, 'internal error while answering a request');
    metrics.observeRejected('internal');
    res.status(500).json({ error: 'internal error in hook-runner webhook; see its log' });
  });

  return app;
}

export interface ServerTimeouts {
  /** Time to receive a request's headers. */
  headersTimeoutMs: number;
  /** Time to receive a whole request. The API server waits at most 30 s (timeoutSeconds' maximum). */
  requestTimeoutMs: number;
  /**
   * Idle keep-alive. Longer than the API server's 90 s idle-connection timeout, so we never close a
   * connection at the moment the API server reuses it for a (not retried) POST.
   */
  keepAliveTimeoutMs: number;
  /** Time for a client to finish the TLS handshake. */
  handshakeTimeoutMs: number;
}

export const DEFAULT_TIMEOUTS: ServerTimeouts = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 95_000,
  handshakeTimeoutMs: 10_000,
};

export interface ListenAddress {
  host: string;
  port: number;
}

export interface StartWebhookServerOptions extends Omit<WebhookAppOptions, 'state'> {
  listen: ListenAddress;
  tls: TlsProvider;
  timeouts?: Partial<ServerTimeouts>;
}

export interface ShutdownOptions {
  /**
   * Keep accepting this long after /readyz starts failing, while endpoint removal reaches the
   * API server; with failurePolicy Fail a refused connection would fail a pod creation.
   */
  delayMs?: number;
  /** Then wait at most this long for requests in flight before cutting connections. */
  timeoutMs?: number;
}

export interface WebhookServer {
  readonly server: https.Server;
  readonly state: ServerState;
  /** The bound address (the real port when listening on port 0). */
  address(): AddressInfo;
  /** Graceful: readyz fails, optional delay, stop accepting, finish in-flight requests (bounded). Idempotent. */
  close(opts?: ShutdownOptions): Promise<void>;
}

export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

export async function startWebhookServer(opts: StartWebhookServerOptions): Promise<WebhookServer> {
  const log = opts.logger.child({ component: 'webhook' });
  const t = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  const state: ServerState = { draining: false, inFlight: 0 };
  const app = createWebhookApp({ ...opts, state });
  opts.metrics.watchCertificate(() => opts.tls.current().validTo);

  const server = https.createServer(
    {
      ...opts.tls.serverOptions(),
      headersTimeout: t.headersTimeoutMs,
      requestTimeout: t.requestTimeoutMs,
      // Node checks those two only every connectionsCheckingInterval (30 s by default), so a
      // slow-headers client would hold a socket up to 30 s past its timeout.
      connectionsCheckingInterval: Math.min(1000, t.headersTimeoutMs),
      handshakeTimeout: t.handshakeTimeoutMs,
    },
    app,
  );
  server.keepAliveTimeout = t.keepAliveTimeoutMs;
  // Port scanners and load-balancer TCP checks end in handshake errors; not worth a warning each.
  server.on('tlsClientError', (err, socket) => {
    log.debug({ err: err.message }, 'TLS handshake failed');
    // Plain HTTP to this port: say so in plain HTTP, as nginx does, instead of a bare reset. The
    // raw socket under the TLS one is Node's `_parent` (best effort: without it, just the close).
    const raw = (socket as unknown as { _parent?: NodeJS.WritableStream & { writable?: boolean } })._parent;
    if ((err as NodeJS.ErrnoException).code === 'ERR_SSL_HTTP_REQUEST' && raw?.writable) {
      const body = `${JSON.stringify({ error: 'plain HTTP request sent to the HTTPS port; use https://' })}\n`;
      raw.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    }
  });
  // Once the listener is closed, a connection that finishes its last response is closed at once
  // instead of idling until keepAliveTimeout and holding shutdown up. Not before: during the
  // shutdown delay the API server may still reuse an idle keep-alive connection, and closing it
  // under a request in transit resets that request (responses then carry Connection: close).
  let listenerClosed = false;
  server.on('request', (_req, res) => {
    res.once('finish', () => {
      if (listenerClosed) setImmediate(() => server.closeIdleConnections());
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => reject(new Error(`cannot listen on ${formatHostPort(opts.listen)}: ${e.message}`));
    server.once('error', onError);
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (e) => log.error({ err: e }, 'server error'));
  opts.tls.attach(server);

  let closing: Promise<void> | undefined;
  async function shutdown(o: ShutdownOptions): Promise<void> {
    const delayMs = o.delayMs ?? 0;
    const timeoutMs = o.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
    state.draining = true;
    if (delayMs > 0) {
      log.info({ delayMs, inFlight: state.inFlight }, 'draining: /readyz fails now; still accepting while endpoints update');
      await new Promise((r) => setTimeout(r, delayMs));
    }
    listenerClosed = true;
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), timeoutMs);
    });
    if ((await Promise.race([closed, timedOut])) === 'timeout') {
      log.warn({ timeoutMs, inFlight: state.inFlight }, 'requests still running at the shutdown bound; closing their connections');
      server.closeAllConnections();
      await closed;
    }
    clearTimeout(timer);
    opts.tls.close();
  }

  return {
    server,
    state,
    address: () => server.address() as AddressInfo,
    close(o = {}) {
      closing ??= shutdown(o);
      return closing;
    },
  };
}

export function formatHostPort(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
