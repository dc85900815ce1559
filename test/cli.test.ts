/** The `hook-runner` binary's help, and what `webhook` prints at start for a person and for machines. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { runWebhookCli } from '../webhook/cli.js';
import { memoryLogger, waitFor } from './support/https.js';

const CLI = join(import.meta.dirname, '..', 'dist', 'cli', 'main.js');

function run(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("`help COMMAND` prints that command's help, the same as `COMMAND --help`", () => {
  for (const cmd of ['webhook', 'inject', 'sidecar', 'wait-ready', 'version']) {
    const viaHelp = run(['help', cmd]);
    assert.equal(viaHelp.code, 0, `help ${cmd}: ${viaHelp.stderr}`);
    assert.match(viaHelp.stdout, new RegExp(`^Usage: hook-runner ${cmd}\\b`), `help ${cmd}`);
    for (const flag of ['--help', '-h']) {
      const direct = run([cmd, flag]);
      assert.equal(direct.code, 0, `${cmd} ${flag}: ${direct.stderr}`);
      assert.equal(direct.stdout, viaHelp.stdout, `${cmd} ${flag} prints what help ${cmd} prints`);
    }
  }
  const top = run(['help']);
  assert.equal(top.code, 0);
  assert.match(top.stdout, /^hook-runner: container lifecycle hooks/);
  const unknown = run(['help', 'frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.match(run(['injct']).stderr, /unknown command "injct"/);
  assert.match(run(['webhooks']).stderr, /unknown command "webhooks"; did you mean webhook\?/);
});

test('no help text cites a DESIGN section (DESIGN.md is not in the repository)', () => {
  for (const cmd of ['webhook', 'inject', 'sidecar', 'wait-ready', 'version']) {
    assert.doesNotMatch(run([cmd, '--help']).stdout, /DESIGN/, cmd);
  }
  assert.doesNotMatch(run(['--help']).stdout, /DESIGN/);
});

/** A stdout that says it is (or is not) a terminal, keeping what is written. */
function fakeStdout(isTTY: boolean) {
  const s = Object.assign(new PassThrough(), { isTTY });
  let text = '';
  s.on('data', (c: Buffer) => (text += c.toString()));
  return { stream: s, text: () => text };
}

async function startAndStop(isTTY: boolean) {
  const out = fakeStdout(isTTY);
  const err = fakeStdout(false);
  const { logger, lines } = memoryLogger();
  const stop = new AbortController();
  const running = runWebhookCli(['--self-signed', '--listen', '127.0.0.1:0', '--shutdown-delay-seconds', '0'], { stdout: out.stream, stderr: err.stream, logger, stop: stop.signal });
  const listening = await waitFor('the webhook to listen', () => lines.find((l) => /^webhook listening/.test(l.msg)), { tries: 300, intervalMs: 100 });
  stop.abort();
  assert.equal(await running, 0);
  return { stdout: out.text(), stderr: err.text(), listening };
}

test('webhook on a terminal: the ways to try it as plain lines; not on a terminal: JSON log lines only', async () => {
  const tty = await startAndStop(true);
  const base = `https://127.0.0.1:${tty.listening.port as number}`;
  assert.ok(tty.stdout.includes(`hook-runner webhook is listening on ${base} (self-signed). Try it:\n`), tty.stdout);
  assert.ok(tty.stdout.includes(`\n  curl -sk ${base}/mutate -H 'content-type: application/json' --data @examples/admission-review.json\n`), tty.stdout);
  assert.ok(tty.stdout.includes('\n  node dist/cli/main.js inject -f examples/pod.yaml\n'), tty.stdout);
  assert.match(tty.stderr, /^-----BEGIN CERTIFICATE-----/, 'the CA certificate still goes to stderr');

  const pipe = await startAndStop(false);
  assert.equal(pipe.stdout, '', 'nothing but the logger writes when stdout is not a terminal');
  assert.match(String(pipe.listening.try), /^curl -sk https:\/\/127\.0\.0\.1:\d+\/mutate /, 'the JSON line keeps the try field for machines');
});
