/**
 * `hook-runner check` (like `linkerd check`), pure: each check turns what was read from the
 * cluster into one result line with a hint on failure; rendering as text (✔/✖ on a TTY,
 * `[ok]`/`[fail]` otherwise) or data. The reads are in check-cli.ts.
 */
import { X509Certificate } from 'node:crypto';
import type { V1Deployment, V1EndpointSlice, V1MutatingWebhookConfiguration, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import { ANNOTATION_STATUS, DEFAULT_SIDECAR_PORT, LABEL_NAMESPACE_INJECTION, NAMESPACE_INJECTION_ENABLED } from '../common/names.js';
import { HANDLER_KINDS } from '../common/spec.js';
import type { PodSecurityLevel } from '../webhook/core/mutate.js';
import { RESTRICTED_KINDS } from '../webhook/core/security-context.js';
import { modeForVersion, parseKubeVersion, type KubeVersionFields } from '../webhook/core/sidecar-mode.js';
import { LABEL_POD_SECURITY_ENFORCE } from './explain.js';
import type { Style } from './term.js';

type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  /** Stable id for scripts (`-o json`). */
  id: string;
  status: CheckStatus;
  message: string;
  hint?: string;
}

/** Where the manifests install hook-runner (manifests/base). */
export const INSTALL = {
  namespace: 'hook-runner-system',
  deployment: 'hook-runner',
  service: 'hook-runner',
  serviceAccount: 'hook-runner',
  webhookConfiguration: 'hook-runner',
  webhookName: 'inject.hook-runner.dev',
  clusterRoles: ['hook-runner-webhook', 'hook-runner-sidecar'],
  clusterRoleBindings: ['hook-runner-webhook'],
  /** Only with `--self-signed` (the cert-manager overlay drops them). */
  selfSignedClusterRoles: ['hook-runner-webhook-cabundle'],
  selfSignedClusterRoleBindings: ['hook-runner-webhook-cabundle'],
  selfSignedRoles: ['hook-runner-webhook-tls'],
  selfSignedRoleBindings: ['hook-runner-webhook-tls'],
  /** RoleBinding the webhook makes in each opted-in namespace for the sidecars. */
  sidecarRoleBinding: 'hook-runner-sidecar',
} as const;

/** A certificate with less than this left fails the check; under {@link CERT_WARN_DAYS} it warns. */
const CERT_FAIL_DAYS = 7;
const CERT_WARN_DAYS = 30;

const DAY_MS = 86_400_000;

export function checkVersion(v: KubeVersionFields): CheckResult {
  const p = parseKubeVersion(v);
  const mode = modeForVersion(v);
  if (!p)
    return {
      id: 'kubernetes-version',
      status: 'warn',
      message: `cannot understand the API server version ${JSON.stringify(v.gitVersion ?? '')}; sidecar mode auto means container`,
      hint: 'set sidecar.mode: native in the webhook configuration on Kubernetes 1.29+',
    };
  return {
    id: 'kubernetes-version',
    status: 'ok',
    message: `Kubernetes ${v.gitVersion ?? `${p.major}.${p.minor}`}: sidecar mode auto means ${mode}${mode === 'native' ? ' (native sidecars, 1.29+)' : ' (no native sidecars before 1.29: Jobs do not complete while the sidecar runs)'}`,
  };
}

export function checkDeployment(d: V1Deployment | undefined): CheckResult {
  const where = `${INSTALL.namespace}/${INSTALL.deployment}`;
  const hint = `kubectl -n ${INSTALL.namespace} describe deployment ${INSTALL.deployment}; kubectl -n ${INSTALL.namespace} logs deployment/${INSTALL.deployment}`;
  if (!d) return { id: 'webhook-deployment', status: 'fail', message: `Deployment ${where} not found`, hint: 'install hook-runner: kubectl apply -k manifests/' };
  const want = d.spec?.replicas ?? 1;
  const available = d.status?.availableReplicas ?? 0;
  const cond = d.status?.conditions?.find((c) => c.type === 'Available');
  if (available < 1 || cond?.status === 'False') {
    return { id: 'webhook-deployment', status: 'fail', message: `Deployment ${where} has ${available}/${want} replicas available${cond?.message ? `: ${cond.message}` : ''}`, hint };
  }
  if (available < want) return { id: 'webhook-deployment', status: 'warn', message: `Deployment ${where} has ${available}/${want} replicas available`, hint };
  return { id: 'webhook-deployment', status: 'ok', message: `Deployment ${where} is available (${available}/${want} replicas)` };
}

export function checkEndpoints(slices: V1EndpointSlice[]): CheckResult {
  const ready = slices
    .flatMap((s) => s.endpoints ?? [])
    .filter((e) => e.conditions?.ready !== false)
    .flatMap((e) => e.addresses);
  if (ready.length === 0) {
    return {
      id: 'webhook-endpoints',
      status: 'fail',
      message: `Service ${INSTALL.namespace}/${INSTALL.service} has no ready endpoints: the API server cannot call the webhook, and failurePolicy Fail blocks hooked pods`,
      hint: `kubectl -n ${INSTALL.namespace} get endpointslices -l kubernetes.io/service-name=${INSTALL.service}; check the Deployment's readiness`,
    };
  }
  return { id: 'webhook-endpoints', status: 'ok', message: `Service ${INSTALL.namespace}/${INSTALL.service} has ${ready.length} ready endpoint${ready.length === 1 ? '' : 's'}` };
}

export function checkWebhookConfiguration(c: V1MutatingWebhookConfiguration | undefined): CheckResult {
  if (!c)
    return { id: 'webhook-configuration', status: 'fail', message: `MutatingWebhookConfiguration ${INSTALL.webhookConfiguration} not found`, hint: 'install hook-runner: kubectl apply -k manifests/' };
  const w = c.webhooks?.find((x) => x.name === INSTALL.webhookName);
  if (!w)
    return {
      id: 'webhook-configuration',
      status: 'fail',
      message: `MutatingWebhookConfiguration ${INSTALL.webhookConfiguration} has no webhook ${INSTALL.webhookName}`,
      hint: 'kubectl apply -k manifests/ again',
    };
  const svc = w.clientConfig.service;
  if (!svc || svc.namespace !== INSTALL.namespace || svc.name !== INSTALL.service) {
    return {
      id: 'webhook-configuration',
      status: 'fail',
      message: `webhook ${INSTALL.webhookName} calls ${svc ? `Service ${svc.namespace}/${svc.name}` : (w.clientConfig.url ?? 'nothing')}, not Service ${INSTALL.namespace}/${INSTALL.service}`,
      hint: 'kubectl apply -k manifests/ again',
    };
  }
  return {
    id: 'webhook-configuration',
    status: 'ok',
    message: `MutatingWebhookConfiguration ${INSTALL.webhookConfiguration} calls Service ${INSTALL.namespace}/${INSTALL.service} (failurePolicy ${w.failurePolicy ?? 'Fail'}, timeout ${w.timeoutSeconds ?? 10}s)`,
  };
}

function pems(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * The certificate the webhook serves (from its Secret) against the configuration's caBundle: issued
 * and signed by a CA in the bundle, valid for the Service's DNS name, and not near expiry.
 */
export function checkCertificate(input: { servingCertPem: string | undefined; secret: string; caBundleBase64: string | undefined; now: Date }): CheckResult {
  const id = 'webhook-certificate';
  const renewHint = `kubectl -n ${INSTALL.namespace} rollout restart deployment/${INSTALL.deployment} (--self-signed renews on start; cert-manager renews its Certificate)`;
  if (!input.caBundleBase64)
    return {
      id,
      status: 'fail',
      message: `MutatingWebhookConfiguration ${INSTALL.webhookConfiguration} has no caBundle: the API server cannot verify the webhook`,
      hint: 'with --self-signed the webhook patches it in at start (check its logs); with cert-manager, the cainjector fills it',
    };
  if (!input.servingCertPem) return { id, status: 'fail', message: `Secret ${INSTALL.namespace}/${input.secret} holds no tls.crt`, hint: renewHint };
  let leaf: X509Certificate;
  let cas: X509Certificate[];
  try {
    leaf = new X509Certificate(pems(input.servingCertPem)[0] ?? input.servingCertPem);
    cas = pems(Buffer.from(input.caBundleBase64, 'base64').toString('utf8')).map((p) => new X509Certificate(p));
  } catch (e) {
    return { id, status: 'fail', message: `cannot read the certificates: ${(e as Error).message}`, hint: renewHint };
  }
  const issuer = cas.find((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
  if (!issuer)
    return {
      id,
      status: 'fail',
      message: `the certificate in Secret ${INSTALL.namespace}/${input.secret} (issuer ${leaf.issuer.replace(/\n/g, ', ')}) is not signed by a CA in the caBundle of MutatingWebhookConfiguration ${INSTALL.webhookConfiguration}: the API server will refuse the webhook's TLS`,
      hint: renewHint,
    };
  const host = `${INSTALL.service}.${INSTALL.namespace}.svc`;
  if (!leaf.checkHost(host)) return { id, status: 'fail', message: `the webhook certificate is not valid for ${host}, the name the API server verifies`, hint: renewHint };
  const soonest = [leaf, issuer].map((c) => ({ c, left: (new Date(c.validTo).getTime() - input.now.getTime()) / DAY_MS })).sort((a, b) => a.left - b.left)[0]!;
  const what = soonest.c === leaf ? 'serving certificate' : 'CA';
  const until = new Date(soonest.c.validTo).toISOString();
  if (soonest.left < CERT_FAIL_DAYS)
    return { id, status: 'fail', message: `the webhook ${what} ${soonest.left < 0 ? 'expired' : 'expires'} ${until} (${Math.floor(soonest.left)} days)`, hint: renewHint };
  const msg = `the webhook certificate matches the caBundle and is valid for ${host}; the ${what} expires ${until} (${Math.floor(soonest.left)} days)`;
  if (soonest.left < CERT_WARN_DAYS) return { id, status: 'warn', message: msg, hint: renewHint };
  return { id, status: 'ok', message: msg };
}

export function checkRbac(found: { kind: string; name: string; namespace?: string; present: boolean | 'forbidden' }[]): CheckResult {
  const missing = found.filter((f) => f.present === false);
  const unknown = found.filter((f) => f.present === 'forbidden');
  const name = (f: (typeof found)[number]) => `${f.kind} ${f.namespace ? `${f.namespace}/` : ''}${f.name}`;
  if (missing.length > 0) return { id: 'rbac', status: 'fail', message: `missing: ${missing.map(name).join(', ')}`, hint: 'kubectl apply -k manifests/ (manifests/base/rbac.yaml)' };
  if (unknown.length > 0) return { id: 'rbac', status: 'warn', message: `cannot read (forbidden): ${unknown.map(name).join(', ')}`, hint: 'run check with a user allowed to read RBAC objects' };
  return { id: 'rbac', status: 'ok', message: `RBAC objects present (${found.length}): ${found.map(name).join(', ')}` };
}

function levelOfNamespace(ns: V1Namespace): PodSecurityLevel | undefined {
  const v = ns.metadata?.labels?.[LABEL_POD_SECURITY_ENFORCE];
  return v === 'privileged' || v === 'baseline' || v === 'restricted' ? v : undefined;
}

/** Handler kinds a namespace's Pod Security level lets the sidecar run. */
function allowedKinds(level: PodSecurityLevel | undefined): readonly string[] {
  return level === 'baseline' || level === 'restricted' ? RESTRICTED_KINDS : HANDLER_KINDS;
}

export function isOptedIn(ns: V1Namespace): boolean {
  return ns.metadata?.labels?.[LABEL_NAMESPACE_INJECTION] === NAMESPACE_INJECTION_ENABLED;
}

export function checkNamespaces(namespaces: V1Namespace[], sidecarBindings: Map<string, boolean | 'forbidden'>): CheckResult[] {
  const opted = namespaces.filter(isOptedIn);
  if (opted.length === 0) {
    return [
      {
        id: 'namespaces',
        status: 'warn',
        message: `no namespace is labelled ${LABEL_NAMESPACE_INJECTION}=${NAMESPACE_INJECTION_ENABLED}: no pod is injected`,
        hint: `kubectl label namespace NAME ${LABEL_NAMESPACE_INJECTION}=${NAMESPACE_INJECTION_ENABLED}`,
      },
    ];
  }
  return opted.map((ns) => {
    const name = ns.metadata?.name ?? '';
    const level = levelOfNamespace(ns);
    const kinds = allowedKinds(level);
    const denied = HANDLER_KINDS.filter((k) => !kinds.includes(k));
    const binding = sidecarBindings.get(name);
    const msg = `namespace ${name}: Pod Security ${level ?? 'not enforced (privileged)'}; handler kinds ${kinds.join(', ')}${denied.length ? ` (${denied.join(', ')} denied)` : ''}`;
    if (binding === false)
      return {
        id: `namespace/${name}`,
        status: 'warn',
        message: `${msg}; RoleBinding ${INSTALL.sidecarRoleBinding} missing: sidecars there write no Events and cannot read their own grace period`,
        hint: `check the webhook's logs (namespace controller): kubectl -n ${INSTALL.namespace} logs deployment/${INSTALL.deployment}`,
      };
    return { id: `namespace/${name}`, status: 'ok', message: msg };
  });
}

/** Service ports that target a sidecar's hook port (15901 or the port in a pod's status annotation). */
export function sidecarPortTargets(services: V1Service[], pods: V1Pod[]): { service: string; port: number | string }[] {
  const out: { service: string; port: number | string }[] = [];
  for (const s of services) {
    const ns = s.metadata?.namespace ?? '';
    const ports = new Set<number>([DEFAULT_SIDECAR_PORT]);
    for (const p of pods) {
      if ((p.metadata?.namespace ?? '') !== ns) continue;
      try {
        const port = (JSON.parse(p.metadata?.annotations?.[ANNOTATION_STATUS] ?? 'null') as { port?: unknown } | null)?.port;
        if (typeof port === 'number') ports.add(port);
      } catch {
        // not hook-runner's record: no port to add
      }
    }
    for (const sp of s.spec?.ports ?? []) {
      const target = sp.targetPort ?? sp.port;
      if (typeof target === 'number' && ports.has(target)) out.push({ service: `${ns}/${s.metadata?.name ?? ''}`, port: target });
    }
  }
  return out;
}

export function checkSidecarPortServices(targets: { service: string; port: number | string }[], namespaces: number): CheckResult {
  if (targets.length === 0)
    return { id: 'sidecar-port-services', status: 'ok', message: `no Service targets a sidecar's hook port (in ${namespaces} opted-in namespace${namespaces === 1 ? '' : 's'})` };
  return {
    id: 'sidecar-port-services',
    status: 'warn',
    message: `Services target the sidecar's hook port: ${targets.map((t) => `${t.service} -> ${t.port}`).join(', ')}; traffic through them reaches the sidecar from proxies and nodes it trusts, defeating its source-address check`,
    hint: "point those Services at the application's own ports",
  };
}

// ---------------------------------------------------------------------------------------------

export interface CheckReport {
  success: boolean;
  checks: CheckResult[];
}

export function report(checks: CheckResult[]): CheckReport {
  return { success: checks.every((c) => c.status !== 'fail'), checks };
}

export function renderChecks(r: CheckReport, style: Style): string {
  const mark = (s: CheckStatus) => (style.unicode ? (s === 'ok' ? style.green('✔') : s === 'warn' ? style.yellow('‼') : style.red('✖')) : s === 'ok' ? '[ok]' : s === 'warn' ? '[warn]' : '[fail]');
  const lines: string[] = [];
  for (const c of r.checks) {
    lines.push(`${mark(c.status)} ${c.id}: ${c.message}`);
    if (c.hint && c.status !== 'ok') lines.push(`    hint: ${c.hint}`);
  }
  const failed = r.checks.filter((c) => c.status === 'fail').length;
  const warned = r.checks.filter((c) => c.status === 'warn').length;
  lines.push('');
  lines.push(
    failed
      ? style.red(`Status check results: ${failed} failed, ${warned} warning${warned === 1 ? '' : 's'}`)
      : style.green(`Status check results: all passed${warned ? ` (${warned} warning${warned === 1 ? '' : 's'})` : ''}`),
  );
  return `${lines.join('\n')}\n`;
}
