/**
 * The cluster admin's limits on what handlers may do (config `allowedHandlers`, `allowedHosts`),
 * as the {@link HandlerPolicy} the spec validator asks. The webhook's alone: the sidecar trusts the
 * spec the webhook already checked.
 */
import { DEFAULT_HOST, type HandlerKind, type HandlerPolicy } from '../../common/spec.js';

/** Hosts http/httpGet/tcpSocket handlers may name unless the config allows more: the pod itself. */
export const DEFAULT_ALLOWED_HOSTS = ['127.0.0.1', '::1', 'localhost'] as const;

/**
 * Whether `host` is on the list: an exact name or address (case-insensitive), `*.domain` for any
 * name under the domain, `*` for any host.
 */
export function hostAllowed(host: string, allowed: readonly string[]): boolean {
  const h = host.toLowerCase();
  return allowed.some((a) => a === '*' || a === h || (a.startsWith('*.') && h.endsWith(a.slice(1)) && h.length > a.length - 1));
}

/** The policy of a config: handler kinds on `allowedHandlers`, hosts on `allowedHosts` (any host when absent). */
export function handlerPolicy(allowedHandlers: readonly HandlerKind[], allowedHosts?: readonly string[]): HandlerPolicy {
  return {
    refuseKind: (kind) =>
      allowedHandlers.includes(kind) ? undefined : `handler kind ${kind} is not allowed by this cluster's hook-runner configuration (allowed: ${allowedHandlers.join(', ') || 'none'})`,
    refuseHost: (host) =>
      !allowedHosts || hostAllowed(host, allowedHosts)
        ? undefined
        : `${JSON.stringify(host)} is not allowed by this cluster's hook-runner configuration (allowedHosts: ${allowedHosts.join(', ') || 'none'}); handlers reach the pod itself (the default host ${DEFAULT_HOST}) unless the cluster admin allows more`,
  };
}
