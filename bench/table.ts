/** Table cells for the bench reports: a figure that does not exist (no samples, e.g. no barge-in happened) prints "—", never NaN. */
export function num(x: number | null | undefined, digits = 1): string {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "—";
}

/** p50/p95/p99/max, as `stats()` in parley-process.ts or Parley's /debug/stats give them. */
export interface Quantiles {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** `| name | p50 | p95 | p99 | max |` */
export function quantileRow(name: string, s: Quantiles): string {
  return `| ${name} | ${num(s.p50)} | ${num(s.p95)} | ${num(s.p99)} | ${num(s.max)} |`;
}
