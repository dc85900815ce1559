/**
 * `hook-runner explain`: the IO around cli/explain.ts. Offline (`-f`, the documents `inject`
 * reads) or live (`pod NAME -n NS`, through the current kubeconfig: the Pod, its Namespace, its
 * Events and the sidecar's log for the last reports).
 */
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import type { V1Pod } from '@kubernetes/client-node';
import { isObj } from '../common/spec.js';
import { loadConfig, type Config } from '../webhook/core/config.js';
import { documentLabel, templateOf } from '../webhook/core/inject.js';
import type { PodSecurityLevel, ResolvedMode } from '../webhook/core/mutate.js';
import { readManifests } from './docs-io.js';
import { explain, renderExplanation, type ExplainInput, type Explanation } from './explain.js';
import { styleFor } from './term.js';
import { packageVersion } from '../common/version.js';

const HELP = `Usage:
  hook-runner explain -f FILE|- [-f FILE ...] [--config F] [--sidecar-mode M] [--pod-security LEVEL] [-o text|json|yaml]
  hook-runner explain pod NAME [-n NAMESPACE] [--kubeconfig F] [--context C] [--config F] [-o text|json|yaml]

Explains what hook-runner does to a pod: whether it is (or would be) injected and, if not, why
(one word: no-hooks, opted-out, namespace-not-enabled, namespace-excluded, invalid-hooks,
unsupported-pod); each container's hooks after normalisation; the sidecar's privileges and the
Pod Security level they need; and the PreStop grace budget drawn as a timeline (each handler's
worst case, hook-runner's cut-off, shutdownSeconds, the kubelet's 2s floor, the grace end), with
a warning and the fix when it does not fit.

With -f it reads manifests offline, like 'hook-runner inject' (Pods and the pod templates of
workloads). With 'pod NAME' it reads the live Pod, its Namespace's labels, its hook Events and the
last report of each hook from the sidecar's log (kubectl logs access is enough).

Options:
  -f, --filename FILE     manifest to read (YAML or JSON); - reads stdin; repeat for several files
  -n, --namespace NS      namespace of the live pod [the kubeconfig context's, else default]
      --kubeconfig F      kubeconfig file [$KUBECONFIG, ~/.kube/config]
      --context C         kubeconfig context [current]
      --config F          hook-runner configuration (defaults, allowed handlers and hosts) [defaults]
      --sidecar-mode M    native or container, for pods not injected yet [config; auto: native
                          offline, the API server's version live]
      --pod-security L    offline: the namespace's pod-security.kubernetes.io/enforce level to
                          assume (privileged, baseline, restricted) [none]
      --tail-lines N      live: sidecar log lines to read for the last reports [2000]
  -o, --output FORMAT     text, json or yaml [text]
  -h, --help              this text

Colour only on a terminal, never with NO_COLOR set.
Exit status: 0 when explained, 1 when a pod would be denied or cannot be read, 2 on a usage error.
`;

type Output = 'text' | 'json' | 'yaml';

export async function runExplainCli(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        filename: { type: 'string', short: 'f', multiple: true },
        namespace: { type: 'string', short: 'n' },
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        config: { type: 'string' },
        'sidecar-mode': { type: 'string' },
        'pod-security': { type: 'string' },
        'tail-lines': { type: 'string', default: '2000' },
        output: { type: 'string', short: 'o', default: 'text' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    process.stderr.write(`hook-runner explain: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const args = parsed.values;
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (msg: string): number => {
    process.stderr.write(`hook-runner explain: ${msg}\nRun 'hook-runner explain --help' for usage.\n`);
    return 2;
  };
  const pos = parsed.positionals;
  const files = args.filename ?? [];
  if (files.length > 0 && pos.length > 0) return usage('give either -f FILE or pod NAME, not both');
  if (files.length === 0 && !(pos.length === 2 && (pos[0] === 'pod' || pos[0] === 'pods' || pos[0] === 'po'))) {
    return usage(pos.length ? `expected 'pod NAME', got ${JSON.stringify(pos.join(' '))}` : '-f FILE or pod NAME is required');
  }
  const output = args.output as Output;
  if (!['text', 'json', 'yaml'].includes(output)) return usage(`-o must be text, json or yaml, got ${JSON.stringify(args.output)}`);
  const modeFlag = args['sidecar-mode'];
  if (modeFlag !== undefined && modeFlag !== 'native' && modeFlag !== 'container') return usage(`--sidecar-mode must be native or container, got ${JSON.stringify(modeFlag)}`);
  const ps = args['pod-security'];
  if (ps !== undefined && !['privileged', 'baseline', 'restricted'].includes(ps)) return usage(`--pod-security must be privileged, baseline or restricted, got ${JSON.stringify(ps)}`);
  const tailLines = Number(args['tail-lines']);
  if (!Number.isInteger(tailLines) || tailLines < 1) return usage(`--tail-lines must be a positive integer, got ${JSON.stringify(args['tail-lines'])}`);

  let explanations: Explanation[];
  try {
    const config = loadConfig(args.config, packageVersion());
    if (files.length > 0) {
      const mode: ResolvedMode = (modeFlag as ResolvedMode | undefined) ?? (config.sidecar.mode === 'container' ? 'container' : 'native');
      explanations = offlineInputs(files, config, mode, ps as PodSecurityLevel | undefined).map(explain);
      if (explanations.length === 0) throw new Error(`no Pod or workload with a pod template in ${files.join(', ')}`);
    } else {
      const { liveInput } = await import('./explain-live.js');
      explanations = [
        explain(await liveInput({ name: pos[1]!, namespace: args.namespace, kubeconfig: args.kubeconfig, context: args.context, config, modeFlag: modeFlag as ResolvedMode | undefined, tailLines })),
      ];
    }
  } catch (e) {
    process.stderr.write(`hook-runner explain: ${(e as Error).message}\n`);
    return 1;
  }
  process.stdout.write(formatExplanations(explanations, output, styleFor(process.stdout)));
  return explanations.some((x) => x.injection.state === 'denied') ? 1 : 0;
}

export function formatExplanations(xs: Explanation[], output: Output, style: ReturnType<typeof styleFor>): string {
  if (output === 'json') return `${JSON.stringify(xs, null, 2)}\n`;
  if (output === 'yaml') return stringify(xs, { lineWidth: 0 });
  return xs.map((x) => renderExplanation(x, style)).join('\n');
}

/** Every Pod and pod template of the files, as explain inputs (other documents are not pods). */
export function offlineInputs(files: readonly string[], config: Config, mode: ResolvedMode, podSecurityLevel?: PodSecurityLevel, readStdin?: () => string): ExplainInput[] {
  const out: ExplainInput[] = [];
  const visit = (doc: unknown, source: string) => {
    if (!isObj(doc)) return;
    if (doc.kind === 'List' && Array.isArray(doc.items)) {
      doc.items.forEach((item, i) => visit(item, `${source} items[${i}]`));
      return;
    }
    const meta = isObj(doc.metadata) ? doc.metadata : {};
    const base = {
      kind: String(doc.kind),
      name: String(meta.name ?? meta.generateName ?? '(unnamed)'),
      ...(typeof meta.namespace === 'string' ? { namespace: meta.namespace } : {}),
      config,
      mode,
      ...(podSecurityLevel ? { podSecurityLevel } : {}),
    };
    if (doc.kind === 'Pod' && (doc.apiVersion ?? 'v1') === 'v1') {
      out.push({ ...base, source, pod: doc as V1Pod });
      return;
    }
    const t = templateOf(doc);
    if (t) out.push({ ...base, source: `${source}, pod template`, pod: { metadata: t.template.metadata, spec: t.template.spec } as V1Pod });
  };
  for (const { doc, source, index } of readManifests(files, readStdin)) visit(doc, `${source} ${documentLabel(index, doc).replace(/ \(.*\)$/, '')}`);
  return out;
}
