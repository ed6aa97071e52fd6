import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CallRecord } from "../src/store/call-record.ts";
import { COLD_ANNOUNCEMENT, NO_ANSWER_TEXT, WARM_ANNOUNCEMENT } from "../src/call/transfer.ts";
import { TRANSFER_TEXT } from "../src/providers/agent/demo.ts";
import { NOT_CAUGHT_TEXT } from "../src/providers/agent/echo.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { finishedUtterances, type TwilioCall } from "./helpers/twilio-client.ts";
import { apiClient } from "./helpers/api-client.ts";
import { TwilioStandIn, type StandInCall } from "./helpers/twilio-standin.ts";

/**
 * Handing a call over to a human, end to end against the Twilio stand-in: real sockets, the real Silero VAD and
 * recogniser on the shared recordings, real synthesis. The stand-in carries out the REST updates as Twilio does: a
 * `<Dial>` ends the stream and connects the call to the number; `<Conference>` puts each leg in the named room.
 */
const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
const AUTH = "standin-auth-token";
const API_TOKEN = "transfer-api-token-0123456789";
const PARLEY_NUMBER = "+15550100001";
const DESK = "+15550100099"; // TRANSFER_NUMBER

describe("handing over to a human", () => {
  let standIn: TwilioStandIn;
  beforeAll(async () => {
    standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH, ringMs: 100 });
  });
  afterAll(() => standIn?.close());
  const parley = useParley(() => ({
    GREETING: "Hi.",
    TTS_RATE: "280", // everything Parley says is heard whole here: faster speech keeps the file short
    STT_MODE: "phrases",
    STT_PHRASES: "what's the weather like|the weather like|we must find a new home in the stars|find a new home in the stars",
    TWILIO_ACCOUNT_SID: ACCOUNT,
    TWILIO_AUTH_TOKEN: AUTH,
    TWILIO_API_URL: standIn.url,
    TWILIO_FROM_NUMBER: PARLEY_NUMBER,
    API_TOKEN,
    TRANSFER_NUMBER: DESK,
  }));
  let base = "";
  beforeAll(async () => {
    base = (await parley.start()).base;
  });

  const { api, record, waitRecord } = apiClient(() => base, API_TOKEN);

  /** A caller rings Parley's number and hears the greeting through. */
  const callIn = async (from: string): Promise<{ call: StandInCall; stream: TwilioCall }> => {
    const call = await standIn.inbound({ webhookUrl: `${base}/voice/webhook`, from, to: PARLEY_NUMBER });
    const stream = await call.waitForStream(1);
    await stream.waitFor(() => finishedUtterances(stream) >= 1, 10_000, "the greeting");
    return { call, stream };
  };
  /** The caller says `audio` and hears the whole reply. */
  const turn = async (stream: TwilioCall, audio: Uint8Array) => {
    const before = finishedUtterances(stream);
    stream.say(audio);
    stream.silence(1200);
    await stream.waitFor(() => finishedUtterances(stream) > before, 15_000, "the reply");
  };
  const assistantTexts = (r: CallRecord) => r.turns.filter((t) => t.role === "assistant").map((t) => t.text);

  it("the agent's tool: the caller presses 0 for a person, and the demo agent hands the call to TRANSFER_NUMBER", async () => {
    const { call, stream } = await callIn("+15550100015");
    // The operator key: a touch tone, which reaches the agent as "the caller pressed 0" (the demo agent's speech rule,
    // "transfer me to a human", is checked in test/agent-demo.test.ts: no shared recording says it).
    stream.dtmf("0");
    await call.waitFor(() => call.dialled.length > 0, 15_000, "the dial");
    expect((await stream.closed).by).toBe("client");
    expect(call.dialled).toEqual([DESK]);
    const rec = await waitRecord(call.sid, (r) => !r.live, "the end");
    expect(rec.turns.find((t) => t.role === "user")!.text).toBe("the caller pressed 0");
    expect(assistantTexts(rec).slice(-2)).toEqual([TRANSFER_TEXT, COLD_ANNOUNCEMENT]);
    expect(rec.transfer).toMatchObject({ mode: "cold", to: DESK, by: "agent", ok: true });
    expect(rec.endReason).toBe(`transferred to ${DESK} (cold transfer)`);
    await call.hangUp();
  }, 30_000);

  it("cold: the caller hears the announcement whole, then the carrier dials the number; the call ends as transferred", async () => {
    const { call, stream } = await callIn("+15550100011");
    const heardBefore = finishedUtterances(stream);

    const res = await api(`/api/calls/${call.sid}/transfer`, { to: "+15550100077", mode: "cold" });
    expect(res).toEqual({ status: 202, json: { ok: true, status: "started", mode: "cold", to: "+15550100077" } });
    const closed = await stream.closed;
    // The stream ended from Twilio's side (`stop`: the call left <Connect> for the <Dial>), after the announcement.
    expect(closed.by).toBe("client");
    await call.waitFor(() => call.dialled.length > 0, 5_000, "the dial");
    expect(call.dialled).toEqual(["+15550100077"]);
    expect(call.status).toBe("in-progress"); // the caller is on the phone with the human now
    expect(finishedUtterances(stream)).toBe(heardBefore + 1);
    const update = standIn.requests.find((r) => r.path.endsWith(`/Calls/${call.sid}.json`) && r.form.has("Twiml"))!;
    expect(update.form.get("Twiml")).toMatch(/<Response><Dial callerId="\+15550100001">\+15550100077<\/Dial><\/Response>$/);
    // The announcement's last mark came back before the REST update was sent.
    const lastEcho = stream.eventsOf("mark-echoed").at(-1)!;
    expect(lastEcho.name).toMatch(/:end$/);
    expect(lastEcho.at).toBeLessThanOrEqual(update.at);

    const rec = await waitRecord(call.sid, (r) => !r.live, "the end of Parley's part");
    expect(rec.endReason).toBe("transferred to +15550100077 (cold transfer)");
    expect(rec.transfer).toMatchObject({ mode: "cold", to: "+15550100077", by: "api", ok: true });
    const last = rec.turns.at(-1)!;
    expect([last.kind, last.text, last.heardText, last.interrupted]).toEqual(["announcement", COLD_ANNOUNCEMENT, COLD_ANNOUNCEMENT, false]);
    expect(rec.errors).toEqual([]);
    await call.hangUp(); // the human hangs up
  }, 30_000);

  it("warm: Parley calls the human, briefs them with the call's summary, then joins both legs in one conference", async () => {
    const { call, stream } = await callIn("+15550100012");
    await turn(stream, await clipMulaw("whats-the-weather-like"));

    const res = await api(`/api/calls/${call.sid}/transfer`, { to: "+15550100088", mode: "warm" });
    expect(res.status).toBe(202);
    await standIn.waitFor(() => standIn.calls.some((c) => c.to === "+15550100088"), 5_000, "the human's leg");
    const leg = standIn.calls.find((c) => c.to === "+15550100088")!;
    expect(leg.direction).toBe("outbound-api");
    const legStream = await leg.waitForStream(1);
    const room = `parley-${call.sid}`;
    await standIn.waitFor(() => standIn.conferenceMembers(room).length === 2, 15_000, "both legs in the conference");
    expect(standIn.conferenceMembers(room).map((c) => c.sid).sort()).toEqual([call.sid, leg.sid].sort());
    // The human heard the briefing to its end before the join; the caller heard the hold announcement.
    expect(finishedUtterances(legStream)).toBe(1);
    expect((await legStream.closed).by).toBe("client");
    expect((await stream.closed).by).toBe("client");

    const legRec = await waitRecord(leg.sid, (r) => !r.live, "the end of the human leg's stream");
    const briefing = legRec.turns[0]!;
    expect(briefing.kind).toBe("greeting");
    expect(briefing.heardText).toBe(briefing.text);
    expect(briefing.text).toBe(`Parley here, with a call to hand over. Summary from the transcript, made without a language model: the caller said "what's the weather like". Connecting you now.`);
    expect(legRec.endReason).toBe(`joined to transferred call ${call.sid}`);

    const rec = await waitRecord(call.sid, (r) => !r.live && r.transfer?.ok === true, "the transfer on the record");
    expect(rec.endReason).toBe("transferred to +15550100088 (warm transfer)");
    expect(rec.transfer).toMatchObject({ mode: "warm", to: "+15550100088", ok: true, legCallSid: leg.sid, room });
    expect(assistantTexts(rec)).toContain(WARM_ANNOUNCEMENT);
    const joins = standIn.requests.filter((r) => r.form.get("Twiml")?.includes(`<Conference`));
    expect(joins.map((r) => r.path.split("/").at(-1))).toEqual(expect.arrayContaining([`${call.sid}.json`, `${leg.sid}.json`]));
    await call.hangUp();
    await leg.hangUp();
  }, 30_000);

  it("the human does not answer: the caller is told, and the conversation goes on with the agent", async () => {
    const { call, stream } = await callIn("+15550100013");
    standIn.nextOutcome = "no-answer";
    const heardBefore = finishedUtterances(stream);
    expect((await api(`/api/calls/${call.sid}/transfer`, { to: "+15550100066", mode: "warm" })).status).toBe(202);
    // The hold announcement, then the news.
    await stream.waitFor(() => finishedUtterances(stream) >= heardBefore + 2, 15_000, "the hold message and the no-answer message");
    const rec = await waitRecord(call.sid, (r) => r.transfer?.ok === false, "the failed transfer");
    expect(rec.transfer).toMatchObject({ mode: "warm", to: "+15550100066", ok: false, error: "no answer (unanswered)" });
    expect(assistantTexts(rec).slice(-2)).toEqual([WARM_ANNOUNCEMENT, NO_ANSWER_TEXT]);
    expect(standIn.calls.find((c) => c.to === "+15550100066")!.status).toBe("no-answer");

    await turn(stream, await clipMulaw("new-home-in-the-stars"));
    const after = await record(call.sid);
    expect(after.live).toBe(true);
    // The caller's next turn is answered by the agent (whatever the recogniser made of it: the demo echoes it).
    const [said, answer] = after.turns.slice(-2);
    expect([said!.role, answer!.kind]).toEqual(["user", "reply"]);
    expect(answer!.text).toBe(said!.text ? `You said: ${said!.text}.` : NOT_CAUGHT_TEXT);
    await call.hangUp();
  }, 30_000);

  it("an invalid number: 400 naming E.164, the refusal on the record, and the call goes on", async () => {
    const { call, stream } = await callIn("+15550100014");
    const res = await api(`/api/calls/${call.sid}/transfer`, { to: "555-0100", mode: "cold" });
    expect(res.status).toBe(400);
    expect(res.json.error).toMatch(/E\.164/);
    expect((await api(`/api/calls/${call.sid}/transfer`, { to: "+15550100077", mode: "sideways" })).status).toBe(400);
    const extra = await api(`/api/calls/${call.sid}/transfer`, { to: "+15550100077", colour: "red" });
    expect([extra.status, extra.json.error]).toEqual([400, expect.stringMatching(/additional properties/)]);
    expect((await api(`/api/calls/CA${"0".repeat(32)}/transfer`, { to: "+15550100077" })).status).toBe(404);
    const spec = (await api("/api/openapi.json")).json;
    expect(Object.keys(spec.paths["/api/calls/{callSid}/transfer"].post.requestBody.content["application/json"].schema.properties)).toEqual(["to", "mode", "announcement", "briefing"]);
    await turn(stream, await clipMulaw("whats-the-weather-like"));
    const rec = await record(call.sid);
    expect(rec.live).toBe(true);
    expect(rec.errors.map((e) => e.type)).toEqual(["transfer.error"]);
    expect(rec.transfer ?? null).toBeNull();
    expect(assistantTexts(rec).at(-1)).toBe("You said: what's the weather like.");
    expect(standIn.requests.some((r) => r.path.endsWith(`/Calls/${call.sid}.json`))).toBe(false); // the carrier was never asked
    await call.hangUp();
  }, 30_000);


  it("MCP: transfer_call over Streamable HTTP, with a bad number a tool error first", async () => {
    const client = new Client({ name: "transfer-test", version: "0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: { authorization: `Bearer ${API_TOKEN}` } } }));
    try {
      const { call, stream } = await callIn("+15550100016");
      const text = (r: CallToolResult) => r.content.map((c) => (c.type === "text" ? c.text : "")).join("");
      const bad = (await client.callTool({ name: "transfer_call", arguments: { call_id: call.sid, to: "0800 FLOWERS" } })) as CallToolResult;
      expect(bad.isError).toBe(true);
      expect(text(bad)).toMatch(/E\.164/);
      expect((await record(call.sid)).live).toBe(true);

      const ok = (await client.callTool({ name: "transfer_call", arguments: { call_id: call.sid, to: "+15550100055", mode: "cold" } })) as CallToolResult;
      expect(ok.structuredContent).toEqual({ ok: true, mode: "cold", to: "+15550100055" });
      await call.waitFor(() => call.dialled.length > 0, 15_000, "the dial");
      expect(call.dialled).toEqual(["+15550100055"]);
      expect((await stream.closed).by).toBe("client");
      await waitRecord(call.sid, (r) => !r.live, "the end");
      const got = (await client.callTool({ name: "get_call", arguments: { call_id: call.sid } })) as CallToolResult;
      expect(got.structuredContent).toMatchObject({ end_reason: "transferred to +15550100055 (cold transfer)", transfer: { mode: "cold", to: "+15550100055", ok: true } });
      await call.hangUp();
    } finally {
      await client.close();
    }
  }, 30_000);
});
