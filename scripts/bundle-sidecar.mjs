#!/usr/bin/env node
/**
 * Build step after tsc (`npm run build`): bundles the sidecar's start path (sidecar/bundle.ts: the
 * CLI and every module it imports) into one ESM file,
 * dist/sidecar/bundle.js, over tsc's re-export module of the same name. One file compiles and links
 * faster than ~40 modules, so the sidecar of every hooked pod is ready sooner (docs/benchmarks.md).
 * The sidecar loads nothing after readiness but node builtins (node:crypto, node:https): its metrics
 * are written as text and its Events posted with node:https (docs/design-decisions.md), so there
 * is no prom-client chunk and no @kubernetes/client-node any more; its JSON log lines are written
 * by sidecar/log.ts, so pino (and the stand-ins its internals needed here) is gone from it too.
 * The bundle holds the project's own code and node builtins only; `test/sidecar-net.test.ts` checks it.
 */
import { build } from 'esbuild';
import { chmodSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

// Chunk names carry a content hash: drop the previous build's.
rmSync(new URL('../dist/sidecar/chunks', import.meta.url), { recursive: true, force: true });

await build({
  absWorkingDir: root,
  entryPoints: { 'sidecar/bundle': 'sidecar/bundle.ts' },
  outdir: 'dist',
  chunkNames: 'sidecar/chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
});

// The image's entry point (sidecar/launcher.ts): CommonJS, so that `hook-runner sidecar` starts
// without node's ES module loader (~6-8 ms of every hooked pod's start, docs/benchmarks.md); the
// sidecar is inlined, every other command is handed to the ES module CLI (dist/cli/main.js).
// It sits in dist/sidecar so that the exec helper is found next to it, as from bundle.js.
await build({
  absWorkingDir: root,
  entryPoints: ['sidecar/launcher.ts'],
  outfile: 'dist/sidecar/hook-runner.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['../cli/main.js'],
  // The sources find the exec helper and load builtins lazily relative to import.meta.url.
  define: { 'import.meta.url': '__hookRunnerUrl' },
  // createRequire (for builtins loaded on first use) is CommonJS's own require here: node:module
  // would load node's ES module loader after all.
  plugins: [
    {
      name: 'cjs-require',
      setup(b) {
        b.onResolve({ filter: /^node:module$/ }, () => ({ path: 'node:module', namespace: 'cjs-require' }));
        b.onLoad({ filter: /.*/, namespace: 'cjs-require' }, () => ({ contents: 'export const createRequire = () => require;', loader: 'js' }));
      },
    },
  ],
  banner: { js: "const __hookRunnerUrl = require('node:url').pathToFileURL(__filename).href;" },
  sourcemap: true,
  logLevel: 'warning',
});
chmodSync(new URL('../dist/sidecar/hook-runner.cjs', import.meta.url), 0o755);
