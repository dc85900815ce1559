/**
 * Child process of the benchmark: one server under test, on 127.0.0.1, port 0.
 *   webhook   the real webhook (startWebhookServer: HTTPS, keep-alive, express, logging, metrics)
 *   baseline  a no-op AdmissionReview server on the same stack: Node HTTPS + express + express.json,
 *             parses the body and answers allowed: true
 * Both use the same self-signed certificate (handed in through BENCH_TLS_CERT/KEY) and report
 * their port through IPC. Logs go to stdout, which the runner points at /dev/null.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { packageVersion } from '../common/version.js';
import { createLogger } from '../webhook/logger.js';
import { defaultConfig } from '../webhook/core/config.js';
import { createWebhookMetrics } from '../webhook/metrics.js';
import { startWebhookServer } from '../webhook/server.js';
import { TLS_CONTEXT_DEFAULTS, staticTlsProvider } from '../webhook/cluster/tls.js';

const kind = process.argv[2];
const cert = process.env.BENCH_TLS_CERT ?? '';
const key = process.env.BENCH_TLS_KEY ?? '';

async function main(): Promise<number> {
  if (kind === 'webhook') {
    const s = await startWebhookServer({
      listen: { host: '127.0.0.1', port: 0 },
      tls: staticTlsProvider({ cert, key }, 'bench'),
      config: defaultConfig(packageVersion()),
      mode: 'native',
      logger: createLogger(),
      metrics: createWebhookMetrics(),
    });
    return s.address().port;
  }
  if (kind === 'baseline') {
    const app = express();
    app.disable('x-powered-by');
    app.disable('etag');
    app.post('/mutate', express.json({ limit: 3 * 1024 * 1024, type: () => true }), (req, res) => {
      const uid = (req.body as { request?: { uid?: string } }).request?.uid ?? '';
      res.json({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, allowed: true } });
    });
    const server = https.createServer({ ...TLS_CONTEXT_DEFAULTS, cert, key }, app);
    server.keepAliveTimeout = 95_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as AddressInfo).port;
  }
  throw new Error(`usage: servers.ts webhook|baseline (got ${kind})`);
}

main().then(
  (port) => process.send?.({ port }),
  (e: unknown) => {
    process.stderr.write(`bench server: ${(e as Error).stack}\n`);
    process.exit(1);
  },
);
// The runner disconnects (or dies): leave too, so no server outlives the bench.
process.on('disconnect', () => process.exit(0));
