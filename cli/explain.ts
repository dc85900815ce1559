/**
 * `hook-runner explain`, pure: what the webhook would do (or did) to one pod and why, from the pod,
 * the configuration and, for a live pod, its namespace, Events and the sidecar's last reports. The
 * result is plain data (`-o json|yaml`) and a text rendering with the PreStop budget drawn as a
 * timeline. The CLI (explain-cli.ts) gathers the inputs.
 */
import type { CoreV1Event, V1Container, V1Pod } from '@kubernetes/client-node';
import { DEADLINE_MARGIN_MS, checkPreStopBudget, preStopDeadlineMs, worstCaseSeconds } from '../common/budget.js';
import { ANNOTATION_STATUS, DEFAULT_GRACE_SECONDS, ENV_SPEC, LABEL_NAMESPACE_INJECTION, NAMESPACE_INJECTION_ENABLED, PHASES, SIDECAR_CONTAINER_NAME, type Phase } from '../common/names.js';
import { HookSpecError, parseSpecJson, type HandlerKind, type HandlerSpec, type HookSpec } from '../common/spec.js';
import type { Config } from '../webhook/core/config.js';
import { MutationError, collectHooks, mutatePod, type PodSecurityLevel, type ResolvedMode } from '../webhook/core/mutate.js';
import { RESTRICTED_KINDS } from '../webhook/core/security-context.js';
import { parseStatus } from '../webhook/core/uninject.js';
import { drawTimeline, secs } from './timeline.js';
import type { Style } from './term.js';

/** Namespaces the webhook configuration never selects, whatever their labels. */
const EXCLUDED_NAMESPACES = ['kube-system', 'hook-runner-system'];
export const LABEL_POD_SECURITY_ENFORCE = 'pod-security.kubernetes.io/enforce';
/** Capabilities Pod Security "baseline" allows to be added (Kubernetes Pod Security Standards). */
const BASELINE_CAPABILITIES = ['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT'];

type InjectionState = 'injected' | 'would-inject' | 'skipped' | 'denied';

interface HandlerView {
  index: number;
  kind: HandlerKind;
  /** One line: `sleep 5s`, `http POST http://127.0.0.1:8080/drain`, ... */
  action: string;
  timeoutSeconds: number;
  retries: number;
  retryDelaySeconds: number;
  continueOnError: boolean;
  worstCaseSeconds: number;
}

interface ContainerView {
  name: string;
  shutdownSeconds: number;
  postStart: HandlerView[];
  preStop: HandlerView[];
}

interface BudgetView {
  container: string;
  graceSeconds: number;
  /** Where the grace period comes from: a terminating pod's deletionGracePeriodSeconds wins, as in the kubelet. */
  graceSource: 'terminationGracePeriodSeconds' | 'deletionGracePeriodSeconds';
  shutdownSeconds: number;
  /** grace − shutdownSeconds: what the preStop list may use. */
  availableSeconds: number;
  worstCaseSeconds: number;
  /** When hook-runner answers PreStop at the latest (grace − shutdown − the sidecar's margin). */
  cutoffSeconds: number;
  fits: boolean;
  /** PreStop start and worst case of each handler, in order. */
  handlers: { index: number; label: string; startSeconds: number; worstCaseSeconds: number }[];
  warning?: string;
  fix?: string;
}

interface SidecarView {
  runAsUser: number | undefined;
  capabilities: string[];
  /** Lowest Pod Security level the sidecar's securityContext passes. */
  podSecurityLevel: PodSecurityLevel;
  why: string;
}

/** The last run of one hook, as the sidecar logged it. */
export interface LastReport {
  container: string;
  phase: Phase;
  outcome: string;
  time?: string;
  durationMs?: number;
  reason?: string;
  /** The failing attempt, when the log has it: `[1] exec attempt 2: exit code 1`. */
  detail?: string;
}

interface EventView {
  type: string;
  reason: string;
  count: number;
  lastSeen?: string;
  message: string;
}

export interface Explanation {
  kind: string;
  name: string;
  namespace?: string;
  /** Where the pod came from: `file.yaml document 2` or `live`. */
  source: string;
  injection: { state: InjectionState; reason?: string; message: string; mode?: ResolvedMode; port?: number };
  containers: ContainerView[];
  sidecar?: SidecarView;
  budgets: BudgetView[];
  warnings: string[];
  /** Live pods only. */
  events?: EventView[];
  lastReports?: LastReport[];
}

export interface ExplainInput {
  kind: string;
  name: string;
  namespace?: string;
  source: string;
  pod: V1Pod;
  config: Config;
  mode: ResolvedMode;
  /** Live: the namespace's labels (opt-in, Pod Security level). */
  namespaceLabels?: Record<string, string>;
  /** Offline: the Pod Security level to assume (`--pod-security`). */
  podSecurityLevel?: PodSecurityLevel;
  events?: CoreV1Event[];
  lastReports?: LastReport[];
}

// ---------------------------------------------------------------------------------------------
// The model

function url(scheme: string, host: string, port: number, path: string): string {
  return `${scheme.toLowerCase()}://${host.includes(':') ? `[${host}]` : host}:${port}${path}`;
}

function describeAction(h: HandlerSpec): string {
  switch (h.kind) {
    case 'exec':
      return `exec ${h.action.command.map((s) => (/[\s"']/.test(s) || s === '' ? JSON.stringify(s) : s)).join(' ')}`;
    case 'httpGet': {
      const a = h.action;
      return `httpGet ${url(a.scheme, a.host, a.port, a.path)}`;
    }
    case 'http': {
      const a = h.action;
      return `http ${a.method} ${url(a.scheme, a.host, a.port, a.path)}${a.body !== undefined ? ' (with body)' : ''}`;
    }
    case 'sleep':
      return `sleep ${secs(h.action.seconds)}`;
    case 'signal':
      return `signal ${h.action.name}${h.action.waitForExit ? ', wait for exit' : ''}`;
    case 'tcpSocket':
      return `tcpSocket ${h.action.host}:${h.action.port}`;
  }
}

function handlerView(h: HandlerSpec, index: number): HandlerView {
  return {
    index,
    kind: h.kind,
    action: describeAction(h),
    timeoutSeconds: h.timeoutSeconds,
    retries: h.retries,
    retryDelaySeconds: h.retryDelaySeconds,
    continueOnError: h.continueOnError,
    worstCaseSeconds: worstCaseSeconds(h),
  };
}

function budgetOf(container: string, hooks: HookSpec[string], graceSeconds: number, graceSource: BudgetView['graceSource'] = 'terminationGracePeriodSeconds'): BudgetView | undefined {
  if (hooks.preStop.length === 0) return undefined;
  const b = checkPreStopBudget(hooks, graceSeconds);
  let start = 0;
  const handlers = hooks.preStop.map((h, index) => {
    const w = worstCaseSeconds(h);
    const v = { index, label: `[${index}] ${describeAction(h)}`, startSeconds: start, worstCaseSeconds: w };
    start += w;
    return v;
  });
  const view: BudgetView = {
    container,
    graceSeconds,
    graceSource,
    shutdownSeconds: hooks.shutdownSeconds,
    availableSeconds: b.availableSeconds,
    worstCaseSeconds: b.worstCaseSeconds,
    cutoffSeconds: preStopDeadlineMs(0, graceSeconds, hooks.shutdownSeconds) / 1000,
    fits: b.fits,
    handlers,
  };
  const n = hooks.preStop.length;
  if (graceSeconds === 0) {
    view.warning = `${graceSource} is 0, so the kubelet never calls PreStop: the ${n} preStop handler${n === 1 ? '' : 's'} will not run`;
    view.fix = `set terminationGracePeriodSeconds to at least ${b.worstCaseSeconds + hooks.shutdownSeconds}`;
  } else if (b.availableSeconds <= 0) {
    view.warning = `shutdownSeconds ${hooks.shutdownSeconds} leaves no time for preStop in ${graceSource} ${graceSeconds}: preStop is cut off at once`;
    view.fix = `raise terminationGracePeriodSeconds to at least ${b.worstCaseSeconds + hooks.shutdownSeconds}, or lower shutdownSeconds`;
  } else if (!b.fits) {
    view.warning = `preStop may take up to ${secs(b.worstCaseSeconds)}, but ${graceSource} ${graceSeconds} - shutdownSeconds ${hooks.shutdownSeconds} leaves ${secs(b.availableSeconds)}: handlers still running at ${secs(view.cutoffSeconds)} are cut off so the app keeps its ${secs(hooks.shutdownSeconds)}`;
    view.fix = `raise terminationGracePeriodSeconds to at least ${b.worstCaseSeconds + hooks.shutdownSeconds}, or lower the handlers' timeoutSeconds or retries`;
  }
  return view;
}

/** What the sidecar's securityContext needs from Pod Security, from the container itself. */
function sidecarView(c: V1Container): SidecarView {
  const sc = c.securityContext ?? {};
  const caps = sc.capabilities?.add ?? [];
  const outside = caps.filter((x) => !BASELINE_CAPABILITIES.includes(x));
  if (outside.length > 0) {
    return {
      runAsUser: sc.runAsUser,
      capabilities: caps,
      podSecurityLevel: 'privileged',
      why: `${outside.join(' and ')} ${outside.length === 1 ? 'is' : 'are'} outside baseline; exec and signal handlers need them to act on another uid's processes`,
    };
  }
  if (caps.length > 0 || sc.runAsNonRoot !== true) {
    return {
      runAsUser: sc.runAsUser,
      capabilities: caps,
      podSecurityLevel: 'baseline',
      why: caps.length > 0 ? 'restricted allows no added capability but NET_BIND_SERVICE' : 'restricted needs runAsNonRoot',
    };
  }
  return { runAsUser: sc.runAsUser, capabilities: caps, podSecurityLevel: 'restricted', why: 'non-root, all capabilities dropped, no privilege escalation, RuntimeDefault seccomp' };
}

function findSidecar(pod: V1Pod): V1Container | undefined {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === SIDECAR_CONTAINER_NAME);
}

function graceOf(pod: V1Pod): { seconds: number; source: BudgetView['graceSource'] } {
  const deletion = pod.metadata?.deletionGracePeriodSeconds;
  if (deletion !== undefined) return { seconds: deletion, source: 'deletionGracePeriodSeconds' };
  return { seconds: pod.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS, source: 'terminationGracePeriodSeconds' };
}

function containersOf(spec: HookSpec): ContainerView[] {
  return Object.entries(spec).map(([name, h]) => ({
    name,
    shutdownSeconds: h.shutdownSeconds,
    postStart: h.postStart.map(handlerView),
    preStop: h.preStop.map(handlerView),
  }));
}

function levelOf(labels: Record<string, string> | undefined): PodSecurityLevel | undefined {
  const v = labels?.[LABEL_POD_SECURITY_ENFORCE];
  return v === 'privileged' || v === 'baseline' || v === 'restricted' ? v : undefined;
}

const SKIP_MESSAGES: Record<string, string> = {
  'opted-out': 'the pod is labelled hook-runner.dev/inject: "false"',
  'no-hooks': 'the pod has no hook-runner.dev/hooks annotation (and no native lifecycle block to adopt)',
};

export function explain(input: ExplainInput): Explanation {
  const { pod, config } = input;
  const out: Explanation = {
    kind: input.kind,
    name: input.name,
    ...(input.namespace ? { namespace: input.namespace } : {}),
    source: input.source,
    injection: { state: 'skipped', message: '' },
    containers: [],
    budgets: [],
    warnings: [],
    ...(input.events ? { events: input.events.map(eventView) } : {}),
    ...(input.lastReports ? { lastReports: input.lastReports } : {}),
  };
  const grace = graceOf(pod);
  const setSpec = (spec: HookSpec) => {
    out.containers = containersOf(spec);
    out.budgets = Object.entries(spec).flatMap(([name, h]) => budgetOf(name, h, grace.seconds, grace.source) ?? []);
  };

  const statusText = pod.metadata?.annotations?.[ANNOTATION_STATUS];
  if (statusText !== undefined) {
    // Already injected: the sidecar carries the normalised spec it runs.
    const sidecar = findSidecar(pod);
    try {
      const status = parseStatus(statusText);
      out.injection = { state: 'injected', reason: 'already-injected', message: `already injected (sidecar mode ${status.mode}, port ${status.port})`, mode: status.mode, port: status.port };
      const specEnv = sidecar?.env?.find((e) => e.name === ENV_SPEC)?.value;
      if (specEnv) setSpec(parseSpecJson(specEnv, `container ${SIDECAR_CONTAINER_NAME} env ${ENV_SPEC}`));
      else out.warnings.push(`the pod carries ${ANNOTATION_STATUS} but no ${SIDECAR_CONTAINER_NAME} container with ${ENV_SPEC}; its hooks cannot be shown`);
    } catch (e) {
      out.warnings.push((e as Error).message);
    }
    if (sidecar) out.sidecar = sidecarView(sidecar);
    return out;
  }

  if (input.namespaceLabels) {
    const ns = input.namespace ?? '';
    if (EXCLUDED_NAMESPACES.includes(ns)) {
      out.injection = { state: 'skipped', reason: 'namespace-excluded', message: `namespace ${ns} is never sent to the webhook` };
    } else if (input.namespaceLabels[LABEL_NAMESPACE_INJECTION] !== NAMESPACE_INJECTION_ENABLED) {
      out.injection = { state: 'skipped', reason: 'namespace-not-enabled', message: `namespace ${ns} is not labelled ${LABEL_NAMESPACE_INJECTION}=${NAMESPACE_INJECTION_ENABLED}` };
    }
  }
  const level = levelOf(input.namespaceLabels) ?? input.podSecurityLevel;
  try {
    const r = mutatePod(pod, { config, mode: input.mode, newToken: () => 'explain', ...(level ? { podSecurity: { namespace: input.namespace ?? '(offline)', level } } : {}) });
    // Budget warnings are drawn below, with their fix; the others are shown as the webhook gives them.
    out.warnings.push(...r.warnings.filter((w) => !w.includes('terminationGracePeriodSeconds')));
    if (!r.injected) {
      if (!out.injection.reason) out.injection = { state: 'skipped', reason: r.reason, message: SKIP_MESSAGES[r.reason] ?? r.reason };
      return out;
    }
    setSpec(collectHooks(pod, config).spec);
    const sidecar = findSidecar(r.pod);
    if (sidecar) out.sidecar = sidecarView(sidecar);
    if (!out.injection.reason) out.injection = { state: 'would-inject', message: `would be injected (sidecar mode ${input.mode}, port ${r.status.port})`, mode: input.mode, port: r.status.port };
  } catch (e) {
    if (!(e instanceof HookSpecError || e instanceof MutationError)) throw e;
    if (!out.injection.reason) out.injection = { state: 'denied', reason: e instanceof HookSpecError ? 'invalid-hooks' : 'unsupported-pod', message: `the webhook would deny the pod: ${e.message}` };
  }
  return out;
}

/**
 * The last report of each container and phase, from the sidecar's log (pino JSON, one event a
 * line): the `hook succeeded` / `hook failed` summary, with the failing attempt logged before it.
 * The `/last` endpoint has the same report but answers only the node, the pod's gateway and
 * loopback, with the pod's token; the log is readable with ordinary `pods/log` access.
 */
export function lastReportsFromLog(text: string): LastReport[] {
  const last = new Map<string, LastReport>();
  const failedAttempt = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const { container, phase, msg } = o;
    if (typeof container !== 'string' || (phase !== 'postStart' && phase !== 'preStop') || typeof msg !== 'string') continue;
    const key = `${container}/${phase}`;
    if (msg.startsWith('hook handler attempt') && o.outcome !== 'succeeded') {
      const why = typeof o.exitCode === 'number' ? `exit code ${o.exitCode}` : typeof o.status === 'number' ? `HTTP ${o.status}` : typeof o.error === 'string' ? o.error : String(o.outcome);
      failedAttempt.set(key, `[${String(o.index)}] ${String(o.handler)} attempt ${String(o.attempt)}: ${why}`);
    } else if (msg === 'hook succeeded' || msg === 'hook failed') {
      const detail = msg === 'hook failed' ? failedAttempt.get(key) : undefined;
      last.set(key, {
        container,
        phase,
        outcome: typeof o.outcome === 'string' ? o.outcome : msg === 'hook succeeded' ? 'succeeded' : 'failed',
        ...(typeof o.time === 'string' ? { time: o.time } : {}),
        ...(typeof o.durationMs === 'number' ? { durationMs: o.durationMs } : {}),
        ...(typeof o.reason === 'string' ? { reason: o.reason } : {}),
        ...(detail ? { detail } : {}),
      });
      failedAttempt.delete(key);
    }
  }
  return [...last.values()].sort((a, b) => a.container.localeCompare(b.container) || PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase));
}

/** Events about hooks: hook-runner's own and the kubelet's (same reasons). */
export const HOOK_EVENT_REASONS = ['HookSucceeded', 'FailedPostStartHook', 'FailedPreStopHook'];

function eventView(e: CoreV1Event): EventView {
  const last = e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp;
  return {
    type: e.type ?? 'Normal',
    reason: e.reason ?? '',
    count: e.count ?? 1,
    ...(last ? { lastSeen: new Date(last as unknown as string).toISOString() } : {}),
    message: e.message ?? '',
  };
}

// ---------------------------------------------------------------------------------------------
// Text

function handlerLine(h: HandlerView): string {
  const extra = [`timeout ${secs(h.timeoutSeconds)}`];
  if (h.retries > 0) extra.push(`${h.retries} ${h.retries === 1 ? 'retry' : 'retries'} (delay ${secs(h.retryDelaySeconds)}, doubling)`);
  if (h.continueOnError) extra.push('continueOnError');
  return `[${h.index}] ${h.action}  (${extra.join(', ')}; worst case ${secs(h.worstCaseSeconds)})`;
}

const STATE_WORD: Record<InjectionState, string> = { injected: 'yes', 'would-inject': 'yes', skipped: 'no', denied: 'no' };

export function renderExplanation(x: Explanation, style: Style): string {
  const l: string[] = [];
  l.push(`${style.bold(`${x.kind} ${x.namespace ? `${x.namespace}/` : ''}${x.name}`)}  (${x.source})`);
  const inj = x.injection;
  const word = STATE_WORD[inj.state];
  const colourWord = inj.state === 'denied' ? style.red(word) : word === 'yes' ? style.green(word) : style.yellow(word);
  l.push(`  injected: ${colourWord}${inj.reason && inj.state !== 'injected' ? ` (${inj.reason})` : ''}: ${inj.message}`);

  if (x.containers.length > 0) {
    l.push('  hooks (normalised):');
    for (const c of x.containers) {
      l.push(`    container ${c.name}  shutdownSeconds ${secs(c.shutdownSeconds)}`);
      for (const phase of PHASES) {
        const list = c[phase];
        if (list.length === 0) continue;
        list.forEach((h, i) => l.push(`      ${(i === 0 ? phase : '').padEnd(10)}${handlerLine(h)}`));
      }
    }
  }
  if (x.sidecar) {
    const s = x.sidecar;
    l.push(
      `  sidecar privileges: ${s.runAsUser === 0 ? 'uid 0' : `uid ${s.runAsUser ?? '(image default)'}`}, capabilities ${s.capabilities.length ? s.capabilities.join(', ') : 'none (all dropped)'}`,
    );
    l.push(`    Pod Security level needed: ${s.podSecurityLevel} (${s.why})`);
    if (s.podSecurityLevel !== 'privileged') l.push(`    handler kinds that work under baseline or restricted: ${RESTRICTED_KINDS.join(', ')}`);
  }
  for (const w of x.warnings) l.push(`  ${style.yellow('warning')}: ${w}`);

  for (const b of x.budgets) {
    l.push(
      `  preStop grace budget of container ${b.container}: ${b.graceSource} ${b.graceSeconds}, shutdownSeconds ${b.shutdownSeconds}, worst case ${secs(b.worstCaseSeconds)}, cut-off ${secs(b.cutoffSeconds)} (grace - shutdownSeconds - ${DEADLINE_MARGIN_MS}ms margin)`,
    );
    if (b.graceSeconds > 0) {
      for (const line of drawTimeline({ graceSeconds: b.graceSeconds, shutdownSeconds: b.shutdownSeconds, cutoffSeconds: b.cutoffSeconds, handlers: b.handlers }, style)) l.push(`  ${line}`);
    }
    if (b.warning) {
      l.push(`    ${style.red('does not fit')}: ${b.warning}`);
      if (b.fix) l.push(`    fix: ${b.fix}`);
    } else {
      l.push(`    ${style.green('fits')}: every handler can finish before the cut-off`);
    }
  }

  if (x.events) {
    l.push('  hook-runner events:');
    if (x.events.length === 0) l.push('    (none)');
    for (const e of x.events) l.push(`    ${e.lastSeen ?? '-'}  ${e.type === 'Warning' ? style.yellow(e.type) : e.type}  ${e.reason}${e.count > 1 ? ` (x${e.count})` : ''}: ${e.message}`);
  }
  if (x.lastReports) {
    l.push('  last hook reports (from the sidecar log):');
    if (x.lastReports.length === 0) l.push('    (none in the log yet)');
    for (const r of x.lastReports) {
      const outcome = r.outcome === 'succeeded' ? style.green(r.outcome) : style.red(r.outcome);
      l.push(
        `    ${r.container} ${r.phase}: ${outcome}${r.time ? ` at ${r.time}` : ''}${r.durationMs !== undefined ? ` in ${r.durationMs}ms` : ''}${r.reason ? `: ${r.reason}` : ''}${r.detail ? ` (${r.detail})` : ''}`,
      );
    }
  }
  return `${l.join('\n')}\n`;
}
