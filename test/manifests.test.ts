/**
 * Offline checks of what a cluster admin installs: the Dockerfile (static lint), the kustomize base
 * and overlays in manifests/ (rendered with `kubectl kustomize`, validated against the Kubernetes
 * schema, the webhook configuration, Pod Security "restricted", RBAC, the config) and the skip path
 * of `npm run e2e`. The kind suite (test/e2e/kind/) is the real proof on a cluster; this is what can
 * be proved without one. Label and annotation names come from common/names.ts, never retyped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  V1ClusterRole,
  V1ConfigMap,
  V1Container,
  V1Deployment,
  V1LabelSelector,
  V1MutatingWebhookConfiguration,
  V1Namespace,
  V1PodDisruptionBudget,
  V1PodSpec,
  V1PolicyRule,
  V1Role,
  V1RoleBinding,
  V1Service,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import {
  ANNOTATION_HOOKS,
  ANNOTATION_STATUS,
  LABEL_NAMESPACE_INJECTION,
  LABEL_POD_INJECT,
  NAMESPACE_INJECTION_DISABLED,
  NAMESPACE_INJECTION_ENABLED,
  SIDECAR_CONTAINER_NAME,
} from '../common/names.js';
import { TLS_SECRET_NAME } from '../webhook/cluster/cert-bootstrap.js';
import { IMAGE_REPOSITORY, parseConfig } from '../webhook/core/config.js';
import { DEFAULT_WEBHOOK_CONFIG_NAME } from '../webhook/cluster/in-cluster.js';
import { SIDECAR_CLUSTERROLE_NAME, SIDECAR_ROLEBINDING_NAME } from '../webhook/cluster/namespace-controller.js';
import { DEFAULT_SERVICE_NAME, DEFAULT_SERVICE_NAMESPACE } from '../webhook/cluster/tls.js';
import { validateKubernetesObject, type Attr, type ExtraModels } from './support/k8s-schema.js';

const ROOT = join(import.meta.dirname, '..');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
  scripts: Record<string, string>;
};

// The names of the webhook's own objects come from the code that uses them in the cluster, so the
// manifests and the in-cluster code cannot drift apart.
const NAMESPACE = DEFAULT_SERVICE_NAMESPACE;
const SERVICE = DEFAULT_SERVICE_NAME;
const WEBHOOK_CONFIG = DEFAULT_WEBHOOK_CONFIG_NAME;
const SELF_SIGNED_SECRET = TLS_SECRET_NAME;
const SIDECAR_CLUSTER_ROLE = SIDECAR_CLUSTERROLE_NAME;
const SIDECAR_ROLE_BINDING = SIDECAR_ROLEBINDING_NAME;
const SERVICE_ACCOUNT = 'hook-runner';
const WEBHOOK_PORT = 8443;

// cert-manager's CRDs have no model in client-node: a subset of their v1 schema, the fields these
// manifests may use, in the validator's form.
const a = (spec: Record<string, string>): Attr[] => Object.entries(spec).map(([baseName, type]) => ({ baseName, type }));
const CERT_MANAGER_MODELS: ExtraModels = {
  CertManagerV1Issuer: { attrs: a({ apiVersion: 'string', kind: 'string', metadata: 'V1ObjectMeta', spec: 'CertManagerV1IssuerSpec' }), required: ['spec'] },
  CertManagerV1IssuerSpec: { attrs: a({ selfSigned: 'CertManagerV1SelfSigned', ca: 'CertManagerV1CAIssuer' }), required: [] },
  CertManagerV1SelfSigned: { attrs: a({ crlDistributionPoints: 'Array<string>' }), required: [] },
  CertManagerV1CAIssuer: { attrs: a({ secretName: 'string', crlDistributionPoints: 'Array<string>', ocspServers: 'Array<string>' }), required: ['secretName'] },
  CertManagerV1Certificate: { attrs: a({ apiVersion: 'string', kind: 'string', metadata: 'V1ObjectMeta', spec: 'CertManagerV1CertificateSpec' }), required: ['spec'] },
  CertManagerV1CertificateSpec: {
    attrs: a({
      commonName: 'string',
      dnsNames: 'Array<string>',
      duration: 'string',
      renewBefore: 'string',
      isCA: 'boolean',
      issuerRef: 'CertManagerV1IssuerRef',
      privateKey: 'CertManagerV1PrivateKey',
      secretName: 'string',
      usages: 'Array<string>',
      revisionHistoryLimit: 'number',
    }),
    required: ['issuerRef', 'secretName'],
  },
  CertManagerV1IssuerRef: { attrs: a({ group: 'string', kind: 'string', name: 'string' }), required: ['name'] },
  CertManagerV1PrivateKey: { attrs: a({ algorithm: 'string', encoding: 'string', rotationPolicy: 'string', size: 'number' }), required: [] },
};

const validateObject = (doc: unknown): string[] => validateKubernetesObject(doc, CERT_MANAGER_MODELS);

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------
interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}

const OVERLAYS = [
  { name: 'base', dir: 'manifests' },
  { name: 'cert-manager', dir: 'manifests/overlays/cert-manager' },
  { name: 'kind', dir: 'manifests/overlays/kind' },
  { name: 'adopt-native-hooks', dir: 'manifests/overlays/adopt-native-hooks' },
] as const;
type OverlayName = (typeof OVERLAYS)[number]['name'];

let kubectlMissing: string | undefined;
const rendered = new Map<string, Obj[] | string>();

/** `kubectl kustomize DIR` parsed; a string when it cannot run (the reason to skip). */
function render(dir: string): Obj[] | string {
  if (rendered.has(dir)) return rendered.get(dir)!;
  let out: Obj[] | string;
  if (kubectlMissing) out = kubectlMissing;
  else {
    try {
      const text = execFileSync('kubectl', ['kustomize', join(ROOT, dir)], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
      out = parseAllDocuments(text).map((d) => {
        if (d.errors.length) throw new Error(`kubectl kustomize ${dir} printed invalid YAML: ${d.errors[0]!.message}`);
        return d.toJS() as Obj;
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: string };
      if (err.code === 'ENOENT') {
        kubectlMissing = 'needs kubectl on PATH (for `kubectl kustomize`); it is not installed here';
        out = kubectlMissing;
      } else throw new Error(`kubectl kustomize ${dir} failed: ${err.stderr || err.message}`);
    }
  }
  rendered.set(dir, out);
  return out;
}

function overlay(name: OverlayName): Obj[] | string {
  return render(OVERLAYS.find((o) => o.name === name)!.dir);
}

function one<T>(objs: Obj[], kind: string, name?: string): T {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(found.length, 1, `expected exactly one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0] as unknown as T;
}

// ---------------------------------------------------------------------------------------------
// Label selectors, Pod Security "restricted", RBAC: small evaluators used by the assertions.
// ---------------------------------------------------------------------------------------------
function selectorMatches(sel: V1LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const val = labels[e.key];
    const ok =
      e.operator === 'In'
        ? has && (e.values ?? []).includes(val!)
        : e.operator === 'NotIn'
          ? !has || !(e.values ?? []).includes(val!)
          : e.operator === 'Exists'
            ? has
            : e.operator === 'DoesNotExist'
              ? !has
              : assert.fail(`unknown selector operator ${e.operator}`);
    if (!ok) return false;
  }
  return true;
}

/** Violations of Pod Security Standards "restricted" (which includes "baseline"), v1.26+. */
function restrictedViolations(spec: V1PodSpec): string[] {
  const v: string[] = [];
  const psc = spec.securityContext ?? {};
  if (spec.hostNetwork) v.push('hostNetwork');
  if (spec.hostPID) v.push('hostPID');
  if (spec.hostIPC) v.push('hostIPC');
  if (psc.windowsOptions?.hostProcess) v.push('hostProcess');
  if (psc.runAsUser === 0) v.push('pod runAsUser 0');
  if (psc.seccompProfile?.type === 'Unconfined') v.push('pod seccomp Unconfined');
  for (const s of psc.sysctls ?? []) v.push(`sysctl ${s.name}`);
  const allowedVolumes = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
  for (const vol of spec.volumes ?? []) {
    for (const k of Object.keys(vol)) if (k !== 'name' && !allowedVolumes.includes(k)) v.push(`volume ${vol.name}: type ${k}`);
  }
  const all: V1Container[] = [...(spec.initContainers ?? []), ...spec.containers];
  for (const c of all) {
    const sc = c.securityContext ?? {};
    const where = `container ${c.name}`;
    if (sc.privileged) v.push(`${where}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) v.push(`${where}: allowPrivilegeEscalation must be false`);
    if (!(sc.runAsNonRoot ?? psc.runAsNonRoot)) v.push(`${where}: runAsNonRoot must be true`);
    if (sc.runAsUser === 0) v.push(`${where}: runAsUser 0`);
    const seccomp = sc.seccompProfile?.type ?? psc.seccompProfile?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') v.push(`${where}: seccompProfile must be RuntimeDefault or Localhost`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) v.push(`${where}: capabilities must drop ALL`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') v.push(`${where}: adds capability ${cap}`);
    if (sc.procMount && sc.procMount !== 'Default') v.push(`${where}: procMount ${sc.procMount}`);
    for (const p of c.ports ?? []) if (p.hostPort) v.push(`${where}: hostPort ${p.hostPort}`);
  }
  return v;
}

/** `scope apiGroup/resource verb [names]` for every permission the ServiceAccount gets. */
function permissionsOf(objs: Obj[], ns: string, sa: string): string[] {
  const isSubject = (b: V1RoleBinding) => (b.subjects ?? []).some((s) => s.kind === 'ServiceAccount' && s.name === sa && s.namespace === ns);
  const roleRules = (kind: string, name: string, roleNs?: string): V1PolicyRule[] => {
    const r = objs.find((o) => o.kind === kind && o.metadata.name === name && (roleNs === undefined || o.metadata.namespace === roleNs)) as V1Role | V1ClusterRole | undefined;
    assert.ok(r, `binding refers to ${kind} ${name}, which the manifests do not define`);
    return r.rules ?? [];
  };
  const out: string[] = [];
  const expand = (scope: string, rules: V1PolicyRule[]) => {
    for (const r of rules)
      for (const g of r.apiGroups ?? [])
        for (const res of r.resources ?? []) for (const verb of r.verbs) out.push(`${scope} ${g || 'core'}/${res} ${verb}${r.resourceNames ? ` [${r.resourceNames.join(',')}]` : ''}`);
  };
  for (const o of objs) {
    const b = o as unknown as V1RoleBinding;
    if (o.kind === 'ClusterRoleBinding' && isSubject(b)) expand('cluster', roleRules('ClusterRole', b.roleRef.name));
    if (o.kind === 'RoleBinding' && isSubject(b)) {
      expand(`ns:${o.metadata.namespace}`, roleRules(b.roleRef.kind, b.roleRef.name, b.roleRef.kind === 'Role' ? o.metadata.namespace : undefined));
    }
  }
  return out.sort();
}

function rulesAsStrings(rules: V1PolicyRule[]): string[] {
  return rules
    .flatMap((r) =>
      (r.apiGroups ?? []).flatMap((g) => (r.resources ?? []).flatMap((res) => r.verbs.map((v) => `${g || 'core'}/${res} ${v}${r.resourceNames ? ` [${r.resourceNames.join(',')}]` : ''}`))),
    )
    .sort();
}

function argValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  if (i >= 0) return args[i + 1];
  return args.find((x) => x.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

function webhookContainer(objs: Obj[]): { dep: V1Deployment; c: V1Container; pod: V1PodSpec } {
  const dep = one<V1Deployment>(objs, 'Deployment', 'hook-runner');
  const pod = dep.spec!.template.spec!;
  assert.equal(pod.containers.length, 1, 'the webhook Deployment runs one container');
  return { dep, c: pod.containers[0]!, pod };
}

// =============================================================================================
// Dockerfile
// =============================================================================================
interface Instr {
  op: string;
  args: string;
}
function dockerfile(): { argDefaults: Map<string, string>; stages: { from: string; name?: string; instrs: Instr[] }[] } {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const lines = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const argDefaults = new Map<string, string>();
  const stages: { from: string; name?: string; instrs: Instr[] }[] = [];
  for (const line of lines) {
    const m = /^(\w+)\s+(.*)$/.exec(line);
    assert.ok(m, `Dockerfile: cannot read line ${JSON.stringify(line)}`);
    const op = m[1]!.toUpperCase();
    const args = m[2]!;
    if (op === 'FROM') {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      assert.ok(f, `Dockerfile: cannot read FROM ${args}`);
      const from = f[1]!.replace(/\$\{?(\w+)\}?/g, (_, v: string) => argDefaults.get(v) ?? assert.fail(`Dockerfile: FROM uses ARG ${v} without a default`));
      stages.push({ from, name: f[2], instrs: [] });
    } else if (stages.length === 0) {
      if (op === 'ARG') {
        const [k, v] = args.split('=', 2);
        if (v !== undefined) argDefaults.set(k!.trim(), v.trim());
      }
    } else stages[stages.length - 1]!.instrs.push({ op, args });
  }
  return { argDefaults, stages };
}

test('Dockerfile: multi-stage, base images pinned by version, never latest, Node.js 24 LTS', () => {
  const { stages } = dockerfile();
  assert.ok(stages.length >= 2, 'multi-stage: a build stage and a runtime stage');
  for (const s of stages) {
    if (stages.some((o) => o.name === s.from)) continue; // FROM an earlier stage
    assert.doesNotMatch(s.from, /:latest\b/, `FROM ${s.from}: never latest`);
    assert.match(s.from, /^[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$|@sha256:[0-9a-f]{64}$/, `FROM ${s.from}: pin the base image by full version (x.y.z) or digest`);
    // Node 20 is end-of-life (2026-04-30): whatever stage runs Node runs 24 LTS.
    if (s.from.startsWith('node:')) assert.match(s.from, /^node:24\.\d+\.\d+-/, `FROM ${s.from}: Node.js 24 LTS, pinned by full version`);
  }
  assert.match(stages[stages.length - 1]!.from, /^node:24\./, 'the runtime stage is the Node.js 24 image');
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  assert.doesNotMatch(text, /\blatest\b/, 'no `latest` anywhere in the Dockerfile');
});

test('Dockerfile: build stage compiles and prunes; runtime has the app, the static exec helper, a non-root user and the hook-runner entrypoint', () => {
  const { stages } = dockerfile();
  const runtime = stages[stages.length - 1]!;
  const build = stages.find((s) => s.name && runtime.instrs.some((i) => i.op === 'COPY' && i.args.includes(`--from=${s.name}`)));
  assert.ok(build, 'the runtime stage copies from a named build stage');
  const runs = (s: typeof runtime) =>
    s.instrs
      .filter((i) => i.op === 'RUN')
      .map((i) => i.args)
      .join(' && ');
  assert.match(runs(build), /\bnpm ci\b/, 'build stage installs from the lockfile (npm ci)');
  assert.match(runs(build), /\bnpm run build\b/, 'build stage compiles TypeScript');
  assert.match(runs(build), /\bnpm prune --omit=dev\b|\bnpm ci --omit=dev\b/, 'build stage keeps production dependencies only');
  assert.doesNotMatch(runs(runtime), /\bnpm (ci|install|i)\b/, 'the runtime stage installs nothing with npm');
  assert.match(runs(build), /! ldd dist\/sidecar\/hook-exec\b/, 'the build stage checks that the exec helper is statically linked (docs/security.md)');
  assert.match(runs(runtime), /\/app\/dist\/sidecar\/hook-exec\b/, 'the runtime stage checks that the exec helper runs (exec handlers, DESIGN §6)');
  const copies = runtime.instrs.filter((i) => i.op === 'COPY' && i.args.includes(`--from=${build.name}`)).map((i) => i.args);
  for (const want of ['dist', 'node_modules', 'package.json'])
    assert.ok(
      copies.some((c) => c.includes(`/${want}`)),
      `runtime copies ${want} from the build stage`,
    );
  assert.ok(!runtime.instrs.some((i) => i.op === 'ADD'), 'no ADD in the runtime stage (nothing fetched, nothing unpacked implicitly)');

  const users = runtime.instrs.filter((i) => i.op === 'USER');
  assert.ok(users.length > 0, 'the runtime stage sets USER');
  const user = users[users.length - 1]!.args.split(':')[0]!;
  assert.match(user, /^\d+$/, 'USER is numeric, so the kubelet can check runAsNonRoot');
  assert.notEqual(Number(user), 0, 'USER is not root');
  assert.equal(Number(user), 65532);

  const entry = runtime.instrs.filter((i) => i.op === 'ENTRYPOINT').pop();
  assert.ok(entry, 'ENTRYPOINT is set');
  const argv = JSON.parse(entry.args) as string[];
  const binName = Object.keys(PKG.bin)[0]!;
  assert.equal(binName, 'hook-runner');
  const binTarget = `/app/${PKG.bin[binName]!}`;
  if (argv[0] === 'hook-runner') {
    // `hook-runner` on PATH (also used by the container-mode wait-ready PostStart) is the CommonJS
    // launcher: the sidecar inlined, every other command handed to the package's bin (issue 13.1).
    assert.match(runs(runtime), /ln -s \/app\/dist\/sidecar\/hook-runner\.cjs \/usr\/local\/bin\/hook-runner/);
    assert.match(readFileSync(join(ROOT, 'sidecar/launcher.ts'), 'utf8'), new RegExp(`import\\('\\.\\./${PKG.bin[binName]!.replace(/^dist\//, '').replace(/[./]/g, '\\$&')}'\\)`));
  } else assert.deepEqual(argv, ['node', binTarget]);
});

test('.dockerignore: an allow-list that admits exactly what the build stage copies', () => {
  const lines = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  assert.equal(lines[0], '*', 'starts by excluding everything');
  const allowed = lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
  const { stages } = dockerfile();
  const sources = stages.flatMap((s) => s.instrs.filter((i) => i.op === 'COPY' && !i.args.includes('--from=')).flatMap((i) => i.args.split(/\s+/).slice(0, -1)));
  for (const src of sources) assert.ok(allowed.includes(src.replace(/^\.\//, '').replace(/\/$/, '')), `COPY ${src}: not admitted by .dockerignore`);
  const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] };
  for (const inc of tsconfig.include) {
    const top = inc.split('/')[0]!;
    assert.ok(
      sources.some((s) => s.replace(/^\.\//, '').replace(/\/$/, '') === top),
      `tsconfig includes ${inc}, but the Dockerfile does not copy ${top}/`,
    );
  }
  for (const never of ['node_modules', 'dist', '.git', 'test']) assert.ok(!allowed.includes(never), `${never} must stay out of the build context`);
});

test('image layout: the CLI started through a symlink, as ENTRYPOINT hook-runner does, finds its package.json', (t) => {
  const main = join(ROOT, PKG.bin['hook-runner']!);
  if (!existsSync(main)) return t.skip(`needs the build output ${main} (npm test builds it first; run npm run build)`);
  const dir = mkdtempSync(join(tmpdir(), 'hr-image-'));
  try {
    symlinkSync(main, join(dir, 'hook-runner'));
    const out = execFileSync(process.execPath, [join(dir, 'hook-runner'), 'version'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(out.trim(), `hook-runner ${PKG.version}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// =============================================================================================
// Manifests
// =============================================================================================
test('the schema check catches unknown fields, wrong types and missing required fields', () => {
  const dep = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'x' },
    spec: {
      replicas: '2',
      selector: { matchLabels: { a: 'b' } },
      template: { spec: { containers: [{ name: 'c', image: 'i', imagePulPolicy: 'Always' }, { image: 'j' }] } },
    },
  };
  const errors = validateObject(dep);
  assert.ok(errors.includes('spec.template.spec.containers[0].imagePulPolicy: unknown field of V1Container'), errors.join('\n'));
  assert.ok(errors.includes('spec.replicas: expected a number, got string'), errors.join('\n'));
  assert.ok(errors.includes('spec.template.spec.containers[1].name: required field of V1Container is missing'), errors.join('\n'));
  assert.equal(errors.length, 3, errors.join('\n'));
  const mwc = { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'x' }, webhooks: [{ name: 'a.b.c', sideEffect: 'None' }] };
  const e2 = validateObject(mwc);
  assert.ok(e2.includes('webhooks[0].sideEffect: unknown field of V1MutatingWebhook'), e2.join('\n'));
  assert.ok(e2.includes('webhooks[0].sideEffects: required field of V1MutatingWebhook is missing'), e2.join('\n'));
  const cert = { apiVersion: 'cert-manager.io/v1', kind: 'Certificate', metadata: { name: 'x' }, spec: { secretName: 's', issuerRef: { name: 'i' }, dnsName: ['a'] } };
  assert.deepEqual(validateObject(cert), ['spec.dnsName: unknown field of CertManagerV1CertificateSpec']);
  assert.deepEqual(validateObject({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }), ['(root): no schema for V1Widget']);
});

test('manifests/ (what `kubectl apply -k manifests/` installs) is manifests/base', (t) => {
  const a1 = render('manifests');
  const a2 = render('manifests/base');
  if (typeof a1 === 'string' || typeof a2 === 'string') return t.skip(String(a1));
  assert.deepEqual(a1, a2);
});

for (const o of OVERLAYS) {
  test(`${o.name}: kubectl kustomize renders, and every object validates against the Kubernetes schema`, (t) => {
    const objs = render(o.dir);
    if (typeof objs === 'string') return t.skip(objs);
    const kinds = objs.map((x) => x.kind).sort();
    for (const k of ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'Deployment', 'MutatingWebhookConfiguration', 'Namespace', 'PodDisruptionBudget', 'Service', 'ServiceAccount'])
      assert.ok(kinds.includes(k), `${o.name}: no ${k} rendered`);
    const ids = objs.map((x) => `${x.kind}/${x.metadata.namespace ?? ''}/${x.metadata.name}`);
    assert.equal(new Set(ids).size, ids.length, 'no object rendered twice');
    for (const x of objs) assert.deepEqual(validateObject(x), [], `${o.name}: ${x.kind} ${x.metadata.name}`);
    const clusterScoped = ['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration'];
    for (const x of objs) {
      if (clusterScoped.includes(x.kind)) assert.equal(x.metadata.namespace, undefined, `${x.kind} ${x.metadata.name} is cluster-scoped`);
      else assert.equal(x.metadata.namespace, NAMESPACE, `${x.kind} ${x.metadata.name} belongs in ${NAMESPACE}`);
    }
  });

  test(`${o.name}: the MutatingWebhookConfiguration is exactly DESIGN §8`, (t) => {
    const objs = render(o.dir);
    if (typeof objs === 'string') return t.skip(objs);
    const mwc = one<V1MutatingWebhookConfiguration>(objs, 'MutatingWebhookConfiguration');
    assert.equal(mwc.metadata!.name, WEBHOOK_CONFIG);
    assert.equal(mwc.webhooks!.length, 1);
    const w = mwc.webhooks![0]!;
    assert.match(w.name, /^[a-z0-9-]+\.hook-runner\.dev$/, 'webhook name is fully qualified under hook-runner.dev');
    assert.equal(w.failurePolicy, 'Fail');
    assert.equal(w.sideEffects, 'None');
    assert.equal(w.reinvocationPolicy, 'IfNeeded');
    assert.equal(w.timeoutSeconds, 5);
    assert.deepEqual(w.admissionReviewVersions, ['v1']);
    assert.deepEqual(w.rules, [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
    // Only pods that use hook-runner are sent (test/match-conditions.test.ts evaluates the CEL).
    assert.deepEqual(
      (w.matchConditions ?? []).map((m) => m.name),
      ['pod-create', 'uses-hook-runner'],
    );
    assert.equal(w.clientConfig.url, undefined, 'served through the in-cluster Service');
    assert.equal(w.clientConfig.caBundle, undefined, 'caBundle is filled in at run time (self-signed bootstrap or cert-manager), never shipped');

    // The Service it calls exists and reaches the webhook's HTTPS container port.
    const ref = w.clientConfig.service!;
    assert.equal(ref.name, SERVICE, 'the Service the --self-signed certificate is made for');
    assert.equal(ref.path, '/mutate');
    assert.equal(ref.namespace, NAMESPACE);
    const svc = one<V1Service>(objs, 'Service', ref.name);
    const port = svc.spec!.ports!.find((p) => p.port === (ref.port ?? 443));
    assert.ok(port, `Service ${ref.name} has no port ${ref.port ?? 443}`);
    assert.equal(port.port, 443);
    const { dep, c } = webhookContainer(objs);
    const target = c.ports!.find((p) => p.name === port.targetPort || p.containerPort === port.targetPort);
    assert.ok(target, `Service targetPort ${port.targetPort} is not a port of the webhook container`);
    assert.equal(target.containerPort, WEBHOOK_PORT);
    assert.ok(selectorMatches({ matchLabels: svc.spec!.selector }, dep.spec!.template.metadata!.labels!), 'the Service selects the webhook pods');

    // The selectors, evaluated on the namespaces and pods they must admit or keep away.
    const nsLabels = (name: string, injection?: string) => ({ 'kubernetes.io/metadata.name': name, ...(injection ? { [LABEL_NAMESPACE_INJECTION]: injection } : {}) });
    const ns = (name: string, injection?: string) => selectorMatches(w.namespaceSelector, nsLabels(name, injection));
    assert.equal(ns('shop', NAMESPACE_INJECTION_ENABLED), true, 'an opted-in namespace is selected');
    assert.equal(ns('shop'), false, 'a namespace without the label is not selected');
    assert.equal(ns('shop', NAMESPACE_INJECTION_DISABLED), false, `${LABEL_NAMESPACE_INJECTION}=${NAMESPACE_INJECTION_DISABLED} is not selected`);
    assert.equal(ns('kube-system', NAMESPACE_INJECTION_ENABLED), false, 'never kube-system, whatever its labels');
    assert.equal(ns(NAMESPACE, NAMESPACE_INJECTION_ENABLED), false, 'never its own namespace, whatever its labels');
    const pod = (labels: Record<string, string>) => selectorMatches(w.objectSelector, labels);
    assert.equal(pod({}), true, 'an unlabelled pod is selected');
    assert.equal(pod({ [LABEL_POD_INJECT]: 'true' }), true);
    assert.equal(pod({ [LABEL_POD_INJECT]: 'false' }), false, `${LABEL_POD_INJECT}: "false" opts a pod out`);

    // Its own namespace is also labelled out and runs under "restricted".
    const own = one<V1Namespace>(objs, 'Namespace', NAMESPACE);
    assert.equal(own.metadata!.labels![LABEL_NAMESPACE_INJECTION], NAMESPACE_INJECTION_DISABLED);
    assert.equal(own.metadata!.labels!['pod-security.kubernetes.io/enforce'], 'restricted');
  });

  test(`${o.name}: the webhook Deployment: 2 replicas, PDB, anti-affinity, probes over HTTPS, resources`, (t) => {
    const objs = render(o.dir);
    if (typeof objs === 'string') return t.skip(objs);
    const { dep, c, pod } = webhookContainer(objs);
    assert.equal(dep.spec!.replicas, 2);
    assert.equal(dep.spec!.strategy?.rollingUpdate?.maxUnavailable, 0, 'a rollout never lowers the number of ready replicas');
    const podLabels = dep.spec!.template.metadata!.labels!;
    assert.ok(selectorMatches(dep.spec!.selector, podLabels), 'the Deployment selects its own pods');
    assert.equal(pod.serviceAccountName, SERVICE_ACCOUNT);
    one<Obj>(objs, 'ServiceAccount', SERVICE_ACCOUNT);

    const pdb = one<V1PodDisruptionBudget>(objs, 'PodDisruptionBudget');
    assert.ok(selectorMatches(pdb.spec!.selector, podLabels), 'the PDB covers the webhook pods');
    assert.equal(pdb.spec!.minAvailable, 1, 'one replica may be drained at a time, one always answers');

    const anti = pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    assert.ok(
      anti.some((x) => x.podAffinityTerm.topologyKey === 'kubernetes.io/hostname' && selectorMatches(x.podAffinityTerm.labelSelector, podLabels)),
      'replicas prefer different nodes (preferred: a one-node kind cluster must still run both)',
    );

    const https = c.ports!.find((p) => p.name === 'https');
    assert.equal(https?.containerPort, WEBHOOK_PORT);
    for (const [probe, path] of [
      [c.livenessProbe, '/healthz'],
      [c.readinessProbe, '/readyz'],
    ] as const) {
      assert.ok(probe?.httpGet, `${path} probe is an httpGet`);
      assert.equal(probe.httpGet.path, path);
      assert.equal(probe.httpGet.scheme, 'HTTPS');
      assert.ok(probe.httpGet.port === 'https' || probe.httpGet.port === WEBHOOK_PORT, `${path} probe on port ${WEBHOOK_PORT}`);
    }
    assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory, 'CPU and memory requests');
    assert.ok(c.resources?.limits?.memory, 'a memory limit');
    const args = c.args ?? [];
    assert.equal(args[0], 'webhook');
    assert.equal(c.command, undefined, 'the image ENTRYPOINT (hook-runner) is used');
    assert.equal(argValue(args, '--listen'), `0.0.0.0:${WEBHOOK_PORT}`, 'listens on all interfaces: the kubelet and the API server call the pod IP');
  });

  test(`${o.name}: the webhook pods meet Pod Security "restricted"`, (t) => {
    const objs = render(o.dir);
    if (typeof objs === 'string') return t.skip(objs);
    const { c, pod } = webhookContainer(objs);
    assert.deepEqual(restrictedViolations(pod), []);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault');
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext?.capabilities, { drop: ['ALL'] });
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
  });

  test(`${o.name}: the ConfigMap's config parses with parseConfig and names the webhook's own image`, (t) => {
    const objs = render(o.dir);
    if (typeof objs === 'string') return t.skip(objs);
    const { c, pod } = webhookContainer(objs);
    const configPath = argValue(c.args ?? [], '--config');
    assert.ok(configPath, '--config is passed');
    const mount = (c.volumeMounts ?? []).find((m) => configPath.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `${configPath} is on a mounted volume`);
    const cmName = pod.volumes!.find((v) => v.name === mount.name)?.configMap?.name;
    assert.ok(cmName, `volume ${mount.name} is a ConfigMap`);
    const cm = one<V1ConfigMap>(objs, 'ConfigMap', cmName);
    const key = configPath.slice(mount.mountPath.length + 1);
    const text = cm.data?.[key];
    assert.ok(text, `ConfigMap ${cmName} has the key ${key}`);
    const cfg = parseConfig(text, PKG.version, `${o.dir} ConfigMap ${cmName}`);
    assert.equal(cfg.sidecar.image, c.image, 'one image serves the webhook and the sidecar');
    assert.equal(cfg.sidecar.imagePullPolicy, c.imagePullPolicy);
    if (o.name === 'kind') {
      assert.equal(c.image, 'hook-runner:e2e');
      assert.equal(c.imagePullPolicy, 'IfNotPresent');
    } else {
      assert.equal(c.image, `${IMAGE_REPOSITORY}:${PKG.version}`, 'the manifests install the image of this version');
    }
    assert.equal(cfg.sidecar.mode, 'auto');
  });

  test(`${o.name}: RBAC is exactly what the webhook's features need, nothing cluster-wide it could abuse`, (t) => {
    const objs = render(o.dir);
    if (typeof objs === 'string') return t.skip(objs);
    const selfSigned = o.name !== 'cert-manager';
    const expected = [
      'cluster core/namespaces list',
      'cluster core/namespaces watch',
      'cluster rbac.authorization.k8s.io/rolebindings create',
      `cluster rbac.authorization.k8s.io/rolebindings get [${SIDECAR_ROLE_BINDING}]`,
      `cluster rbac.authorization.k8s.io/rolebindings delete [${SIDECAR_ROLE_BINDING}]`,
      `cluster rbac.authorization.k8s.io/clusterroles bind [${SIDECAR_CLUSTER_ROLE}]`,
      ...(selfSigned
        ? [
            `cluster admissionregistration.k8s.io/mutatingwebhookconfigurations get [${WEBHOOK_CONFIG}]`,
            `cluster admissionregistration.k8s.io/mutatingwebhookconfigurations patch [${WEBHOOK_CONFIG}]`,
            `ns:${NAMESPACE} core/secrets create`,
            `ns:${NAMESPACE} core/secrets get [${SELF_SIGNED_SECRET}]`,
            `ns:${NAMESPACE} core/secrets update [${SELF_SIGNED_SECRET}]`,
          ]
        : []),
    ].sort();
    assert.deepEqual(permissionsOf(objs, NAMESPACE, SERVICE_ACCOUNT), expected);
    const { c } = webhookContainer(objs);
    assert.equal((c.args ?? []).includes('--self-signed'), selfSigned, selfSigned ? 'self-signed TLS' : 'TLS from files');

    // The ClusterRole it binds for sidecars: Events only. No `pods get`: bound to every service account of
    // an opted-in namespace, it would let every pod read every neighbour's spec and hook token (issue 11.2).
    const sidecar = one<V1ClusterRole>(objs, 'ClusterRole', SIDECAR_CLUSTER_ROLE);
    assert.deepEqual(rulesAsStrings(sidecar.rules ?? []), ['core/events create', 'core/events patch']);

    for (const r of objs.filter((x) => x.kind === 'Role' || x.kind === 'ClusterRole') as (Obj & { rules?: V1PolicyRule[] })[]) {
      for (const rule of r.rules ?? []) {
        for (const field of [rule.verbs, rule.resources ?? [], rule.apiGroups ?? []]) assert.ok(!field.includes('*'), `${r.kind} ${r.metadata.name}: no wildcards`);
        assert.equal(rule.nonResourceURLs, undefined, `${r.kind} ${r.metadata.name}: no non-resource URLs`);
        if ((rule.resources ?? []).includes('secrets')) assert.equal(r.kind, 'Role', 'Secrets only in its own namespace, never cluster-wide');
      }
    }
    // No binding in these manifests gives anyone the sidecar role: the webhook binds it per opted-in namespace.
    for (const b of objs.filter((x) => x.kind === 'RoleBinding' || x.kind === 'ClusterRoleBinding') as unknown as V1RoleBinding[])
      assert.notEqual(b.roleRef.name, SIDECAR_CLUSTER_ROLE, `${b.metadata!.name} binds ${SIDECAR_CLUSTER_ROLE} statically`);
  });
}

test('cert-manager: serving certificate for the Service, CA injected from it, files served by the webhook', (t) => {
  const objs = overlay('cert-manager');
  if (typeof objs === 'string') return t.skip(objs);
  const mwc = one<V1MutatingWebhookConfiguration>(objs, 'MutatingWebhookConfiguration');
  const from = mwc.metadata!.annotations?.['cert-manager.io/inject-ca-from'];
  assert.ok(from, 'cert-manager.io/inject-ca-from is set');
  const [certNs, certName] = from.split('/');
  assert.equal(certNs, NAMESPACE);
  type Cert = Obj & { spec: { secretName: string; dnsNames?: string[]; isCA?: boolean; issuerRef: { name: string; kind?: string } } };
  const cert = one<Cert>(objs, 'Certificate', certName);
  const svc = mwc.webhooks![0]!.clientConfig.service!;
  assert.ok(cert.spec.dnsNames?.includes(`${svc.name}.${svc.namespace}.svc`), 'the certificate names the Service as the API server calls it');
  // The issuer chain resolves within the overlay: serving cert <- CA issuer <- CA cert <- self-signed issuer.
  type Issuer = Obj & { spec: { ca?: { secretName: string }; selfSigned?: object } };
  const issuer = one<Issuer>(objs, 'Issuer', cert.spec.issuerRef.name);
  assert.ok(issuer.spec.ca, 'the serving certificate is signed by a CA issuer, so renewing it never changes caBundle');
  const ca = objs.find((x) => x.kind === 'Certificate' && (x as Cert).spec.secretName === issuer.spec.ca!.secretName) as Cert | undefined;
  assert.ok(ca?.spec.isCA, "the CA issuer's secret comes from an isCA Certificate");
  assert.ok(one<Issuer>(objs, 'Issuer', ca.spec.issuerRef.name).spec.selfSigned);

  const { c, pod } = webhookContainer(objs);
  const args = c.args ?? [];
  for (const [flag, file] of [
    ['--tls-cert-file', 'tls.crt'],
    ['--tls-key-file', 'tls.key'],
  ] as const) {
    const path = argValue(args, flag);
    assert.ok(path, `${flag} is passed`);
    const mount = (c.volumeMounts ?? []).find((m) => path === `${m.mountPath}/${file}`);
    assert.ok(mount, `${flag} ${path} is ${file} of a mounted volume`);
    assert.equal(pod.volumes!.find((v) => v.name === mount.name)?.secret?.secretName, cert.spec.secretName, `${flag} comes from the Certificate's Secret`);
  }
  // Nested mount points inside a read-only ConfigMap volume cannot be created by the runtime.
  const mounts = (c.volumeMounts ?? []).map((m) => m.mountPath);
  for (const m of mounts) for (const other of mounts) if (m !== other) assert.ok(!other.startsWith(`${m}/`), `${other} is mounted inside ${m}`);
});

test('kind: the e2e image is used for the webhook and the sidecar, never pulled', (t) => {
  const objs = overlay('kind');
  if (typeof objs === 'string') return t.skip(objs);
  const { c } = webhookContainer(objs);
  assert.equal(c.image, 'hook-runner:e2e');
  assert.equal(c.imagePullPolicy, 'IfNotPresent');
  // The rest of the kind config equals the base config (only the image differs).
  const base = overlay('base');
  if (typeof base === 'string') return t.skip(base);
  const cfg = (objs2: Obj[]) => parseConfig(Object.values(one<V1ConfigMap>(objs2, 'ConfigMap').data ?? {})[0] ?? '', PKG.version);
  const kindCfg = cfg(objs);
  const baseCfg = cfg(base);
  assert.deepEqual({ ...kindCfg, sidecar: { ...kindCfg.sidecar, image: '' } }, { ...baseCfg, sidecar: { ...baseCfg.sidecar, image: '' } });
});

test('names: the manifests spell the labels of common/names.ts and no other hook-runner.dev key', () => {
  // adopt-native: the per-pod adoption opt-in (a fixed name; see test/match-conditions.test.ts).
  const known = [LABEL_NAMESPACE_INJECTION, LABEL_POD_INJECT, ANNOTATION_HOOKS, ANNOTATION_STATUS, 'hook-runner.dev/adopt-native'];
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', 'manifests'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
  assert.ok(files.length > 0);
  for (const f of files) {
    const text = readFileSync(join(ROOT, f), 'utf8');
    for (const m of text.matchAll(/hook-runner\.dev\/[\w.-]+/g)) assert.ok(known.includes(m[0]), `${f}: ${m[0]} is not a name from common/names.ts`);
  }
  // The webhook never injects into itself: its container is not named like the sidecar.
  const objs = overlay('base');
  if (typeof objs !== 'string') assert.notEqual(webhookContainer(objs).c.name, SIDECAR_CONTAINER_NAME);
});

// =============================================================================================
// npm run e2e: a separate suite that skips, loudly, where it cannot run
// =============================================================================================
test('npm run e2e is its own script, not part of npm test', () => {
  const { e2e = '', test: unit = '' } = PKG.scripts;
  assert.match(e2e, /scripts\/e2e-kind\.sh/, 'package.json has an e2e script running scripts/e2e-kind.sh');
  assert.doesNotMatch(unit, /e2e/, 'npm test does not run the e2e suite');
  assert.match(unit, /test\/\*\.test\.ts/, 'npm test globs test/*.test.ts only, so test/e2e/kind/ stays out');
});

test('npm run e2e without docker, kind or kubectl: prints what is missing and exits 0 as SKIPPED, never passed', () => {
  // A PATH holding only node: every tool the suite needs is missing.
  const bin = mkdtempSync(join(tmpdir(), 'hr-e2e-path-'));
  try {
    symlinkSync(process.execPath, join(bin, 'node'));
    const env = { HOME: tmpdir(), PATH: bin };
    const run = (extra: Record<string, string>) => spawnSync('/bin/bash', [join(ROOT, 'scripts/e2e-kind.sh')], { env: { ...env, ...extra }, encoding: 'utf8', timeout: 30_000 });
    const kindPath = run({});
    assert.equal(kindPath.status, 0, kindPath.stderr);
    assert.match(kindPath.stdout, /^e2e: SKIPPED \(.*\)$/m);
    for (const tool of ['docker', 'kind', 'kubectl']) assert.match(kindPath.stdout, new RegExp(`\\b${tool}\\b`), `names the missing ${tool}`);
    assert.doesNotMatch(kindPath.stdout + kindPath.stderr, /pass/i);

    const anyCluster = run({ E2E_IMAGE: 'registry.example/hook-runner:test' });
    assert.equal(anyCluster.status, 0, anyCluster.stderr);
    assert.match(anyCluster.stdout, /^e2e: SKIPPED \(.*kubectl.*\)$/m);
    assert.doesNotMatch(anyCluster.stdout, /\bkind\b|docker/, 'with E2E_IMAGE the kind path and its tools are not needed');

    const required = run({ E2E_REQUIRE: '1' });
    assert.equal(required.status, 1, 'E2E_REQUIRE=1 turns a skip into a failure (for CI that must run it)');
    assert.match(required.stdout + required.stderr, /e2e: FAILED/);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});

test('the cluster e2e suite (which cannot run here) still type-checks against names.ts and client-node', (t) => {
  const tsc = join(ROOT, 'node_modules', '.bin', 'tsc');
  if (!existsSync(tsc)) return t.skip(`needs the TypeScript compiler at ${tsc} (npm ci)`);
  const dir = mkdtempSync(join(tmpdir(), 'hr-e2e-tsc-'));
  try {
    const cfg = join(dir, 'tsconfig.json');
    // Same strict options as the product code, over test/e2e/kind only.
    writeFileSync(
      cfg,
      JSON.stringify({
        extends: join(ROOT, 'tsconfig.json'),
        compilerOptions: { noEmit: true, rootDir: ROOT, typeRoots: [join(ROOT, 'node_modules', '@types')] },
        include: [join(ROOT, 'test', 'e2e', 'kind', '*.ts')],
      }),
    );
    const r = spawnSync(tsc, ['-p', cfg], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, `tsc on test/e2e/kind failed:\n${r.stdout}${r.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
