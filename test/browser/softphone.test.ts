import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SHARED_AUDIO, writeCallerWav } from "../helpers/audio.ts";
import { launchChromium } from "../helpers/browser.ts";
import { useParley } from "../helpers/harness.ts";

const SENTENCE = "we must find a new home in the stars";

/**
 * The softphone in a real Chromium whose microphone is a recording (Chromium's fake capture device): the page must
 * carry the caller's voice to Parley as 8 kHz mu-law over the Media Streams protocol, play the reply, echo its marks,
 * and show the transcript as the call's events arrive.
 */
describe("browser softphone", () => {
  // A phrase list makes the transcript exact, so it proves the audio arrived intact through the page's resampler
  // and encoder, rather than merely that something was recognised.
  const parley = useParley(() => ({ STT_MODE: "phrases", STT_PHRASES: `${SENTENCE}|what's the weather like|hello|goodbye` }));
  let browser: Browser;
  let dir = "";

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "parley-phone-"));
    // Silence while the greeting plays, the sentence, then silence for the reply: what a polite caller does.
    const wav = path.join(dir, "caller.wav");
    writeCallerWav(wav, ["new-home-in-the-stars"], { leadS: 5, gapS: 12 });
    browser = await launchChromium(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${wav}%noloop`]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("holds a conversation: the caller's words are transcribed, and the spoken reply plays", async () => {
    const { base, app } = await parley.start();
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    await page.goto(`${base}/`);
    expect(page.url()).toBe(`${base}/phone`);
    await page.click("#call");
    await page.waitForFunction(() => (globalThis as any).parleyPhone.status === "live", null, { timeout: 20_000 });
    const callSid: string = await page.evaluate(() => (globalThis as any).parleyPhone.callSid);
    expect(callSid).toMatch(/^BR[0-9a-f]{32}$/);

    // The transcript the page shows is the caller's sentence, from the call's events.
    const user = page.locator(".line.user:not(.partial)").first();
    await user.waitFor({ timeout: 30_000 });
    expect((await user.locator("span").textContent())?.toLowerCase()).toBe(SENTENCE);
    const playedBeforeReply: number = await page.evaluate(() => (globalThis as any).parleyPhone.playedMs);

    // The echo agent's reply is shown, and its audio played through the page's playout worklet.
    const reply = page.locator(".line.assistant").filter({ hasText: "You said" });
    await reply.waitFor({ timeout: 30_000 });
    await page.waitForFunction((before) => (globalThis as any).parleyPhone.playedMs > before + 1500, playedBeforeReply, { timeout: 15_000 });

    const rec: any = await (await fetch(`${base}/api/calls/${callSid}`)).json();
    expect(rec.direction).toBe("browser");
    expect(rec.greetingDelivered).toBe(true);
    const said = rec.turns.find((t: any) => t.role === "assistant" && t.kind === "reply");
    expect(said.text.toLowerCase()).toContain(SENTENCE);
    // Marks came back from the page's playout clock, so Parley knows the whole reply was heard.
    expect(said.interrupted).toBe(false);
    expect(said.heardText).toBe(said.text);
    expect(await page.evaluate(() => (globalThis as any).parleyPhone.marksEchoed)).toBeGreaterThan(3);

    await page.click("#hangup");
    await expect.poll(async () => ((await (await fetch(`${base}/api/calls/${callSid}`)).json()) as any).endedAt, { timeout: 10_000 }).not.toBeNull();
    expect(app.manager.liveCount).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);

  it("with an API token set, asks for it, and works once given it", async () => {
    const token = "softphone-test-token-0123456789";
    const { base, app } = await parley.start({}, { apiToken: token });
    const page = await browser.newPage();
    await page.goto(`${base}/phone`);
    await page.click("#call");
    await page.waitForFunction(() => (globalThis as any).parleyPhone.status === "failed");
    expect(await page.textContent("#status")).toContain("access_token");
    expect(app.manager.liveCount).toBe(0);

    await page.goto(`${base}/?access_token=${token}`);
    expect(page.url()).toBe(`${base}/phone?access_token=${token}`);
    await page.click("#call");
    await page.waitForFunction(() => (globalThis as any).parleyPhone.status === "live", null, { timeout: 20_000 });
    await page.locator(".line.assistant").first().waitFor({ timeout: 20_000 }); // the greeting, over the authorized SSE stream
    await page.click("#hangup");
    await expect.poll(() => app.manager.liveCount, { timeout: 10_000 }).toBe(0);
    await page.close();
  }, 60_000);

  it("is not served at all with SOFTPHONE=false", async () => {
    const { base } = await parley.start({}, { softphone: false });
    expect((await fetch(`${base}/phone`)).status).toBe(404);
    expect((await fetch(`${base}/api/phone/calls`, { method: "POST" })).status).toBe(404);
  });

  it("refuses a stream upgrade without a token it issued", async () => {
    const { base } = await parley.start();
    const page = await browser.newPage();
    await page.goto(`${base}/phone`);
    const outcome = await page.evaluate(
      (url) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(url);
          ws.onopen = () => resolve("open");
          ws.onerror = () => resolve("refused");
        }),
      base.replace("http", "ws") + "/phone/stream?token=forged",
    );
    expect(outcome).toBe("refused");
    await page.close();
  });
});

const LONG_GREETING = "Hello! This is Parley, the voice assistant. I can answer your questions, take a message, or tell you the weather. How can I help you today?";

/**
 * How a softphone call ends, and how it shows a turn cut short. The microphone is either Chromium's fake device
 * playing a caller who talks without pause from five seconds in (a recording, looped), or, where the caller must
 * speak at a given point of the greeting, a recording the test starts on cue, fed to the page as its microphone.
 */
describe("browser softphone: interruptions and the end of a call", () => {
  const parley = useParley(() => ({ STT_MODE: "phrases", STT_PHRASES: "hello|goodbye|what's the weather like" }));
  let browser: Browser;
  let dir = "";
  let voice: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "parley-phone-end-"));
    const wav = path.join(dir, "talker.wav");
    writeCallerWav(wav, ["jfk", "austen-0870", "austen-0890"], { leadS: 5, gapS: 0.2 });
    voice = readFileSync(path.join(SHARED_AUDIO, "jfk.wav"));
    browser = await launchChromium(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${wav}`]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A page whose microphone streams are kept where the test can see them. `holdMic`: the browser grants the
   * microphone only when the test calls releaseMic(). `onCue`: the microphone is silent until the test calls speak(),
   * which plays a recording of real speech into it.
   */
  async function phonePage(base: string, o: { holdMic?: boolean; onCue?: boolean } = {}): Promise<Page> {
    const page = await browser.newPage();
    await page.route(`${base}/test/voice.wav`, (route) => route.fulfill({ body: voice, contentType: "audio/wav" }));
    await page.addInitScript((o) => {
      const g = globalThis as any;
      const media = g.navigator.mediaDevices;
      const original = media.getUserMedia.bind(media);
      g.mics = [];
      const held = o.holdMic ? new Promise((resolve) => (g.releaseMic = resolve)) : null;
      media.getUserMedia = async (constraints: unknown) => {
        await held;
        let stream;
        if (o.onCue) {
          const ctx = new g.AudioContext();
          const out = ctx.createMediaStreamDestination();
          g.speak = async () => {
            const clip = ctx.createBufferSource();
            clip.buffer = await ctx.decodeAudioData(await (await g.fetch("/test/voice.wav")).arrayBuffer());
            clip.connect(out);
            clip.start();
          };
          stream = out.stream;
        } else stream = await original(constraints);
        g.mics.push(stream);
        return stream;
      };
    }, o);
    await page.goto(`${base}/phone`);
    return page;
  }
  const record = async (base: string, callSid: string): Promise<any> => (await fetch(`${base}/api/calls/${callSid}`)).json();
  const micLit = (page: Page) => page.waitForFunction(() => (globalThis as any).document.getElementById("level").value > 0.02, null, { timeout: 20_000 });
  const played = (page: Page, ms: number) => page.waitForFunction((ms) => (globalThis as any).parleyPhone.playedMs > ms, ms, { timeout: 20_000 });

  /** Whoever ended it: the page says ended, its meters are dark, and every microphone track it opened is stopped. */
  async function expectEnded(page: Page): Promise<void> {
    await page.waitForFunction(() => (globalThis as any).parleyPhone.status === "ended", null, { timeout: 20_000 });
    expect(await page.textContent("#state")).toBe("ended");
    expect(await page.$eval("#level", (m: any) => m.value)).toBe(0);
    expect(await page.$eval("#speaker", (m: any) => m.value)).toBe(0);
    expect(await page.locator("#transcript .line.partial").count()).toBe(0);
    const tracks: string[] = await page.evaluate(() => (globalThis as any).mics.flatMap((s: any) => s.getTracks().map((t: any) => t.readyState)));
    expect(tracks.length).toBeGreaterThan(0);
    expect(tracks.every((t) => t === "ended"), tracks.join()).toBe(true);
    // Nothing lights the meter again afterwards (audio already in flight when the call ended is ignored).
    await page.waitForTimeout(300);
    expect(await page.$eval("#level", (m: any) => m.value)).toBe(0);
    expect(await page.textContent("#state")).toBe("ended");
  }

  /** The interrupted greeting's line: what was heard as said, the rest greyed, and the note inside it, in words. */
  async function expectInterruptedGreeting(page: Page, greeting: { text: string; heardText: string }): Promise<void> {
    const first = page.locator("#transcript .line").first();
    expect(await first.getAttribute("class")).toBe("line assistant interrupted");
    expect(await first.locator("> span").textContent()).toBe(greeting.text);
    expect(await first.locator("> span > .unheard").textContent()).toBe(greeting.text.slice(greeting.heardText.length));
    const note = greeting.heardText ? `↳ you interrupted: you heard “${greeting.heardText}”` : "↳ you interrupted before you heard any of it";
    expect(await first.locator(".note").textContent()).toBe(note);
    // Nothing about the interruption anywhere else, and no empty quotes.
    expect(await page.locator("#transcript").getByText("interrupted").count()).toBe(1);
    expect(await page.textContent("#transcript")).not.toContain('""');
  }

  /** Call, let the greeting play for `ms`, then talk over it; returns the call and its greeting's turn. */
  async function interruptGreeting(page: Page, base: string, ms: number): Promise<{ callSid: string; greeting: any }> {
    await page.click("#call");
    await played(page, ms);
    await page.evaluate(() => (globalThis as any).speak());
    await page.locator(".line.assistant").first().waitFor({ timeout: 20_000 });
    const callSid: string = await page.evaluate(() => (globalThis as any).parleyPhone.callSid);
    const { turns } = await record(base, callSid);
    const greeting = turns.find((t: any) => t.kind === "greeting");
    expect(greeting?.interrupted, JSON.stringify(turns)).toBe(true);
    return { callSid, greeting };
  }

  it("shows a greeting interrupted before any of it was heard as such", async () => {
    // Marks only every 5 s, and the caller talks half a second in: nothing Parley can vouch for was heard.
    const { base } = await parley.start({}, { greeting: LONG_GREETING, markEveryMs: 5000 });
    const page = await phonePage(base, { onCue: true });
    const { greeting } = await interruptGreeting(page, base, 500);
    expect(greeting.heardText).toBe("");
    await expectInterruptedGreeting(page, greeting);
    await page.click("#hangup");
    await expectEnded(page);
    await page.close();
  }, 60_000);

  it("shows what was heard of an interrupted greeting; an end from Parley ends it all, its goodbye shown", async () => {
    const { base } = await parley.start({}, { greeting: LONG_GREETING });
    const page = await phonePage(base, { onCue: true });
    const { callSid, greeting } = await interruptGreeting(page, base, 2500);
    expect(greeting.heardText.length).toBeGreaterThan(0);
    expect(LONG_GREETING.startsWith(greeting.heardText)).toBe(true);
    await expectInterruptedGreeting(page, greeting);

    // Parley ends the call while the caller is still talking.
    await micLit(page);
    expect((await fetch(`${base}/api/calls/${callSid}/hangup`, { method: "POST" })).status).toBe(202);
    await expectEnded(page);
    expect(await page.evaluate(() => (globalThis as any).parleyPhone.endedBy)).toBe("parley");
    expect(await page.textContent("#status")).toBe("Call ended: hung up through the control API");
    // Parley's goodbye reaches the transcript even though the socket closed first.
    const rec = await record(base, callSid);
    const goodbye = rec.turns.findLast((t: any) => t.role === "assistant");
    expect(goodbye.kind).toBe("goodbye");
    await page.locator(".line.assistant", { hasText: goodbye.text }).waitFor({ timeout: 10_000 });
    await page.close();
  }, 60_000);

  it("hanging up while the caller is speaking: the page shows the call ended, not callerSpeaking, and the microphone off", async () => {
    const { base } = await parley.start();
    const page = await phonePage(base);
    await page.click("#call");
    await page.waitForFunction(() => (globalThis as any).document.getElementById("state").textContent === "callerSpeaking", null, { timeout: 30_000 });
    const callSid: string = await page.evaluate(() => (globalThis as any).parleyPhone.callSid);
    await micLit(page);
    await page.click("#hangup");
    await expectEnded(page);
    expect(await page.evaluate(() => (globalThis as any).parleyPhone.endedBy)).toBe("you");
    await expect.poll(async () => (await record(base, callSid)).endedAt, { timeout: 10_000 }).not.toBeNull();
    await page.close();
  }, 60_000);

  it("a dropped connection ends the call on the page, and in Parley", async () => {
    const { base, app } = await parley.start();
    // The server's side of the page's media stream, to cut without a close handshake.
    const streams: import("node:net").Socket[] = [];
    app.fastify.server.on("upgrade", (req, socket) => req.url?.startsWith("/phone/stream") && streams.push(socket as import("node:net").Socket));
    const page = await phonePage(base);
    await page.click("#call");
    await page.waitForFunction(() => (globalThis as any).parleyPhone.status === "live", null, { timeout: 20_000 });
    const callSid: string = await page.evaluate(() => (globalThis as any).parleyPhone.callSid);
    await micLit(page);
    expect(streams.length).toBe(1);
    streams[0]!.destroy();
    await expectEnded(page);
    expect(await page.evaluate(() => (globalThis as any).parleyPhone.endedBy)).toBe("dropped");
    expect(await page.textContent("#status")).toBe("Call dropped: the connection to Parley was lost");
    await expect.poll(async () => (await record(base, callSid)).endedAt, { timeout: 10_000 }).not.toBeNull();
    await page.close();
  }, 60_000);

  it("hanging up while the browser still asks for the microphone lets go of it once granted", async () => {
    const { base, app } = await parley.start();
    const page = await phonePage(base, { holdMic: true });
    await page.click("#call");
    expect(await page.evaluate(() => (globalThis as any).parleyPhone.status)).toBe("starting");
    await page.click("#hangup");
    await page.evaluate(() => (globalThis as any).releaseMic());
    await page.waitForFunction(() => (globalThis as any).mics.length === 1);
    await expect.poll(() => page.evaluate(() => (globalThis as any).mics[0].getTracks().map((t: any) => t.readyState).join()), { timeout: 5_000 }).toBe("ended");
    expect(await page.evaluate(() => (globalThis as any).parleyPhone.status)).toBe("ended");
    expect(await page.evaluate(() => (globalThis as any).parleyPhone.callSid)).toBeNull();
    expect(app.manager.liveCount).toBe(0);
    await page.close();
  });
});
