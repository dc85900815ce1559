/**
 * The JSONPatch of a mutation: computed from the difference between the original and the desired
 * object, never written by hand (Istio, Pepr). Server-owned fields are stripped first so the patch
 * touches only what the mutation changed.
 */
import jsonpatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

/**
 * The object without its server-owned fields. Shallow copies of the two levels touched, not a deep
 * clone: `compare` only reads, and it skips subtrees that are the same object in both documents.
 */
function comparable(obj: unknown): object {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return obj as object;
  const { status: _status, ...copy } = obj as { status?: unknown; metadata?: unknown };
  const meta = copy.metadata;
  if (typeof meta === 'object' && meta !== null && !Array.isArray(meta) && 'managedFields' in meta) {
    const { managedFields: _managed, ...rest } = meta as { managedFields?: unknown };
    copy.metadata = rest;
  }
  return copy;
}

export function computePatch(original: unknown, desired: unknown): Operation[] {
  return jsonpatch.compare(comparable(original), comparable(desired));
}

/** Applies a patch to a copy (the API server's side; used by tests and `inject` checks). */
export function applyPatch<T>(doc: T, patch: readonly Operation[]): T {
  return jsonpatch.applyPatch(structuredClone(doc), [...patch], true, false).newDocument;
}
