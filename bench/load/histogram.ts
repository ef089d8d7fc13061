// Latency histograms: HdrHistogram in microseconds (3 significant digits, 1 us to 1 hour), so
// percentiles stay exact to 0.1 % however many samples a run records. Workers encode theirs as
// compressed base64 and the main thread merges them: percentiles of merged histograms are exact,
// averages of per-worker percentiles would not be.
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';

const HIGHEST_US = 3_600_000_000;

export function newHistogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_US, numberOfSignificantValueDigits: 3 });
}

/** Records a duration given in milliseconds. */
export function recordMs(histogram: Histogram, ms: number): void {
  histogram.recordValue(Math.min(HIGHEST_US, Math.max(1, Math.round(ms * 1000))));
}

export const encodeHistogram = (histogram: Histogram): string => encodeIntoCompressedBase64(histogram);

export function mergeHistograms(encoded: readonly string[]): Histogram {
  const total = newHistogram();
  for (const e of encoded) total.add(decodeFromCompressedBase64(e));
  return total;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

const ms = (us: number) => Math.round(us) / 1000;

/** Percentiles in milliseconds; all zero when nothing was recorded. */
export function summarize(histogram: Histogram): LatencySummary {
  if (histogram.totalCount === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  return {
    count: histogram.totalCount,
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    max: ms(histogram.maxValue),
    mean: ms(histogram.mean),
  };
}

/** Points [latency ms, percentile] for a CDF chart, dense in the tail where latency hides. */
export function cdfPoints(histogram: Histogram): [number, number][] {
  if (histogram.totalCount === 0) return [];
  const percentiles = [0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 97, 98, 99, 99.5, 99.9, 100];
  return percentiles.map((p) => [ms(p === 0 ? histogram.minNonZeroValue : histogram.getValueAtPercentile(p)), p]);
}
