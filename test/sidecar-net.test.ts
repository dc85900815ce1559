/**
 * The sidecar's network trust boundary (issue 11 items 2, 3, 8; issue 10.4; issue 13.4): who may
 * call the hook API, hostile requests, Events without a client library, the SIGTERM race.
 * Callers are real: a network namespace made here is the pod's (veth pair, default route via the
 * host end, as a bridge CNI sets it up); the kubelet calls from the gateway address, a neighbour
 * from another address on the same link. All traffic stays on that veth pair or on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { CallerCheck, normaliseAddress, parseCallerEnv, parseDefaultGateways, RefusalLog } from '../sidecar/callers.js';
import { EnvError, loadSidecarEnv } from '../sidecar/env.js';
import { runTcp } from '../sidecar/handlers.js';
import { KubeClient } from '../sidecar/kube.js';
import { SidecarMetrics } from '../sidecar/metrics.js';
import { CLI, freePort, get, kubeletCall, lastReport, missingPrerequisite, selfSignedCert, sleep, until, which, withPod } from './harness/pod.js';
import { memoryLogger } from './support/https.js';

const TOKEN = 't'.repeat(32);
const SPEC = JSON.stringify({ app: { preStop: [{ sleep: { seconds: 1 } }] } });

// ------------------------------------------------------------------------------------------------
// The caller setting (pure)

test('HOOK_RUNNER_CALLERS / HOST_IP(S): auto by default, any, CIDRs; IPv4-mapped IPv6 normalised; a bad value names the variable', () => {
  const base = { HOOK_RUNNER_SPEC: SPEC, HOOK_RUNNER_TOKEN: TOKEN };
  assert.deepEqual(loadSidecarEnv(base).callers, { mode: 'auto', cidrs: [], hostIps: [] });
  const env = loadSidecarEnv({ ...base, HOOK_RUNNER_HOST_IP: '192.0.2.10', HOOK_RUNNER_HOST_IPS: '192.0.2.10,2001:DB8::10' });
  assert.deepEqual(env.callers.hostIps, ['192.0.2.10', '2001:db8::10']);
  assert.equal(loadSidecarEnv({ ...base, HOOK_RUNNER_CALLERS: 'any' }).callers.mode, 'any');
  assert.deepEqual(parseCallerEnv({ HOOK_RUNNER_CALLERS: ' 10.244.0.1/32, fd00::/64,::ffff:10.0.0.0/104,192.0.2.7' }).cidrs, [
    { address: '10.244.0.1', prefix: 32, family: 4 },
    { address: 'fd00::', prefix: 64, family: 6 },
    { address: '10.0.0.0', prefix: 8, family: 4 },
    { address: '192.0.2.7', prefix: 32, family: 4 },
  ]);
  const bad: Array<[Record<string, string>, string, RegExp]> = [
    [{ HOOK_RUNNER_CALLERS: '10.0.0.0/33' }, 'HOOK_RUNNER_CALLERS', /prefix length must be 0-32/],
    [{ HOOK_RUNNER_CALLERS: 'none' }, 'HOOK_RUNNER_CALLERS', /"none" is not an IPv4 or IPv6 address/],
    [{ HOOK_RUNNER_CALLERS: '10.0.0.1,,10.0.0.2' }, 'HOOK_RUNNER_CALLERS', /empty entry/],
    [{ HOOK_RUNNER_CALLERS: 'auto,10.0.0.1' }, 'HOOK_RUNNER_CALLERS', /stand alone/],
    [{ HOOK_RUNNER_CALLERS: '10.0.0.0/8/1' }, 'HOOK_RUNNER_CALLERS', /one "\/" at most/],
    [{ HOOK_RUNNER_HOST_IP: 'node-1' }, 'HOOK_RUNNER_HOST_IP', /"node-1" is not an IPv4 or IPv6 address/],
    [{ HOOK_RUNNER_HOST_IPS: '10.0.0.1,10.0.0.300' }, 'HOOK_RUNNER_HOST_IPS', /"10.0.0.300"/],
  ];
  for (const [extra, variable, re] of bad) {
    assert.throws(
      () => loadSidecarEnv({ ...base, ...extra }),
      (e: unknown) => e instanceof EnvError && e.variable === variable && e.message.startsWith(`${variable}: `) && re.test(e.message),
      JSON.stringify(extra),
    );
  }
  // The CLI: exit 1, one line naming the variable.
  const r = spawnSync(process.execPath, [CLI, 'sidecar'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...base, HOOK_RUNNER_CALLERS: '10.0.0.0/99' }, encoding: 'utf8', timeout: 15_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^hook-runner sidecar: HOOK_RUNNER_CALLERS: "10\.0\.0\.0\/99": prefix length/);
});

test('CallerCheck: loopback always; auto = node + gateway; CIDRs replace them; IPv4-mapped callers match IPv4 rules', () => {
  const auto = new CallerCheck(parseCallerEnv({ HOOK_RUNNER_HOST_IP: '192.0.2.10' }), ['10.244.0.1']);
  for (const a of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1', '192.0.2.10', '::ffff:192.0.2.10', '10.244.0.1']) assert.equal(auto.allowed(a), true, a);
  for (const a of ['10.244.0.2', '192.0.2.11', '::ffff:10.244.0.2', 'fe80::1', undefined, 'garbage']) assert.equal(auto.allowed(a), false, String(a));
  const cidrs = new CallerCheck(parseCallerEnv({ HOOK_RUNNER_CALLERS: '10.244.0.0/24,fd00::/64', HOOK_RUNNER_HOST_IP: '192.0.2.10' }), ['10.250.0.1']);
  for (const a of ['127.0.0.1', '10.244.0.77', '::ffff:10.244.0.77', 'fd00::5']) assert.equal(cidrs.allowed(a), true, a);
  for (const a of ['192.0.2.10', '10.250.0.1', '10.244.1.1', 'fd01::5']) assert.equal(cidrs.allowed(a), false, a);
  assert.equal(new CallerCheck(parseCallerEnv({ HOOK_RUNNER_CALLERS: 'any' })).allowed('203.0.113.9'), true);
  assert.equal(normaliseAddress('::FFFF:10.1.2.3'), '10.1.2.3');
  assert.equal(normaliseAddress('fe80::1%eth0'), 'fe80::1');
});

test('RefusalLog: a bounded flood logs perWindow lines, then one summary when the window ends', () => {
  let now = 1_000_000;
  const lines: Array<[string, Record<string, unknown>]> = [];
  const timers: Array<{ fn: () => void; at: number }> = [];
  const rl = new RefusalLog((k, f) => lines.push([k, f]), { perWindow: 5, windowMs: 60_000, now: () => now, schedule: (fn, ms) => timers.push({ fn, at: now + ms }) });
  for (let i = 0; i < 1000; i++) rl.refused({ remote: `10.0.0.${i % 3}`, path: '/v1/hooks/app/preStop' });
  assert.equal(lines.filter(([k]) => k === 'refused').length, 5);
  assert.equal(lines.length, 5, 'nothing more until the window ends');
  assert.equal(timers.length, 1, 'one summary timer for the whole flood');
  now = timers[0]!.at;
  timers[0]!.fn();
  assert.deepEqual(lines[5], ['suppressed', { suppressed: 995, remotes: ['10.0.0.2', '10.0.0.0', '10.0.0.1'], windowMs: 60_000 }]);
  // The next window logs again, one by one.
  now += 1;
  rl.refused({ remote: '10.0.0.9', path: '/x' });
  assert.equal(lines.length, 7);
  assert.equal(lines[6]![0], 'refused');
});

// ------------------------------------------------------------------------------------------------
// A pod network namespace, as a bridge CNI makes it

interface PodNet {
  ns: string;
  /** The host end of the veth: the pod's default gateway. */
  gateway: string;
  /** Another address on the host end: a neighbour that is not the gateway. */
  neighbour: string;
  podIp: string;
  gateway6: string;
  podIp6: string;
}

function netMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: creates a network namespace and a veth pair';
  if (!which('ip')) return 'needs ip (iproute2)';
  const probe = `hr-probe-${process.pid}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.status !== 0) return `needs network namespaces: ip netns add failed (${r.stderr.trim()})`;
  spawnSync('ip', ['netns', 'del', probe]);
  return undefined;
}

/** A pod netns with a veth to the host; addresses in 10.251.N.0/29 (checked unused, and routed only over the veth). */
function makePodNet(t: TestContext): PodNet {
  const n = (process.pid % 200) + 20;
  const ns = `hr-pod-${process.pid}`;
  const host = `hrh${process.pid}`.slice(0, 15);
  const net4 = `10.251.${n}`;
  const used = execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' });
  assert.ok(!used.includes(`${net4}.`) && !used.includes(`fd51:${n}::`), `${net4}.0/29 is free on this machine`);
  const p: PodNet = { ns, gateway: `${net4}.1`, neighbour: `${net4}.3`, podIp: `${net4}.2`, gateway6: `fd51:${n}::1`, podIp6: `fd51:${n}::2` };
  const run = (args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
  t.after(() => {
    spawnSync('ip', ['link', 'del', host]);
    spawnSync('ip', ['netns', 'del', ns]);
  });
  run(['netns', 'add', ns]);
  run(['link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  run(['addr', 'add', `${p.gateway}/29`, 'dev', host]);
  run(['addr', 'add', `${p.neighbour}/29`, 'dev', host]);
  run(['-6', 'addr', 'add', `${p.gateway6}/64`, 'dev', host, 'nodad']);
  run(['link', 'set', host, 'up']);
  for (const args of [
    ['link', 'set', 'lo', 'up'],
    ['addr', 'add', `${p.podIp}/29`, 'dev', 'eth0'],
    ['-6', 'addr', 'add', `${p.podIp6}/64`, 'dev', 'eth0', 'nodad'],
    ['link', 'set', 'eth0', 'up'],
    ['route', 'add', 'default', 'via', p.gateway],
    ['-6', 'route', 'add', 'default', 'via', p.gateway6],
  ])
    run(['-n', ns, ...args]);
  // Traffic to the pod address leaves only through the veth made here.
  assert.match(run(['route', 'get', p.podIp]), new RegExp(`dev ${host} `));
  return p;
}

function request(o: { host: string; port: number; path: string; localAddress?: string; token?: string; method?: string }): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: o.host, port: o.port, path: o.path, method: o.method ?? 'GET', localAddress: o.localAddress, agent: false, headers: o.token ? { 'X-Hook-Runner-Token': o.token } : {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body }));
        res.on('error', (e) => resolve({ error: e.message }));
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error('no answer within 15s')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end();
  });
}

test('gateway detection reads the default routes of a real network namespace (IPv4 and IPv6)', (t) => {
  const why = netMissing();
  if (why) return t.skip(why);
  const p = makePodNet(t);
  const read = (f: string) => execFileSync('ip', ['netns', 'exec', p.ns, 'cat', `/proc/net/${f}`], { encoding: 'utf8' });
  assert.deepEqual(parseDefaultGateways(read('route'), read('ipv6_route')), [p.gateway, p.gateway6]);
  // No default route (a pod on a routed CNI without one): nothing found.
  execFileSync('ip', ['-n', p.ns, 'route', 'del', 'default']);
  execFileSync('ip', ['-n', p.ns, '-6', 'route', 'del', 'default']);
  assert.deepEqual(parseDefaultGateways(read('route'), read('ipv6_route')), []);
});

const hooks = { app: { shutdownSeconds: 1, postStart: [{ tcpSocket: { port: 1, host: '127.0.0.1' }, continueOnError: true, timeoutSeconds: 1 }], preStop: [{ sleep: { seconds: 0.01 } }] } };

test('callers (auto): the gateway and loopback may call; a neighbour on the same link is refused for hook calls and /last, logged at most 5 times under a flood of 200, with one summary', async (t) => {
  const why = netMissing() ?? missingPrerequisite();
  if (why) return t.skip(why);
  const p = makePodNet(t);
  await withPod(
    t,
    { name: 'callers', graceSeconds: 5, netns: p.ns, hooks, containers: [{ name: 'app', uid: 1000, start: false }] },
    async (pod) => {
      const at = (localAddress: string, path: string, token?: string) => request({ host: p.podIp, port: pod.port, path, localAddress, token });
      // The neighbour, token and all: the hook call is dropped (the kubelet would report a failed hook), /last is 403.
      const refused = await at(p.neighbour, '/v1/hooks/app/preStop', pod.token);
      assert.ok(refused.error, `refused hook call gets no response (got ${JSON.stringify(refused)})`);
      assert.equal((await at(p.neighbour, '/v1/hooks/app/preStop/last', pod.token)).status, 403);
      assert.equal((await at(p.neighbour, '/v1/hooks/app/preStop/last')).status, 403, 'no hint whether the token was right');
      // Probes and metrics stay open to everyone.
      assert.equal((await at(p.neighbour, '/healthz')).status, 200);
      assert.equal((await at(p.neighbour, '/readyz')).status, 200);
      assert.equal((await at(p.neighbour, '/metrics')).status, 200);
      // The gateway (where the kubelet calls from on a bridge CNI): nothing ran for the neighbour.
      assert.equal((await at(p.gateway, '/v1/hooks/app/preStop/last', pod.token)).status, 404, 'the refused call ran nothing');
      const ok = await at(p.gateway, '/v1/hooks/app/preStop', pod.token);
      assert.equal(ok.status, 200, JSON.stringify(ok));
      assert.equal(JSON.parse(ok.body!).outcome, 'succeeded');
      assert.equal((await at(p.gateway, '/v1/hooks/app/preStop/last', pod.token)).status, 200);
      // The token stays a second check for accepted callers.
      assert.equal((await at(p.gateway, '/v1/hooks/app/preStop/last', 'x'.repeat(32))).status, 401);
      // Loopback inside the pod: the pod itself.
      const lo = spawnSync(
        'ip',
        ['netns', 'exec', p.ns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `X-Hook-Runner-Token: ${pod.token}`, `http://127.0.0.1:${pod.port}/v1/hooks/app/preStop/last`],
        { encoding: 'utf8', timeout: 15_000 },
      );
      assert.equal(lo.status, 0, `curl in the pod netns: ${lo.stderr}`);
      assert.equal(lo.stdout, '200');
      // IPv6: the gateway's v6 address is a gateway too; the pod's own v6 address is not (not loopback).
      assert.equal((await request({ host: p.podIp6, port: pod.port, path: '/v1/hooks/app/preStop/last', localAddress: p.gateway6, token: pod.token })).status, 200);

      // A bounded flood from the neighbour: 200 requests in 10 batches.
      for (let b = 0; b < 10; b++) await Promise.all(Array.from({ length: 20 }, () => at(p.neighbour, '/v1/hooks/app/preStop/last', pod.token)));
      const refusedLines = () => pod.sidecarLines().filter((l) => /^hook API call refused/.test(l.msg ?? ''));
      await until('5 refusal log lines', () => refusedLines().length >= 5, 10_000);
      assert.equal(refusedLines().length, 5, 'only the first 5 refusals of the minute are logged one by one');
      const first = refusedLines()[0]!;
      assert.equal(first.remote, p.neighbour);
      assert.equal(first.setting, 'HOOK_RUNNER_CALLERS');
      assert.match(first.accepted, new RegExp(`gateway ${p.gateway.replace(/\./g, '\\.')}`));
      // Still serving the kubelet.
      assert.equal((await at(p.gateway, '/v1/hooks/app/preStop/last', pod.token)).status, 200);
      // Wrong tokens from an accepted caller are rate-limited the same way: 50 more (51 with the one above).
      for (let b = 0; b < 5; b++) await Promise.all(Array.from({ length: 10 }, () => at(p.gateway, '/v1/hooks/app/preStop/last', 'y'.repeat(32))));
      const tokenLines = () => pod.sidecarLines().filter((l) => /^hook call without a valid/.test(l.msg ?? '')).length;
      await until('5 wrong-token log lines', () => tokenLines() >= 5, 10_000);
      assert.equal(tokenLines(), 5);
      // The summaries come at the end of the window, or at exit.
      const stopped = await pod.stopSidecar(5);
      assert.equal(stopped.code, 0);
      const tokenSummary = pod.sidecarLines().filter((l) => /^further hook calls without a valid/.test(l.msg ?? ''));
      assert.deepEqual(
        tokenSummary.map((l) => [l.suppressed, l.remotes]),
        [[46, [p.gateway]]],
      );
      const summary = pod.sidecarLines().filter((l) => /^further hook API calls refused/.test(l.msg ?? ''));
      assert.equal(summary.length, 1);
      assert.equal(summary[0]!.suppressed, 203 - 5, '1 hook call + 2 /last + 200 flood, minus the 5 logged');
      assert.deepEqual(summary[0]!.remotes, [p.neighbour]);
    },
    { tokenNeverLogged: true },
  );
});

test('callers (CIDRs): only the listed network and loopback; the gateway is no longer accepted', async (t) => {
  const why = netMissing() ?? missingPrerequisite();
  if (why) return t.skip(why);
  const p = makePodNet(t);
  await withPod(
    t,
    {
      name: 'cidrs',
      graceSeconds: 5,
      netns: p.ns,
      hooks,
      containers: [{ name: 'app', uid: 1000, start: false }],
      sidecarEnv: { HOOK_RUNNER_CALLERS: `::ffff:${p.neighbour}/128`, HOOK_RUNNER_HOST_IP: p.gateway },
    },
    async (pod) => {
      const at = (localAddress: string) => request({ host: p.podIp, port: pod.port, path: '/v1/hooks/app/preStop/last', localAddress, token: pod.token });
      assert.equal((await at(p.neighbour)).status, 404, 'the listed address passes the caller check (no run yet)');
      assert.equal((await at(p.gateway)).status, 403, 'neither gateway nor node address count with an explicit list');
    },
  );
});

// ------------------------------------------------------------------------------------------------
// Hostile requests against the running sidecar (issue 11.3)

/** Raw bytes to the sidecar; resolves with the first line of the answer, or how the connection ended. */
function raw(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    s.setTimeout(15_000, () => s.destroy(new Error('no answer within 15s')));
    s.on('connect', () => s.end(bytes));
    s.on('data', (c) => (got += c.toString('latin1')));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(got.split('\r\n')[0] || `error ${e.code ?? e.message}`));
    s.on('close', () => resolve(got.split('\r\n')[0] || 'closed'));
  });
}

test('hostile requests (bad percent-encoding, prototype names, methods, HEAD, huge URLs and headers, bodies, garbage) never harm the sidecar', async (t) => {
  await withPod(t, { name: 'hostile', graceSeconds: 5, hooks, containers: [{ name: 'app', uid: 1000, start: false }] }, async (pod) => {
    const tok = `X-Hook-Runner-Token: ${pod.token}\r\n`;
    const cases: Array<[string, string | Buffer, RegExp]> = [
      ['issue 11.3: bad UTF-8 percent-encoding', `GET /v1/hooks/%E0%A4%A/preStop HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 400 /],
      ['lone percent', `GET /v1/hooks/%/preStop/last HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 400 /],
      ['__proto__', `GET /v1/hooks/__proto__/preStop HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 404 /],
      ['constructor /last', `GET /v1/hooks/constructor/postStart/last HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 404 /],
      ['encoded __proto__', `GET /v1/hooks/%5F%5Fproto%5F%5F/preStop HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 404 /],
      ['HEAD of a hook', `HEAD /v1/hooks/app/preStop HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 405 /],
      ['DELETE of a hook', `DELETE /v1/hooks/app/preStop HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 405 /],
      ['POST /last', `POST /v1/hooks/app/preStop/last HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n${tok}\r\n`, /^HTTP\/1\.1 405 /],
      ['POST /metrics', `POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`, /^HTTP\/1\.1 405 /],
      ['OPTIONS *', `OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n`, /^HTTP\/1\.1 404 /],
      ['absolute-form URL', `GET http://evil/v1/hooks/app/preStop HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 404 /],
      ['unknown method', `BREW /v1/hooks/app/preStop HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 400 /],
      ['8 KB path', `GET /v1/hooks/${'a'.repeat(8000)}/preStop HTTP/1.1\r\nHost: x\r\n${tok}\r\n`, /^HTTP\/1\.1 404 /],
      ['64 KB of headers', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(65_536)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
      ['control byte in a header', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n`, /^HTTP\/1\.1 400 /],
      ['duplicate token headers', `GET /v1/hooks/app/preStop/last HTTP/1.1\r\nHost: x\r\n${tok}${tok}\r\n`, /^HTTP\/1\.1 401 /],
      ['1 MB body to a hook path without the token', `POST /v1/hooks/app/preStop HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n${'z'.repeat(1_048_576)}`, /^HTTP\/1\.1 401 /],
      ['broken chunked body', `POST /v1/hooks/nobody/preStop HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n${tok}\r\nZZ\r\nxx\r\n`, /^HTTP\/1\.1 (400|404) /],
      ['not HTTP at all', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x00, 0x00]), /^HTTP\/1\.1 400 |^closed$/],
    ];
    for (const [name, bytes, re] of cases) {
      const line = await raw(pod.port, bytes);
      assert.match(line, re, name);
      assert.equal(pod.sidecarExit, undefined, `${name}: the sidecar is still running (stderr: ${pod.sidecarStderr.slice(-500)})`);
      assert.equal((await get(pod.port, '/healthz')).status, 200, `${name}: still serving`);
    }
    // And it still runs hooks.
    const call = await kubeletCall({ path: '/v1/hooks/app/preStop', port: pod.port }, 15_000, pod.token);
    assert.equal(call.status, 200, call.error);
  });
});

// ------------------------------------------------------------------------------------------------
// tcpSocket on abort (issue 11.8)

test('tcpSocket settles when aborted before the connection is made', async () => {
  const port = await freePort();
  const ac = new AbortController();
  const pending = runTcp({ host: '127.0.0.1', port }, ac.signal);
  ac.abort(new Error('timeout'));
  const r = await Promise.race([pending, sleep(10_000).then(() => 'never settled' as const)]);
  assert.notEqual(r, 'never settled');
  assert.deepEqual(r, { ok: false, error: `connect 127.0.0.1:${port}: aborted` });
  // Already aborted: settles at once, no socket.
  assert.deepEqual(await runTcp({ host: '127.0.0.1', port }, AbortSignal.abort()), { ok: false, error: `connect 127.0.0.1:${port}: aborted` });
});

// ------------------------------------------------------------------------------------------------
// Metrics as text

test('metrics: Prometheus text with escaped labels and cumulative histogram buckets', () => {
  const m = new SidecarMetrics();
  m.observeDuration({ container: 'a"b\\c', phase: 'preStop', handler: 'exec' }, 0.2);
  m.observeDuration({ container: 'a"b\\c', phase: 'preStop', handler: 'exec' }, 400);
  m.countOutcome({ container: 'app', phase: 'postStart', handler: 'exec', outcome: 'failed' });
  m.countCall({ container: 'app', phase: 'postStart', result: 'joined' });
  m.countCall({ container: 'app', phase: 'postStart', result: 'joined' });
  const { contentType, text } = m.render();
  assert.equal(contentType, 'text/plain; version=0.0.4; charset=utf-8');
  const lines = text.split('\n');
  assert.ok(lines.includes('# TYPE hook_runner_hook_handler_duration_seconds histogram'));
  assert.ok(lines.includes('hook_runner_hook_handler_duration_seconds_bucket{container="a\\"b\\\\c",phase="preStop",handler="exec",le="0.1"} 0'));
  assert.ok(lines.includes('hook_runner_hook_handler_duration_seconds_bucket{container="a\\"b\\\\c",phase="preStop",handler="exec",le="0.5"} 1'));
  assert.ok(lines.includes('hook_runner_hook_handler_duration_seconds_bucket{container="a\\"b\\\\c",phase="preStop",handler="exec",le="300"} 1'));
  assert.ok(lines.includes('hook_runner_hook_handler_duration_seconds_bucket{container="a\\"b\\\\c",phase="preStop",handler="exec",le="+Inf"} 2'));
  assert.ok(lines.includes('hook_runner_hook_handler_duration_seconds_sum{container="a\\"b\\\\c",phase="preStop",handler="exec"} 400.2'));
  assert.ok(lines.includes('hook_runner_hook_handler_duration_seconds_count{container="a\\"b\\\\c",phase="preStop",handler="exec"} 2'));
  assert.ok(lines.includes('hook_runner_hook_handler_outcomes_total{container="app",phase="postStart",handler="exec",outcome="failed"} 1'));
  assert.ok(lines.includes('hook_runner_hook_calls_total{container="app",phase="postStart",result="joined"} 2'));
});

// ------------------------------------------------------------------------------------------------
// Events with node:https and the service-account files (issue 10.4, 13)

interface FakeApi {
  port: number;
  ca: string;
  saDir: string;
  events: Array<Record<string, any>>;
  /** Answer with this status (201 by default); `hang` never answers. */
  mode: { status: number; hang: boolean };
}

async function fakeApi(t: TestContext): Promise<FakeApi | undefined> {
  const dir = mkdtempSync('/tmp/hook-runner-api-');
  chmodSync(dir, 0o755);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      '/CN=kubernetes',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-days',
      '1',
      '-keyout',
      `${dir}/key.pem`,
      '-out',
      `${dir}/ca.crt`,
    ],
    { encoding: 'utf8', timeout: 20_000 },
  );
  if (r.status !== 0) return undefined;
  const { readFileSync } = await import('node:fs');
  const ca = readFileSync(`${dir}/ca.crt`, 'utf8');
  const saDir = `${dir}/sa`;
  (await import('node:fs')).mkdirSync(saDir, { mode: 0o755 });
  writeFileSync(`${saDir}/ca.crt`, ca, { mode: 0o644 });
  writeFileSync(`${saDir}/token`, 'sa-token-1\n', { mode: 0o644 });
  const api: FakeApi = { port: 0, ca, saDir, events: [], mode: { status: 201, hang: false } };
  const server = https.createServer({ key: readFileSync(`${dir}/key.pem`), cert: ca }, (req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (api.mode.hang) return;
      if (req.method === 'POST' && req.url === '/api/v1/namespaces/harness/events') {
        api.events.push({ ...(JSON.parse(body) as Record<string, any>), auth: req.headers.authorization });
        res.writeHead(api.mode.status, { 'Content-Type': 'application/json' });
        return res.end(api.mode.status === 403 ? '{"kind":"Status","reason":"Forbidden"}' : body);
      }
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  api.port = (server.address() as net.AddressInfo).port;
  return api;
}

const POD = { name: 'p', namespace: 'harness', uid: 'u-1', node: 'n-1' };

test('Events: posted over HTTPS with the token re-read each time, verified against the CA; a full queue drops (never blocks); a 403 turns them off', async (t) => {
  const api = await fakeApi(t);
  if (!api) return t.skip('needs openssl for the fake API server certificate');
  const { logger, lines } = memoryLogger();
  const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(api.port) };
  const kube = new KubeClient(POD, logger, { env, serviceAccountDir: api.saDir, queueMax: 3 });
  assert.equal(kube.configured(), true);
  kube.event({ reason: 'HookSucceeded', type: 'Normal', container: 'app', message: 'ok' });
  await until('first event', () => api.events.length === 1 || undefined, 10_000);
  writeFileSync(`${api.saDir}/token`, 'sa-token-2\n');
  kube.event({ reason: 'FailedPreStopHook', type: 'Warning', container: 'app', message: 'x'.repeat(5000) });
  await until('second event', () => api.events.length === 2 || undefined, 10_000);
  const [a, b] = api.events;
  assert.equal(a!.auth, 'Bearer sa-token-1');
  assert.equal(b!.auth, 'Bearer sa-token-2', 'a rotated token is picked up');
  assert.deepEqual(a!.involvedObject, { apiVersion: 'v1', kind: 'Pod', name: 'p', namespace: 'harness', uid: 'u-1', fieldPath: 'spec.containers{app}' });
  assert.deepEqual([a!.reason, a!.type, a!.source.component, a!.source.host, a!.metadata.generateName], ['HookSucceeded', 'Normal', 'hook-runner', 'n-1', 'p.']);
  assert.equal(b!.message.length, 1024);
  // An API server that never answers: event() returns at once, the queue stays bounded.
  api.mode.hang = true;
  for (let i = 0; i < 10; i++) kube.event({ reason: 'HookSucceeded', type: 'Normal', container: 'app', message: `n${i}` });
  assert.ok(kube.droppedEvents() >= 10 - 3 - 1, `dropped ${kube.droppedEvents()}`);
  assert.equal(lines.filter((l) => /event queue full/.test(String(l.msg))).length, 1);
  // A 403: one warning, then Events are off.
  const kube2 = new KubeClient(POD, logger, { env, serviceAccountDir: api.saDir });
  api.mode = { status: 403, hang: false };
  kube2.event({ reason: 'HookSucceeded', type: 'Normal', container: 'app', message: 'a' });
  await until('403 warning', () => lines.some((l) => /forbidden \(RBAC\)/.test(String(l.msg))) || undefined, 10_000);
  const before = api.events.length;
  kube2.event({ reason: 'HookSucceeded', type: 'Normal', container: 'app', message: 'b' });
  await kube2.flush();
  assert.equal(api.events.length, before, 'nothing sent after the 403');
  // Wrong CA (another server's certificate): not sent, one warning.
  const other = mkdtempSync('/tmp/hook-runner-sa-');
  t.after(() => rmSync(other, { recursive: true, force: true }));
  const c = selfSignedCert(other);
  if (c) {
    writeFileSync(`${other}/token`, 'x');
    writeFileSync(`${other}/ca.crt`, (await import('node:fs')).readFileSync(c.cert));
    api.mode = { status: 201, hang: false };
    const n = api.events.length;
    const kube3 = new KubeClient(POD, logger, { env, serviceAccountDir: other });
    kube3.event({ reason: 'HookSucceeded', type: 'Normal', container: 'app', message: 'c' });
    await until('TLS warning', () => lines.some((l) => /cannot create Event/.test(String(l.msg)) && /certificate/.test(String(l.err))) || undefined, 10_000);
    assert.equal(api.events.length, n);
  }
});

test('in the pod: the sidecar posts Events with the mounted service-account files; its PreStop budget is HOOK_RUNNER_GRACE_SECONDS', async (t) => {
  if (missingPrerequisite()) return t.skip(missingPrerequisite()!);
  const api = await fakeApi(t);
  if (!api) return t.skip('needs openssl for the fake API server certificate');
  await withPod(
    t,
    {
      name: 'events',
      graceSeconds: 4,
      hooks: { app: { shutdownSeconds: 1, postStart: [{ exec: { command: ['sh', '-c', 'echo secret-output'] } }], preStop: [{ exec: { command: ['sleep', '20'] }, timeoutSeconds: 25 }] } },
      containers: [{ name: 'app', uid: 1000, env: { APP_SHUTDOWN_MS: '300' } }],
      serviceAccountDir: api.saDir,
      sidecarEnv: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(api.port) },
    },
    async (pod) => {
      const r = await pod.terminate('app');
      assert.equal(r.preStop!.ok, false, 'cut off at the deadline: the kubelet sees a failed PreStop');
      const rep = await lastReport(pod, 'app', 'preStop');
      assert.deepEqual([rep.graceSeconds, rep.outcome, rep.graceSource], [4, 'deadline', undefined]);
      await until('events', () => api.events.length >= 2 || undefined, 10_000);
      const ok = api.events.find((e) => e.reason === 'HookSucceeded')!;
      assert.equal(ok.involvedObject.name, 'events');
      assert.equal(ok.auth, 'Bearer sa-token-1');
      const bad = api.events.find((e) => e.reason === 'FailedPreStopHook')!;
      assert.equal(bad.type, 'Warning');
      assert.match(bad.message, /handler \[0\] exec, attempt 1/);
      assert.ok(!api.events.some((e) => String(e.message).includes('secret-output')), 'no output in Events unless HOOK_RUNNER_EVENT_OUTPUT=true');
      // No client library and no Pod read.
      assert.ok(!pod.sidecarLines().some((l) => /kubernetes client|deletionGracePeriod/.test(l.msg ?? '')));
    },
  );
});

// ------------------------------------------------------------------------------------------------
// SIGTERM with a hook call in flight (issue 13.4)

test('SIGTERM while a PreStop call is still in flight after the app has exited: the sidecar answers it before exiting', async (t) => {
  if (missingPrerequisite()) return t.skip(missingPrerequisite()!);
  // The second handler holds the call open until the test lets it go.
  let release: (() => void) | undefined;
  let arrived = false;
  const gate = http.createServer((_req, res) => {
    arrived = true;
    release = () => res.end('ok');
  });
  await new Promise<void>((r) => gate.listen(0, '127.0.0.1', r));
  t.after(() => {
    gate.closeAllConnections();
    gate.close();
  });
  const gatePort = (gate.address() as net.AddressInfo).port;
  await withPod(
    t,
    {
      name: 'inflight',
      graceSeconds: 30,
      hooks: {
        app: {
          shutdownSeconds: 1,
          preStop: [
            { signal: { name: 'SIGTERM', waitForExit: true }, timeoutSeconds: 10 },
            { httpGet: { host: '127.0.0.1', port: gatePort, path: '/gate' }, timeoutSeconds: 25 },
          ],
        },
      },
      containers: [{ name: 'app', uid: 1000, env: { APP_SHUTDOWN_MS: '10' } }],
    },
    async (pod) => {
      const app = pod.containers.get('app')!;
      const ps = app.spec.lifecycle!.preStop!.httpGet;
      const call = kubeletCall(ps, 30_000);
      await until('the gate handler runs (the app has exited)', () => arrived || undefined, 15_000);
      await app.exited;
      process.kill(pod.sidecarPid, 'SIGTERM');
      // Either the sidecar says it waits for the call, or (the bug) it exits.
      await until(
        'the sidecar waits for the call in flight, or exits',
        () => pod.sidecarExit ?? (pod.sidecarLines().some((l) => /waiting for the hook calls in flight/.test(l.msg ?? '')) || undefined),
        15_000,
      );
      release!();
      const r = await call;
      assert.equal(r.ok, true, `the kubelet's PreStop call was answered (${r.error})`);
      assert.equal(r.status, 200);
      const exit = await Promise.race([pod.sidecarExited, sleep(15_000).then(() => undefined)]);
      assert.deepEqual([exit?.code, exit?.signal], [0, null], 'then exits 0');
      const last = pod.sidecarLines().find((l) => l.msg === 'sidecar exiting')!;
      assert.equal(last.inFlight, 0);
    },
  );
});

// ------------------------------------------------------------------------------------------------
// A lean start path (issue 13): node builtins only

test('the sidecar bundle imports node builtins only (no pino, prom-client, client-node), and its log lines keep the pino shape without the token', async () => {
  const { readFileSync, existsSync } = await import('node:fs');
  const bundle = new URL('../dist/sidecar/bundle.js', import.meta.url);
  assert.ok(existsSync(bundle), 'run npm run build first');
  const text = readFileSync(bundle, 'utf8');
  const specifiers = [...text.matchAll(/(?:from\s*|import\s*\(\s*)["']([^"']+)["']/g)].map((m) => m[1]!);
  assert.ok(specifiers.length > 0);
  assert.deepEqual(
    specifiers.filter((s) => !s.startsWith('node:')),
    [],
  );
  assert.ok(!/\brequire\(/.test(text), 'no CommonJS require in the bundle');
  const { createSidecarLogger } = await import('../sidecar/log.js');
  const lines: string[] = [];
  const log = createSidecarLogger({ name: 'hook-runner-sidecar', level: 'info', write: (l) => lines.push(l) });
  log.debug({ a: 1 }, 'not written at info');
  log.warn({ container: 'app', token: 'secret-1', headers: { 'X-Hook-Runner-Token': 'secret-2' }, err: new Error('boom') }, 'hook failed');
  assert.equal(lines.length, 1);
  assert.ok(lines[0]!.endsWith('}\n'));
  const l = JSON.parse(lines[0]!) as Record<string, any>;
  assert.deepEqual(Object.keys(l), ['level', 'time', 'name', 'container', 'token', 'headers', 'err', 'msg']);
  assert.deepEqual(
    [l.level, l.name, l.container, l.msg, l.token, l.headers['X-Hook-Runner-Token'], l.err.message],
    ['warn', 'hook-runner-sidecar', 'app', 'hook failed', '[redacted]', '[redacted]', 'boom'],
  );
  assert.ok(!Number.isNaN(Date.parse(l.time)));
  assert.ok(!lines[0]!.includes('secret-'));
});
