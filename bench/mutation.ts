/**
 * The pure mutation's cost per pod, in-process: `mutatePod` (parse + validate the annotation,
 * build the sidecar, rewrite containers) and the whole `reviewAdmission` (the mutation plus the
 * JSONPatch and the base64 response). `cN` repeats one pod, as the replicas of a workload do (the
 * parsed annotation comes from the cache); `cold_cN` makes every annotation text new. Bounded by
 * both an iteration count and a time budget.
 */
import { packageVersion } from '../common/version.js';
import { reviewAdmission } from '../webhook/core/admission.js';
import { defaultConfig } from '../webhook/core/config.js';
import { mutatePod } from '../webhook/core/mutate.js';
import { hookedPod } from './fixtures.js';
import { median } from './stats.js';

export const MUTATION_SIZES = [1, 10, 50] as const;

/** Median over `rounds` of the mean µs per call of `fn` (each round at most `maxIters` calls or `budgetMs`). */
function timeUs(fn: () => void, rounds: number, maxIters: number, budgetMs: number): number {
  // Warm-up (let the JIT settle), bounded by count and by the round budget.
  const warmEnd = performance.now() + budgetMs;
  for (let i = 0; i < Math.min(50, maxIters) && performance.now() < warmEnd; i++) fn();
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    const end = start + BigInt(Math.round(budgetMs * 1e6));
    let n = 0;
    let now = start;
    while (n < maxIters && now < end) {
      fn();
      n++;
      now = process.hrtime.bigint();
    }
    perRound.push(Number(now - start) / 1e3 / n);
  }
  return median(perRound);
}

export interface MutationResults {
  mutation_us: Record<string, number>;
  review_us: Record<string, number>;
}

export function benchMutation(o: { rounds: number; budgetMs: number }): MutationResults {
  const config = defaultConfig(packageVersion());
  const mutation_us: Record<string, number> = {};
  const review_us: Record<string, number> = {};
  for (const n of MUTATION_SIZES) {
    const pod = hookedPod(n);
    const body = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: { uid: 'u', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: 'shop', operation: 'CREATE', object: pod },
    };
    const check = mutatePod(pod, { config, mode: 'native' });
    if (!check.injected || check.status.containers.length !== n) throw new Error(`bench pod with ${n} containers was not injected`);
    mutation_us[`c${n}`] = timeUs(() => void mutatePod(pod, { config, mode: 'native' }), o.rounds, 20_000, o.budgetMs);
    // Cold: a text never seen before each time (a new comment line), so the annotation cache misses
    // and the YAML parser runs, as for the first pod of a new workload.
    const text = pod.metadata!.annotations!['hook-runner.dev/hooks']!;
    let seq = 0;
    mutation_us[`cold_c${n}`] = timeUs(
      () => {
        const fresh = { ...pod, metadata: { ...pod.metadata, annotations: { 'hook-runner.dev/hooks': `${text}# ${seq++}\n` } } };
        void mutatePod(fresh, { config, mode: 'native' });
      },
      o.rounds,
      2_000,
      o.budgetMs,
    );
    review_us[`c${n}`] = timeUs(() => void reviewAdmission(body, { config, mode: 'native' }), o.rounds, 20_000, o.budgetMs);
  }
  return { mutation_us, review_us };
}
