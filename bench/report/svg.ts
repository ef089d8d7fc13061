// Line charts as hand-written SVG strings: no chart library, no browser, opens anywhere (GitHub
// renders it inline). Used for latency CDFs and frames/s over time.

export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
  dashed?: boolean;
  /** Index into the palette; series that belong together (a result's two curves) share one. */
  colour?: number;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  /** Logarithmic x axis (latencies span orders of magnitude). */
  xLog?: boolean;
  yMax?: number;
  width?: number;
  height?: number;
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v >= 10 ? v.toFixed(1) : String(Number(v.toPrecision(2))));

/** About `count` round tick values covering [min, max]. */
function linearTicks(min: number, max: number, count = 5): number[] {
  const span = max - min || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function logTicks(min: number, max: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= min * 0.999 && v <= max * 1.001) out.push(v);
    }
  }
  return out;
}

export function lineChart(o: ChartOptions): string {
  const width = o.width ?? 760;
  const height = o.height ?? 420;
  const legendWidth = 190;
  const m = { left: 64, right: legendWidth + 16, top: 44, bottom: 52 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;

  const all = o.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.xLog || x > 0));
  let xMin = all.length ? Math.min(...all.map(([x]) => x)) : 0;
  let xMax = all.length ? Math.max(...all.map(([x]) => x)) : 1;
  if (o.xLog) {
    // Whole half-decades, so the axis starts and ends on round values.
    xMin = Math.max(1e-3, 10 ** (Math.floor(Math.log10(Math.max(xMin, 1e-3)) * 2) / 2));
    xMax = 10 ** (Math.ceil(Math.log10(Math.max(xMax, xMin * 10)) * 2) / 2);
  } else if (xMax === xMin) {
    xMax = xMin + 1;
  }
  const yTop = o.yMax ?? (all.length ? Math.max(...all.map(([, y]) => y)) * 1.1 || 1 : 1);
  const yTicks = linearTicks(0, yTop);
  const yMax = Math.max(yTop, yTicks[yTicks.length - 1]);

  const sx = (x: number) =>
    m.left + (o.xLog ? (Math.log10(x) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin)) : (x - xMin) / (xMax - xMin)) * plotW;
  const sy = (y: number) => m.top + plotH - (y / yMax) * plotH;

  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  parts.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  parts.push(`<text x="${m.left}" y="24" font-size="15" font-weight="bold">${esc(o.title)}</text>`);

  for (const t of yTicks) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${m.left}" x2="${m.left + plotW}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#444">${fmt(t)}</text>`);
  }
  for (const t of o.xLog ? logTicks(xMin, xMax) : linearTicks(xMin, xMax, 8)) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${m.top}" y2="${m.top + plotH}" stroke="#f0f0f0"/>`);
    parts.push(`<text x="${x}" y="${m.top + plotH + 16}" text-anchor="middle" fill="#444">${fmt(t)}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`);
  parts.push(`<text x="${m.left + plotW / 2}" y="${height - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);

  o.series.forEach((s, i) => {
    const colour = COLOURS[(s.colour ?? i) % COLOURS.length];
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.xLog || x > 0));
    if (pts.length > 0) {
      const d = pts.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      parts.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    }
    const ly = m.top + 8 + i * 20;
    const lx = m.left + plotW + 14;
    parts.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    parts.push(`<text x="${lx + 28}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
