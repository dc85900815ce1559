#!/usr/bin/env node
/**
 * Build step (`npm run build`): compiles the exec helper sidecar/native/hook-exec.c into
 * dist/sidecar/hook-exec, statically linked (gcc -static; Debian: gcc + libc6-dev). Static on
 * purpose: the helper starts privileged, and a static binary runs no dynamic loader, so no loader
 * variable or library the app chose can run in it (docs/security.md). Off Linux there is nothing to
 * build (the sidecar runs only on Linux); exec hooks then report the helper missing.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('../sidecar/native/hook-exec.c', import.meta.url));
const out = fileURLToPath(new URL('../dist/sidecar/hook-exec', import.meta.url));

if (process.platform !== 'linux') {
  process.stderr.write(`build-native: skipping ${src} on ${process.platform} (the sidecar runs on Linux only)\n`);
  process.exit(0);
}
mkdirSync(fileURLToPath(new URL('../dist/sidecar', import.meta.url)), { recursive: true });
const cc = process.env.CC ?? 'gcc';
const r = spawnSync(cc, ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-s', '-o', out, src], { stdio: 'inherit' });
if (r.error || r.status !== 0) {
  process.stderr.write(`build-native: ${cc} -static failed for ${src}${r.error ? ` (${r.error.message})` : ''}; install gcc and the static C library (Debian: apt-get install gcc libc6-dev)\n`);
  process.exit(1);
}
