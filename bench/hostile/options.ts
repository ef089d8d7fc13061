// Command-line options of the hostile scenario, on top of the bench's common ones (target, output).
// The common load options keep their meaning where one exists: --sessions, --size, --steps and
// --strength describe the well-behaved sessions, --duration is the length of each phase.
import { int, num, UsageError } from '../option-checks.js';
import type { LoadScenario } from '../scenarios.js';
import { ATTACK_NAMES, HOSTILE_DEFAULTS, type AttackName, type HostileScenario } from './scenario.js';

export const HOSTILE_USAGE = `Hostile clients (npm run bench -- hostile [options]): for each attack, on a fresh local server,
a baseline phase, the attack, and a recovery phase, with well-behaved camera sessions throughout
  --attacks LIST         comma-separated, from ${ATTACK_NAMES.join(', ')} (default all)
  --duration S           seconds per phase (default ${HOSTILE_DEFAULTS.phaseS})   --warmup S  before the baseline (default ${HOSTILE_DEFAULTS.warmupS})
  --sessions N           well-behaved sessions (default ${HOSTILE_DEFAULTS.good.sessions}); --size, --steps, --strength apply to them
  --bomb-rate HZ         length bombs per second (default ${HOSTILE_DEFAULTS.bomb.ratePerS})
  --flood-sessions N     image-flood sessions (default ${HOSTILE_DEFAULTS.flood.sessions})
  --flood-rate HZ        images per second per flood session; 0 = next on each final reply (default 0)
  --flood-image-bytes N  size of the flood JPEG (default ${HOSTILE_DEFAULTS.flood.imageBytes})
  --big-sessions N       1024x1024 8-step sessions (default ${HOSTILE_DEFAULTS.big.sessions})
  --idle-clients N       sessions that never send (default ${HOSTILE_DEFAULTS.idle.sessions})
  --partial-clients N    raw TCP clients trickling a 16 MB frame (default ${HOSTILE_DEFAULTS.partial.clients})
  --healthz-interval MS  /healthz poll clock (default ${HOSTILE_DEFAULTS.healthzIntervalMs})
  --rss-limit MB         stop an attack when the server's RSS passes this; kill the server at 1.25x (default ${HOSTILE_DEFAULTS.rssLimitMB})
  Server limits to try go through --server-arg, e.g. --server-arg=--max-bad-messages=5`;

/** parseArgs descriptors, merged with the common ones for the `hostile` command only. */
export const HOSTILE_ARGS = {
  attacks: { type: 'string' },
  warmup: { type: 'string' },
  'bomb-rate': { type: 'string' },
  'flood-sessions': { type: 'string' },
  'flood-rate': { type: 'string' },
  'flood-image-bytes': { type: 'string' },
  'big-sessions': { type: 'string' },
  'idle-clients': { type: 'string' },
  'partial-clients': { type: 'string' },
  'healthz-interval': { type: 'string' },
  'rss-limit': { type: 'string' },
} as const;

type Values = { [K in keyof typeof HOSTILE_ARGS]?: string };

function attackList(raw: string | undefined): AttackName[] {
  if (raw === undefined) return [...HOSTILE_DEFAULTS.attacks];
  const names = raw.split(',').map((a) => a.trim()).filter(Boolean);
  const unknown = names.filter((a) => !(ATTACK_NAMES as readonly string[]).includes(a));
  if (unknown.length || names.length === 0) throw new UsageError(`--attacks takes a comma-separated list of ${ATTACK_NAMES.join(', ')}; got "${raw}"`);
  return [...new Set(names)] as AttackName[];
}

export function hostileScenario(v: Values, overrides: Partial<LoadScenario>): HostileScenario {
  const d = HOSTILE_DEFAULTS;
  const scenario: HostileScenario = {
    phaseS: overrides.durationS ?? d.phaseS,
    warmupS: num('warmup', v.warmup, 0, 60) ?? d.warmupS,
    attacks: attackList(v.attacks),
    good: {
      sessions: overrides.sessions ?? d.good.sessions,
      size: overrides.size ?? d.good.size,
      steps: overrides.steps ?? d.good.steps,
      strength: overrides.strength ?? d.good.strength,
    },
    healthzIntervalMs: int('healthz-interval', v['healthz-interval'], 5, 10_000) ?? d.healthzIntervalMs,
    rssLimitMB: int('rss-limit', v['rss-limit'], 256, 1 << 20) ?? d.rssLimitMB,
    bomb: { ratePerS: num('bomb-rate', v['bomb-rate'], 0.1, 1000) ?? d.bomb.ratePerS },
    flood: {
      ...d.flood,
      sessions: int('flood-sessions', v['flood-sessions'], 1, 1024) ?? d.flood.sessions,
      ratePerS: num('flood-rate', v['flood-rate'], 0, 60) ?? d.flood.ratePerS,
      imageBytes: int('flood-image-bytes', v['flood-image-bytes'], 100_000, 64 * 1024 * 1024) ?? d.flood.imageBytes,
    },
    big: { ...d.big, sessions: int('big-sessions', v['big-sessions'], 1, 256) ?? d.big.sessions },
    idle: { sessions: int('idle-clients', v['idle-clients'], 1, 20_000) ?? d.idle.sessions },
    partial: { ...d.partial, clients: int('partial-clients', v['partial-clients'], 1, 1024) ?? d.partial.clients },
  };
  if (scenario.good.sessions > 64) throw new UsageError('hostile: --sessions (well-behaved sessions) must be at most 64');
  return scenario;
}
