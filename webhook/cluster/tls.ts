/**
 * TLS for the webhook's HTTPS server (DESIGN §8). Two sources of a serving certificate:
 *
 * - files (`--tls-cert-file/--tls-key-file`, e.g. a cert-manager Secret volume): loaded at start
 *   and reloaded without a restart when they change. The kubelet updates Secret volumes by swapping
 *   a `..data` symlink, so we watch the files' directories (not the files: a watch on the old inode
 *   sees nothing after the swap) and also poll the contents, because inotify is not available
 *   everywhere. A new pair that does not load keeps the old one in service and logs an error.
 * - self-signed (`--self-signed`): node-forge makes a CA and a serving certificate signed by it.
 *   {@link makeSelfSignedBundle} is pure (no I/O) so the in-cluster bootstrap can reuse it.
 */
import { X509Certificate, createHash, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { createSecureContext, type SecureContextOptions, type Server as TlsServer } from 'node:tls';
import forge from 'node-forge';
import type { Logger } from 'pino';

/**
 * Settings every secure context of the server gets. `setSecureContext` replaces the whole context,
 * so a reload must pass them again; keeping them here makes that impossible to forget.
 * TLS 1.2 is the floor of every supported kube-apiserver.
 */
export const TLS_CONTEXT_DEFAULTS: SecureContextOptions = { minVersion: 'TLSv1.2' };

export class TlsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsError';
  }
}

/** What we log about a certificate: enough to tell two of them apart and to see expiry coming. */
export interface CertInfo {
  serialNumber: string;
  subject: string;
  subjectAltName: string;
  issuer: string;
  validFrom: string;
  validTo: string;
  fingerprint256: string;
}

export function certInfo(cert: X509Certificate): CertInfo {
  return {
    serialNumber: cert.serialNumber,
    subject: cert.subject.replace(/\n/g, ', '),
    subjectAltName: cert.subjectAltName ?? '',
    issuer: cert.issuer.replace(/\n/g, ', '),
    validFrom: new Date(cert.validFrom).toISOString(),
    validTo: new Date(cert.validTo).toISOString(),
    fingerprint256: cert.fingerprint256,
  };
}

export interface KeyPair {
  cert: Buffer;
  key: Buffer;
  info: CertInfo;
}

/**
 * Checks that `cert` is a PEM certificate, `key` a PEM private key, and that they belong together.
 * `certSource`/`keySource` name them in errors (file paths, or "self-signed").
 */
function validateKeyPair(cert: Buffer, key: Buffer, certSource: string, keySource: string): KeyPair {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw new TlsError(`${certSource}: not a PEM certificate (expected "-----BEGIN CERTIFICATE-----"): ${(e as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    throw new TlsError(`${keySource}: not a PEM private key (expected "-----BEGIN ... PRIVATE KEY-----"): ${(e as Error).message}`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new TlsError(`${keySource}: this private key does not belong to the certificate in ${certSource} (serial ${x509.serialNumber}); expected the key the certificate was issued for`);
  }
  try {
    // The server would do this on the first handshake; doing it now turns a late failure into a located one.
    createSecureContext({ ...TLS_CONTEXT_DEFAULTS, cert, key });
  } catch (e) {
    throw new TlsError(`${certSource} + ${keySource}: OpenSSL refused the pair: ${(e as Error).message}`);
  }
  return { cert, key, info: certInfo(x509) };
}

export function loadKeyPairFiles(certFile: string, keyFile: string): KeyPair {
  const read = (path: string, flag: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new TlsError(`${flag} ${path}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  return validateKeyPair(read(certFile, '--tls-cert-file'), read(keyFile, '--tls-key-file'), certFile, keyFile);
}

/** Where the server's certificate comes from; the server asks it for options and hands it itself to follow changes. */
export interface TlsProvider {
  /** One line for logs: `files /etc/tls/tls.crt` or `self-signed`. */
  readonly description: string;
  /** Options for `https.createServer`: the current pair plus {@link TLS_CONTEXT_DEFAULTS}. */
  serverOptions(): SecureContextOptions;
  /** The certificate being served now. */
  current(): CertInfo;
  /** Starts following changes, applying them to `server` with `setSecureContext`. */
  attach(server: TlsServer): void;
  /** Looks for a change now (SIGHUP, tests). Resolves true when a new pair was taken into service. */
  reloadNow(): Promise<boolean>;
  /** Stops watchers and timers. */
  close(): void;
}

/** A fixed pair (self-signed, or PEM handed in by a caller). */
export function staticTlsProvider(pair: { cert: string | Buffer; key: string | Buffer }, description = 'static'): TlsProvider {
  const kp = validateKeyPair(Buffer.from(pair.cert), Buffer.from(pair.key), `${description} certificate`, `${description} key`);
  return {
    description,
    serverOptions: () => ({ ...TLS_CONTEXT_DEFAULTS, cert: kp.cert, key: kp.key }),
    current: () => kp.info,
    attach: () => {},
    reloadNow: async () => false,
    close: () => {},
  };
}

export interface FileTlsOptions {
  certFile: string;
  keyFile: string;
  logger: Logger;
  /** How often the contents are compared even without a watch event. cert-manager renews days ahead, so seconds are plenty. */
  pollIntervalMs?: number;
  /** Writers touch the directory several times per rotation; one check after they settle. */
  debounceMs?: number;
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Serves the pair in `certFile`/`keyFile` and follows changes. Throws {@link TlsError} when the
 * initial pair does not load: starting without a certificate would only fail every handshake.
 */
export function fileTlsProvider(opts: FileTlsOptions): TlsProvider {
  return new FileTls(opts);
}

class FileTls implements TlsProvider {
  readonly description: string;
  private readonly certFile: string;
  private readonly keyFile: string;
  private readonly log: Logger;
  private readonly pollIntervalMs: number;
  private readonly debounceMs: number;
  private pair: KeyPair;
  private server: TlsServer | undefined;
  private watchers: FSWatcher[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** A bad pair is reported once, not on every poll while it stays on disk. */
  private lastFailure: string | undefined;
  private running: Promise<boolean> | undefined;
  private again = false;

  constructor(opts: FileTlsOptions) {
    this.certFile = resolve(opts.certFile);
    this.keyFile = resolve(opts.keyFile);
    this.description = `files ${this.certFile}`;
    this.log = opts.logger.child({ component: 'tls' });
    this.pollIntervalMs = opts.pollIntervalMs ?? 10_000;
    this.debounceMs = opts.debounceMs ?? 250;
    this.pair = loadKeyPairFiles(this.certFile, this.keyFile);
    warnValidity(this.log, this.pair.info);
  }

  serverOptions(): SecureContextOptions {
    return { ...TLS_CONTEXT_DEFAULTS, cert: this.pair.cert, key: this.pair.key };
  }

  current(): CertInfo {
    return this.pair.info;
  }

  attach(s: TlsServer): void {
    this.server = s;
    for (const dir of new Set([dirname(this.certFile), dirname(this.keyFile)])) this.watchDir(dir);
    this.pollTimer = setInterval(() => void this.check('poll'), this.pollIntervalMs);
    this.pollTimer.unref();
  }

  reloadNow(): Promise<boolean> {
    return this.check('manual');
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
  }

  private watchDir(dir: string): void {
    try {
      const w = watch(dir, { persistent: false }, () => this.onWatchEvent());
      w.on('error', (e) => {
        this.log.warn({ dir, err: e.message }, 'watching the TLS directory failed; relying on polling');
        w.close();
      });
      this.watchers.push(w);
    } catch (e) {
      this.log.warn({ dir, err: (e as Error).message, pollIntervalMs: this.pollIntervalMs }, 'cannot watch the TLS directory; relying on polling');
    }
  }

  private onWatchEvent(): void {
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.check('watch'), this.debounceMs);
    this.debounceTimer.unref();
  }

  /** One check at a time; a trigger during a check runs one more afterwards, so no change is missed. */
  private check(trigger: string): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      let changed = false;
      try {
        do {
          this.again = false;
          changed = (await this.checkOnce(trigger)) || changed;
        } while (this.again && !this.closed);
      } finally {
        this.running = undefined;
      }
      return changed;
    })();
    return this.running;
  }

  /** Reads the files; a new valid pair goes into service, a bad one is reported once and the old one kept. */
  private async checkOnce(trigger: string): Promise<boolean> {
    const read = await this.readFiles(trigger);
    if (!read) return false;
    const [cert, key] = read;
    if (cert.equals(this.pair.cert) && key.equals(this.pair.key)) return false;
    const id = `${digest(cert)}:${digest(key)}`;
    if (id === this.lastFailure) return false;
    let next: KeyPair;
    try {
      next = validateKeyPair(cert, key, this.certFile, this.keyFile);
    } catch (e) {
      this.lastFailure = id;
      this.log.error(
        { certFile: this.certFile, keyFile: this.keyFile, trigger, err: (e as Error).message, serving: this.pair.info.serialNumber },
        'new TLS certificate/key pair rejected; still serving the previous certificate',
      );
      return false;
    }
    this.serve(next, trigger);
    return true;
  }

  private async readFiles(trigger: string): Promise<[Buffer, Buffer] | undefined> {
    try {
      return await Promise.all([readFile(this.certFile), readFile(this.keyFile)]);
    } catch (e) {
      // Mid-swap the files can be briefly missing; the next event or poll looks again.
      const msg = `cannot read: ${(e as NodeJS.ErrnoException).path ?? ''} ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
      if (this.lastFailure !== msg) {
        this.lastFailure = msg;
        this.log.error({ certFile: this.certFile, keyFile: this.keyFile, trigger, err: msg, serving: this.pair.info.serialNumber }, 'TLS files unreadable; still serving the previous certificate');
      }
      return undefined;
    }
  }

  private serve(next: KeyPair, trigger: string): void {
    if (this.server) this.server.setSecureContext({ ...TLS_CONTEXT_DEFAULTS, cert: next.cert, key: next.key });
    const previous = this.pair.info.serialNumber;
    this.pair = next;
    this.lastFailure = undefined;
    this.log.info({ certFile: this.certFile, trigger, previousSerial: previous, ...next.info }, 'TLS certificate reloaded');
    warnValidity(this.log, next.info);
  }
}

function warnValidity(log: Logger, info: CertInfo): void {
  const now = Date.now();
  if (Date.parse(info.validTo) <= now) log.warn({ serialNumber: info.serialNumber, validTo: info.validTo }, 'TLS certificate has expired; the API server will refuse it');
  else if (Date.parse(info.validFrom) > now) log.warn({ serialNumber: info.serialNumber, validFrom: info.validFrom }, 'TLS certificate is not valid yet (clock skew?)');
}

// ---------------------------------------------------------------------------------------------
// Self-signed CA and serving certificate

export interface PemPair {
  cert: string;
  key: string;
}

export interface SelfSignedBundle {
  /** The CA: its certificate is the `caBundle` of the MutatingWebhookConfiguration. */
  caCert: string;
  caKey: string;
  /** The serving certificate (signed by the CA) and its key. */
  cert: string;
  key: string;
}

export interface SelfSignedOptions {
  dnsNames: string[];
  ipAddresses?: string[];
  /** Validity of both certificates, in days (default 365). */
  validityDays?: number;
  /** Validity of the CA, when it should outlive the serving certificate (default: validityDays). */
  caValidityDays?: number;
  caCommonName?: string;
  /** Clock, for tests. */
  now?: Date;
}

export const DEFAULT_SERVICE_NAME = 'hook-runner';
export const DEFAULT_SERVICE_NAMESPACE = 'hook-runner-system';

/**
 * The names the API server and a local user reach the webhook by. The API server calls
 * `<svc>.<ns>.svc` (the ServerName it verifies); the shorter forms and localhost are for people.
 */
export function webhookServingNames(service = DEFAULT_SERVICE_NAME, namespace = DEFAULT_SERVICE_NAMESPACE): { dnsNames: string[]; ipAddresses: string[] } {
  return { dnsNames: [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, 'localhost'], ipAddresses: ['127.0.0.1'] };
}

/** ASN.1 UTF8String: the type every name attribute we write uses (see {@link makeCa}). */
const UTF8 = forge.asn1.Type.UTF8 as unknown as forge.asn1.Class;

/** Clock skew between us and the API server must not make a fresh certificate "not yet valid". */
export const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 3600 * 1000;
const MAX_VALIDITY_DAYS = 3650;

/**
 * RSA 2048 through node:crypto (OpenSSL), converted for forge. forge's own `generateKeyPair` uses
 * the same native call when it detects it, but falls back to pure JS (seconds per key) when it does
 * not; calling node:crypto ourselves keeps it fast on every runtime. Measured on the CI machines:
 * 0.1–0.4 s per key. node-forge cannot sign with EC keys, so RSA it is.
 */
function generateRsaKey(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const forgeKey = forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()) as forge.pki.rsa.PrivateKey;
  return { privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e) };
}

/**
 * A positive serial of 16 random bytes. The top byte is kept in 0x40–0x7f: positive, and never a
 * leading zero, which strict DER parsers (Go's, in the API server) reject as non-minimal.
 */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 0) & 0x3f) | 0x40;
  return b.toString('hex');
}

function checkValidityDays(name: string, days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > MAX_VALIDITY_DAYS) {
    throw new TlsError(`${name}: must be a whole number of days 1-${MAX_VALIDITY_DAYS}, got ${days}`);
  }
  return days;
}

function validity(cert: forge.pki.Certificate, now: Date, days: number): void {
  cert.validity.notBefore = new Date(now.getTime() - BACKDATE_MS);
  cert.validity.notAfter = new Date(now.getTime() + days * DAY_MS);
}

/** A self-signed CA that may sign serving certificates only (pathLen 0). */
export function makeCa(opts: { commonName?: string; validityDays?: number; now?: Date } = {}): PemPair {
  const days = checkValidityDays('validityDays', opts.validityDays ?? 365);
  const now = opts.now ?? new Date();
  const keys = generateRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  validity(cert, now, days);
  // The timestamp tells apart the CAs of several bootstraps in logs and in a caBundle (the form
  // Kubernetes' own self-signed CAs use). UTF8String, never node-forge's default PrintableString:
  // '@' is not a PrintableString character and Go's crypto/x509 (API server, kubelet) refuses the
  // whole certificate over it, and over any caller-chosen name outside that character set.
  const subject = [
    { name: 'commonName', value: opts.commonName ?? `hook-runner-ca@${Math.floor(now.getTime() / 1000)}`, valueTagClass: UTF8 },
    { name: 'organizationName', value: 'hook-runner', valueTagClass: UTF8 },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** A serving certificate for `dnsNames`/`ipAddresses`, signed by `ca`. */
export function issueServingCert(opts: { ca: PemPair; dnsNames: string[]; ipAddresses?: string[]; validityDays?: number; now?: Date }): PemPair {
  const days = checkValidityDays('validityDays', opts.validityDays ?? 365);
  const ips = opts.ipAddresses ?? [];
  if (opts.dnsNames.length === 0 && ips.length === 0) throw new TlsError('serving certificate: needs at least one DNS name or IP address');
  for (const [i, n] of opts.dnsNames.entries()) {
    if (!/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(n)) throw new TlsError(`dnsNames[${i}]: ${JSON.stringify(n)} is not a DNS name`);
  }
  for (const [i, ip] of ips.entries()) if (isIP(ip) === 0) throw new TlsError(`ipAddresses[${i}]: ${JSON.stringify(ip)} is not an IP address`);

  const now = opts.now ?? new Date();
  let caCert: forge.pki.Certificate;
  let caKey: forge.pki.PrivateKey;
  try {
    caCert = forge.pki.certificateFromPem(opts.ca.cert);
    caKey = forge.pki.privateKeyFromPem(opts.ca.key);
  } catch (e) {
    throw new TlsError(`CA: cannot read the CA certificate/key PEM (RSA expected): ${(e as Error).message}`);
  }
  const keys = generateRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  validity(cert, now, days);
  // Go's verifier (the API server) ignores the CN and matches only SANs; the CN is for humans.
  cert.setSubject([{ name: 'commonName', value: opts.dnsNames.find((n) => n.endsWith('.svc')) ?? opts.dnsNames[0] ?? ips[0] ?? 'hook-runner', valueTagClass: UTF8 }]);
  // The issuer must be the CA's subject byte for byte. forge keeps UTF8String values of a parsed
  // name undecoded and would encode them again; decode them first.
  cert.setIssuer(caCert.subject.attributes.map((a) => (a.valueTagClass === UTF8 && typeof a.value === 'string' ? { ...a, value: forge.util.decodeUtf8(a.value) } : a)));
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [...opts.dnsNames.map((value) => ({ type: 2, value })), ...ips.map((ip) => ({ type: 7, ip }))] },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  const pem = forge.pki.certificateToPem(cert);
  const issued = new X509Certificate(pem);
  if (!issued.checkIssued(new X509Certificate(opts.ca.cert)))
    throw new TlsError(
      `CA: the serving certificate's issuer (${issued.issuer.replace(/\n/g, ', ')}) does not match the CA's subject; expected a CA whose name node-forge can copy (UTF8String or PrintableString attributes)`,
    );
  return { cert: pem, key: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** A new CA and a serving certificate signed by it. Pure: no files, no network. */
export function makeSelfSignedBundle(opts: SelfSignedOptions): SelfSignedBundle {
  const days = opts.validityDays ?? 365;
  const ca = makeCa({ commonName: opts.caCommonName, validityDays: opts.caValidityDays ?? days, now: opts.now });
  const serving = issueServingCert({ ca, dnsNames: opts.dnsNames, ipAddresses: opts.ipAddresses, validityDays: days, now: opts.now });
  return { caCert: ca.cert, caKey: ca.key, cert: serving.cert, key: serving.key };
}

// ---------------------------------------------------------------------------------------------
// What Go's crypto/x509 refuses and OpenSSL/Node accept

/** Characters Go accepts in a PrintableString: X.680's set plus '*' and '&' (crypto/x509 tolerates both). */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?*&]*$/;
const T = forge.asn1.Type;
const OID_SAN = '2.5.29.17';

type Asn1 = forge.asn1.Asn1;
const kids = (n: Asn1 | undefined): Asn1[] => (n && Array.isArray(n.value) ? n.value : []);
const bytes = (n: Asn1 | undefined): string => (n && typeof n.value === 'string' ? n.value : '');

function nameProblem(name: Asn1 | undefined, where: string): string | undefined {
  if (!name || name.type !== T.SEQUENCE) return `${where}: not a Name (SEQUENCE expected)`;
  for (const rdn of kids(name)) {
    for (const atv of kids(rdn)) {
      const [oid, value] = kids(atv);
      if (!oid || !value) return `${where}: malformed attribute`;
      const attr = forge.asn1.derToOid(bytes(oid));
      const v = bytes(value);
      const bad = (why: string) => `${where}: attribute ${attr}: ${why}`;
      switch (value.type as number) {
        case T.PRINTABLESTRING:
          if (!PRINTABLE.test(v)) return bad(`PrintableString ${JSON.stringify(v)} holds characters PrintableString does not allow (use UTF8String)`);
          break;
        case T.IA5STRING:
          if (/[^\x00-\x7f]/.test(v)) return bad('IA5String with non-ASCII bytes');
          break;
        case T.UTF8:
          try {
            new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(v, 'binary'));
          } catch {
            return bad('UTF8String that is not valid UTF-8');
          }
          break;
        case 18: // NumericString
          if (!/^[0-9 ]*$/.test(v)) return bad('NumericString with characters other than digits and space');
          break;
        case T.BMPSTRING:
          if (v.length % 2 !== 0) return bad('BMPString of odd length');
          break;
        case 20: // T61String: Go reads it as Latin-1
          break;
        default:
          return bad(`string type ${value.type} that Go does not read`);
      }
    }
  }
  return undefined;
}

function sanProblem(extnValue: string): string | undefined {
  let names: Asn1;
  try {
    names = forge.asn1.fromDer(extnValue, true);
  } catch (e) {
    return `subjectAltName: not DER: ${(e as Error).message}`;
  }
  for (const gn of kids(names)) {
    if (gn.tagClass !== forge.asn1.Class.CONTEXT_SPECIFIC) continue;
    const v = bytes(gn);
    if ((gn.type === 1 || gn.type === 2 || gn.type === 6) && /[^\x00-\x7f]/.test(v)) return `subjectAltName: ${JSON.stringify(v)} is not IA5String (ASCII)`;
    if (gn.type === 7 && v.length !== 4 && v.length !== 16) return `subjectAltName: an IP address of ${v.length} bytes`;
  }
  return undefined;
}

/**
 * Why Go's crypto/x509 would refuse this certificate (or a stricter Go release would), or
 * undefined. Covers what has bitten us and what node-forge can produce: string types and character
 * sets of names and SANs, the serial (positive, minimal, at most 20 octets), time encodings,
 * duplicate extensions. test/go/certcheck is the proof with Go itself; this is the run-time guard
 * that keeps such a certificate out of a Secret and a caBundle.
 */
export function goX509Problem(pem: string): string | undefined {
  let der: Buffer;
  try {
    der = new X509Certificate(pem).raw;
  } catch (e) {
    return `not a certificate OpenSSL can read: ${(e as Error).message}`;
  }
  let tbs: Asn1[];
  try {
    tbs = kids(kids(forge.asn1.fromDer(der.toString('binary'), true))[0]);
  } catch (e) {
    return `not DER: ${(e as Error).message}`;
  }
  let i = 0;
  if (tbs[0]?.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && tbs[0].type === 0) i = 1;
  const serial = bytes(tbs[i]);
  const b0 = serial.charCodeAt(0);
  if (tbs[i]?.type !== T.INTEGER || serial.length === 0) return 'serial: not an INTEGER';
  if (b0 & 0x80) return 'serial: negative';
  if (serial.length > 1 && b0 === 0 && !(serial.charCodeAt(1) & 0x80)) return 'serial: not minimally encoded (leading zero byte)';
  if (/^\x00+$/.test(serial)) return 'serial: zero';
  if (serial.length > 20) return `serial: ${serial.length} octets, at most 20 allowed`;
  const issuer = nameProblem(tbs[i + 2], 'issuer');
  if (issuer) return issuer;
  for (const t of kids(tbs[i + 3])) {
    const v = bytes(t);
    if (t.type === T.UTCTIME ? !/^\d{12}Z$/.test(v) : t.type === T.GENERALIZEDTIME ? !/^\d{14}Z$/.test(v) : true) return `validity: ${JSON.stringify(v)} is not a UTCTime/GeneralizedTime Go accepts`;
  }
  const subject = nameProblem(tbs[i + 4], 'subject');
  if (subject) return subject;
  const exts = tbs.find((n) => n.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && n.type === 3);
  const seen = new Set<string>();
  for (const ext of kids(kids(exts)[0])) {
    const parts = kids(ext);
    const oid = forge.asn1.derToOid(bytes(parts[0]));
    if (seen.has(oid)) return `extension ${oid} appears twice`;
    seen.add(oid);
    if (oid === OID_SAN) {
      const problem = sanProblem(bytes(parts[parts.length - 1]));
      if (problem) return problem;
    }
  }
  return undefined;
}
