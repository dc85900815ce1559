/** Adoption of native `lifecycle` handlers (`adoptNativeHooks`): their annotation form. */
import type { V1LifecycleHandler } from '@kubernetes/client-node';
import type { Obj } from '../../common/spec.js';

/**
 * Converts a native `lifecycle` handler into annotation form, or explains why it cannot be adopted.
 * Native handlers have no timeout of their own; the webhook gives adopted ones native bounds
 * (webhook/core/mutate.ts, `adoptNative`), never the configured default.
 */
export function nativeToAnnotationItem(h: V1LifecycleHandler): Obj | undefined {
  if (h.exec) return { exec: { command: h.exec.command ?? [] } };
  if (h.httpGet) {
    const g = h.httpGet;
    const item: Obj = { path: g.path ?? '/', port: g.port };
    if (g.host) item.host = g.host;
    if (g.scheme) item.scheme = g.scheme;
    if (g.httpHeaders?.length) item.httpHeaders = g.httpHeaders.map((x) => ({ name: x.name, value: x.value }));
    return { httpGet: item };
  }
  if (h.sleep) return { sleep: { seconds: h.sleep.seconds } };
  if (h.tcpSocket) {
    const item: Obj = { port: h.tcpSocket.port };
    if (h.tcpSocket.host) item.host = h.tcpSocket.host;
    return { tcpSocket: item };
  }
  return undefined;
}
