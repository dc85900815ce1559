/**
 * The JSONPatch of a mutation: computed from the difference between the original and the desired
 * object, never written by hand (Istio, Pepr). Server-owned fields are stripped first so the patch
 * touches only what the mutation changed.
 */
import jsonpatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

function comparable(obj: unknown): object {
  const copy = structuredClone(obj) as { status?: unknown; metadata?: { managedFields?: unknown } };
  delete copy.status;
  if (copy.metadata) delete copy.metadata.managedFields;
  return copy;
}

export function computePatch(original: unknown, desired: unknown): Operation[] {
  return jsonpatch.compare(comparable(original), comparable(desired));
}

/** Applies a patch to a copy (the API server's side; used by tests and `inject` checks). */
export function applyPatch<T>(doc: T, patch: readonly Operation[]): T {
  return jsonpatch.applyPatch(structuredClone(doc), [...patch], true, false).newDocument;
}
