/**
 * The hooks annotation's text → data. Only the webhook parses YAML; it lives apart from
 * common/spec.ts so the sidecar, which reads JSON only, never loads the YAML parser at start-up.
 */
import { parse as parseYaml } from 'yaml';
import { ANNOTATION_HOOKS } from '../common/names.js';
import { HookSpecError } from '../common/spec.js';

/** The annotation is bounded well below the API server's 256 KiB total annotation limit. */
export const MAX_ANNOTATION_BYTES = 64 * 1024;

/** Parses the annotation's text: YAML or JSON, aliases bounded, duplicate keys refused. */
export function parseHooksText(text: string, source = ANNOTATION_HOOKS): unknown {
  if (Buffer.byteLength(text, 'utf8') > MAX_ANNOTATION_BYTES) {
    throw new HookSpecError('', `is ${Buffer.byteLength(text, 'utf8')} bytes; at most ${MAX_ANNOTATION_BYTES} are accepted`, source);
  }
  try {
    // maxAliasCount stops alias bombs ("billion laughs") before they expand.
    return parseYaml(text, { maxAliasCount: 50, uniqueKeys: true, prettyErrors: false });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0] ?? 'parse error';
    throw new HookSpecError('', `not valid YAML or JSON: ${msg}`, source);
  }
}
