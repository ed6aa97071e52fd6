import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TwilioRest, TwilioRestError } from "../src/carriers/twilio/rest.ts";
import { TwilioStandIn } from "./helpers/twilio-standin.ts";

/** Parley's REST client, driven through the real `twilio` library against the local stand-in. */
describe("TwilioRest against the Twilio stand-in", () => {
  const accountSid = "AC11111111111111111111111111111111";
  const authToken = "rest-test-token";
  let standIn: TwilioStandIn;
  let rest: TwilioRest;
  // Status callbacks land here; the stand-in needs somewhere to post them.
  let sink: Server;
  let sinkUrl: string;

  beforeAll(async () => {
    standIn = await TwilioStandIn.start({ accountSid, authToken, ringMs: 50 });
    rest = new TwilioRest({ accountSid, authToken, apiUrl: standIn.url, timeoutMs: 5000 });
    sink = createServer((req, res) => {
      req.resume();
      req.on("end", () => res.end());
    });
    await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
    sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/status`;
  });

  afterAll(async () => {
    await standIn?.close();
    sink?.closeAllConnections();
    await new Promise((r) => sink?.close(r));
  });

  // <Hangup/>: the stand-in answers and ends the call without opening a stream.
  const twiml = "<Response><Hangup/></Response>";

  it("creates a call with exactly the documented parameters and Basic auth", async () => {
    const { sid, status } = await rest.createCall({ to: "+15005550006", from: "+15005550001", twiml, statusCallback: sinkUrl, timeLimitSeconds: 600 });
    expect(sid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(status).toBe("queued");

    const req = standIn.requests.at(-1)!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe(`/2010-04-01/Accounts/${accountSid}/Calls.json`);
    expect(req.authorization).toBe(`Basic ${Buffer.from(`${accountSid}:${authToken}`).toString("base64")}`);
    expect([...new Set(req.form.keys())].sort()).toEqual(["From", "StatusCallback", "StatusCallbackEvent", "StatusCallbackMethod", "TimeLimit", "To", "Twiml"]);
    // Array parameters are repeated keys, in order.
    expect(req.body).toContain("StatusCallbackEvent=initiated&StatusCallbackEvent=ringing&StatusCallbackEvent=answered&StatusCallbackEvent=completed");
    expect(req.form.get("Twiml")).toBe(twiml);
    expect(req.form.get("StatusCallback")).toBe(sinkUrl);
    expect(req.form.get("StatusCallbackMethod")).toBe("POST");
    expect(req.form.get("TimeLimit")).toBe("600");

    const call = standIn.call(sid);
    await call.ended;
    expect(call.statusCallbacksSent.map((c) => c.status)).toEqual(["initiated", "ringing", "in-progress", "completed"]);
  });

  it("hangs up with Status=completed", async () => {
    const { sid } = await rest.createCall({ to: "+15005550006", from: "+15005550001", twiml, statusCallback: sinkUrl, statusCallbackEvent: ["completed"] });
    await rest.hangup(sid);
    const req = standIn.requests.at(-1)!;
    expect(req.path).toBe(`/2010-04-01/Accounts/${accountSid}/Calls/${sid}.json`);
    expect(req.body).toBe("Status=completed");
    await standIn.call(sid).ended;
    // Hung up before it was answered: canceled, reported once as the final event.
    expect(standIn.call(sid).statusCallbacksSent.map((c) => c.status)).toEqual(["canceled"]);
  });

  it("turns Twilio's errors into errors naming the status, Twilio's code and message, and the operation", async () => {
    const wrong = new TwilioRest({ accountSid, authToken: "wrong-token", apiUrl: standIn.url });
    const denied = await wrong.createCall({ to: "+15005550006", from: "+15005550001", twiml, statusCallback: sinkUrl }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(TwilioRestError);
    expect((denied as TwilioRestError).message).toBe("Twilio REST create call failed: HTTP 401, Twilio error 20003: Authenticate (https://www.twilio.com/docs/errors/20003)");
    expect(denied).toMatchObject({ status: 401, code: 20003, operation: "create call" });

    await expect(rest.hangup("CA00000000000000000000000000000000")).rejects.toThrow(/hang up call CA0{32} failed: HTTP 404, Twilio error 20404/);

    standIn.nextRestError = { status: 429, code: 20429, message: "Too Many Requests" };
    await expect(rest.createCall({ to: "+15005550006", from: "+15005550001", twiml, statusCallback: sinkUrl })).rejects.toThrow(
      /create call failed: HTTP 429, Twilio error 20429: Too Many Requests/,
    );
    standIn.nextRestError = { status: 503, code: 20503, message: "Service Unavailable" };
    await expect(rest.createCall({ to: "+15005550006", from: "+15005550001", twiml, statusCallback: sinkUrl })).rejects.toMatchObject({
      status: 503,
      code: 20503,
    });
  });

  it("names the operation when Twilio never answers (refused connection, timeout)", async () => {
    const closed = new TwilioRest({ accountSid, authToken, apiUrl: "http://127.0.0.1:1" });
    await expect(closed.hangup("CA00000000000000000000000000000000")).rejects.toThrow(/^Twilio REST hang up call CA0{32} failed: .*ECONNREFUSED/);
    const silent = createServer(() => {}); // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    try {
      const slow = new TwilioRest({ accountSid, authToken, apiUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, timeoutMs: 100 });
      await expect(slow.createCall({ to: "+15005550006", from: "+15005550001", twiml, statusCallback: sinkUrl })).rejects.toThrow(
        /^Twilio REST create call failed: timeout of 100ms exceeded/,
      );
    } finally {
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
  });

  it("refuses inline TwiML over Twilio's 4000-character limit without calling", async () => {
    const before = standIn.requests.length;
    const long = `<Response><Connect><Stream url="wss://example.com/s"><Parameter name="p" value="${"x".repeat(4000)}"/></Stream></Connect></Response>`;
    await expect(rest.createCall({ to: "+15005550006", from: "+15005550001", twiml: long, statusCallback: sinkUrl })).rejects.toThrow(
      /inline TwiML is \d+ characters, Twilio's limit is 4000/,
    );
    expect(standIn.requests.length).toBe(before);
  });
});
