import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { useParley } from "./helpers/harness.ts";
import { expectDuration } from "./helpers/expect.ts";
import { runGenerator } from "./helpers/load-generator.ts";

describe("load generator", () => {
  const parley = useParley(() => ({ GREETING: "Hello! This is Parley." }));

  it("plays Twilio's side of 3 calls: greetings, replies, barge-ins with clear, clean hang-ups", async () => {
    const { base } = await parley.start();
    const { result: r, progress, code } = await runGenerator(["--url", base, "--calls", "3", "--seconds", "8", "--ramp-ms", "300"]);
    expect(code).toBe(0);
    expect(r.errors).toMatchObject({ connect: 0, closedByServer: 0, protocol: 0, total: 0 });
    expect(r.errors.messages).toEqual([]);
    expect(r.callsConnected).toBe(3);
    expect(r.callsCompleted).toBe(3);
    expect(r.callsFailed).toBe(0);

    // Greetings and replies: every call had each. Barge-ins: at least one in the run, each answered by a clear.
    expect(r.greetingMs).toHaveLength(3);
    for (const c of r.perCall) {
      expect(c).toMatchObject({ connected: true, end: "caller", error: null });
      expect(c.greetingMs).not.toBeNull();
      expect(c.turnLatencies).toBeGreaterThanOrEqual(1);
      expect(c.framesSent).toBeGreaterThan(0);
      expect(c.framesReceived).toBeGreaterThan(0);
    }
    expect(r.turnLatencyMs.length).toBeGreaterThanOrEqual(3);
    for (const ms of r.turnLatencyMs) expect(ms).toBeGreaterThan(0); // a reply never starts before the caller stops
    expect(r.bargeInAttempts).toBeGreaterThanOrEqual(1);
    expect(r.bargeInMs.length).toBeGreaterThanOrEqual(1);
    expect(r.clears).toBeGreaterThanOrEqual(r.bargeInMs.length);
    for (const ms of r.bargeInMs) expect(ms).toBeGreaterThan(0); // clear only after the caller started talking
    expect(r.lateAfterClear).toBe(0);

    // Totals agree with the per-call figures; the timeline covers the run.
    expect(r.framesSent).toBe(r.perCall.reduce((s, c) => s + c.framesSent, 0));
    expect(r.framesReceived).toBe(r.perCall.reduce((s, c) => s + c.framesReceived, 0));
    expect(r.underrunMs).toBe(r.underrunTimeline.reduce((s, x) => s + x, 0));
    expect(r.underrunTimeline.length).toBeGreaterThanOrEqual(8);
    expect(r.cpuMs).toBeGreaterThan(0);
    // Measured and reported (its size is the benchmark's business, not a test's).
    expectDuration(r.eventLoopP99Ms, "eventLoopP99Ms");

    // Progress once a second, counters only growing.
    expect(progress.length).toBeGreaterThanOrEqual(8);
    for (let i = 1; i < progress.length; i++) {
      expect(progress[i]!.elapsedS).toBeGreaterThan(progress[i - 1]!.elapsedS);
      expect(progress[i]!.framesSent).toBeGreaterThanOrEqual(progress[i - 1]!.framesSent);
    }
    expect(Math.max(...progress.map((p) => p.callsLive))).toBe(3);
  });

  it("signs webhooks and stream upgrades when given Twilio's auth token", async () => {
    const AUTH = "load-generator-test-auth-token";
    const { base } = await parley.start({}, { twilioAuthToken: AUTH });
    const { result: r, code } = await runGenerator(["--url", base, "--calls", "1", "--seconds", "1", "--auth-token", AUTH]);
    expect(code).toBe(0);
    expect(r.errors.total).toBe(0);
    expect(r.callsCompleted).toBe(1);
    expect(r.greetingMs).toHaveLength(1);

    const unsigned = await runGenerator(["--url", base, "--calls", "1", "--seconds", "1"]);
    expect(unsigned.result.errors.connect).toBe(1);
    expect(unsigned.result.errors.messages[0]).toMatch(/403/);
  });
});

/**
 * The measures themselves, against a scripted stand-in for Parley whose faults are known: a greeting with a 500 ms
 * hole in it (underrun, late frames), and a reply that is cleared while the caller talks over it, followed by 5 frames
 * of the cut reply (late audio after clear).
 */
describe("load generator measures", () => {
  it("counts underruns, late frames and audio after clear", async () => {
    const frame = Buffer.alloc(160, 0x7f).toString("base64");
    const http = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const port = (http.address() as AddressInfo).port;
        res.writeHead(200, { "content-type": "text/xml" });
        res.end(`<Response><Connect><Stream url="ws://127.0.0.1:${port}/voice/stream"><Parameter name="token" value="t&amp;1"/></Stream></Connect></Response>`);
      });
    });
    const wss = new WebSocketServer({ server: http });
    const seen: { token?: string; events: string[] } = { events: [] };
    const timers: NodeJS.Timeout[] = [];
    wss.on("connection", (ws) => {
      let sid = "";
      const media = (n: number) => {
        for (let i = 0; i < n; i++) ws.send(`{"event":"media","streamSid":"${sid}","media":{"payload":"${frame}"}}`);
      };
      const mark = (name: string) => ws.send(JSON.stringify({ event: "mark", streamSid: sid, mark: { name } }));
      const later = (ms: number, f: () => void) => timers.push(setTimeout(f, ms));
      ws.on("message", (data) => {
        const msg = JSON.parse(data.toString());
        if (msg.event !== "media") seen.events.push(msg.event === "mark" ? `mark ${msg.mark.name}` : msg.event);
        if (msg.event === "start") {
          sid = msg.start.streamSid;
          seen.token = msg.start.customParameters.token;
          media(10); // greeting: 200 ms, a 500 ms hole, 200 ms more
          mark("1:200");
          later(500, () => {
            media(10);
            mark("1:400:end");
          });
        } else if (msg.event === "mark" && msg.mark.name === "1:400:end") {
          // The caller now speaks "what's the weather like" (speech ends 1.1 s in); reply after it, then cut it.
          later(1500, () => {
            media(100);
            mark("2:2000:end");
          });
          later(3300, () => {
            ws.send(JSON.stringify({ event: "clear", streamSid: sid }));
            media(5); // audio of the cut reply, while the caller still talks: must be counted
          });
        }
      });
    });
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
    try {
      const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
      const { result: r, code } = await runGenerator(["--url", base, "--calls", "1", "--seconds", "5"]);
      expect(code).toBe(0);
      expect(r.errors.total).toBe(0);
      expect(seen.token).toBe("t&1");
      expect(seen.events.slice(0, 4)).toEqual(["connected", "start", "mark 1:200", "mark 1:400:end"]);
      expect(seen.events).toContain("mark 2:2000:end"); // echoed by the clear
      expect(seen.events.at(-1)).toBe("stop");

      expect(r.greetingMs).toHaveLength(1);
      expect(r.underrunMs).toBeGreaterThanOrEqual(100); // the hole, heard
      expect(r.underrunMs % 20).toBe(0);
      // The greeting's second half arrived after the queue ran dry. All ten are late when the burst is read before the
      // generator's next playout tick; a tick in the middle of the burst (a busy machine) plays the first, and the rest
      // then land on a queue that is no longer dry: at least the first is always late, never more than the ten.
      expect(r.lateFrames).toBeGreaterThanOrEqual(1);
      expect(r.lateFrames).toBeLessThanOrEqual(10);
      expect(r.turnLatencyMs).toHaveLength(1);
      expect(r.turnLatencyMs[0]).toBeGreaterThan(0);
      expect(r.bargeInAttempts).toBe(1);
      expect(r.bargeInMs).toHaveLength(1);
      expect(r.clears).toBe(1);
      expect(r.lateAfterClear).toBe(5);
      expect(r.framesReceived).toBe(125);
    } finally {
      for (const t of timers) clearTimeout(t);
      for (const c of wss.clients) c.terminate();
      wss.close();
      await new Promise((r) => http.close(r));
    }
  });
});
