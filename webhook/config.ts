/**
 * The webhook's configuration file (DESIGN §9), read by `webhook --config` and `inject --config`.
 * Every key is optional; unknown keys are refused with the key's location.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import type { V1ResourceRequirements } from '@kubernetes/client-node';
import { DEFAULT_SIDECAR_PORT } from '../common/names.js';
import { DEFAULT_ALLOWED_HOSTS, HANDLER_KINDS, type HandlerKind, isObj, type Obj } from '../common/spec.js';

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
  /** Hosts that http, httpGet and tcpSocket handlers may name (see {@link hostAllowed}). */
  allowedHosts: string[];
  /** Adopt native lifecycle blocks of pods without the hooks annotation (opt-in, DESIGN §4). */
  adoptNativeHooks: boolean;
  /** Who may call the sidecar's hook API (DESIGN §6, §9); CIDRs are validated and canonical. */
  hookCallers: HookCallers;
  eventOutput: boolean;
}

/** `auto`: the node's addresses, the pod's default gateway and loopback; `any`; or a list of CIDRs. */
export type HookCallers = 'auto' | 'any' | string[];

/**
 * A CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address (taken as /32 or /128), in canonical
 * `address/prefix` form; undefined when it is neither.
 */
export function parseCidr(text: string): string | undefined {
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
  const fail = (loc: string, detail: string): never => {
    throw new ConfigError(source, loc, detail);
  };
  const keys = (loc: string, o: Obj, allowed: string[]) => {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(loc ? `${loc}.${k}` : k, `unknown key; expected one of ${allowed.join(', ')}`);
  };
  const map = (loc: string, v: unknown): Obj => (isObj(v) ? v : fail(loc, 'must be a map'));
  const posNum = (loc: string, v: unknown, allowZero: boolean): number =>
    typeof v === 'number' && Number.isFinite(v) && (allowZero ? v >= 0 : v > 0) ? v : fail(loc, `must be a number ${allowZero ? '0 or more' : 'greater than 0'}`);
  const bool = (loc: string, v: unknown): boolean => (typeof v === 'boolean' ? v : fail(loc, 'must be true or false'));

  const root = map('(file)', data);
  keys('', root, ['sidecar', 'defaults', 'allowedHandlers', 'allowedHosts', 'adoptNativeHooks', 'hookCallers', 'eventOutput']);
  if (root.sidecar !== undefined) {
    const s = map('sidecar', root.sidecar);
    keys('sidecar', s, ['image', 'imagePullPolicy', 'port', 'mode', 'resources']);
    if (s.image !== undefined) cfg.sidecar.image = typeof s.image === 'string' && s.image ? s.image : fail('sidecar.image', 'must be an image reference');
    if (s.imagePullPolicy !== undefined) {
      if (s.imagePullPolicy !== 'Always' && s.imagePullPolicy !== 'IfNotPresent' && s.imagePullPolicy !== 'Never') fail('sidecar.imagePullPolicy', 'must be Always, IfNotPresent or Never');
      cfg.sidecar.imagePullPolicy = s.imagePullPolicy as Config['sidecar']['imagePullPolicy'];
    }
    if (s.port !== undefined) {
      if (typeof s.port !== 'number' || !Number.isInteger(s.port) || s.port < 1 || s.port > 65535) fail('sidecar.port', 'must be a port number 1-65535');
      cfg.sidecar.port = s.port as number;
    }
    if (s.mode !== undefined) {
      if (!SIDECAR_MODES.includes(s.mode as SidecarMode)) fail('sidecar.mode', `must be one of ${SIDECAR_MODES.join(', ')}`);
      cfg.sidecar.mode = s.mode as SidecarMode;
    }
    if (s.resources !== undefined) {
      const r = map('sidecar.resources', s.resources);
      keys('sidecar.resources', r, ['requests', 'limits']);
      const res: V1ResourceRequirements = {};
      for (const part of ['requests', 'limits'] as const) {
        if (r[part] === undefined) continue;
        const m = map(`sidecar.resources.${part}`, r[part]);
        const out: Record<string, string> = {};
        for (const [k, v] of Object.entries(m)) {
          if (typeof v !== 'string' && typeof v !== 'number') fail(`sidecar.resources.${part}.${k}`, 'must be a quantity such as 10m or 64Mi');
          out[k] = String(v);
        }
        res[part] = out;
      }
      cfg.sidecar.resources = res;
    }
  }
  if (root.defaults !== undefined) {
    const d = map('defaults', root.defaults);
    keys('defaults', d, ['timeoutSeconds', 'shutdownSeconds']);
    if (d.timeoutSeconds !== undefined) cfg.defaults.timeoutSeconds = posNum('defaults.timeoutSeconds', d.timeoutSeconds, false);
    if (d.shutdownSeconds !== undefined) cfg.defaults.shutdownSeconds = posNum('defaults.shutdownSeconds', d.shutdownSeconds, true);
  }
  if (root.allowedHandlers !== undefined) {
    const a = root.allowedHandlers;
    if (!Array.isArray(a)) fail('allowedHandlers', `must be a list of handler kinds (${HANDLER_KINDS.join(', ')})`);
    cfg.allowedHandlers = (a as unknown[]).map((k, i) =>
      HANDLER_KINDS.includes(k as HandlerKind) ? (k as HandlerKind) : fail(`allowedHandlers[${i}]`, `unknown handler kind ${JSON.stringify(k)}; expected one of ${HANDLER_KINDS.join(', ')}`),
    );
  }
  if (root.allowedHosts !== undefined) {
    const a = root.allowedHosts;
    if (!Array.isArray(a)) fail('allowedHosts', 'must be a list of host names or IP addresses (`*.example.com` for a domain, `*` for any host)');
    cfg.allowedHosts = (a as unknown[]).map((h, i) =>
      typeof h === 'string' && /^(\*|(\*\.)?[^\s/?#@*]+)$/.test(h) ? h.toLowerCase() : fail(`allowedHosts[${i}]`, `must be a host name or IP address, \`*.domain\` or \`*\`, got ${JSON.stringify(h)}`),
    );
  }
  if (root.adoptNativeHooks !== undefined) cfg.adoptNativeHooks = bool('adoptNativeHooks', root.adoptNativeHooks);
  if (root.hookCallers !== undefined) {
    const h = root.hookCallers;
    const expected = 'must be auto, any, or a list of CIDRs such as [10.0.0.0/8, "fd00::/8"]';
    if (h === 'auto' || h === 'any') cfg.hookCallers = h;
    else if (!Array.isArray(h)) fail('hookCallers', `${expected}, got ${JSON.stringify(h)}`);
    else if (h.length === 0) fail('hookCallers', `is an empty list, which would refuse the kubelet itself; ${expected}`);
    else {
      cfg.hookCallers = (h as unknown[]).map((c, i) =>
        (typeof c === 'string' ? parseCidr(c) : undefined) ?? fail(`hookCallers[${i}]`, `must be a CIDR such as 10.0.0.0/8 or fd00::/8 (or one address), got ${JSON.stringify(c)}`),
      );
    }
  }
  if (root.eventOutput !== undefined) cfg.eventOutput = bool('eventOutput', root.eventOutput);
  return cfg;
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
