import { describe, expect, it } from "vitest";
import { FRAME_BYTES, MulawFramer } from "../src/audio/framer.ts";
import { Pacer } from "../src/audio/pacer.ts";
import { heardWords, Playout, type PlayoutObserver, type PlayoutOptions, type UtteranceListener } from "../src/call/playout.ts";
import { OutboundSerializer } from "../src/carriers/twilio/codec.ts";

const bytes = (n: number, v = 1) => new Uint8Array(n).fill(v);

describe("MulawFramer", () => {
  it("re-chunks arbitrary chunk sizes into 160-byte frames, in order", () => {
    const f = new MulawFramer();
    const src = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff);
    let off = 0;
    for (const size of [7, 153, 160, 1, 300, 379]) {
      f.push(src.slice(off, off + size));
      off += size;
    }
    const out: number[] = [];
    let frame: Uint8Array | null;
    while ((frame = f.shift())) {
      expect(frame.length).toBe(FRAME_BYTES);
      out.push(...frame);
    }
    expect(out).toEqual([...src.subarray(0, 960)]);
    expect(f.bufferedBytes).toBe(40);
    f.padToFrame();
    const last = f.shift()!;
    expect([...last.subarray(0, 40)]).toEqual([...src.subarray(960)]);
    expect(last.subarray(40).every((b) => b === 0xff)).toBe(true);
    expect(f.shift()).toBeNull();
  });

  it("refuses chunks past its bound instead of growing without limit", () => {
    const f = new MulawFramer(400);
    expect(f.push(bytes(300))).toBe(true);
    expect(f.push(bytes(200))).toBe(false);
    expect(f.bufferedBytes).toBe(300);
  });
});

describe("Pacer", () => {
  it("keeps the playhead at most leadMs ahead, on an absolute clock", () => {
    const p = new Pacer(100);
    let now = 1000;
    let sent = 0;
    const send = () => {
      for (let n = p.framesDue(now); n > 0; n--) {
        p.sent(now, sent > 0);
        sent++;
      }
    };
    send();
    expect(sent).toBe(5); // 100 ms of lead up front
    expect(p.bufferedMs(now)).toBe(100);
    // Irregular ticks: the total sent tracks elapsed time + lead, with no drift.
    for (const dt of [3, 17, 9, 31, 10, 10, 40, 7, 13]) {
      now += dt;
      send();
      expect(p.bufferedMs(now)).toBeGreaterThanOrEqual(100 - 20);
      expect(p.bufferedMs(now)).toBeLessThanOrEqual(100 + 20);
    }
    expect(sent * 20).toBeLessThanOrEqual(now - 1000 + 120);
    expect(sent * 20).toBeGreaterThanOrEqual(now - 1000 + 80);
    expect(p.underrunMs).toBe(0);
  });

  it("counts underruns when audio arrives after the caller's buffer ran dry", () => {
    const p = new Pacer(60);
    p.sent(0, false); // playhead 20
    p.sent(100, true); // 80 ms gap heard
    expect(p.underrunMs).toBe(80);
  });

  it("reset after clear means the next audio starts from now", () => {
    const p = new Pacer(100);
    for (let i = 0; i < 5; i++) p.sent(0, i > 0);
    p.reset(10);
    expect(p.bufferedMs(10)).toBe(0);
    expect(p.framesDue(10)).toBe(5);
  });
});

function harness(opts: PlayoutOptions = { leadMs: 60, markEveryMs: 100, maxQueuedMs: 10_000 }) {
  const sent: string[] = [];
  const obs: string[] = [];
  const observer: PlayoutObserver = {
    firstFrame: (t) => obs.push(`first:${t}`),
    markEchoed: (t, ms, final) => obs.push(`mark:${t}:${ms}:${final}`),
    cleared: (t, ms) => obs.push(`cleared:${t}:${ms}`),
    dropped: (t, n) => obs.push(`dropped:${t}:${n}`),
  };
  const playout = new Playout((d) => sent.push(d as string), new OutboundSerializer("MZ1"), opts, observer);
  const heard: string[] = [];
  const listener: UtteranceListener = {
    started: () => heard.push("started"),
    progress: (text, ms) => heard.push(`progress:${ms}:${text}`),
    done: (text) => heard.push(`done:${text}`),
  };
  const parsed = () => sent.map((s) => JSON.parse(s));
  return { playout, sent, obs, heard, listener, parsed };
}

describe("Playout", () => {
  const words = [
    { text: "Once", startMs: 0 },
    { text: "upon", startMs: 100 },
    { text: "a", startMs: 200 },
    { text: "time", startMs: 260 },
  ];

  it("sends media within the lead, marks every markEveryMs and a final mark, and reports heard text from echoes", () => {
    const h = harness();
    h.playout.begin(7, h.listener, 0);
    h.playout.append(7, bytes(8 * 400), words); // 400 ms
    h.playout.end(7);
    h.playout.tick(0);
    let msgs = h.parsed();
    expect(msgs.filter((m) => m.event === "media")).toHaveLength(3); // 60 ms lead
    expect(msgs[0]).toEqual({ event: "media", streamSid: "MZ1", media: { payload: Buffer.from(bytes(160)).toString("base64") } });
    expect(h.heard).toEqual(["started"]);
    for (let t = 10; t <= 400; t += 10) h.playout.tick(t);
    msgs = h.parsed();
    expect(msgs.filter((m) => m.event === "media")).toHaveLength(20);
    const marks = msgs.filter((m) => m.event === "mark").map((m) => m.mark.name);
    expect(marks).toEqual(["7:100", "7:200", "7:300", "7:400:end"]);
    // The mark after the last media message.
    expect(msgs.at(-1)).toEqual({ event: "mark", streamSid: "MZ1", mark: { name: "7:400:end" } });
    h.playout.onMark("7:200");
    expect(h.heard.at(-1)).toBe("progress:200:Once upon");
    h.playout.onMark("7:400:end");
    expect(h.heard.at(-1)).toBe("done:Once upon a time");
    expect(h.playout.activeTurn).toBeNull();
  });

  it("with two frames per message: 40 ms messages carrying the same bytes in order, the same marks, the lead kept", () => {
    const opts: PlayoutOptions = { leadMs: 60, markEveryMs: 100, maxQueuedMs: 10_000, framesPerMessage: 2 };
    const h = harness(opts);
    const audio = Uint8Array.from({ length: 8 * 410 }, (_, i) => (i * 7) % 251); // 410 ms, padded to 420: the last message holds one frame
    h.playout.begin(7, h.listener, 0);
    h.playout.append(7, audio, words);
    h.playout.end(7);
    for (let t = 0; t <= 420; t += 10) {
      h.playout.tick(t);
      // Never more than a message past the lead ahead of the caller's playout.
      const sentMs = h.parsed().filter((m) => m.event === "media").reduce((n, m) => n + Buffer.from(m.media.payload, "base64").length / 8, 0);
      expect(sentMs - t).toBeLessThanOrEqual(60 + 40);
    }
    const media = h.parsed().filter((m) => m.event === "media").map((m) => Buffer.from(m.media.payload, "base64"));
    expect(media.map((m) => m.length)).toEqual([...Array(10).fill(320), 160]);
    const padded = Buffer.concat([Buffer.from(audio), Buffer.alloc(80, 0xff)]);
    expect(Buffer.concat(media).equals(padded)).toBe(true);
    const marks = h.parsed().filter((m) => m.event === "mark").map((m) => m.mark.name);
    expect(marks).toEqual(["7:120", "7:240", "7:360", "7:420:end"]);
  });

  it("interrupt drops queued audio, sends clear, ignores the cleared marks, and keeps only heard words", () => {
    const h = harness();
    h.playout.begin(3, h.listener, 0);
    h.playout.append(3, bytes(8 * 400), words);
    h.playout.end(3);
    for (let t = 0; t <= 200; t += 10) h.playout.tick(t);
    h.playout.onMark("3:100");
    const heard = h.playout.interrupt(3, 200);
    expect(heard).toBe("Once");
    const after = h.sent.length;
    expect(JSON.parse(h.sent.at(-1)!)).toEqual({ event: "clear", streamSid: "MZ1" });
    expect(h.obs).toContain("cleared:3:160");
    // Twilio echoes the cleared marks; they must not count as heard.
    h.playout.onMark("3:200");
    expect(h.heard.some((x) => x.startsWith("progress:200"))).toBe(false);
    for (let t = 210; t <= 600; t += 10) h.playout.tick(t);
    expect(h.sent.length).toBe(after); // nothing of the interrupted turn after clear
  });

  it("a finished utterance needs no clear", () => {
    const h = harness();
    h.playout.begin(1, h.listener, 0);
    h.playout.append(1, bytes(160), []);
    h.playout.end(1);
    h.playout.tick(0);
    h.playout.onMark("1:20:end");
    h.playout.interrupt(1, 30);
    expect(h.sent.some((s) => s.includes('"clear"'))).toBe(false);
  });

  it("audio of an old turn is refused once a new one began", () => {
    const h = harness();
    h.playout.begin(1, h.listener, 0);
    h.playout.begin(2, h.listener, 0);
    expect(h.playout.append(1, bytes(160), [])).toBe(false);
    expect(h.playout.append(2, bytes(160), [])).toBe(true);
  });

  it("bounds the queue per call", () => {
    const h = harness({ leadMs: 60, markEveryMs: 100, maxQueuedMs: 100 });
    h.playout.begin(1, h.listener, 0);
    expect(h.playout.append(1, bytes(800), [])).toBe(true);
    expect(h.playout.append(1, bytes(800), [])).toBe(false);
    expect(h.obs).toContain("dropped:1:800");
  });

  it("heardWords counts a word once the next one has started playing", () => {
    expect(heardWords(words, 0, 400)).toBe("");
    expect(heardWords(words, 99, 400)).toBe("Once");
    expect(heardWords(words, 400, 400)).toBe("Once upon a time");
  });
});
