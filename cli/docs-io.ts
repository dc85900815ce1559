/**
 * Reading manifests for the offline subcommands (`uninject`, `explain -f`): every `-f` in order,
 * `-` for standard input (once), each YAML/JSON stream parsed as `inject` parses it.
 */
import { readFileSync } from 'node:fs';
import { parseDocuments } from '../webhook/core/inject.js';

export interface SourcedDocument {
  doc: unknown;
  /** File name (or `stdin`) the document came from. */
  source: string;
  /** Position in its file, from 0. */
  index: number;
}

/** All documents of all files; throws naming the file (and document) that cannot be read or parsed. */
export function readManifests(files: readonly string[], readStdin: () => string = () => readFileSync(0, 'utf8')): SourcedDocument[] {
  const out: SourcedDocument[] = [];
  let stdinRead = false;
  for (const f of files) {
    const source = f === '-' ? 'stdin' : f;
    let text: string;
    if (f === '-') {
      if (stdinRead) throw new Error('-f - is given more than once; standard input can be read only once');
      stdinRead = true;
      text = readStdin();
    } else {
      try {
        text = readFileSync(f, 'utf8');
      } catch (e) {
        throw new Error(`cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    parseDocuments(text, source).forEach((doc, index) => out.push({ doc, source, index }));
  }
  return out;
}
