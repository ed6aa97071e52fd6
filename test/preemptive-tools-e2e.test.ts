/**
 * Speculation without side effects, in whole calls: Deepgram (stand-in) marks `speech_final` during a pause the VAD
 * does not yet take for the end of the turn, so the agent starts a reply early. The model asks for a user tool, loaded
 * through AGENT_TOOLS_MODULE, that writes each booking to a ledger file with the words it was asked on. A guess the
 * caller talks over must book nothing; the confirmed turn books exactly once, with the caller's whole sentence.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { DeepgramMock } from "./helpers/deepgram-mock.ts";
import { ElevenLabsMock } from "./helpers/elevenlabs-mock.ts";
import { useParley } from "./helpers/harness.ts";
import { OpenAiMock, type MockReply } from "./helpers/openai-mock.ts";
import { finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";

const dir = mkdtempSync(path.join(tmpdir(), "parley-spec-e2e-"));
const ledger = path.join(dir, "bookings.log");
const toolsModule = path.join(dir, "tools.mjs");
writeFileSync(
  toolsModule,
  `import { appendFileSync } from "node:fs";
export const tools = [{
  name: "book_table",
  description: "Book a table.",
  parameters: { type: "object", properties: { request: { type: "string" } } },
  handler: async (args) => { appendFileSync(${JSON.stringify(ledger)}, JSON.stringify(args) + "\\n"); return "Booked."; },
}];`,
);

/** The clip without its quiet start and end (20 ms under -40 dBFS), so the pauses are exactly what the test sends. */
function trimmed(clip: Uint8Array): Uint8Array {
  const loud = (i: number) => {
    let sum = 0;
    for (let j = i; j < i + 160; j++) sum += Math.abs(MULAW_TO_PCM16[clip[j]!]!);
    return sum / 160 >= 328;
  };
  let a = 0;
  let b = clip.length - (clip.length % 160);
  while (a < b && !loud(a)) a += 160;
  while (b > a && !loud(b - 160)) b -= 160;
  return clip.subarray(a, b);
}

describe("a preemptive reply that calls a tool, in a call", () => {
  let deepgram: DeepgramMock;
  let elevenlabs: ElevenLabsMock;
  let openai: OpenAiMock;
  beforeAll(async () => {
    deepgram = await DeepgramMock.start({ apiKey: "dg-key", endpointOnSilence: true });
    elevenlabs = await ElevenLabsMock.start({ apiKey: "el-key", msPerWord: 100 });
    openai = await OpenAiMock.start({ apiKey: "oa-key" });
  });
  afterAll(async () => {
    await Promise.all([deepgram?.close(), elevenlabs?.close(), openai?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });
  const parley = useParley(() => ({
    GREETING: "Hello.",
    // A long end-of-turn pause, so a short pause in the sentence is surely not taken for the end of the turn.
    VAD_MIN_SILENCE_MS: "1000",
    DEEPGRAM_API_KEY: "dg-key",
    DEEPGRAM_URL: deepgram.url,
    ELEVENLABS_API_KEY: "el-key",
    ELEVENLABS_URL: elevenlabs.url,
    OPENAI_API_KEY: "oa-key",
    OPENAI_BASE_URL: openai.url,
    AGENT_TOOLS_MODULE: toolsModule,
  }));

  it("the guess the caller talked over booked nothing; the confirmed turn booked once", async () => {
    const { base } = await parley.start();
    deepgram.script = ["what's the weather like", "we must find a new home in the stars"];
    openai.reply((req): MockReply => {
      const said = String(req.messages.filter((m) => m.role === "user").at(-1)!.content);
      return req.messages.some((m) => m.role === "tool") ? { text: "All booked." } : { text: "One moment.", toolCalls: [{ name: "book_table", arguments: { request: said } }] };
    });
    const [first, second] = [trimmed(await clipMulaw("whats-the-weather-like")), trimmed(await clipMulaw("new-home-in-the-stars"))];
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
    // 400 ms of pause: Deepgram endpoints (300 ms) and the agent starts on the first half; the VAD (1000 ms) waits.
    call.say(first);
    call.silence(400);
    call.say(second);
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the reply");
    await call.hangUp();

    const rec = (await (await fetch(`${base}/api/calls/${call.callSid}`)).json()) as CallRecord;
    const whole = "what's the weather like we must find a new home in the stars";
    expect(rec.turns.find((t) => t.role === "user")?.text).toBe(whole);
    // The model was asked on the first half (the speculation), then on the whole sentence.
    const asked = openai.requests.map((r) => String(r.messages.filter((m) => m.role === "user").at(-1)!.content));
    expect(asked).toContain("what's the weather like");
    const bookings = readFileSync(ledger, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { request: string });
    expect(bookings).toEqual([{ request: whole }]);
    expect(rec.turns.find((t) => t.kind === "reply")?.text).toBe("One moment. All booked.");
  }, 60_000);
});
