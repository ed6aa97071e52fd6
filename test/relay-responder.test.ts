import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { decodeMulaw, encodeMulaw } from "../src/audio/mulaw.ts";
import type { CallerTurn, ResponderItem } from "../src/responders/responder.ts";
import { parseAppMessage } from "../src/responders/relay/protocol.ts";
import { RelayResponder, type RelayResponderOptions } from "../src/responders/relay/relay-responder.ts";
import { RelayApp, type RelayAppOptions } from "./helpers/relay-app.ts";
import { RecordingHost } from "./helpers/relay-host.ts";

const TOKEN = "relay-app-auth-token";
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(appOpts: RelayAppOptions = {}, resOpts: Partial<RelayResponderOptions> = {}, host = new RecordingHost()) {
  const app = await RelayApp.start({ authToken: TOKEN, ...appOpts });
  cleanups.push(() => app.close());
  const responder = new RelayResponder({ url: app.url, authToken: TOKEN, retryDelayMs: 10, ...resOpts });
  cleanups.push(() => responder.close("test over"));
  await responder.open(host);
  return { app, responder, host };
}

let nextTurn = 1;
function turn(userText: string, signal = new AbortController().signal): CallerTurn {
  return { turnId: nextTurn++, userText, history: [], signal };
}

async function collect(it: AsyncIterable<ResponderItem>): Promise<ResponderItem[]> {
  const out: ResponderItem[] = [];
  for await (const item of it) out.push(item);
  return out;
}

/** A local HTTP server handing out audio for `play`. */
async function audioServer(files: Record<string, { type: string; body: Uint8Array; delayMs?: number } | "hang">) {
  const server = http.createServer((req, res) => {
    const f = files[req.url ?? ""];
    if (f === "hang") return; // never answers
    if (!f) return res.writeHead(404).end();
    const send = () => res.writeHead(200, { "content-type": f.type, "content-length": f.body.length }).end(Buffer.from(f.body));
    if (f.delayMs) setTimeout(send, f.delayMs);
    else send();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function wav(format: 1 | 7, sampleRate: number, data: Uint8Array): Uint8Array {
  const bits = format === 1 ? 16 : 8;
  const h = Buffer.alloc(44);
  h.write("RIFF", 0, "ascii");
  h.writeUInt32LE(36 + data.length, 4);
  h.write("WAVEfmt ", 8, "ascii");
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(format, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(sampleRate, 24);
  h.writeUInt32LE((sampleRate * bits) / 8, 28);
  h.writeUInt16LE(bits / 8, 32);
  h.writeUInt16LE(bits, 34);
  h.write("data", 36, "ascii");
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

function sine(rate: number, hz: number, seconds: number): Int16Array {
  const out = new Int16Array(Math.round(rate * seconds));
  for (let i = 0; i < out.length; i++) out[i] = Math.round(12000 * Math.sin((2 * Math.PI * hz * i) / rate));
  return out;
}

describe("ConversationRelay responder: session", () => {
  it("dials the app with a valid X-Twilio-Signature and sends setup with the call's facts as strings", async () => {
    const { app, host } = await setup({}, { customParameters: { callReference: "abc-123" }, accountSid: "AC" + "1".repeat(32) });
    await app.waitFor(() => app.session.setup !== null, "setup");
    const s = app.session;
    expect(s.signatureValid).toBe(true);
    expect(s.received[0]!.type).toBe("setup");
    expect(s.setup).toMatchObject({
      type: "setup",
      callSid: host.callSid,
      from: "+15550001111",
      to: "+15550002222",
      direction: "inbound",
      accountSid: "AC" + "1".repeat(32),
      parentCallSid: "",
      callType: "PSTN",
      callStatus: "in-progress",
      customParameters: { callReference: "abc-123" },
    });
    expect(s.setup!.sessionId).toMatch(/^VX[0-9a-f]{32}$/);
    for (const [k, v] of Object.entries(s.setup!)) if (k !== "customParameters") expect(typeof v, k).toBe("string");
    expect(host.eventsOf("relay.connected")).toEqual([{ attempt: 1, url: app.url.replace(/\?.*$/, "?…") }]);
  });

  it("an app that refuses the signature (wrong token) is tried twice, then the call ends as unreachable", async () => {
    const { app, responder, host } = await setup({}, { authToken: "not-the-token" });
    expect(app.refused).toBe(2);
    expect(app.sessions).toHaveLength(0);
    expect(host.eventsOf("relay.connect_failed")).toHaveLength(2);
    expect(String(host.eventsOf("relay.connect_failed")[0]!.message)).toContain("HTTP 403");
    expect(responder.failed).toBe(true);
    expect(host.eventsOf("relay.error")).toHaveLength(1);
    expect(host.ends).toEqual([{ reason: "relay app unreachable", handoffData: expect.objectContaining({ sessionStatus: "failed", errorCode: 39001 }) }]);
    expect(await collect(responder.respond(turn("hello")))).toEqual([]);
  });
});

describe("ConversationRelay responder: turns", () => {
  it("sends the caller's words as a final prompt and yields the app's tokens in order, untrimmed", async () => {
    const { app, responder } = await setup({ reply: (p) => ["Sure", ", ", "you said ", `"${p}"`, ". ", "Bye!"] });
    const items = await collect(responder.respond(turn("what time is it")));
    expect(items).toEqual(["Sure", ", ", "you said ", '"what time is it"', ". ", "Bye!"]);
    expect(app.session.of("prompt")).toEqual([{ type: "prompt", voicePrompt: "what time is it", lang: "en-US", last: true }]);
    // and the next turn works on the same socket
    expect(await collect(responder.respond(turn("again")))).toEqual(["Sure", ", ", "you said ", '"again"', ". ", "Bye!"]);
  });

  it("an interruption sends the heard words and duration; the cut cycle's late tokens are dropped until the next prompt", async () => {
    const { app, responder, host } = await setup({ reply: () => ["One, ", "two, ", "three, ", "four."], tokenGapMs: 30 });
    const ac = new AbortController();
    const got: ResponderItem[] = [];
    for await (const item of responder.respond(turn("count", ac.signal))) {
      got.push(item);
      ac.abort(); // the caller talks over the first words
    }
    expect(got).toEqual(["One, "]);
    responder.interrupted({ turnId: nextTurn - 1, heardText: "One,", durationMs: 459.6 });
    await app.waitFor(() => app.session.of("interrupt").length === 1, "interrupt");
    expect(app.session.of("interrupt")[0]).toEqual({ type: "interrupt", utteranceUntilInterrupt: "One,", durationUntilInterruptMs: 460 });
    // An app that keeps talking after the interrupt: nothing of that cycle reaches the caller.
    await app.session.say(["late ", "words."]);
    await host.waitFor(() => host.eventsOf("relay.late_tokens_dropped").length === 1, "late tokens dropped");
    expect(host.eventsOf("relay.late_tokens_dropped")).toEqual([{ count: 2 }]);
    expect(host.says).toEqual([]);
    expect(await collect(responder.respond(turn("go on")))).toEqual(["One, ", "two, ", "three, ", "four."]);
  });

  it("an interruption ends the reply in progress even before the runtime aborts the turn", async () => {
    const { app, responder, host } = await setup({ reply: () => ["First, ", "second, ", "third."], tokenGapMs: 40 }, { replyTimeoutMs: 5000 });
    const got: ResponderItem[] = [];
    for await (const item of responder.respond(turn("list them"))) {
      got.push(item);
      responder.interrupted({ turnId: nextTurn - 1, heardText: "", durationMs: 0 });
    }
    expect(got).toEqual(["First, "]);
    // it ended because of the interruption, not by running into the stall timer
    expect(host.eventsOf("relay.reply_timeout")).toEqual([]);
    await app.waitFor(() => app.session.of("interrupt").length === 1, "interrupt");
  });

  it("forwards each touch tone as a dtmf frame", async () => {
    const { app, responder } = await setup();
    responder.dtmf("5");
    responder.dtmf("#");
    await app.waitFor(() => app.session.of("dtmf").length === 2, "dtmf");
    expect(app.session.of("dtmf")).toEqual([{ type: "dtmf", digit: "5" }, { type: "dtmf", digit: "#" }]);
  });

  it("sendDigits in a reply is a send_dtmf item in place; between turns it goes to the host", async () => {
    const { app, responder, host } = await setup({ reply: (p, s) => (s.sendDigits("9w12#"), ["Dialling ", "now."]) });
    expect(await collect(responder.respond(turn("call the office")))).toEqual([{ type: "send_dtmf", digits: "9w12#" }, "Dialling ", "now."]);
    app.session.sendDigits("*3");
    await host.waitFor(() => host.digits.length === 1, "digits");
    expect(host.digits).toEqual(["*3"]);
  });

  it("a reply that stalls ends after replyTimeoutMs with what came; its late tokens are dropped", async () => {
    const stall = (_p: string, s: { send(m: Record<string, unknown>): void }) => (s.send({ type: "text", token: "Let me check", last: false }), []);
    const { app, responder, host } = await setup({ reply: stall }, { replyTimeoutMs: 1000 });
    expect(await collect(responder.respond(turn("anything")))).toEqual(["Let me check"]);
    expect(host.eventsOf("relay.reply_timeout")).toEqual([{ turnId: nextTurn - 1, tokens: 1 }]);
    await app.session.say(["finally."]);
    await host.waitFor(() => host.eventsOf("relay.late_tokens_dropped").length === 1, "late token dropped");
    expect(host.eventsOf("relay.late_tokens_dropped")).toEqual([{ count: 1 }]);
    expect(host.says).toEqual([]);
  });

  it("switches the call's speech language; a transcription language is recorded, not honoured; one the TTS lacks is an error", async () => {
    const { app, responder, host } = await setup();
    app.session.send({ type: "language", ttsLanguage: "sv-SE", transcriptionLanguage: "en-US" });
    await host.waitFor(() => host.eventsOf("relay.language").length === 1, "language");
    expect(host.ttsLanguages).toEqual(["sv-SE"]);
    expect(responder.requestedLanguages).toEqual({ tts: "sv-SE", transcription: "en-US" });
    expect(host.eventsOf("relay.unhonoured")).toEqual([{ what: "transcriptionLanguage", language: "en-US" }]);

    app.session.send({ type: "language", ttsLanguage: "xx-XX" });
    await app.waitFor(() => app.session.of("error").length === 1, "an error frame");
    expect(app.session.of("error")[0]!.description).toMatch(/ttsLanguage "xx-XX": cannot speak/);
    expect(host.ttsLanguages).toEqual(["sv-SE"]);
    expect(responder.requestedLanguages.tts).toBe("sv-SE");
  });
});

describe("ConversationRelay responder: the app speaks on its own", () => {
  it("speaks first: tokens reach host.say as whole clauses, the rest on last", async () => {
    const { host } = await setup({ greeting: ["Hi ", "there, ", "I am ", "the relay app. ", "How can ", "I help?"] });
    await host.waitFor(() => host.says.length === 2, "greeting said");
    expect(host.says.map((s) => s.text)).toEqual(["Hi there, I am the relay app.", "How can I help?"]);
    expect(host.says[0]!.opts).toEqual({ interrupt: false, interruptible: "any" });
  });

  it("out-of-turn text with no clause end and no last is said once the app goes quiet (flushAfterMs)", async () => {
    const { app, host } = await setup({}, { flushAfterMs: 500 });
    app.session.send({ type: "text", token: "hold on ", last: false });
    app.session.send({ type: "text", token: "a second", last: false });
    await host.waitFor(() => host.says.length === 1, "flushed after the quiet");
    expect(host.says[0]!.text).toBe("hold on a second");
  });

  it("text after the reply's last token is a new cycle for host.say; preemptible cuts, interruptible:false is passed on", async () => {
    const { app, responder, host } = await setup({ reply: () => ["Okay."] });
    await collect(responder.respond(turn("hi")));
    await app.session.say(["Please hold, ", "this takes a moment."], { preemptible: true, interruptible: false });
    await host.waitFor(() => host.says.length === 2, "first cycle");
    await app.session.say(["Done."]);
    await host.waitFor(() => host.says.length === 3, "second cycle");
    expect(host.says).toEqual([
      { text: "Please hold,", opts: { interrupt: false, interruptible: "none" } },
      { text: "this takes a moment.", opts: { interrupt: false, interruptible: "none" } },
      { text: "Done.", opts: { interrupt: true, interruptible: "any" } }, // the held cycle was preemptible
    ]);
  });

  it("a new cycle right behind the reply's last token (same socket read) is not lost: it goes to host.say", async () => {
    const both = (_p: string, s: { send(m: Record<string, unknown>): void }) => {
      s.send({ type: "text", token: "Done.", last: true });
      s.send({ type: "text", token: "Anything else?", last: true });
      return [];
    };
    const { responder, host } = await setup({ reply: both });
    expect(await collect(responder.respond(turn("book it")))).toEqual(["Done."]);
    await host.waitFor(() => host.says.length === 1, "second cycle said");
    expect(host.says[0]!.text).toBe("Anything else?");
  });

  it("a reply's interruptible tells the host its mode for that turn, once per change (false is \"none\")", async () => {
    const { app, responder, host } = await setup({ reply: (_p, s) => (void s.say(["Your code ", "is 4 2 7."], { interruptible: false }), []) });
    expect(await collect(responder.respond(turn("my code?")))).toEqual(["Your code ", "is 4 2 7."]);
    expect(host.interruptible).toEqual([{ turnId: nextTurn - 1, interruptible: "none" }]);
    void app;
  });

  it("a host that cannot honour interruptible tells the app with an error frame, and the reply still plays", async () => {
    const { app, responder, host } = await setup({ reply: (_p, s) => (void s.say(["Your code."], { interruptible: "dtmf" }), []) }, {}, new RecordingHost(false));
    expect(await collect(responder.respond(turn("my code?")))).toEqual(["Your code."]);
    await app.waitFor(() => app.session.of("error").length === 1, "error frame");
    expect(app.session.of("error")[0]!.description).toBe('interruptible "dtmf" is not supported by this Parley host');
    expect(host.eventsOf("relay.unhonoured")).toEqual([]);
  });
});

describe("ConversationRelay responder: play", () => {
  it("an 8 kHz mu-law WAV plays sample-exact; 16 kHz PCM is resampled to 8 kHz; audio/basic passes through; loop repeats", async () => {
    const mulaw = Uint8Array.from({ length: 4000 }, (_, i) => (i * 37 + 11) & 0xff);
    const pcm16 = sine(16_000, 440, 1);
    const base = await audioServer({
      "/a.wav": { type: "audio/wav", body: wav(7, 8000, mulaw) },
      "/b.wav": { type: "application/octet-stream", body: wav(1, 16_000, new Uint8Array(pcm16.buffer)) },
      "/c.ul": { type: "audio/basic", body: mulaw },
    });
    const { app, host } = await setup();
    app.session.play(`${base}/a.wav`);
    app.session.play(`${base}/b.wav`);
    app.session.play(`${base}/c.ul`, { loop: 2 });
    await host.waitFor(() => host.plays.length === 3, "three plays");
    expect(Buffer.from(host.plays[0]!.mulaw).equals(Buffer.from(mulaw))).toBe(true);
    const resampled = decodeMulaw(host.plays[1]!.mulaw);
    expect(resampled.length).toBe(8000);
    // still a 440 Hz tone at the new rate: ~880 zero crossings in one second
    let crossings = 0;
    for (let i = 1; i < resampled.length; i++) if (resampled[i - 1]! < 0 !== resampled[i]! < 0) crossings++;
    expect(crossings).toBeGreaterThan(860);
    expect(crossings).toBeLessThan(900);
    expect(Buffer.from(host.plays[2]!.mulaw).equals(Buffer.concat([mulaw, mulaw]))).toBe(true);
    expect(app.session.of("error")).toEqual([]);
  });

  it("what the app sends after a play waits for the play's audio: the call hears them in socket order", async () => {
    const mulaw = new Uint8Array(800).fill(0x7f);
    const base = await audioServer({ "/chime.ul": { type: "audio/x-mulaw;rate=8000", body: mulaw, delayMs: 150 } });
    const { app, host } = await setup();
    app.session.play(`${base}/chime.ul`);
    await app.session.say(["Welcome back."]);
    await host.waitFor(() => host.says.length === 1 && host.plays.length === 1, "play and text");
    expect(host.order).toEqual(["play", "say"]);
  });

  it("unsupported types, failed downloads and oversize files get an error frame and a record; later text waits for the play", async () => {
    const base = await audioServer({
      "/song.mp3": { type: "audio/mpeg", body: new Uint8Array([0xff, 0xfb, 0x90, 0x00]) },
      "/slow.wav": "hang",
      "/big.ul": { type: "audio/basic", body: new Uint8Array(5000) },
    });
    const { app, host } = await setup({}, { play: { maxBytes: 4096 } });
    // a separate session with a short time limit, so the other downloads cannot hit it on a loaded machine
    const slow = await setup({}, { play: { timeoutMs: 200 } });
    slow.app.session.play(`${base}/slow.wav`);
    app.session.play(`${base}/song.mp3`);
    app.session.play(`${base}/missing.wav`);
    app.session.play(`${base}/big.ul`);
    await app.session.say(["After the music."]);
    await host.waitFor(() => host.says.length === 1, "text after the plays");
    // the text came out only once every play before it had settled
    expect(host.eventsOf("relay.play_error")).toHaveLength(3);
    await app.waitFor(() => app.session.of("error").length === 3, "three errors");
    const errors = app.session.of("error").map((e) => String(e.description));
    const find = (re: RegExp) => errors.filter((e) => re.test(e));
    expect(find(/song\.mp3: unsupported audio type "audio\/mpeg"/)).toHaveLength(1);
    expect(find(/missing\.wav: HTTP 404/)).toHaveLength(1);
    expect(find(/big\.ul: 5000 bytes is over the 4096-byte limit/)).toHaveLength(1);
    await slow.app.waitFor(() => slow.app.session.of("error").length === 1, "timeout error");
    expect(slow.app.session.of("error")[0]!.description).toMatch(/slow\.wav: download took longer than 200 ms/);
    expect(slow.host.eventsOf("relay.play_error")).toHaveLength(1);
    expect(host.plays).toEqual([]);
    expect(host.says.map((s) => s.text)).toEqual(["After the music."]);
  });

  it("a host without playAudio tells the app play is not supported", async () => {
    const { app, host } = await setup({}, {}, new RecordingHost(false));
    app.session.play("http://127.0.0.1:9/x.wav");
    await app.waitFor(() => app.session.of("error").length === 1, "error");
    expect(app.session.of("error")[0]!.description).toBe("play is not supported by this Parley host");
    expect(host.eventsOf("relay.unsupported")).toHaveLength(1);
  });
});

describe("ConversationRelay responder: bad frames, end, drops", () => {
  it("junk gets an error frame naming the problem, is recorded, and the session keeps working", async () => {
    const { app, responder, host } = await setup();
    app.session.sendRaw("hello?");
    app.session.send({ type: "transcriptionLanguage", lang: "sv-SE" });
    app.session.send({ type: "text", token: 42 });
    app.session.send({ type: "sendDigits", digits: "12a" });
    await app.waitFor(() => app.session.of("error").length === 4, "four errors");
    expect(app.session.of("error").map((e) => e.description)).toEqual([
      "Invalid message received: hello? (not JSON)",
      'Invalid message received: {"type":"transcriptionLanguage","lang":"sv-SE"} (unknown type "transcriptionLanguage")',
      'Invalid message received: {"type":"text","token":42} (token: Invalid input: expected string, received number)',
      'Invalid message received: {"type":"sendDigits","digits":"12a"} (digits: digits must be non-empty and only 0-9, w, # and *)',
    ]);
    expect(host.eventsOf("relay.invalid_message")).toHaveLength(4);
    expect(await collect(responder.respond(turn("still there?")))).toEqual(["You ", "said: ", "still there?", "."]);
  });

  it("ten malformed frames in a row close the socket with 1007 and end the call as failed", async () => {
    const { app, responder, host } = await setup();
    const closed = new Promise<number>((r) => app.session.ws.once("close", (code) => r(code)));
    for (let i = 0; i < 10; i++) app.session.sendRaw(`junk ${i}`);
    expect(await closed).toBe(1007);
    await host.waitFor(() => host.ends.length === 1, "end");
    expect(host.ends[0]!.reason).toBe("relay app sent too many malformed messages");
    expect(responder.failed).toBe(true);
    expect(app.sessions).toHaveLength(1); // no reconnect after closing on purpose
  });

  it("end hands the call back with handoffData parsed when it is JSON, kept as sent when not", async () => {
    const { app, host } = await setup();
    const closed = new Promise<number>((r) => app.session.ws.once("close", (code) => r(code)));
    app.session.end(JSON.stringify({ reasonCode: "live-agent-handoff", reason: "wants a person" }));
    await host.waitFor(() => host.ends.length === 1, "end");
    expect(host.ends).toEqual([{ reason: "relay app ended the session", handoffData: { reasonCode: "live-agent-handoff", reason: "wants a person" } }]);
    expect(host.eventsOf("relay.end")).toEqual([{ handoffData: '{"reasonCode":"live-agent-handoff","reason":"wants a person"}' }]);
    expect(await closed).toBe(1000);

    const second = await setup();
    second.app.session.end("ticket 42");
    await second.host.waitFor(() => second.host.ends.length === 1, "end");
    expect(second.host.ends[0]!.handoffData).toBe("ticket 42");
  });

  it("end during a reply: the reply's tokens come out first, then host.end", async () => {
    const { responder, host } = await setup({ reply: (_p, s) => (void s.say(["Transferring ", "you now."]).then(() => s.end('{"to":"sales"}')), []) });
    const items = await collect(responder.respond(turn("sales please")));
    expect(items).toEqual(["Transferring ", "you now."]);
    await host.waitFor(() => host.ends.length === 1, "end");
    expect(host.ends[0]).toEqual({ reason: "relay app ended the session", handoffData: { to: "sales" } });
  });

  it("a dropped socket is reconnected once with a fresh setup; a prompt lost in the drop is asked again", async () => {
    const { app, responder, host } = await setup({ reply: (p, s) => (app.sessions.length === 1 ? (s.drop(), []) : ["Back: ", p]) });
    const items = await collect(responder.respond(turn("are you there")));
    expect(items).toEqual(["Back: ", "are you there"]);
    expect(app.sessions).toHaveLength(2);
    expect(app.sessions[1]!.received.map((f) => f.type)).toEqual(["setup", "prompt"]);
    expect(app.sessions[1]!.setup!.sessionId).toBe(app.sessions[0]!.setup!.sessionId);
    expect(app.sessions[1]!.signatureValid).toBe(true);
    expect(host.eventsOf("relay.dropped")).toHaveLength(1);
    expect(host.eventsOf("relay.connected").map((e) => e!.attempt)).toEqual([1, 2]);
    expect(host.eventsOf("relay.prompt_resent")).toHaveLength(1);
    expect(responder.failed).toBe(false);
    expect(host.ends).toEqual([]);
  });

  it("a prompt made while reconnecting goes out once, after the new setup", async () => {
    const { app, responder, host } = await setup({}, { retryDelayMs: 100 });
    app.session.drop();
    await host.waitFor(() => host.eventsOf("relay.dropped").length === 1, "drop noticed");
    const items = await collect(responder.respond(turn("hello again")));
    expect(items).toEqual(["You ", "said: ", "hello again", "."]);
    expect(app.sessions[1]!.received.map((f) => f.type)).toEqual(["setup", "prompt"]);
    expect(host.eventsOf("relay.prompt_resent")).toEqual([]);
  });

  it("an app that refuses the first upgrade (restarting) is reached on the retry", async () => {
    const app = await RelayApp.start({ authToken: TOKEN });
    cleanups.push(() => app.close());
    app.refuseNext = 1;
    const host = new RecordingHost();
    const responder = new RelayResponder({ url: app.url, authToken: TOKEN, retryDelayMs: 10 });
    cleanups.push(() => responder.close("test over"));
    await responder.open(host);
    expect(app.refused).toBe(1);
    expect(host.eventsOf("relay.connect_failed")).toEqual([{ attempt: 1, message: "the app refused the WebSocket upgrade (HTTP 503)" }]);
    expect(host.eventsOf("relay.connected")).toHaveLength(1);
    expect(await collect(responder.respond(turn("hi")))).toEqual(["You ", "said: ", "hi", "."]);
    expect(responder.failed).toBe(false);
  });

  it("a second drop ends the call as unreachable, after recording relay.error; the runtime can see it failed", async () => {
    const { app, responder, host } = await setup();
    app.session.drop();
    await app.waitFor(() => app.sessions.length === 2 && app.sessions[1]!.setup !== null, "reconnected");
    app.session.drop();
    await host.waitFor(() => host.ends.length === 1, "end");
    expect(host.ends[0]!.reason).toBe("relay app unreachable");
    expect(host.events.map((e) => e.type).filter((t) => t.startsWith("relay."))).toEqual([
      "relay.connected",
      "relay.dropped",
      "relay.connected",
      "relay.dropped",
      "relay.error",
    ]);
    expect(responder.failed).toBe(true);
    expect(responder.failureReason).toMatch(/^relay app unreachable: app closed the socket/);
    expect(app.sessions).toHaveLength(2);
  });
});

describe("ConversationRelay protocol parser", () => {
  it("a relay URL that is not ws:// or wss:// is refused when the responder is made", () => {
    expect(() => new RelayResponder({ url: "https://app.example.com/relay" })).toThrow("relay URL must be ws:// or wss://, got https://");
  });


  it("accepts Twilio's documented shapes and app leniencies; refuses wrong types", () => {
    expect(parseAppMessage('{"type":"text","token":"","last":true}').ok).toBe(true);
    expect(parseAppMessage('{"type":"play","source":"https://x.test/a.wav","loop":0,"interruptible":"speech"}').ok).toBe(true);
    expect(parseAppMessage('{"type":"end","handoffData":{"a":1}}')).toEqual({ ok: true, message: { type: "end", handoffData: '{"a":1}' } });
    expect(parseAppMessage('{"type":"language"}').ok).toBe(false);
    expect(parseAppMessage('{"type":"play","source":"ftp://x.test/a.wav"}').ok).toBe(false);
    expect(parseAppMessage('{"type":"text","token":"x","last":"yes"}').ok).toBe(false);
    expect(parseAppMessage("[1,2]").ok).toBe(false);
  });
});
