/**
 * Who may call the hook API (DESIGN §6, docs/security.md): the kubelet calls from the node's
 * address or, on bridge CNIs, from the pod's default gateway (the bridge). Loopback is the pod
 * itself. Everything else is refused before the token is even looked at; the token stays required
 * as a second check, because a Service whose targetPort is the sidecar port, NodePorts and
 * `--masquerade-all` make kube-proxy rewrite other pods' traffic to the gateway address.
 *
 * Pure parsing and matching here; reading /proc/net and logging are the caller's edges.
 */
import { BlockList, isIP } from 'node:net';
import { ENV_CALLERS, ENV_HOST_IP, ENV_HOST_IPS } from '../common/names.js';

type CallerMode = 'auto' | 'any' | 'cidrs';

interface Cidr {
  address: string;
  prefix: number;
  family: 4 | 6;
}

export interface CallerSetting {
  mode: CallerMode;
  /** `cidrs` only: the configured networks. */
  cidrs: Cidr[];
  /** The node's addresses (downward API status.hostIP / status.hostIPs), deduplicated. */
  hostIps: string[];
}

/** A bad value of one of the caller variables; the message names the variable. */
export class CallerEnvError extends Error {
  constructor(
    readonly variable: string,
    detail: string,
  ) {
    super(`${variable}: ${detail}`);
    this.name = 'CallerEnvError';
  }
}

/** `::ffff:10.0.0.1` → `10.0.0.1`; lower-case IPv6; strips a `%zone`. Undefined when not an address. */
export function normaliseAddress(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  let a = raw.trim();
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = /^::ffff:([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)$/i.exec(a);
  if (mapped) a = mapped[1]!;
  const fam = isIP(a);
  if (fam === 0) return undefined;
  // The WHATWG URL parser writes IPv6 in its canonical form (lower case, longest zero run as ::).
  return fam === 6 ? new URL(`http://[${a}]/`).hostname.slice(1, -1) : a;
}

function parseIp(variable: string, raw: string): string {
  const a = normaliseAddress(raw);
  if (!a) throw new CallerEnvError(variable, `${JSON.stringify(raw)} is not an IPv4 or IPv6 address`);
  return a;
}

function parseCidr(variable: string, raw: string): Cidr {
  const [addr = '', prefixText, extra] = raw.trim().split('/');
  if (extra !== undefined) throw new CallerEnvError(variable, `${JSON.stringify(raw)} is not a CIDR (one "/" at most)`);
  const address = normaliseAddress(addr);
  if (!address) throw new CallerEnvError(variable, `${JSON.stringify(raw)}: ${JSON.stringify(addr)} is not an IPv4 or IPv6 address`);
  const family = isIP(address) as 4 | 6;
  const max = family === 4 ? 32 : 128;
  // An IPv4-mapped IPv6 CIDR (::ffff:10.0.0.0/104) becomes the IPv4 one.
  const mappedShift = family === 4 && isIP(addr.split('%')[0]!) === 6 ? 96 : 0;
  if (prefixText === undefined) return { address, prefix: max, family };
  if (!/^[0-9]{1,3}$/.test(prefixText)) throw new CallerEnvError(variable, `${JSON.stringify(raw)}: prefix length ${JSON.stringify(prefixText)} is not a number`);
  const prefix = Number(prefixText) - mappedShift;
  if (prefix < 0 || prefix > max) throw new CallerEnvError(variable, `${JSON.stringify(raw)}: prefix length must be 0-${max + mappedShift} for this address`);
  return { address, prefix, family };
}

/**
 * The caller setting from the environment. `HOOK_RUNNER_CALLERS`: `auto` (also when unset or
 * empty) | `any` | comma-separated CIDRs or addresses. Throws {@link CallerEnvError}.
 */
export function parseCallerEnv(env: NodeJS.ProcessEnv): CallerSetting {
  const hostIps: string[] = [];
  const addHost = (variable: string, raw: string | undefined) => {
    for (const part of (raw ?? '').split(',')) {
      if (part.trim() === '') continue;
      const a = parseIp(variable, part);
      if (!hostIps.includes(a)) hostIps.push(a);
    }
  };
  addHost(ENV_HOST_IP, env[ENV_HOST_IP]);
  addHost(ENV_HOST_IPS, env[ENV_HOST_IPS]);
  const raw = (env[ENV_CALLERS] ?? '').trim();
  if (raw === '' || raw === 'auto') return { mode: 'auto', cidrs: [], hostIps };
  if (raw === 'any') return { mode: 'any', cidrs: [], hostIps };
  const parts = raw.split(',').map((s) => s.trim());
  if (parts.some((p) => p === '')) throw new CallerEnvError(ENV_CALLERS, `${JSON.stringify(raw)} has an empty entry; expected auto, any, or comma-separated CIDRs such as 10.244.0.1/32,fd00::/64`);
  if (parts.some((p) => p === 'auto' || p === 'any')) throw new CallerEnvError(ENV_CALLERS, `${JSON.stringify(raw)}: auto and any stand alone, they do not mix with CIDRs`);
  return { mode: 'cidrs', cidrs: parts.map((p) => parseCidr(ENV_CALLERS, p)), hostIps };
}

/** Hex word of /proc/net/route (host byte order; little-endian on every platform Kubernetes runs on). */
function ipv4FromRouteHex(hex: string): string | undefined {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return undefined;
  const n = Number.parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.');
}

function ipv6FromHex(hex: string): string | undefined {
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) return undefined;
  const groups = hex.match(/.{4}/g)!.map((g) => Number.parseInt(g, 16).toString(16));
  return normaliseAddress(groups.join(':'));
}

const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;

/**
 * Default gateways from the text of /proc/net/route and /proc/net/ipv6_route (the network
 * namespace of the reader: in a pod, the pod's). Routes that are down or have no gateway are skipped.
 */
export function parseDefaultGateways(route: string, ipv6Route: string): string[] {
  const out: string[] = [];
  for (const line of route.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [, dest, gw, flagsHex, , , , mask] = f;
    const flags = Number.parseInt(flagsHex!, 16);
    if (dest !== '00000000' || mask !== '00000000' || !(flags & RTF_UP) || !(flags & RTF_GATEWAY)) continue;
    const a = ipv4FromRouteHex(gw!);
    if (a && a !== '0.0.0.0' && !out.includes(a)) out.push(a);
  }
  for (const line of ipv6Route.split('\n')) {
    // dest destPrefix src srcPrefix nextHop metric refcnt use flags dev
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [dest, destPrefix, , , nextHop, , , , flagsHex] = f;
    const flags = Number.parseInt(flagsHex!, 16);
    if (dest !== '0'.repeat(32) || destPrefix !== '00' || !(flags & RTF_UP) || !(flags & RTF_GATEWAY)) continue;
    const a = ipv6FromHex(nextHop!);
    if (a && a !== '::' && !out.includes(a)) out.push(a);
  }
  return out;
}

/** Human text of the setting, for logs (names what to change). */
export function describeCallers(s: CallerSetting, gateways: readonly string[]): string {
  if (s.mode === 'any') return 'any';
  if (s.mode === 'cidrs') return `loopback + ${s.cidrs.map((c) => `${c.address}/${c.prefix}`).join(',')}`;
  return `auto: loopback + node ${s.hostIps.join(',') || '(no HOOK_RUNNER_HOST_IP(S))'} + gateway ${gateways.join(',') || '(none found)'}`;
}

/** Matches a caller's address against the setting. `gateways` is re-read by the caller when it may have changed. */
export class CallerCheck {
  private list = new BlockList();
  private gatewaysNow: string[] = [];

  constructor(
    readonly setting: CallerSetting,
    gateways: readonly string[] = [],
  ) {
    this.setGateways(gateways);
  }

  get gateways(): readonly string[] {
    return this.gatewaysNow;
  }

  setGateways(gateways: readonly string[]): void {
    const l = new BlockList();
    // Loopback is the pod itself (every mode): its own probes and tools.
    l.addSubnet('127.0.0.0', 8, 'ipv4');
    l.addAddress('::1', 'ipv6');
    if (this.setting.mode === 'cidrs') for (const c of this.setting.cidrs) l.addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
    if (this.setting.mode === 'auto') {
      for (const a of [...this.setting.hostIps, ...gateways]) l.addAddress(a, isIP(a) === 4 ? 'ipv4' : 'ipv6');
    }
    this.list = l;
    this.gatewaysNow = [...gateways];
  }

  allowed(remote: string | undefined): boolean {
    if (this.setting.mode === 'any') return true;
    const a = normaliseAddress(remote);
    if (!a) return false;
    return this.list.check(a, isIP(a) === 4 ? 'ipv4' : 'ipv6');
  }
}

export interface RefusalLogOptions {
  /** Refusals logged one by one per window; the rest are counted. */
  perWindow?: number;
  windowMs?: number;
  now?: () => number;
  /** One-shot timer for the summary at the end of a window (default: an unref'd setTimeout). */
  schedule?: (fn: () => void, ms: number) => void;
}

/**
 * Rate-limited logging of refused callers: the first `perWindow` refusals of a window are logged
 * one by one, the rest only counted and reported in one summary line when the window ends (or at
 * {@link RefusalLog.flush}). A flood costs at most `perWindow + 1` lines a window; the one-shot
 * summary timer exists only while refusals are being counted (no periodic wake-ups when idle).
 */
export class RefusalLog {
  private windowStart = Number.NEGATIVE_INFINITY;
  private inWindow = 0;
  private suppressed = 0;
  private suppressedFrom = new Set<string>();
  readonly perWindow: number;
  readonly windowMs: number;
  private readonly now: () => number;
  private readonly schedule: (fn: () => void, ms: number) => void;

  constructor(
    private readonly emit: (kind: 'refused' | 'suppressed', fields: Record<string, unknown>) => void,
    o: RefusalLogOptions = {},
  ) {
    this.perWindow = o.perWindow ?? 5;
    this.windowMs = o.windowMs ?? 60_000;
    this.now = o.now ?? Date.now;
    this.schedule = o.schedule ?? ((fn, ms) => setTimeout(fn, ms).unref());
  }

  refused(fields: { remote: string; path: string }): void {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.flush();
      this.windowStart = t;
      this.inWindow = 0;
    }
    if (this.inWindow < this.perWindow) {
      this.inWindow++;
      this.emit('refused', { ...fields, ...(this.inWindow === this.perWindow ? { furtherRefusalsCountedFor: `${this.windowMs / 1000}s` } : {}) });
      return;
    }
    if (this.suppressed++ === 0) this.schedule(() => this.flush(), Math.max(0, this.windowStart + this.windowMs - t));
    if (this.suppressedFrom.size < 10) this.suppressedFrom.add(fields.remote);
  }

  /** Writes the summary of what was counted but not logged, if anything. */
  flush(): void {
    if (this.suppressed === 0) return;
    this.emit('suppressed', { suppressed: this.suppressed, remotes: [...this.suppressedFrom], windowMs: this.windowMs });
    this.suppressed = 0;
    this.suppressedFrom = new Set();
  }
}
