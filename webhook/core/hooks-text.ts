/**
 * The hooks annotation's text → data. Only the webhook parses YAML; it lives apart from
 * common/spec.ts so the sidecar, which reads JSON only, never loads the YAML parser at start-up.
 */
import { isNode, isScalar, parseDocument, visit } from 'yaml';
import { ANNOTATION_HOOKS } from '../../common/names.js';
import { HookSpecError } from '../../common/spec.js';

/** The annotation is bounded well below the API server's 256 KiB total annotation limit. */
const MAX_ANNOTATION_BYTES = 64 * 1024;

/**
 * The schema nests 8 levels at most. The YAML parser recurses per level: 64 KiB of `- - - …` or
 * `[[[…` overflows the stack, and after one such overflow V8 may abort the whole process on its next
 * regexp compile (seen with yaml 2.x on Node 20). So nesting is bounded before parsing.
 */
const MAX_NESTING = 128;

/**
 * An upper bound of the text's nesting, without parsing. Per line: each indent column may open a
 * map and a zero-indented sequence (2 levels); each block indicator (`- `, `? `, `: `) one more; each
 * open flow bracket 2 (`[a: [b: …]]` makes a map inside each list). Quotes are not tracked, so
 * brackets inside strings count too: the bound errs on the safe side.
 */
function nestingBound(text: string): number {
  let flow = 0;
  let max = 0;
  for (const line of text.split('\n')) {
    const indent = /^ */.exec(line)![0].length;
    let indicators = 0;
    let peak = flow;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i]!;
      if (ch === '[' || ch === '{') peak = Math.max(peak, ++flow);
      else if ((ch === ']' || ch === '}') && flow > 0) flow--;
      else if (flow === 0 && (ch === '-' || ch === '?' || ch === ':')) {
        const next = line[i + 1];
        const prev = line[i - 1];
        if ((next === undefined || next === ' ' || next === '\t') && (ch === ':' || prev === undefined || prev === ' ' || prev === '\t')) indicators++;
      }
    }
    max = Math.max(max, 2 * indent + indicators + 2 * peak);
  }
  return max;
}

/**
 * Parsed annotations by text, least recently used first. The replicas of a workload carry the same
 * text, so most admissions skip the YAML parser, which is most of a mutation's cost (see
 * docs/benchmarks.md). Only accepted texts are kept; values are deep-frozen because every caller
 * shares them (they are read, never changed). Bounded by entries and by bytes of text.
 */
const CACHE_MAX_ENTRIES = 256;
const CACHE_MAX_BYTES = 1024 * 1024;
const parsedCache = new Map<string, unknown>();
let parsedCacheBytes = 0;

export function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  // Bounded: each object is frozen once; aliases (at most 50) point at frozen objects.
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null || Object.isFrozen(v)) continue;
    Object.freeze(v);
    for (const c of Object.values(v)) if (typeof c === 'object' && c !== null) stack.push(c);
  }
  return value;
}

function remember(text: string, value: unknown): unknown {
  parsedCache.set(text, deepFreeze(value));
  parsedCacheBytes += text.length;
  while (parsedCache.size > CACHE_MAX_ENTRIES || parsedCacheBytes > CACHE_MAX_BYTES) {
    const oldest = parsedCache.keys().next().value as string;
    parsedCache.delete(oldest);
    parsedCacheBytes -= oldest.length;
  }
  return value;
}

/** Parses the annotation's text: YAML or JSON, size, nesting and aliases bounded, duplicate keys refused. */
export function parseHooksText(text: string, source = ANNOTATION_HOOKS): unknown {
  if (parsedCache.has(text)) {
    const v = parsedCache.get(text);
    parsedCache.delete(text);
    parsedCache.set(text, v);
    return v;
  }
  if (Buffer.byteLength(text, 'utf8') > MAX_ANNOTATION_BYTES) {
    throw new HookSpecError('', `is ${Buffer.byteLength(text, 'utf8')} bytes; at most ${MAX_ANNOTATION_BYTES} are accepted`, source);
  }
  const depth = nestingBound(text);
  if (depth > MAX_NESTING) {
    throw new HookSpecError('', `nests deeper than the hooks schema ever needs (up to ${depth} levels by indentation and brackets; at most ${MAX_NESTING} are accepted)`, source);
  }
  try {
    // The parser's own uniqueKeys check compares each key with every earlier one of its map: 64 KiB
    // of keys held the event loop ~0.3 s, and collection keys (`{a: 1}: x`, which the schema never
    // has) ~1 s. So keys are checked here, in one pass with a Set per map.
    const doc = parseDocument(text, { uniqueKeys: false, prettyErrors: false });
    if (doc.errors.length > 0) throw doc.errors[0]!;
    visit(doc, {
      Map(_, map) {
        // By their text as a JS object key: `1` and "1" would land on the same key.
        const seen = new Set<string>();
        for (const pair of map.items) {
          // `pos` as the parser's own errors carry it, so yamlErrorText names the line and column.
          const at = (message: string) => Object.assign(new Error(message), isNode(pair.key) && pair.key.range ? { pos: [pair.key.range[0], pair.key.range[1]] } : {});
          if (!isScalar(pair.key)) throw at('map keys must be plain strings, not lists or maps');
          const key = String(pair.key.value);
          if (seen.has(key)) throw at(`Map keys must be unique; ${JSON.stringify(key)} is repeated`);
          seen.add(key);
        }
      },
    });
    // maxAliasCount stops alias bombs ("billion laughs") before they expand.
    return remember(text, doc.toJS({ maxAliasCount: 50 }));
  } catch (e) {
    throw new HookSpecError('', `not valid YAML or JSON: ${yamlErrorText(e, text, ' of the annotation')}`, source);
  }
}

/**
 * A YAML parser error as one line: what, where (`at line 2, column 5`, 1-based, counted in `text`
 * from the error's offset) and the text of that line, so the reader sees what the parser saw.
 * `where` follows the position (` of the annotation`).
 */
export function yamlErrorText(e: unknown, text: string, where = ''): string {
  const err = e as { message?: unknown; pos?: [number, number] };
  // With prettyErrors the yaml package appends " at line L, column C:" and an excerpt; one line here.
  const what = String(err.message ?? e)
    .split('\n')[0]!
    .replace(/ at line \d+, column \d+:?$/, '');
  const offset = err.pos?.[0];
  if (typeof offset !== 'number' || offset < 0 || offset > text.length) return what;
  const start = text.lastIndexOf('\n', offset - 1) + 1;
  const lineNo = text.slice(0, start).split('\n').length;
  const end = text.indexOf('\n', start);
  const line = text.slice(start, end === -1 ? undefined : end).replace(/\r$/, '');
  const shown = line.length > 80 ? `${line.slice(0, 80)}…` : line;
  return `${what} at line ${lineNo}, column ${offset - start + 1}${where}: ${JSON.stringify(shown)}`;
}
