/**
 * The README's screenshots: a softphone conversation in headless Chromium (its microphone is a recording from
 * ../shared/audio, through Chromium's fake capture device), and the visualizer following that same call. Run with
 * `npm run screenshots`; writes docs/screens/*.png.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { closeServices, createLogger, createServices } from "../src/bootstrap.ts";
import { loadConfig } from "../src/config.ts";
import { buildApp } from "../src/server/app.ts";
import { writeCallerWav } from "../test/helpers/audio.ts";
import { launchChromium } from "../test/helpers/browser.ts";

const USAGE = `Usage: npm run screenshots

Start Parley, place a softphone call in headless Chromium (/usr/bin/chromium, or CHROMIUM_PATH) with a recording
from ../shared/audio as the microphone, and write docs/screens/softphone.png and docs/screens/visualizer.png.
Takes no options.`;

// Checked before anything starts: --help prints the usage, anything else is a one-line error (exit 2).
try {
  if (parseArgs({ options: { help: { type: "boolean", short: "h" } }, allowPositionals: false }).values.help) {
    console.log(USAGE);
    process.exit(0);
  }
} catch (err) {
  console.error(`screenshots: ${(err as Error).message.split(/\.\s/)[0]} (see 'npm run screenshots -- --help')`);
  process.exit(2);
}

const OUT = path.resolve(import.meta.dirname, "../docs/screens");
const CLIPS = ["whats-the-weather-like", "new-home-in-the-stars"];

const dir = mkdtempSync(path.join(tmpdir(), "parley-screens-"));
const config = loadConfig({
  env: {
    DATA_DIR: dir,
    LOG_LEVEL: "warn",
    PORT: "0",
    // An exact transcript for the picture; the open-vocabulary recogniser is far less accurate (see README).
    STT_MODE: "phrases",
    STT_PHRASES: "what's the weather like|we must find a new home in the stars|hello|goodbye",
  },
});
const services = await createServices(config, createLogger(config));
const app = buildApp(services);
const base = `http://127.0.0.1:${await app.listen()}`;

// The caller: quiet through the greeting, a question, quiet for the reply, another question, quiet again.
const wav = path.join(dir, "caller.wav");
writeCallerWav(wav, CLIPS, { leadS: 5, gapS: 7 });

const browser = await launchChromium(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${wav}%noloop`]);
try {
  mkdirSync(OUT, { recursive: true });
  const phone = await browser.newPage({ viewport: { width: 720, height: 640 }, deviceScaleFactor: 1 });
  await phone.goto(`${base}/phone`);
  await phone.click("#call");
  await phone.waitForFunction(() => (globalThis as any).parleyPhone.callSid, null, { timeout: 20_000 });
  const callSid: string = await phone.evaluate(() => (globalThis as any).parleyPhone.callSid);
  console.log(`softphone call ${callSid} started`);

  // The visualizer opened mid-call, as the softphone's link does: the first turn comes from the call's record, and
  // the view (the default "fit") follows the active state from there. The picture: the second reply being spoken.
  await phone.locator(".line.assistant", { hasText: "weather" }).waitFor({ timeout: 40_000 });
  const viz = await browser.newPage({ viewport: { width: 1500, height: 950 }, deviceScaleFactor: 1 });
  await viz.goto(`${base}/debug?call=${callSid}`);
  await viz.locator("#chart svg g.state").first().waitFor();
  await phone.locator(".line.user", { hasText: "stars" }).waitFor({ timeout: 40_000 });
  await viz.locator('g.state.active[data-state="call.live.active.replying.speaking"]').waitFor({ state: "attached", timeout: 20_000 });
  await viz.screenshot({ path: path.join(OUT, "visualizer.png") });
  console.log("wrote docs/screens/visualizer.png");

  await phone.locator(".line.assistant", { hasText: "stars" }).waitFor({ timeout: 20_000 });
  await phone.waitForTimeout(500);
  await phone.screenshot({ path: path.join(OUT, "softphone.png") });
  console.log("wrote docs/screens/softphone.png");
  await phone.click("#hangup");
} finally {
  await browser.close();
  await app.close();
  await closeServices(services);
  rmSync(dir, { recursive: true, force: true });
}
