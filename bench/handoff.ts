/**
 * Parley's own added latency at each hand-off between stages, over the cloud adapters, with local servers speaking
 * Deepgram's, ElevenLabs' and OpenAI's protocols (instant, so only Parley's time is left):
 *   - STT final -> agent request        (transcript event -> agent turn started)
 *   - agent first token -> TTS text     (first text from the model -> text sent to the TTS)
 *   - first TTS byte -> first frame out (first audio from the TTS -> first media frame sent to Twilio)
 * Read from the per-turn latency in the call records. Parley runs as its own process.
 *   npm run bench:handoff -- [--calls 5]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "../test/helpers/audio.ts";
import { DeepgramMock } from "../test/helpers/deepgram-mock.ts";
import { ElevenLabsMock } from "../test/helpers/elevenlabs-mock.ts";
import { OpenAiMock } from "../test/helpers/openai-mock.ts";
import { finishedUtterances, TwilioCall } from "../test/helpers/twilio-client.ts";
import { machine, startParley, stats } from "./parley-process.ts";

const { values } = parseArgs({ options: { calls: { type: "string", default: "5" } } });
const CALLS = Number(values.calls);
const QUESTIONS = [
  { clip: "whats-the-weather-like", text: "what's the weather like" },
  { clip: "austen-0880", text: "he was not an ill disposed young man" },
  { clip: "new-home-in-the-stars", text: "we must find a new home in the stars" },
] as const;

async function main() {
  const deepgram = await DeepgramMock.start({ apiKey: "dg", endpointOnSilence: true });
  const elevenlabs = await ElevenLabsMock.start({ apiKey: "el" });
  const openai = await OpenAiMock.start({ apiKey: "oa" });
  openai.reply((req) => ({ text: `You said ${String(req.messages.at(-1)!.content)}. Thanks for telling me.` }));
  const parley = await startParley({
    DEEPGRAM_API_KEY: "dg",
    DEEPGRAM_URL: deepgram.url,
    ELEVENLABS_API_KEY: "el",
    ELEVENLABS_URL: elevenlabs.url,
    OPENAI_API_KEY: "oa",
    OPENAI_BASE_URL: openai.url,
  });
  const clips = await Promise.all(QUESTIONS.map((q) => clipMulaw(q.clip)));
  const records: CallRecord[] = [];
  try {
    for (let i = 0; i < CALLS; i++) {
      process.stderr.write(`\rcall ${i + 1}/${CALLS} …`);
      deepgram.script = QUESTIONS.map((q) => q.text);
      deepgram.line = 0;
      deepgram.wordsFinalized = 0;
      const call = new TwilioCall({ baseUrl: parley.url });
      await call.connect();
      await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
      for (let q = 0; q < clips.length; q++) {
        call.say(clips[q]!);
        call.silence(1500);
        await call.waitFor(() => finishedUtterances(call) >= q + 2, 20_000, `reply ${q + 1}`);
      }
      await call.hangUp();
      await new Promise((r) => setTimeout(r, 100));
      records.push((await (await fetch(`${parley.url}/api/calls/${call.callSid}`)).json()) as CallRecord);
    }
    process.stderr.write("\n");
  } finally {
    parley.child.kill("SIGTERM");
    await Promise.all([deepgram.close(), elevenlabs.close(), openai.close()]);
  }
  const replies = records.flatMap((r) => r.turns.filter((t) => t.kind === "reply" && t.latency?.handoff));
  const pick = (f: (h: NonNullable<NonNullable<(typeof replies)[0]["latency"]>["handoff"]>) => number | null) =>
    replies.map((t) => f(t.latency!.handoff!)).filter((v): v is number => v !== null);
  const summary = {
    machine: machine(),
    calls: CALLS,
    replies: replies.length,
    preemptive: records.reduce((a, r) => a + r.preemptiveReplies, 0),
    sttToAgentMs: stats(pick((h) => h.sttToAgentMs)),
    agentToTtsMs: stats(pick((h) => h.agentToTtsMs)),
    ttsToFrameMs: stats(pick((h) => h.ttsToFrameMs)),
    vadEndToFirstFrameMs: stats(replies.map((t) => t.latency!.totalMs).filter((v): v is number => v !== null)),
  };
  mkdirSync("bench/out", { recursive: true });
  writeFileSync("bench/out/handoff.json", JSON.stringify(summary, null, 2));
  const f = (x: number) => x.toFixed(2);
  const row = (name: string, s: ReturnType<typeof stats>, target: string) => `| ${name} | ${s.n} | ${f(s.p50)} | ${f(s.p95)} | ${f(s.max)} | ${target} |`;
  console.log(`\nParley's own latency at each hand-off (${summary.machine.cpu}, ${summary.machine.cores} cores, Node ${process.version}); ${summary.preemptive}/${summary.replies} replies preemptive\n`);
  console.log("| hand-off (ms) | n | p50 | p95 | max | target |\n|---|---|---|---|---|---|");
  console.log(row("STT final -> agent request", summary.sttToAgentMs, "p50 < 10"));
  console.log(row("agent first token -> TTS text", summary.agentToTtsMs, "p50 < 10"));
  console.log(row("first TTS byte -> first frame out", summary.ttsToFrameMs, "p50 < 10"));
  console.log(row("VAD end of speech -> first frame out (instant providers)", summary.vadEndToFirstFrameMs, ""));
  console.log("\nwritten: bench/out/handoff.json");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
