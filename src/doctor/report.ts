import type { CheckResult } from "./types.ts";
import type { Progress } from "./checks.ts";

const MARK = { pass: "✓", fail: "✗", skip: "–" } as const;
const COLOUR = { pass: "\x1b[32m", fail: "\x1b[31m", skip: "\x1b[33m" } as const;
const DIM = "\x1b[2m";
const RESET = "\x1b[0m";

export interface TextReportOptions {
  write: (s: string) => void;
  /** Colours and the in-place "checking …" line: only on a terminal. */
  tty: boolean;
}

/** One checklist line (and, for a failure or skip, the fix on the next line). */
export function formatLine(r: CheckResult, tty: boolean): string {
  const paint = (code: string, s: string) => (tty ? `${code}${s}${RESET}` : s);
  const head = `${paint(COLOUR[r.status], MARK[r.status])} ${r.title}: ${r.detail}`;
  return r.fix && r.status !== "pass" ? `${head}\n    ${paint(DIM, "fix:")} ${r.fix}` : head;
}

/** Progress as the checks run: on a terminal a "checking …" line replaced by the result; otherwise results only. */
export function textProgress(opts: TextReportOptions): Progress {
  return {
    start: (_id, title) => opts.tty && opts.write(`${DIM}… ${title}${RESET}`),
    result: (r) => opts.write(`${opts.tty ? "\r\x1b[2K" : ""}${formatLine(r, opts.tty)}\n`),
  };
}

export function summary(results: CheckResult[], tty: boolean): string {
  const failed = results.filter((r) => r.status === "fail").length;
  const skipped = results.filter((r) => r.status === "skip").length;
  const passed = results.length - failed - skipped;
  const line = `${passed} of ${results.length} checks passed${failed ? `, ${failed} failed` : ""}${skipped ? `, ${skipped} skipped` : ""}`;
  if (!tty) return line;
  return `${failed || skipped ? COLOUR.fail : COLOUR.pass}${line}${RESET}`;
}

/** `--json`: one document, for machines. */
export function jsonReport(carrier: string, publicUrl: string | undefined, results: CheckResult[]): string {
  return JSON.stringify({ ok: allPassed(results), carrier, publicUrl: publicUrl ?? null, checks: results }, null, 2);
}

export function allPassed(results: CheckResult[]): boolean {
  return results.length > 0 && results.every((r) => r.status === "pass");
}
