import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, publicOrigin } from "../src/config.ts";
import { CallStore, foldLines } from "../src/store/call-store.ts";

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), "parley-cfg-"));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("config", () => {
  it("has working defaults with no environment at all", () => {
    const c = loadConfig({ env: {} });
    expect(c.port).toBe(3334);
    expect(c.host).toBe("127.0.0.1");
    expect(c.twilioAuthToken).toBeUndefined();
    expect(publicOrigin(c).toString()).toBe("http://127.0.0.1:3334/");
  });

  it("reads the environment over a config file", () => {
    const file = path.join(tmp(), "parley.json");
    writeFileSync(file, JSON.stringify({ port: 4000, greeting: "From the file", vadThreshold: 0.6 }));
    const c = loadConfig({ env: { PARLEY_CONFIG: file, PORT: "5000", PUBLIC_URL: "https://voice.example.com", API_TOKEN: "config-test-api-token-0123" } });
    expect(c.port).toBe(5000);
    expect(c.greeting).toBe("From the file");
    expect(c.vadThreshold).toBe(0.6);
    expect(publicOrigin(c).host).toBe("voice.example.com");
  });

  it("reports every problem at once, naming the variable", () => {
    let err: ConfigError | undefined;
    try {
      loadConfig({ env: { PORT: "eighty", LOG_LEVEL: "chatty", PUBLIC_URL: "ftp://x", VAD_THRESHOLD: "2" } });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.problems).toHaveLength(4);
    expect(err!.message).toMatch(/PORT \(port\)/);
    expect(err!.message).toMatch(/LOG_LEVEL \(logLevel\).*"chatty"/);
    expect(err!.message).toMatch(/PUBLIC_URL/);
    expect(err!.message).toMatch(/VAD_THRESHOLD/);
  });

  it("never echoes a secret's value in an error: its length instead, while other values are shown", () => {
    const problems = (load: () => unknown): string => {
      try {
        load();
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).message;
      }
      throw new Error("expected a ConfigError");
    };
    const env = problems(() => loadConfig({ env: { API_TOKEN: "hunter2-short", LOG_LEVEL: "chatty" } }));
    expect(env).toContain("API_TOKEN (apiToken): must be at least 16 characters (got 13 characters)");
    expect(env).not.toContain("hunter2");
    expect(env).toMatch(/LOG_LEVEL \(logLevel\).*\(got "chatty"\)/);

    // Wrong types from a config file: the kind of value, never the value.
    const file = path.join(tmp(), "parley.json");
    writeFileSync(file, JSON.stringify({ twilioAuthToken: 123456789, deepgramApiKey: ["dg-secret-key"], elevenlabsApiKey: "", openaiApiKey: { key: "sk-secret" } }));
    const fromFile = problems(() => loadConfig({ env: {}, file }));
    expect(fromFile).toMatch(/TWILIO_AUTH_TOKEN \(twilioAuthToken\): .*\(got a number\)/);
    expect(fromFile).toMatch(/DEEPGRAM_API_KEY \(deepgramApiKey\): .*\(got a list\)/);
    expect(fromFile).toMatch(/ELEVENLABS_API_KEY \(elevenlabsApiKey\): .*\(got 0 characters\)/);
    expect(fromFile).toMatch(/OPENAI_API_KEY \(openaiApiKey\): .*\(got an object\)/);
    expect(fromFile).not.toMatch(/123456789|secret/);

    // A config file that is not JSON: JSON.parse would quote the text around the error, token included.
    writeFileSync(file, '{"apiToken": sk-live-secret-token}');
    const broken = problems(() => loadConfig({ env: {}, file }));
    expect(broken).toContain(`config file ${file}: not valid JSON`);
    expect(broken).not.toContain("secret");
  });

  it("rejects unknown keys and unreadable files in the config file", () => {
    const file = path.join(tmp(), "bad.json");
    writeFileSync(file, JSON.stringify({ prot: 1 }));
    expect(() => loadConfig({ env: {}, file })).toThrow(/unknown key "prot"/);
    expect(() => loadConfig({ env: {}, file: path.join(tmp(), "missing.json") })).toThrow(/missing\.json/);
    expect(() => loadConfig({ env: { STT_MODE: "phrases" } })).toThrow(/STT_PHRASES/);
    expect(loadConfig({ env: { STT_MODE: "phrases", STT_PHRASES: "yes | no|call me back" } }).sttPhrases).toEqual(["yes", "no", "call me back"]);
  });
});

describe("call store", () => {
  it("appends events durably and folds them into the record", async () => {
    const store = new CallStore(tmp());
    await store.init();
    const j = store.journal("CA1");
    j.append({ t: 1, type: "call.created", from: "+1", to: "+2", direction: "inbound" });
    j.append({ t: 2, type: "state", value: "connecting" });
    j.append({ t: 3, type: "turn", turn: { turnId: 1, role: "assistant", text: "Hi", at: 3 } });
    await j.flush();
    const partial = await store.read("CA1");
    expect(partial!.turns).toHaveLength(1);
    j.append({ t: 4, type: "barge-in", turnId: 1 });
    j.append({ t: 5, type: "call.ended", reason: "caller hung up" });
    await j.close();
    const rec = await store.read("CA1");
    expect(rec).toMatchObject({ callSid: "CA1", from: "+1", to: "+2", bargeIns: 1, endedAt: 5, endReason: "caller hung up", events: 5 });
    expect(readFileSync(store.fileOf("CA1"), "utf8").trim().split("\n")).toHaveLength(5);
  });

  it("keeps everything before a torn last line (a process killed mid-write)", async () => {
    const store = new CallStore(tmp());
    await store.init();
    const j = store.journal("CA2");
    j.append({ t: 1, type: "call.created" });
    j.append({ t: 2, type: "turn", turn: { turnId: 1, role: "user", text: "hello", at: 2 } });
    await j.close();
    appendFileSync(store.fileOf("CA2"), '{"t":3,"type":"tu');
    const rec = await store.read("CA2");
    expect(rec!.turns.map((t) => t.text)).toEqual(["hello"]);
    expect(foldLines("CA2", "").events).toBe(0);
  });

  it("never turns an unsafe id into a path", async () => {
    const store = new CallStore(tmp());
    await store.init();
    expect(await store.read("../../etc/passwd")).toBeNull();
    expect(() => store.journal("../x")).toThrow(/unsafe call id/);
  });
});
