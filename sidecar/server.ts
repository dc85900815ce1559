/**
 * The sidecar's HTTP API (DESIGN §2, §6) on plain node:http: the hook paths the kubelet calls,
 * `/last` reports, health, readiness and metrics. A failed hook closes the connection without a
 * response, because the kubelet judges a lifecycle httpGet only by transport errors.
 */
import http from 'node:http';
import { createRequire } from 'node:module';
import type { Logger } from './log.js';
import { HEADER_TOKEN, PHASES, type Phase } from '../common/names.js';
import type { SidecarMetrics } from './metrics.js';
import type { HookService } from './service.js';

const HOOK_PATH = /^\/v1\/hooks\/([^/]+)\/([^/]+)(\/last)?\/?$/;

// node:crypto costs ~3 ms to load: it is loaded after readiness (preloadTokenCheck) or at the first check.
const requireBuiltin = createRequire(import.meta.url);
let crypto: typeof import('node:crypto') | undefined;

/** Loads what {@link tokenMatches} needs, so the first hook call does not pay for it. */
export function preloadTokenCheck(): void {
  crypto ??= requireBuiltin('node:crypto') as typeof import('node:crypto');
}

/** Constant-time token comparison (hashing first makes the lengths equal). */
export function tokenMatches(expected: string, got: string | string[] | undefined): boolean {
  if (typeof got !== 'string') return false;
  crypto ??= requireBuiltin('node:crypto') as typeof import('node:crypto');
  const { createHash, timingSafeEqual } = crypto;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(got).digest();
  return timingSafeEqual(a, b);
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export interface ServerDeps {
  token: string;
  service: HookService;
  metrics: SidecarMetrics;
  log: Logger;
  isReady: () => boolean;
  /** Whether this source address may call the hook API (sidecar/callers.ts). */
  callerAllowed: (remote: string | undefined) => boolean;
  /** Called for every refused call (source address, or token); rate-limits its own logging. */
  onRefused: (remote: string, path: string, why: 'caller' | 'token') => void;
  /** A connection must deliver a request's headers within this (default {@link HEADERS_TIMEOUT_MS}). */
  headersTimeoutMs?: number;
}

const HEADERS_TIMEOUT_MS = 15_000;
/** setInterval's maximum: node's connection checker then never fires (see createSidecarServer). */
const NEVER_MS = 2 ** 31 - 1;

/** The only endpoints open to every source: probes (the kubelet) and scrapes (Prometheus, any pod). */
const OPEN_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

export function createSidecarServer(d: ServerDeps): http.Server {
  const server = http.createServer({ connectionsCheckingInterval: NEVER_MS }, (req, res) => {
    // The headers are in: a hook may now run as long as it needs (PostStart has no limit).
    req.socket.setTimeout(0);
    // Nothing a request carries may end the process: a throw here would be an uncaught exception.
    try {
      handle(d, req, res);
    } catch (e) {
      d.log.error({ path: String(req.url ?? '').slice(0, 200), method: req.method, err: (e as Error).message }, 'request handler failed');
      if (!res.headersSent && !res.destroyed) send(res, 500, { error: 'internal error' });
      else req.socket.destroy();
    }
  });
  // A request's headers must arrive promptly (slow-header clients). Node enforces its
  // headersTimeout/requestTimeout with a 30 s interval timer that runs for the server's whole life,
  // which woke every idle sidecar twice a minute (issue 13.1: no periodic wake-ups). A per-socket
  // inactivity timer does the same job and exists only while a connection waits for its headers:
  // armed on connection (`server.timeout`), cleared when the request arrives (above); between
  // keep-alive requests node's keepAliveTimeout applies. A socket timing out with no listener is
  // destroyed by node.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.timeout = d.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  server.keepAliveTimeout = 5_000;
  return server;
}

function handle(d: ServerDeps, req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = (req.url ?? '/').split('?')[0] ?? '/';
  const method = req.method ?? 'GET';
  if (OPEN_PATHS.has(url)) return openEndpoint(d, url, method, res);
  const m = HOOK_PATH.exec(url);
  // The source check comes first, so refused callers learn nothing (not even which paths exist).
  if (!d.callerAllowed(req.socket.remoteAddress)) {
    d.onRefused(req.socket.remoteAddress ?? 'unknown', url.slice(0, 200), 'caller');
    // A refused hook call fails as a hook (dropped connection: the kubelet reports FailedPostStartHook /
    // FailedPreStopHook); anything else gets a plain 403.
    if (m && !m[3]) return void req.socket.destroy();
    return send(res, 403, { error: 'caller not accepted by this sidecar (see its log)' });
  }
  if (!m) return send(res, 404, { error: `no such path: ${url.slice(0, 200)}` });
  // The token is checked before anything else so that container names do not leak without it.
  if (!tokenMatches(d.token, req.headers[HEADER_TOKEN.toLowerCase()])) {
    d.onRefused(req.socket.remoteAddress ?? 'unknown', url.slice(0, 200), 'token');
    return send(res, 401, { error: `missing or wrong ${HEADER_TOKEN} header` });
  }
  let container: string;
  try {
    container = decodeURIComponent(m[1]!);
  } catch {
    return send(res, 400, { error: 'container name in the path is not valid percent-encoded UTF-8' });
  }
  const phase = m[2]! as Phase;
  if (!PHASES.includes(phase)) return send(res, 404, { error: `unknown phase ${JSON.stringify(phase.slice(0, 100))}; expected ${PHASES.join(' or ')}` });
  if (!d.service.hasHook(container, phase)) return send(res, 404, { error: `no ${phase} hook for container ${JSON.stringify(container.slice(0, 100))}` });
  if (m[3]) {
    if (method !== 'GET') return send(res, 405, { error: 'use GET' });
    const last = d.service.last(container, phase);
    return last ? send(res, 200, last) : send(res, 404, { error: `no ${phase} run of container ${container} yet` });
  }
  if (method !== 'GET' && method !== 'POST') return send(res, 405, { error: 'use GET or POST' });
  req.resume();
  d.service.call(container, phase).then(
    ({ report }) => {
      if (res.destroyed || res.writableEnded) return;
      if (report.outcome === 'succeeded') send(res, 200, report);
      // No response at all: the kubelet counts only transport errors as a failed hook.
      else req.socket.destroy();
    },
    (e: unknown) => {
      d.log.error({ container, phase, err: (e as Error).message }, 'hook call crashed');
      req.socket.destroy();
    },
  );
}

function openEndpoint(d: ServerDeps, url: string, method: string, res: http.ServerResponse): void {
  if (method !== 'GET' && method !== 'HEAD') return send(res, 405, { error: 'use GET' });
  if (url === '/healthz') return send(res, 200, 'ok\n');
  if (url === '/readyz') return d.isReady() ? send(res, 200, 'ok\n') : send(res, 503, 'not ready\n');
  const { contentType, text } = d.metrics.render();
  res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
