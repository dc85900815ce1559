/**
 * Inputs of the benchmark: pods shaped like the ones the API server hands a mutating webhook
 * (defaulted fields, the service-account token volume, owner references), wrapped in
 * AdmissionReviews. The mix covers the four cases of issue 6.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';

/** Everything the API server's defaulting adds to a container of a Deployment's pod. */
function container(name: string, i: number, extra: Partial<V1Container> = {}): V1Container {
  return {
    name,
    image: `registry.example/team/${name}:1.${i}.0`,
    imagePullPolicy: 'IfNotPresent',
    ports: [{ name: 'http', containerPort: 8080 + i, protocol: 'TCP' }],
    env: [
      { name: 'LOG_LEVEL', value: 'info' },
      { name: 'POD_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } },
    ],
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
    readinessProbe: { httpGet: { path: '/ready', port: 'http' as unknown as number, scheme: 'HTTP' }, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
    volumeMounts: [{ name: 'kube-api-access-abcde', readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }],
    ...extra,
  };
}

function pod(name: string, containers: V1Container[], annotations?: Record<string, string>): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: `${name}-7d9f8b6c5d-`,
      namespace: 'shop',
      labels: { app: name, 'pod-template-hash': '7d9f8b6c5d' },
      ...(annotations ? { annotations } : {}),
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${name}-7d9f8b6c5d`, uid: 'a1b2c3d4-0000-4000-8000-000000000001', controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      containers,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 60,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      serviceAccount: 'default',
      securityContext: {},
      schedulerName: 'default-scheduler',
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
      priority: 0,
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      volumes: [
        {
          name: 'kube-api-access-abcde',
          projected: {
            defaultMode: 420,
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
            ],
          },
        },
      ],
    },
  };
}

/** A typical annotation (YAML, as people write it) for one container. */
function hooksYaml(name: string): string {
  return `${name}:
  shutdownSeconds: 10
  postStart:
    - httpGet: {path: /warmup, port: http}
      timeoutSeconds: 10
      retries: 3
  preStop:
    - sleep: {seconds: 5}
    - http: {method: POST, path: /drain, port: http, headers: {Content-Type: application/json}, body: '{"now":true}'}
      timeoutSeconds: 5
`;
}

export type PodKind = 'none' | 'one' | 'three' | 'fifty';

/** A pod with `n` containers, every one hooked through the annotation (the mutation_us inputs). */
export function hookedPod(n: number): V1Pod {
  const cs = Array.from({ length: n }, (_, i) => container(`c${i}`, i));
  return pod(`svc${n}`, cs, { 'hook-runner.dev/hooks': cs.map((c) => hooksYaml(c.name)).join('') });
}

function podOf(kind: PodKind): V1Pod {
  switch (kind) {
    case 'none':
      // Most pods in an opted-in namespace declare no hooks at all: a sidecar-less skip.
      return pod('plain', [container('app', 0)]);
    case 'one':
      return pod('web', [container('app', 0)], { 'hook-runner.dev/hooks': hooksYaml('app') });
    case 'three':
      // Native lifecycle blocks adopted, plus annotation hooks on two of them (one phase doubly declared).
      return pod(
        'shop',
        [
          container('app', 0, { lifecycle: { preStop: { sleep: { seconds: 3 } } } }),
          container('worker', 1, { lifecycle: { postStart: { exec: { command: ['/bin/warm', '--fast'] } } } }),
          container('proxy', 2),
        ],
        { 'hook-runner.dev/hooks': `${hooksYaml('app')}${hooksYaml('proxy')}` },
      );
    case 'fifty':
      return hookedPod(50);
  }
}

export function admissionReview(kind: PodKind, uid = `bench-${kind}`): object {
  const object = podOf(kind);
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'shop',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', uid: 'u-1', groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'] },
      object,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
}

/**
 * The request mix, in the order every connection cycles through it: a namespace where most pods
 * have no hooks or one hooked container, some have three, and an occasional 50-container pod.
 */
export const MIX: readonly PodKind[] = ['none', 'one', 'none', 'three', 'one', 'none', 'one', 'three', 'none', 'fifty'];
