#!/usr/bin/env node
/**
 * The image's `hook-runner` (Dockerfile: /usr/local/bin/hook-runner links to the CommonJS build of
 * this file, dist/sidecar/hook-runner.cjs, which scripts/bundle-sidecar.mjs makes with the whole
 * sidecar inlined). `sidecar` runs from that one CommonJS file: node then never starts its ES
 * module loader, which alone cost ~6-8 ms of every hooked pod's start (docs/benchmarks.md). Every
 * other command goes on to the ES module CLI, cli/main.ts, unchanged.
 */
import { runSidecarCli } from './bundle.js';

if (process.argv[2] === 'sidecar') {
  runSidecarCli(process.argv.slice(3)).then(
    (code) => {
      if (typeof code === 'number') process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`hook-runner: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
} else {
  void import('../cli/main.js');
}
