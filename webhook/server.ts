/**
 * The webhook's HTTPS server (DESIGN §2, §4): `POST /mutate`, `GET /healthz`, `GET /readyz`,
 * `GET /metrics`. The admission decision is the pure {@link reviewAdmission}; this module only
 * parses, times, logs, counts and answers.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from './logger.js';
import { BadReviewError, reviewAdmission, type AdmissionResult, type ResolvedMode, type ReviewOptions } from './core/admission.js';
import type { Config } from './core/config.js';
import type { RejectReason, WebhookMetrics } from './metrics.js';
import type { TlsProvider } from './cluster/tls.js';

/**
 * 3 MiB: the kube-apiserver refuses request bodies over 3 MiB itself, so no real AdmissionReview
 * (the object plus its oldObject) comes near it; anything bigger is not from the API server.
 */
export const DEFAULT_BODY_LIMIT_BYTES = 3 * 1024 * 1024;

const ROUTES = ['POST /mutate', 'GET /healthz', 'GET /readyz', 'GET /metrics'] as const;

/** Shared between the app (readiness, Connection: close) and the server (drain on shutdown). */
interface ServerState {
  /** Set when shutdown begins: /readyz fails so endpoints drop us, and connections are not kept alive. */
  draining: boolean;
  /** Requests being answered now. */
  inFlight: number;
}

type ReviewFn = (body: unknown, opts: ReviewOptions) => AdmissionResult;

interface WebhookAppOptions {
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

type Fail = (res: Response, status: number, reason: RejectReason, error: string, extra?: Record<string, unknown>) => void;

/** Answers a request with an HTTP error: counted, logged with who asked, `{error}` as the body. */
function rejecter(metrics: WebhookMetrics, log: Logger): Fail {
  return (res, status, reason, error, extra = {}) => {
    metrics.observeRejected(reason);
    log.warn({ status, reason, error, method: res.req.method, path: res.req.path, remoteAddress: res.req.socket.remoteAddress, ...extra }, 'request rejected');
    res.status(status).json({ error });
  };
}

/** Times each request and counts it in flight; while draining, asks the client to close the connection. */
function trackRequests(state: ServerState) {
  return (_req: Request, res: Response, next: NextFunction): void => {
    res.locals.start = process.hrtime.bigint();
    if (state.draining) res.setHeader('Connection', 'close');
    state.inFlight++;
    res.once('close', () => state.inFlight--);
    next();
  };
}

/**
 * Every content type is read as JSON: the API server sends application/json, and a person
 * trying `curl --data @file` without a content-type header should get the review, not a 415.
 */
function jsonBody(limit: number) {
  return express.json({
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
}

/** POST /mutate: the review, its metric and one log line per admission. */
function mutateRoute(opts: WebhookAppOptions, review: ReviewFn, log: Logger, fail: Fail) {
  const { config, mode, metrics } = opts;
  return (req: Request, res: Response): void => {
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
    log.info(admissionLogFields(body, result, seconds), `admission ${result.outcome}`);
    res.status(200).json(result.review);
  };
}

function admissionLogFields(body: unknown, result: AdmissionResult, seconds: number): Record<string, unknown> {
  const dryRun = requestField(body, 'dryRun') === true;
  const operation = requestField(body, 'operation');
  return {
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
  };
}

/** Express 5 hands rejected promises and thrown errors here, body-parser's included. */
function errorRoute(limit: number, metrics: WebhookMetrics, log: Logger, fail: Fail) {
  return (err: unknown, req: Request, res: Response, next: NextFunction): void => {
    if (res.headersSent) {
      next(err);
      return;
    }
    if (isHttpErrorLike(err) && answerHttpError(err, limit, req, res, fail)) return;
    log.error({ err, method: req.method, path: req.path }, 'internal error while answering a request');
    metrics.observeRejected('internal');
    res.status(500).json({ error: 'internal error in hook-runner webhook; see its log' });
  };
}

/** Answers body-parser's errors (size, JSON, encoding, other 4xx); false for anything else. */
function answerHttpError(err: HttpErrorLike, limit: number, req: Request, res: Response, fail: Fail): boolean {
  switch (err.type) {
    case 'entity.too.large':
      fail(
        res,
        413,
        'too-large',
        `request body ${err.length !== undefined ? `of ${err.length} bytes ` : ''}is larger than the limit of ${limit} bytes (${(limit / 1024 / 1024).toFixed(1)} MiB, the API server's own request size limit); an AdmissionReview is never that big`,
      );
      return true;
    case 'entity.parse.failed':
      fail(res, 400, 'malformed', `the request body is not valid JSON (${err.message}); expected an AdmissionReview (apiVersion admission.k8s.io/v1) as JSON`);
      return true;
    case 'charset.unsupported':
    case 'encoding.unsupported': {
      const what = err.type === 'encoding.unsupported' ? `content-encoding ${JSON.stringify(req.headers['content-encoding'])} is not accepted` : err.message;
      fail(res, 415, 'unsupported-encoding', `${what}; send the AdmissionReview as uncompressed UTF-8 JSON`);
      return true;
    }
    default:
      if (err.status !== undefined && err.status >= 400 && err.status < 500) {
        fail(res, err.status, 'malformed', err.message);
        return true;
      }
      return false;
  }
}

function createWebhookApp(opts: WebhookAppOptions): express.Express {
  const { metrics } = opts;
  const log = opts.logger.child({ component: 'webhook' });
  const state: ServerState = opts.state ?? { draining: false, inFlight: 0 };
  const limit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const fail = rejecter(metrics, log);
  const methodNotAllowed = (allow: string) => (req: Request, res: Response) => {
    res.setHeader('Allow', allow);
    fail(res, 405, 'method-not-allowed', `method ${req.method} is not allowed on ${req.path}; use ${allow.split(', ').join(' or ')}`);
  };

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(trackRequests(state));

  app.post('/mutate', jsonBody(limit), mutateRoute(opts, opts.review ?? reviewAdmission, log, fail));
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
  app.use(errorRoute(limit, metrics, log, fail));
  return app;
}

interface ServerTimeouts {
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

const DEFAULT_TIMEOUTS: ServerTimeouts = {
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

interface ShutdownOptions {
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

/** The HTTPS server with its timeouts; plain HTTP to the port gets a plain-HTTP 400 instead of a bare reset. */
function createHttpsServer(tls: TlsProvider, t: ServerTimeouts, app: express.Express, log: Logger): https.Server {
  const server = https.createServer(
    {
      ...tls.serverOptions(),
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
  return server;
}

function listenOn(server: https.Server, listen: ListenAddress): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => reject(new Error(`cannot listen on ${formatHostPort(listen)}: ${e.message}`));
    server.once('error', onError);
    server.listen(listen.port, listen.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * The graceful stop: /readyz fails, the optional delay, the listener closes, requests in flight
 * finish (bounded by the timeout, then their connections are cut). `onListenerClosed` runs when the
 * listener closes.
 */
async function drainAndClose(server: https.Server, state: ServerState, tls: TlsProvider, log: Logger, o: ShutdownOptions, onListenerClosed: () => void): Promise<void> {
  const delayMs = o.delayMs ?? 0;
  const timeoutMs = o.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
  state.draining = true;
  if (delayMs > 0) {
    log.info({ delayMs, inFlight: state.inFlight }, 'draining: /readyz fails now; still accepting while endpoints update');
    await new Promise((r) => setTimeout(r, delayMs));
  }
  onListenerClosed();
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
  tls.close();
}

export async function startWebhookServer(opts: StartWebhookServerOptions): Promise<WebhookServer> {
  const log = opts.logger.child({ component: 'webhook' });
  const state: ServerState = { draining: false, inFlight: 0 };
  opts.metrics.watchCertificate(() => opts.tls.current().validTo);
  const server = createHttpsServer(opts.tls, { ...DEFAULT_TIMEOUTS, ...opts.timeouts }, createWebhookApp({ ...opts, state }), log);
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

  await listenOn(server, opts.listen);
  server.on('error', (e) => log.error({ err: e }, 'server error'));
  opts.tls.attach(server);

  let closing: Promise<void> | undefined;
  return {
    server,
    state,
    address: () => server.address() as AddressInfo,
    close(o = {}) {
      closing ??= drainAndClose(server, state, opts.tls, log, o, () => {
        listenerClosed = true;
      });
      return closing;
    },
  };
}

export function formatHostPort(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
