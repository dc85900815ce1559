/**
 * Process discovery through the pod's shared PID namespace (DESIGN §6). Pure parsers of /proc text
 * first (unit-tested on fixtures), then a small adapter that reads a /proc tree.
 */
import { closeSync, openSync, readFileSync, readSync, readdirSync, readlinkSync } from 'node:fs';
import { ENV_MARKER } from '../common/names.js';

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgrp: number;
  /** Start time in clock ticks since boot: with the pid, it names one run of a process. */
  startTime: number;
}

/** Parses /proc/PID/stat. `comm` may hold spaces and parentheses, so fields are read after the last ')'. */
export function parseStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error(`malformed /proc stat: ${JSON.stringify(text.slice(0, 80))}`);
  const pid = Number(text.slice(0, open).trim());
  const rest = text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state); starttime is field 22.
  const state = rest[0] ?? '?';
  const ppid = Number(rest[1]);
  const pgrp = Number(rest[2]);
  const startTime = Number(rest[19]);
  if (!Number.isInteger(pid) || !Number.isInteger(ppid) || !Number.isFinite(startTime)) {
    throw new Error(`malformed /proc stat: ${JSON.stringify(text.slice(0, 80))}`);
  }
  return { pid, comm: text.slice(open + 1, close), state, ppid, pgrp, startTime };
}

/** Parses /proc/PID/environ (NUL-separated NAME=value) into ordered entries. */
export function parseEnviron(text: string | Buffer): string[] {
  const s = typeof text === 'string' ? text : text.toString('utf8');
  return s.split('\0').filter((e) => e.length > 0);
}

export function environValue(entries: readonly string[], name: string): string | undefined {
  const prefix = `${name}=`;
  // The last definition wins, as with getenv on a duplicated entry.
  for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.startsWith(prefix)) return entries[i]!.slice(prefix.length);
  return undefined;
}

export interface ProcStatus {
  uid: number;
  gid: number;
  groups: number[];
  capEff: bigint;
  capBnd: bigint;
  capPrm: bigint;
}

/** Parses the fields of /proc/PID/status that exec needs: effective uid/gid, groups, capability sets. */
export function parseStatus(text: string): ProcStatus {
  const field = (name: string): string => {
    const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(text);
    if (!m) throw new Error(`/proc status has no ${name} line`);
    return m[1]!.trim();
  };
  const ids = (name: string): number[] => field(name).split(/\s+/).filter(Boolean).map(Number);
  const uid = ids('Uid')[1];
  const gid = ids('Gid')[1];
  if (uid === undefined || gid === undefined) throw new Error('/proc status has malformed Uid/Gid lines');
  const groupsLine = /^Groups:[ \t]*(.*)$/m.exec(text)?.[1]?.trim() ?? '';
  return {
    uid,
    gid,
    groups: groupsLine ? groupsLine.split(/\s+/).map(Number) : [],
    capEff: BigInt(`0x${field('CapEff')}`),
    capBnd: BigInt(`0x${field('CapBnd')}`),
    capPrm: BigInt(`0x${field('CapPrm')}`),
  };
}

export interface ProcEntry extends ProcStat {
  /** Value of the marker env, or undefined when absent. */
  marker?: string;
  /** true when the environ could not be read (another uid and no SYS_PTRACE + DAC_READ_SEARCH). */
  unreadable: boolean;
  /**
   * The mount namespace (`/proc/PID/ns/mnt` link text): each container has its own. Read only for
   * main-process candidates (marker set, parent outside the PID namespace); undefined when unreadable.
   */
  mntNs?: string;
}

export interface ProcSnapshot {
  entries: ProcEntry[];
  /** How many processes' environ could not be read (not counting kernel threads with empty environ). */
  unreadable: number;
}

/** The pure core of discovery: the processes of one container, excluding `exclude` and its descendants. */
export function containerProcesses(snap: ProcSnapshot, container: string, exclude: number): ProcEntry[] {
  const byPid = new Map(snap.entries.map((e) => [e.pid, e]));
  const descends = (e: ProcEntry): boolean => {
    // Bounded walk: a pid tree is never deeper than the number of processes.
    let cur: ProcEntry | undefined = e;
    for (let i = 0; cur && i <= snap.entries.length; i++) {
      if (cur.pid === exclude) return true;
      cur = byPid.get(cur.ppid);
    }
    return false;
  };
  return snap.entries.filter((e) => e.marker === container && e.state !== 'Z' && e.state !== 'X' && !descends(e));
}

export interface MainChoice {
  main?: ProcEntry;
  /** Processes of more than one container claim the name (the earliest of each): none is chosen. */
  conflict?: ProcEntry[];
}

/**
 * The container's main process (DESIGN §6): one the container runtime started. Seen from inside the
 * pod, such a process's parent is outside the PID namespace (`PPid: 0`; the runtime's shim or
 * conmon). A hook's child or leftover, or a process the app forked that outlived it, has a parent
 * inside (the pod's init after reparenting) and is never chosen. An exec into the container (a
 * probe, `kubectl exec`) also has PPid 0 but starts later in the same mount namespace: the earliest
 * start wins. Another container that sets the marker has PPid 0 in a different mount namespace:
 * then the name is claimed twice and nothing is chosen, rather than risk signalling the wrong one.
 */
export function chooseMain(procs: readonly ProcEntry[]): MainChoice {
  const byNs = new Map<string, ProcEntry>();
  for (const p of procs) {
    if (p.ppid !== 0) continue;
    // An unreadable namespace cannot be matched to another: it counts as a container of its own.
    const key = p.mntNs ?? `unknown:${p.pid}`;
    const cur = byNs.get(key);
    if (!cur || p.startTime < cur.startTime || (p.startTime === cur.startTime && p.pid < cur.pid)) byNs.set(key, p);
  }
  const firsts = [...byNs.values()].sort((a, b) => a.startTime - b.startTime || a.pid - b.pid);
  if (firsts.length > 1) return { conflict: firsts };
  return firsts.length ? { main: firsts[0] } : {};
}

/** The container's main process, or undefined (none, or claimed by more than one container). */
export function mainProcess(procs: readonly ProcEntry[]): ProcEntry | undefined {
  return chooseMain(procs).main;
}

/** Names one run of a container: main pid and its start time. */
export function runId(p: Pick<ProcStat, 'pid' | 'startTime'>): string {
  return `${p.pid}@${p.startTime}`;
}

let scratch = Buffer.allocUnsafe(16 * 1024);

/**
 * A whole /proc file into a scratch buffer reused between calls (valid until the next call): open,
 * read until EOF, close. readFileSync also fstat()s and allocates per file; a scan runs this on
 * every process for every hook call, and each syscall counts.
 */
function readProcFile(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    let n = 0;
    // Bounded: the buffer doubles until a read returns 0 (environ is at most a few MB).
    for (;;) {
      if (n === scratch.length) {
        const bigger = Buffer.allocUnsafe(scratch.length * 2);
        scratch.copy(bigger, 0, 0, n);
        scratch = bigger;
      }
      const got = readSync(fd, scratch, n, scratch.length - n, null);
      if (got === 0) return scratch.subarray(0, n);
      n += got;
    }
  } finally {
    closeSync(fd);
  }
}

/** Reads every process of a /proc tree. Processes that vanish mid-scan are skipped. */
export function readProcSnapshot(procRoot = '/proc'): ProcSnapshot {
  const entries: ProcEntry[] = [];
  let unreadable = 0;
  let names: string[];
  try {
    names = readdirSync(procRoot);
  } catch {
    return { entries, unreadable };
  }
  for (const name of names) {
    if (!/^[0-9]+$/.test(name)) continue;
    let stat: ProcStat;
    try {
      stat = parseStat(readProcFile(`${procRoot}/${name}/stat`).toString('utf8'));
    } catch {
      continue;
    }
    let marker: string | undefined;
    let bad = false;
    try {
      marker = environValue(parseEnviron(readProcFile(`${procRoot}/${name}/environ`)), ENV_MARKER);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') {
        bad = true;
        unreadable++;
      } else continue; // ENOENT/ESRCH: exited while we looked
    }
    const entry: ProcEntry = { ...stat, marker, unreadable: bad };
    if (marker !== undefined && stat.ppid === 0) {
      try {
        entry.mntNs = readlinkSync(`${procRoot}/${name}/ns/mnt`);
      } catch {
        /* gone, or not ours to read: counts as a container of its own */
      }
    }
    entries.push(entry);
  }
  return { entries, unreadable };
}

export function readStat(pid: number, procRoot = '/proc'): ProcStat | undefined {
  try {
    return parseStat(readFileSync(`${procRoot}/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

export function readStatus(pid: number, procRoot = '/proc'): ProcStatus {
  return parseStatus(readFileSync(`${procRoot}/${pid}/status`, 'utf8'));
}

/** true while the run `(pid, startTime)` is alive (not gone, not a zombie, pid not reused). */
export function isRunAlive(pid: number, startTime: number, procRoot = '/proc'): boolean {
  const s = readStat(pid, procRoot);
  return !!s && s.startTime === startTime && s.state !== 'Z' && s.state !== 'X';
}
