import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APOLOGY_TEXT } from "../machines/call.machine.ts";
import { RoutingTable } from "../src/session/session.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw, type Clip } from "./helpers/audio.ts";
import { DeepgramMock } from "./helpers/deepgram-mock.ts";
import { ElevenLabsMock } from "./helpers/elevenlabs-mock.ts";
import { useParley } from "./helpers/harness.ts";
import { OpenAiMock } from "./helpers/openai-mock.ts";
import { finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";
import { expectDuration } from "./helpers/expect.ts";

/**
 * Whole calls over the cloud adapters: Deepgram, ElevenLabs and an OpenAI-compatible model, each played by a local
 * server speaking its documented protocol, with the real SDKs as Parley's clients.
 */
describe("calls over the cloud providers (local protocol servers)", () => {
  let deepgram: DeepgramMock;
  let elevenlabs: ElevenLabsMock;
  let openai: OpenAiMock;
  /** The agent's chat requests: not the outcome, which the same model writes after each call (structured output). */
  const chatRequests = () => openai.requests.filter((r) => !("response_format" in r));
  /** After a hang-up, until the call's outcome is written (its request must not land in the next test's counts). */
  const outcomeWritten = async (base: string, sid: string) => {
    for (let i = 0; i < 200; i++) {
      const r = (await (await fetch(`${base}/api/calls/${sid}`)).json()) as { outcome: unknown };
      if (r.outcome) return;
      await new Promise((res) => setTimeout(res, 25));
    }
    throw new Error(`no outcome for ${sid}`);
  };
  beforeAll(async () => {
    deepgram = await DeepgramMock.start({ apiKey: "dg-key", endpointOnSilence: true });
    elevenlabs = await ElevenLabsMock.start({ apiKey: "el-key", msPerWord: 150 });
    // Like a provider's edge, not Node's 5 s default: an idle connection outlives the pause between two turns.
    openai = await OpenAiMock.start({ apiKey: "oa-key", keepAliveTimeoutMs: 60_000 });
  });
  afterAll(async () => {
    await Promise.all([deepgram?.close(), elevenlabs?.close(), openai?.close()]);
  });
  const parley = useParley(() => ({
    GREETING: "Hello from Parley.",
    DEEPGRAM_API_KEY: "dg-key",
    DEEPGRAM_URL: deepgram.url,
    ELEVENLABS_API_KEY: "el-key",
    ELEVENLABS_URL: elevenlabs.url,
    OPENAI_API_KEY: "oa-key",
    OPENAI_BASE_URL: openai.url,
    OPENAI_MODEL: "test-model",
  }));

  /** A new script for the next utterances (the mock's position otherwise carries on from earlier calls). */
  const script = (lines: string[]) => {
    deepgram.script = lines;
    deepgram.line = 0;
    deepgram.wordsFinalized = 0;
  };
  const record = async (base: string, sid: string) => (await (await fetch(`${base}/api/calls/${sid}`)).json()) as CallRecord & { live: boolean };
  const userText = (req: { messages: { role: string; content?: unknown }[] }) => String(req.messages.at(-1)!.content);

  it("uses the cloud providers, chosen by their keys", () => {
    expect([parley.services.stt.name, parley.services.tts.name, parley.services.agent.name]).toEqual(["deepgram", "elevenlabs", "openai"]);
  });

  it("greeting -> reply -> barge-in -> reply, streamed end to end", async () => {
    const { base } = await parley.start();
    script(["what's the weather like", "tell me a story", "we must find a new home in the stars"]);
    openai.reply((req) => {
      const said = userText(req);
      if (said.includes("story"))
        return { text: "Once upon a time, a fox lived by a river. Every morning it walked to the water, looked at the sky, and wondered about the stars, the moon, and the sea. ", tokenDelayMs: 5 };
      return { text: `You asked: ${said}. Here is my answer.`, tokenDelayMs: 2 };
    });
    const requestsBefore = chatRequests().length;
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");

    const ask = async (clip: Clip["name"], n: number) => {
      call.say(await clipMulaw(clip));
      call.silence(1500);
      await call.waitFor(() => finishedUtterances(call) >= n, 20_000, `reply ${n - 1}`);
    };
    await ask("whats-the-weather-like", 2);

    const before = call.frames.length;
    call.say(await clipMulaw("austen-0880"));
    call.silence(1000);
    await call.waitFor(() => call.frames.slice(before).filter((f) => f.playedAt !== null).length > 25, 20_000, "the story to be heard");
    call.say(await clipMulaw("new-home-in-the-stars"));
    await call.waitFor(() => call.eventsOf("clear").length > 0, 10_000, "clear");
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 3, 20_000, "the reply after the barge-in");
    await call.hangUp();

    // Its outcome is written by the same model after the end: wait for it, so no later test sees that request.
    let rec = await record(base, call.callSid);
    for (let i = 0; i < 200 && (rec.live || !rec.outcome); i++) {
      await new Promise((r) => setTimeout(r, 25));
      rec = await record(base, call.callSid);
    }
    expect(rec.outcome).not.toBeNull();
    const turns = rec.turns.map((t) => [t.role, t.kind ?? "", t.interrupted ?? false, t.text]);
    expect(turns).toEqual([
      ["assistant", "greeting", false, "Hello from Parley."],
      ["user", "", false, "what's the weather like"],
      ["assistant", "reply", false, "You asked: what's the weather like. Here is my answer."],
      ["user", "", false, "tell me a story"],
      ["assistant", "reply", true, expect.stringMatching(/^Once upon a time/)],
      ["user", "", false, "we must find a new home in the stars"],
      ["assistant", "reply", false, "You asked: we must find a new home in the stars. Here is my answer."],
    ]);
    const story = rec.turns[4]!;
    expect(story.heardText!.length).toBeGreaterThan(0);
    expect(story.text.startsWith(story.heardText!)).toBe(true);
    expect(story.heardText!.length).toBeLessThan(story.text.length);

    // The model saw only what the caller heard of the interrupted reply.
    const last = chatRequests().at(-1)! as unknown as { messages: { role: string; content: string }[] };
    const storyInHistory = last.messages.find((m) => m.role === "assistant" && m.content.startsWith("Once upon"))!;
    expect(storyInHistory.content).toBe(story.heardText);

    // ElevenLabs: one context per reply, and the interrupted one closed at once.
    const sent = elevenlabs.connections.flatMap((c) => c.messages.map((m) => m.json)).filter(Boolean) as Record<string, unknown>[];
    const closes = sent.filter((m) => m.close_context === true).map((m) => m.context_id);
    expect(new Set(closes).size).toBeGreaterThanOrEqual(3);
    // Every context is closed when it ends, so what shows the barge-in is when: the story's context is closed before
    // the caller's next turn is answered, and nothing more is sent on it.
    const storyCtx = sent.find((m) => String(m.text ?? "").startsWith("Once upon"))!.context_id;
    const storyClosedAt = sent.findIndex((m) => m.context_id === storyCtx && m.close_context === true);
    expect(storyClosedAt).toBeGreaterThan(-1);
    expect(storyClosedAt).toBeLessThan(sent.findIndex((m) => String(m.text ?? "").startsWith("You asked: we must")));
    expect(sent.slice(storyClosedAt + 1).some((m) => m.context_id === storyCtx)).toBe(false);
    expect(elevenlabs.connections[0]!.query.output_format).toBe("ulaw_8000");

    // Deepgram: mu-law passed straight through, Finalize at each end of turn.
    const dg = deepgram.connections.at(-1)!;
    expect(dg.query).toMatchObject({ encoding: "mulaw", sample_rate: "8000", interim_results: "true", vad_events: "true" });
    expect(dg.controls.filter((c) => c.type === "Finalize").length).toBeGreaterThanOrEqual(3);

    // Deepgram's speech_final came while Parley's VAD still waited out its silence window: each reply was already
    // being generated when the turn was confirmed, and no request was made twice.
    expect(rec.preemptiveReplies).toBe(3);
    expect(chatRequests().length - requestsBefore).toBe(3);
    for (const t of rec.turns.filter((t) => t.kind === "reply")) {
      expectDuration(t.latency!.handoff!.agentToTtsMs, "agentToTtsMs");
      expectDuration(t.latency!.handoff!.ttsToFrameMs, "ttsToFrameMs");
    }
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/parley_handoff_ms_count\{stage="tts_to_frame"\} [1-9]/);
    expect(metrics).toMatch(/parley_barge_ins_total\{by="speech"\} 1/);
  }, 120_000);

  it("a call's first turn goes over provider connections opened when the call was created", async () => {
    const { base } = await parley.start();
    script(["what's the weather like"]);
    openai.reply((req) => ({ text: `You asked: ${userText(req)}.` }));
    // Calls far apart find nothing open: the servers have closed what earlier calls left.
    openai.dropIdleConnections();
    await elevenlabs.closeSockets();
    const [llm0, tts0, stt0] = [openai.arrivals.length, elevenlabs.connections.length, deepgram.connections.length];

    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
    const speaksAt = performance.now();
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the reply");
    await call.hangUp();
    await outcomeWritten(base, call.callSid);

    // The chat request of the first turn reused the connection the warm-up opened while the call was set up.
    const llm = openai.arrivals.slice(llm0);
    const warmUp = llm.find((a) => a.path === "/v1/models");
    const chat = llm.find((a) => a.path === "/v1/chat/completions")!;
    expect(warmUp).toMatchObject({ method: "GET", firstOnConnection: true });
    expect(chat).toMatchObject({ connection: warmUp!.connection, firstOnConnection: false });
    // The reply's TTS context and the caller's audio went over sockets that were open before the caller spoke.
    const tts = elevenlabs.connections.slice(tts0);
    expect(tts).toHaveLength(1);
    expect(tts[0]!.contexts).toHaveLength(1);
    expect(tts[0]!.openedAt).toBeLessThan(speaksAt);
    const stt = deepgram.connections.slice(stt0);
    expect(stt).toHaveLength(1);
    expect(stt[0]!.openedAt).toBeLessThan(speaksAt);
    expect(stt[0]!.audioBytes).toBeGreaterThan(0);
  }, 60_000);

  it("a call's session picks its voice and language: the synthesizer and recogniser get them, other calls keep theirs", async () => {
    const VOICE = "Gm3Xq1ZlVbSfD7uNq8Rz";
    const routes = RoutingTable.parse({ "+15550100301": { voice: VOICE, language: "de-DE", message: "Hallo, hier ist Parley." } });
    const { base } = await parley.start({ routes });
    script(["wie ist das wetter"]);
    openai.reply(() => ({ text: "Sonnig und warm." }));
    const [tts0, stt0] = [elevenlabs.connections.length, deepgram.connections.length];

    const call = new TwilioCall({ baseUrl: base, to: "+15550100301" });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "the session's first words");
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the reply");
    await call.hangUp();
    await outcomeWritten(base, call.callSid);

    // Both the first words and the reply went to ElevenLabs in the session's voice, with its language.
    const tts = elevenlabs.connections.slice(tts0);
    const spoken = (c: (typeof tts)[number]) => c.contexts.flatMap((id) => elevenlabs.contextMessages(id).map((m) => String(m.text ?? ""))).join("");
    const voiced = tts.filter((c) => c.voiceId === VOICE);
    expect(voiced.length).toBeGreaterThan(0);
    for (const c of voiced) expect(c.query.language_code).toBe("de");
    expect(voiced.map(spoken).join("")).toContain("Hallo, hier ist Parley.");
    expect(voiced.map(spoken).join("")).toContain("Sonnig und warm.");
    // Deepgram listened in the session's language.
    const stt = deepgram.connections.slice(stt0);
    expect(stt.length).toBeGreaterThan(0);
    for (const c of stt) expect(c.query.language).toBe("de-DE");

    // The next call, with no session of its own, is back on the configured voice and language.
    const [tts1, stt1] = [elevenlabs.connections.length, deepgram.connections.length];
    const other = new TwilioCall({ baseUrl: base });
    await other.connect();
    await other.waitFor(() => finishedUtterances(other) >= 1, 15_000, "the greeting");
    await other.hangUp();
    await outcomeWritten(base, other.callSid);
    for (const c of deepgram.connections.slice(stt1)) expect(c.query.language).toBe("en-US");
    for (const c of elevenlabs.connections.slice(tts1)) expect(c.voiceId).not.toBe(VOICE);
  }, 60_000);

  it("an agent failing mid-turn, and speech synthesis failing mid-call: the caller hears an apology, the record names the error", async () => {
    const { base } = await parley.start();
    script(["hello there", "are you there"]);
    let n = 0;
    openai.reply(() => (n++ === 0 ? { status: 500, error: { message: "model overloaded" } } : { text: "I'm here." }));
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the apology");

    // The socket dies mid-reply and ElevenLabs' HTTP fallback fails too.
    const socket = elevenlabs.connections.filter((c) => !c.closed).at(-1)!;
    elevenlabs.dropSocketAfterMessages(socket.messages.length + 2);
    for (let i = 0; i < 3; i++) elevenlabs.failNextConnect(503);
    elevenlabs.httpStatus(500);
    call.say(await clipMulaw("austen-0880"));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 3, 20_000, "the cached apology");
    elevenlabs.httpStatus(null);
    expect(call.closedBy).toBeNull();
    await call.hangUp();
    await outcomeWritten(base, call.callSid);

    const rec = await record(base, call.callSid);
    expect(rec.errors.map((e) => e.type)).toEqual(expect.arrayContaining(["agent.error", "tts.error"]));
    expect(rec.errors.find((e) => e.type === "agent.error")!.message).toMatch(/500/);
    expect(rec.errors.find((e) => e.type === "tts.error")!.message).toMatch(/ElevenLabs.*500/);
    const spoken = rec.turns.filter((t) => t.role === "assistant").map((t) => t.text);
    expect(spoken).toContain(APOLOGY_TEXT);
    expect(spoken.filter((t) => t === APOLOGY_TEXT).length).toBeGreaterThanOrEqual(2);
  }, 90_000);

  it("Deepgram dropping mid-utterance loses no words", async () => {
    const { base } = await parley.start();
    script(["we must find a new home in the stars"]);
    openai.reply(() => ({ text: "Noted." }));
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
    const opened = deepgram.connections.length;
    deepgram.dropConnectionAfterBytes(4000);
    call.say(await clipMulaw("new-home-in-the-stars"));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the reply");
    await call.hangUp();
    await outcomeWritten(base, call.callSid);
    expect(deepgram.connections.length).toBeGreaterThan(opened);
    const rec = await record(base, call.callSid);
    expect(rec.turns.find((t) => t.role === "user")!.text).toBe("we must find a new home in the stars");
  }, 60_000);
});
