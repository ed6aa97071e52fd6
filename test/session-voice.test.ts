import { describe, expect, it } from "vitest";
import { decodeMulaw } from "../src/audio/mulaw.ts";
import type { VoiceChoice } from "../src/providers/types.ts";
import { RoutingTable } from "../src/session/session.ts";
import { useParley } from "./helpers/harness.ts";
import { finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";

/**
 * How alike two utterances sound, coarsely: the correlation of their loudness contours (RMS per 20 ms). eSpeak adds
 * random flutter and noise, so the same voice never gives the same bytes twice, but its contour does; another voice
 * or language stretches and shapes the words differently.
 */
function similarity(a: Buffer, b: Buffer): number {
  const contour = (buf: Buffer) => {
    const pcm = decodeMulaw(buf);
    const out: number[] = [];
    for (let f = 0; f + 160 <= pcm.length; f += 160) {
      let e = 0;
      for (let i = f; i < f + 160; i++) e += pcm[i]! * pcm[i]!;
      out.push(Math.sqrt(e / 160));
    }
    return out;
  };
  const [x, y] = [contour(a), contour(b)];
  const n = Math.min(x.length, y.length);
  const mean = (v: number[]) => v.slice(0, n).reduce((s, t) => s + t, 0) / n;
  const [mx, my] = [mean(x), mean(y)];
  let xy = 0, xx = 0, yy = 0;
  for (let i = 0; i < n; i++) {
    xy += (x[i]! - mx) * (y[i]! - my);
    xx += (x[i]! - mx) ** 2;
    yy += (y[i]! - my) ** 2;
  }
  return xy / Math.sqrt(xx * yy);
}

const WORDS = "Hello from Parley.";
const GERMAN_LINE = "+15550100201";
const BRITISH_LINE = "+15550100202";

/**
 * A call's session picks its voice and language, per call, on the embedded providers: the callee hears the words in
 * the voice its session named while other calls keep the configured one, and a voice or language the providers lack
 * is refused when the session is set.
 */
describe("a session's voice and language", () => {
  const parley = useParley(() => ({ GREETING: WORDS }));

  const synthesized = async (voice?: VoiceChoice): Promise<Buffer> => {
    const parts: Uint8Array[] = [];
    for await (const c of parley.services.tts.synthesize(WORDS, new AbortController().signal, voice)) parts.push(c.mulaw);
    return Buffer.concat(parts);
  };
  /** What the callee's phone received of the first words (the greeting), over a real stream. */
  const heardGreeting = async (base: string, to: string): Promise<Buffer> => {
    const call = new TwilioCall({ baseUrl: base, to });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the first words");
    await call.hangUp();
    return Buffer.concat(call.payloads);
  };

  it("each call speaks in its session's voice (or its language's), others in the configured one", async () => {
    const routes = RoutingTable.parse({ [GERMAN_LINE]: { voice: "de" }, [BRITISH_LINE]: { language: "en-GB" } });
    expect(routes.problems(parley.services)).toEqual([]);
    const { base } = await parley.start({ routes });

    const [german, british, usual] = [await heardGreeting(base, GERMAN_LINE), await heardGreeting(base, BRITISH_LINE), await heardGreeting(base, "+15550100203")];
    const [asGerman, asBritish, asUsual] = [await synthesized({ voice: "de" }), await synthesized({ language: "en-GB" }), await synthesized()];
    // The voices really differ (else this test could not tell them apart)...
    // Each callee hears its own voice: the same contour as that voice's synthesis (0.997 and up here), closer than
    // any other voice's (another language ~0.2, another English ~0.9), and as long, sent in 20 ms frames.
    const voices = { german: asGerman, british: asBritish, usual: asUsual };
    for (const [name, heard] of Object.entries({ german, british, usual })) {
      const own = voices[name as keyof typeof voices];
      expect(similarity(heard, own), name).toBeGreaterThan(0.98);
      for (const other of Object.values(voices)) if (other !== own) expect(similarity(heard, other), name).toBeLessThan(0.95);
      expect(heard.length, name).toBe(Math.ceil(own.length / 160) * 160);
    }
  }, 90_000);

  it("a voice or language the providers lack is refused up front, naming the field and the way out", () => {
    const problems = (session: object) => RoutingTable.parse({ "*": session }).problems(parley.services);
    expect(problems({ voice: "klingon" })).toEqual([expect.stringMatching(/^routes \*: voice: eSpeak NG has no voice "klingon"/)]);
    // The embedded recogniser knows English only: a German call needs a cloud one, and is told so.
    expect(problems({ language: "de-DE" })).toEqual([expect.stringMatching(/^routes \*: language: PocketSphinx recognises English only .*DEEPGRAM_API_KEY/)]);
    expect(problems({ language: "en-AU", voice: "en-gb" })).toEqual([]);
    expect(problems({ tools: ["nope"] })).toEqual([expect.stringMatching(/unknown tool "nope"/)]);
  });
});
