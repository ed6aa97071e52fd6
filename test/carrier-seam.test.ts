import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The carrier seam (src/carriers/carrier.ts): the statechart, the call runtime and the audio path speak no carrier's
 * dialect. Nothing under machines/, src/call/ or src/audio/ may import a carrier's folder (src/carriers/<name>/), the
 * old Twilio folder (src/telephony/), the registry that builds the carriers, or a carrier's SDK; the interface itself
 * is the one file of src/carriers/ they may import.
 */
const ROOT = path.resolve(import.meta.dirname, "..");
const GUARDED = ["machines", "src/call", "src/audio"];
const ALLOWED = "src/carriers/carrier.ts";
const CARRIER_SDKS = new Set(["twilio", "telnyx", "plivo"]);

/** Every module specifier in a TypeScript source: static imports and re-exports, and dynamic `import()`. */
function specifiers(source: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|(?:^|[\s;])import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm;
  for (const m of source.matchAll(re)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

/** Why `spec`, imported by `file` (relative to the repository), crosses the seam; null when it does not. */
function violation(file: string, spec: string): string | null {
  const bare = spec.split("/")[0]!;
  if (!spec.startsWith(".")) return CARRIER_SDKS.has(bare) ? `a carrier SDK (${spec})` : null;
  const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
  if (target.startsWith("src/telephony/") || target === "src/telephony") return `the Twilio folder (${target})`;
  if (target.startsWith("src/carriers/") && target !== ALLOWED) return `a carrier (${target}); only ${ALLOWED} may be imported`;
  return null;
}

function sources(dir: string): string[] {
  const abs = path.join(ROOT, dir);
  return readdirSync(abs).flatMap((name) => {
    const rel = path.posix.join(dir, name);
    if (statSync(path.join(ROOT, rel)).isDirectory()) return sources(rel);
    return /\.(ts|mts|js|mjs)$/.test(name) ? [rel] : [];
  });
}

describe("the carrier seam", () => {
  it("no file under machines/, src/call/ or src/audio/ imports a carrier", () => {
    const files = GUARDED.flatMap(sources);
    expect(files.length).toBeGreaterThan(20);
    const crossings: string[] = [];
    for (const file of files)
      for (const spec of specifiers(readFileSync(path.join(ROOT, file), "utf8"))) {
        const why = violation(file, spec);
        if (why) crossings.push(`${file} imports ${spec}: ${why}`);
      }
    expect(crossings).toEqual([]);
    // The interface is what they use instead (so the scan above reads the imports it should).
    const runtime = specifiers(readFileSync(path.join(ROOT, "src/call/call-runtime.ts"), "utf8"));
    expect(runtime).toContain("../carriers/carrier.ts");
  });

  it("the check catches each kind of crossing, and lets the interface through", () => {
    const src = [
      'import { twilioCodec } from "../carriers/twilio/codec.ts";',
      'import type { Carrier } from "../carriers/carrier.ts";',
      'export { x } from "../telephony/twiml.ts";',
      'const t = await import("../carriers/telnyx/verify.ts");',
      'import "../carriers/registry.ts";',
      "import twilio from 'twilio';",
      'import {\n  a,\n  b,\n} from "../carriers/plivo/codec.ts";',
    ].join("\n");
    const found = specifiers(src).map((s) => [s, violation("src/call/x.ts", s) !== null]);
    expect(found).toEqual([
      ["../carriers/twilio/codec.ts", true],
      ["../carriers/carrier.ts", false],
      ["../telephony/twiml.ts", true],
      ["../carriers/telnyx/verify.ts", true],
      ["../carriers/registry.ts", true],
      ["twilio", true],
      ["../carriers/plivo/codec.ts", true],
    ]);
    // From machines/ the interface is one level further up.
    expect(violation("machines/call.types.ts", "../src/carriers/carrier.ts")).toBeNull();
    expect(violation("machines/call.types.ts", "../src/carriers/twilio/status.ts")).not.toBeNull();
  });
});
