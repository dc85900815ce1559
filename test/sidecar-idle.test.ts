// The sidecar's HTTP server without node's 30 s connection checker (issue 13.1: no periodic
// wake-ups while idle): the header deadline is a per-socket timer instead, and still holds.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { createSidecarLogger } from '../sidecar/log.js';
import { SidecarMetrics } from '../sidecar/metrics.js';
import { createSidecarServer } from '../sidecar/server.js';
import type { HookService } from '../sidecar/service.js';
import { get } from './harness/pod.js';

const TOKEN = 'idle-test-token-0123456789';

/** A server whose only hook (app/postStart) answers once `release` is called. */
async function server(headersTimeoutMs: number) {
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  const service = {
    hasHook: (c: string, p: string) => c === 'app' && p === 'postStart',
    last: () => undefined,
    call: async () => {
      await released;
      return { report: { outcome: 'succeeded' }, joined: false };
    },
  } as unknown as HookService;
  const log = createSidecarLogger({ name: 'test', level: 'fatal', write: () => {} });
  const s = createSidecarServer({ token: TOKEN, service, metrics: new SidecarMetrics(), log, isReady: () => true, callerAllowed: () => true, onRefused: () => {}, headersTimeoutMs });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { s, port: (s.address() as net.AddressInfo).port, release };
}

test('sidecar server: no connection checker timer; a client that never finishes its headers is disconnected', async () => {
  const { s, port } = await server(200);
  try {
    // Node's checker would run every connectionsCheckingInterval for the server's whole life.
    assert.equal(Reflect.get(s, 'connectionsCheckingInterval'), 2 ** 31 - 1);
    assert.equal(s.headersTimeout, 0);
    // A slow-header client: half a request line, then nothing.
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write('GET /v1/hooks/app/postStart HTTP/1.1\r\nHost: x\r\n');
    const closed = await new Promise<boolean>((resolve) => {
      const bound = setTimeout(() => resolve(false), 10_000);
      sock.once('close', () => {
        clearTimeout(bound);
        resolve(true);
      });
      sock.resume();
    });
    assert.ok(closed, 'the server closed the connection that never sent its headers');
  } finally {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

test('sidecar server: a hook call that outlasts the header deadline is still answered', async () => {
  const { s, port, release } = await server(200);
  try {
    const call = get(port, '/v1/hooks/app/postStart', TOKEN);
    // Let the call wait on the hook well past the header deadline before it finishes: the call's
    // socket must not be timed out meanwhile (the deadline applies only until the headers are in).
    const other = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => other.once('close', () => r()).resume());
    release();
    const r = await call;
    assert.equal(r.status, 200, r.body);
  } finally {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});
