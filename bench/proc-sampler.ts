// CPU time and resident memory of a process, read from /proc (Linux) every few hundred ms while a
// scenario runs. CPU time covers every thread of the process (inference worker, libvips, load
// workers), which is what "how many cores did it use" needs.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { epochNow } from './load/messages.js';

export interface ProcSample {
  /** Epoch ms. */
  at: number;
  /** User + system CPU seconds since the process started (all its threads). */
  cpuSeconds: number;
  /** The same for its main thread alone (for a server: the event loop that owns every socket). */
  mainThreadCpuSeconds: number;
  rssKB: number;
}

export interface ProcWindow {
  /** Average cores busy over the window (1.0 = one core fully used). */
  cpuCores: number;
  /** Share of one core the main thread used (1.0 = it never rested). */
  mainThreadCores: number;
  cpuSeconds: number;
  rssStartMB: number;
  rssPeakMB: number;
  rssEndMB: number;
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime in seconds from a /proc stat file. */
function statCpuSeconds(file: string): number {
  const stat = readFileSync(file, 'utf8');
  // Fields after the command name (which may hold spaces) start at state = field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
}

function rssKBOf(pid: number): number {
  const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return rss ? Number(rss[1]) : 0;
}

/** The server's direct children: its inference process. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** One reading, or undefined once the process is gone. RSS and CPU include the process's children
 * (the server forks its inference process), so figures stay comparable with the time inference
 * ran in a thread of the server. */
export function readProc(pid: number): ProcSample | undefined {
  try {
    let cpuSeconds = statCpuSeconds(`/proc/${pid}/stat`);
    // The main thread's id is the process id.
    const mainThreadCpuSeconds = statCpuSeconds(`/proc/${pid}/task/${pid}/stat`);
    let rssKB = rssKBOf(pid);
    for (const child of childrenOf(pid)) {
      try {
        cpuSeconds += statCpuSeconds(`/proc/${child}/stat`);
        rssKB += rssKBOf(child);
      } catch {
        // exited between the listing and the read
      }
    }
    return { at: epochNow(), cpuSeconds, mainThreadCpuSeconds, rssKB };
  } catch {
    return undefined;
  }
}

const mb = (kb: number) => Math.round(kb / 102.4) / 10;

export class ProcSampler {
  readonly samples: ProcSample[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly pid: number,
    private readonly intervalMs = 250,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  stop(): void {
    this.sample();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  sample(): ProcSample | undefined {
    const s = readProc(this.pid);
    if (s) this.samples.push(s);
    return s;
  }

  /** CPU and RSS between two instants (epoch ms), from the samples nearest inside them. */
  window(from: number, to: number): ProcWindow | undefined {
    const inside = this.samples.filter((s) => s.at >= from - this.intervalMs && s.at <= to + this.intervalMs);
    if (inside.length < 2) return undefined;
    const first = inside[0];
    const last = inside[inside.length - 1];
    const cpuSeconds = last.cpuSeconds - first.cpuSeconds;
    const seconds = (last.at - first.at) / 1000;
    return {
      cpuCores: Math.round((cpuSeconds / seconds) * 1000) / 1000,
      mainThreadCores: Math.round(((last.mainThreadCpuSeconds - first.mainThreadCpuSeconds) / seconds) * 1000) / 1000,
      cpuSeconds: Math.round(cpuSeconds * 100) / 100,
      rssStartMB: mb(first.rssKB),
      rssPeakMB: mb(Math.max(...inside.map((s) => s.rssKB))),
      rssEndMB: mb(last.rssKB),
    };
  }

  /** Cores busy and RSS (MB) per bucket from `startAt`, for charts. */
  timeline(startAt: number, bucketMs: number, buckets: number): { cpuCores: number[]; rssMB: number[] } {
    const cpuCores: number[] = [];
    const rssMB: number[] = [];
    for (let b = 0; b < buckets; b++) {
      const w = this.window(startAt + b * bucketMs, startAt + (b + 1) * bucketMs);
      cpuCores.push(w?.cpuCores ?? 0);
      rssMB.push(w?.rssEndMB ?? 0);
    }
    return { cpuCores, rssMB };
  }
}

/** Busy CPU seconds of the whole machine (all cores, all processes), from /proc/stat. */
export function readMachineBusySeconds(): { at: number; busySeconds: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    // cpu user nice system idle iowait irq softirq steal ...
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return { at: epochNow(), busySeconds: (user + nice + system + irq + softirq + steal) / ticksPerSecond() };
  } catch {
    return undefined;
  }
}

/**
 * On a shared machine: waits until everything else is nearly idle (under `maxCores` busy over a
 * 2 s look), for at most `maxSeconds`. Returns the busy cores of the last look.
 */
export async function waitForQuietMachine(maxSeconds: number, maxCores = 0.15): Promise<number> {
  const deadline = Date.now() + maxSeconds * 1000;
  let busy = Infinity;
  do {
    const a = readMachineBusySeconds();
    await new Promise((r) => setTimeout(r, 2000));
    const b = readMachineBusySeconds();
    busy = a && b ? (b.busySeconds - a.busySeconds) / ((b.at - a.at) / 1000) : 0;
  } while (busy > maxCores && Date.now() < deadline);
  return Math.round(busy * 100) / 100;
}
