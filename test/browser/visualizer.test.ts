import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callMachine } from "../../machines/call.machine.ts";
import { clipMulaw } from "../helpers/audio.ts";
import { launchChromium } from "../helpers/browser.ts";
import { useParley } from "../helpers/harness.ts";
import { stateIds } from "../helpers/machine.ts";
import { finishedUtterances, TwilioCall } from "../helpers/twilio-client.ts";

/** Record every change of the chart's active states in the page, so short-lived states cannot be missed by polling. */
async function watchHighlight(page: Page): Promise<void> {
  await page.evaluate(() => {
    const g = globalThis as any;
    const chart = g.document.getElementById("chart");
    g.seenActive = [];
    new g.MutationObserver(() => {
      const active = [...chart.querySelectorAll("g.state.active")].map((el: any) => el.dataset.state);
      const last = g.seenActive.at(-1);
      if (active.join() !== last?.join()) g.seenActive.push(active);
    }).observe(chart, { subtree: true, attributes: true, attributeFilter: ["class"] });
  });
}
const seenLeaves = (page: Page): Promise<string[]> => page.evaluate(() => (globalThis as any).seenActive.map((a: string[]) => a.at(-1)));

describe("visualizer at /debug, in a real browser", () => {
  const parley = useParley(() => ({ GREETING: "Hello! This is Parley." }));
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it("renders every state of the machine, each visible, with labelled transitions", async () => {
    const { base } = await parley.start();
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${base}/debug`);
    await page.locator("#chart svg g.state").first().waitFor();
    const drawn = await page.$$eval("#chart svg g.state", (els) => els.map((el) => {
        const r = (el as any).getBoundingClientRect();
        return { id: (el as any).dataset.state as string, area: r.width * r.height };
      }),
    );
    expect(drawn.map((d) => d.id).sort()).toEqual(stateIds(callMachine).sort());
    for (const d of drawn) expect(d.area, d.id).toBeGreaterThan(0);
    const labels = await page.$$eval("#chart svg text.event", (els) => els.map((el) => el.textContent));
    for (const event of ["SPEECH.STARTED", "SPEECH.ENDED", "TRANSCRIPT", "STREAM.DROPPED", "HANGUP"]) expect(labels.some((l) => l?.startsWith(event)), event).toBe(true);
    await page.close();
  });

  it("highlights the states of a live call as they change, shows its timeline, and replays it once ended", async () => {
    const { base } = await parley.start();
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    await page.goto(`${base}/debug?call=${call.callSid}`);
    await page.locator("#chart svg g.state").first().waitFor();
    await page.locator(`#live .call.selected[data-sid="${call.callSid}"]`).waitFor();
    await watchHighlight(page);

    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "the greeting's final mark");
    await page.locator('g.state.active[data-state="call.live.active.listening"]').waitFor({ state: "attached", timeout: 10_000 });
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the reply's final mark");
    await page.locator('g.state.active[data-state="call.live.active.listening"]').waitFor({ state: "attached", timeout: 10_000 });

    // The highlight went through the turn in order: caller speaking, then the reply, then listening again.
    const leaves = await seenLeaves(page);
    const at = (id: string, from = 0) => leaves.indexOf(`call.live.active.${id}`, from);
    expect(at("callerSpeaking")).toBeGreaterThanOrEqual(0);
    expect(at("replying.speaking", at("callerSpeaking"))).toBeGreaterThan(at("callerSpeaking"));
    expect(at("listening", at("replying.speaking"))).toBeGreaterThan(at("replying.speaking"));
    // Exactly the active path is lit: the leaf and its ancestors.
    const lit = await page.$$eval("g.state.active", (els) => els.map((el) => (el as any).dataset.state));
    expect(lit.sort()).toEqual(["call", "call.live", "call.live.active", "call.live.active.listening"]);

    // The timeline: the state changes with their causes, the transcript, and the reply with its latency bars.
    const timeline = page.locator("#timeline");
    await expect.poll(() => timeline.locator(".event.state").count()).toBeGreaterThan(4);
    expect(await timeline.locator(".event.state", { hasText: "callerSpeaking" }).first().textContent()).toContain("← SPEECH.STARTED");
    await timeline.locator(".event.turn", { hasText: "assistant reply" }).locator(".bar").first().waitFor();
    expect(await timeline.locator(".event.turn .bar").count()).toBeGreaterThanOrEqual(4);

    // Once ended, the call moves to the recent list and replays from its record.
    await call.hangUp();
    await expect.poll(async () => ((await (await fetch(`${base}/api/calls/${call.callSid}`)).json()) as any).endedAt, { timeout: 10_000 }).not.toBeNull();
    await page.goto(`${base}/debug?call=${call.callSid}`);
    await page.locator(`#recent .call.selected[data-sid="${call.callSid}"]`).waitFor();
    await page.locator("#chart svg g.state").first().waitFor();
    await watchHighlight(page);
    await page.getByRole("button", { name: "Replay" }).click();
    await expect.poll(async () => (await seenLeaves(page)).includes("call.live.active.replying.speaking"), { timeout: 15_000 }).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);
});
