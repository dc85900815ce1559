/**
 * Certificates Go's crypto/x509 refuses, made the way hook-runner made them before issue 10:
 * node-forge's default PrintableString for a CN holding '@'. OpenSSL and Node read them; the API
 * server and the kubelet do not. Used as starting states (a Secret or caBundle left by an old
 * version) and to prove the checks catch them.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import type { PemPair } from '../../webhook/cluster/tls.js';

const DAY_MS = 24 * 3600 * 1000;

function rsa(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const k = forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()) as forge.pki.rsa.PrivateKey;
  return { privateKey: k, publicKey: forge.pki.setRsaPublicKey(k.n, k.e) };
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 0) & 0x3f) | 0x40;
  return b.toString('hex');
}

/** A CA and a serving certificate as the pre-issue-10 code made them (the CN is a PrintableString with '@'). */
export function legacyGoUnparseableBundle(dnsNames: string[], now = new Date()): { ca: PemPair; serving: PemPair } {
  const caKeys = rsa();
  const ca = forge.pki.createCertificate();
  ca.publicKey = caKeys.publicKey;
  ca.serialNumber = serial();
  ca.validity.notBefore = new Date(now.getTime() - 300_000);
  ca.validity.notAfter = new Date(now.getTime() + 1825 * DAY_MS);
  const subject = [
    { name: 'commonName', value: `hook-runner-ca@${Math.floor(now.getTime() / 1000)}` },
    { name: 'organizationName', value: 'hook-runner' },
  ];
  ca.setSubject(subject);
  ca.setIssuer(subject);
  ca.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  ca.sign(caKeys.privateKey, forge.md.sha256.create());

  const keys = rsa();
  const leaf = forge.pki.createCertificate();
  leaf.publicKey = keys.publicKey;
  leaf.serialNumber = serial();
  leaf.validity.notBefore = ca.validity.notBefore;
  leaf.validity.notAfter = new Date(now.getTime() + 365 * DAY_MS);
  leaf.setSubject([{ name: 'commonName', value: dnsNames[0] ?? 'hook-runner' }]);
  leaf.setIssuer(subject);
  leaf.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: dnsNames.map((value) => ({ type: 2, value })) },
  ]);
  leaf.sign(caKeys.privateKey, forge.md.sha256.create());
  return {
    ca: { cert: forge.pki.certificateToPem(ca).replace(/\r\n/g, '\n'), key: forge.pki.privateKeyToPem(caKeys.privateKey).replace(/\r\n/g, '\n') },
    serving: { cert: forge.pki.certificateToPem(leaf).replace(/\r\n/g, '\n'), key: forge.pki.privateKeyToPem(keys.privateKey).replace(/\r\n/g, '\n') },
  };
}
