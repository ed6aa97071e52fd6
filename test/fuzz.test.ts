/**
 * Fuzzing the media-stream codec and the webhook parsers (engine: test/fuzz/engine.ts; invariants:
 * test/fuzz/*-target.ts). The inputs that once broke an invariant replay as regression tests; then the fuzzer itself
 * runs a fixed number of executions from a fixed seed per target (deterministic), as `npm run fuzz` does for longer.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { fastMedia, parseInbound, parseInboundJson } from "../src/carriers/twilio/codec.ts";
import { verifyTwilioSignature } from "../src/server/security.ts";
import { parseFormBody, webhookParams } from "../src/server/webhook-body.ts";
import { codecTarget } from "./fuzz/codec-target.ts";
import { fuzz, type FuzzTarget } from "./fuzz/engine.ts";
import { planted } from "./fuzz/planted-bug.ts";
import { twilioSignature, webhookTarget } from "./fuzz/webhook-target.ts";

const REG = "test/fuzz/regressions";
const files = (dir: string) => readdirSync(path.join(REG, dir)).sort();

describe("fuzz regressions: the media-stream codec", () => {
  for (const f of files("codec")) {
    it(`${f}: the fast path stands aside and agrees with the full parser`, () => {
      const s = readFileSync(path.join(REG, "codec", f), "utf8");
      const full = parseInboundJson(s);
      const fast = fastMedia(s);
      if (fast) expect(fast).toEqual(full);
      expect(parseInbound(s)).toEqual(full);
      expect(() => codecTarget.run(Buffer.from(s))).not.toThrow();
    });
  }

  it("Twilio's exact media shape takes the fast path with every field, as the full parser reads it", () => {
    const s = '{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"/w=="},"streamSid":"MZ1"}';
    expect(fastMedia(s)).toEqual({ ok: true, msg: { event: "media", streamSid: "MZ1", track: "inbound", chunk: 2, timestamp: 5, payload: "/w==" } });
    expect(fastMedia(s)).toEqual(parseInboundJson(s));
    // Malformed JSON, a repeated key, a streamSid in another object: the old fast path answered ok for each.
    expect(parseInbound(s.replace('"},"streamSid"', '"}"streamSid"'))).toMatchObject({ ok: false, kind: "bad_json" });
    expect(parseInbound(s.replace(/}$/, ',"streamSid":"MZ2"}'))).toMatchObject({ ok: true, msg: { streamSid: "MZ2" } });
    expect(parseInbound('{"event":"media","media":{"payload":"/w=="},"x":{"streamSid":"MZevil"},"streamSid":"MZ1"}')).toMatchObject({ ok: true, msg: { streamSid: "MZ1" } });
  });
});

describe("fuzz regressions: webhooks", () => {
  for (const f of files("webhooks")) {
    it(`${f}: holds every invariant`, () => {
      const body = readFileSync(path.join(REG, "webhooks", f));
      expect(() => webhookTarget.run(Buffer.concat([Buffer.from([f.endsWith(".json") ? 1 : 0]), body]))).not.toThrow();
    });
  }

  it("a form body with a repeated name verifies when signed over all its values (as Twilio signs)", () => {
    const url = "https://parley.example.com/voice/status";
    const raw = "CallSid=CA1&From=%2B1555&From=%2B1666";
    const sig = twilioSignature("12345", url, [...new URLSearchParams(raw)]);
    expect(verifyTwilioSignature("12345", sig, url, "application/x-www-form-urlencoded", raw)).toBe(true);
    expect(parseFormBody(raw)).toEqual({ CallSid: "CA1", From: "+1666" });
  });

  it("JSON params reach the routes as strings only", () => {
    expect(webhookParams({ CallSid: "CA1", CallStatus: { x: 1 }, SequenceNumber: 3, Flag: true, Caller: null, Tracks: ["a"] })).toEqual({ CallSid: "CA1", SequenceNumber: "3", Flag: "true" });
    expect(webhookParams(JSON.parse('{"__proto__":{"polluted":1},"CallSid":"CA1"}'))).toEqual({ CallSid: "CA1" });
    expect(webhookParams([1, 2])).toEqual({});
    expect(webhookParams(null)).toEqual({});
  });
});

describe("the fuzzer", () => {
  it("finds a bug that only coverage guidance reaches", () => {
    const target: FuzzTarget = { name: "planted", files: ["test/fuzz/planted-bug.ts"], run: planted, dictionary: ["F", "U", "Z", "!"], maxLen: 16 };
    // Without feedback each try hits all four steps at once with odds of ~1e-10; with it, one step at a time.
    const r = fuzz(target, [Buffer.from("hello")], { seed: 3, runs: 100_000, batch: 128 });
    expect(r.failures[0]?.error).toContain("planted bug reached");
    expect(r.failures[0]!.input.subarray(0, 5).toString()).toBe("FUZZ!");
    // Each byte of the prefix was a new block, kept in the corpus on the way.
    expect(r.found.length).toBeGreaterThanOrEqual(4);
  });

  it("runs the codec and webhook targets (fixed seed and run count) without breaking an invariant", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "scripts/fuzz.ts", "--target", "all", "--runs", "20000", "--seed", "1", "--json"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(err).toBe("");
    expect(code).toBe(0);
    const results = out.trim().split("\n").map((l) => JSON.parse(l) as { target: string; executions: number; failures: number; coveredPercent: number; newInputs: number });
    expect(results.map((r) => r.target)).toEqual(["media-stream-codec", "webhooks"]);
    for (const r of results) {
      expect(r.failures).toBe(0);
      expect(r.executions).toBeGreaterThanOrEqual(20_000);
      expect(r.newInputs).toBeGreaterThan(0); // coverage feedback found inputs beyond the seeds
    }
    console.log(results);
  }, 240_000);
});
