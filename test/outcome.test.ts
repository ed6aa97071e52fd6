import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelExtractor, schemaProblem, TranscriptExtractor, validateData } from "../src/outcome/extract.ts";
import { durationOf, transcriptOf, transcriptSummary } from "../src/outcome/outcome.ts";
import { deliverOutcome, SIGNATURE_HEADER, verifyOutcomeSignature } from "../src/outcome/webhook.ts";
import { emptyRecord, type CallRecord } from "../src/store/call-record.ts";
import { OpenAiMock } from "./helpers/openai-mock.ts";

const BOOKING_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["booked", "day", "time"],
  properties: { booked: { type: "boolean" }, day: { type: ["string", "null"] }, time: { type: ["string", "null"] } },
};

function dentistCall(): CallRecord {
  const r = emptyRecord("CA0123", 1_000);
  r.startedAt = 2_000;
  r.endedAt = 47_500;
  r.endReason = "caller hung up";
  r.turns = [
    { turnId: 0, role: "assistant", kind: "greeting", text: "Hi, I'm calling to book a cleaning for Sam.", heardText: "Hi, I'm calling to book a cleaning for Sam.", at: 2_100 },
    { turnId: 1, role: "user", text: "Sure, we have Tuesday at ten.", at: 8_000 },
    { turnId: 1, role: "assistant", kind: "reply", text: "Tuesday at ten is perfect, thank you so much for fitting us in.", heardText: "Tuesday at ten is perfect,", interrupted: true, at: 9_000 },
    { turnId: 2, role: "user", text: "", at: 12_000 },
    { turnId: 2, role: "user", text: "You're booked. Bye.", at: 13_000 },
  ];
  return r;
}

describe("the outcome from a record", () => {
  it("keeps the transcript as heard, and the duration from the stream's start", () => {
    const lines = transcriptOf(dentistCall());
    expect(lines.map((l) => [l.role, l.text, !!l.interrupted])).toEqual([
      ["parley", "Hi, I'm calling to book a cleaning for Sam.", false],
      ["caller", "Sure, we have Tuesday at ten.", false],
      ["parley", "Tuesday at ten is perfect,", true],
      ["caller", "You're booked. Bye.", false],
    ]);
    expect(durationOf(dentistCall())).toBe(45.5);
  });

  it("without a model the summary is the transcript's, labelled so, and data is refused with the reason", async () => {
    const out = await new TranscriptExtractor().extract({ transcript: transcriptOf(dentistCall()), schema: BOOKING_SCHEMA, endReason: "caller hung up" });
    expect(out.summarySource).toBe("transcript");
    expect(out.summary).toMatch(/^Summary made from the transcript \(no language model configured\)/);
    expect(out.summary).toContain('"Sure, we have Tuesday at ten." "You\'re booked. Bye."');
    expect(out.data).toBeNull();
    expect(out.dataError).toMatch(/no language model/);
    expect(transcriptSummary([], null)).toMatch(/said nothing that was recognised/);
  });

  it("validates data and schemas with clear messages", () => {
    expect(validateData(BOOKING_SCHEMA, { booked: true, day: "Tuesday", time: "10:00" })).toBeNull();
    expect(validateData(BOOKING_SCHEMA, { booked: "yes" })).toMatch(/data must have required property 'day'|data\/booked must be boolean/);
    expect(schemaProblem({ type: "objekt" })).toMatch(/type/);
    expect(schemaProblem([])).toMatch(/JSON Schema object/);
    expect(schemaProblem(BOOKING_SCHEMA)).toBeNull();
  });
});

describe("filling the outcome with a model (structured output)", () => {
  let mock: OpenAiMock;
  beforeAll(async () => {
    mock = await OpenAiMock.start({ apiKey: "sk-test" });
  });
  afterAll(async () => {
    await mock.close();
  });
  const extractor = () => new ModelExtractor({ apiKey: "sk-test", baseURL: mock.url, model: "gpt-test" });

  it("asks for json_schema output with the session's schema, and returns validated data", async () => {
    mock.requests.length = 0;
    mock.reply({ text: JSON.stringify({ summary: "Booked Sam a cleaning on Tuesday at ten.", data: { booked: true, day: "Tuesday", time: "10:00" } }) });
    const out = await extractor().extract({ transcript: transcriptOf(dentistCall()), instructions: "Book Sam a cleaning next Tuesday.", schema: BOOKING_SCHEMA, endReason: "caller hung up" });
    expect(out).toEqual({ summary: "Booked Sam a cleaning on Tuesday at ten.", summarySource: "model", data: { booked: true, day: "Tuesday", time: "10:00" }, dataError: null });
    const req = mock.requests[0]!;
    const rf = req.response_format as { type: string; json_schema: { strict: boolean; schema: { properties: { data: unknown } } } };
    expect(rf.type).toBe("json_schema");
    expect(rf.json_schema.strict).toBe(true);
    expect(rf.json_schema.schema.properties.data).toEqual(BOOKING_SCHEMA);
    expect(req.messages[0]!.content).toContain("Book Sam a cleaning next Tuesday.");
    expect(req.messages[1]!.content).toContain("Caller: Sure, we have Tuesday at ten.");
    expect(req.messages[1]!.content).toContain("Parley: Tuesday at ten is perfect, [interrupted]");
  });

  it("asks again once when the data does not validate, then gives up on data but keeps the summary", async () => {
    mock.requests.length = 0;
    mock.reply((_req, i) => ({ text: JSON.stringify(i === 0 ? { summary: "Booked.", data: { booked: "yes" } } : { summary: "Booked.", data: { booked: true, day: "Tuesday", time: null } }) }));
    const fixed = await extractor().extract({ transcript: transcriptOf(dentistCall()), schema: BOOKING_SCHEMA, endReason: null });
    expect(fixed.data).toEqual({ booked: true, day: "Tuesday", time: null });
    expect(mock.requests).toHaveLength(2);
    expect(mock.requests[1]!.messages.at(-1)!.content).toMatch(/does not match the schema/);

    mock.requests.length = 0;
    mock.reply({ text: JSON.stringify({ summary: "Booked.", data: { booked: "yes" } }) });
    const bad = await extractor().extract({ transcript: transcriptOf(dentistCall()), schema: BOOKING_SCHEMA, endReason: null });
    expect(bad).toMatchObject({ summary: "Booked.", summarySource: "model", data: null });
    expect(bad.dataError).toMatch(/does not match outcomeSchema/);
  });

  it("a model that fails says so (the caller falls back to the transcript's summary)", async () => {
    mock.reply({ status: 500, error: { message: "overloaded" } });
    await expect(extractor().extract({ transcript: [], endReason: null })).rejects.toThrow(/overloaded|500/);
  });
});

describe("delivering the outcome", () => {
  const SECRET = "outcome-secret";
  let server: http.Server;
  let url = "";
  let failFirst = 0;
  let statusWhenFailing = 503;
  const received: { body: string; signature: string | undefined }[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        received.push({ body, signature: req.headers[SIGNATURE_HEADER] as string | undefined });
        if (received.length <= failFirst) res.writeHead(statusWhenFailing).end("no");
        else res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/outcome`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("signs the body, retries a failing receiver with backoff, and records every try", async () => {
    received.length = 0;
    failFirst = 2;
    statusWhenFailing = 503;
    const waits: number[] = [];
    const tries: unknown[] = [];
    let now = 1_700_000_000_000;
    const res = await deliverOutcome({
      url,
      body: { callSid: "CA1", summary: "Booked." },
      secret: SECRET,
      now: () => now,
      sleep: async (ms) => {
        waits.push(ms);
        now += ms;
      },
      onAttempt: (a) => tries.push(a),
    });
    expect(res.delivered).toBe(true);
    expect(res.attempts.map((a) => [a.attempt, a.ok, a.status])).toEqual([
      [1, false, 503],
      [2, false, 503],
      [3, true, 204],
    ]);
    expect(tries).toEqual(res.attempts);
    expect(waits).toEqual([1000, 2000]);
    expect(received).toHaveLength(3);
    for (const r of received) expect(JSON.parse(r.body)).toEqual({ callSid: "CA1", summary: "Booked." });
    const last = received.at(-1)!;
    expect(verifyOutcomeSignature(SECRET, last.body, last.signature, Math.floor(now / 1000))).toBe(true);
    expect(verifyOutcomeSignature("wrong", last.body, last.signature, Math.floor(now / 1000))).toBe(false);
    expect(verifyOutcomeSignature(SECRET, last.body.replace("Booked", "Cancelled"), last.signature, Math.floor(now / 1000))).toBe(false);
    expect(verifyOutcomeSignature(SECRET, last.body, last.signature, Math.floor(now / 1000) + 3600)).toBe(false);
  });

  it("a 4xx is the receiver's final word; an unreachable one is tried to the limit; neither throws", async () => {
    received.length = 0;
    failFirst = 99;
    statusWhenFailing = 400;
    const final = await deliverOutcome({ url, body: {}, now: () => 0, sleep: async () => {} });
    expect(final.delivered).toBe(false);
    expect(final.attempts).toHaveLength(1);
    expect(final.attempts[0]!.error).toBe("HTTP 400");

    const gone = await deliverOutcome({ url: "http://127.0.0.1:9/outcome", body: {}, attempts: 3, now: () => 0, sleep: async () => {} });
    expect(gone.delivered).toBe(false);
    expect(gone.attempts.map((a) => a.retryInMs)).toEqual([1000, 2000, null]);
    expect(gone.attempts.every((a) => a.status === null && a.error)).toBe(true);
  });
});
