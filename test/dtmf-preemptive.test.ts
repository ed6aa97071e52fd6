import { describe, expect, it } from "vitest";
import { dtmfMulaw } from "../src/audio/dtmf.ts";
import { decodeMulaw } from "../src/audio/mulaw.ts";
import { PreemptiveReply } from "../src/call/preemptive.ts";
import type { AgentProvider, AgentTurnInput } from "../src/providers/types.ts";

/** Power at one frequency (Goertzel), as a DTMF receiver measures it. */
function power(samples: Int16Array, freq: number): number {
  const k = 2 * Math.cos((2 * Math.PI * freq) / 8000);
  let s1 = 0;
  let s2 = 0;
  for (const x of samples) {
    const s0 = x + k * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return s1 * s1 + s2 * s2 - k * s1 * s2;
}

describe("DTMF tones", () => {
  it("each digit carries its row and column frequency and nothing else strong", () => {
    const pcm = decodeMulaw(dtmfMulaw("5#"));
    expect(pcm.length).toBe(2 * 1600);
    const five = pcm.subarray(0, 800);
    const hash = pcm.subarray(1600, 2400);
    const rows = [697, 770, 852, 941];
    const cols = [1209, 1336, 1477, 1633];
    const strongest = (seg: Int16Array, fs: number[]) => fs.reduce((a, f) => (power(seg, f) > power(seg, a) ? f : a));
    expect([strongest(five, rows), strongest(five, cols)]).toEqual([770, 1336]);
    expect([strongest(hash, rows), strongest(hash, cols)]).toEqual([941, 1477]);
    expect(pcm.subarray(800, 1600).every((s) => s === 0)).toBe(true); // the gap is silent
    expect(() => dtmfMulaw("12x")).toThrow(/not DTMF/);
  });
});

describe("preemptive reply", () => {
  function agent() {
    const calls: AgentTurnInput[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const a: AgentProvider = {
      name: "test",
      async *respond(input) {
        calls.push(input);
        yield "Sure";
        await gate;
        if (input.signal.aborted) return;
        yield ", done.";
      },
    };
    return { a, calls, release: () => release() };
  }

  it("is taken over when the turn ends with the same text and history, with what it already said", async () => {
    const { a, calls, release } = agent();
    const p = new PreemptiveReply(a);
    p.start("book a table", []);
    await new Promise((r) => setTimeout(r, 0));
    const taken = p.take("book a table", [])!;
    expect(taken).not.toBeNull();
    release();
    const out: unknown[] = [];
    for await (const x of taken) out.push(x);
    expect(out).toEqual(["Sure", ", done."]);
    expect(calls).toHaveLength(1);
  });

  it("is discarded and cancelled when the caller kept talking", async () => {
    const { a, calls, release } = agent();
    const p = new PreemptiveReply(a);
    p.start("book a table", []);
    await new Promise((r) => setTimeout(r, 0));
    expect(p.take("book a table for two", [])).toBeNull();
    expect(calls[0]!.signal.aborted).toBe(true);
    release();
  });
});
