/**
 * `npm run chart` as a tool: run as a real child process (the way the npm script runs it) in an empty folder, so a
 * stray file written by mistake would show.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../src/chart/cli.ts", import.meta.url));
// `node --import tsx` as in package.json, with tsx named by path: the child runs in a folder with no node_modules.
const TSX = pathToFileURL(fileURLToPath(new URL("../node_modules/tsx/dist/loader.mjs", import.meta.url))).href;

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function chart(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; cwd: string }> {
  const cwd = mkdtempSync(path.join(tmpdir(), "parley-chart-"));
  dirs.push(cwd);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", TSX, CLI, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr, cwd }));
  });
}

describe("npm run chart", () => {
  it("--help prints the usage, exits 0 and writes nothing", async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await chart([flag]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("Usage: npm run chart -- [<folder>]");
      expect(readdirSync(r.cwd)).toEqual([]);
    }
  }, 60_000);

  it.each([
    [["--bogus"], "Unknown option '--bogus'"],
    [["--out"], "Option '-o, --out <value>' argument missing"],
    [["a", "b"], "one output folder at most, got 2: a b"],
    [["a", "--out", "b"], "give the output folder once, as <folder> or --out"],
  ])("bad usage %j: one line on stderr, exit 2, nothing written", async (args, message) => {
    const r = await chart(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(`chart: ${message} (see 'npm run chart -- --help')\n`);
    expect(readdirSync(r.cwd)).toEqual([]);
  }, 60_000);

  it("writes the SVG into the folder given, as <folder> or --out", async () => {
    for (const args of [["charts/out"], ["--out", "charts/out"]]) {
      const r = await chart(args);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const file = path.join(r.cwd, "charts/out/call-machine.svg");
      expect(r.stdout).toBe(`written: ${path.join("charts/out", "call-machine.svg")}\n`);
      expect(readFileSync(file, "utf8")).toMatch(/^<svg [^>]+>[\s\S]*data-state="call\.live\.active\.listening"[\s\S]*<\/svg>\n$/);
      expect(existsSync(path.join(r.cwd, "docs"))).toBe(false);
    }
  }, 120_000);
});
