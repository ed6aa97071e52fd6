import { expect } from "vitest";

/**
 * A measured duration: a finite number, not negative. `expect.any(Number)` lets NaN and Infinity through, which is
 * exactly what a broken clock subtraction produces.
 */
export function expectDuration(v: unknown, what = "duration"): asserts v is number {
  expect(typeof v, `${what} is a number`).toBe("number");
  expect(Number.isFinite(v), `${what} is finite (got ${String(v)})`).toBe(true);
  expect(v as number, `${what} is not negative`).toBeGreaterThanOrEqual(0);
}
