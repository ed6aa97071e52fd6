import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nonPublicReason } from "../src/doctor/address.ts";
import { formatLine, textProgress } from "../src/doctor/report.ts";
import { doctor, parseTimeout } from "../src/doctor/run.ts";
import type { Transport } from "../src/doctor/types.ts";
import type { Services } from "../src/call/services.ts";
import { useParley } from "./helpers/harness.ts";
import { generateKeyPairSync } from "node:crypto";
import { createCarriers } from "../src/carriers/registry.ts";
import { PlivoRestStandIn } from "./helpers/plivo-rest-standin.ts";
import { TelnyxRestStandIn } from "./helpers/telnyx-rest-standin.ts";
import { TlsFront, toLoopback } from "./helpers/tls-front.ts";
import { TwilioStandIn } from "./helpers/twilio-standin.ts";

const HOST = "parley.example.test";
const ACCOUNT_SID = `AC${"d".repeat(32)}`;
const AUTH_TOKEN = "doctor-test-auth-token";
const NUMBER = "+15550001111";
/** A public address (TEST-NET-3 is documentation space, but not a private or loopback range). */
const PUBLIC_ADDRESS = "203.0.113.10";

type Json = { ok: boolean; checks: Array<{ id: string; status: "pass" | "fail" | "skip"; detail: string; fix?: string }> };

describe("parley doctor", () => {
  const parley = useParley(() => ({ GREETING: "Hi.", STT_PROVIDER: "null", TTS_PROVIDER: "null" }));
  let twilio: TwilioStandIn;
  let front: TlsFront;
  let publicUrl: string;
  let healthyPort = 0;
  const others: Server[] = [];

  beforeAll(async () => {
    twilio = await TwilioStandIn.start({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN });
    front = await TlsFront.start({ hostname: HOST });
    publicUrl = `https://${HOST}:${front.port}`;
    twilio.numbers = [{ phoneNumber: NUMBER, voiceUrl: `${publicUrl}/voice/webhook` }];
    healthyPort = await parleyPort({ publicUrl, twilioAuthToken: AUTH_TOKEN });
  }, 60_000);
  afterAll(async () => {
    await twilio?.close();
    await front?.close();
    for (const s of others) s.close();
  });

  const parleyPort = async (config: Parameters<typeof parley.start>[1]) => Number(new URL((await parley.start({}, config)).base).port);

  /** Run the doctor as a deployment would, with the TLS front's certificate trusted and its public name on loopback. */
  const run = async (o: { env?: Record<string, string>; transport?: Partial<Transport>; frontTo?: number; via?: TlsFront; carrier?: string } = {}) => {
    const via = o.via ?? front;
    via.targetPort = o.frontTo ?? healthyPort;
    let text = "";
    const env = {
      PUBLIC_URL: `https://${HOST}:${via.port}`,
      TWILIO_ACCOUNT_SID: ACCOUNT_SID,
      TWILIO_AUTH_TOKEN: AUTH_TOKEN,
      TWILIO_FROM_NUMBER: NUMBER,
      TWILIO_API_URL: twilio.url,
      ...o.env,
    };
    const transport: Partial<Transport> = { resolve: async () => [PUBLIC_ADDRESS], ca: via.cert, connectLookup: toLoopback, timeoutMs: 3000, ...o.transport };
    const carrier = o.carrier ?? "twilio";
    const code = await doctor({ env, carrier, json: true, tty: false, write: (s) => (text += s), transport });
    const json = JSON.parse(text) as Json;
    const byId = Object.fromEntries(json.checks.map((c) => [c.id, c]));
    // The human form of the same run, for the README and for reading a failure.
    let human = "";
    await doctor({ env, carrier, tty: false, write: (s) => (human += s), transport });
    return { code, json, byId, human };
  };
  const failed = (json: Json) => json.checks.filter((c) => c.status !== "pass").map((c) => c.id);

  it("passes a healthy deployment: exit 0, every check passed, and its probe calls ended", async () => {
    const { code, json, human } = await run();
    console.log(`--- healthy deployment ---\n${human}`);
    expect(failed(json)).toEqual([]);
    expect(json.checks.map((c) => c.id)).toEqual(["public-url", "webhook", "stream", "signature", "credentials", "number", "clock"]);
    expect(code).toBe(0);
    expect(json.ok).toBe(true);
    // The probes went through Parley as inbound calls and were ended by their "completed" status callback.
    const { calls } = (await (await fetch(`http://127.0.0.1:${healthyPort}/api/calls?direction=inbound`)).json()) as { calls: Array<{ callSid: string }> };
    const probes = calls.filter((c) => c.callSid.startsWith("CAd0c"));
    expect(probes.length).toBeGreaterThan(0);
    await expect.poll(async () => {
      const live = (await (await fetch(`http://127.0.0.1:${healthyPort}/api/calls?state=live`)).json()) as { calls: unknown[] };
      return live.calls.length;
    }).toBe(0);
    // The REST reads were the two harmless GETs.
    expect(new Set(twilio.requests.filter((r) => r.method !== "GET").map((r) => r.path))).toEqual(new Set());
  }, 30_000);

  it("fails an http PUBLIC_URL on loopback, and the wss:// check with it", async () => {
    const plain = await parleyPort({ publicUrl: `http://127.0.0.1:0`, twilioAuthToken: AUTH_TOKEN });
    const { code, byId } = await run({ env: { PUBLIC_URL: `http://127.0.0.1:${plain}` }, transport: { resolve: async (h) => [h] } });
    expect(code).toBe(1);
    expect(byId["public-url"]!.status).toBe("fail");
    expect(byId["public-url"]!.detail).toMatch(/http, not https.*127\.0\.0\.1, loopback/);
    expect(byId["webhook"]!.status).toBe("fail");
  });

  it("fails a PUBLIC_URL whose name resolves to a private address", async () => {
    const { code, byId, json, human } = await run({ transport: { resolve: async () => [PUBLIC_ADDRESS, "10.1.2.3"] } });
    console.log(`--- private address ---\n${human}`);
    expect(code).toBe(1);
    expect(failed(json)).toEqual(["public-url"]);
    expect(byId["public-url"]!.detail).toContain("10.1.2.3, private (10.0.0.0/8)");
    expect(byId["public-url"]!.fix).toMatch(/tunnel/);
  });

  it("fails a webhook that answers something else than TwiML, and one that never answers, within the timeout", async () => {
    const html = await listen((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end("<html>It works!</html>"));
    const r1 = await run({ frontTo: html });
    expect(r1.byId["webhook"]!.status).toBe("fail");
    expect(r1.byId["webhook"]!.detail).toMatch(/text\/html, not TwiML/);

    const silent = await listen(() => {}); // accepts, never answers
    const r2 = await run({ frontTo: silent, transport: { timeoutMs: 300 } });
    expect(r2.code).toBe(1);
    expect(r2.byId["webhook"]!.detail).toMatch(/no (complete )?answer within 300 ms/);
    expect(r2.byId["webhook"]!.fix).toMatch(/PUBLIC_URL reach Parley/);

    // Parley itself, refusing inbound calls: the fix names the policy, not the routing.
    const refusing = await parleyPort({ publicUrl, twilioAuthToken: AUTH_TOKEN, inboundPolicy: "disabled" });
    const r4 = await run({ frontTo: refusing });
    expect(r4.byId["webhook"]!.detail).toMatch(/answered <Reject>/);
    expect(r4.byId["webhook"]!.fix).toMatch(/INBOUND_ALLOWLIST/);

    const down = await listen(() => {});
    others.find((s) => (s.address() as AddressInfo).port === down)!.close();
    const r3 = await run({ frontTo: down });
    expect(r3.byId["webhook"]!.detail).toMatch(/HTTP 502/);
  });

  it("fails a document that names another stream URL, and a signature checked over another PUBLIC_URL", async () => {
    // Parley started with the old tunnel's address and no signature checks: it answers, naming the old address.
    const stale = await parleyPort({ publicUrl: "https://old-tunnel.example.test", allowUnsignedWebhooks: true });
    const r1 = await run({ frontTo: stale });
    console.log(`--- stale PUBLIC_URL, signatures off ---\n${r1.human}`);
    expect(r1.byId["webhook"]!.status).toBe("fail");
    expect(r1.byId["webhook"]!.detail).toContain(`names wss://old-tunnel.example.test/voice/stream`);
    expect(r1.byId["webhook"]!.detail).toContain(`expected wss://${HOST}:${front.port}/voice/stream`);
    // With the token, the same mistake shows as a refused signature (Parley checks it over its own PUBLIC_URL).
    const signedStale = await parleyPort({ publicUrl: "https://old-tunnel.example.test", twilioAuthToken: AUTH_TOKEN });
    const r2 = await run({ frontTo: signedStale });
    expect(r2.byId["webhook"]!.detail).toMatch(/HTTP 403/);
    expect(r2.byId["webhook"]!.fix).toMatch(/PUBLIC_URL must be exactly/);
    expect(r2.byId["stream"]!.detail).toMatch(/signed upgrade to wss:\/\/parley\.example\.test:\d+\/voice\/stream answered HTTP 403/);
  });

  it("fails a stream URL that does not upgrade (a proxy that drops Upgrade)", async () => {
    const noUpgrades = await TlsFront.start({ hostname: HOST, upgrades: false });
    try {
      const port = await parleyPort({ publicUrl: `https://${HOST}:${noUpgrades.port}`, twilioAuthToken: AUTH_TOKEN });
      twilio.numbers = [{ phoneNumber: NUMBER, voiceUrl: `https://${HOST}:${noUpgrades.port}/voice/webhook` }];
      const { json, byId, code } = await run({ via: noUpgrades, frontTo: port });
      expect(code).toBe(1);
      expect(failed(json)).toEqual(["stream"]);
      expect(byId["stream"]!.detail).toMatch(/signed upgrade to wss:.* answered HTTP \d+, not 101/);
      expect(byId["stream"]!.fix).toMatch(/forward WebSocket upgrades/);
    } finally {
      twilio.numbers = [{ phoneNumber: NUMBER, voiceUrl: `${publicUrl}/voice/webhook` }];
      await noUpgrades.close();
    }
  });

  it("fails a deployment with signature checks off: unsigned streams and webhooks accepted", async () => {
    const open = await parleyPort({ publicUrl, allowUnsignedWebhooks: true });
    const { json, byId, human } = await run({ frontTo: open });
    console.log(`--- signatures off ---\n${human}`);
    expect(failed(json)).toEqual(["stream", "signature"]);
    expect(byId["stream"]!.detail).toMatch(/unsigned upgrade .* was accepted/);
    expect(byId["signature"]!.detail).toMatch(/unsigned webhook was answered HTTP 200/);
    expect(byId["signature"]!.fix).toMatch(/TWILIO_AUTH_TOKEN/);
  });

  it("fails bad credentials (401) and a number whose voice URL points elsewhere", async () => {
    const bad = await run({ env: { TWILIO_ACCOUNT_SID: `AC${"e".repeat(32)}` } });
    expect(bad.byId["credentials"]!.status).toBe("fail");
    expect(bad.byId["credentials"]!.detail).toMatch(/HTTP 401/);
    expect(bad.byId["credentials"]!.fix).toMatch(/TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN/);
    expect(bad.byId["number"]!.status).toBe("fail");

    twilio.numbers = [{ phoneNumber: NUMBER, voiceUrl: "https://old-tunnel.example.test/voice/webhook" }];
    try {
      const { json, byId, human } = await run();
      console.log(`--- number elsewhere ---\n${human}`);
      expect(failed(json)).toEqual(["number"]);
      expect(byId["number"]!.detail).toContain("https://old-tunnel.example.test/voice/webhook");
      expect(byId["number"]!.fix).toContain(`POST ${publicUrl}/voice/webhook`);
    } finally {
      twilio.numbers = [{ phoneNumber: NUMBER, voiceUrl: `${publicUrl}/voice/webhook` }];
    }
  });

  it("fails a clock beyond the carrier's skew, and passes one within it", async () => {
    const off = await run({ transport: { now: () => Date.now() + 6 * 60_000 } });
    expect(failed(off.json)).toEqual(["clock"]);
    expect(off.byId["clock"]!.detail).toMatch(/\+3(59|60)\.\d s against the carrier/);
    const near = await run({ transport: { now: () => Date.now() - 60_000 } });
    expect(near.byId["clock"]!.status).toBe("pass");
  });

  it("classifies addresses: loopback, private, link-local, CGNAT and mapped forms are not public", () => {
    for (const a of ["127.0.0.1", "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "::", "fd00::1", "fe80::1", "::ffff:10.0.0.1", "::ffff:c0a8:101"])
      expect(nonPublicReason(a), a).not.toBeNull();
    for (const a of ["203.0.113.10", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]) expect(nonPublicReason(a), a).toBeNull();
    expect([parseTimeout("5s"), parseTimeout("1500ms"), parseTimeout("2000"), parseTimeout("soon"), parseTimeout("5")]).toEqual([5000, 1500, 2000, null, null]);
  });

  it("marks and colours lines only on a terminal, with the fix under a failure", () => {
    const r = { id: "x", title: "the thing", status: "fail" as const, detail: "broken", fix: "mend it", ms: 1 };
    expect(formatLine(r, false)).toBe("✗ the thing: broken\n    fix: mend it");
    expect(formatLine(r, true)).toBe("\x1b[31m✗\x1b[0m the thing: broken\n    \x1b[2mfix:\x1b[0m mend it");
    expect(formatLine({ ...r, status: "pass", detail: "fine" }, false)).toBe("✓ the thing: fine");
    let out = "";
    const p = textProgress({ write: (s) => (out += s), tty: true });
    p.start!("x", "the thing");
    p.result!({ ...r, status: "pass", detail: "fine" });
    expect(out).toBe("\x1b[2m… the thing\x1b[0m\r\x1b[2K\x1b[32m✓\x1b[0m the thing: fine\n");
    out = "";
    const plain = textProgress({ write: (s) => (out += s), tty: false });
    plain.start!("x", "the thing");
    expect(out).toBe("");
  });

  it("runs from the command line: --json and exit 1 against a plain-http deployment, exit 2 for a bad option", async () => {
    const plain = await parleyPort({});
    const bin = new URL("../bin/parley.js", import.meta.url).pathname;
    const env = { ...process.env, PUBLIC_URL: `http://127.0.0.1:${plain}`, TWILIO_ACCOUNT_SID: "", TWILIO_AUTH_TOKEN: "", TWILIO_FROM_NUMBER: "" };
    const r = await promisify(execFile)(process.execPath, [bin, "doctor", "--json", "--timeout", "3s"], { env }).catch((e: { code: number; stdout: string }) => e);
    expect((r as { code?: number }).code).toBe(1);
    const json = JSON.parse(r.stdout) as Json;
    expect(json.ok).toBe(false);
    expect(Object.fromEntries(json.checks.map((c) => [c.id, c.status]))).toMatchObject({ "public-url": "fail", credentials: "skip", clock: "skip" });
    const usage = await promisify(execFile)(process.execPath, [bin, "doctor", "--carrier", "nope"], { env }).catch((e: { code: number; stderr: string }) => e);
    expect((usage as { code?: number }).code).toBe(2);
    expect((usage as { stderr: string }).stderr).toMatch(/unknown carrier 'nope'/);
  }, 30_000);

  describe("on Telnyx", () => {
    const API_KEY = "KEY-doctor-test";
    const CONNECTION = "2811212257810187875";
    let telnyx: TelnyxRestStandIn;
    let telnyxPort = 0;
    beforeAll(async () => {
      telnyx = await TelnyxRestStandIn.start(API_KEY);
      telnyx.numbers = [{ phoneNumber: NUMBER, connectionId: CONNECTION }];
      telnyx.applications = { [CONNECTION]: { name: "parley", webhookEventUrl: `${publicUrl}/telnyx/webhook` } };
      // Parley serving Telnyx: its public key (Telnyx's, in life) checks the webhooks.
      const publicKey = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("base64");
      const config = { ...parley.services.config, publicUrl, telnyxApiKey: API_KEY, telnyxPublicKey: publicKey, telnyxApiUrl: telnyx.url };
      const { base } = await parley.start({ carriers: createCarriers(config) }, config);
      telnyxPort = Number(new URL(base).port);
    });
    afterAll(() => telnyx?.close());
    const runTelnyx = (o: Parameters<typeof run>[0] = {}) =>
      run({ frontTo: telnyxPort, ...o, env: { TELNYX_API_KEY: API_KEY, TELNYX_FROM_NUMBER: NUMBER, TELNYX_API_URL: telnyx.url, ...o.env }, carrier: "telnyx" });

    it("passes a healthy deployment, saying what it cannot check without Telnyx's private key", async () => {
      const { code, json, byId, human } = await runTelnyx();
      console.log(`--- telnyx, healthy ---\n${human}`);
      expect(failed(json)).toEqual([]);
      expect(code).toBe(0);
      expect(byId["webhook"]!.detail).toMatch(/a forged signature: 403.*not checked/);
      expect(byId["stream"]!.detail).toMatch(/unsigned: 403; 101 not checked/);
      expect(byId["signature"]!.detail).toBe("POST /telnyx/webhook unsigned: 403, forged: 403");
      expect(byId["number"]!.detail).toBe(`connection ${CONNECTION} (parley) sends webhooks to ${publicUrl}/telnyx/webhook`);
      expect(byId["clock"]!.detail).toMatch(/limit ±300 s/);
    });

    it("fails a Parley that does not serve Telnyx, a bad API key, and a number on the wrong connection", async () => {
      const twilioOnly = await runTelnyx({ frontTo: healthyPort });
      expect(twilioOnly.byId["webhook"]!.detail).toMatch(/HTTP 404/);
      expect(twilioOnly.byId["webhook"]!.fix).toMatch(/give Parley this carrier's settings/);
      expect(twilioOnly.byId["stream"]!.status).toBe("fail");

      const badKey = await runTelnyx({ env: { TELNYX_API_KEY: "KEY-wrong" } });
      // The clock still compares: a 401 carries Telnyx's Date too.
      expect(failed(badKey.json)).toEqual(["credentials", "number"]);
      expect(badKey.byId["credentials"]!.detail).toMatch(/HTTP 401/);
      expect(badKey.byId["credentials"]!.fix).toMatch(/TELNYX_API_KEY/);

      telnyx.numbers = [{ phoneNumber: NUMBER, connectionId: "1234" }];
      const sip = await runTelnyx();
      expect(failed(sip.json)).toEqual(["number"]);
      expect(sip.byId["number"]!.detail).toMatch(/connection 1234, which is not a Voice API/);

      telnyx.numbers = [{ phoneNumber: NUMBER, connectionId: CONNECTION }];
      telnyx.applications[CONNECTION]!.webhookEventUrl = "https://old-tunnel.example.test/telnyx/webhook";
      try {
        const elsewhere = await runTelnyx();
        expect(failed(elsewhere.json)).toEqual(["number"]);
        expect(elsewhere.byId["number"]!.detail).toContain("sends webhooks to https://old-tunnel.example.test/telnyx/webhook");
      } finally {
        telnyx.applications[CONNECTION]!.webhookEventUrl = `${publicUrl}/telnyx/webhook`;
      }
    });
  });

  describe("on Plivo", () => {
    const AUTH_ID = "MADOCTORTEST00000001";
    const PLIVO_TOKEN = "plivo-doctor-test-token";
    const APP = "29986316244302815";
    let plivo: PlivoRestStandIn;
    let plivoPort = 0;
    const plivoParley = async (config: Partial<Services["config"]>) => {
      const full = { ...parley.services.config, publicUrl, plivoAuthId: AUTH_ID, plivoApiUrl: plivo.url, ...config };
      const { base } = await parley.start({ carriers: createCarriers(full) }, full);
      return Number(new URL(base).port);
    };
    beforeAll(async () => {
      plivo = await PlivoRestStandIn.start(AUTH_ID, PLIVO_TOKEN);
      plivo.numbers = { [NUMBER.slice(1)]: APP };
      plivo.applications = { [APP]: { name: "parley", answerUrl: `${publicUrl}/plivo/answer`, answerMethod: "POST" } };
      plivoPort = await plivoParley({ plivoAuthToken: PLIVO_TOKEN });
    });
    afterAll(() => plivo?.close());
    const runPlivo = (o: Parameters<typeof run>[0] = {}) =>
      run({ frontTo: plivoPort, ...o, env: { PLIVO_AUTH_ID: AUTH_ID, PLIVO_AUTH_TOKEN: PLIVO_TOKEN, PLIVO_FROM_NUMBER: NUMBER, PLIVO_API_URL: plivo.url, ...o.env }, carrier: "plivo" });

    it("passes a healthy deployment: signed answer naming the wss:// stream, signed upgrade 101, probe call ended", async () => {
      const { code, json, byId, human } = await runPlivo();
      console.log(`--- plivo, healthy ---\n${human}`);
      expect(failed(json)).toEqual([]);
      expect(code).toBe(0);
      expect(byId["webhook"]!.detail).toMatch(new RegExp(`^200, names wss://${HOST.replace(/\./g, "\\.")}:\\d+/plivo/stream\\?token=`));
      expect(byId["stream"]!.detail).toMatch(/^signed: 101; unsigned: 403$/);
      await expect.poll(async () => ((await (await fetch(`http://127.0.0.1:${plivoPort}/api/calls?state=live`)).json()) as { calls: unknown[] }).calls.length).toBe(0);
    });

    it("fails a Parley that does not serve Plivo, bad credentials, and an Application answering with GET", async () => {
      // Parley serves Plivo only with PLIVO_AUTH_TOKEN (so Plivo's signatures cannot be off): without it, nothing is there.
      const notServed = await runPlivo({ frontTo: healthyPort });
      expect(notServed.byId["webhook"]!.detail).toMatch(/HTTP 404/);
      expect(notServed.byId["signature"]!.detail).toBe("an unsigned webhook was answered HTTP 404, not 403");
      expect(notServed.byId["signature"]!.fix).toMatch(/give Parley this carrier's settings/);

      const bad = await runPlivo({ env: { PLIVO_AUTH_TOKEN: "wrong" } });
      // The same token signs the probes: Parley refuses them too, and says it is the key.
      expect(bad.byId["credentials"]!.detail).toMatch(/HTTP 401/);
      expect(bad.byId["webhook"]!.detail).toMatch(/HTTP 403/);

      plivo.applications[APP]!.answerMethod = "GET";
      try {
        const get = await runPlivo();
        expect(failed(get.json)).toEqual(["number"]);
        expect(get.byId["number"]!.detail).toContain(`answers with GET ${publicUrl}/plivo/answer`);
      } finally {
        plivo.applications[APP]!.answerMethod = "POST";
      }
    });
  });

  function listen(handler: Parameters<typeof createServer>[1]): Promise<number> {
    const s = createServer(handler);
    others.push(s);
    return new Promise((resolve) => s.listen(0, "127.0.0.1", () => resolve((s.address() as AddressInfo).port)));
  }
});
