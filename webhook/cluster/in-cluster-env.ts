// Kept apart from in-cluster.ts so the CLI can decide without loading @kubernetes/client-node.
/**
 * Whether this process runs in a pod (the kubelet sets KUBERNETES_SERVICE_HOST). Outside a cluster
 * (`npm start`, a workstation) `--self-signed` keeps its in-memory certificate and there is no API
 * server to ask; the CLI should call {@link startInCluster} only when this is true.
 */
export function inClusterEnvironment(env: NodeJS.ProcessEnv = process.env): boolean {
  return !!env.KUBERNETES_SERVICE_HOST;
}
