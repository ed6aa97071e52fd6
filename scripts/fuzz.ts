/**
 * Coverage-guided fuzzing of the media-stream codec and the webhook parsers (engine: test/fuzz/engine.ts, targets
 * and invariants: test/fuzz/*-target.ts, seeds: test/fuzz/corpus/).
 *
 *   npm run fuzz                          # both targets, 1 minute in all
 *   npm run fuzz -- --minutes 10          # both targets, 10 minutes in all
 *   npm run fuzz -- --target codec --runs 50000 --seed 7 --json
 *
 * Each target runs in its own process (coverage is taken per process, and cheaper without the other target's
 * modules loaded). Exit 0 when no invariant broke; 1 with the failing inputs written to scratch/fuzz-crashes/ and
 * printed (once fixed, move them to test/fuzz/regressions/<target>/, where test/fuzz.test.ts replays them); 2 on bad
 * arguments.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseCli } from "../bench/cli.ts";
import { fuzz, type FuzzTarget } from "../test/fuzz/engine.ts";

const TARGETS = ["codec", "webhooks"] as const;
type TargetName = (typeof TARGETS)[number];

const USAGE = `
npm run fuzz -- [options]   coverage-guided fuzzing of the media-stream codec and the webhook parsers

  --target T       codec | webhooks | all (default all)
  --minutes M      time budget, shared by the targets (default 1)
  --runs N         stop each target after N executions instead (deterministic with --seed)
  --seed S         PRNG seed (default 1)
  --json           print one JSON summary line per target
  -h, --help       this text
`;
const { values, check } = parseCli("fuzz", USAGE, {
  target: { type: "string", default: "all" },
  minutes: { type: "string", default: "1" },
  runs: { type: "string" },
  seed: { type: "string", default: "1" },
  json: { type: "boolean", default: false },
});
const which = check.oneOf("target", [...TARGETS, "all"] as const);
const minutes = check.positive("minutes");
const runs = values.runs === undefined ? undefined : check.int("runs", 1);
const seed = check.int("seed", 0);

/** The seeds of a target: codec messages as they are; webhook bodies with the mode byte (form 0, JSON 1) in front. */
export function loadCorpus(name: TargetName): Buffer[] {
  const dir = path.join("test/fuzz/corpus", name);
  return readdirSync(dir)
    .sort()
    .map((f) => {
      const body = readFileSync(path.join(dir, f));
      return name === "webhooks" ? Buffer.concat([Buffer.from([f.endsWith(".json") ? 1 : 0]), body]) : body;
    });
}

async function loadTarget(name: TargetName): Promise<FuzzTarget> {
  return name === "codec" ? (await import("../test/fuzz/codec-target.ts")).codecTarget : (await import("../test/fuzz/webhook-target.ts")).webhookTarget;
}

async function runOne(name: TargetName, ms: number | undefined): Promise<number> {
  const target = await loadTarget(name);
  const r = fuzz(target, loadCorpus(name), { seed, runs, ms });
  const summary = {
    target: r.target,
    executions: r.executions,
    seconds: Math.round(r.seconds * 10) / 10,
    execPerSecond: Math.round(r.executions / r.seconds),
    corpus: r.corpus,
    newInputs: r.found.length,
    bytesCovered: r.bytesCovered,
    bytesSeen: r.bytesSeen,
    coveredPercent: Math.round((1000 * r.bytesCovered) / Math.max(1, r.bytesSeen)) / 10,
    functionsCovered: r.functionsCovered,
    takes: r.takes,
    takeSeconds: Math.round(r.takeSeconds * 10) / 10,
    failures: r.failures.length,
  };
  if (values.json) console.log(JSON.stringify(summary));
  else
    console.log(
      `${r.target}: ${r.executions} executions in ${summary.seconds} s (${summary.execPerSecond}/s), corpus ${r.corpus} (+${r.found.length}), ` +
        `code bytes run ${r.bytesCovered} of ${r.bytesSeen} (${summary.coveredPercent}%) in ${r.functionsCovered} functions called, ` +
        `${r.takes} coverage takes (${summary.takeSeconds} s), failures ${r.failures.length}`,
    );
  if (!r.failures.length) return 0;
  mkdirSync("scratch/fuzz-crashes", { recursive: true });
  const seen = new Set<string>();
  for (const f of r.failures) {
    const id = createHash("sha1").update(f.input).digest("hex").slice(0, 12);
    if (seen.has(id)) continue;
    seen.add(id);
    // As a regression file: webhook bodies without their mode byte, named .form or .json like the corpus.
    const ext = name === "webhooks" ? ((f.input[0] ?? 0) % 2 ? ".json" : ".form") : ".json";
    const file = `scratch/fuzz-crashes/${name}-${id}${ext}`;
    writeFileSync(file, name === "webhooks" ? f.input.subarray(1) : f.input);
    console.error(`\n${name}: invariant broken (input saved to ${file}):\n${f.error}`);
  }
  return 1;
}

async function main(): Promise<number> {
  if (which !== "all") return runOne(which, runs === undefined ? minutes * 60_000 : undefined);
  // One process per target, the time split evenly.
  let worst = 0;
  for (const t of TARGETS) {
    const args = ["--import", "tsx", "scripts/fuzz.ts", "--target", t, "--seed", String(seed), "--minutes", String(minutes / TARGETS.length)];
    if (runs !== undefined) args.push("--runs", String(runs));
    if (values.json) args.push("--json");
    const res = spawnSync(process.execPath, args, { stdio: "inherit" });
    worst = Math.max(worst, res.status ?? 1);
  }
  return worst;
}

process.exitCode = await main();
