/** A few SVG charts for the benchmark report, dependency-free: readable at a glance, honest axes. */

const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);

export interface Panel {
  title: string;
  svg: string; // inner SVG for a w x h box
}

const W = 460;
const H = 220;
const M = { l: 48, r: 12, t: 28, b: 36 };

function axes(title: string, xLabel: string, yLabel: string, xTicks: [number, string][], yTicks: [number, string][]): string {
  const iw = W - M.l - M.r;
  const ih = H - M.t - M.b;
  let s = `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">${esc(title)}</text>`;
  s += `<line x1="${M.l}" y1="${M.t + ih}" x2="${M.l + iw}" y2="${M.t + ih}" stroke="#333"/><line x1="${M.l}" y1="${M.t}" x2="${M.l}" y2="${M.t + ih}" stroke="#333"/>`;
  for (const [x, label] of xTicks) s += `<text x="${M.l + x * iw}" y="${M.t + ih + 14}" text-anchor="middle" font-size="10">${esc(label)}</text>`;
  for (const [y, label] of yTicks) {
    const py = M.t + ih - y * ih;
    s += `<line x1="${M.l}" y1="${py}" x2="${M.l + iw}" y2="${py}" stroke="#eee"/><text x="${M.l - 4}" y="${py + 3}" text-anchor="end" font-size="10">${esc(label)}</text>`;
  }
  s += `<text x="${M.l + iw / 2}" y="${H - 4}" text-anchor="middle" font-size="10" fill="#555">${esc(xLabel)}</text>`;
  s += `<text x="10" y="${M.t + ih / 2}" text-anchor="middle" font-size="10" fill="#555" transform="rotate(-90 10 ${M.t + ih / 2})">${esc(yLabel)}</text>`;
  return s;
}

const nice = (v: number) => {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((c) => c >= v)!;
};

/** Histogram of samples, with p50/p99 marked. */
export function histogram(title: string, samples: number[], unit = "ms", bins = 24): Panel {
  const iw = W - M.l - M.r;
  const ih = H - M.t - M.b;
  if (!samples.length) return { title, svg: axes(title, `${unit} (no samples)`, "count", [], []) };
  const sorted = [...samples].sort((a, b) => a - b);
  const max = nice(sorted.at(-1)!);
  const counts = new Array<number>(bins).fill(0);
  for (const v of samples) counts[Math.min(bins - 1, Math.floor((v / max) * bins))]!++;
  const top = nice(Math.max(...counts));
  let s = axes(title, unit, "count", [0, 0.25, 0.5, 0.75, 1].map((f) => [f, `${+(f * max).toPrecision(3)}`]), [0, 0.5, 1].map((f) => [f, `${Math.round(f * top)}`]));
  counts.forEach((c, i) => {
    const h = (c / top) * ih;
    s += `<rect x="${M.l + (i * iw) / bins + 1}" y="${M.t + ih - h}" width="${iw / bins - 2}" height="${h}" fill="#4e79a7"/>`;
  });
  for (const [p, color, dy] of [[0.5, "#59a14f", 10], [0.99, "#e15759", 24]] as const) {
    const v = sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
    const x = M.l + (v / max) * iw;
    s += `<line x1="${x}" y1="${M.t}" x2="${x}" y2="${M.t + ih}" stroke="${color}" stroke-dasharray="4 3"/><text x="${x + 3}" y="${M.t + dy}" font-size="10" fill="${color}">p${p * 100} ${v.toFixed(1)}</text>`;
  }
  return { title, svg: s };
}

/** A line over x (one or more series). */
export function lines(title: string, xLabel: string, yLabel: string, series: { name: string; points: [number, number][]; color: string }[], yLimit?: number): Panel {
  const iw = W - M.l - M.r;
  const ih = H - M.t - M.b;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xMax = nice(Math.max(1, ...xs));
  const yMax = nice(Math.max(yLimit ?? 0, 1, ...ys));
  let s = axes(title, xLabel, yLabel, [0, 0.25, 0.5, 0.75, 1].map((f) => [f, `${+(f * xMax).toPrecision(3)}`]), [0, 0.5, 1].map((f) => [f, `${+(f * yMax).toPrecision(3)}`]));
  if (yLimit !== undefined) {
    const y = M.t + ih - (yLimit / yMax) * ih;
    s += `<line x1="${M.l}" y1="${y}" x2="${M.l + iw}" y2="${y}" stroke="#e15759" stroke-dasharray="4 3"/><text x="${M.l + iw - 2}" y="${y - 3}" text-anchor="end" font-size="10" fill="#e15759">limit ${yLimit}</text>`;
  }
  series.forEach((ser, k) => {
    const pts = ser.points.map(([x, y]) => `${M.l + (x / xMax) * iw},${M.t + ih - (y / yMax) * ih}`).join(" ");
    s += `<polyline points="${pts}" fill="none" stroke="${ser.color}" stroke-width="2"/>`;
    for (const [x, y] of ser.points) s += `<circle cx="${M.l + (x / xMax) * iw}" cy="${M.t + ih - (y / yMax) * ih}" r="2.5" fill="${ser.color}"/>`;
    s += `<text x="${M.l + 8}" y="${M.t + 12 + k * 12}" font-size="10" fill="${ser.color}">${esc(ser.name)}</text>`;
  });
  return { title, svg: s };
}

/** Panels in a grid, with a heading and a caption (machine, command). */
export function page(heading: string, caption: string, panels: Panel[], cols = 2): string {
  const rows = Math.ceil(panels.length / cols);
  const width = cols * W;
  const height = 44 + rows * H;
  let s = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif"><rect width="100%" height="100%" fill="#fff"/>`;
  s += `<text x="12" y="20" font-size="16" font-weight="700">${esc(heading)}</text><text x="12" y="36" font-size="11" fill="#555">${esc(caption)}</text>`;
  panels.forEach((p, i) => {
    s += `<g transform="translate(${(i % cols) * W},${44 + Math.floor(i / cols) * H})">${p.svg}</g>`;
  });
  return s + "</svg>\n";
}
