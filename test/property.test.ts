/**
 * Issue 7 item 1: properties of the parser and the mutation over generated pods and annotations
 * (fast-check, bounded runs). The parser throws nothing but a located HookSpecError; the patch turns
 * the input into the mutated pod; mutate∘mutate = mutate; every mutated pod passes the strict Pod
 * schema check; exec commands are argv arrays passed through unchanged and never reach a shell.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify as toYaml } from 'yaml';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_HOOKS, ENV_SPEC, SIDECAR_CONTAINER_NAME } from '../common/names.js';
import { HookSpecError, formatProblems, normaliseHooks, parseSpecJson, type ParseContext } from '../common/spec.js';
import { defaultConfig } from '../webhook/core/config.js';
import { parseHooksText } from '../webhook/core/hooks-text.js';
import { MutationError, mutatePod } from '../webhook/core/mutate.js';
import { reviewAdmission } from '../webhook/core/admission.js';
import { applyPatch } from '../webhook/core/patch.js';
import { findExecTools, planExec, runExec } from '../sidecar/handlers.js';
import { validateKubernetesObject } from './support/k8s-schema.js';

const ROOT = join(import.meta.dirname, '..');
const config = defaultConfig('0.0.0-prop');
const TOKEN = 'a'.repeat(32);
const RUNS = Number(process.env.PROPERTY_RUNS ?? 150);

/** `hook-runner.dev/hooks: <path>: <detail>`, or `hook-runner.dev/hooks: <detail>` at the top. */
function assertLocated(e: unknown, source = ANNOTATION_HOOKS): void {
  if (e instanceof MutationError) {
    assert.equal(e.message, `${e.location}: ${e.detail}`);
    return;
  }
  assert.ok(e instanceof HookSpecError, `expected a HookSpecError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  // Every problem is listed; location and detail are the first one's.
  assert.ok(e.errors.length > 0);
  assert.deepEqual(e.errors[0], { path: e.location, message: e.detail });
  assert.equal(e.message, formatProblems(e.source, e.errors, e.complete));
  if (e.errors.length === 1) assert.equal(e.message, `${e.source}: ${e.location ? `${e.location}: ` : ''}${e.detail}`);
  assert.ok(e.source === source || e.source.startsWith('spec.containers['), `source ${e.source}`);
  assert.ok(e.errors.every((p) => p.message.length > 0));
}

// ------------------------------------------------------------------------------------------------
// Generators

/** Container names: valid DNS labels, plus names that are also Object.prototype keys or unicode. */
const containerName = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9-]{0,8}[a-z0-9]$/), fc.constantFrom('app', 'web', 'constructor', 'tostring', 'valueof', 'hasownproperty', 'äpp', '__proto__'));

const argvString = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('$(id)', '`reboot`', '; rm -rf /', '&&', '|', '>', '"', "'", '\n', '*', '~', '${PATH}', 'a b'));
const command = fc.tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.array(argvString, { maxLength: 5 })).map(([a, rest]) => [a, ...rest]);
const port = fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constant('http'));
const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,10}$/);
const headers = fc.array(fc.record({ name: headerName, value: fc.string({ maxLength: 10 }).filter((v) => !/[\r\n]/.test(v)) }), { maxLength: 2 });

const action = fc.oneof(
  command.map((c) => ({ exec: { command: c } })),
  fc.record({ path: fc.constantFrom('/', '/warmup', '/a/b?c=d'), port, scheme: fc.constantFrom('HTTP', 'HTTPS'), httpHeaders: headers }, { requiredKeys: ['port'] }).map((a) => ({ httpGet: a })),
  fc.record({ method: fc.constantFrom('GET', 'post', 'PUT'), path: fc.constant('/drain'), port, body: fc.string({ maxLength: 20 }) }, { requiredKeys: ['port'] }).map((a) => ({ http: a })),
  fc.double({ min: 0, max: 100, noNaN: true }).map((seconds) => ({ sleep: { seconds } })),
  fc.record({ name: fc.constantFrom('SIGTERM', 'QUIT', 'usr1', 'SIGINT'), waitForExit: fc.boolean() }, { requiredKeys: ['name'] }).map((a) => ({ signal: a })),
  fc.record({ port }).map((a) => ({ tcpSocket: a })),
);
const item = fc
  .tuple(
    action,
    fc.record(
      { timeoutSeconds: fc.integer({ min: 1, max: 120 }), retries: fc.integer({ min: 0, max: 3 }), retryDelaySeconds: fc.double({ min: 0, max: 5, noNaN: true }), continueOnError: fc.boolean() },
      { requiredKeys: [] },
    ),
  )
  .map(([a, common]) => ({ ...a, ...common }));
const containerHooks = fc.record({ shutdownSeconds: fc.integer({ min: 0, max: 30 }), postStart: fc.array(item, { maxLength: 3 }), preStop: fc.array(item, { maxLength: 3 }) }, { requiredKeys: [] });

/** A pod and a valid annotation for a subset of its containers, as YAML or JSON text. */
const podWithHooks = fc
  .uniqueArray(containerName, { minLength: 1, maxLength: 3 })
  .chain((names) =>
    fc.record({
      names: fc.constant(names),
      hooked: fc.subarray(names, { minLength: 1 }),
      hooks: fc.array(containerHooks, { minLength: names.length, maxLength: names.length }),
      json: fc.boolean(),
      grace: fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }),
      init: fc.boolean(),
      nativePreStop: fc.boolean(),
      usedPort: fc.boolean(),
      mode: fc.constantFrom('native' as const, 'container' as const),
    }),
  )
  .map(({ names, hooked, hooks, json, grace, init, nativePreStop, usedPort, mode }) => {
    const annotation: Record<string, unknown> = {};
    hooked.forEach((n, i) => Object.defineProperty(annotation, n, { value: hooks[i], enumerable: true }));
    const text = json ? JSON.stringify(annotation) : toYaml(annotation);
    const containers: V1Container[] = names.map((name, i) => ({
      name,
      image: `registry.example/${i}:1`,
      ports: [{ name: 'http', containerPort: 8080 + i }, ...(usedPort && i === 0 ? [{ containerPort: 15901 }] : [])],
      ...(nativePreStop && i === 0 ? { lifecycle: { preStop: { exec: { command: ['/bin/drain', '--now'] } } } } : {}),
    }));
    const pod: V1Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'team', labels: { app: 'x' }, annotations: { [ANNOTATION_HOOKS]: text } },
      spec: { containers, ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}), ...(init ? { initContainers: [{ name: 'setup', image: 'busybox:1' }] } : {}) },
    };
    return { pod, annotation, mode };
  });

/** Text that is mostly not a valid annotation: random strings, random JSON/YAML, mangled valid ones. */
const junkText = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  fc.json({ maxDepth: 6 }),
  fc.anything({ maxDepth: 5, withNullPrototype: false }).map((v) => {
    try {
      return String(toYaml(v));
    } catch {
      return String(v);
    }
  }),
  fc.tuple(podWithHooks, fc.nat(), fc.string({ maxLength: 5 })).map(([p, at, junk]) => {
    const t = p.pod.metadata!.annotations![ANNOTATION_HOOKS]!;
    const i = at % (t.length + 1);
    return t.slice(0, i) + junk + t.slice(i + 1);
  }),
  fc.tuple(fc.constantFrom('[', '{', '- ', '  ', 'a: ', '&a x', '*a'), fc.integer({ min: 1, max: 3000 })).map(([s, n]) => s.repeat(n)),
);

// ------------------------------------------------------------------------------------------------

test('the parser throws nothing but a located HookSpecError, whatever the text', () => {
  const containers: V1Container[] = [
    { name: 'app', image: 'x', ports: [{ name: 'http', containerPort: 8080 }] },
    { name: 'constructor', image: 'y' },
  ];
  const ctx: ParseContext = { containers, defaults: config.defaults };
  fc.assert(
    fc.property(junkText, (text) => {
      try {
        normaliseHooks(parseHooksText(text), ctx);
      } catch (e) {
        assertLocated(e);
      }
    }),
    { numRuns: RUNS * 4 },
  );
});

test('the sidecar parser of HOOK_RUNNER_SPEC throws nothing but a located error naming the variable', () => {
  fc.assert(
    fc.property(fc.oneof(fc.json({ maxDepth: 6 }), fc.string({ maxLength: 100 })), (text) => {
      try {
        parseSpecJson(text);
      } catch (e) {
        assertLocated(e, 'HOOK_RUNNER_SPEC');
      }
    }),
    { numRuns: RUNS * 2 },
  );
});

test('mutation of a pod with any annotation: injected, skipped or a located denial; never another error', () => {
  fc.assert(
    fc.property(podWithHooks, junkText, fc.boolean(), ({ pod, mode }, junk, useJunk) => {
      if (useJunk) pod.metadata!.annotations![ANNOTATION_HOOKS] = junk;
      try {
        mutatePod(pod, { config, mode, newToken: () => TOKEN });
      } catch (e) {
        assertLocated(e);
      }
    }),
    { numRuns: RUNS },
  );
});

test('generated valid pods: the patch gives the mutated pod, mutate∘mutate = mutate, the Pod schema holds, exec argv passes through', () => {
  fc.assert(
    fc.property(podWithHooks, ({ pod, annotation, mode }) => {
      const input = structuredClone(pod);
      const r = mutatePod(pod, { config, mode, newToken: () => TOKEN });
      assert.deepEqual(pod, input, 'the input is not modified');
      const declared = Object.values(annotation).some((h) => ((h as { postStart?: unknown[] }).postStart?.length ?? 0) + ((h as { preStop?: unknown[] }).preStop?.length ?? 0) > 0);
      if (!declared && !pod.spec!.containers[0]!.lifecycle) {
        assert.ok(!r.injected && r.reason === 'no-hooks');
        return;
      }
      assert.ok(r.injected, 'a pod with valid hooks is injected');

      // The AdmissionReview's patch applied to the input is the mutated pod.
      const review = {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: { uid: 'u', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: 'team', object: pod },
      };
      const res = (reviewAdmission(review, { config, mode, newToken: () => TOKEN }).review as { response: { allowed: boolean; patch: string } }).response;
      assert.equal(res.allowed, true);
      const patched = applyPatch(pod, JSON.parse(Buffer.from(res.patch, 'base64').toString()));
      assert.deepEqual(patched, r.pod);

      // Idempotent: the mutated pod is left alone, with no patch.
      const again = mutatePod(r.pod, { config, mode, newToken: () => 'b'.repeat(32) });
      assert.ok(!again.injected && again.reason === 'already-injected');
      assert.equal(again.pod, r.pod);
      const res2 = (reviewAdmission({ ...review, request: { ...review.request, object: r.pod } }, { config, mode }).review as { response: { patch?: string } }).response;
      assert.equal(res2.patch, undefined);

      // Strict schema: every field known, every type right, required fields present.
      assert.deepEqual(validateKubernetesObject(r.pod), []);
      const sidecars = [...(r.pod.spec!.initContainers ?? []), ...r.pod.spec!.containers].filter((c) => c.name === SIDECAR_CONTAINER_NAME);
      assert.equal(sidecars.length, 1);

      // exec commands reach the sidecar as the same argv, element for element.
      const spec = parseSpecJson(sidecars[0]!.env!.find((e) => e.name === ENV_SPEC)!.value!);
      for (const name of Object.keys(annotation)) {
        const declared = annotation[name] as { postStart?: Array<Record<string, any>>; preStop?: Array<Record<string, any>> };
        for (const phase of ['postStart', 'preStop'] as const) {
          const got = Object.hasOwn(spec, name) ? spec[name]![phase] : [];
          const native = phase === 'preStop' && pod.spec!.containers[0]!.name === name && pod.spec!.containers[0]!.lifecycle ? 1 : 0;
          (declared[phase] ?? []).forEach((d, i) => {
            if (!d.exec) return;
            const h = got[i + native];
            assert.equal(h?.kind, 'exec');
            if (h?.kind === 'exec') assert.deepEqual(h.action.command, d.exec.command);
          });
        }
      }
    }),
    { numRuns: RUNS },
  );
});

test('exec argv never reaches a shell: planExec ends in exactly the argv after "--", behind the hook-exec helper', () => {
  const tools = { helper: '/app/dist/sidecar/hook-exec' };
  fc.assert(
    fc.property(command, fc.constantFrom(0, 1000), fc.boolean(), (cmd, uid, setpcap) => {
      const caps = setpcap ? 1n << 8n : 0n;
      const plan = planExec(cmd, { uid, gid: uid, groups: [], capBnd: 0n }, { capEff: caps, capPrm: caps }, tools);
      assert.equal(plan.file, tools.helper);
      assert.deepEqual(plan.args.slice(-cmd.length - 1), ['--', ...cmd]);
      assert.ok(!plan.args.slice(0, -cmd.length).some((a) => /^(\/bin\/)?(ba)?sh$/.test(a) || a === '-c'), 'no shell in front of the argv');
    }),
    { numRuns: RUNS },
  );
  // The code path: the sidecar spawns without a shell, and nothing in it builds `sh -c` from a string.
  for (const f of readdirSync(join(ROOT, 'sidecar')).filter((n) => n.endsWith('.ts'))) {
    const src = readFileSync(join(ROOT, 'sidecar', f), 'utf8');
    assert.ok(!/shell\s*:\s*true/.test(src), `${f}: spawn with shell: true`);
    assert.ok(!/\b(execSync|exec|execFileSync)\s*\(/.test(src.replace(/runExec|planExec|\.exec\(/g, '')), `${f}: child_process exec`);
    assert.ok(!/['"]-c['"]/.test(src), `${f}: a "-c" argument`);
  }
  const handlers = readFileSync(join(ROOT, 'sidecar', 'handlers.ts'), 'utf8');
  assert.match(
    handlers,
    /spawn\(plan\.file, plan\.args, \{ env: \{\}, stdio: \['ignore', 'pipe', 'pipe', rootFd, cwdFd, 'pipe'\], detached: true \}\)/,
    'the one spawn: file + argv, empty environment, no shell option',
  );
});

test('exec for real: shell metacharacters in argv arrive as literal arguments (root: the helper enters a target)', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root: entering the target root needs CAP_SYS_CHROOT');
  const tools = findExecTools();
  assert.ok(tools, 'dist/sidecar/hook-exec is missing: run npm run build first');
  const target = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.after(() => target.kill('SIGKILL'));
  const stat = readFileSync(`/proc/${target.pid}/stat`, 'utf8');
  const startTime = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const samples = fc.sample(fc.array(argvString, { minLength: 1, maxLength: 6 }), { numRuns: 8, seed: 7 });
  for (const args of [['$(id)', '`id`', '; echo pwned', '&& id', '| cat', '> /tmp/x', '${HOME}', '*'], ...samples]) {
    // printf %s\0 prints each argument verbatim, NUL-terminated: what a shell would have expanded shows.
    const r = await runExec(['/usr/bin/printf', '%s\\0', ...args], { pid: target.pid!, startTime }, new AbortController().signal, {
      procRoot: '/proc',
      tools,
      self: { capEff: 0n, capPrm: 0n },
    });
    assert.equal(r.ok, true, r.error);
    assert.deepEqual(r.output!.split('\0').slice(0, -1), args);
  }
});
