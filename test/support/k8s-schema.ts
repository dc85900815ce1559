/**
 * Strict structural check of Kubernetes objects against @kubernetes/client-node's generated models,
 * what the API server's strict field validation and OpenAPI schema would reject: unknown fields,
 * values of the wrong JSON type, and missing required fields (non-optional in the model's .d.ts,
 * which the generator derives from the OpenAPI `required` lists).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';

export interface Attr {
  baseName: string;
  type: string;
}
/** Schemas for kinds client-node has no model of (e.g. cert-manager's CRDs), in the same form. */
export type ExtraModels = Record<string, { attrs: Attr[]; required: string[] }>;

interface Model {
  attrs: Map<string, Attr>;
  required: string[];
}

const MODELS_DIR = join(dirname(fileURLToPath(import.meta.resolve('@kubernetes/client-node'))), 'gen', 'models');
const modelCache = new Map<string, Model | null>();

function model(type: string, extraModels: ExtraModels): Model | null {
  const local = extraModels[type];
  if (!local && modelCache.has(type)) return modelCache.get(type)!;
  let m: Model | null = null;
  const cls = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => Attr[] } | undefined>)[type];
  if (local) {
    m = { attrs: new Map(local.attrs.map((x) => [x.baseName, x])), required: local.required };
  } else if (cls?.getAttributeTypeMap) {
    const dts = readFileSync(join(MODELS_DIR, `${type}.d.ts`), 'utf8');
    const required = [...dts.matchAll(/^\s+'([^']+)'(\?)?:/gm)].filter((x) => !x[2]).map((x) => x[1]!);
    m = { attrs: new Map(cls.getAttributeTypeMap().map((x) => [x.baseName, x])), required };
  }
  if (!local) modelCache.set(type, m);
  return m;
}

function jsonType(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

export function validateAgainst(value: unknown, type: string, path = '', extraModels: ExtraModels = {}): string[] {
  if (value === undefined) return [];
  const at = path || '(root)';
  const arr = /^Array<(.+)>$/.exec(type);
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (arr) {
    if (!Array.isArray(value)) return [`${at}: expected a list, got ${jsonType(value)}`];
    return value.flatMap((v, i) => validateAgainst(v, arr[1]!, `${path}[${i}]`, extraModels));
  }
  if (map) {
    if (jsonType(value) !== 'object') return [`${at}: expected a map, got ${jsonType(value)}`];
    return Object.entries(value as object).flatMap(([k, v]) => validateAgainst(v, map[1]!, `${path}.${k}`, extraModels));
  }
  switch (type) {
    case 'string':
    case 'Date':
      return typeof value === 'string' ? [] : [`${at}: expected a string, got ${jsonType(value)}`];
    case 'number':
      return typeof value === 'number' ? [] : [`${at}: expected a number, got ${jsonType(value)}`];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${at}: expected a boolean, got ${jsonType(value)}`];
    case 'IntOrString':
      return typeof value === 'string' || Number.isInteger(value) ? [] : [`${at}: expected an integer or a string, got ${jsonType(value)}`];
    case 'any':
    case 'object':
      return [];
  }
  const m = model(type, extraModels);
  if (!m) return [`${at}: no schema for ${type}`];
  if (jsonType(value) !== 'object') return [`${at}: expected a ${type} object, got ${jsonType(value)}`];
  const obj = value as Record<string, unknown>;
  const errors: string[] = [];
  const sub = (k: string) => (path ? `${path}.${k}` : k);
  for (const [k, v] of Object.entries(obj)) {
    const attr = m.attrs.get(k);
    if (!attr) errors.push(`${sub(k)}: unknown field of ${type}`);
    else if (v === null) errors.push(`${sub(k)}: null is not a ${attr.type}`);
    else errors.push(...validateAgainst(v, attr.type, sub(k), extraModels));
  }
  for (const r of m.required) if (obj[r] === undefined || obj[r] === null) errors.push(`${sub(r)}: required field of ${type} is missing`);
  return errors;
}

/** apps/v1 Deployment → V1Deployment; cert-manager.io/v1 Certificate → CertManagerV1Certificate; monitoring.coreos.com/v1 PodMonitor → MonitoringV1PodMonitor. */
export function modelTypeOf(doc: { apiVersion?: string; kind?: string }): string {
  const [group, version] = (doc.apiVersion ?? '').includes('/') ? doc.apiVersion!.split('/') : ['', doc.apiVersion ?? ''];
  const v = `${version!.charAt(0).toUpperCase()}${version!.slice(1)}`;
  if (group === 'cert-manager.io') return `CertManager${v}${doc.kind}`;
  if (group === 'monitoring.coreos.com') return `Monitoring${v}${doc.kind}`;
  return `${v}${doc.kind}`;
}

export function validateKubernetesObject(doc: unknown, extraModels: ExtraModels = {}): string[] {
  const d = doc as { apiVersion?: string; kind?: string; metadata?: { name?: string } };
  if (!d.apiVersion || !d.kind) return ['(root): apiVersion and kind are required'];
  if (!d.metadata?.name) return ['metadata.name: required'];
  return validateAgainst(doc, modelTypeOf(d), '', extraModels);
}
