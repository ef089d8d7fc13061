// Markdown for a hostile run: one summary row per attack (baseline -> attack -> recovery), then per
// attack a table with a row per phase and what the attacker did and how the server ended it.
import type { AttackReport } from './messages.js';
import type { HostileAttackResult, HostilePhaseResult, HostileResult } from './run.js';
import type { AttackName, HostileScenario } from './scenario.js';

const table = (head: string[], rows: (string | number)[][]): string =>
  [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

const n = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? 'n/a' : x.toFixed(digits));
const counts = (record: Record<string, number>) =>
  Object.keys(record).length ? Object.entries(record).map(([key, count]) => `${key}: ${count}`).join(', ') : '0';
const arrow = (phases: readonly HostilePhaseResult[], pick: (p: HostilePhaseResult) => number | null | undefined, digits = 1) =>
  phases.map((p) => n(pick(p), digits)).join(' → ');

export function attackSettings(s: HostileScenario, attack: AttackName): string {
  switch (attack) {
    case 'bomb':
      return `${s.bomb.ratePerS}/s from one client`;
    case 'flood':
      return (
        `${s.flood.sessions} sessions, ${s.flood.ratePerS ? `${s.flood.ratePerS}/s each` : 'the next image on each final reply'}, ` +
        `${s.flood.imageSide}x${s.flood.imageSide} JPEG -> ${s.flood.size}x${s.flood.size}, ${s.flood.steps} steps x ${s.flood.strength}`
      );
    case 'big':
      return `${s.big.sessions} sessions, ${s.big.size}x${s.big.size}, ${s.big.steps} steps, ${s.big.window} in flight each, previews on`;
    case 'idle':
      return `${s.idle.sessions} sessions`;
    case 'partial':
      return `${s.partial.clients} clients, ${s.partial.announcedBytes / (1024 * 1024)} MB announced, 1 byte every ${s.partial.trickleIntervalMs} ms`;
  }
}

function phaseRows(a: HostileAttackResult): (string | number)[][] {
  return a.phases.map((p) => [
    p.kind === 'attack' ? `**${p.name}**` : p.name,
    `${n(p.good.framesPerSecond)} (${n(p.good.sessionFramesPerSecond.min)}-${n(p.good.sessionFramesPerSecond.max)})`,
    p.good.latencyMs.count ? `${n(p.good.latencyMs.p50)} / ${n(p.good.latencyMs.p99)}` : 'none',
    n(p.good.longestWaitMs, 0),
    counts({ ...p.good.errors, ...p.good.otherReplies }),
    p.healthz.latencyMs.count ? `${n(p.healthz.latencyMs.p50)} / ${n(p.healthz.latencyMs.p99)}` : 'none',
    p.healthz.timedOut + p.healthz.failed + p.healthz.skipped,
    n(p.server?.rssPeakMB, 0),
    p.server ? `${n(p.server.cpuCores, 2)} (${n(p.server.mainThreadCores, 2)})` : 'n/a',
    n(p.otherCpuCores, 2),
  ]);
}

function attackerLine(r: AttackReport): string {
  const parts = [`did: ${counts(r.counts)}`, `server replies: ${counts(r.replies)}`, `connections ended: ${counts(r.ends)}`];
  if (r.lifetimeMs) parts.push(`connection lifetime p50 / max: ${(r.lifetimeMs.p50 / 1000).toFixed(1)} / ${(r.lifetimeMs.max / 1000).toFixed(1)} s`);
  return parts.join('; ');
}

export function hostileMarkdown(r: HostileResult): string {
  const s = r.scenario;
  const out: string[] = [
    `Well-behaved: ${s.good.sessions} camera sessions, image-to-image ${s.good.size}x${s.good.size}, ${s.good.steps} steps x ${s.good.strength}, closed loop; ` +
      `/healthz every ${s.healthzIntervalMs} ms. Phases of ${s.phaseS} s. Model: ${r.target.model}. ` +
      `Server: ${r.target.url ?? `${r.target.transport}, started by the bench, a fresh one for each attack`}` +
      `${r.target.serverArgs.length ? `, flags \`${r.target.serverArgs.join(' ')}\`` : ''}.`,
    '',
    table(
      ['attack', 'good frames/s', 'good frame p99 ms', '/healthz p99 ms', 'server RSS peak MB', 'attacker connections ended'],
      r.attacks.map((a) => [
        a.attack,
        arrow(a.phases, (p) => p.good.framesPerSecond),
        arrow(a.phases, (p) => (p.good.latencyMs.count ? p.good.latencyMs.p99 : null)),
        arrow(a.phases, (p) => (p.healthz.latencyMs.count ? p.healthz.latencyMs.p99 : null)),
        arrow(a.phases, (p) => p.server?.rssPeakMB, 0),
        counts(a.attacker.ends),
      ]),
    ),
    '',
    'Each cell: baseline → attack → recovery.',
  ];
  for (const a of r.attacks) {
    out.push('', `### ${a.attack}: ${attackSettings(s, a.attack)}`, '', a.description + '.', '');
    out.push(
      table(
        ['phase', 'good frames/s (slowest-fastest session)', 'good frame p50 / p99 ms', 'longest wait ms', 'good: errors, other replies', '/healthz p50 / p99 ms', '/healthz failed', 'server RSS peak MB', 'server CPU (main thread)', 'other CPU'],
        phaseRows(a),
      ),
    );
    out.push('', `Attacker: ${attackerLine(a.attacker)}.`);
    if (a.stoppedEarly) out.push('', `**Stopped early:** ${a.stoppedEarly}.`);
    if (a.serverExit) out.push('', `**Server:** ${a.serverExit}.`);
  }
  if (r.warnings.length) out.push('', 'Warnings:', '', ...r.warnings.map((w) => `- ${w}`));
  return out.join('\n');
}
