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

type Box = { text: string; x: number; y: number; w: number; h: number };
/** The on-screen boxes of the chart's elements that `selector` picks. */
const boxes = (page: Page, selector: string): Promise<Box[]> =>
  page.$$eval(selector, (els) => els.map((el: any) => {
      const r = el.getBoundingClientRect();
      return { text: el.textContent || el.parentNode.dataset.state, x: r.x, y: r.y, w: r.width, h: r.height };
    }),
  );
const overlap = (a: Box, b: Box) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
function collisions(a: Box[], b: Box[] = a): string[] {
  const out: string[] = [];
  a.forEach((p, i) => b.forEach((q, j) => (a !== b || j > i) && overlap(p, q) && out.push(`${p.text} × ${q.text}`)));
  return out;
}

/** The state rows of the visualizer's timeline, as the page writes a state: its path below the root. */
const stateRow = (value: unknown): string => {
  const path = (v: unknown): string[] => (typeof v === "string" ? [v] : Object.entries(v as object).flatMap(([k, c]) => [k, ...path(c)]));
  return path(value).join(".");
};

describe("visualizer at /debug, in a real browser", () => {
  // No silence prompt in the middle of a test: a call left listening stays as it is.
  const parley = useParley(() => ({ GREETING: "Hello! This is Parley.", SILENCE_TIMEOUT_MS: "600000" }));
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

    // Laid out as Chromium draws it: no label on another, and no arrow's label on a state's box or title.
    await page.click('#zoom button[data-zoom="1"]');
    const labelBoxes = await boxes(page, "#chart svg text.event");
    expect(labelBoxes.length).toBeGreaterThan(40);
    expect(collisions(labelBoxes)).toEqual([]);
    const arrowLabels = await boxes(page, "#chart svg text.event:not(.internal)");
    const stateBoxes = await boxes(page, "#chart svg g.state.atomic > rect:first-of-type, #chart svg g.state.final > rect:first-of-type, #chart svg text.title");
    expect(collisions(arrowLabels, stateBoxes)).toEqual([]);

    // "whole" is the overview: all of the chart inside the chart's pane.
    await page.click('#zoom button[data-zoom="whole"]');
    const [pane] = await boxes(page, "#chart");
    const [whole] = await boxes(page, "#chart svg");
    expect(whole!.w <= pane!.w && whole!.h <= pane!.h && whole!.w * whole!.h > 0, JSON.stringify([whole!.w, whole!.h, pane!.w, pane!.h])).toBe(true);
    await page.close();
  });

  it("serves someone arriving mid-call: the call so far from its record, then live; the only call selected; fit readable", async () => {
    const { base } = await parley.start();
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "the greeting's final mark");
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the reply's final mark");
    const recordNow = async () => (await (await fetch(`${base}/api/calls/${call.callSid}`)).json()) as any;
    await expect.poll(async () => stateRow((await recordNow()).state), { timeout: 10_000 }).toBe("live.active.listening");
    const before = await recordNow();
    expect(before.turns.length).toBeGreaterThanOrEqual(3); // greeting, the caller, the reply

    // The softphone's "watch this call" link, opened now: the call is quiet, so all the page shows is its past.
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    await page.goto(`${base}/debug?call=${call.callSid}`);
    const timeline = page.locator("#timeline");
    await timeline.locator(".divider").waitFor({ timeout: 10_000 });
    const rows = () => timeline.locator(".event.state .cause").evaluateAll((els) => els.map((el: any) => el.parentNode.textContent.replace(/^\+\S+ state /, "")));
    expect(await rows()).toEqual(before.states.map((s: any) => `${stateRow(s.value)} ← ${s.event}`));
    expect(await timeline.locator(".event.turn").count()).toBe(before.turns.length);
    await timeline.locator(".event.turn", { hasText: "assistant reply" }).locator(".bar").first().waitFor({ state: "attached" });
    expect(await page.$$eval("g.state.active", (els) => els.map((el) => (el as any).dataset.state).sort())).toEqual(["call", "call.live", "call.live.active", "call.live.active.listening"]);

    // "fit" (the default) shows the active state on screen, its text readable, not the whole chart at 2 px.
    const chart = (await boxes(page, "#chart"))[0]!;
    const leaf = (await boxes(page, 'g.state.active[data-state="call.live.active.listening"] > rect'))[0]!;
    const inside = leaf.x >= chart.x && leaf.y >= chart.y && leaf.x + leaf.w <= chart.x + chart.w && leaf.y + leaf.h <= chart.y + chart.h;
    expect(inside, `the active state at ${JSON.stringify({ ...leaf, text: "" })}, the chart's view at ${JSON.stringify({ ...chart, text: "" })}`).toBe(true);
    const textPx = await page.$eval("#chart svg", (svg: any) => svg.getScreenCTM().a * Number(svg.getAttribute("font-size")));
    expect(textPx).toBeGreaterThanOrEqual(9);
    const titleHeight = (await boxes(page, 'g.state[data-state="call.live.active.listening"] text.title'))[0]!.h;
    expect(titleHeight).toBeGreaterThanOrEqual(9);

    // Opened with no call named, the page selects the only live call by itself. Its read of the record is held up
    // here until the next turn is over, so the record it reads holds events its live stream has already brought.
    const plain = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    await plain.route((url) => url.pathname === `/api/calls/${call.callSid}`, async (route) => {
      await held;
      await route.continue();
    });
    await plain.goto(`${base}/debug`);
    await plain.locator(`#live .call.selected[data-sid="${call.callSid}"]`).waitFor({ timeout: 10_000 });
    await plain.locator('g.state.active[data-state="call.live.active.listening"]').waitFor({ state: "attached", timeout: 10_000 }); // its stream's snapshot

    // The next turn: on the first page, its states follow the past live, each once.
    call.say(await clipMulaw("new-home-in-the-stars"));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 3, 20_000, "the second reply's final mark");
    await page.locator('g.state.active[data-state="call.live.active.listening"]').waitFor({ state: "attached", timeout: 10_000 });
    const after = await recordNow();
    expect(after.states.length).toBeGreaterThan(before.states.length);
    const expected = after.states.map((s: any) => `${stateRow(s.value)} ← ${s.event}`);
    await expect.poll(rows, { timeout: 10_000 }).toEqual(expected);
    expect(await timeline.locator(".event.turn").count()).toBe(after.turns.length);
    const order = await timeline.locator(".event, .divider").evaluateAll((els) => els.map((el: any) => el.className));
    expect(order.indexOf("divider")).toBe(before.states.length + before.turns.length);

    // On the second, the record now has the whole turn: the same events from the live stream are not drawn twice.
    release();
    const plainTimeline = plain.locator("#timeline");
    await plainTimeline.locator(".divider").waitFor({ timeout: 10_000 });
    expect(await plainTimeline.locator(".event.state .cause").evaluateAll((els) => els.map((el: any) => el.parentNode.textContent.replace(/^\+\S+ state /, "")))).toEqual(expected);
    expect(await plainTimeline.locator(".event.turn").count()).toBe(after.turns.length);
    await call.hangUp();
    expect(errors).toEqual([]);
    await page.close();
    await plain.close();
  }, 90_000);

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
