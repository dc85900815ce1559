/**
 * The hook spec: the schema of the `hook-runner.dev/hooks` annotation and of the normalised spec
 * the webhook hands to the sidecar in HOOK_RUNNER_SPEC. One module for both halves, so they cannot
 * disagree: the normalised spec is itself a valid annotation (every default filled in, every port a
 * number), and the sidecar validates it with the same code the webhook runs at admission.
 */
import { constants as osConstants } from 'node:os';
import type { V1Container } from '@kubernetes/client-node';
import { ANNOTATION_HOOKS, PHASES, type Phase } from './names.js';

export const HANDLER_KINDS = ['exec', 'httpGet', 'http', 'sleep', 'signal', 'tcpSocket'] as const;
export type HandlerKind = (typeof HANDLER_KINDS)[number];

interface Header {
  name: string;
  value: string;
}
type Scheme = 'HTTP' | 'HTTPS';

interface ExecAction {
  command: string[];
}
export interface HttpGetAction {
  path: string;
  port: number;
  host: string;
  scheme: Scheme;
  httpHeaders: Header[];
}
export interface HttpAction {
  method: string;
  path: string;
  port: number;
  host: string;
  scheme: Scheme;
  headers: Header[];
  body?: string;
}
interface SleepAction {
  seconds: number;
}
export interface SignalAction {
  name: string;
  waitForExit: boolean;
}
export interface TcpSocketAction {
  port: number;
  host: string;
}

export interface CommonFields {
  timeoutSeconds: number;
  retries: number;
  retryDelaySeconds: number;
  continueOnError: boolean;
}

/** A handler's kind and its action: switch on `kind` and `action` has that kind's type. */
export type HandlerAction =
  | { kind: 'exec'; action: ExecAction }
  | { kind: 'httpGet'; action: HttpGetAction }
  | { kind: 'http'; action: HttpAction }
  | { kind: 'sleep'; action: SleepAction }
  | { kind: 'signal'; action: SignalAction }
  | { kind: 'tcpSocket'; action: TcpSocketAction };

/**
 * One normalised handler in memory. On the wire (the annotation, HOOK_RUNNER_SPEC) the action sits
 * under its kind's key instead (`{exec: {...}, timeoutSeconds, ...}`): {@link specJson} writes that
 * form and {@link parseSpecJson} reads it, so webhook and sidecar of different versions agree.
 */
export type HandlerSpec = HandlerAction & CommonFields;

export interface ContainerHooks {
  shutdownSeconds: number;
  postStart: HandlerSpec[];
  preStop: HandlerSpec[];
}

/** Normalised hooks of every hooked container, keyed by container name. */
export type HookSpec = Record<string, ContainerHooks>;

interface SpecDefaults {
  timeoutSeconds: number;
  shutdownSeconds: number;
}

export const DEFAULT_HOST = '127.0.0.1';
/** Upper bounds that keep a typo (`retries: 1000`) from turning into an hour-long hook. */
const MAX_RETRIES = 20;
export const MAX_SECONDS = 24 * 3600;

/** One problem found in a hooks annotation: where (`app.preStop[1].httpGet.port`) and what. */
export interface SpecProblem {
  path: string;
  message: string;
}

/**
 * At most this many problems are spelled out in an error's message, so an admission denial stays
 * readable; {@link HookSpecError.errors} keeps them all.
 */
const MAX_REPORTED_PROBLEMS = 20;
/**
 * Checking stops at this many problems: a hostile 64 KiB annotation (thousands of unknown keys)
 * must not buy a second of CPU per admission request.
 */
export const MAX_COLLECTED_PROBLEMS = 100;

/**
 * A validation error with the exact location in the annotation, e.g. `app.preStop[1].httpGet.port`.
 * `errors` lists every problem found (kubectl's validation lists them all; checking stops at
 * {@link MAX_COLLECTED_PROBLEMS}, and then `complete` is false); `location` and `detail` are the
 * first one's, and the message joins them all, bounded.
 */
export class HookSpecError extends Error {
  readonly errors: readonly SpecProblem[];
  constructor(
    readonly location: string,
    readonly detail: string,
    readonly source: string = ANNOTATION_HOOKS,
    errors?: readonly SpecProblem[],
    readonly complete = true,
  ) {
    const all = errors && errors.length > 0 ? errors : [{ path: location, message: detail }];
    super(formatProblems(source, all, complete));
    this.name = 'HookSpecError';
    this.errors = all;
  }
}

function problemText(p: SpecProblem): string {
  return `${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/**
 * `SOURCE: PATH: MESSAGE` for one problem; `SOURCE: N errors: (1) ...; (2) ...` for several, at
 * most {@link MAX_REPORTED_PROBLEMS} spelled out. `complete` false: checking stopped early.
 */
export function formatProblems(source: string, problems: readonly SpecProblem[], complete = true): string {
  if (problems.length === 1 && complete) return `${source}: ${problemText(problems[0]!)}`;
  const shown = problems.slice(0, MAX_REPORTED_PROBLEMS).map((p, i) => `(${i + 1}) ${problemText(p)}`);
  const more = problems.length - shown.length;
  const count = complete ? `${problems.length} errors` : `${problems.length} errors (checking stopped there)`;
  return `${source}: ${count}: ${shown.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}

/**
 * What the cluster's configuration refuses (the webhook's `allowedHandlers` and `allowedHosts`,
 * webhook/core/policy.ts). Each answers why a value is refused, or undefined when it is allowed.
 */
export interface HandlerPolicy {
  refuseKind(kind: HandlerKind): string | undefined;
  /** Asked only about a host the handler names: the default host (the pod itself) is always allowed. */
  refuseHost(host: string): string | undefined;
}

/** Which containers of the pod may be hooked, and how to resolve their named ports. */
export interface ParseContext {
  /** Regular containers of the pod. Absent when validating a normalised spec (sidecar side). */
  containers?: readonly V1Container[];
  defaults: SpecDefaults;
  /** Absent on the sidecar side, which trusts the spec the webhook already checked. */
  policy?: HandlerPolicy;
  /** Prefix of every error message; the annotation key by default. */
  source?: string;
}

/** A JSON object (map), as parsed from YAML or JSON. */
export type Obj = Record<string, unknown>;

/** True for a map: not null, not a list. */
export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What a value is, with a bounded preview of it: error messages name the value they got. */
function describe(v: unknown): string {
  if (v === undefined) return 'nothing (the field is missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list []' : `a list ${preview(v)}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'object') return Object.keys(v).length === 0 ? 'an empty map {}' : `a map ${preview(v)}`;
  return `${typeof v} ${String(v)}`;
}

/** Flow-style preview, two levels and four entries deep at most (the value may nest 60k deep). */
function preview(v: unknown, depth = 0): string {
  if (Array.isArray(v)) {
    if (depth >= 2) return v.length > 0 ? '[…]' : '[]';
    return `[${v
      .slice(0, 4)
      .map((x) => preview(x, depth + 1))
      .join(', ')}${v.length > 4 ? ', …' : ''}]`;
  }
  if (isObj(v)) {
    const keys = Object.keys(v);
    if (depth >= 2) return keys.length > 0 ? '{…}' : '{}';
    return `{${keys
      .slice(0, 4)
      .map((k) => `${k}: ${preview(v[k], depth + 1)}`)
      .join(', ')}${keys.length > 4 ? ', …' : ''}}`;
  }
  if (typeof v === 'string') return JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}…` : v);
  return String(v);
}

/** Edit distance (insert, delete, substitute, swap two neighbours), case-insensitive. */
function editDistance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const d: number[][] = Array.from({ length: x.length + 1 }, (_, i) => Array.from({ length: y.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[x.length]![y.length]!;
}

/**
 * The candidate a typo most likely meant (`timeoutSecond` → `timeoutSeconds`, `httpget` →
 * `httpGet`), or undefined when none is close: at most 1 edit for names of up to 4 letters, 2 up
 * to 6, 3 beyond.
 */
function closestName(input: string, candidates: readonly string[]): string | undefined {
  if (input.length > 64) return undefined;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const dist = editDistance(input, c);
    const limit = c.length <= 4 ? 1 : c.length <= 6 ? 2 : 3;
    if (dist <= limit && dist < bestDistance) {
      best = c;
      bestDistance = dist;
    }
  }
  return best;
}

function didYouMean(input: string, candidates: readonly string[]): string {
  const s = closestName(input, candidates);
  return s === undefined ? '' : ` did you mean ${s}?`;
}

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

/** Thrown by Validator.fail to abandon the value being checked; the nearest guard catches it. */
const INVALID = Symbol('invalid');
/** Thrown once MAX_COLLECTED_PROBLEMS are found: no guard catches it, checking ends. */
const STOP = Symbol('stop');

/**
 * Collects every problem rather than stopping at the first: `fail` records one and abandons the
 * value at hand, and each field, handler and container is checked under a `guard` that goes on
 * with a placeholder. A placeholder never adds errors of its own: a problem at or under a path
 * already reported is dropped.
 */
class Validator {
  private readonly source: string;
  readonly errors: SpecProblem[] = [];
  constructor(private readonly ctx: ParseContext) {
    this.source = ctx.source ?? ANNOTATION_HOOKS;
  }

  /**
   * Lookups by name, built once per validation: a pod may carry 100k containers or ports within the
   * API server's 3 MiB, and scanning them for each of thousands of annotation keys or handlers
   * blocks the webhook for seconds.
   */
  private names?: Set<string>;
  private ports = new Map<string, Map<string, number>>();

  containerNames(): Set<string> {
    this.names ??= new Set((this.ctx.containers ?? []).map((c) => c.name));
    return this.names;
  }

  namedPorts(container: string): Map<string, number> {
    let m = this.ports.get(container);
    if (!m) {
      m = new Map();
      const c = this.ctx.containers?.find((x) => x.name === container);
      // The first port of a name wins, as a scan would find it.
      for (const p of c?.ports ?? []) if (p.name !== undefined && !m.has(p.name)) m.set(p.name, p.containerPort);
      this.ports.set(container, m);
    }
    return m;
  }

  report(path: string, detail: string): void {
    const covered = this.errors.some((e) => e.path === '' || path === e.path || path.startsWith(`${e.path}.`) || path.startsWith(`${e.path}[`));
    if (covered) return;
    this.errors.push({ path, message: detail });
    if (this.errors.length >= MAX_COLLECTED_PROBLEMS) throw STOP;
  }

  fail(path: string, detail: string): never {
    this.report(path, detail);
    throw INVALID;
  }

  /** Runs one check; when it fails, returns `fallback` so that the checks after it still run. */
  guard<T>(fallback: T, check: () => T): T {
    try {
      return check();
    } catch (e) {
      if (e === INVALID) return fallback;
      throw e;
    }
  }

  /** The checked value, or a {@link HookSpecError} listing every problem found. */
  result<T>(check: () => T): T {
    let value: T | undefined;
    let complete = true;
    try {
      value = this.guard(undefined, check);
    } catch (e) {
      if (e !== STOP) throw e;
      complete = false;
    }
    const first = this.errors[0];
    if (first || value === undefined) throw new HookSpecError(first?.path ?? '', first?.message ?? 'is invalid', this.source, this.errors, complete);
    return value;
  }

  fields(path: string, o: Obj, allowed: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.report(join(path, k), `unknown field;${didYouMean(k, allowed)} expected one of ${allowed.join(', ')}`);
    }
  }

  obj(path: string, v: unknown): Obj {
    return this.guard({}, () => {
      if (!isObj(v)) this.fail(path, `must be a map, got ${describe(v)}`);
      return v;
    });
  }

  str(path: string, v: unknown, { nonEmpty = true } = {}): string {
    return this.guard('', () => {
      if (typeof v !== 'string') this.fail(path, `must be a string, got ${describe(v)}`);
      if (nonEmpty && v.length === 0) this.fail(path, 'must not be empty');
      return v;
    });
  }

  seconds(path: string, v: unknown, { positive }: { positive: boolean }): number {
    return this.guard(0, () => {
      if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(path, `must be a number of seconds, got ${describe(v)}`);
      if (positive ? v <= 0 : v < 0) this.fail(path, `must be ${positive ? 'greater than 0' : '0 or more'}, got ${v}`);
      if (v > MAX_SECONDS) this.fail(path, `must be at most ${MAX_SECONDS} (24 h), got ${v}`);
      return v;
    });
  }

  bool(path: string, v: unknown): boolean {
    return this.guard(false, () => {
      if (typeof v !== 'boolean') this.fail(path, `must be true or false, got ${describe(v)}`);
      return v;
    });
  }

  port(path: string, v: unknown, container: string): number {
    return this.guard(0, () => {
      const hint = this.ctx.containers ? `must be 1-65535 or a named port of container ${container}` : 'must be a port number 1-65535';
      if (typeof v === 'number') {
        if (!Number.isInteger(v) || v < 1 || v > 65535) this.fail(path, `${hint}, got ${v}`);
        return v;
      }
      if (typeof v === 'string' && this.ctx.containers) {
        if (/^[0-9]+$/.test(v)) return this.port(path, Number(v), container);
        const ports = this.namedPorts(container);
        const p = ports.get(v);
        if (p !== undefined) return p;
        // Bounded: a container may name thousands of ports within the API server's 3 MiB.
        const names = [...ports.keys()].slice(0, 20);
        const known = names.length > 0 ? `its named ports are ${names.join(', ')}${didYouMean(v, names) ? `;${didYouMean(v, names)}` : ''}` : 'it names no ports';
        return this.fail(path, `${hint}, got ${describe(v)}; ${known}`);
      }
      return this.fail(path, `${hint}, got ${describe(v)}`);
    });
  }

  host(path: string, v: unknown): string {
    return this.guard(DEFAULT_HOST, () => this.checkHost(path, v));
  }

  private checkHost(path: string, v: unknown): string {
    if (v === undefined) return DEFAULT_HOST;
    const h = this.str(path, v);
    if (/[\s/?#@]/.test(h)) this.fail(path, `must be a host name or IP address, got ${JSON.stringify(h)}`);
    const refused = this.ctx.policy?.refuseHost(h);
    if (refused !== undefined) this.fail(path, refused);
    return h;
  }

  scheme(path: string, v: unknown): Scheme {
    return this.guard('HTTP', () => {
      if (v === undefined) return 'HTTP';
      if (v !== 'HTTP' && v !== 'HTTPS') this.fail(path, `must be HTTP or HTTPS, got ${describe(v)}`);
      return v;
    });
  }

  httpPath(path: string, v: unknown): string {
    return this.guard('/', () => {
      if (v === undefined) return '/';
      const p = this.str(path, v);
      if (!p.startsWith('/')) this.fail(path, `must start with "/", got ${JSON.stringify(p)}`);
      if (/[\s]/.test(p)) this.fail(path, `must not contain whitespace, got ${JSON.stringify(p)}`);
      return p;
    });
  }

  headers(path: string, v: unknown): Header[] {
    return this.guard([], () => this.checkHeaders(path, v));
  }

  private checkHeaders(path: string, v: unknown): Header[] {
    if (v === undefined || v === null) return [];
    // Accept the native list form and, for `http`, a plain map of name to value.
    const list: unknown[] = Array.isArray(v) ? v : isObj(v) ? Object.entries(v).map(([name, value]) => ({ name, value })) : this.fail(path, `must be a list of {name, value}, got ${describe(v)}`);
    return list.map((h, i) => {
      const p = join(path, i);
      const o = this.obj(p, h);
      this.fields(p, o, ['name', 'value']);
      const name = this.str(join(p, 'name'), o.name);
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) this.fail(join(p, 'name'), `is not a valid HTTP header name: ${JSON.stringify(name)}`);
      const value = typeof o.value === 'number' ? String(o.value) : this.str(join(p, 'value'), o.value, { nonEmpty: false });
      if (/[\r\n]/.test(value)) this.fail(join(p, 'value'), 'must not contain line breaks');
      return { name, value };
    });
  }

  /** The action checked; on a problem a placeholder (the handler is then reported, never used). */
  action(path: string, kind: HandlerKind, v: unknown, container: string): HandlerAction {
    return this.guard<HandlerAction>({ kind: 'sleep', action: { seconds: 0 } }, () => this.checkAction(path, kind, v, container));
  }

  private checkAction(path: string, kind: HandlerKind, v: unknown, container: string): HandlerAction {
    const o = this.obj(path, v);
    switch (kind) {
      case 'exec': {
        this.fields(path, o, ['command']);
        const cmd = o.command;
        if (!Array.isArray(cmd) || cmd.length === 0) this.fail(join(path, 'command'), `must be a non-empty list of strings (argv, no shell), got ${describe(cmd)}`);
        return { kind, action: { command: cmd.map((c, i) => this.str(join(join(path, 'command'), i), c, { nonEmpty: i === 0 })) } };
      }
      case 'httpGet': {
        this.fields(path, o, ['path', 'port', 'host', 'scheme', 'httpHeaders']);
        const action: HttpGetAction = {
          path: this.httpPath(join(path, 'path'), o.path),
          port: this.port(join(path, 'port'), o.port, container),
          host: this.host(join(path, 'host'), o.host),
          scheme: this.scheme(join(path, 'scheme'), o.scheme),
          httpHeaders: this.headers(join(path, 'httpHeaders'), o.httpHeaders),
        };
        return { kind, action };
      }
      case 'http': {
        this.fields(path, o, ['method', 'path', 'port', 'host', 'scheme', 'headers', 'body']);
        let method = 'GET';
        if (o.method !== undefined) {
          method = this.str(join(path, 'method'), o.method).toUpperCase();
          if (!/^[A-Z]+$/.test(method)) this.fail(join(path, 'method'), `must be an HTTP method such as GET or POST, got ${JSON.stringify(o.method)}`);
        }
        const out: HttpAction = {
          method,
          path: this.httpPath(join(path, 'path'), o.path),
          port: this.port(join(path, 'port'), o.port, container),
          host: this.host(join(path, 'host'), o.host),
          scheme: this.scheme(join(path, 'scheme'), o.scheme),
          headers: this.headers(join(path, 'headers'), o.headers),
        };
        if (o.body !== undefined) out.body = this.str(join(path, 'body'), o.body, { nonEmpty: false });
        return { kind, action: out };
      }
      case 'sleep': {
        this.fields(path, o, ['seconds']);
        return { kind, action: { seconds: this.seconds(join(path, 'seconds'), o.seconds, { positive: false }) } };
      }
      case 'signal': {
        this.fields(path, o, ['name', 'waitForExit']);
        const raw = this.str(join(path, 'name'), o.name).toUpperCase();
        const name = raw.startsWith('SIG') ? raw : `SIG${raw}`;
        if (!(name in osConstants.signals) || name === 'SIGKILL' || name === 'SIGSTOP') {
          this.fail(join(path, 'name'), `must be a signal name such as SIGTERM, SIGQUIT, SIGINT, SIGUSR1 (SIGKILL and SIGSTOP are not allowed), got ${JSON.stringify(o.name)}`);
        }
        const action: SignalAction = { name, waitForExit: o.waitForExit === undefined ? false : this.bool(join(path, 'waitForExit'), o.waitForExit) };
        return { kind, action };
      }
      case 'tcpSocket': {
        this.fields(path, o, ['port', 'host']);
        const action: TcpSocketAction = { port: this.port(join(path, 'port'), o.port, container), host: this.host(join(path, 'host'), o.host) };
        return { kind, action };
      }
    }
  }

  handler(path: string, v: unknown, container: string): HandlerSpec {
    const o = this.obj(path, v);
    const common = ['timeoutSeconds', 'retries', 'retryDelaySeconds', 'continueOnError'];
    const kinds = HANDLER_KINDS.filter((k) => k in o);
    if (kinds.length === 0) {
      const unknown = Object.keys(o).find((k) => !common.includes(k));
      if (unknown) this.fail(join(path, unknown), `unknown handler kind;${didYouMean(unknown, HANDLER_KINDS)} expected exactly one of ${HANDLER_KINDS.join(', ')}`);
      this.fail(path, `has no handler; expected exactly one of ${HANDLER_KINDS.join(', ')}`);
    }
    if (kinds.length > 1) this.fail(path, `has ${kinds.join(' and ')}; an item takes exactly one handler kind`);
    const kind = kinds[0]!;
    this.fields(path, o, [kind, ...common]);
    const refused = this.ctx.policy?.refuseKind(kind);
    if (refused !== undefined) this.report(join(path, kind), refused);
    const retries = this.guard(0, () => {
      if (o.retries === undefined) return 0;
      if (typeof o.retries !== 'number' || !Number.isInteger(o.retries) || o.retries < 0 || o.retries > MAX_RETRIES) {
        this.fail(join(path, 'retries'), `must be a whole number 0-${MAX_RETRIES}, got ${describe(o.retries)}`);
      }
      return o.retries;
    });
    const action = this.action(join(path, kind), kind, o[kind], container);
    return {
      ...action,
      timeoutSeconds: o.timeoutSeconds === undefined ? defaultTimeoutSeconds(action, this.ctx.defaults) : this.seconds(join(path, 'timeoutSeconds'), o.timeoutSeconds, { positive: true }),
      retries,
      retryDelaySeconds: o.retryDelaySeconds === undefined ? 1 : this.seconds(join(path, 'retryDelaySeconds'), o.retryDelaySeconds, { positive: false }),
      continueOnError: o.continueOnError === undefined ? false : this.bool(join(path, 'continueOnError'), o.continueOnError),
    };
  }

  phase(path: string, v: unknown, container: string): HandlerSpec[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) this.fail(path, `must be a list of handlers, got ${describe(v)}`);
    return v.flatMap((item, i) => this.guard([], () => [this.handler(join(path, i), item, container)]));
  }

  containerHooks(name: string, v: unknown): ContainerHooks {
    if (this.ctx.containers && !this.containerNames().has(name)) {
      const names = this.ctx.containers.map((c) => c.name).join(', ');
      this.fail(
        name,
        `no such container in this pod (containers: ${names});${didYouMean(
          name,
          this.ctx.containers.map((c) => c.name),
        )} hooks apply to regular containers only`,
      );
    }
    const o = this.obj(name, v ?? {});
    this.fields(name, o, ['shutdownSeconds', ...PHASES]);
    return {
      shutdownSeconds: o.shutdownSeconds === undefined ? this.ctx.defaults.shutdownSeconds : this.seconds(join(name, 'shutdownSeconds'), o.shutdownSeconds, { positive: false }),
      postStart: this.guard([], () => this.phase(join(name, 'postStart'), o.postStart, name)),
      preStop: this.guard([], () => this.phase(join(name, 'preStop'), o.preStop, name)),
    };
  }

  spec(v: unknown): HookSpec {
    if (v === null || v === undefined) return {};
    if (!isObj(v)) this.fail('', `must be a map of container name to hooks, got ${describe(v)}`);
    const out: HookSpec = {};
    for (const [name, hooks] of Object.entries(v)) this.guard(undefined, () => setHooks(out, name, this.containerHooks(name, hooks)));
    return out;
  }
}

/**
 * The timeout of an item that sets none: the configured default, except that a sleep always gets
 * longer than itself, so it runs its full length (DESIGN §4, as the native `sleep`); only a
 * `timeoutSeconds` the user wrote can cut a sleep short. The action is already validated here.
 */
function defaultTimeoutSeconds(a: HandlerAction, defaults: SpecDefaults): number {
  if (a.kind !== 'sleep') return defaults.timeoutSeconds;
  const seconds = a.action.seconds;
  if (!Number.isFinite(seconds)) return defaults.timeoutSeconds;
  // +1: the sidecar arms the timeout before the sleep's own timer, and equal timers fire in that order.
  return Math.min(MAX_SECONDS, Math.max(defaults.timeoutSeconds, Math.ceil(seconds) + 1));
}

/** Validates and normalises parsed annotation data. Throws {@link HookSpecError}. */
export function normaliseHooks(data: unknown, ctx: ParseContext): HookSpec {
  const v = new Validator(ctx);
  return v.result(() => v.spec(data));
}

/** Validates and normalises one handler at `path` (used to adopt native lifecycle handlers). */
export function normaliseHandler(path: string, data: unknown, container: string, ctx: ParseContext): HandlerSpec {
  const v = new Validator(ctx);
  return v.result(() => v.handler(path, data, container));
}

/** The sidecar's side: parses and validates HOOK_RUNNER_SPEC (JSON of a normalised spec). */
export function parseSpecJson(text: string, source = 'HOOK_RUNNER_SPEC'): HookSpec {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new HookSpecError('', `not valid JSON: ${(e as Error).message}`, source);
  }
  return normaliseHooks(data, { defaults: { timeoutSeconds: 30, shutdownSeconds: 5 }, source });
}

/** One handler in its wire form: the action under its kind's key, then the common fields. */
function handlerToWire(h: HandlerSpec): Obj {
  return { [h.kind]: h.action, timeoutSeconds: h.timeoutSeconds, retries: h.retries, retryDelaySeconds: h.retryDelaySeconds, continueOnError: h.continueOnError };
}

/** HOOK_RUNNER_SPEC: the normalised spec in its wire form (a valid annotation, read by {@link parseSpecJson}). */
export function specJson(spec: HookSpec): string {
  const wire: Obj = {};
  for (const [name, h] of Object.entries(spec)) {
    // Own property: a container may be named `__proto__`.
    Object.defineProperty(wire, name, {
      value: { shutdownSeconds: h.shutdownSeconds, postStart: h.postStart.map(handlerToWire), preStop: h.preStop.map(handlerToWire) },
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return JSON.stringify(wire);
}

/**
 * The hooks of one container, own keys only: container names are data, so `constructor` (a valid
 * container name) or `__proto__` must not reach Object.prototype.
 */
export function hooksOf(spec: HookSpec, container: string): ContainerHooks | undefined {
  return Object.hasOwn(spec, container) ? spec[container] : undefined;
}

/** Sets a container's hooks as an own property (`spec['__proto__'] = …` would replace the prototype). */
export function setHooks(spec: HookSpec, container: string, hooks: ContainerHooks): void {
  Object.defineProperty(spec, container, { value: hooks, enumerable: true, writable: true, configurable: true });
}

export function hasHooks(h: ContainerHooks): boolean {
  return h.postStart.length > 0 || h.preStop.length > 0;
}

export function phaseHandlers(h: ContainerHooks, phase: Phase): HandlerSpec[] {
  return phase === 'postStart' ? h.postStart : h.preStop;
}
