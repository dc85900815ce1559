/**
 * The webhook's configuration file (DESIGN §9), read by `webhook --config` and `inject --config`.
 * Every key is optional; unknown keys are refused with the key's location.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import type { V1ResourceRequirements } from '@kubernetes/client-node';
import { DEFAULT_SIDECAR_PORT } from '../../common/names.js';
import { HANDLER_KINDS, type HandlerKind, isObj, type Obj } from '../../common/spec.js';
import { DEFAULT_ALLOWED_HOSTS } from './policy.js';

export type SidecarMode = 'auto' | 'native' | 'container';
export const SIDECAR_MODES: readonly SidecarMode[] = ['auto', 'native', 'container'];

export interface Config {
  sidecar: {
    image: string;
    imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
    port: number;
    mode: SidecarMode;
    resources: V1ResourceRequirements;
  };
  defaults: { timeoutSeconds: number; shutdownSeconds: number };
  allowedHandlers: HandlerKind[];
  /** Hosts that http, httpGet and tcpSocket handlers may name (see `hostAllowed` in policy.ts). */
  allowedHosts: string[];
  /** Adopt native lifecycle blocks of pods without the hooks annotation (opt-in, DESIGN §4). */
  adoptNativeHooks: boolean;
  /** Who may call the sidecar's hook API (DESIGN §6, §9); CIDRs are validated and canonical. */
  hookCallers: HookCallers;
  eventOutput: boolean;
}

/** `auto`: the node's addresses, the pod's default gateway and loopback; `any`; or a list of CIDRs. */
type HookCallers = 'auto' | 'any' | string[];

/**
 * A CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address (taken as /32 or /128), in canonical
 * `address/prefix` form; undefined when it is neither.
 */
function parseCidr(text: string): string | undefined {
  const m = /^([^/%\s]+)(?:\/([0-9]{1,3}))?$/.exec(text.trim());
  if (!m) return undefined;
  const family = isIP(m[1]!);
  if (family === 0) return undefined;
  const max = family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return undefined;
  return `${m[1]!.toLowerCase()}/${prefix}`;
}

export const IMAGE_REPOSITORY = 'ghcr.io/hook-runner/hook-runner';

export function defaultConfig(version: string): Config {
  return {
    sidecar: {
      image: `${IMAGE_REPOSITORY}:${version}`,
      imagePullPolicy: 'IfNotPresent',
      port: DEFAULT_SIDECAR_PORT,
      mode: 'auto',
      resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '128Mi' } },
    },
    defaults: { timeoutSeconds: 30, shutdownSeconds: 5 },
    allowedHandlers: [...HANDLER_KINDS],
    allowedHosts: [...DEFAULT_ALLOWED_HOSTS],
    adoptNativeHooks: false,
    hookCallers: 'auto',
    eventOutput: false,
  };
}

export class ConfigError extends Error {
  constructor(source: string, location: string, detail: string) {
    super(`${source}: ${location}: ${detail}`);
    this.name = 'ConfigError';
  }
}

/** Checks of config values; each failure throws a {@link ConfigError} naming the file and the key. */
class ConfigReader {
  constructor(private readonly source: string) {}

  fail(loc: string, detail: string): never {
    throw new ConfigError(this.source, loc, detail);
  }

  keys(loc: string, o: Obj, allowed: string[]): void {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) this.fail(loc ? `${loc}.${k}` : k, `unknown key; expected one of ${allowed.join(', ')}`);
  }

  map(loc: string, v: unknown): Obj {
    return isObj(v) ? v : this.fail(loc, 'must be a map');
  }

  posNum(loc: string, v: unknown, allowZero: boolean): number {
    return typeof v === 'number' && Number.isFinite(v) && (allowZero ? v >= 0 : v > 0) ? v : this.fail(loc, `must be a number ${allowZero ? '0 or more' : 'greater than 0'}`);
  }

  bool(loc: string, v: unknown): boolean {
    return typeof v === 'boolean' ? v : this.fail(loc, 'must be true or false');
  }
}

/** Parses config text over the defaults. `source` names the file in error messages. */
export function parseConfig(text: string, version: string, source = 'config'): Config {
  let data: unknown;
  try {
    data = parseYaml(text, { maxAliasCount: 50, uniqueKeys: true });
  } catch (e) {
    throw new ConfigError(source, '(file)', `not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const cfg = defaultConfig(version);
  if (data === null || data === undefined) return cfg;
  const r = new ConfigReader(source);
  const root = r.map('(file)', data);
  r.keys('', root, ['sidecar', 'defaults', 'allowedHandlers', 'allowedHosts', 'adoptNativeHooks', 'hookCallers', 'eventOutput']);
  if (root.sidecar !== undefined) readSidecar(r, r.map('sidecar', root.sidecar), cfg.sidecar);
  if (root.defaults !== undefined) {
    const d = r.map('defaults', root.defaults);
    r.keys('defaults', d, ['timeoutSeconds', 'shutdownSeconds']);
    if (d.timeoutSeconds !== undefined) cfg.defaults.timeoutSeconds = r.posNum('defaults.timeoutSeconds', d.timeoutSeconds, false);
    if (d.shutdownSeconds !== undefined) cfg.defaults.shutdownSeconds = r.posNum('defaults.shutdownSeconds', d.shutdownSeconds, true);
  }
  if (root.allowedHandlers !== undefined) cfg.allowedHandlers = readAllowedHandlers(r, root.allowedHandlers);
  if (root.allowedHosts !== undefined) cfg.allowedHosts = readAllowedHosts(r, root.allowedHosts);
  if (root.adoptNativeHooks !== undefined) cfg.adoptNativeHooks = r.bool('adoptNativeHooks', root.adoptNativeHooks);
  if (root.hookCallers !== undefined) cfg.hookCallers = readHookCallers(r, root.hookCallers);
  if (root.eventOutput !== undefined) cfg.eventOutput = r.bool('eventOutput', root.eventOutput);
  return cfg;
}

function readSidecar(r: ConfigReader, s: Obj, out: Config['sidecar']): void {
  r.keys('sidecar', s, ['image', 'imagePullPolicy', 'port', 'mode', 'resources']);
  if (s.image !== undefined) out.image = typeof s.image === 'string' && s.image ? s.image : r.fail('sidecar.image', 'must be an image reference');
  if (s.imagePullPolicy !== undefined) {
    if (s.imagePullPolicy !== 'Always' && s.imagePullPolicy !== 'IfNotPresent' && s.imagePullPolicy !== 'Never') r.fail('sidecar.imagePullPolicy', 'must be Always, IfNotPresent or Never');
    out.imagePullPolicy = s.imagePullPolicy as Config['sidecar']['imagePullPolicy'];
  }
  if (s.port !== undefined) {
    if (typeof s.port !== 'number' || !Number.isInteger(s.port) || s.port < 1 || s.port > 65535) r.fail('sidecar.port', 'must be a port number 1-65535');
    out.port = s.port as number;
  }
  if (s.mode !== undefined) {
    if (!SIDECAR_MODES.includes(s.mode as SidecarMode)) r.fail('sidecar.mode', `must be one of ${SIDECAR_MODES.join(', ')}`);
    out.mode = s.mode as SidecarMode;
  }
  if (s.resources !== undefined) out.resources = readResources(r, r.map('sidecar.resources', s.resources));
}

function readResources(r: ConfigReader, o: Obj): V1ResourceRequirements {
  r.keys('sidecar.resources', o, ['requests', 'limits']);
  const res: V1ResourceRequirements = {};
  for (const part of ['requests', 'limits'] as const) {
    if (o[part] === undefined) continue;
    const m = r.map(`sidecar.resources.${part}`, o[part]);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(m)) {
      if (typeof v !== 'string' && typeof v !== 'number') r.fail(`sidecar.resources.${part}.${k}`, 'must be a quantity such as 10m or 64Mi');
      out[k] = String(v);
    }
    res[part] = out;
  }
  return res;
}

function readAllowedHandlers(r: ConfigReader, a: unknown): HandlerKind[] {
  if (!Array.isArray(a)) r.fail('allowedHandlers', `must be a list of handler kinds (${HANDLER_KINDS.join(', ')})`);
  return (a as unknown[]).map((k, i) =>
    HANDLER_KINDS.includes(k as HandlerKind) ? (k as HandlerKind) : r.fail(`allowedHandlers[${i}]`, `unknown handler kind ${JSON.stringify(k)}; expected one of ${HANDLER_KINDS.join(', ')}`),
  );
}

function readAllowedHosts(r: ConfigReader, a: unknown): string[] {
  if (!Array.isArray(a)) r.fail('allowedHosts', 'must be a list of host names or IP addresses (`*.example.com` for a domain, `*` for any host)');
  return (a as unknown[]).map((h, i) =>
    typeof h === 'string' && /^(\*|(\*\.)?[^\s/?#@*]+)$/.test(h) ? h.toLowerCase() : r.fail(`allowedHosts[${i}]`, `must be a host name or IP address, \`*.domain\` or \`*\`, got ${JSON.stringify(h)}`),
  );
}

function readHookCallers(r: ConfigReader, h: unknown): Config['hookCallers'] {
  const expected = 'must be auto, any, or a list of CIDRs such as [10.0.0.0/8, "fd00::/8"]';
  if (h === 'auto' || h === 'any') return h;
  if (!Array.isArray(h)) return r.fail('hookCallers', `${expected}, got ${JSON.stringify(h)}`);
  if (h.length === 0) return r.fail('hookCallers', `is an empty list, which would refuse the kubelet itself; ${expected}`);
  return (h as unknown[]).map(
    (c, i) => (typeof c === 'string' ? parseCidr(c) : undefined) ?? r.fail(`hookCallers[${i}]`, `must be a CIDR such as 10.0.0.0/8 or fd00::/8 (or one address), got ${JSON.stringify(c)}`),
  );
}

export function loadConfig(path: string | undefined, version: string): Config {
  if (!path) return defaultConfig(version);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(path, '(file)', `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseConfig(text, version, path);
}
