#!/usr/bin/env node
/**
 * Build step after tsc (`npm run build`): bundles the sidecar's start path (sidecar/bundle.ts: the
 * CLI and every module it imports before readiness, pino included) into one ESM file,
 * dist/sidecar/bundle.js, over tsc's re-export module of the same name. One file compiles and links
 * faster than ~40 modules, so the sidecar of every hooked pod is ready sooner (docs/benchmarks.md).
 * The sidecar loads nothing after readiness but node builtins (node:crypto, node:https): its metrics
 * are written as text and its Events posted with node:https (docs/design-decisions.md), so there
 * is no prom-client chunk and no @kubernetes/client-node any more.
 */
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * Modules pino requires at load time but a logger writing to a plain stream never uses: in the
 * bundle each becomes a stand-in that requires the real module on first use, so behaviour is the
 * same if it ever is used (a pino transport, a failed sonic-boom assertion).
 */
const LAZY = {
  // pino/lib/transport.js: the worker thread behind pino.transport().
  'thread-stream': "module.exports = function ThreadStream(opts) { const Real = require('thread-stream'); return new Real(opts); };",
  // sonic-boom (pino.destination()) calls assert(...) only.
  assert: "module.exports = function assert(...args) { return require('node:assert')(...args); };",
};

const lazyRequires = {
  name: 'lazy-requires',
  setup(b) {
    const filter = new RegExp(`^(${Object.keys(LAZY).join('|')})$`);
    b.onResolve({ filter }, (args) => (args.namespace === 'lazy' ? { path: args.path, external: true } : { path: args.path, namespace: 'lazy' }));
    b.onLoad({ filter: /.*/, namespace: 'lazy' }, (args) => ({ contents: LAZY[args.path], loader: 'js' }));
  },
};

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
  plugins: [lazyRequires],
  // CommonJS dependencies (pino) call require() for node builtins and the stand-ins above.
  banner: { js: "import { createRequire as __bundleCreateRequire } from 'node:module'; const require = __bundleCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
