/**
 * `hook-runner wait-ready`: the container-mode sidecar's own PostStart (DESIGN §4). Blocks until the
 * local /readyz answers 200, so the kubelet starts the app containers only once the hook API listens.
 */
import http from 'node:http';
import { DEFAULT_SIDECAR_PORT, ENV_PORT } from '../common/names.js';

export const WAIT_READY_HELP = `Usage: hook-runner wait-ready [--port N] [--timeout-seconds N]

Blocks until http://127.0.0.1:<port>/readyz answers 200, then exits 0; exits 1 after the timeout.
  --port N             port of the sidecar (default: ${ENV_PORT}, else ${DEFAULT_SIDECAR_PORT})
  --timeout-seconds N  give up after N seconds (default 60)
`;

// Short: a refused connection costs nothing, and every ms here delays the app's start (issue 13.0).
const POLL_MS = 20;

function probe(port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/readyz', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200 ? 'ok' : `HTTP ${res.statusCode}`);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 1s')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

function fail(msg: string): number {
  process.stderr.write(`hook-runner wait-ready: ${msg}\n`);
  return 1;
}

export async function runWaitReadyCli(argv: string[]): Promise<number> {
  let port: number | undefined;
  let timeoutSeconds = 60;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(WAIT_READY_HELP);
      return 0;
    }
    if (flag !== '--port' && flag !== '--timeout-seconds') return fail(`unknown option ${JSON.stringify(a)}\n\n${WAIT_READY_HELP}`);
    const v = inline ?? argv[++i];
    if (v === undefined) return fail(`${flag} needs a value`);
    if (flag === '--port') {
      if (!/^[0-9]+$/.test(v) || Number(v) < 1 || Number(v) > 65535) return fail(`--port must be 1-65535, got ${JSON.stringify(v)}`);
      port = Number(v);
    } else {
      if (!/^[0-9]+(\.[0-9]+)?$/.test(v) || Number(v) <= 0) return fail(`--timeout-seconds must be a positive number, got ${JSON.stringify(v)}`);
      timeoutSeconds = Number(v);
    }
  }
  if (port === undefined) {
    const e = process.env[ENV_PORT];
    if (e) {
      if (!/^[0-9]+$/.test(e) || Number(e) < 1 || Number(e) > 65535) return fail(`${ENV_PORT} must be 1-65535, got ${JSON.stringify(e)}`);
      port = Number(e);
    } else port = DEFAULT_SIDECAR_PORT;
  }
  const until = Date.now() + timeoutSeconds * 1000;
  let last = 'not tried';
  // Bounded by time and by count.
  for (let i = 0; i < (timeoutSeconds * 1000) / POLL_MS + 10 && Date.now() < until; i++) {
    last = await probe(port);
    if (last === 'ok') return 0;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return fail(`http://127.0.0.1:${port}/readyz did not answer 200 within ${timeoutSeconds}s (last: ${last})`);
}
