/**
 * `hook-runner webhook`: the admission webhook over HTTPS. Parses flags, loads config and TLS,
 * starts the server, and stops it gracefully on SIGTERM/SIGINT. The returned promise resolves (0)
 * only after the server has stopped; usage and startup errors resolve at once with 2 or 1.
 */
import { writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { packageVersion } from '../common/version.js';
import { createLogger, type Logger } from './logger.js';
import type { ResolvedMode } from './core/admission.js';
import { inClusterEnvironment } from './cluster/in-cluster-env.js';
import type { InCluster } from './cluster/in-cluster.js';
import { ConfigError, loadConfig, type Config } from './core/config.js';
import { createWebhookMetrics } from './metrics.js';
import { DEFAULT_SHUTDOWN_TIMEOUT_MS, formatHostPort, startWebhookServer, type ListenAddress, type WebhookServer } from './server.js';
import { DEFAULT_SERVICE_NAME, DEFAULT_SERVICE_NAMESPACE, TlsError, fileTlsProvider, makeSelfSignedBundle, staticTlsProvider, webhookServingNames, type TlsProvider } from './cluster/tls.js';

export const DEFAULT_LISTEN = '0.0.0.0:8443';
/** After SIGTERM: time for the pod's removal from the Service endpoints to reach the API server. */
export const DEFAULT_SHUTDOWN_DELAY_SECONDS = 5;

const HELP = `Usage: hook-runner webhook [--listen HOST:PORT] [--tls-cert-file F --tls-key-file F | --self-signed] [--config F]

Serves the hook-runner mutating admission webhook over HTTPS:
  POST /mutate    AdmissionReview admission.k8s.io/v1 (request bodies up to 3 MiB)
  GET  /healthz   liveness
  GET  /readyz    readiness (fails while shutting down)
  GET  /metrics   Prometheus metrics

Options:
      --listen HOST:PORT            address to listen on [${DEFAULT_LISTEN}]; IPv6 as [::]:8443;
                                    port 0 picks a free port (the log says which)
      --tls-cert-file FILE          serving certificate chain (PEM); re-read when it changes
                                    (cert-manager rotation), a bad new pair keeps the old one
      --tls-key-file FILE           its private key (PEM); required with --tls-cert-file
      --self-signed                 make a CA and a serving certificate at start instead
      --ca-out FILE                 with --self-signed: write the CA certificate (PEM) to FILE
                                    instead of stderr (it is the webhook's caBundle)
      --service-name NAME           with --self-signed: Service the API server calls [${DEFAULT_SERVICE_NAME}]
      --service-namespace NS        with --self-signed: its namespace [${DEFAULT_SERVICE_NAMESPACE}]
                                    (certificate names: NAME, NAME.NS, NAME.NS.svc, localhost, 127.0.0.1)
      --config FILE                 hook-runner configuration (YAML); defaults otherwise
      --shutdown-delay-seconds N    after SIGTERM keep serving N s with /readyz failing, so the
                                    API server stops sending requests first [${DEFAULT_SHUTDOWN_DELAY_SECONDS}] (SIGINT: no delay)
      --shutdown-timeout-seconds N  then wait at most N s for requests in flight [${DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000}]
  -h, --help                        this text

Signals: SIGTERM, SIGINT stop gracefully (exit 0); SIGHUP re-reads the TLS files now.
Logs: JSON lines on stdout; LOG_LEVEL sets the level (info). When stdout is a terminal, the
webhook also prints, once listening, plain lines saying how to try it.
Exit status: 0 after a clean stop; 1 when the config or TLS files cannot be loaded or the address
cannot be bound; 2 on a usage error.
`;

export interface WebhookCliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Root logger; made on stdout when absent. */
  logger?: Logger;
  /** Stops the server like SIGINT when aborted (for callers that run it in-process). */
  stop?: AbortSignal;
}

/**
 * The sidecar mode outside a cluster (`npm start`, a workstation): there is no API server to ask,
 * so `auto` means native, as for `inject`. In a pod, startInCluster asks the API server's version.
 */
export function resolveSidecarModeOffline(config: Config, logger: Logger): ResolvedMode {
  const mode = config.sidecar.mode;
  if (mode === 'native' || mode === 'container') return mode;
  logger.info({ configured: mode, resolved: 'native' }, 'not running in a cluster: sidecar.mode auto resolves to native (set sidecar.mode: container in --config for clusters older than 1.29)');
  return 'native';
}

/** Parses HOST:PORT (IPv6 in brackets). Returns an error message instead of throwing. */
export function parseListen(s: string): ListenAddress | string {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
  const expected = 'expected HOST:PORT such as 0.0.0.0:8443, 127.0.0.1:0 or [::]:8443';
  if (!m) return `--listen ${JSON.stringify(s)}: ${expected}`;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (port > 65535) return `--listen ${JSON.stringify(s)}: port must be 0-65535`;
  if (host === '') return `--listen ${JSON.stringify(s)}: the host is empty; ${expected}`;
  if (m[1] !== undefined && isIP(host) !== 6) return `--listen ${JSON.stringify(s)}: ${host} in brackets is not an IPv6 address`;
  return { host, port };
}

function parseSeconds(flag: string, v: string | undefined, dflt: number): number | string {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 600) return `${flag} ${JSON.stringify(v)}: expected a number of seconds 0-600`;
  return n;
}

/** Host for the "try it" hint: a wildcard address is reached through loopback. */
function reachableHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/** The command line, checked. */
interface WebhookFlags {
  listen: ListenAddress;
  certFile?: string;
  keyFile?: string;
  selfSigned: boolean;
  caOut?: string;
  serviceName?: string;
  serviceNamespace?: string;
  config?: string;
  delaySeconds: number;
  timeoutSeconds: number;
}

/** The flags, `help`, or the usage error to print. */
function parseFlags(argv: string[]): WebhookFlags | 'help' | { usage: string } {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string', default: DEFAULT_LISTEN },
        'tls-cert-file': { type: 'string' },
        'tls-key-file': { type: 'string' },
        'self-signed': { type: 'boolean', default: false },
        'ca-out': { type: 'string' },
        'service-name': { type: 'string' },
        'service-namespace': { type: 'string' },
        config: { type: 'string' },
        'shutdown-delay-seconds': { type: 'string' },
        'shutdown-timeout-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    // parseArgs names the offending option ("Unknown option '--foo'").
    return { usage: (e as Error).message };
  }
  if (args.help) return 'help';

  const listen = parseListen(args.listen);
  if (typeof listen === 'string') return { usage: listen };
  const tlsProblem = tlsFlagsProblem(args);
  if (tlsProblem) return { usage: tlsProblem };
  const delaySeconds = parseSeconds('--shutdown-delay-seconds', args['shutdown-delay-seconds'], DEFAULT_SHUTDOWN_DELAY_SECONDS);
  if (typeof delaySeconds === 'string') return { usage: delaySeconds };
  const timeoutSeconds = parseSeconds('--shutdown-timeout-seconds', args['shutdown-timeout-seconds'], DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000);
  if (typeof timeoutSeconds === 'string') return { usage: timeoutSeconds };
  return {
    listen,
    certFile: args['tls-cert-file'],
    keyFile: args['tls-key-file'],
    selfSigned: args['self-signed'],
    caOut: args['ca-out'],
    serviceName: args['service-name'],
    serviceNamespace: args['service-namespace'],
    config: args.config,
    delaySeconds,
    timeoutSeconds,
  };
}

type TlsFlags = Partial<Record<'tls-cert-file' | 'tls-key-file' | 'ca-out' | 'service-name' | 'service-namespace', string>> & { 'self-signed': boolean };

/** What is wrong with the serving-certificate flags, or undefined: exactly one source, and its own options only. */
function tlsFlagsProblem(args: TlsFlags): string | undefined {
  const certFile = args['tls-cert-file'];
  const keyFile = args['tls-key-file'];
  if (args['self-signed'] && (certFile !== undefined || keyFile !== undefined)) {
    return '--self-signed and --tls-cert-file/--tls-key-file exclude each other; choose one source of the serving certificate';
  }
  if (!args['self-signed']) {
    if (certFile === undefined && keyFile === undefined) {
      return 'no TLS: the API server calls webhooks over HTTPS only; pass --tls-cert-file F --tls-key-file F, or --self-signed';
    }
    if (certFile === undefined) return '--tls-key-file needs --tls-cert-file (the certificate that goes with the key)';
    if (keyFile === undefined) return '--tls-cert-file needs --tls-key-file (the private key of the certificate)';
    for (const flag of ['ca-out', 'service-name', 'service-namespace'] as const) {
      if (args[flag] !== undefined) return `--${flag} applies only with --self-signed`;
    }
  }
  for (const flag of ['service-name', 'service-namespace'] as const) {
    const v = args[flag];
    if (v !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v)) return `--${flag} ${JSON.stringify(v)}: expected a DNS label (lowercase letters, digits, '-', at most 63)`;
  }
  return undefined;
}

interface ServiceIdentity {
  serviceName: string;
  serviceNamespace: string;
}

/**
 * The serving certificate: the in-cluster Secret's, a self-signed one made now (its CA written to
 * --ca-out or stderr), or the files. Throws {@link TlsError}; `{failure}` when --ca-out cannot be written.
 */
function chooseTls(flags: WebhookFlags, cluster: InCluster | undefined, service: ServiceIdentity, io: WebhookCliIo, logger: Logger): { tls: TlsProvider; caOut?: string } | { failure: string } {
  if (cluster?.tlsProvider) {
    const tls = cluster.tlsProvider;
    logger.info({ secret: `${service.serviceNamespace}/hook-runner-tls`, ...tls.current() }, 'serving the certificate kept in the Secret; the caBundle is patched by the in-cluster bootstrap');
    return { tls };
  }
  if (flags.selfSigned) {
    const bundle = makeSelfSignedBundle(webhookServingNames(service.serviceName, service.serviceNamespace));
    const tls = staticTlsProvider(bundle, 'self-signed');
    const caOut = flags.caOut;
    if (caOut !== undefined) {
      try {
        writeFileSync(caOut, bundle.caCert, { mode: 0o644 });
      } catch (e) {
        return { failure: `--ca-out ${caOut}: cannot write the CA certificate: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
      }
    } else {
      io.stderr.write(bundle.caCert);
    }
    logger.info({ ...tls.current(), caOut: caOut ?? 'stderr' }, 'self-signed CA and serving certificate made; the CA certificate is the caBundle to trust');
    return { tls, caOut };
  }
  const { certFile, keyFile } = flags;
  const tls = fileTlsProvider({ certFile: certFile as string, keyFile: keyFile as string, logger });
  logger.info({ certFile, keyFile, ...tls.current() }, 'TLS certificate loaded; watching for changes');
  return { tls };
}

/** Logs where the webhook listens and how to try it; a person at a terminal also gets plain lines. */
function announce(io: WebhookCliIo, logger: Logger, server: WebhookServer, tls: TlsProvider, caOut: string | undefined, fields: { mode: ResolvedMode; version: string }): void {
  const addr = server.address();
  const base = `https://${reachableHost(addr.address)}:${addr.port}`;
  // With the CA at hand the hint verifies the certificate; otherwise -k, as for any self-made certificate.
  const curlFlags = caOut !== undefined ? `-s --cacert ${caOut}` : '-sk';
  const curlUrl = caOut !== undefined && (addr.address === '0.0.0.0' || addr.address === '127.0.0.1') ? `https://localhost:${addr.port}` : base;
  const tryCurl = `curl ${curlFlags} ${curlUrl}/mutate -H 'content-type: application/json' --data @examples/admission-review.json`;
  logger.info(
    {
      address: addr.address,
      port: addr.port,
      url: base,
      tls: tls.description,
      sidecarMode: fields.mode,
      version: fields.version,
      try: tryCurl,
    },
    `webhook listening on ${formatHostPort({ host: addr.address, port: addr.port })}`,
  );
  // A person at a terminal gets the next steps as plain lines; machines (stdout not a terminal)
  // get only the JSON log lines, as pino's convention has it.
  if ((io.stdout as Partial<NodeJS.WriteStream>).isTTY === true) {
    io.stdout.write(
      `\nhook-runner webhook is listening on ${base} (${tls.description}). Try it:\n` +
        `  ${tryCurl}\n` +
        `  curl ${curlFlags} ${curlUrl}/healthz\n` +
        '  node dist/cli/main.js inject -f examples/pod.yaml\n' +
        'Stop it with Ctrl-C.\n\n',
    );
  }
}

/** Waits for SIGTERM, SIGINT or `stop`, re-reading the TLS files on SIGHUP meanwhile; says which came. */
async function waitForStop(io: WebhookCliIo, logger: Logger, tls: TlsProvider): Promise<string> {
  let onTerm = (): void => {};
  let onInt = (): void => {};
  const onHup = (): void => {
    logger.info({ signal: 'SIGHUP' }, 're-reading TLS files');
    void tls.reloadNow();
  };
  const signal = await new Promise<string>((resolve) => {
    onTerm = () => resolve('SIGTERM');
    onInt = () => resolve('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGHUP', onHup);
    if (io.stop?.aborted) resolve('abort');
    io.stop?.addEventListener('abort', () => resolve('abort'), { once: true });
  });
  process.off('SIGTERM', onTerm);
  process.off('SIGINT', onInt);
  process.off('SIGHUP', onHup);
  return signal;
}

/** Graceful stop: SIGTERM keeps serving `delaySeconds` with /readyz failing; a second signal cuts every connection. */
async function shutDown(server: WebhookServer, cluster: InCluster | undefined, logger: Logger, signal: string, flags: WebhookFlags): Promise<void> {
  const force = () => {
    logger.warn({}, 'second stop signal: closing every connection now');
    server.server.closeAllConnections();
    process.exit(1);
  };
  process.once('SIGTERM', force);
  process.once('SIGINT', force);

  const delayMs = signal === 'SIGTERM' ? flags.delaySeconds * 1000 : 0;
  logger.info({ signal, delayMs, timeoutMs: flags.timeoutSeconds * 1000, inFlight: server.state.inFlight }, 'shutting down');
  await server.close({ delayMs, timeoutMs: flags.timeoutSeconds * 1000 });
  await cluster?.stop();
  process.off('SIGTERM', force);
  process.off('SIGINT', force);
  logger.info({ signal }, 'webhook stopped');
}

export async function runWebhookCli(argv: string[], ioIn: Partial<WebhookCliIo> = {}): Promise<number> {
  const io: WebhookCliIo = { stdout: process.stdout, stderr: process.stderr, ...ioIn };
  const failure = (msg: string): number => {
    io.stderr.write(`hook-runner webhook: ${msg}\n`);
    return 1;
  };
  const flags = parseFlags(argv);
  if (flags === 'help') {
    io.stdout.write(HELP);
    return 0;
  }
  if ('usage' in flags) {
    io.stderr.write(`hook-runner webhook: ${flags.usage}\nRun 'hook-runner webhook --help' for usage.\n`);
    return 2;
  }

  const version = packageVersion();
  let config: Config;
  try {
    config = loadConfig(flags.config, version);
  } catch (e) {
    if (e instanceof ConfigError) return failure(`--config: ${e.message}`);
    throw e;
  }

  const logger = io.logger ?? createLogger();
  const service: ServiceIdentity = {
    serviceName: flags.serviceName ?? DEFAULT_SERVICE_NAME,
    serviceNamespace: flags.serviceNamespace ?? process.env.POD_NAMESPACE ?? DEFAULT_SERVICE_NAMESPACE,
  };

  // In a pod: the API server gives the sidecar mode, the namespaces' Pod Security levels, the
  // sidecars' RoleBindings and, with --self-signed, a certificate shared by every replica through
  // a Secret and the caBundle. Loaded only there: @kubernetes/client-node takes a second to import.
  let cluster: InCluster | undefined;
  if (inClusterEnvironment()) {
    const { startInCluster } = await import('./cluster/in-cluster.js');
    try {
      cluster = await startInCluster({ logger, config, namespace: service.serviceNamespace, serviceName: service.serviceName, selfSigned: flags.selfSigned });
    } catch (e) {
      return failure((e as Error).message);
    }
  }
  const mode = cluster?.mode ?? resolveSidecarModeOffline(config, logger);

  let chosen: ReturnType<typeof chooseTls>;
  try {
    chosen = chooseTls(flags, cluster, service, io, logger);
  } catch (e) {
    await cluster?.stop();
    if (e instanceof TlsError) return failure(e.message);
    throw e;
  }
  if ('failure' in chosen) return failure(chosen.failure);
  const { tls, caOut } = chosen;

  let server: WebhookServer;
  try {
    server = await startWebhookServer({ config, mode, logger, metrics: createWebhookMetrics(), listen: flags.listen, tls, podSecurityLevel: cluster?.podSecurityLevel });
  } catch (e) {
    tls.close();
    await cluster?.stop();
    return failure((e as Error).message);
  }
  announce(io, logger, server, tls, caOut, { mode, version });

  // Wait for a stop request; the server keeps the process alive meanwhile.
  const signal = await waitForStop(io, logger, tls);
  await shutDown(server, cluster, logger, signal, flags);
  return 0;
}
