/**
 * Strict structural check of Kubernetes objects against @kubernetes/client-node's generated models:
 * every field must be known to the model (what the API server's strict field validation rejects
 * otherwise), every value of the right JSON type, and the fields the API requires present.
 */
import * as k8s from '@kubernetes/client-node';

interface Attr {
  name: string;
  baseName: string;
  type: string;
}
type Model = { getAttributeTypeMap(): Attr[] };

/** Fields the API server requires, by model (the generated models do not record them). */
const REQUIRED: Record<string, string[]> = {
  V1PodSpec: ['containers'],
  V1Container: ['name'],
  V1EnvVar: ['name'],
  V1ContainerPort: ['containerPort'],
  V1HTTPGetAction: ['port'],
  V1HTTPHeader: ['name', 'value'],
  V1TCPSocketAction: ['port'],
  V1SleepAction: ['seconds'],
  V1ObjectFieldSelector: ['fieldPath'],
  V1DeploymentSpec: ['selector', 'template'],
  V1StatefulSetSpec: ['selector', 'template'],
  V1DaemonSetSpec: ['selector', 'template'],
  V1JobSpec: ['template'],
  V1CronJobSpec: ['schedule', 'jobTemplate'],
  V1SeccompProfile: ['type'],
};

const models = k8s as unknown as Record<string, Model | undefined>;

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

export function validateAgainst(value: unknown, type: string, path = ''): string[] {
  const errors: string[] = [];
  const expect = (ok: boolean, what: string) => {
    if (!ok) errors.push(`${path || '(root)'}: expected ${what}, got ${jsonType(value)}`);
  };
  if (value === undefined || value === null) return errors;
  const arr = /^Array<(.+)>$/.exec(type);
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (arr) {
    expect(Array.isArray(value), 'a list');
    if (Array.isArray(value)) value.forEach((v, i) => errors.push(...validateAgainst(v, arr[1]!, `${path}[${i}]`)));
  } else if (map) {
    expect(jsonType(value) === 'object', 'a map');
    if (jsonType(value) === 'object') for (const [k, v] of Object.entries(value as object)) errors.push(...validateAgainst(v, map[1]!, `${path}.${k}`));
  } else if (type === 'string' || type === 'Date') {
    expect(typeof value === 'string', 'a string');
  } else if (type === 'number') {
    expect(typeof value === 'number', 'a number');
  } else if (type === 'boolean') {
    expect(typeof value === 'boolean', 'a boolean');
  } else if (type === 'IntOrString') {
    expect(typeof value === 'string' || (typeof value === 'number' && Number.isInteger(value)), 'an integer or a string');
  } else if (type === 'any' || type === 'object') {
    // free-form
  } else {
    const model = models[type];
    if (!model?.getAttributeTypeMap) return [`${path}: no model ${type} to validate against`];
    if (jsonType(value) !== 'object') return [`${path || '(root)'}: expected a ${type} object, got ${jsonType(value)}`];
    const attrs = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a]));
    const obj = value as Record<string, unknown>;
    for (const [k, v] of Object.entries(obj)) {
      const a = attrs.get(k);
      if (!a) {
        errors.push(`${path ? `${path}.` : ''}${k}: unknown field of ${type}`);
        continue;
      }
      errors.push(...validateAgainst(v, a.type, path ? `${path}.${k}` : k));
    }
    for (const r of REQUIRED[type] ?? []) if (obj[r] === undefined) errors.push(`${path ? `${path}.` : ''}${r}: required field of ${type} is missing`);
  }
  return errors;
}

/** The model type for a document's apiVersion/kind, e.g. apps/v1 Deployment → V1Deployment. */
export function modelTypeOf(doc: { apiVersion?: string; kind?: string }): string {
  const version = (doc.apiVersion ?? 'v1').split('/').pop()!;
  return `${version.charAt(0).toUpperCase()}${version.slice(1)}${doc.kind}`;
}

export function validateKubernetesObject(doc: unknown): string[] {
  const d = doc as { apiVersion?: string; kind?: string };
  return validateAgainst(doc, modelTypeOf(d));
}
