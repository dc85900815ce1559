/**
 * `--self-signed` in a cluster (DESIGN §8): the CA and the serving certificate live in one Secret
 * of the webhook's namespace, so every replica serves a certificate the same `caBundle` trusts, and
 * a restarted pod keeps the CA.
 *
 * - Start: read the Secret; absent → make a CA + serving cert (webhook/tls.ts) and create it. Two
 *   replicas racing both create; the loser gets 409, re-reads and uses the winner's.
 * - Renew: when less than `renewFraction` (1/3) of a certificate's validity is left, or its names
 *   or key do not fit, or Go's crypto/x509 could not read it ({@link goX509Problem}: a Secret left
 *   by a version before issue 10), replace the Secret with an update carrying the resourceVersion
 *   we read (optimistic concurrency); a 409 means another replica renewed first: re-read and use
 *   that. The serving certificate is re-issued by the same CA, so the `caBundle` does not change.
 *   When the CA itself nears expiry (or has expired, or is unreadable) a new CA is made.
 * - Convergence (issue 10): whatever the starting state, the Secret ends with ONE CA (`ca.crt` is
 *   the current CA alone) and every caBundle with the current CA plus at most one previous CA,
 *   only while a rotation is under way: the newest other CA that Go can read and that is still
 *   valid, kept while either it or the current CA was made less than `rotationOverlapMs` ago (two
 *   check intervals: by then every replica has re-read the Secret and serves the new certificate).
 *   Junk, expired and Go-unreadable certificates leave the caBundle at once (one of them makes the
 *   API server refuse the whole bundle). The rule is a function of the bundle, the current CA and
 *   the clock alone, so replicas agree on it and a replica that read the Secret just before a
 *   rotation keeps the newer CA instead of removing it.
 * - caBundle writes: a JSON patch guarded by `test` ops on the configuration's resourceVersion and
 *   each entry's name; a failed test (422) or a conflict (409) re-reads and recomputes.
 * - Every `checkIntervalMs` each replica re-reads the Secret, renews when due, fixes the caBundle,
 *   and only then takes a new certificate into service (the server's secure context is swapped,
 *   no restart): a new CA is trusted before anything signed by it is served. Failures are logged
 *   and retried with backoff; the certificate in service stays.
 *
 * Secret `hook-runner-tls` (type kubernetes.io/tls): `tls.crt`, `tls.key` (serving pair),
 * `ca.crt` (the current CA), `ca.key` (its key, to re-issue).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { AdmissionregistrationV1Api, CoreV1Api, V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { JSON_PATCH, LABEL_MANAGED_BY, MANAGED_BY_VALUE, backoffMs, callOptions, describeError, sleep, statusCode } from './kube.js';
import { BACKDATE_MS, TLS_CONTEXT_DEFAULTS, certInfo, goX509Problem, issueServingCert, makeCa, type CertInfo, type TlsProvider } from './tls.js';

export const TLS_SECRET_NAME = 'hook-runner-tls';
const SECRET_KEY_CERT = 'tls.crt';
const SECRET_KEY_KEY = 'tls.key';
const SECRET_KEY_CA = 'ca.crt';
const SECRET_KEY_CA_KEY = 'ca.key';

const DEFAULT_VALIDITY_DAYS = 365;
const DEFAULT_CA_VALIDITY_DAYS = 5 * 365;
/** Renew when less than this share of a certificate's validity is left. */
const DEFAULT_RENEW_FRACTION = 1 / 3;
const DEFAULT_CHECK_INTERVAL_MS = 60 * 60 * 1000;

const DAY_MS = 24 * 3600 * 1000;

/** The names the API server may use for the Service (`<svc>.<ns>.svc` is the one it verifies). */
export function servingDnsNames(service: string, namespace: string): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`];
}

/** What the Secret holds, as PEM text. */
export interface TlsMaterial {
  cert: string;
  key: string;
  /** The current CA (older versions wrote several; {@link planCertificates} trims them). */
  ca: string;
  caKey: string;
}

/** PEM with LF line ends (node-forge writes CRLF), so equal material is equal text. */
function normalizePem(pem: string): string {
  return pem.replace(/\r\n/g, '\n');
}

/** The certificates of a PEM bundle, each normalised and ending in a newline. */
export function splitPemCertificates(pem: string): string[] {
  return (
    normalizePem(pem)
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
      ?.map((b) => `${b}\n`) ?? []
  );
}

function x509(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

const b64decode = (s: string | undefined): string | undefined => (s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8'));
const b64encode = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/** Reads the Secret's data; a missing key is a problem named in the result (the Secret is then rebuilt). */
export function readTlsSecret(secret: V1Secret): { material: TlsMaterial } | { problem: string } {
  const d = secret.data ?? {};
  const missing = [SECRET_KEY_CERT, SECRET_KEY_KEY, SECRET_KEY_CA, SECRET_KEY_CA_KEY].filter((k) => !d[k]);
  if (missing.length) return { problem: `data is missing ${missing.join(', ')}` };
  return {
    material: {
      cert: b64decode(d[SECRET_KEY_CERT]) as string,
      key: b64decode(d[SECRET_KEY_KEY]) as string,
      ca: b64decode(d[SECRET_KEY_CA]) as string,
      caKey: b64decode(d[SECRET_KEY_CA_KEY]) as string,
    },
  };
}

export function tlsSecretData(m: TlsMaterial): Record<string, string> {
  return { [SECRET_KEY_CERT]: b64encode(m.cert), [SECRET_KEY_KEY]: b64encode(m.key), [SECRET_KEY_CA]: b64encode(m.ca), [SECRET_KEY_CA_KEY]: b64encode(m.caKey) };
}

export type CertPlan =
  | { action: 'keep' }
  | { action: 'new'; reason: string }
  | { action: 'rotate-ca'; reason: string }
  | { action: 'reissue'; reason: string }
  /** Certificates are fine; `ca.crt` holds more than the current CA: keep only that. */
  | { action: 'tidy'; reason: string };

export interface PlanOptions {
  dnsNames: string[];
  now: Date;
  renewFraction?: number;
}

function remainingFraction(c: X509Certificate, now: Date): number {
  const from = Date.parse(c.validFrom);
  const to = Date.parse(c.validTo);
  if (!(to > from)) return 0;
  return (to - now.getTime()) / (to - from);
}

function keyMatches(c: X509Certificate, keyPem: string): boolean {
  try {
    return c.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

function dnsNamesOf(c: X509Certificate): string[] {
  return (c.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4));
}

/** What to do with the material read from the Secret (pure; `undefined` means there is none usable). */
export function planCertificates(m: TlsMaterial | undefined, opts: PlanOptions): CertPlan {
  const fraction = opts.renewFraction ?? DEFAULT_RENEW_FRACTION;
  if (!m) return { action: 'new', reason: 'no usable Secret' };
  const caPem = splitPemCertificates(m.ca)[0];
  const ca = caPem ? x509(caPem) : undefined;
  if (!ca) return { action: 'new', reason: `${SECRET_KEY_CA} holds no readable certificate` };
  if (!ca.ca) return { action: 'new', reason: `${SECRET_KEY_CA}: the first certificate is not a CA` };
  if (!keyMatches(ca, m.caKey)) return { action: 'new', reason: `${SECRET_KEY_CA_KEY} is not the key of the CA in ${SECRET_KEY_CA}` };
  const caProblem = goX509Problem(caPem as string);
  if (caProblem) return { action: 'new', reason: `${SECRET_KEY_CA}: Go's crypto/x509 (API server, kubelet) cannot read the CA: ${caProblem}` };
  const caLeft = remainingFraction(ca, opts.now);
  if (caLeft < fraction) return { action: 'rotate-ca', reason: `CA expires ${new Date(ca.validTo).toISOString()} (${Math.max(0, Math.round(caLeft * 100))}% of its validity left)` };
  const cert = x509(m.cert);
  if (!cert) return { action: 'reissue', reason: `${SECRET_KEY_CERT} holds no readable certificate` };
  if (!keyMatches(cert, m.key)) return { action: 'reissue', reason: `${SECRET_KEY_KEY} is not the key of ${SECRET_KEY_CERT}` };
  const certProblem = goX509Problem(m.cert);
  if (certProblem) return { action: 'reissue', reason: `${SECRET_KEY_CERT}: Go's crypto/x509 cannot read the serving certificate: ${certProblem}` };
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return { action: 'reissue', reason: 'serving certificate is not signed by the current CA' };
  const have = new Set(dnsNamesOf(cert));
  const missing = opts.dnsNames.filter((n) => !have.has(n));
  if (missing.length) return { action: 'reissue', reason: `serving certificate lacks ${missing.join(', ')}` };
  const left = remainingFraction(cert, opts.now);
  if (left < fraction) return { action: 'reissue', reason: `serving certificate expires ${new Date(cert.validTo).toISOString()} (${Math.max(0, Math.round(left * 100))}% of its validity left)` };
  if (normalizePem(m.ca) !== caPem) return { action: 'tidy', reason: `${SECRET_KEY_CA} holds ${splitPemCertificates(m.ca).length} certificates (or other text); only the current CA belongs there` };
  return { action: 'keep' };
}

export interface IssueOptions {
  dnsNames: string[];
  now: Date;
  validityDays?: number;
  caValidityDays?: number;
}

/** Carries out a plan other than keep; returns the new material (pure apart from key generation). */
export function applyCertPlan(m: TlsMaterial | undefined, plan: Exclude<CertPlan, { action: 'keep' }>, opts: IssueOptions): TlsMaterial {
  const days = opts.validityDays ?? DEFAULT_VALIDITY_DAYS;
  const caDays = opts.caValidityDays ?? DEFAULT_CA_VALIDITY_DAYS;
  if (plan.action === 'tidy' && m) return { ...m, ca: splitPemCertificates(m.ca)[0] as string };
  let caCert: string;
  let caKey: string;
  if ((plan.action === 'reissue' || plan.action === 'tidy') && m) {
    caCert = splitPemCertificates(m.ca)[0] as string;
    caKey = m.caKey;
  } else {
    // The previous CA is not kept here: it stays trusted through the caBundle (desiredCaBundle).
    const ca = makeCa({ validityDays: caDays, now: opts.now });
    caCert = normalizePem(ca.cert);
    caKey = ca.key;
  }
  // A serving certificate never outlives its CA.
  const caLeftDays = Math.floor((Date.parse((x509(caCert) as X509Certificate).validTo) - opts.now.getTime()) / DAY_MS);
  const serving = issueServingCert({ ca: { cert: caCert, key: caKey }, dnsNames: opts.dnsNames, validityDays: Math.max(1, Math.min(days, caLeftDays)), now: opts.now });
  return { cert: normalizePem(serving.cert), key: normalizePem(serving.key), ca: caCert, caKey: normalizePem(caKey) };
}

/** A CA fit for a caBundle: Go reads it, it is a CA, and it has not expired (a CA "not yet valid" by our clock is another replica's skew, not junk). */
function usableCa(pem: string, now: Date): X509Certificate | undefined {
  const c = x509(pem);
  if (!c?.ca || goX509Problem(pem)) return undefined;
  return Date.parse(c.validTo) > now.getTime() ? c : undefined;
}

/**
 * The caBundle one webhook entry should get, or undefined when it already is that (in any order).
 * Pure. `oursPem`'s first certificate is the current CA; the bundle is it plus at most the
 * previous CA during a rotation (see the module comment for the rule).
 */
export function desiredCaBundle(currentB64: string | undefined, oursPem: string, now: Date, rotationOverlapMs: number): string | undefined {
  const oursText = splitPemCertificates(oursPem)[0];
  const ours = oursText ? x509(oursText) : undefined;
  if (!oursText || !ours) throw new CertBootstrapError('caBundle: our CA is not a readable certificate');
  const current = currentB64 ? Buffer.from(currentB64, 'base64').toString('utf8') : '';
  const blocks = splitPemCertificates(current);
  const fresh = (c: X509Certificate) => now.getTime() < Date.parse(c.validFrom) + BACKDATE_MS + rotationOverlapMs;
  const previous = blocks
    .map((p) => ({ p, c: usableCa(p, now) }))
    .filter((e): e is { p: string; c: X509Certificate } => !!e.c && e.c.fingerprint256 !== ours.fingerprint256)
    .sort((a, b) => Date.parse(b.c.validFrom) - Date.parse(a.c.validFrom))[0];
  const want = [oursText, ...(previous && (fresh(ours) || fresh(previous.c)) ? [previous.p] : [])];
  // Already right: the same certificates, each once, and nothing else in the text.
  const leftover = normalizePem(current)
    .replace(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g, '')
    .trim();
  if (leftover === '' && blocks.length === want.length && want.every((w) => blocks.includes(w))) return undefined;
  return b64encode(want.join(''));
}

export interface JsonPatchOp {
  op: 'add' | 'replace' | 'test' | 'remove';
  path: string;
  value?: unknown;
}

/**
 * JSON patch setting the caBundle of every entry that needs it: guarded by a test of the
 * configuration's resourceVersion (anyone's write since our read fails it, and we recompute) and
 * of each entry's name (the list may have been re-applied in another order).
 */
export function caBundlePatch(cfg: V1MutatingWebhookConfiguration, oursPem: string, now: Date, rotationOverlapMs: number): JsonPatchOp[] {
  const ops: JsonPatchOp[] = [];
  (cfg.webhooks ?? []).forEach((wh, i) => {
    const next = desiredCaBundle(wh.clientConfig?.caBundle, oursPem, now, rotationOverlapMs);
    if (next === undefined) return;
    ops.push({ op: 'test', path: `/webhooks/${i}/name`, value: wh.name });
    // `add` sets a member whether or not it exists (RFC 6902 §4.1); clientConfig is required, so it exists.
    ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: next });
  });
  const rv = cfg.metadata?.resourceVersion;
  return ops.length > 0 && rv ? [{ op: 'test', path: '/metadata/resourceVersion', value: rv }, ...ops] : ops;
}

export interface CertBootstrapOptions {
  core: Pick<CoreV1Api, 'readNamespacedSecret' | 'createNamespacedSecret' | 'replaceNamespacedSecret'>;
  admission: Pick<AdmissionregistrationV1Api, 'readMutatingWebhookConfiguration' | 'patchMutatingWebhookConfiguration'>;
  logger: Logger;
  /** The webhook's namespace: where the Secret lives and the Service is. */
  namespace: string;
  serviceName: string;
  webhookConfigName: string;
  secretName?: string;
  validityDays?: number;
  caValidityDays?: number;
  renewFraction?: number;
  checkIntervalMs?: number;
  /** How long the previous CA stays in the caBundle after a new one is made (default 2 × checkIntervalMs). */
  rotationOverlapMs?: number;
  /** Backoff of failed checks (caBundle patch, API errors), and of start-up attempts. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** How long {@link CertBootstrap.start} keeps trying to get a certificate before it gives up. */
  startTimeoutMs?: number;
  callTimeoutMs?: number;
  now?: () => Date;
}

/** Bound on read→write rounds lost to other replicas in one convergence; each lost round means someone else succeeded. */
const MAX_CONFLICT_ROUNDS = 5;

export class CertBootstrapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertBootstrapError';
  }
}

export class CertBootstrap {
  private readonly o: Required<Omit<CertBootstrapOptions, 'core' | 'admission' | 'logger'>>;
  private readonly log: Logger;
  private material: TlsMaterial | undefined;
  private listeners: ((m: TlsMaterial) => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<boolean> | undefined;
  private failures = 0;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(private readonly deps: CertBootstrapOptions) {
    this.o = {
      namespace: deps.namespace,
      serviceName: deps.serviceName,
      webhookConfigName: deps.webhookConfigName,
      secretName: deps.secretName ?? TLS_SECRET_NAME,
      validityDays: deps.validityDays ?? DEFAULT_VALIDITY_DAYS,
      caValidityDays: deps.caValidityDays ?? DEFAULT_CA_VALIDITY_DAYS,
      renewFraction: deps.renewFraction ?? DEFAULT_RENEW_FRACTION,
      checkIntervalMs: deps.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS,
      rotationOverlapMs: deps.rotationOverlapMs ?? 2 * (deps.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS),
      retryBaseMs: deps.retryBaseMs ?? 1000,
      retryMaxMs: deps.retryMaxMs ?? 60_000,
      startTimeoutMs: deps.startTimeoutMs ?? 60_000,
      callTimeoutMs: deps.callTimeoutMs ?? 15_000,
      now: deps.now ?? (() => new Date()),
    };
    this.log = deps.logger.child({ component: 'cert-bootstrap', namespace: this.o.namespace, secret: this.o.secretName });
  }

  get dnsNames(): string[] {
    return servingDnsNames(this.o.serviceName, this.o.namespace);
  }

  /** The material in service. Throws before {@link start} resolved. */
  current(): TlsMaterial {
    if (!this.material) throw new CertBootstrapError('no certificate yet: start() has not completed');
    return this.material;
  }

  /** Called with the new material whenever the certificate in service changes (renewal, adoption). */
  onChange(cb: (m: TlsMaterial) => void): void {
    this.listeners.push(cb);
  }

  /**
   * Gets a certificate from the Secret (creating or renewing it as needed), retrying with backoff
   * up to `startTimeoutMs`; then makes one attempt at the caBundle (failures there are retried in
   * the background: the server can start, the API server only calls it once the caBundle is right)
   * and starts the periodic check.
   */
  async start(): Promise<TlsMaterial> {
    const deadline = Date.now() + this.o.startTimeoutMs;
    let attempt = 0;
    for (;;) {
      attempt++;
      try {
        this.adopt(await this.converge(), 'start');
        break;
      } catch (e) {
        const wait = backoffMs(attempt, this.o.retryBaseMs, this.o.retryMaxMs);
        const msg = describeError(e);
        if (this.stopped || Date.now() + wait > deadline) {
          throw new CertBootstrapError(
            `cannot get the webhook certificate from Secret ${this.o.namespace}/${this.o.secretName} after ${attempt} attempts: ${msg}; the webhook's ServiceAccount needs get/create/update on that Secret`,
          );
        }
        this.log.warn({ attempt, retryInMs: wait, err: msg }, 'cannot get the webhook certificate from its Secret yet; retrying');
        await sleep(wait, this.abort.signal);
      }
    }
    let ok = true;
    try {
      await this.ensureCaBundle();
    } catch (e) {
      ok = false;
      this.failures = 1;
      this.log.warn({ webhookConfiguration: this.o.webhookConfigName, err: describeError(e) }, 'cannot set the caBundle yet; retrying in the background');
    }
    this.schedule(ok ? this.o.checkIntervalMs : backoffMs(1, this.o.retryBaseMs, this.o.retryMaxMs));
    return this.current();
  }

  /** One check now: re-read the Secret, renew when due, adopt what is there, fix the caBundle. Resolves true when the certificate in service changed. */
  checkNow(): Promise<boolean> {
    if (this.running) return this.running;
    this.running = (async () => {
      try {
        const before = this.material;
        const m = await this.converge();
        // Trust first, serve second: a certificate of a new CA goes into service only once the
        // caBundle holds that CA. A new serving certificate of the same CA needs no wait.
        const sameCa = !!before && splitPemCertificates(before.ca)[0] === splitPemCertificates(m.ca)[0];
        try {
          await this.ensureCaBundle(m);
        } catch (e) {
          if (sameCa) this.adopt(m, 'check');
          throw e;
        }
        this.adopt(m, 'check');
        return before !== this.material;
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** A TlsProvider for the HTTPS server that follows renewals and adoptions. */
  tlsProvider(): TlsProvider {
    let server: { setSecureContext(o: object): void } | undefined;
    this.onChange((m) => server?.setSecureContext({ ...TLS_CONTEXT_DEFAULTS, cert: m.cert, key: m.key }));
    return {
      description: `self-signed, Secret ${this.o.namespace}/${this.o.secretName}`,
      serverOptions: () => ({ ...TLS_CONTEXT_DEFAULTS, cert: this.current().cert, key: this.current().key }),
      current: (): CertInfo => certInfo(new X509Certificate(this.current().cert)),
      attach: (s) => {
        server = s;
      },
      reloadNow: () =>
        this.checkNow().catch((e) => {
          this.log.warn({ err: describeError(e) }, 'certificate check failed; still serving the previous certificate');
          return false;
        }),
      close: () => void this.stop(),
    };
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await this.checkNow();
      this.failures = 0;
      this.schedule(this.o.checkIntervalMs);
    } catch (e) {
      this.failures++;
      const wait = backoffMs(this.failures, this.o.retryBaseMs, this.o.retryMaxMs);
      if (!this.stopped) this.log.warn({ attempt: this.failures, retryInMs: wait, err: describeError(e) }, 'certificate check failed; still serving the previous certificate; retrying');
      this.schedule(wait);
    }
  }

  private adopt(m: TlsMaterial, why: 'start' | 'check'): void {
    const prev = this.material;
    if (prev && prev.cert === m.cert && prev.key === m.key && prev.ca === m.ca) return;
    this.material = m;
    const info = certInfo(new X509Certificate(m.cert));
    if (prev) this.log.info({ serialNumber: info.serialNumber, validTo: info.validTo, trigger: why }, 'serving certificate changed; now serving the one in the Secret');
    else this.log.info({ serialNumber: info.serialNumber, validTo: info.validTo, subjectAltName: info.subjectAltName }, 'serving certificate loaded from the Secret');
    if (prev) for (const cb of this.listeners) cb(m);
  }

  private opts(patch = false) {
    return callOptions({ timeoutMs: this.o.callTimeoutMs, patch: patch ? JSON_PATCH : undefined });
  }

  private async readSecret(): Promise<V1Secret | undefined> {
    try {
      return await this.deps.core.readNamespacedSecret({ name: this.o.secretName, namespace: this.o.namespace }, this.opts());
    } catch (e) {
      if (statusCode(e) === 404) return undefined;
      throw e;
    }
  }

  /** Read → (create | renew | keep), repeated while another replica wins the write. Returns what the Secret holds afterwards. */
  async converge(): Promise<TlsMaterial> {
    const { namespace, secretName: name } = this.o;
    for (let round = 1; round <= MAX_CONFLICT_ROUNDS; round++) {
      const now = this.o.now();
      const secret = await this.readSecret();
      if (!secret) {
        const m = applyCertPlan(undefined, { action: 'new', reason: 'Secret absent' }, { dnsNames: this.dnsNames, now, validityDays: this.o.validityDays, caValidityDays: this.o.caValidityDays });
        try {
          await this.deps.core.createNamespacedSecret(
            {
              namespace,
              body: {
                apiVersion: 'v1',
                kind: 'Secret',
                metadata: { name, namespace, labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE } },
                type: 'kubernetes.io/tls',
                data: tlsSecretData(m),
              },
            },
            this.opts(),
          );
          this.log.info({ dnsNames: this.dnsNames }, 'created the CA and serving certificate Secret');
          return m;
        } catch (e) {
          if (statusCode(e) !== 409) throw e;
          // Another replica created it between our read and our create: use theirs.
          this.log.info({ round }, 'Secret was created by another replica meanwhile; using that one');
          continue;
        }
      }
      const read = readTlsSecret(secret);
      const current = 'material' in read ? read.material : undefined;
      const plan = planCertificates(current, { dnsNames: this.dnsNames, now, renewFraction: this.o.renewFraction });
      if (plan.action === 'keep') return current as TlsMaterial;
      this.log.info({ action: plan.action, reason: plan.reason }, 'the Secret needs an update');
      if ('problem' in read) this.log.warn({ problem: read.problem }, 'the Secret is not usable; replacing its contents');
      const m = applyCertPlan(current, plan, { dnsNames: this.dnsNames, now, validityDays: this.o.validityDays, caValidityDays: this.o.caValidityDays });
      try {
        await this.deps.core.replaceNamespacedSecret(
          {
            name,
            namespace,
            body: {
              apiVersion: 'v1',
              kind: 'Secret',
              // resourceVersion makes this a compare-and-swap: it fails with 409 if anyone wrote since our read.
              metadata: { ...secret.metadata, name, namespace, resourceVersion: secret.metadata?.resourceVersion, labels: { ...secret.metadata?.labels, [LABEL_MANAGED_BY]: MANAGED_BY_VALUE } },
              // The type is immutable; keep whatever it is.
              type: secret.type ?? 'kubernetes.io/tls',
              data: { ...secret.data, ...tlsSecretData(m) },
            },
          },
          this.opts(),
        );
        const what = {
          new: 'made a new CA and serving certificate',
          'rotate-ca': 'rotated the CA and re-issued the serving certificate',
          reissue: 'renewed the serving certificate',
          tidy: 'trimmed ca.crt to the current CA',
        }[plan.action];
        this.log.info({ action: plan.action, reason: plan.reason }, what);
        return m;
      } catch (e) {
        if (statusCode(e) !== 409) throw e;
        this.log.info({ round, action: plan.action }, 'the Secret changed since we read it (another replica renewed); re-reading');
      }
    }
    throw new CertBootstrapError(`Secret ${namespace}/${name}: still changing under us after ${MAX_CONFLICT_ROUNDS} read/write rounds`);
  }

  /**
   * Brings the caBundle of every webhook entry to {@link desiredCaBundle} for `m` (default: the
   * material in service). Resolves true when it patched. A concurrent write (our resourceVersion
   * test fails: 422, or 409) re-reads and recomputes, a bounded number of times.
   */
  async ensureCaBundle(m: TlsMaterial = this.current()): Promise<boolean> {
    const name = this.o.webhookConfigName;
    for (let round = 1; round <= MAX_CONFLICT_ROUNDS; round++) {
      let cfg: V1MutatingWebhookConfiguration;
      try {
        cfg = await this.deps.admission.readMutatingWebhookConfiguration({ name }, this.opts());
      } catch (e) {
        if (statusCode(e) === 404) throw new CertBootstrapError(`MutatingWebhookConfiguration ${name} not found (not applied yet?); its caBundle cannot be set`);
        throw e;
      }
      const ops = caBundlePatch(cfg, m.ca, this.o.now(), this.o.rotationOverlapMs);
      if (ops.length === 0) return false;
      try {
        await this.deps.admission.patchMutatingWebhookConfiguration({ name, body: ops }, this.opts(true));
      } catch (e) {
        const code = statusCode(e);
        if (code !== 409 && code !== 422) throw e;
        this.log.info({ webhookConfiguration: name, round, status: code }, 'the webhook configuration changed since we read it; re-reading');
        continue;
      }
      const bundle = ops.find((o) => o.op === 'add')?.value as string;
      this.log.info(
        { webhookConfiguration: name, webhooks: ops.filter((o) => o.op === 'add').map((o) => o.path), caCount: splitPemCertificates(Buffer.from(bundle, 'base64').toString('utf8')).length },
        'caBundle set',
      );
      return true;
    }
    throw new CertBootstrapError(`MutatingWebhookConfiguration ${name}: still changing under us after ${MAX_CONFLICT_ROUNDS} read/patch rounds`);
  }
}
