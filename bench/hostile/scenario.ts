// The hostile-clients scenario, as plain data: what each attack does and how hard, what the
// well-behaved sessions beside it do, and how long each phase lasts. The runner (run.ts)
// interprets it; every field can be set from the command line (options.ts), so these are defaults.

export const ATTACK_NAMES = ['bomb', 'flood', 'big', 'idle', 'partial'] as const;
export type AttackName = (typeof ATTACK_NAMES)[number];

export const ATTACK_DESCRIPTIONS: Record<AttackName, string> = {
  bomb: 'length bomb: a 21-byte msgpack message whose array header declares 33,554,432 elements, sent N times/s by one client that reconnects when closed',
  flood: 'image flood: sessions each sending a ~8 MB 4000x4000 noisy JPEG for a 1024x1024 image-to-image frame, again on every final reply (or at a fixed rate), never faster than the rate limit',
  big: 'big requests: sessions streaming 1024x1024, 8-step text-to-image generates back to back, the next as soon as each frame arrives',
  idle: 'idle clients: sessions that connect and never send a request (they answer pings)',
  partial: 'partial message: raw TCP clients that upgrade, announce a 16 MB binary frame in a separate write, then trickle its payload a byte per second',
};

export interface HostileScenario {
  /** Seconds of each phase: baseline, attack, recovery. */
  phaseS: number;
  /** Seconds for the good sessions to connect and warm up before the baseline (not measured). */
  warmupS: number;
  /** Attacks run one after the other, each between its own baseline and recovery phases. */
  attacks: AttackName[];
  /** The well-behaved sessions: camera-like image-to-image streams in a closed loop. */
  good: { sessions: number; size: number; steps: number; strength: number };
  /** /healthz is requested on this clock, whatever the previous poll is doing. */
  healthzIntervalMs: number;
  /**
   * Server RSS (MB) above which the running attack is stopped early, so a shared machine does not
   * swap; past 1.25 times this the server itself is killed.
   */
  rssLimitMB: number;
  bomb: { ratePerS: number };
  /** ratePerS 0: closed loop, the next image when the previous one got its final reply. */
  flood: { sessions: number; ratePerS: number; imageBytes: number; imageSide: number; size: number; steps: number; strength: number };
  big: { sessions: number; size: number; steps: number; window: number };
  idle: { sessions: number };
  partial: { clients: number; announcedBytes: number; trickleIntervalMs: number };
}

export const HOSTILE_DEFAULTS: HostileScenario = {
  phaseS: 10,
  warmupS: 2,
  attacks: [...ATTACK_NAMES],
  good: { sessions: 3, size: 256, steps: 2, strength: 0.5 },
  healthzIntervalMs: 50,
  rssLimitMB: 6144,
  bomb: { ratePerS: 20 },
  // Just under the server's default 8 MiB image limit, so the flood is accepted by today's limits.
  flood: { sessions: 64, ratePerS: 0, imageBytes: 8_000_000, imageSide: 4000, size: 1024, steps: 2, strength: 0.5 },
  // One in flight: a second would sit pending and be superseded by each later send while the
  // session waits its turn, which costs the server nothing and is not this attack.
  big: { sessions: 4, size: 1024, steps: 8, window: 1 },
  idle: { sessions: 200 },
  partial: { clients: 16, announcedBytes: 16 * 1024 * 1024, trickleIntervalMs: 1000 },
};

/** How many sessions an attack opens at once (admission limits are raised to fit them). */
export function attackSessions(s: HostileScenario, attack: AttackName): number {
  switch (attack) {
    case 'bomb':
      return 1;
    case 'flood':
      return s.flood.sessions;
    case 'big':
      return s.big.sessions;
    case 'idle':
      return s.idle.sessions;
    case 'partial':
      return s.partial.clients;
  }
}
