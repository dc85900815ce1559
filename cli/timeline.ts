/**
 * The PreStop grace budget drawn as a timeline (for `hook-runner explain`), pure: numbers in,
 * lines of text out. Every number comes from common/budget.ts; this module only draws.
 *
 *   0s        10s       20s       30s
 *   |---------+---------+---------+------
 *   [0] sleep 5s      =====                     0-5s
 *   [1] http POST ..       ===============xxxx  5-35s, cut off at 24.75s
 *   cut-off                               |     ...
 */
import type { Style } from './term.js';

/** The kubelet gives a container at least this long after PreStop (`minimumGracePeriodInSeconds`). */
const KUBELET_MIN_AFTER_PRESTOP_SECONDS = 2;

interface TimelineHandler {
  label: string;
  startSeconds: number;
  worstCaseSeconds: number;
}

export interface TimelineInput {
  graceSeconds: number;
  shutdownSeconds: number;
  /** When hook-runner answers the PreStop call at the latest (grace − shutdown − margin). */
  cutoffSeconds: number;
  handlers: TimelineHandler[];
}

const BAR_WIDTH = 50;
const LABEL_WIDTH = 24;
const STEPS = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 43200, 86400];

/** Seconds as the timeline prints them: integers plain, else up to two decimals. */
export function secs(n: number): string {
  return `${Number.isInteger(n) ? n : Number(n.toFixed(2))}s`;
}

/** The label padded to the column, cut with `..` so that one space always separates it from the bar. */
function fit(label: string, width: number): string {
  return label.length > width - 1 ? `${label.slice(0, width - 3)}.. ` : label.padEnd(width);
}

export function drawTimeline(t: TimelineInput, style: Style): string[] {
  const worst = t.handlers.reduce((m, h) => Math.max(m, h.startSeconds + h.worstCaseSeconds), 0);
  const answer = Math.min(worst, t.cutoffSeconds);
  const end = Math.max(t.graceSeconds, worst, answer + KUBELET_MIN_AFTER_PRESTOP_SECONDS, 1);
  const step = STEPS.find((s) => end / s <= 5) ?? STEPS[STEPS.length - 1]!;
  const horizon = Math.ceil(end / step) * step;
  const col = (s: number) => Math.round((s * BAR_WIDTH) / horizon);
  const pad = ' '.repeat(LABEL_WIDTH + 2);

  // Axis: tick labels over a ruler with + at each tick.
  const labels = Array<string>(BAR_WIDTH + 8).fill(' ');
  const ruler = Array<string>(BAR_WIDTH + 1).fill('-');
  for (let s = 0; s <= horizon; s += step) {
    const c = col(s);
    ruler[c] = s === 0 ? '|' : '+';
    secs(s)
      .split('')
      .forEach((ch, i) => (labels[c + i] = ch));
  }
  const lines = [`${pad}${labels.join('').trimEnd()}`, `${pad}${ruler.join('')}`];

  const row = (label: string, cells: string[], note: string) => lines.push(`  ${fit(label, LABEL_WIDTH)}${cells.join('')}  ${note}`.trimEnd());
  const blank = () => Array<string>(BAR_WIDTH + 1).fill(' ');
  const span = (cells: string[], from: number, to: number, ch: (c: number) => string) => {
    const a = col(from);
    const b = Math.max(a + 1, col(to));
    for (let c = a; c < b && c <= BAR_WIDTH; c++) cells[c] = ch(c);
  };

  const cutCol = col(t.cutoffSeconds);
  for (const h of t.handlers) {
    const cells = blank();
    const to = h.startSeconds + h.worstCaseSeconds;
    span(cells, h.startSeconds, to, (c) => (c >= cutCol ? style.red('x') : '='));
    const cut = to > t.cutoffSeconds;
    const note = `${secs(h.startSeconds)}-${secs(to)}${cut ? (h.startSeconds >= t.cutoffSeconds ? ', starts after the cut-off: never runs' : `, cut off at ${secs(t.cutoffSeconds)}`) : ''}`;
    row(h.label, cells, cut ? style.red(note) : note);
  }
  const mark = (at: number, label: string, note: string) => {
    const cells = blank();
    cells[Math.min(col(at), BAR_WIDTH)] = '|';
    row(label, cells, note);
  };
  mark(t.cutoffSeconds, 'cut-off', `${secs(t.cutoffSeconds)}: hook-runner answers PreStop by then, whatever still runs`);
  const shutdown = blank();
  span(shutdown, t.graceSeconds - t.shutdownSeconds, t.graceSeconds, () => '#');
  row('shutdownSeconds', shutdown, `${secs(t.shutdownSeconds)} kept for the app after its stop signal`);
  const floor = blank();
  span(floor, answer, answer + KUBELET_MIN_AFTER_PRESTOP_SECONDS, () => '.');
  row('2s floor', floor, `the kubelet gives at least ${KUBELET_MIN_AFTER_PRESTOP_SECONDS}s after PreStop, even past the grace end`);
  mark(t.graceSeconds, 'grace end', `${secs(t.graceSeconds)}: SIGKILL`);
  return lines;
}
