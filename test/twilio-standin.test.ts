import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { isValidStreamUpgrade, isValidWebhook } from "../src/carriers/twilio/verify.ts";
import { TwilioRest } from "../src/carriers/twilio/rest.ts";
import { connectStreamTwiml } from "../src/carriers/twilio/answer.ts";
import { TwilioStandIn, waitUntil } from "./helpers/twilio-standin.ts";

/**
 * The stand-in against a tiny app written here (not Parley): it must follow TwiML to a stream, echo marks, follow a
 * <Connect action> after a dropped socket or a server close, and sign everything it sends.
 */
describe("Twilio stand-in", () => {
  const accountSid = "AC22222222222222222222222222222222";
  const authToken = "standin-test-token";
  let standIn: TwilioStandIn;
  let rest: TwilioRest;
  let app: Server;
  let origin: string;

  // What the tiny app saw.
  const webhooks: { path: string; params: Record<string, string>; signed: boolean }[] = [];
  const sockets: { ws: WebSocket; signed: boolean; messages: { event: string; [k: string]: unknown }[] }[] = [];
  /** TwiML the app answers to the next action / voice request. */
  let nextTwiml: string[] = [];

  const streamTwiml = (gen: string) =>
    connectStreamTwiml({ streamUrl: `${origin.replace("http", "ws")}/stream`, parameters: { gen, token: `a&b"<c>'` }, connectAction: `${origin}/action?x=1` });

  beforeAll(async () => {
    standIn = await TwilioStandIn.start({ accountSid, authToken, ringMs: 20 });
    rest = new TwilioRest({ accountSid, authToken, apiUrl: standIn.url });
    const wss = new WebSocketServer({ noServer: true });
    app = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        const params = Object.fromEntries(new URLSearchParams(body));
        const url = `${origin}${req.url}`;
        webhooks.push({ path: req.url!, params, signed: isValidWebhook(authToken, req.headers["x-twilio-signature"] as string, url, params) });
        if (req.url!.startsWith("/status")) return res.writeHead(204).end();
        res.writeHead(200, { "content-type": "text/xml" }).end(nextTwiml.shift() ?? "<Response><Hangup/></Response>");
      });
    });
    app.on("upgrade", (req, socket, head) => {
      const signed = isValidStreamUpgrade(authToken, req.headers["x-twilio-signature"] as string, new URL(origin), req.url!);
      wss.handleUpgrade(req, socket, head, (ws) => {
        const entry = { ws, signed, messages: [] as { event: string }[] };
        sockets.push(entry);
        ws.on("message", (d) => entry.messages.push(JSON.parse(d.toString())));
      });
    });
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
    origin = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await standIn?.close();
    app?.closeAllConnections();
    await new Promise((r) => app?.close(r));
  });

  const statusCallbacks = (callSid: string) => webhooks.filter((w) => w.path === "/status" && w.params.CallSid === callSid);
  const eventsOn = (i: number) => sockets[i]!.messages.map((m) => m.event);

  it("follows inline TwiML to a stream, echoes marks, follows <Connect action> after a drop and a server close", async () => {
    const { sid } = await rest.createCall({ to: "+15550100002", from: "+15550100001", twiml: streamTwiml("1"), statusCallback: `${origin}/status` });
    const call = standIn.call(sid);

    // 1. The stream opens, signed, with the decoded parameters.
    const s1 = await call.waitForStream(1);
    await waitUntil(() => eventsOn(0).includes("start"), 5000, "start on the first socket");
    const start = sockets[0]!.messages.find((m) => m.event === "start") as unknown as { start: { callSid: string; customParameters: Record<string, string> } };
    expect(sockets[0]!.signed).toBe(true);
    expect(eventsOn(0).slice(0, 2)).toEqual(["connected", "start"]);
    expect(start.start.callSid).toBe(sid);
    expect(start.start.customParameters).toEqual({ gen: "1", token: `a&b"<c>'` });

    // 2. Audio then a mark: the mark comes back only once the audio before it has played.
    const payload = Buffer.alloc(160 * 5, 0xff).toString("base64");
    sockets[0]!.ws.send(JSON.stringify({ event: "media", streamSid: s1.streamSid, media: { payload } }));
    sockets[0]!.ws.send(JSON.stringify({ event: "mark", streamSid: s1.streamSid, mark: { name: "m1" } }));
    await waitUntil(() => sockets[0]!.messages.some((m) => m.event === "mark"), 5000, "the echoed mark");
    const echoedAt = s1.eventsOf("mark-echoed")[0]!.at;
    expect(s1.frames).toHaveLength(5);
    for (const f of s1.frames) expect(f.playedAt).not.toBeNull();
    expect(Math.max(...s1.frames.map((f) => f.playedAt!))).toBeLessThanOrEqual(echoedAt);

    // 3. The connection drops: Twilio asks the action URL and opens the stream it returns, same call, new streamSid.
    nextTwiml.push(streamTwiml("2"));
    call.drop();
    const s2 = await call.waitForStream(2);
    expect(s1.closedBy).toBe("dropped");
    expect(eventsOn(0)).not.toContain("stop");
    expect(s2.streamSid).not.toBe(s1.streamSid);
    expect(s2.callSid).toBe(sid);
    await waitUntil(() => sockets.length === 2 && eventsOn(1).includes("start"), 5000, "start on the second socket");

    // 4. The app closes the socket: the action URL again; this time the app hangs up.
    nextTwiml.push("<Response><Hangup/></Response>");
    sockets[1]!.ws.close(1000);
    await call.ended;
    expect(s2.closedBy).toBe("server");
    expect(call.status).toBe("completed");
    expect(call.actionRequests.map((r) => [r.url, r.params.CallStatus, r.twiml])).toEqual([
      [`${origin}/action?x=1`, "in-progress", streamTwiml("2")],
      [`${origin}/action?x=1`, "in-progress", "<Response><Hangup/></Response>"],
    ]);

    // 5. Every request was signed (action URLs over their query string too); callbacks in order, numbered from 0.
    expect(webhooks.every((w) => w.signed)).toBe(true);
    const callbacks = statusCallbacks(sid);
    expect(callbacks.map((c) => [c.params.CallStatus, c.params.SequenceNumber])).toEqual([
      ["initiated", "0"],
      ["ringing", "1"],
      ["in-progress", "2"],
      ["completed", "3"],
    ]);
    expect(callbacks[3]!.params).toMatchObject({ AccountSid: accountSid, Direction: "outbound-api", ApiVersion: "2010-04-01", CallbackSource: "call-progress-events" });
    expect(callbacks[3]!.params.CallDuration).toMatch(/^\d+$/);
    expect(callbacks[3]!.params.Timestamp).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);
  }, 20_000);

  it("a REST hang-up sends stop then closes; a busy callee never gets a stream", async () => {
    const { sid } = await rest.createCall({ to: "+15550100002", from: "+15550100001", twiml: streamTwiml("3"), statusCallback: `${origin}/status` });
    const call = standIn.call(sid);
    await call.waitForStream(1);
    const i = sockets.length - 1;
    await waitUntil(() => eventsOn(i).includes("start"), 5000, "start");
    await rest.hangup(sid);
    await call.ended;
    expect(eventsOn(i).at(-1)).toBe("stop");
    expect(call.stream!.closedBy).toBe("client");
    expect(call.actionRequests).toEqual([]); // the call is over: nothing after </Connect> runs
    expect(statusCallbacks(sid).map((c) => c.params.CallStatus)).toEqual(["initiated", "ringing", "in-progress", "completed"]);

    standIn.nextOutcome = "busy";
    const busy = await rest.createCall({ to: "+15550100002", from: "+15550100001", twiml: streamTwiml("4"), statusCallback: `${origin}/status` });
    await standIn.call(busy.sid).ended;
    expect(standIn.call(busy.sid).streams).toEqual([]);
    expect(statusCallbacks(busy.sid).map((c) => c.params.CallStatus)).toEqual(["initiated", "busy"]);
    expect(standIn.nextOutcome).toBe("answer");
  }, 20_000);

  it("an inbound call posts the signed voice webhook and runs its TwiML until the caller hangs up", async () => {
    nextTwiml.push(streamTwiml("5"));
    const call = await standIn.inbound({ webhookUrl: `${origin}/voice`, from: "+15550100009", to: "+15550100001" });
    expect(call.direction).toBe("inbound");
    const voice = webhooks.find((w) => w.path === "/voice")!;
    expect(voice.signed).toBe(true);
    expect(voice.params).toMatchObject({ CallSid: call.sid, CallStatus: "ringing", Direction: "inbound", From: "+15550100009" });
    const i = sockets.length - 1;
    await waitUntil(() => eventsOn(i).includes("start"), 5000, "start");
    await call.callerHangsUp();
    await call.ended;
    expect(eventsOn(i).at(-1)).toBe("stop");
    expect(call.status).toBe("completed");
  }, 20_000);
});
