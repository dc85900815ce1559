/**
 * The sidecar's start path as one module: `npm run build` bundles this file (and everything it
 * imports, pino included) into dist/sidecar/bundle.js with esbuild (scripts/bundle-sidecar.mjs).
 * Run from source (tsx), it is a plain re-export.
 */
export { runSidecarCli } from './cli.js';
