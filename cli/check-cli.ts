/**
 * `hook-runner check`: reads the installation through the current kubeconfig (or --kubeconfig /
 * --context) and runs the checks of cli/check.ts. The served certificate is read from the Secret the
 * webhook serves from (`hook-runner-tls` with --self-signed, else the Deployment's secret volume),
 * not by connecting to the webhook: the API server's service proxy does not show the certificate it
 * was given, and reading the Secret needs nothing beyond `get secrets` in hook-runner-system.
 */
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  RbacAuthorizationV1Api,
  VersionApi,
  type KubeConfig,
  type V1Deployment,
  type V1MutatingWebhookConfiguration,
  type V1Namespace,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { TLS_SECRET_NAME } from '../webhook/cluster/cert-bootstrap.js';
import { callOptions, describeError, statusCode } from '../webhook/cluster/kube.js';
import {
  INSTALL,
  checkCertificate,
  checkDeployment,
  checkEndpoints,
  checkNamespaces,
  checkRbac,
  checkSidecarPortServices,
  checkVersion,
  checkWebhookConfiguration,
  isOptedIn,
  renderChecks,
  report,
  sidecarPortTargets,
  type CheckReport,
  type CheckResult,
} from './check.js';
import { kubeConfigFrom } from './kubeconfig.js';
import { styleFor } from './term.js';

const HELP = `Usage: hook-runner check [--kubeconfig F] [--context C] [-o text|json|yaml]

Checks a hook-runner installation, like 'linkerd check': one line per check, with a hint when it
fails.

  kubernetes-api          the API server answers (the other checks need it)
  kubernetes-version      its version and the sidecar mode 'auto' picks (native from 1.29)
  webhook-deployment      Deployment hook-runner-system/hook-runner is available
  webhook-endpoints       Service hook-runner-system/hook-runner has ready endpoints
  webhook-configuration   MutatingWebhookConfiguration hook-runner calls that Service
  webhook-certificate     the certificate the webhook serves (read from its Secret) is signed by a
                          CA in the configuration's caBundle, is valid for
                          hook-runner.hook-runner-system.svc, and has 30 days or more left
                          (warning under 30, failure under 7)
  rbac                    ServiceAccount, ClusterRoles, bindings (and the --self-signed ones)
  namespace/NAME          each opted-in namespace: its Pod Security level, the handler kinds it
                          allows, the sidecars' RoleBinding
  sidecar-port-services   warns about Services whose targetPort is a sidecar's hook port (15901,
                          or a pod's port from hook-runner.dev/status): they defeat the sidecar's
                          source-address check

Options:
      --kubeconfig F      kubeconfig file [$KUBECONFIG, ~/.kube/config]
      --context C         kubeconfig context [current]
  -o, --output FORMAT     text, json or yaml [text]
  -h, --help              this text

Marks: ✔ ‼ ✖ on a terminal, [ok] [warn] [fail] otherwise; colour only on a terminal without NO_COLOR.
Exit status: 0 when no check failed (warnings allowed), 1 when one failed, 2 on a usage error.
`;

export async function runCheckCli(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        output: { type: 'string', short: 'o', default: 'text' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`hook-runner check: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!['text', 'json', 'yaml'].includes(args.output!)) {
    process.stderr.write(`hook-runner check: -o must be text, json or yaml, got ${JSON.stringify(args.output)}\nRun 'hook-runner check --help' for usage.\n`);
    return 2;
  }
  let kc: KubeConfig;
  try {
    kc = kubeConfigFrom({ kubeconfig: args.kubeconfig, context: args.context });
  } catch (e) {
    process.stderr.write(`hook-runner check: ${(e as Error).message}\n`);
    return 1;
  }
  const r = await runChecks(kc);
  const out = args.output === 'json' ? `${JSON.stringify(r, null, 2)}\n` : args.output === 'yaml' ? stringify(r) : renderChecks(r, styleFor(process.stdout));
  process.stdout.write(out);
  return r.success ? 0 : 1;
}

/** undefined for 404; other errors propagate. */
async function orMissing<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (statusCode(e) === 404) return undefined;
    throw e;
  }
}

/** One failed read becomes that check's failure, never the end of the run. */
async function guarded(id: string, f: () => Promise<CheckResult | CheckResult[]>): Promise<CheckResult[]> {
  try {
    const r = await f();
    return Array.isArray(r) ? r : [r];
  } catch (e) {
    const code = statusCode(e);
    return [
      {
        id,
        status: 'fail',
        message: `cannot read what this check needs: ${describeError(e)}`,
        hint: code === 403 ? 'the current user lacks read access; run check as a cluster admin' : 'check the API server and your kubeconfig',
      },
    ];
  }
}

/** The API clients the checks read through, and the per-call options. */
interface Clients {
  core: CoreV1Api;
  apps: AppsV1Api;
  discovery: DiscoveryV1Api;
  admission: AdmissionregistrationV1Api;
  rbac: RbacAuthorizationV1Api;
  opts: ReturnType<typeof callOptions>;
}

/** true, false (404) or `forbidden` (403): whether an object the install creates is there. */
async function present(p: Promise<unknown>): Promise<boolean | 'forbidden'> {
  try {
    await p;
    return true;
  } catch (e) {
    if (statusCode(e) === 404) return false;
    if (statusCode(e) === 403) return 'forbidden';
    throw e;
  }
}

/** The serving certificate in its Secret, against the caBundle the API server trusts. */
async function servingCertificate(c: Clients, secret: string, selfSigned: boolean, mwc: V1MutatingWebhookConfiguration | undefined, now: Date): Promise<CheckResult> {
  const ns = INSTALL.namespace;
  const s = await orMissing(c.core.readNamespacedSecret({ name: secret, namespace: ns }, c.opts));
  if (!s)
    return {
      id: 'webhook-certificate',
      status: 'fail',
      message: `Secret ${ns}/${secret} not found`,
      hint: selfSigned ? 'the webhook creates it at start with --self-signed; check its logs' : 'check the cert-manager Certificate',
    };
  const crt = s.data?.['tls.crt'];
  return checkCertificate({
    servingCertPem: crt ? Buffer.from(crt, 'base64').toString('utf8') : undefined,
    secret,
    caBundleBase64: mwc?.webhooks?.find((w) => w.name === INSTALL.webhookName)?.clientConfig.caBundle,
    now,
  });
}

/** The install's ServiceAccount, roles and bindings (the self-signed ones too when it makes its own certificate). */
async function installRbac(c: Clients, selfSigned: boolean): Promise<CheckResult> {
  const ns = INSTALL.namespace;
  const { core, rbac, opts } = c;
  const found: Parameters<typeof checkRbac>[0] = [];
  const add = async (kind: string, name: string, p: Promise<unknown>, namespace?: string) => found.push({ kind, name, ...(namespace ? { namespace } : {}), present: await present(p) });
  await add('ServiceAccount', INSTALL.serviceAccount, core.readNamespacedServiceAccount({ name: INSTALL.serviceAccount, namespace: ns }, opts), ns);
  const clusterRoles = [...INSTALL.clusterRoles, ...(selfSigned ? INSTALL.selfSignedClusterRoles : [])];
  const clusterRoleBindings = [...INSTALL.clusterRoleBindings, ...(selfSigned ? INSTALL.selfSignedClusterRoleBindings : [])];
  for (const name of clusterRoles) await add('ClusterRole', name, rbac.readClusterRole({ name }, opts));
  for (const name of clusterRoleBindings) await add('ClusterRoleBinding', name, rbac.readClusterRoleBinding({ name }, opts));
  if (selfSigned) {
    for (const name of INSTALL.selfSignedRoles) await add('Role', name, rbac.readNamespacedRole({ name, namespace: ns }, opts), ns);
    for (const name of INSTALL.selfSignedRoleBindings) await add('RoleBinding', name, rbac.readNamespacedRoleBinding({ name, namespace: ns }, opts), ns);
  }
  return checkRbac(found);
}

/** Whether each opted-in namespace has the sidecars' RoleBinding: true, false (404) or `forbidden` (403). */
async function sidecarBindings(c: Clients, namespaces: readonly V1Namespace[]): Promise<Map<string, boolean | 'forbidden'>> {
  const bindings = new Map<string, boolean | 'forbidden'>();
  for (const n of namespaces) {
    const name = n.metadata?.name ?? '';
    try {
      await c.rbac.readNamespacedRoleBinding({ name: INSTALL.sidecarRoleBinding, namespace: name }, c.opts);
      bindings.set(name, true);
    } catch (e) {
      const code = statusCode(e);
      if (code !== 404 && code !== 403) throw e;
      bindings.set(name, code === 404 ? false : 'forbidden');
    }
  }
  return bindings;
}

/** Services of the opted-in namespaces that send traffic to the sidecar's port. */
async function portServices(c: Clients, opted: readonly V1Namespace[]): Promise<CheckResult | CheckResult[]> {
  const services: V1Service[] = [];
  const pods: V1Pod[] = [];
  for (const n of opted) {
    const namespace = n.metadata?.name ?? '';
    services.push(...(await c.core.listNamespacedService({ namespace }, c.opts)).items.map((s) => ({ ...s, metadata: { ...s.metadata, namespace } })));
    pods.push(...(await c.core.listNamespacedPod({ namespace }, c.opts)).items.map((p) => ({ ...p, metadata: { ...p.metadata, namespace } })));
  }
  return checkSidecarPortServices(sidecarPortTargets(services, pods), opted.length);
}

export async function runChecks(kc: KubeConfig, now: () => Date = () => new Date()): Promise<CheckReport> {
  const opts = callOptions({ timeoutMs: 10_000 });
  const c: Clients = {
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    discovery: kc.makeApiClient(DiscoveryV1Api),
    admission: kc.makeApiClient(AdmissionregistrationV1Api),
    rbac: kc.makeApiClient(RbacAuthorizationV1Api),
    opts,
  };
  const ns = INSTALL.namespace;
  const checks: CheckResult[] = [];

  try {
    const v = await kc.makeApiClient(VersionApi).getCode(opts);
    checks.push({ id: 'kubernetes-api', status: 'ok', message: `can reach the API server at ${kc.getCurrentCluster()?.server ?? '(unknown)'}` }, checkVersion(v));
  } catch (e) {
    checks.push({
      id: 'kubernetes-api',
      status: 'fail',
      message: `cannot reach the API server at ${kc.getCurrentCluster()?.server ?? '(no cluster in the kubeconfig)'}: ${describeError(e)}`,
      hint: 'check --kubeconfig / --context and that the cluster is up (kubectl version)',
    });
    return report(checks);
  }

  let deployment: V1Deployment | undefined;
  checks.push(
    ...(await guarded('webhook-deployment', async () => {
      deployment = await orMissing(c.apps.readNamespacedDeployment({ name: INSTALL.deployment, namespace: ns }, opts));
      return checkDeployment(deployment);
    })),
  );
  checks.push(
    ...(await guarded('webhook-endpoints', async () =>
      checkEndpoints((await c.discovery.listNamespacedEndpointSlice({ namespace: ns, labelSelector: `kubernetes.io/service-name=${INSTALL.service}` }, opts)).items),
    )),
  );
  let mwc: V1MutatingWebhookConfiguration | undefined;
  checks.push(
    ...(await guarded('webhook-configuration', async () => {
      mwc = await orMissing(c.admission.readMutatingWebhookConfiguration({ name: INSTALL.webhookConfiguration }, opts));
      return checkWebhookConfiguration(mwc);
    })),
  );
  const webhook = deployment?.spec?.template.spec?.containers[0];
  const selfSigned = webhook?.args?.includes('--self-signed') ?? true;
  const secret = selfSigned ? TLS_SECRET_NAME : (deployment?.spec?.template.spec?.volumes?.find((v) => v.secret?.secretName)?.secret?.secretName ?? TLS_SECRET_NAME);
  checks.push(...(await guarded('webhook-certificate', () => servingCertificate(c, secret, selfSigned, mwc, now()))));
  checks.push(...(await guarded('rbac', () => installRbac(c, selfSigned))));

  let opted: V1Namespace[] | undefined;
  checks.push(
    ...(await guarded('namespaces', async () => {
      const found = (await c.core.listNamespace({}, opts)).items.filter(isOptedIn);
      opted = found;
      return checkNamespaces(found, await sidecarBindings(c, found));
    })),
  );
  checks.push(
    ...(await guarded('sidecar-port-services', async () => {
      if (!opted) return { id: 'sidecar-port-services', status: 'warn', message: 'not checked: the namespaces could not be listed', hint: 'see the namespaces check' };
      return portServices(c, opted);
    })),
  );
  return report(checks);
}
