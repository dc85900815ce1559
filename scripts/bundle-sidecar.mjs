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
import { rmSync } from 'node:fs';
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
