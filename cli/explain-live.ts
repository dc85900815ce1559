/**
 * `hook-runner explain pod NAME`: reads the live pod and what explains it through the kubeconfig.
 * Its own module so that offline `explain -f` never loads @kubernetes/client-node (1-2 s on Node 20).
 */
import { CoreV1Api, VersionApi, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { SIDECAR_CONTAINER_NAME } from '../common/names.js';
import type { Config } from '../webhook/core/config.js';
import { callOptions, describeError } from '../webhook/cluster/kube.js';
import type { ResolvedMode } from '../webhook/core/mutate.js';
import { modeForVersion } from '../webhook/core/sidecar-mode.js';
import { HOOK_EVENT_REASONS, lastReportsFromLog, type ExplainInput, type LastReport } from './explain.js';
import { kubeConfigFrom } from './kubeconfig.js';

export interface LiveOptions {
  name: string;
  namespace?: string;
  kubeconfig?: string;
  context?: string;
  config: Config;
  modeFlag?: ResolvedMode;
  tailLines: number;
  /** Tests pass the fake API server's KubeConfig. */
  kc?: KubeConfig;
}

export async function liveInput(o: LiveOptions): Promise<ExplainInput> {
  const kc = o.kc ?? kubeConfigFrom(o);
  const namespace = o.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  const core = kc.makeApiClient(CoreV1Api);
  const opts = callOptions();
  let pod: V1Pod;
  try {
    pod = await core.readNamespacedPod({ name: o.name, namespace }, opts);
  } catch (e) {
    throw new Error(`cannot read pod ${namespace}/${o.name}: ${describeError(e)}`);
  }
  const warnings: string[] = [];
  let namespaceLabels: Record<string, string> | undefined;
  try {
    namespaceLabels = (await core.readNamespace({ name: namespace }, opts)).metadata?.labels ?? {};
  } catch (e) {
    warnings.push(`cannot read namespace ${namespace} (${describeError(e)}); its opt-in label and Pod Security level are not checked`);
  }
  let mode = o.modeFlag ?? (o.config.sidecar.mode === 'auto' ? undefined : o.config.sidecar.mode);
  if (!mode) {
    try {
      mode = modeForVersion(await kc.makeApiClient(VersionApi).getCode(opts));
    } catch (e) {
      mode = 'container';
      warnings.push(`cannot read the API server version (${describeError(e)}); assuming sidecar mode container`);
    }
  }
  const events = await core
    .listNamespacedEvent({ namespace, fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${o.name}` }, opts)
    .then((l) => l.items.filter((e) => HOOK_EVENT_REASONS.includes(e.reason ?? '') && (!pod.metadata?.uid || !e.involvedObject.uid || e.involvedObject.uid === pod.metadata.uid)))
    .catch((e: unknown) => {
      warnings.push(`cannot list the pod's events: ${describeError(e)}`);
      return [];
    });
  const hasSidecar = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].some((c) => c.name === SIDECAR_CONTAINER_NAME);
  let lastReports: LastReport[] | undefined;
  if (hasSidecar) {
    try {
      const log = await core.readNamespacedPodLog({ name: o.name, namespace, container: SIDECAR_CONTAINER_NAME, tailLines: o.tailLines }, opts);
      lastReports = lastReportsFromLog(String(log));
    } catch (e) {
      warnings.push(`cannot read the ${SIDECAR_CONTAINER_NAME} container's log for the last reports: ${describeError(e)}`);
      lastReports = [];
    }
  }
  const when = (e: (typeof events)[number]) => new Date((e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? 0) as unknown as string).getTime();
  events.sort((a, b) => when(a) - when(b));
  for (const w of warnings) process.stderr.write(`Warning: ${w}\n`);
  return {
    kind: 'Pod',
    name: o.name,
    namespace,
    source: 'live',
    pod,
    config: o.config,
    mode,
    ...(namespaceLabels ? { namespaceLabels } : {}),
    events,
    ...(lastReports ? { lastReports } : {}),
  };
}
