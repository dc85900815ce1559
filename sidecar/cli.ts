/**
 * `hook-runner sidecar`: configured only by the environment the webhook writes (DESIGN §5).
 * Resolves with the exit code once the sidecar has shut down.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSidecarLogger, type Logger } from './log.js';
import { ENV_CALLERS, ENV_EVENT_OUTPUT, ENV_GRACE_SECONDS, ENV_HOST_IP, ENV_HOST_IPS, ENV_MARKER, ENV_PORT, ENV_SPEC, ENV_TOKEN, HEADER_TOKEN } from '../common/names.js';
import { CallerCheck, describeCallers, normaliseAddress, parseDefaultGateways, RefusalLog } from './callers.js';
import { capNames } from './caps.js';
import { EnvError, loadSidecarEnv, type SidecarEnv } from './env.js';
import { findExecTools } from './handlers.js';
import { KubeClient } from './kube.js';
import { SidecarMetrics } from './metrics.js';
import { containerProcesses, parseStatus, readProcSnapshot } from './proc.js';
import { createSidecarServer, preloadTokenCheck } from './server.js';
import { HookService } from './service.js';

const SIDECAR_HELP = `Usage: hook-runner sidecar

Runs the lifecycle hooks of the pod's hooked containers; the kubelet calls it over HTTP.
Configured by environment (the webhook writes it):
  ${ENV_SPEC}           JSON of the normalised hooks, keyed by container (required)
  ${ENV_TOKEN}          token expected in the ${HEADER_TOKEN} header (required, >= 16 chars)
  ${ENV_PORT}           port to listen on, all interfaces (default 15901)
  ${ENV_GRACE_SECONDS}  the pod's terminationGracePeriodSeconds (default 30)
  ${ENV_EVENT_OUTPUT}   true: put hook output tails in Events (default false)
  ${ENV_CALLERS}        who may call the hook paths and /last: auto (default: loopback, the node
                        and the pod's default gateway), any, or comma-separated CIDRs (plus loopback)
  ${ENV_HOST_IP}, ${ENV_HOST_IPS}   the node's address(es), downward API status.hostIP(s)
  POD_NAME, POD_NAMESPACE, POD_UID, NODE_NAME   downward API, for logs and Events
Hooked containers carry ${ENV_MARKER}=<name>; the sidecar finds them through the shared PID namespace.
Endpoints: GET|POST /v1/hooks/{container}/{postStart|preStop}, GET .../last (accepted callers and
the token only), /healthz, /readyz, /metrics (open).
`;

/** Time kept back at the end of the grace period so the sidecar exits 0 before the kubelet's SIGKILL. */
const EXIT_MARGIN_MS = 1000;
const SHUTDOWN_POLL_MS = 100;

/** Default gateways of the sidecar's network namespace (the pod's); empty when /proc/net is unreadable. */
function readDefaultGateways(procNet = '/proc/net'): string[] {
  const read = (f: string) => {
    try {
      return readFileSync(join(procNet, f), 'utf8');
    } catch {
      return '';
    }
  };
  return parseDefaultGateways(read('route'), read('ipv6_route'));
}

/** How often, at most, a refused caller makes the sidecar re-read its routes (the CNI may set them late). */
const GATEWAY_REREAD_MS = 5000;

/** The caller check of the server, with its rate-limited refusal log (DESIGN §6). */
function callerGate(
  env: SidecarEnv,
  log: Logger,
  procNet = '/proc/net',
): {
  allowed: (remote: string | undefined) => boolean;
  refused: (remote: string, path: string, why: 'caller' | 'token') => void;
  flush: () => void;
  readGateways: () => CallerCheck;
  check: CallerCheck;
} {
  // The routes are read on first use (the first call, or just after readiness), not before the
  // server listens: parsing them (node's IPv6 matcher compiles on first use) cost ~2 ms of every start.
  const check = new CallerCheck(env.callers, []);
  let readAt = Number.NEGATIVE_INFINITY;
  const readGateways = (): CallerCheck => {
    if (env.callers.mode === 'auto' && readAt === Number.NEGATIVE_INFINITY) {
      readAt = Date.now();
      check.setGateways(readDefaultGateways(procNet));
    }
    return check;
  };
  const refusals = new RefusalLog((kind, fields) => {
    if (kind === 'refused')
      log.warn(
        { ...fields, accepted: describeCallers(env.callers, check.gateways), setting: ENV_CALLERS },
        `hook API call refused: the caller's address is not an accepted caller (config hookCallers, env ${ENV_CALLERS}); the kubelet calls from the node or the pod's gateway`,
      );
    else log.warn({ ...fields, setting: ENV_CALLERS }, 'further hook API calls refused (not logged one by one)');
  });
  // Wrong tokens are refused calls too: from an accepted address (or under `any`) they must not flood the log either.
  const badTokens = new RefusalLog((kind, fields) => {
    if (kind === 'refused') log.warn(fields, `hook call without a valid ${HEADER_TOKEN} header`);
    else log.warn(fields, `further hook calls without a valid ${HEADER_TOKEN} header (not logged one by one)`);
  });
  const allowed = (remote: string | undefined): boolean => {
    if (readGateways().allowed(remote)) return true;
    if (env.callers.mode !== 'auto' || Date.now() - readAt < GATEWAY_REREAD_MS) return false;
    readAt = Date.now();
    check.setGateways(readDefaultGateways(procNet));
    return check.allowed(remote);
  };
  const refused = (remote: string, path: string, why: 'caller' | 'token') => (why === 'caller' ? refusals : badTokens).refused({ remote: normaliseAddress(remote) ?? remote, path });
  const flush = () => {
    refusals.flush();
    badTokens.flush();
  };
  return { allowed, refused, flush, readGateways, check };
}

/** Every process that may belong to a hooked container: marker match, or environ unreadable. */
function hookedProcessesAlive(env: SidecarEnv, procRoot = '/proc'): number {
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
  const log = createSidecarLogger({ name: 'hook-runner-sidecar' });
  return runSidecar(env, log);
}

function listenOn(server: ReturnType<typeof createSidecarServer>, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`cannot listen on port ${port} (${ENV_PORT}): ${e.code ?? e.message}`);
  });
}

/**
 * After SIGTERM: until the hooked containers have exited and no hook call is in flight, bounded by
 * `until` (and by a count, should the clock jump). A hook call still in flight keeps the sidecar up
 * even when the app is gone: a PreStop that ends the app (signal with waitForExit) must still be
 * answered, or the kubelet reports a failed PreStop (issue 13.4).
 */
async function waitForAppsAndCalls(env: SidecarEnv, service: HookService, log: Logger, until: number): Promise<void> {
  let saidCalls = false;
  for (let i = 0; Date.now() < until && i < (env.graceSeconds * 1000) / SHUTDOWN_POLL_MS + 10; i++) {
    const inFlight = service.inFlight();
    if (inFlight === 0 && hookedProcessesAlive(env) === 0) break;
    if (inFlight > 0 && !saidCalls && hookedProcessesAlive(env) === 0) {
      saidCalls = true;
      log.info({ inFlight }, 'hooked containers have exited; waiting for the hook calls in flight to be answered');
    }
    await new Promise((r) => setTimeout(r, SHUTDOWN_POLL_MS));
  }
}

async function runSidecar(env: SidecarEnv, log: Logger): Promise<number> {
  const status = parseStatus(readFileSync('/proc/self/status', 'utf8'));
  const tools = findExecTools();
  const usesExec = Object.values(env.spec).some((h) => [...h.postStart, ...h.preStop].some((x) => x.kind === 'exec'));
  if (usesExec && !tools) log.warn({}, 'exec hooks are declared but the hook-exec helper is missing next to the sidecar (dist/sidecar/hook-exec, built by npm run build); they will fail');
  const metrics = new SidecarMetrics();
  const kube = new KubeClient(env.pod, log);
  const service = new HookService({ env, log, metrics, kube, tools, self: { capEff: status.capEff, capPrm: status.capPrm } });
  let ready = false;
  const gate = callerGate(env, log);
  const server = createSidecarServer({ token: env.token, service, metrics, log, isReady: () => ready, callerAllowed: gate.allowed, onRefused: gate.refused });

  await listenOn(server, env.port);
  ready = true;
  const startupMs = Math.round(process.uptime() * 1000);
  // The routes (for the caller check and these lines) are read, and the lines written, once a
  // probe already waiting has been answered (~2.5 ms of every start); a call before that reads them itself.
  setImmediate(() => {
    const check = gate.readGateways();
    log.info(
      {
        port: env.port,
        containers: Object.keys(env.spec),
        pod: env.pod.name,
        namespace: env.pod.namespace,
        uid: status.uid,
        caps: capNames(status.capEff),
        graceSeconds: env.graceSeconds,
        callers: describeCallers(env.callers, check.gateways),
        startupMs,
      },
      'sidecar ready',
    );
    if (env.callers.mode === 'auto' && check.gateways.length === 0 && env.callers.hostIps.length === 0) {
      log.warn(
        { setting: ENV_CALLERS },
        `no default gateway in this network namespace and no ${ENV_HOST_IP}/${ENV_HOST_IPS}: only loopback may call the hook API; set ${ENV_CALLERS} (config hookCallers) to the kubelet's source address`,
      );
    }
  });
  // node:crypto (~3 ms) for the token check loads just after readiness; nothing heavier loads later.
  setTimeout(preloadTokenCheck, 50).unref();

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (why: string, waitForApps: boolean) => {
      if (stopping) return;
      stopping = true;
      const t0 = Date.now();
      if (waitForApps) {
        log.info({ signal: why, graceSeconds: env.graceSeconds }, 'stop signal: serving until the hooked containers have exited and no hook call is in flight');
        await waitForAppsAndCalls(env, service, log, t0 + Math.max(0, env.graceSeconds * 1000 - EXIT_MARGIN_MS));
      }
      const left = hookedProcessesAlive(env);
      log.info({ signal: why, waitedMs: Date.now() - t0, hookedProcessesLeft: left, inFlight: service.inFlight() }, 'sidecar exiting');
      gate.flush();
      service.abortAll();
      // Answers already written (a call that just finished) reach the caller before the sockets go.
      server.close();
      server.closeIdleConnections();
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 500);
        server.once('close', () => {
          clearTimeout(timer);
          r();
        });
      });
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
