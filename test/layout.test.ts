/**
 * The source layout of CONTRIBUTING.md, kept true: every import of the source tree (static, type-only,
 * re-export and dynamic) is read and checked against who may import whom.
 *
 *   common/            imports common/ only (at run time no package but Node's builtins, as the sidecar), and holds only what webhook/ AND sidecar/ both import
 *                      (version.ts aside: the package's identity, reported by every binary)
 *   sidecar/           sidecar/, common/; at run time no package but Node's builtins (its start time and memory
 *                      are paid in every hooked pod: docs/design-decisions.md)
 *   webhook/core/      webhook/core/, common/; no servers, clients or loggers (pure mutation)
 *   webhook/cluster/   webhook/cluster/, webhook/core/, common/
 *   webhook/*.ts       the webhook's edges: webhook/**, common/
 *   cli/               anything; nothing outside cli/ imports cli/
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE_DIRS = ['common', 'sidecar', 'webhook', 'cli'];

interface Import {
  /** Repository-relative `.ts` path for a relative import, the bare name for a package. */
  target: string;
  typeOnly: boolean;
}

// `import x from '…'`, `import type {…} from '…'`, `export {…} from '…'`, `export * from '…'`, `import '…'`,
// `import('…')`. Statements start a line; the `[^;]*?` spans the lines of a multi-line import list.
const STATIC = /^[ \t]*(import|export)\b([^;'"]*?)\bfrom\s*['"]([^'"]+)['"]/gm;
const BARE = /^[ \t]*import\s*['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function importsOf(file: string, text: string): Import[] {
  const resolve = (spec: string): string => (spec.startsWith('.') ? normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts') : spec);
  const out: Import[] = [];
  for (const m of text.matchAll(STATIC)) {
    const clause = m[2]!.trim();
    // `import type {…}`, or a list whose every name is marked `type`.
    const names = /^\{([^}]*)\}$/
      .exec(clause)?.[1]
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const typeOnly = clause.startsWith('type ') || (names !== undefined && names.length > 0 && names.every((n) => n.startsWith('type ')));
    out.push({ target: resolve(m[3]!), typeOnly });
  }
  for (const m of text.matchAll(BARE)) out.push({ target: resolve(m[1]!), typeOnly: false });
  for (const m of text.matchAll(DYNAMIC)) out.push({ target: resolve(m[1]!), typeOnly: false });
  return out;
}

/** Where a source file sits: the layer names of the table above. */
function layerOf(file: string): string {
  if (file.startsWith('webhook/core/')) return 'webhook/core';
  if (file.startsWith('webhook/cluster/')) return 'webhook/cluster';
  if (file.startsWith('webhook/')) return 'webhook';
  return file.split('/')[0]!;
}

/**
 * The image's `hook-runner` (Dockerfile) runs the sidecar from one CommonJS file and hands every other
 * command to the CLI: the one import from the sidecar up to cli/.
 */
const ENTRY_POINT_IMPORTS = new Set(['sidecar/launcher.ts -> cli/main.ts']);

const MAY_IMPORT: Record<string, readonly string[]> = {
  common: ['common'],
  sidecar: ['sidecar', 'common'],
  'webhook/core': ['webhook/core', 'common'],
  'webhook/cluster': ['webhook/cluster', 'webhook/core', 'common'],
  webhook: ['webhook', 'webhook/cluster', 'webhook/core', 'common'],
  cli: ['cli', 'webhook', 'webhook/cluster', 'webhook/core', 'sidecar', 'common'],
};

/** Packages the pure core may load at run time (type-only imports of API types are fine anywhere). */
const CORE_RUNTIME_PACKAGES = ['yaml', 'fast-json-patch', 'node:crypto', 'node:fs', 'node:net', 'node:os'];

/** Every import the layout forbids, one readable line each; `files` maps repository paths to text. */
function layoutViolations(files: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  const importers = new Map<string, Set<string>>();
  for (const [file, text] of files) {
    const from = layerOf(file);
    for (const imp of importsOf(file, text)) {
      if (!imp.target.endsWith('.ts') || !SOURCE_DIRS.includes(imp.target.split('/')[0]!)) {
        if (from === 'webhook/core' && !imp.typeOnly && !CORE_RUNTIME_PACKAGES.includes(imp.target)) {
          problems.push(`${file} loads ${imp.target}: webhook/core/ is the pure mutation (allowed at run time: ${CORE_RUNTIME_PACKAGES.join(', ')})`);
        }
        if ((from === 'sidecar' || from === 'common') && !imp.typeOnly && !imp.target.startsWith('node:')) problems.push(`${file} loads ${imp.target}: the sidecar runs on Node's builtins only`);
        continue;
      }
      const to = layerOf(imp.target);
      if (!MAY_IMPORT[from]?.includes(to) && !ENTRY_POINT_IMPORTS.has(`${file} -> ${imp.target}`))
        problems.push(`${file} imports ${imp.target}: ${from}/ may import only ${(MAY_IMPORT[from] ?? []).map((l) => `${l}/`).join(', ')}`);
      if (!files.has(imp.target)) problems.push(`${file} imports ${imp.target}, which does not exist`);
      let set = importers.get(imp.target);
      if (!set) importers.set(imp.target, (set = new Set()));
      set.add(from.split('/')[0]!);
    }
  }
  for (const [file, text] of files) {
    // In memory a handler's kind is `h.kind`; `'exec' in h` compiles but is always false (the wire form's key).
    const scan = file === 'common/spec.ts' ? null : /'(exec|httpGet|http|sleep|signal|tcpSocket)' in \w/.exec(text);
    if (scan) problems.push(`${file} tests a handler's kind with ${JSON.stringify(scan[0])}: use h.kind (HandlerSpec is a union on kind)`);
  }
  for (const file of files.keys()) {
    if (layerOf(file) !== 'common' || file === 'common/version.ts') continue;
    const users = importers.get(file) ?? new Set();
    for (const half of ['webhook', 'sidecar']) {
      if (!users.has(half)) problems.push(`${file} is in common/ but ${half}/ does not import it: common/ holds only what webhook/ and sidecar/ both use`);
    }
  }
  return problems;
}

function sourceTree(): Map<string, string> {
  const files = new Map<string, string>();
  for (const dir of SOURCE_DIRS) {
    for (const f of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
      if (f.endsWith('.ts')) files.set(`${dir}/${f}`, readFileSync(join(ROOT, dir, f), 'utf8'));
    }
  }
  return files;
}

test('layout: no import in the source tree goes upward or across (CONTRIBUTING.md, Layout)', () => {
  const files = sourceTree();
  assert.ok(files.has('webhook/core/mutate.ts') && files.has('webhook/cluster/kube.ts'), `source tree read from ${relative(process.cwd(), ROOT) || '.'}`);
  assert.deepEqual(layoutViolations(files), []);
});

test('layout: the import reader sees every form of import, and the rules catch each kind of violation', () => {
  const core = [
    "import { a } from '../cluster/kube.js';",
    "import type { B } from '../../cli/explain.js';",
    'import {\n  c,\n  type D,\n} from "../server.js";',
    "export * from '../../sidecar/proc.js';",
    "const x = await import('express');",
    "import type { V1Pod } from '@kubernetes/client-node';",
    "import { parse } from 'yaml';",
  ].join('\n');
  const files = new Map([
    ['webhook/core/x.ts', core],
    ['webhook/cluster/kube.ts', ''],
    ['webhook/server.ts', "import { x } from './core/x.js';\nconst usesExec = list.some((h) => 'exec' in h);"],
    ['cli/explain.ts', ''],
    ['sidecar/proc.ts', "import { y } from '../webhook/core/x.js';\nimport pino from 'pino';\nimport { readFile } from 'node:fs/promises';"],
    ['common/only-webhook.ts', "import { z } from '../cli/explain.js';\nimport type { V1Pod } from '@kubernetes/client-node';\nimport { parse } from 'yaml';"],
  ]);
  assert.deepEqual(
    importsOf('webhook/core/x.ts', core).map((i) => `${i.target}${i.typeOnly ? ' (type)' : ''}`),
    ['webhook/cluster/kube.ts', 'cli/explain.ts (type)', 'webhook/server.ts', 'sidecar/proc.ts', '@kubernetes/client-node (type)', 'yaml', 'express'],
  );
  assert.deepEqual(layoutViolations(files), [
    'webhook/core/x.ts imports webhook/cluster/kube.ts: webhook/core/ may import only webhook/core/, common/',
    'webhook/core/x.ts imports cli/explain.ts: webhook/core/ may import only webhook/core/, common/',
    'webhook/core/x.ts imports webhook/server.ts: webhook/core/ may import only webhook/core/, common/',
    'webhook/core/x.ts imports sidecar/proc.ts: webhook/core/ may import only webhook/core/, common/',
    'webhook/core/x.ts loads express: webhook/core/ is the pure mutation (allowed at run time: yaml, fast-json-patch, node:crypto, node:fs, node:net, node:os)',
    'sidecar/proc.ts imports webhook/core/x.ts: sidecar/ may import only sidecar/, common/',
    "sidecar/proc.ts loads pino: the sidecar runs on Node's builtins only",
    'common/only-webhook.ts imports cli/explain.ts: common/ may import only common/',
    "common/only-webhook.ts loads yaml: the sidecar runs on Node's builtins only",
    "webhook/server.ts tests a handler's kind with \"'exec' in h\": use h.kind (HandlerSpec is a union on kind)",
    'common/only-webhook.ts is in common/ but webhook/ does not import it: common/ holds only what webhook/ and sidecar/ both use',
    'common/only-webhook.ts is in common/ but sidecar/ does not import it: common/ holds only what webhook/ and sidecar/ both use',
  ]);
});
