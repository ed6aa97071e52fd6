import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { plivoHangupXml, plivoStreamXml } from "../src/carriers/plivo/answer-xml.ts";
import { parsePlivo, PlivoSerializer } from "../src/carriers/plivo/codec.ts";
import { PlivoRest, PlivoRestError } from "../src/carriers/plivo/rest.ts";
import { formParams, isValidPlivoSignature, isValidPlivoUpgrade } from "../src/carriers/plivo/signature.ts";
import { plivoStatus, plivoStatusDetails } from "../src/carriers/plivo/status.ts";
import { PlivoStandIn } from "./helpers/plivo-standin.ts";

/**
 * Parley's Plivo REST client and signature checks against the Plivo stand-in, and the stand-in's own Plivo behaviour
 * (signed requests, XML run as Plivo runs it, checkpoints echoed after their audio, clears dropping checkpoints), with
 * a small app in place of Parley that uses only the Plivo carrier's pure parts.
 */
const AUTH_ID = "MAZDQ1ZWI4ZMEXAMPLE0";
const TOKEN = "plivo-standin-auth-token";

describe("Plivo REST client and stand-in", () => {
  let standIn: PlivoStandIn;
  let app: Server;
  let wss: WebSocketServer;
  let base: string;
  const seen: { path: string; params: Record<string, string>; valid: boolean }[] = [];
  /** What the app answers on /answer: a stream, or a hang-up. */
  let answer: "stream" | "hangup" = "hangup";
  const upgrades: boolean[] = [];
  const serverLog: string[] = [];

  beforeAll(async () => {
    standIn = await PlivoStandIn.start({ authId: AUTH_ID, authToken: TOKEN, ringMs: 100 });
    app = createServer(async (req, res) => {
      let raw = "";
      for await (const c of req) raw += c;
      const url = `${base}${req.url}`;
      const params = formParams(raw);
      const valid = isValidPlivoSignature({
        authToken: TOKEN,
        method: "POST",
        url,
        params,
        signature: req.headers["x-plivo-signature-v3"] as string | undefined,
        nonce: req.headers["x-plivo-signature-v3-nonce"] as string | undefined,
      });
      seen.push({ path: req.url!, params: Object.fromEntries(new URLSearchParams(raw)), valid });
      if (!valid) return void res.writeHead(403).end();
      res.writeHead(200, { "content-type": "application/xml" });
      if (req.url!.startsWith("/answer")) res.end(answer === "stream" ? plivoStreamXml({ streamUrl: `${base.replace("http", "ws")}/stream?token=t1` }) : plivoHangupXml("rejected"));
      else res.end();
    });
    wss = new WebSocketServer({ noServer: true });
    app.on("upgrade", (req, socket, head) => {
      const ok = isValidPlivoUpgrade(TOKEN, new URL(base), req.url!, req.headers["x-plivo-signature-v3"] as string, req.headers["x-plivo-signature-v3-nonce"] as string);
      upgrades.push(ok);
      if (!ok) return void socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
      wss.handleUpgrade(req, socket, head, (ws) => {
        let out: PlivoSerializer | null = null;
        ws.on("message", (data) => {
          const r = parsePlivo(data.toString());
          if (!r.ok) return void serverLog.push(`malformed ${r.kind}`);
          const m = r.msg;
          serverLog.push(m.event === "playedStream" ? `played ${m.name}` : m.event);
          if (m.event === "start") {
            out = new PlivoSerializer(m.streamId);
            // 1 s of audio, a checkpoint, 1 s more and another: the first echoes after ~1 s, the second never (cleared).
            for (let i = 0; i < 50; i++) ws.send(out.media(new Uint8Array(160).fill(0x7f)));
            ws.send(out.mark("a"));
            for (let i = 0; i < 50; i++) ws.send(out.media(new Uint8Array(160).fill(0x7f)));
            ws.send(out.mark("b"));
          }
          if (m.event === "playedStream" && m.name === "a") ws.send(out!.clear());
          if (m.event === "clearedAudio") ws.send(out!.mark("c"));
          if (m.event === "playedStream" && m.name === "c") ws.close(1000);
        });
      });
    });
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await standIn?.close();
    wss?.close();
    await new Promise((r) => app?.close(r));
  });

  const rest = () => new PlivoRest({ authId: AUTH_ID, authToken: TOKEN, apiUrl: standIn.url });

  it("places a call with JSON and Basic auth; Plivo then rings, answers, runs the XML and reports the hang-up, all signed", async () => {
    answer = "hangup";
    const placed = await rest().placeCall({ to: "+15550100002", from: "+15550100001", answerUrl: `${base}/answer?parleyCallId=p1`, hangupUrl: `${base}/hangup?parleyCallId=p1`, ringUrl: `${base}/ring`, ringTimeoutSeconds: 30, timeLimitSeconds: 600 });
    expect(placed.message).toBe("call fired");
    const create = standIn.requests.find((r) => r.method === "POST")!;
    expect(create.path).toBe(`/v1/Account/${AUTH_ID}/Call/`);
    expect(create.authorization).toBe(`Basic ${Buffer.from(`${AUTH_ID}:${TOKEN}`).toString("base64")}`);
    expect(create.json).toEqual({
      from: "+15550100001",
      to: "+15550100002",
      answer_url: `${base}/answer?parleyCallId=p1`,
      answer_method: "POST",
      hangup_url: `${base}/hangup?parleyCallId=p1`,
      hangup_method: "POST",
      ring_url: `${base}/ring`,
      ring_method: "POST",
      ring_timeout: 30,
      time_limit: 600,
    });
    const call = standIn.call(placed.requestUuid);
    await call.ended;
    expect(seen.map((s) => [s.path.split("?")[0], s.valid])).toEqual([["/ring", true], ["/answer", true], ["/hangup", true]]);
    // The answer request of an outbound call says in-progress: the callee picked up.
    expect(seen.map((s) => plivoStatus(s.params))).toEqual(["ringing", "answered", "completed"]);
    expect(seen[2]!.params).toMatchObject({ CallUUID: call.callUuid, Event: "Hangup", CallStatus: "completed" });
    // Whole seconds from answer to hang-up, as Plivo counts them (0 or 1 here, depending on the machine's load).
    expect(seen[2]!.params.Duration).toMatch(/^\d+$/);
    expect(plivoStatusDetails(seen[2]!.params)).toEqual({ durationS: seen[2]!.params.Duration });
  });

  it("hangs up a ringing call by its request_uuid, an answered one by its CallUUID, and says when it had already ended", async () => {
    seen.length = 0;
    standIn.ringMs = 5_000;
    const ringing = await rest().placeCall({ to: "+15550100003", from: "+15550100001", answerUrl: `${base}/answer`, hangupUrl: `${base}/hangup` });
    expect(standIn.call(ringing.requestUuid).answeredAt).toBeNull(); // still ringing: the CallUUID means nothing to the API yet
    expect(await rest().hangUp({ callUuid: "not-answered-yet", requestUuid: ringing.requestUuid })).toBe("hung up");
    await standIn.call(ringing.requestUuid).ended;
    expect(plivoStatus(seen.find((s) => s.path === "/hangup")!.params)).toBe("cancelled");
    expect(await rest().hangUp({ requestUuid: ringing.requestUuid })).toBe("already ended");
    standIn.ringMs = 100;

    answer = "stream";
    const live = await rest().placeCall({ to: "+15550100004", from: "+15550100001", answerUrl: `${base}/answer`, hangupUrl: `${base}/hangup` });
    const call = standIn.call(live.requestUuid);
    await call.waitForStream(1);
    expect(await rest().hangUp({ callUuid: call.callUuid, requestUuid: live.requestUuid })).toBe("hung up");
    await call.ended;
    expect(call.hangupCause).toBe("API Request");
    expect(standIn.requests.filter((r) => r.method === "DELETE").map((r) => [r.path, r.status])).toEqual([
      [`/v1/Account/${AUTH_ID}/Call/not-answered-yet/`, 404],
      [`/v1/Account/${AUTH_ID}/Request/${ringing.requestUuid}/`, 204],
      [`/v1/Account/${AUTH_ID}/Request/${ringing.requestUuid}/`, 404],
      [`/v1/Account/${AUTH_ID}/Call/${call.callUuid}/`, 204],
    ]);
  });

  it("reads the account (credentials check) and a number's answer URL through its Application", async () => {
    expect(await rest().account()).toEqual({ authId: AUTH_ID, name: "stand-in" });
    standIn.numbers.set("15550100001", "https://parley.example/plivo/answer");
    standIn.numbers.set("15550100009", null);
    expect(await rest().voiceUrlOf("+15550100001")).toBe("https://parley.example/plivo/answer");
    expect(await rest().voiceUrlOf("+15550100009")).toBeNull(); // not linked to an application
    expect(await rest().voiceUrlOf("+15550100077")).toBeNull(); // not the account's number
    await expect(new PlivoRest({ authId: AUTH_ID, authToken: "wrong", apiUrl: standIn.url }).account()).rejects.toThrow(/HTTP 401.*PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN/);
  });

  it("REST failures are errors that say what failed and how to fix it", async () => {
    const bad = new PlivoRest({ authId: AUTH_ID, authToken: "wrong", apiUrl: standIn.url });
    const err = await bad.placeCall({ to: "+15550100005", from: "+15550100001", answerUrl: `${base}/answer`, hangupUrl: `${base}/hangup` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PlivoRestError);
    expect((err as PlivoRestError).status).toBe(401);
    expect((err as Error).message).toBe("Plivo REST place call failed: HTTP 401: Authentication credentials invalid (check PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN)");
    const down = new PlivoRest({ authId: AUTH_ID, authToken: TOKEN, apiUrl: "http://127.0.0.1:1", timeoutMs: 2000 });
    await expect(down.hangUp({ callUuid: "x" })).rejects.toThrow(/^Plivo REST hang up \/Call\/x\/ failed: /);
  });

  it("the stream: signed upgrade, checkpoints echoed once their audio has played, a clear drops pending checkpoints", async () => {
    answer = "stream";
    serverLog.length = 0;
    const call = await standIn.inbound({ answerUrl: `${base}/answer`, hangupUrl: `${base}/hangup`, from: "+15550100006", to: "+15550100001" });
    const stream = await call.waitForStream(1);
    await call.ended;
    expect(upgrades.at(-1)).toBe(true);
    expect(serverLog.filter((l) => l !== "media")).toEqual(["start", "played a", "clearedAudio", "played c"]);
    const playedA = stream.eventsOf("checkpoint-played").find((e) => e.name === "a")!;
    // "a" comes back only after its 50 frames (1 s) have played on the stand-in's clock.
    expect(stream.frames.slice(0, 50).every((f) => f.playedAt !== null && f.playedAt <= playedA.at)).toBe(true);
    expect(stream.eventsOf("checkpoint-cleared").map((e) => e.name)).toEqual(["b"]);
    expect(stream.frames.slice(50).some((f) => f.playedAt === null)).toBe(true);
    expect(stream.protocolErrors).toEqual([]);
    // Parley closed the socket; nothing follows <Stream> in the XML, so the call ended there.
    expect(call.hangupCause).toBe("End Of XML Instructions");
  });

  it("an unsigned or wrongly signed upgrade is refused", async () => {
    const { PlivoStream } = await import("./helpers/plivo-stream.ts");
    const open = (authToken?: string) =>
      PlivoStream.open({ streamUrl: `${base.replace("http", "ws")}/stream?token=t1`, callUuid: "c", accountId: AUTH_ID, ...(authToken ? { authToken } : {}) });
    await expect(open()).rejects.toThrow(/403/);
    await expect(open("forged-token")).rejects.toThrow(/403/);
    expect(upgrades.slice(-2)).toEqual([false, false]);
  });
});
