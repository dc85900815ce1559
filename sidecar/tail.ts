/** Keeps the last `limit` bytes of a stream of chunks: hook output is bounded in memory, logs and events. */
const OUTPUT_TAIL_BYTES = 4096;

export class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  total = 0;
  constructor(private readonly limit = OUTPUT_TAIL_BYTES) {}

  push(chunk: Buffer | string): void {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.total += b.length;
    this.chunks.push(b);
    this.size += b.length;
    while (this.size - (this.chunks[0]?.length ?? 0) >= this.limit && this.chunks.length > 1) this.size -= this.chunks.shift()!.length;
  }

  toString(): string {
    const all = Buffer.concat(this.chunks);
    const cut = all.length > this.limit ? all.subarray(all.length - this.limit) : all;
    // A cut may split a UTF-8 sequence; the replacement character is fine in a tail.
    return (this.total > cut.length ? '…' : '') + cut.toString('utf8');
  }
}
