/**
 * TLS of the webhook: the self-signed CA and serving certificate, key-pair validation, and reloading
 * certificate files (kubelet-style symlink swap and in-place writes) without a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  TlsError,
  fileTlsProvider,
  goX509Problem,
  issueServingCert,
  loadKeyPairFiles,
  makeCa,
  makeSelfSignedBundle,
  staticTlsProvider,
  webhookServingNames,
  type PemPair,
  type TlsProvider,
} from '../webhook/cluster/tls.js';
import { memoryLogger, peerCertificate, waitFor } from './support/https.js';
import { assertAllOk, goCertCheck } from './go/certcheck.js';
import { legacyGoUnparseableBundle } from './go/fixtures.js';

/** An HTTPS server on 127.0.0.1:0 serving whatever `provider` says; closed by the caller. */
async function serve(provider: TlsProvider): Promise<{ port: number; close: () => Promise<void> }> {
  const server = https.createServer(provider.serverOptions(), (_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  provider.attach(server);
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      provider.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Node prints serials in upper-case hex without leading zeros in some versions; compare normalised. */
const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toUpperCase().replace(/^0+/, '');
const normSerial = (s: string): string => s.toUpperCase().replace(/^0+/, '');

test('self-signed bundle: CA and serving certificate have the right shape', () => {
  const names = webhookServingNames('hooks', 'platform');
  const b = makeSelfSignedBundle({ ...names, validityDays: 30 });
  const ca = new X509Certificate(b.caCert);
  const leaf = new X509Certificate(b.cert);
  assert.equal(ca.ca, true, 'the CA certificate must be a CA');
  assert.equal(leaf.ca, false, 'the serving certificate must not be a CA');
  assert.ok(leaf.checkIssued(ca), 'serving certificate must be issued by the CA');
  assert.ok(leaf.verify(ca.publicKey), 'serving certificate signature must verify with the CA key');
  assert.equal(leaf.subjectAltName, 'DNS:hooks, DNS:hooks.platform, DNS:hooks.platform.svc, DNS:localhost, IP Address:127.0.0.1');
  assert.match(leaf.subject, /CN=hooks\.platform\.svc/);
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extended key usage must be serverAuth only');
  // Positive, minimally encoded serial: Go's parser (the API server's) rejects a leading zero byte.
  assert.match(leaf.serialNumber, /^[4-7][0-9A-F]{31}$/i);
  const days = (Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 86_400_000;
  assert.ok(days > 30 && days < 30.1, `validity should be 30 days plus the 5 minutes backdating, got ${days}`);
  assert.ok(Date.parse(leaf.validFrom) < Date.now(), 'backdated so that clock skew does not make it "not yet valid"');
  assert.notEqual(b.caKey, b.key, 'CA and serving certificate must have their own keys');
});

test('self-signed bundle: server certificate verifies against the CA for localhost, 127.0.0.1 and <svc>.<ns>.svc', async (t) => {
  const b = makeSelfSignedBundle(webhookServingNames());
  const s = await serve(staticTlsProvider(b, 'self-signed'));
  t.after(s.close);
  // tls.connect verifies the chain against `ca` only, and the name against the SANs.
  for (const servername of ['localhost', 'hook-runner.hook-runner-system.svc', 'hook-runner.hook-runner-system', 'hook-runner', undefined]) {
    const cert = await peerCertificate({ port: s.port, ca: b.caCert, servername });
    assert.equal(normSerial(cert.serialNumber), serialOf(b.cert), `servername ${servername ?? '(IP 127.0.0.1)'}`);
  }
  await assert.rejects(peerCertificate({ port: s.port, ca: b.caCert, servername: 'other.example' }), /ERR_TLS_CERT_ALTNAME_INVALID|does not match/i);
  const otherCa = makeCa();
  await assert.rejects(peerCertificate({ port: s.port, ca: otherCa.cert, servername: 'localhost' }), /self.signed|unable to (get|verify)|certificate/i);
});

test('issueServingCert refuses bad names with the index and the value', () => {
  const ca = makeCa({ validityDays: 1 });
  assert.throws(
    () => issueServingCert({ ca, dnsNames: ['ok', 'not a name'] }),
    (e: unknown) => e instanceof TlsError && e.message === 'dnsNames[1]: "not a name" is not a DNS name',
  );
  assert.throws(() => issueServingCert({ ca, dnsNames: ['ok'], ipAddresses: ['300.1.1.1'] }), /ipAddresses\[0\]: "300.1.1.1" is not an IP address/);
  assert.throws(() => makeCa({ validityDays: 0 }), /validityDays: must be a whole number of days 1-3650, got 0/);
});

/** A CA and three serving certificates for 127.0.0.1, made once: key generation is the slow part. */
let material: { ca: PemPair; a: PemPair; b: PemPair; c: PemPair } | undefined;
function certs(): NonNullable<typeof material> {
  if (!material) {
    const ca = makeCa({ validityDays: 2 });
    const issue = () => issueServingCert({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 2 });
    material = { ca, a: issue(), b: issue(), c: issue() };
  }
  return material;
}

test('loadKeyPairFiles: errors name the file and what was expected', () => {
  const { a, b } = certs();
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-tls-'));
  const cert = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  writeFileSync(cert, a.cert);
  writeFileSync(key, b.key);
  assert.throws(
    () => loadKeyPairFiles(cert, key),
    (e: unknown) => e instanceof TlsError && e.message.startsWith(`${key}: this private key does not belong to the certificate in ${cert}`),
  );
  assert.throws(
    () => loadKeyPairFiles(join(dir, 'missing.crt'), key),
    (e: unknown) => e instanceof TlsError && e.message === `--tls-cert-file ${join(dir, 'missing.crt')}: cannot read: ENOENT`,
  );
  writeFileSync(key, 'not a key');
  assert.throws(
    () => loadKeyPairFiles(cert, key),
    (e: unknown) => e instanceof TlsError && e.message.startsWith(`${key}: not a PEM private key`),
  );
  writeFileSync(cert, 'garbage');
  assert.throws(
    () => loadKeyPairFiles(cert, key),
    (e: unknown) => e instanceof TlsError && e.message.startsWith(`${cert}: not a PEM certificate`),
  );
  writeFileSync(cert, a.cert);
  writeFileSync(key, a.key);
  assert.equal(normSerial(loadKeyPairFiles(cert, key).info.serialNumber), serialOf(a.cert));
});

/**
 * Lays out a directory the way the kubelet's AtomicWriter writes a Secret volume:
 * `tls.crt -> ..data/tls.crt`, `..data -> ..<version>`; an update swaps `..data` with one rename.
 */
function secretVolume(dir: string) {
  let n = 0;
  const writeVersion = (pair: PemPair): string => {
    const v = `..2026_${n++}`;
    mkdirSync(join(dir, v));
    writeFileSync(join(dir, v, 'tls.crt'), pair.cert);
    writeFileSync(join(dir, v, 'tls.key'), pair.key);
    return v;
  };
  return {
    init(pair: PemPair) {
      symlinkSync(writeVersion(pair), join(dir, '..data'));
      symlinkSync('..data/tls.crt', join(dir, 'tls.crt'));
      symlinkSync('..data/tls.key', join(dir, 'tls.key'));
    },
    swap(pair: PemPair) {
      const v = writeVersion(pair);
      symlinkSync(v, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    },
  };
}

test('file TLS: a symlink-swapped Secret volume is served by fresh connections without a restart', async (t) => {
  const { ca, a, b } = certs();
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-tls-'));
  const vol = secretVolume(dir);
  vol.init(a);
  const { logger, lines } = memoryLogger();
  const provider = fileTlsProvider({ certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), logger, pollIntervalMs: 200, debounceMs: 20 });
  const s = await serve(provider);
  t.after(s.close);
  assert.equal(normSerial((await peerCertificate({ port: s.port, ca: ca.cert })).serialNumber), serialOf(a.cert));

  vol.swap(b);
  const seen = await waitFor('the new serial on a fresh connection', async () => {
    const serial = normSerial((await peerCertificate({ port: s.port, ca: ca.cert })).serialNumber);
    return serial === serialOf(b.cert) ? serial : undefined;
  });
  assert.equal(seen, serialOf(b.cert));
  const reloaded = lines.find((l) => l.msg === 'TLS certificate reloaded');
  assert.ok(reloaded, 'a reload is logged');
  assert.equal(normSerial(String(reloaded.serialNumber)), serialOf(b.cert));
  assert.equal(normSerial(String(reloaded.previousSerial)), serialOf(a.cert));
  assert.equal(normSerial(provider.current().serialNumber), serialOf(b.cert));
});

test('file TLS: a bad new pair keeps the old certificate and logs an error once; a good one is then taken', async (t) => {
  const { ca, a, b, c } = certs();
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-tls-'));
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  writeFileSync(certFile, a.cert);
  writeFileSync(keyFile, a.key);
  const { logger, lines } = memoryLogger();
  const provider = fileTlsProvider({ certFile, keyFile, logger, pollIntervalMs: 100, debounceMs: 20 });
  const s = await serve(provider);
  t.after(s.close);

  // In-place writes, as a non-atomic writer would do: a certificate whose key is not there.
  writeFileSync(certFile, b.cert);
  assert.equal(await provider.reloadNow(), false);
  const rejected = await waitFor('the rejection in the log', () => lines.find((l) => l.msg.startsWith('new TLS certificate/key pair rejected')));
  assert.equal(rejected.level, 'error');
  assert.match(String(rejected.err), /this private key does not belong to the certificate/);
  assert.equal(normSerial((await peerCertificate({ port: s.port, ca: ca.cert })).serialNumber), serialOf(a.cert), 'the old certificate stays in service');
  // The same bad pair seen again by polls and watches is not logged again.
  await provider.reloadNow();
  await provider.reloadNow();
  assert.equal(lines.filter((l) => l.msg.startsWith('new TLS certificate/key pair rejected')).length, 1);

  writeFileSync(keyFile, c.key);
  writeFileSync(certFile, c.cert);
  await waitFor('the good pair to be served', async () => normSerial((await peerCertificate({ port: s.port, ca: ca.cert })).serialNumber) === serialOf(c.cert));
  assert.equal(normSerial(provider.current().serialNumber), serialOf(c.cert));
});

test('file TLS: a missing or mismatched initial pair fails at start with the file named', () => {
  const { a, b } = certs();
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-tls-'));
  writeFileSync(join(dir, 'tls.crt'), a.cert);
  writeFileSync(join(dir, 'tls.key'), b.key);
  const { logger } = memoryLogger();
  assert.throws(() => fileTlsProvider({ certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'nope.key'), logger }), /--tls-key-file .*nope\.key: cannot read: ENOENT/);
  assert.throws(() => fileTlsProvider({ certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), logger }), /tls\.key: this private key does not belong to the certificate/);
});

// ---------------------------------------------------------------------------------------------
// Go's crypto/x509 (API server, kubelet, kubectl, cert-manager) must read every certificate we make.

test('Go crypto/x509: the self-signed CA and serving certificate parse and verify for the Service names', async (t) => {
  const check = goCertCheck(t);
  if (!check) return;
  const names = webhookServingNames();
  const b = makeSelfSignedBundle({ ...names, validityDays: 30 });
  const explicitCn = makeCa({ commonName: 'My CA @ tést (ünïcode)' });
  const leafOfExplicit = issueServingCert({ ca: explicitCn, dnsNames: ['hook-runner.hook-runner-system.svc'] });
  assertAllOk(
    await check({
      parse: [
        { name: 'CA', pem: b.caCert, role: 'ca' },
        { name: 'serving', pem: b.cert, role: 'serving' },
        { name: 'CA with a caller-chosen CN', pem: explicitCn.cert, role: 'ca' },
        { name: 'serving of that CA', pem: leafOfExplicit.cert, role: 'serving' },
      ],
      verify: [
        { name: 'serving chain', roots: b.caCert, leaf: b.cert, dnsNames: names.dnsNames },
        { name: 'serving chain (caller-chosen CN)', roots: explicitCn.cert, leaf: leafOfExplicit.cert, dnsNames: ['hook-runner.hook-runner-system.svc'] },
      ],
    }),
    'self-signed bundle',
  );
});

test('goX509Problem: names what Go refuses (the pre-issue-10 PrintableString CN) and passes what we make', () => {
  const legacy = legacyGoUnparseableBundle(['hook-runner.hook-runner-system.svc']);
  assert.match(String(goX509Problem(legacy.ca.cert)), /^issuer: attribute 2\.5\.4\.3: PrintableString "hook-runner-ca@\d+" holds characters PrintableString does not allow/);
  assert.match(String(goX509Problem(legacy.serving.cert)), /^issuer: attribute 2\.5\.4\.3: PrintableString/);
  assert.match(String(goX509Problem('junk')), /^not a certificate OpenSSL can read/);
  const b = makeSelfSignedBundle(webhookServingNames());
  assert.equal(goX509Problem(b.caCert), undefined);
  assert.equal(goX509Problem(b.cert), undefined);
  assert.equal(goX509Problem(makeCa({ commonName: 'My CA @ tést' }).cert), undefined);
});

test('Go crypto/x509 rejects what it must (the checker is not a rubber stamp)', async (t) => {
  const check = goCertCheck(t);
  if (!check) return;
  const b = makeSelfSignedBundle(webhookServingNames());
  const other = makeCa();
  const legacy = legacyGoUnparseableBundle(['localhost']);
  const results = await check({
    parse: [
      { name: 'junk', pem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' },
      { name: 'leaf as CA', pem: b.cert, role: 'ca' },
      { name: 'legacy CA', pem: legacy.ca.cert },
    ],
    verify: [
      { name: 'wrong CA', roots: other.cert, leaf: b.cert, dnsNames: ['localhost'] },
      { name: 'wrong name', roots: b.caCert, leaf: b.cert, dnsNames: ['other.example'] },
    ],
  });
  assert.deepEqual(
    results.map((r) => [r.name, r.ok]),
    [
      ['junk', false],
      ['leaf as CA', false],
      ['legacy CA', false],
      ['wrong CA', false],
      ['wrong name', false],
    ],
  );
  assert.match(String(results[0]?.error), /x509|asn1/);
  assert.match(String(results[2]?.error), /invalid PrintableString/);
  assert.match(String(results[3]?.error), /unknown authority/);
  assert.match(String(results[4]?.error), /not other\.example|valid for/);
});

test('the built binary: webhook --self-signed serves a chain Go verifies for <svc>.<ns>.svc (crypto/tls handshake, as the API server)', async (t) => {
  const check = goCertCheck(t);
  if (!check) return;
  const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');
  if (!existsSync(cli)) {
    t.skip('needs a build: dist/cli/main.js is missing (npm test builds first; or run npm run build)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'hook-runner-tls-go-'));
  const caOut = join(dir, 'ca.pem');
  // Outside a cluster on purpose: --self-signed then makes its CA in memory (webhook/cli.ts).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'KUBERNETES_SERVICE_HOST'));
  const child = spawn(process.execPath, [cli, 'webhook', '--self-signed', '--listen', '127.0.0.1:0', '--ca-out', caOut, '--shutdown-delay-seconds', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  t.after(() => {
    clearTimeout(killer);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines: { msg: string; port?: number }[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l) as { msg: string; port?: number }));
  const listening = await Promise.race([
    waitFor('the listening log line', () => lines.find((l) => l.msg.startsWith('webhook listening')), { tries: 400 }),
    exited.then((code) => {
      throw new Error(`the webhook exited early with ${code}: ${stderr}`);
    }),
  ]);
  const ca = readFileSync(caOut, 'utf8');
  const addr = `127.0.0.1:${Number(listening.port)}`;
  assertAllOk(
    await check({
      parse: [{ name: 'CA from --ca-out', pem: ca, role: 'ca' }],
      handshake: [
        { name: 'as the API server', addr, roots: ca, serverName: 'hook-runner.hook-runner-system.svc' },
        { name: 'as a local user', addr, roots: ca, serverName: 'localhost' },
      ],
    }),
    'webhook --self-signed',
  );
  child.kill('SIGTERM');
  assert.equal(await exited, 0, `exit code after SIGTERM; stderr: ${stderr}`);
});
