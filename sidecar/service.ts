/**
 * One hook call, end to end: find the target run, join a duplicate, compute the PreStop deadline,
 * run the list, and record it (log line per attempt, metrics, Event, report for `/last`).
 */
import { preStopDeadlineMs } from '../common/budget.js';
import type { Logger } from './log.js';
import { ENV_MARKER, type Phase } from '../common/names.js';
import { hooksOf, phaseHandlers, type HandlerSpec } from '../common/spec.js';
import type { SidecarEnv } from './env.js';
import { runExec, runHttp, runSignal, runSleep, runTcp, type ExecTools, type Target } from './handlers.js';
import type { KubeClient } from './kube.js';
import type { SidecarMetrics } from './metrics.js';
import { chooseMain, containerProcesses, readProcSnapshot, runId, type ProcEntry } from './proc.js';
import { HookRegistry } from './registry.js';
import { delay, runHandlerList, type AttemptResult, type HandlerReport } from './runner.js';

export interface HookReport {
  container: string;
  phase: Phase;
  pod: string;
  namespace: string;
  /** `<main pid>@<start time>`, or null when the container's processes could not be seen. */
  run: string | null;
  outcome: 'succeeded' | 'failed' | 'deadline';
  reason?: string;
  arrivedAt: string;
  finishedAt: string;
  durationMs: number;
  /** PreStop only: the grace period used (HOOK_RUNNER_GRACE_SECONDS) and the deadline. */
  graceSeconds?: number;
  deadlineAt?: string;
  handlers: HandlerReport[];
}

/** How long a call waits for the target to show in /proc (PostStart may arrive first). */
export const DISCOVERY_WAIT_MS = 10_000;
/** Lists without exec/signal need the process only to name the run; they wait less. */
const DISCOVERY_WAIT_SOFT_MS = 1_000;
const DISCOVERY_POLL_MS = 50;

export interface ServiceDeps {
  env: SidecarEnv;
  log: Logger;
  metrics: SidecarMetrics;
  kube: KubeClient;
  tools: ExecTools | undefined;
  self: { capEff: bigint; capPrm: bigint };
  procRoot?: string;
}

const PHASE_TITLE: Record<Phase, string> = { postStart: 'PostStart', preStop: 'PreStop' };

export class HookService {
  private readonly registry = new HookRegistry<HookReport>();
  private readonly lastReports = new Map<string, HookReport>();
  private readonly procRoot: string;
  private warnedUnreadable = false;
  private readonly warnedCaps = new Set<string>();
  /** Per container, why the last lookup refused to choose a target (a second container claims the name). */
  private readonly conflicts = new Map<string, string>();
  private readonly running = new Set<AbortController>();
  private calls = 0;

  constructor(private readonly d: ServiceDeps) {
    this.procRoot = d.procRoot ?? '/proc';
  }

  hasHook(container: string, phase: Phase): boolean {
    const h = hooksOf(this.d.env.spec, container);
    return !!h && phaseHandlers(h, phase).length > 0;
  }

  last(container: string, phase: Phase): HookReport | undefined {
    return this.lastReports.get(`${container}/${phase}`);
  }

  /** Hook calls not answered yet, from arrival (discovery included) to the report. */
  inFlight(): number {
    return this.calls;
  }

  /** Aborts every running list (own shutdown). */
  abortAll(): void {
    for (const c of this.running) c.abort();
  }

  /** The container's main process, waiting up to `waitMs` for it (bounded by `signal`). */
  async findTarget(container: string, waitMs: number, signal?: AbortSignal): Promise<ProcEntry | undefined> {
    const until = Date.now() + waitMs;
    for (let i = 0; i < Math.ceil(waitMs / DISCOVERY_POLL_MS) + 1; i++) {
      const snap = readProcSnapshot(this.procRoot);
      const { main, conflict } = chooseMain(containerProcesses(snap, container, process.pid));
      if (main) {
        this.conflicts.delete(container);
        return main;
      }
      // Another container claims the name too: refuse at once (waiting will not make it go away).
      if (conflict) return this.refuseConflict(container, conflict);
      if (snap.unreadable > 0) this.warnUnreadable(snap.unreadable);
      if (Date.now() >= until || signal?.aborted) return undefined;
      await delay(DISCOVERY_POLL_MS, signal);
    }
    return undefined;
  }

  private refuseConflict(container: string, conflict: ProcEntry[]): undefined {
    const why = `processes of ${conflict.length} containers claim ${ENV_MARKER}=${container} (pids ${conflict.map((p) => p.pid).join(', ')}, each started by the runtime in its own mount namespace); another container of this pod sets the marker, so none is chosen`;
    if (this.conflicts.get(container) !== why) this.d.log.warn({ container, pids: conflict.map((p) => p.pid), marker: ENV_MARKER }, `refusing to pick a target: ${why}`);
    this.conflicts.set(container, why);
    return undefined;
  }

  warnUnreadable(n: number): void {
    if (this.warnedUnreadable) return;
    this.warnedUnreadable = true;
    this.d.log.warn(
      { unreadable: n, marker: ENV_MARKER },
      'cannot read /proc/PID/environ of some processes (a restricted sidecar lacks SYS_PTRACE and DAC_READ_SEARCH); http, sleep and tcpSocket hooks still run, but container runs cannot be told apart (duplicates join only while in flight) and exec/signal cannot find their target',
    );
  }

  /** A hook call. Resolves with the report; `joined` when it reused an earlier call's run. */
  async call(container: string, phase: Phase): Promise<{ report: HookReport; joined: boolean }> {
    this.calls++;
    try {
      return await this.callCounted(container, phase);
    } finally {
      this.calls--;
    }
  }

  private async callCounted(container: string, phase: Phase): Promise<{ report: HookReport; joined: boolean }> {
    const arrival = Date.now();
    const hooks = hooksOf(this.d.env.spec, container)!;
    const list = phaseHandlers(hooks, phase);
    const needsProcess = list.some((h) => h.kind === 'exec' || h.kind === 'signal');
    let wait = needsProcess ? DISCOVERY_WAIT_MS : DISCOVERY_WAIT_SOFT_MS;
    if (phase === 'preStop') wait = Math.min(wait, Math.max(0, (this.d.env.graceSeconds - hooks.shutdownSeconds) * 1000 - 500));
    const target = list.length ? await this.findTarget(container, wait) : undefined;
    const run = target ? runId(target) : undefined;
    const { promise, joined } = this.registry.join(container, phase, run, () => this.run(container, phase, arrival, list, hooks.shutdownSeconds, target));
    const report = await promise;
    this.d.metrics.countCall({ container, phase, result: joined ? 'joined' : report.outcome });
    if (joined) this.d.log.info({ pod: this.d.env.pod.name, container, phase, run: report.run }, 'duplicate hook call joined the run already made');
    return { report, joined };
  }

  private async run(container: string, phase: Phase, arrival: number, list: HandlerSpec[], shutdownSeconds: number, target: ProcEntry | undefined): Promise<HookReport> {
    const { pod } = this.d.env;
    const deadline = new AbortController();
    this.running.add(deadline);
    let timer: NodeJS.Timeout | undefined;
    const report: HookReport = {
      container,
      phase,
      pod: pod.name,
      namespace: pod.namespace,
      run: target ? runId(target) : null,
      outcome: 'succeeded',
      arrivedAt: new Date(arrival).toISOString(),
      finishedAt: '',
      durationMs: 0,
      handlers: [],
    };
    try {
      if (phase === 'preStop') {
        // The pod's terminationGracePeriodSeconds; a shortened `kubectl delete --grace-period` is not
        // seen (reading it would need `pods get`, see docs/design-decisions.md).
        const grace = this.d.env.graceSeconds;
        const at = preStopDeadlineMs(arrival, grace, shutdownSeconds);
        Object.assign(report, { graceSeconds: grace, deadlineAt: new Date(at).toISOString() });
        timer = setTimeout(() => deadline.abort(), Math.max(0, at - Date.now()));
      }
      const res = await runHandlerList(list, {
        execute: (h, signal) => this.execute(container, h, signal, target),
        deadline: deadline.signal,
        onAttempt: (h, index, a) => {
          const fields = {
            pod: pod.name,
            namespace: pod.namespace,
            container,
            phase,
            handler: h.kind,
            index,
            attempt: a.attempt,
            durationMs: a.durationMs,
            outcome: a.outcome,
            ...(a.exitCode !== undefined ? { exitCode: a.exitCode } : {}),
            ...(a.status !== undefined ? { status: a.status } : {}),
            ...(a.error ? { error: a.error } : {}),
            output: a.outputTail,
          };
          if (a.outcome === 'succeeded') this.d.log.info(fields, 'hook handler attempt succeeded');
          else this.d.log.warn(fields, `hook handler attempt ${a.outcome}`);
        },
        onHandler: (_h, r) => {
          const labels = { container, phase, handler: r.kind };
          this.d.metrics.observeDuration(labels, r.durationMs / 1000);
          this.d.metrics.countOutcome({ ...labels, outcome: r.outcome });
        },
      });
      for (const r of res.handlers) if (r.outcome === 'skipped') this.d.metrics.countOutcome({ container, phase, handler: r.kind, outcome: 'skipped' });
      report.outcome = res.outcome;
      if (res.reason) report.reason = res.reason;
      report.handlers = res.handlers;
    } catch (e) {
      report.outcome = 'failed';
      report.reason = `internal error: ${(e as Error).message}`;
    } finally {
      clearTimeout(timer);
      this.running.delete(deadline);
    }
    const end = Date.now();
    report.finishedAt = new Date(end).toISOString();
    report.durationMs = end - arrival;
    this.lastReports.set(`${container}/${phase}`, report);
    this.record(report);
    return report;
  }

  private record(r: HookReport): void {
    const { pod } = this.d.env;
    const base = { pod: pod.name, namespace: pod.namespace, container: r.container, phase: r.phase, run: r.run, outcome: r.outcome, durationMs: r.durationMs, handlers: r.handlers.length };
    const title = PHASE_TITLE[r.phase];
    if (r.outcome === 'succeeded') {
      this.d.log.info(base, 'hook succeeded');
      this.d.kube.event({
        reason: 'HookSucceeded',
        type: 'Normal',
        container: r.container,
        message: `${title} hook of container ${r.container} succeeded: ${r.handlers.length} handler(s) in ${r.durationMs}ms`,
      });
      return;
    }
    this.d.log.warn({ ...base, reason: r.reason }, 'hook failed');
    const bad = r.handlers.find((h) => h.outcome !== 'succeeded' && h.outcome !== 'skipped' && !h.continueOnError) ?? r.handlers.find((h) => h.outcome === 'deadline');
    const last = bad?.attempts[bad.attempts.length - 1];
    let message = `${title} hook of container ${r.container} ${r.outcome === 'deadline' ? 'cut off at the grace-period deadline' : 'failed'}: ${r.reason ?? 'unknown'}`;
    if (bad && last) message += ` (handler [${bad.index}] ${bad.kind}, attempt ${last.attempt}, ${last.durationMs}ms)`;
    if (this.d.env.eventOutput && last?.outputTail) message += `; output: ${last.outputTail.slice(-400)}`;
    this.d.kube.event({ reason: r.phase === 'postStart' ? 'FailedPostStartHook' : 'FailedPreStopHook', type: 'Warning', container: r.container, message });
  }

  private async execute(container: string, h: HandlerSpec, signal: AbortSignal, found: ProcEntry | undefined): Promise<AttemptResult> {
    switch (h.kind) {
      case 'sleep':
        return runSleep(h.action.seconds, signal);
      case 'httpGet':
      case 'http':
        return runHttp(h.action, signal);
      case 'tcpSocket':
        return runTcp(h.action, signal);
      case 'signal':
      case 'exec': {
        // A retry may find a target that was not there yet.
        const target: Target | undefined = found ?? (await this.findTarget(container, 0));
        if (!target)
          return {
            ok: false,
            error: this.conflicts.get(container) ?? `no process of container ${container} found (${ENV_MARKER}=${container} in /proc/*/environ of a process the container runtime started)`,
          };
        if (h.kind === 'signal') return runSignal(h.action, target, signal, this.procRoot);
        if (!this.d.tools) return { ok: false, error: 'the exec helper dist/sidecar/hook-exec is missing from the sidecar image (built by npm run build)' };
        return runExec(h.action.command, target, signal, {
          procRoot: this.procRoot,
          tools: this.d.tools,
          self: this.d.self,
          onExcessCaps: (caps) => {
            const key = `${container}@${runId(target)}`;
            if (this.warnedCaps.has(key)) return;
            this.warnedCaps.add(key);
            this.d.log.warn(
              { container, pid: target.pid, caps },
              'target runs as uid 0 with a narrower capability bounding set; without CAP_SETPCAP the sidecar cannot narrow the exec command to it, so the command holds these extra capabilities',
            );
          },
        });
      }
    }
  }
}
