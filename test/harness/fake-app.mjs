// A stand-in application container for the sidecar harness. Plain ESM (no build step): it runs as any
// uid inside the test's PID namespace. It appends JSON lines to $APP_LOG: start, every HTTP request,
// every signal, exit. Env:
//   APP_LOG           file to append events to (required)
//   APP_HTTP_PORT     serve HTTP on 127.0.0.1:<port> (optional)
//   APP_HTTPS_PORT    serve HTTPS there with APP_TLS_CERT / APP_TLS_KEY (optional)
//   APP_SHUTDOWN_MS   after SIGTERM, take this long before exiting (default 0)
//   APP_IGNORE_TERM   "1": ignore SIGTERM (only SIGKILL ends it)
//   APP_SLOW_MS       delay of the /slow endpoint (default 3000)
import { appendFileSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const LOG = process.env.APP_LOG;
const log = (ev, extra = {}) => appendFileSync(LOG, `${JSON.stringify({ ev, t: Date.now(), pid: process.pid, uid: process.getuid(), ...extra })}\n`);

function handler(req, res) {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    log('http', { method: req.method, path: req.url, body, scheme: req.socket.encrypted ? 'https' : 'http', headers: { 'x-test': req.headers['x-test'] } });
    if (req.url === '/fail') {
      res.writeHead(500);
      return res.end('boom\n');
    }
    if (req.url === '/redirect') {
      res.writeHead(302, { Location: 'http://192.0.2.1/elsewhere' });
      return res.end();
    }
    if (req.url === '/slow') {
      setTimeout(() => res.end('slow ok\n'), Number(process.env.APP_SLOW_MS ?? 3000));
      return;
    }
    res.end(`ok ${req.method} ${req.url}\n`);
  });
}

if (process.env.APP_HTTP_PORT) http.createServer(handler).listen(Number(process.env.APP_HTTP_PORT), '127.0.0.1');
if (process.env.APP_HTTPS_PORT) {
  https.createServer({ cert: readFileSync(process.env.APP_TLS_CERT), key: readFileSync(process.env.APP_TLS_KEY) }, handler).listen(Number(process.env.APP_HTTPS_PORT), '127.0.0.1');
}

for (const sig of ['SIGTERM', 'SIGQUIT', 'SIGUSR1', 'SIGINT']) {
  process.on(sig, () => {
    log('signal', { sig });
    if (sig === 'SIGUSR1' || process.env.APP_IGNORE_TERM === '1') return;
    setTimeout(() => {
      log('exit');
      process.exit(0);
    }, Number(process.env.APP_SHUTDOWN_MS ?? 0));
  });
}
log('start', { cwd: process.cwd() });
setInterval(() => {}, 1 << 30);
