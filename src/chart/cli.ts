/** `npm run chart`: write the call machine's chart as SVG, for docs and README. */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { callMachine } from "../../machines/call.machine.ts";
import { renderChart } from "./statechart.ts";

const USAGE = `Usage: npm run chart -- [<folder>] [--out <folder>]

Draw the call state machine (machines/call.machine.ts) as SVG and write it to <folder>/call-machine.svg
(default folder: docs/chart; created if missing).

Options:
  -o, --out <folder>   Where to write call-machine.svg (the same as giving <folder>)
  -h, --help           Show this help

Examples:
  npm run chart
  npm run chart -- /tmp/charts`;

/** Bad command line: one line on stderr, exit 2, nothing written. */
function usageError(message: string): never {
  console.error(`chart: ${message} (see 'npm run chart -- --help')`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({ options: { out: { type: "string", short: "o" }, help: { type: "boolean", short: "h" } }, allowPositionals: true });
} catch (err) {
  // parseArgs's first sentence names the option; the rest explains `--` for positionals.
  usageError((err as Error).message.split(/\.\s/)[0]!);
}
if (parsed.values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (parsed.positionals.length > 1) usageError(`one output folder at most, got ${parsed.positionals.length}: ${parsed.positionals.join(" ")}`);
if (parsed.positionals.length && parsed.values.out) usageError("give the output folder once, as <folder> or --out");
const out = parsed.values.out ?? parsed.positionals[0] ?? "docs/chart";
if (out === "") usageError("the output folder is empty");

const svg = await renderChart(callMachine);
mkdirSync(out, { recursive: true });
const file = path.join(out, "call-machine.svg");
writeFileSync(file, svg);
console.log(`written: ${file}`);
