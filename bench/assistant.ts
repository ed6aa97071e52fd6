/**
 * An assistant driving calls through the control API, measured as the assistant experiences it.
 *
 * Starts Parley as its own process (embedded providers, a phrase list so the answers are exact), routes a number to
 * `agent: "assistant"` with ROUTES_FILE, and places calls with the Twilio-protocol client playing real speech:
 *   - ask: from the end of the callee's speech to `POST /ask` returning their words, with two ends of speech: the
 *     clip's energy end (its last 20 ms within 20 dB of its peak) and the VAD's (the end of the last 32 ms window
 *     Silero called speech; weak final consonants under -20 dB are speech to Silero), and where the time goes;
 *   - outcome: from the moment the callee hangs up (Twilio's `stop`) to the `outcome` event on SSE, and to
 *     the outcome appearing on `GET /api/calls/:id` (what MCP's wait_for_call reads).
 *
 *   npm run bench:assistant -- [--calls 3] [--asks 3]
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import { clipMulaw } from "../test/helpers/audio.ts";
import { finishedUtterances, speechBounds, TwilioCall } from "../test/helpers/twilio-client.ts";
import { machine, startParley, stats } from "./parley-process.ts";
import { parseCli } from "./cli.ts";

const { values, check } = parseCli(
  "bench:assistant",
  `Usage: npm run bench:assistant -- [--calls N] [--asks N] [--stt phrases|open] [--early-decode-ms MS] [--help]

Ask latency (end of the callee's speech -> POST /ask returns) and outcome latency (hang-up -> SSE outcome).
--stt phrases (default): SoundSwallower with the clips' phrases, streaming, exact answers.
--stt open: PocketSphinx dictation (the embedded default), which decodes whole utterances; --early-decode-ms sets
STT_EARLY_DECODE_MS (default: Parley's own; 0 is off).`,
  { calls: { type: "string", default: "3" }, asks: { type: "string", default: "3" }, stt: { type: "string", default: "phrases" }, "early-decode-ms": { type: "string" } },
);
const CALLS = check.int("calls", 1);
const ASKS = check.int("asks", 1);
const STT = check.oneOf("stt", ["phrases", "open"]);
if (values["early-decode-ms"] !== undefined) check.int("early-decode-ms", 0);

const LINE = "+15550100077";
const energy = (b: number) => MULAW_TO_PCM16[b]!;
const dir = mkdtempSync(path.join(tmpdir(), "parley-bench-routes-"));
const routesFile = path.join(dir, "routes.json");
writeFileSync(routesFile, JSON.stringify({ [LINE]: { agent: "assistant", message: "Hello, Parley here." } }));
const VAD_MIN_SILENCE_MS = 550;

const { url, child } = await startParley({
  ROUTES_FILE: routesFile,
  ...(STT === "phrases"
    ? { STT_MODE: "phrases", STT_PHRASES: "what's the weather like|we must find a new home in the stars|he was not an ill disposed young man" }
    : { STT_MODE: "open" }),
  ...(values["early-decode-ms"] !== undefined ? { STT_EARLY_DECODE_MS: values["early-decode-ms"] } : {}),
  VAD_MIN_SILENCE_MS: String(VAD_MIN_SILENCE_MS),
});
const clips = await Promise.all(["whats-the-weather-like", "new-home-in-the-stars", "austen-0880"].map((c) => clipMulaw(c)));
let sttWork: Record<string, unknown> | null = null;
const askMs: number[] = [];
/** The same asks, from the end of speech as Parley's VAD heard it (the end of the last window Silero called speech). */
const askFromVadMs: number[] = [];
/** Where each ask's time goes: Silero's lag, the silence window, the recogniser, and the rest (hand-offs, HTTP). */
const stage = { sileroLagMs: [] as number[], silenceWindowMs: [] as number[], sttMs: [] as number[], restMs: [] as number[] };
type Ev = { type: string; t: number; [k: string]: unknown };
const sseOutcomeMs: number[] = [];
const recordOutcomeMs: number[] = [];
const post = (p: string, body: unknown) => fetch(`${url}${p}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
// One clock for everything: the test client's, on which it schedules the callee's audio.

try {
  for (let c = 0; c < CALLS; c++) {
    const call = new TwilioCall({ baseUrl: url, to: LINE });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the first words");
    let outcomeAt = 0;
    const events: Ev[] = [];
    const sse = fetch(`${url}/api/calls/${call.callSid}/events`).then(async (res) => {
      const reader = res.body!.getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += Buffer.from(value).toString();
        if (!outcomeAt && buf.includes("event: outcome")) outcomeAt = call.now();
        for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
          const data = /^data: (.*)$/m.exec(buf.slice(0, i))?.[1];
          buf = buf.slice(i + 2);
          if (data) events.push(JSON.parse(data) as Ev);
        }
      }
    });
    for (let a = 0; a < ASKS; a++) {
      const done = finishedUtterances(call);
      const asked = post(`/api/calls/${call.callSid}/ask`, { text: "Tell me something.", timeoutMs: 30_000 }).then(async (r) => ({ at: call.now(), body: (await r.json()) as { status: string } }));
      await call.waitFor(() => finishedUtterances(call) > done, 20_000, "the question");
      const clip = clips[a % clips.length]!;
      const said = call.say(clip);
      call.silence(1500);
      const speechEnd = said.startsAt + speechBounds(clip, energy).endMs;
      const res = await asked;
      if (res.body.status !== "answered") throw new Error(`ask ${a} of call ${c}: ${JSON.stringify(res.body)}`);
      askMs.push(res.at - speechEnd);
      // The breakdown, from the call's events on SSE: VAD positions are samples of the caller's stream (the client's timeline);
      // the recogniser's time is between two of Parley's own timestamps.
      const seen = events.length;
      for (let i = 0; i < 200 && !events.slice(seen - 20).some((e) => e.type === "transcript"); i++) await new Promise((r) => setTimeout(r, 5));
      const tr = events.findLast((e) => e.type === "transcript")!;
      if (!tr) throw new Error(`no transcript event on SSE; saw ${[...new Set(events.map((e) => e.type))].join(", ")}`);
      const ended = events.findLast((e) => e.type === "speech.ended" && e.t <= tr.t)!;
      const lag = call.sampleDueAt(ended.endSample as number) - speechEnd;
      const window = ((ended.confirmedSample as number) - (ended.endSample as number)) / 8;
      const stt = tr.t - ended.t;
      askFromVadMs.push(res.at - call.sampleDueAt(ended.endSample as number));
      stage.sileroLagMs.push(lag);
      stage.silenceWindowMs.push(window);
      stage.sttMs.push(stt);
      stage.restMs.push(res.at - speechEnd - lag - window - stt);
      // The assistant answers at once, so the turn ends and the next ask can be said.
      await post(`/api/calls/${call.callSid}/speak`, { text: "Thanks." });
      await call.waitFor(() => finishedUtterances(call) > done + 1, 20_000, "the assistant's reply");
    }
    // The callee hangs up (Twilio's `stop`): the call is over from this moment.
    const endedAt = call.now();
    await call.hangUp();
    for (;;) {
      const rec = (await (await fetch(`${url}/api/calls/${call.callSid}`)).json()) as { outcome: unknown };
      if (rec.outcome) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    recordOutcomeMs.push(call.now() - endedAt);
    await sse;
    sseOutcomeMs.push(outcomeAt - endedAt);
    process.stderr.write(`call ${c + 1}/${CALLS} done\n`);
  }
} finally {
  sttWork = ((await (await fetch(`${url}/debug/stats`).catch(() => null))?.json().catch(() => null)) as { stt?: Record<string, unknown> } | null)?.stt ?? null;
  child.kill();
}

const fmt = (s: ReturnType<typeof stats>) => `p50 ${s.p50.toFixed(1)} ms, p95 ${s.p95.toFixed(1)} ms, max ${s.max.toFixed(1)} ms (n=${s.n})`;
const breakdown = Object.fromEntries(Object.entries(stage).map(([k, v]) => [k, stats(v)]));
const out = { machine: machine(), stt: STT, earlyDecodeMs: values["early-decode-ms"] ?? "default", calls: CALLS, asks: ASKS, vadMinSilenceMs: VAD_MIN_SILENCE_MS, askMs: stats(askMs), askFromVadEndMs: stats(askFromVadMs), askBreakdown: breakdown, sttWork, sseOutcomeMs: stats(sseOutcomeMs), recordOutcomeMs: stats(recordOutcomeMs) };
mkdirSync("bench/out", { recursive: true });
writeFileSync("bench/out/assistant.json", JSON.stringify(out, null, 2));
console.log(`ask (end of speech -> reply returned), target p95 <= ${VAD_MIN_SILENCE_MS + 50} ms:`);
console.log(`  from the clip's energy end (last 20 ms at -20 dB of its peak): ${fmt(out.askMs)}`);
console.log(`  from the VAD's end of speech (last window Silero called speech): ${fmt(out.askFromVadEndMs)}`);
for (const [k, v] of Object.entries(breakdown)) console.log(`  ${k}: ${fmt(v)}`);
if (sttWork) console.log(`recogniser's work: ${JSON.stringify(sttWork)}`);
console.log(`outcome on SSE after the hang-up: ${fmt(out.sseOutcomeMs)}; on the record: ${fmt(out.recordOutcomeMs)}; target < 1000 ms`);
