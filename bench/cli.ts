/**
 * Command-line handling shared by the bench scripts, so each behaves like a tool: `--help` prints the usage and exits
 * 0; an unknown flag, a missing value or a bad value prints one line naming it and exits 2 (no stack trace); the
 * benchmark itself does not start in either case.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** A usage error: reported as one line on stderr, exit code 2. */
export function usageError(script: string, message: string): never {
  process.stderr.write(`${script}: ${message} (see --help)\n`);
  process.exit(2);
}

/**
 * Parse `argv` strictly against `options` (plus --help/-h). `usage` is printed as-is for --help. Returns the values
 * and checkers that turn a string option into a validated number or list, failing with exit code 2 when it is not.
 */
export function parseCli<O extends Options>(script: string, usage: string, options: O, argv: string[] = process.argv.slice(2)) {
  let parsed: Record<string, string | boolean | undefined>;
  try {
    const all: Options = { ...options, help: { type: "boolean", short: "h" } };
    parsed = parseArgs({ args: argv, options: all, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    usageError(script, (e as Error).message.split("\n")[0]!);
  }
  if (parsed.help) {
    process.stdout.write(`${usage.trim()}\n`);
    process.exit(0);
  }
  const values = parsed as unknown as { [K in keyof O]: O[K] extends { type: "boolean" } ? boolean : O[K] extends { default: string } ? string : string | undefined };
  const raw = (name: keyof O & string): string => String(values[name] ?? "");
  const check = {
    /** A whole number >= min. */
    int(name: keyof O & string, min = 0): number {
      const s = raw(name);
      const n = Number(s);
      if (s.trim() === "" || !Number.isInteger(n) || n < min) usageError(script, `--${name} must be a whole number >= ${min}, got '${s}'`);
      return n;
    },
    /** A finite number > 0 (or >= 0 with allowZero). */
    positive(name: keyof O & string, allowZero = false): number {
      const s = raw(name);
      const n = Number(s);
      if (s.trim() === "" || !Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) usageError(script, `--${name} must be a number ${allowZero ? ">= 0" : "> 0"}, got '${s}'`);
      return n;
    },
    /** A comma-separated list of whole numbers >= min. */
    intList(name: keyof O & string, min = 1): number[] {
      const s = raw(name);
      const xs = s.split(",").map((x) => Number(x));
      if (s.trim() === "" || xs.some((n) => !Number.isInteger(n) || n < min)) usageError(script, `--${name} must be a comma-separated list of whole numbers >= ${min}, got '${s}'`);
      return xs;
    },
    /** One of the given words. */
    oneOf<T extends string>(name: keyof O & string, allowed: readonly T[]): T {
      const s = raw(name);
      if (!(allowed as readonly string[]).includes(s)) usageError(script, `--${name} must be one of ${allowed.join(", ")}, got '${s}'`);
      return s as T;
    },
  };
  return { values, check };
}
