import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeCallerWav } from "../helpers/audio.ts";
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
