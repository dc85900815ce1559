/**
 * The user-facing docs cannot drift from the code: docs/troubleshooting.md names every skip and
 * denial reason, every HTTP rejection reason, every `unsupported-pod` case and every failure
 * message of the sidecar (read from the source, so a new message fails here until it is
 * documented); docs/annotations.md lists every label and annotation of common/names.ts; CHANGELOG.md
 * and docs/upgrading.md cover the package version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as names from '../common/names.js';

const ROOT = join(import.meta.dirname, '..');
const read = (...p: string[]) => readFileSync(join(ROOT, ...p), 'utf8');
const doc = read('docs', 'troubleshooting.md');
/** The doc with whitespace collapsed, so a message may wrap across lines. */
const flat = doc.replace(/\s+/g, ' ');

/** String literals of a TypeScript union type alias: `type X = 'a' | 'b'`. */
function unionLiterals(src: string, typeName: string): string[] {
  const m = new RegExp(`type ${typeName} =([^;]+);`).exec(src);
  assert.ok(m, `type ${typeName} not found`);
  return [...m[1]!.matchAll(/'([^']+)'/g)].map((x) => x[1]!);
}

test('every skip and denial reason of the webhook is explained', () => {
  const mutate = read('webhook', 'core', 'mutate.ts');
  const admission = read('webhook', 'core', 'admission.ts');
  const skips = unionLiterals(mutate, 'SkipReason');
  const notPod = /function isPodCreate\([^)]*\): ([^{]+)\{/.exec(admission);
  assert.ok(notPod, 'isPodCreate in webhook/core/admission.ts');
  const requestSkips = [...notPod[1]!.matchAll(/'([^']+)'/g)].map((x) => x[1]!).filter((r) => r !== 'pod');
  const denial = /e instanceof HookSpecError \? '([a-z-]+)' : '([a-z-]+)'/.exec(admission);
  assert.ok(denial, 'the denial reasons in webhook/core/admission.ts');
  const all = [...skips, ...requestSkips, denial[1]!, denial[2]!];
  assert.ok(all.length >= 7, `found ${all.join(', ')}`);
  for (const r of ['no-hooks', 'opted-out', 'already-injected', 'not-a-pod', 'not-create']) assert.ok(all.includes(r), `the code still has ${r}`);
  // Each is a row of a table: | `reason` | ...
  const missing = all.filter((r) => !new RegExp(`^\\| \`${r}\` \\|`, 'm').test(doc));
  assert.deepEqual(missing, [], 'docs/troubleshooting.md explains each reason in a table row');
});

test('every HTTP rejection reason of the webhook is named', () => {
  const reasons = unionLiterals(read('webhook', 'metrics.ts'), 'RejectReason');
  assert.deepEqual(
    reasons.filter((r) => !flat.includes(`\`${r}\``)),
    [],
  );
});

/** A regular expression for the messages a template literal (or plain string) of the code produces. */
function messagePattern(literal: string): RegExp {
  const publicNames = names as unknown as Record<string, unknown>;
  let re = '';
  let i = 0;
  while (i < literal.length) {
    if (literal.startsWith('${', i)) {
      // A placeholder: skip to its balanced closing brace (it may hold nested templates).
      let depth = 0;
      let j = i + 1;
      for (; j < literal.length; j++) {
        if (literal[j] === '{') depth++;
        else if (literal[j] === '}' && --depth === 0) break;
      }
      const expr = literal.slice(i + 2, j).trim();
      const constant = publicNames[expr];
      // A public name is spelt out; anything else is a value the doc shows as <...> (or leaves out).
      re += typeof constant === 'string' ? escapeRe(constant) : '[^`|]*?';
      i = j + 1;
    } else {
      re += escapeRe(literal[i]!).replace(/^\s$/, ' ');
      i++;
    }
  }
  return new RegExp(re.replace(/( )+/g, ' '));
}
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The literal (plain or template, placeholders kept) that starts at `at` in `src`. */
function literalAt(src: string, at: number): string {
  const q = src[at]!;
  let i = at + 1;
  let depth = 0;
  for (; i < src.length; i++) {
    const ch = src[i]!;
    if (ch === '\\') {
      i++;
      continue;
    }
    if (q === '`' && ch === '$' && src[i + 1] === '{') depth++;
    else if (q === '`' && depth > 0 && ch === '}') depth--;
    else if (ch === q && depth === 0) break;
  }
  return src.slice(at + 1, i);
}

test('every failure message of the sidecar (hook errors, reasons, refused calls) is in the table', () => {
  const found: { file: string; literal: string }[] = [];
  for (const file of readdirSync(join(ROOT, 'sidecar')).filter((f) => f.endsWith('.ts'))) {
    const src = read('sidecar', file);
    // `error: '...'`, `error: \`...\``, `reason: \`...\``, `failed = \`...\``, and `report.reason = \`...\``.
    for (const m of src.matchAll(/\b(error|reason|failed)\s*[:=]\s*(['`])/g)) {
      const literal = literalAt(src, m.index + m[0].length - 1);
      if (m[1] === 'reason' && /^[A-Z]\w+$/.test(literal)) continue; // an Event reason, checked below
      found.push({ file, literal });
    }
  }
  assert.ok(found.length >= 15, `expected the sidecar's messages, found ${found.length}`);
  const missing = found.filter(({ literal }) => !messagePattern(literal).test(flat)).map(({ file, literal }) => `sidecar/${file}: ${literal}`);
  assert.deepEqual(missing, [], 'docs/troubleshooting.md must show each message (values as <...>) and what to do');
  for (const r of ['HookSucceeded', 'FailedPostStartHook', 'FailedPreStopHook']) assert.ok(read('sidecar', 'service.ts').includes(`'${r}'`) && flat.includes(`\`${r}\``), r);
});

test('every unsupported-pod case of the webhook is in the table', () => {
  const src = read('webhook', 'core', 'mutate.ts');
  const paths = [...src.matchAll(/new MutationError\(\s*(['`])/g)].map((m) => literalAt(src, m.index + m[0].length - 1));
  assert.ok(paths.length >= 4, `MutationError calls in webhook/core/mutate.ts: ${paths.length}`);
  const missing = paths.filter((p) => !messagePattern(p).test(flat));
  assert.deepEqual(missing, []);
});

test('the messages check bites: a message the doc lacks is reported', () => {
  assert.equal(messagePattern('cannot open ${path}: ${e.message}').test(flat), false);
  assert.equal(messagePattern('pid ${target.pid} still running after ${a.name}').test(flat), true);
  assert.equal(messagePattern('missing or wrong ${HEADER_TOKEN} header').test(flat), true);
  assert.equal(messagePattern('missing or wrong ${HEADER_TOKEN} headers').test(flat), false);
});

// ---------------------------------------------------------------------------------------------
// Annotation and label reference
// ---------------------------------------------------------------------------------------------
test('docs/annotations.md lists every label and annotation of common/names.ts, and no other', () => {
  const ref = read('docs', 'annotations.md');
  const keys = Object.entries(names)
    .filter(([k, v]) => /^(LABEL|ANNOTATION)_/.test(k) && typeof v === 'string')
    .map(([, v]) => v as string);
  assert.ok(keys.length >= 4, `names.ts has ${keys.length} labels and annotations`);
  const rows = [...ref.matchAll(/^\| `(hook-runner\.dev\/[\w.-]+)` \|/gm)].map((m) => m[1]!);
  assert.deepEqual(
    keys.filter((k) => !rows.includes(k)),
    [],
    'each name of common/names.ts has a row',
  );
  // The per-pod adoption opt-in is a fixed name (issue 14) whose constant comes with the adoption
  // work; any other row must be a name of the code.
  const known = new Set([...keys, 'hook-runner.dev/adopt-native']);
  assert.deepEqual(
    rows.filter((r) => !known.has(r)),
    [],
    'each row is a name of the code',
  );
  for (const v of [names.NAMESPACE_INJECTION_ENABLED, names.NAMESPACE_INJECTION_DISABLED]) assert.ok(ref.includes(`\`${v}\``), `value ${v}`);
});

// ---------------------------------------------------------------------------------------------
// CHANGELOG and upgrade notes
// ---------------------------------------------------------------------------------------------
test('CHANGELOG.md: Keep a Changelog, an Unreleased section, and the current version', () => {
  const pkg = JSON.parse(read('package.json')) as { version: string };
  const log = read('CHANGELOG.md');
  assert.match(log, /keepachangelog\.com/);
  assert.match(log, /^## \[Unreleased\]$/m);
  assert.match(log, new RegExp(`^## \\[${pkg.version.replaceAll('.', '\\.')}\\]`, 'm'), `a section for ${pkg.version}`);
  const unreleased = log.slice(log.indexOf('## [Unreleased]'), log.indexOf(`## [${pkg.version}]`));
  for (const h of unreleased.match(/^### .+$/gm) ?? []) assert.match(h, /^### (Added|Changed|Deprecated|Removed|Fixed|Security)$/, `Keep a Changelog headings only: ${h}`);
  for (const topic of ['matchConditions', 'Node.js 24', 'Prometheus', 'Go', 'hookCallers', 'no-hooks', 'version -o json']) assert.ok(unreleased.includes(topic), `Unreleased mentions ${topic}`);
});

test('docs/upgrading.md: notes from the current version to the next, breaking changes first', () => {
  const pkg = JSON.parse(read('package.json')) as { version: string };
  const up = read('docs', 'upgrading.md');
  const [major, minor] = pkg.version.split('.').map(Number) as [number, number];
  assert.match(up, new RegExp(`^## ${major}\\.${minor} → ${major}\\.${minor + 1}`, 'm'), `a section ${major}.${minor} → ${major}.${minor + 1}`);
  for (const topic of ['adopt-native', 'adoptNativeHooks', 'hookCallers', 'pods', 'matchConditions', 'Node.js 24']) assert.ok(up.includes(topic), `upgrading.md mentions ${topic}`);
});
