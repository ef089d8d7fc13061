// Bounds checks shared by every bench option parser: a value out of range is a usage error (exit
// code 2), never silently clamped, so a run always does what its command line says.

export class UsageError extends Error {}

export function int(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  return v;
}

export function num(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || v > max) throw new UsageError(`--${name} must be a number from ${min} to ${max}, got "${raw}"`);
  return v;
}
