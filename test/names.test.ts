/**
 * Names cannot drift: every public name in common/names.ts appears in the README, and agrees with
 * DESIGN.md §2 when the design contract is beside the repository (../shared/DESIGN.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as names from '../common/names.js';

const ROOT = join(import.meta.dirname, '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const publicNames = Object.entries(names).filter(([k, v]) => /^(LABEL|ANNOTATION|ENV|HEADER|SIDECAR|DEFAULT_SIDECAR|NAMESPACE_INJECTION)_/.test(k) && (typeof v === 'string' || typeof v === 'number'));

test('names.ts exports the public names', () => {
  assert.ok(publicNames.length >= 19, `expected at least 19 public names, found ${publicNames.length}`);
});

test('every public name is documented in the README', () => {
  const missing = publicNames.filter(([, v]) => !readme.includes(String(v))).map(([k, v]) => `${k}=${v}`);
  assert.deepEqual(missing, []);
});

test('every name constant has a doc comment', () => {
  const src = readFileSync(join(ROOT, 'common', 'names.ts'), 'utf8').split('\n');
  const undocumented = src
    .map((line, i) => ({ line, prev: src.slice(Math.max(0, i - 3), i).join('\n') }))
    .filter(({ line }) => /^export const (LABEL|ANNOTATION|HEADER|SIDECAR)_/.test(line))
    .filter(({ prev }) => !prev.includes('*/'))
    .map(({ line }) => line);
  assert.deepEqual(undocumented, []);
});

test('names agree with DESIGN.md §2', (t) => {
  const design = join(ROOT, '..', 'shared', 'DESIGN.md');
  if (!existsSync(design)) {
    t.skip(`design contract not found at ${design}; it sits beside the repository on the project's machines`);
    return;
  }
  const text = readFileSync(design, 'utf8');
  const section = text.slice(text.indexOf('## 2. Names'), text.indexOf('## 3.'));
  const expected = [
    `${names.LABEL_NAMESPACE_INJECTION}=${names.NAMESPACE_INJECTION_ENABLED}`,
    `${names.LABEL_POD_INJECT}: "false"`,
    names.ANNOTATION_HOOKS,
    names.ANNOTATION_STATUS,
    `\`${names.SIDECAR_CONTAINER_NAME}\``,
    `\`${names.DEFAULT_SIDECAR_PORT}\``,
    names.HEADER_TOKEN,
    `${names.ENV_MARKER}=<container name>`,
    names.hookPath('{container}' as string, 'postStart').replace('postStart', '{postStart|preStop}'),
  ];
  for (const e of expected) assert.ok(section.includes(e), `DESIGN.md §2 should contain ${e}`);
  const envSection = text.slice(text.indexOf('## 5.'), text.indexOf('## 6.'));
  for (const v of [names.ENV_SPEC, names.ENV_TOKEN, names.ENV_PORT, names.ENV_GRACE_SECONDS, names.ENV_POD_NAME, names.ENV_POD_NAMESPACE, names.ENV_POD_UID, names.ENV_NODE_NAME]) {
    assert.ok(envSection.includes(`\`${v}\``), `DESIGN.md §5 should list ${v}`);
  }
});
