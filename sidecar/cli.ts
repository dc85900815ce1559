/**
 * `hook-runner sidecar`: configured only by the environment the webhook writes (DESIGN §5).
 * Resolves with the exit code once the sidecar has shut down.
 */
import { readFileSync } from 'node:fs';
import { createLogger, type Logger } from '../common/logger.js';
import { ENV_EVENT_OUTPUT, ENV_GRACE_SECONDS, ENV_MARKER, ENV_PORT, ENV_SPEC, ENV_TOKEN, HEADER_TOKEN } from '../common/names.js';
import { capNames } from './caps.js';
import { EnvError, loadSidecarEnv, type SidecarEnv } from './env.js';
import { findExecTools } from './handlers.js';
import { KubeClient } from './kube.js';
import { SidecarMetrics } from './metrics.js';
import { containerProcesses, parseStatus, readProcSnapshot } from './proc.js';
import { createSidecarServer, preloadTokenCheck } from './server.js';
import { HookService } from './service.js';

export const SIDECAR_HELP = `Usage: hook-runner sidecar

Runs the lifecycle hooks of the pod's hooked containers; the kubelet calls it over HTTP.
Configured by environment (the webhook writes it):
  ${ENV_SPEC}           JSON of the normalised hooks, keyed by container (required)
  ${ENV_TOKEN}          token expected in the ${HEADER_TOKEN} header (required, >= 16 chars)
  ${ENV_PORT}           port to listen on, all interfaces (default 15901)
  ${ENV_GRACE_SECONDS}  the pod's terminationGracePeriodSeconds (default 30)
  ${ENV_EVENT_OUTPUT}   true: put hook output tails in Events (default false)
  POD_NAME, POD_NAMESPACE, POD_UID, NODE_NAME   downward API, for logs and Events
Hooked containers carry ${ENV_MARKER}=<name>; the sidecar finds them through the shared PID namespace.
Endpoints: GET|POST /v1/hooks/{container}/{postStart|preStop}, GET .../last, /healthz, /readyz, /metrics.
`;

/** Time kept back at the end of the grace period so the sidecar exits 0 before the kubelet's SIGKILL. */
export const EXIT_MARGIN_MS = 1000;
const SHUTDOWN_POLL_MS = 100;

/** Every process that may belong to a hooked container: marker match, or environ unreadable. */
export function hookedProcessesAlive(env: SidecarEnv, procRoot = '/proc'): number {
  const snap = readProcSnapshot(procRoot);
  let n = 0;
  for (const c of Object.keys(env.spec)) n += containerProcesses(snap, c, process.pid).length;
  // Unreadable environ: cannot tell whose it is, so wait for it too (never pid 1, the pause process).
  if (snap.unreadable > 0) n += snap.entries.filter((e) => e.unreadable && e.pid !== 1 && e.state !== 'Z').length;
  return n;
}

export async function runSidecarCli(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(SIDECAR_HELP);
    return 0;
  }
  if (argv.length > 0) {
    process.stderr.write(`hook-runner sidecar: takes no arguments (got ${argv.join(' ')}); it is configured by environment\n\n${SIDECAR_HELP}`);
    return 2;
  }
  let env: SidecarEnv;
  try {
    env = loadSidecarEnv(process.env);
  } catch (e) {
    if (e instanceof EnvError) {
      process.stderr.write(`hook-runner sidecar: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  const log = createLogger({ name: 'hook-runner-sidecar' });
  return runSidecar(env, log);
}

export async function runSidecar(env: SidecarEnv, log: Logger): Promise<number> {
  const status = parseStatus(readFileSync('/proc/self/status', 'utf8'));
  const tools = findExecTools();
  const usesExec = Object.values(env.spec).some((h) => [...h.postStart, ...h.preStop].some((x) => 'exec' in x));
  if (usesExec && !tools) log.warn({}, 'exec hooks are declared but the hook-exec helper is missing next to the sidecar (dist/sidecar/hook-exec, built by npm run build); they will fail');
  const metrics = new SidecarMetrics();
  const kube = new KubeClient(env.pod, log);
  const service = new HookService({ env, log, metrics, kube, tools, self: { capEff: status.capEff, capPrm: status.capPrm } });
  let ready = false;
  const server = createSidecarServer({ token: env.token, service, metrics, log, isReady: () => ready });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(env.port, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`cannot listen on port ${env.port} (${ENV_PORT}): ${e.code ?? e.message}`);
  });
  ready = true;
  // What /readyz does not need loads just after it: node:crypto for the token check, and prom-client.
  setTimeout(() => {
    preloadTokenCheck();
    void metrics.load();
  }, 50).unref();
  // Load the Kubernetes client while idle (it blocks the loop for 1-2 s), so the first PreStop finds it ready.
  if (kube.configured()) {
    let tries = 0;
    const warm = () => (service.inFlight() === 0 || ++tries > 100 ? kube.warm() : setTimeout(warm, 100).unref());
    setTimeout(warm, 300).unref();
  }
  log.info(
    { port: env.port, containers: Object.keys(env.spec), pod: env.pod.name, namespace: env.pod.namespace, uid: status.uid, caps: capNames(status.capEff), graceSeconds: env.graceSeconds, startupMs: Math.round(process.uptime() * 1000) },
    'sidecar ready',
  );

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (why: string, waitForApps: boolean) => {
      if (stopping) return;
      stopping = true;
      const t0 = Date.now();
      if (waitForApps) {
        const grace = await kube.graceSeconds(env.graceSeconds);
        const until = t0 + Math.max(0, grace.seconds * 1000 - EXIT_MARGIN_MS);
        log.info({ signal: why, graceSeconds: grace.seconds, graceSource: grace.source }, 'stop signal: serving until the hooked containers have exited');
        // Bounded by the grace period (and by a count, should the clock jump).
        for (let i = 0; Date.now() < until && i < (grace.seconds * 1000) / SHUTDOWN_POLL_MS + 10; i++) {
          if (hookedProcessesAlive(env) === 0 && service.inFlight() === 0) break; // a call in flight is answered first
          await new Promise((r) => setTimeout(r, SHUTDOWN_POLL_MS));
        }
      }
      const left = hookedProcessesAlive(env);
      log.info({ signal: why, waitedMs: Date.now() - t0, hookedProcessesLeft: left, inFlight: service.inFlight() }, 'sidecar exiting');
      service.abortAll();
      server.close();
      server.closeAllConnections();
      await kube.flush();
      // Nothing should keep the loop alive now; if something does, leave anyway.
      setTimeout(() => process.exit(0), 500).unref();
      resolve(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM', true));
    process.on('SIGINT', () => void stop('SIGINT', false));
  });
}
