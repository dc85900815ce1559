/**
 * Small helpers for tests that talk HTTPS to a server on 127.0.0.1: a bounded request, the peer
 * certificate of a fresh TLS connection, a logger that keeps its lines, and a bounded wait.
 */
import https from 'node:https';
import tls from 'node:tls';
import type { IncomingHttpHeaders } from 'node:http';
import { createLogger, type Logger } from '../../webhook/logger.js';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json(): unknown;
}

export interface RequestOptions {
  port: number;
  method?: string;
  path?: string;
  headers?: Record<string, string | number>;
  body?: string | Buffer;
  /** Send the body in chunks without Content-Length. */
  chunked?: boolean;
  /** CA to verify the server with; the connection is always verified. */
  ca: string | Buffer;
  /** Name to verify (SNI); the IP 127.0.0.1 is verified when absent. */
  servername?: string;
  timeoutMs?: number;
}

/** One request on its own connection (no agent reuse), failing after `timeoutMs`. */
export function request(o: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: o.port,
        method: o.method ?? 'GET',
        path: o.path ?? '/',
        headers: o.headers,
        ca: o.ca,
        servername: o.servername,
        agent: false,
        timeout: o.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) as unknown });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request ${o.method ?? 'GET'} ${o.path ?? '/'} timed out after ${o.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    if (o.body !== undefined && o.chunked) {
      const buf = Buffer.from(o.body);
      const step = 256 * 1024;
      for (let i = 0; i < buf.length; i += step) req.write(buf.subarray(i, i + step));
      req.end();
    } else {
      req.end(o.body);
    }
  });
}

/** Certificate the server presents to a brand-new TLS connection, verified against `ca`. */
export function peerCertificate(o: { port: number; ca: string | Buffer; servername?: string; timeoutMs?: number }): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: o.port, ca: o.ca, servername: o.servername, timeout: o.timeoutMs ?? 10_000 }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve(cert);
    });
    socket.on('timeout', () => socket.destroy(new Error('TLS connect timed out')));
    socket.on('error', reject);
  });
}

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** A real pino root logger (same options as production) whose lines are kept in `lines`. */
export function memoryLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: {
      write(s: string) {
        for (const l of s.split('\n')) if (l.trim()) lines.push(JSON.parse(l) as LogLine);
      },
    },
  });
  return { logger, lines };
}

/** Polls `fn` until it returns a value other than undefined/false; at most `tries` times. */
export async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, opts: { tries?: number; intervalMs?: number } = {}): Promise<T> {
  const tries = opts.tries ?? 200;
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
  throw new Error(`gave up waiting for ${what} after ${tries} tries`);
}
