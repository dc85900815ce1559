/**
 * At-least-once safety (DESIGN §6): a second call for the same container run and phase joins the one
 * in flight, or gets the stored answer once it finished. A new run (new main-process start time)
 * starts afresh. When the run cannot be identified (environ unreadable), calls join only while in flight.
 */
export interface Joined<T> {
  promise: Promise<T>;
  /** true when this call reuses a run started by an earlier call. */
  joined: boolean;
}

interface Entry<T> {
  runId: string | undefined;
  inFlight: boolean;
  promise: Promise<T>;
}

export class HookRegistry<T> {
  // One entry per container/phase: only the latest run is kept, so memory stays bounded.
  private readonly entries = new Map<string, Entry<T>>();

  join(container: string, phase: string, runId: string | undefined, start: () => Promise<T>): Joined<T> {
    const key = `${container}/${phase}`;
    const e = this.entries.get(key);
    if (e && (e.inFlight ? e.runId === runId : runId !== undefined && e.runId === runId)) return { promise: e.promise, joined: true };
    const entry: Entry<T> = { runId, inFlight: true, promise: Promise.resolve() as unknown as Promise<T> };
    entry.promise = start().finally(() => {
      entry.inFlight = false;
    });
    this.entries.set(key, entry);
    return { promise: entry.promise, joined: false };
  }

  inFlight(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.inFlight) n++;
    return n;
  }
}
