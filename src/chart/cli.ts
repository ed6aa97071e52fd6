/** `npm run chart`: write the machines' charts as SVG, for docs and README. */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { callMachine } from "../../machines/call.machine.ts";
import { renderChart } from "./statechart.ts";

const out = process.argv[2] ?? "docs/chart";
mkdirSync(out, { recursive: true });
const file = path.join(out, "call-machine.svg");
writeFileSync(file, await renderChart(callMachine));
console.log(`written: ${file}`);
