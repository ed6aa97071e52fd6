/**
 * Warm providers: each cloud provider opens the connection a call's first turn will use before that turn (while the
 * phone rings), and the turn then goes over that very connection. The stand-ins count TCP connections and WebSocket
 * handshakes; the clients are the real SDKs (`openai`, `@deepgram/sdk`) and the real `ws` socket of the ElevenLabs
 * adapter. No wall-clock assertions: which connection carried what, and in which order.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { OpenAiAgent } from "../src/providers/agent/openai.ts";
import { DeepgramStt } from "../src/providers/stt/deepgram.ts";
import { ElevenLabsTts } from "../src/providers/tts/elevenlabs.ts";
import { warmProviders } from "../src/providers/warm.ts";
import type { AgentProvider, SttProvider, TtsProvider } from "../src/providers/types.ts";
import { DeepgramMock } from "./helpers/deepgram-mock.ts";
import { ElevenLabsMock } from "./helpers/elevenlabs-mock.ts";
import { OpenAiMock } from "./helpers/openai-mock.ts";

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const until = (pred: () => boolean, what: string) =>
  vi.waitFor(
    () => {
      if (!pred()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout: 5000, interval: 5 },
  );

async function drain(items: AsyncIterable<unknown>): Promise<string> {
  let text = "";
  for await (const x of items) if (typeof x === "string") text += x;
  return text;
}

describe("OpenAI-compatible agent", () => {
  async function setup() {
    const mock = await OpenAiMock.start({ apiKey: "sk-test" });
    const agent = new OpenAiAgent({ apiKey: "sk-test", baseURL: mock.url, firstTokenTimeoutMs: 2000 });
    cleanup.push(() => mock.close(), () => agent.close());
    mock.reply({ text: "Hello there." });
    return { mock, agent };
  }

  it("warm() opens the pooled connection, and the first turn's chat request arrives on it", async () => {
    const { mock, agent } = await setup();
    await agent.warm();
    expect(mock.arrivals).toEqual([expect.objectContaining({ method: "GET", path: "/v1/models", connection: 1, firstOnConnection: true })]);
    expect(await drain(agent.respond({ history: [], userText: "Hi", signal: new AbortController().signal }))).toBe("Hello there.");
    const chat = mock.arrivals.find((a) => a.path === "/v1/chat/completions")!;
    // The same socket: the turn did not open a connection of its own.
    expect(chat).toMatchObject({ connection: 1, firstOnConnection: false });
    expect(mock.connections).toBe(1);
  });

  it("without warm(), the first turn opens its own connection (what warm() saves)", async () => {
    const { mock, agent } = await setup();
    await drain(agent.respond({ history: [], userText: "Hi", signal: new AbortController().signal }));
    expect(mock.arrivals).toEqual([expect.objectContaining({ path: "/v1/chat/completions", firstOnConnection: true })]);
  });

  it("keeps the connection for the next turn; a failed warm-up (server down) only resolves", async () => {
    const { mock, agent } = await setup();
    await drain(agent.respond({ history: [], userText: "One", signal: new AbortController().signal }));
    await new Promise((r) => setImmediate(r)); // the socket returns to the pool just after the stream ends
    await drain(agent.respond({ history: [], userText: "Two", signal: new AbortController().signal }));
    expect(mock.arrivals.map((a) => a.firstOnConnection)).toEqual([true, false]);
    const down = new OpenAiAgent({ apiKey: "k", baseURL: "http://127.0.0.1:9/v1" });
    cleanup.push(() => down.close());
    await expect(down.warm()).resolves.toBeUndefined();
  });
});

describe("Deepgram STT", () => {
  it("warm(callId) opens the call's socket; the session opened later for that call takes it over", async () => {
    const mock = await DeepgramMock.start({ apiKey: "dg" });
    const stt = new DeepgramStt({ apiKey: "dg", url: mock.url });
    cleanup.push(() => mock.close(), () => stt.close());
    mock.script = ["hello there"];
    await stt.warm("CA1");
    expect(mock.connections).toHaveLength(1);
    const partials: string[] = [];
    const s = stt.openSession({ callId: "CA1", onPartial: (t) => partials.push(t) });
    expect(s.connected).toBe(true);
    s.start();
    s.pushMulaw(new Uint8Array(3200).fill(0x10));
    await until(() => partials.length > 0, "a partial on the adopted session");
    await expect(s.finish()).resolves.toMatchObject({ text: "hello there" });
    // One handshake in all: the utterance went over the socket opened before the session.
    expect(mock.attempts).toHaveLength(1);
    expect(mock.connections[0]!.audioBytes).toBe(3200);
    // Another call's session is its own.
    stt.openSession({ callId: "CA2" });
    await until(() => mock.connections.length === 2, "the other call's socket");
  });

  it("a warmed socket no call claims is closed after warmTtlMs", async () => {
    const mock = await DeepgramMock.start({ apiKey: "dg" });
    const stt = new DeepgramStt({ apiKey: "dg", url: mock.url, warmTtlMs: 1000 });
    cleanup.push(() => mock.close(), () => stt.close());
    await stt.warm("CA-never-answered");
    expect(mock.connections).toHaveLength(1);
    expect(mock.connections[0]!.closedAt).toBeUndefined();
    await until(() => mock.connections[0]?.closedAt !== undefined, "the unclaimed socket to close");
    expect(mock.controlsOf(mock.connections[0]!, "CloseStream")).toHaveLength(1);
  });
});

describe("ElevenLabs TTS", () => {
  it("warm() opens a socket with room, and the first reply's context goes on it", async () => {
    const mock = await ElevenLabsMock.start();
    const tts = new ElevenLabsTts({ apiKey: mock.apiKey, url: mock.url, preconnect: false });
    cleanup.push(() => mock.close(), () => tts.close());
    await tts.warm();
    expect(mock.connections).toHaveLength(1);
    const stream = tts.openStream(new AbortController().signal, { callId: "CA1" });
    stream.write("Hello there.");
    stream.end();
    let bytes = 0;
    for await (const c of stream) bytes += c.mulaw.length;
    expect(bytes).toBeGreaterThan(0);
    expect(mock.connections).toHaveLength(1);
    expect(mock.connections[0]!.contexts).toHaveLength(1);
  });
});

describe("warmProviders (the call's hook)", () => {
  it("warms every provider that can, and a provider that throws does not break it", async () => {
    const seen: string[] = [];
    const stt = { name: "s", warm: async (id: string) => void seen.push(`stt ${id}`) } as unknown as SttProvider;
    const tts = { name: "t", warm: () => { throw new Error("boom"); } } as unknown as TtsProvider;
    const agent = { name: "a", warm: async (id: string) => void seen.push(`agent ${id}`) } as unknown as AgentProvider;
    expect(() => warmProviders({ stt, tts, agent }, "CA9")).not.toThrow();
    expect(seen).toEqual(["stt CA9", "agent CA9"]);
  });
});
