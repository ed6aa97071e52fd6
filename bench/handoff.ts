/**
 * Parley's own added latency at each hand-off between stages, over the cloud adapters, with local servers speaking
 * Deepgram's, ElevenLabs' and OpenAI's protocols (instant, so only Parley's time is left):
 *   - STT final -> agent request        (transcript event -> agent turn started)
 *   - agent first token -> TTS text     (first text from the model -> text sent to the TTS)
 *   - first TTS byte -> first frame out (first audio from the TTS -> first media frame sent to Twilio)
 * Read from the per-turn latency in the call records. Parley runs as its own process.
 *
 * Every figure is given for a call's first reply and for its later replies side by side: the first turn is the one
 * that pays for opening provider connections that are not open yet. From the stand-ins' side it also reports, per
 * turn, whether the agent's chat request had to open a new TCP connection, when it arrived after the final transcript
 * (negative: a preemptive reply, started before the turn was confirmed), and whether the turn's TTS context went on
 * a WebSocket opened during the turn.
 *
 * Calls are placed as calls far apart would be (`--between-calls cold`, the default): before each call the stand-ins
 * close the idle connections earlier calls left, as servers do after their keep-alive timeout. The OpenAI stand-in
 * keeps an idle connection 60 s (like a provider's edge, not Node's 5 s default). `--preemptive off` makes the
 * Deepgram stand-in endpoint only on Finalize, so no reply starts before its turn is confirmed and the agent's
 * request follows the final transcript.
 * `--finalize-answer off` makes it answer Finalize only when audio is pending (Deepgram "may" answer, the docs say):
 * with `--preemptive on` the speech is finalized by `speech_final` in the silence before Finalize, so nothing is
 * pending, and an adapter that waits for that answer shows it in "VAD end of speech -> final transcript".
 *   npm run bench:handoff -- [--calls 5] [--between-calls cold|warm] [--preemptive on|off] [--finalize-answer on|off]
 * `--agent relay` measures the ConversationRelay path instead (bench/handoff-relay.ts):
 *   npm run bench:handoff -- --agent relay [--calls 5] [--turns 3] [--gap 20]
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "../test/helpers/audio.ts";
import { DeepgramMock } from "../test/helpers/deepgram-mock.ts";
import { ElevenLabsMock } from "../test/helpers/elevenlabs-mock.ts";
import { OpenAiMock } from "../test/helpers/openai-mock.ts";
import { finishedUtterances, TwilioCall } from "../test/helpers/twilio-client.ts";
import { machine, startParley, stats } from "./parley-process.ts";
import { parseCli } from "./cli.ts";
import { runRelayHandoff } from "./handoff-relay.ts";

const { values, check } = parseCli(
  "bench:handoff",
  `Usage: npm run bench:handoff -- [--calls N] [--between-calls cold|warm] [--preemptive on|off] [--finalize-answer on|off] [--help]
       npm run bench:handoff -- --agent relay [--calls N] [--turns N] [--gap MS]

Parley's own time at each hand-off (STT final -> agent, first token -> TTS, first TTS byte -> first frame), over the
cloud adapters against local protocol stand-ins, for a call's first turn and its later ones. With --agent relay, each
call's brain is the reference ConversationRelay app: the app's clause-completing token -> the clause at the TTS, and
first TTS byte -> first frame, with p50/p95/p99.`,
  {
    agent: { type: "string", default: "llm" },
    turns: { type: "string", default: "3" },
    gap: { type: "string", default: "20" },
    calls: { type: "string", default: "5" }, "between-calls": { type: "string", default: "cold" }, preemptive: { type: "string", default: "on" }, "finalize-answer": { type: "string", default: "on" } },
);
const CALLS = check.int("calls", 1);
const COLD = check.oneOf("between-calls", ["cold", "warm"] as const) === "cold";
const PREEMPTIVE = check.oneOf("preemptive", ["on", "off"] as const) === "on";
const FINALIZE_ANSWER = check.oneOf("finalize-answer", ["on", "off"] as const) === "on";
const RELAY = check.oneOf("agent", ["llm", "relay"] as const) === "relay";
const TURNS = check.int("turns", 1);
check.positive("gap", true);
const QUESTIONS = [
  { clip: "whats-the-weather-like", text: "what's the weather like" },
  { clip: "austen-0880", text: "he was not an ill disposed young man" },
  { clip: "new-home-in-the-stars", text: "we must find a new home in the stars" },
] as const;

async function main() {
  const deepgram = await DeepgramMock.start({ apiKey: "dg", endpointOnSilence: PREEMPTIVE, answerEmptyFinalize: FINALIZE_ANSWER });
  const elevenlabs = await ElevenLabsMock.start({ apiKey: "el" });
  const openai = await OpenAiMock.start({ apiKey: "oa", keepAliveTimeoutMs: 60_000 });
  openai.reply((req) => ({ text: `You said ${String(req.messages.at(-1)!.content)}. Thanks for telling me.` }));
  const dataDir = mkdtempSync(path.join(tmpdir(), "parley-handoff-"));
  const parley = await startParley({
    DATA_DIR: dataDir,
    DEEPGRAM_API_KEY: "dg",
    DEEPGRAM_URL: deepgram.url,
    ELEVENLABS_API_KEY: "el",
    ELEVENLABS_URL: elevenlabs.url,
    OPENAI_API_KEY: "oa",
    OPENAI_BASE_URL: openai.url,
  });
  const clips = await Promise.all(QUESTIONS.map((q) => clipMulaw(q.clip)));
  const records: CallRecord[] = [];
  const callWindows: Array<{ from: number; to: number }> = [];
  const epoch = () => performance.timeOrigin + performance.now();
  try {
    for (let i = 0; i < CALLS; i++) {
      process.stderr.write(`\rcall ${i + 1}/${CALLS} …`);
      deepgram.script = QUESTIONS.map((q) => q.text);
      deepgram.line = 0;
      deepgram.wordsFinalized = 0;
      if (COLD) {
        openai.dropIdleConnections();
        await elevenlabs.closeSockets();
        await new Promise((r) => setTimeout(r, 300)); // Parley has seen the closes, as it would between calls far apart
      }
      const call = new TwilioCall({ baseUrl: parley.url });
      const from = epoch();
      await call.connect();
      await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
      for (let q = 0; q < clips.length; q++) {
        call.say(clips[q]!);
        call.silence(1500);
        await call.waitFor(() => finishedUtterances(call) >= q + 2, 20_000, `reply ${q + 1}`);
      }
      await call.hangUp();
      await new Promise((r) => setTimeout(r, 100));
      callWindows.push({ from, to: epoch() });
      records.push((await (await fetch(`${parley.url}/api/calls/${call.callSid}`)).json()) as CallRecord);
    }
    process.stderr.write("\n");
  } finally {
    parley.child.kill("SIGTERM");
    await Promise.all([deepgram.close(), elevenlabs.close(), openai.close()]);
  }
  const turns = records.flatMap((r, c) => turnsOf(r, readEvents(dataDir, r.callSid), callWindows[c]!, openai, elevenlabs));
  const first = turns.filter((t) => t.index === 1);
  const later = turns.filter((t) => t.index > 1);
  const figure = (name: keyof TurnFigures) => ({
    first: stats(first.map((t) => t[name]).filter((v): v is number => v !== null)),
    later: stats(later.map((t) => t[name]).filter((v): v is number => v !== null)),
  });
  const share = (xs: TurnRow[], f: (t: TurnRow) => boolean | null) => `${xs.filter((t) => f(t) === true).length}/${xs.filter((t) => f(t) !== null).length}`;
  const summary = {
    machine: machine(),
    calls: CALLS,
    betweenCalls: COLD ? "cold" : "warm",
    preemptive: PREEMPTIVE ? "on" : "off",
    finalizeAnswer: FINALIZE_ANSWER ? "always" : "only when audio is pending",
    replies: turns.length,
    preemptiveReplies: records.reduce((a, r) => a + r.preemptiveReplies, 0),
    figures: Object.fromEntries(FIGURES.map(([k]) => [k, figure(k)])),
    newLlmConnection: { first: share(first, (t) => t.llmNewConnection), later: share(later, (t) => t.llmNewConnection) },
    newTtsConnection: { first: share(first, (t) => t.ttsNewConnection), later: share(later, (t) => t.ttsNewConnection) },
    llmConnections: openai.connections,
    ttsHandshakes: elevenlabs.connections.length,
    sttHandshakes: deepgram.connections.length,
    turns,
  };
  mkdirSync("bench/out", { recursive: true });
  writeFileSync("bench/out/handoff.json", JSON.stringify(summary, null, 2));
  const f = (x: number) => (Number.isNaN(x) ? "–" : x.toFixed(2));
  console.log(`\nParley's own latency at each hand-off (${summary.machine.cpu}, ${summary.machine.cores} cores, Node ${process.version}); ${summary.preemptiveReplies}/${summary.replies} replies preemptive; calls ${summary.betweenCalls} between calls; Finalize answered ${summary.finalizeAnswer}\n`);
  console.log("| (ms) | turn 1: n | p50 | max | turns 2+: n | p50 | max |\n|---|---|---|---|---|---|---|");
  for (const [k, label] of FIGURES) {
    const { first: a, later: b } = summary.figures[k]!;
    console.log(`| ${label} | ${a.n} | ${f(a.p50)} | ${f(a.max)} | ${b.n} | ${f(b.p50)} | ${f(b.max)} |`);
  }
  console.log(`\nchat request on a new TCP connection: turn 1 ${summary.newLlmConnection.first}, turns 2+ ${summary.newLlmConnection.later} (${summary.llmConnections} connections in all)`);
  console.log(`TTS context on a WebSocket opened during the turn: turn 1 ${summary.newTtsConnection.first}, turns 2+ ${summary.newTtsConnection.later} (${summary.ttsHandshakes} handshakes in all)`);
  console.log(`Deepgram handshakes: ${summary.sttHandshakes} for ${CALLS} calls`);
  console.log("\nwritten: bench/out/handoff.json");
}

interface TurnFigures {
  sttToAgentMs: number | null;
  agentToTtsMs: number | null;
  ttsToFrameMs: number | null;
  transcriptToRequestArrivalMs: number | null;
  sttMs: number | null;
  agentMs: number | null;
  ttsMs: number | null;
  totalMs: number | null;
}

interface TurnRow extends TurnFigures {
  callSid: string;
  /** 1 = the call's first reply. */
  index: number;
  llmNewConnection: boolean | null;
  ttsNewConnection: boolean | null;
}

const FIGURES: Array<[keyof TurnFigures, string]> = [
  ["sttToAgentMs", "STT final -> agent request (Parley)"],
  ["transcriptToRequestArrivalMs", "STT final -> chat request at the LLM server"],
  ["agentToTtsMs", "agent first token -> TTS text"],
  ["ttsToFrameMs", "first TTS byte -> first frame out"],
  ["sttMs", "VAD end of speech -> final transcript"],
  ["agentMs", "final transcript -> agent's first text"],
  ["ttsMs", "agent's first text -> first TTS audio"],
  ["totalMs", "VAD end of speech -> first frame out"],
];

interface JournalEvent {
  t: number;
  type: string;
  [k: string]: unknown;
}

function readEvents(dataDir: string, callSid: string): JournalEvent[] {
  const text = readFileSync(path.join(dataDir, "calls", `${callSid}.jsonl`), "utf8");
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as JournalEvent);
}

/** Each reply of a call with its latency, and what the stand-ins saw of it (matched by the caller's words and time). */
function turnsOf(record: CallRecord, events: JournalEvent[], window: { from: number; to: number }, openai: OpenAiMock, elevenlabs: ElevenLabsMock): TurnRow[] {
  const epochOf = (perf: number) => performance.timeOrigin + perf;
  const transcripts = events.filter((e) => e.type === "transcript" && typeof e.text === "string" && e.text.trim());
  const speechEnds = events.filter((e) => e.type === "speech.ended");
  const chats = openai.arrivals.filter((a) => a.method === "POST" && a.at >= window.from && a.at <= window.to);
  // Each TTS context: when its first message arrived, and when its socket had opened.
  const contexts = elevenlabs.connections.flatMap((c) =>
    c.contexts.map((id) => {
      const firstAt = c.messages.find((m) => m.json && (m.json.context_id === id || m.json.contextId === id))?.at ?? NaN;
      return { firstAt: epochOf(firstAt), openedAt: epochOf(c.openedAt) };
    }),
  );
  const replies = record.turns.filter((t) => t.kind === "reply" && t.latency);
  return replies.map((turn, i) => {
    const l = turn.latency!;
    const tr = transcripts[i];
    const ended = speechEnds[i];
    const req = tr ? chats.find((a) => a.lastMessage === String(tr.text).trim()) : undefined;
    const ctx = ended ? contexts.filter((c) => c.firstAt >= ended.t && c.firstAt <= window.to).sort((a, b) => a.firstAt - b.firstAt)[0] : undefined;
    return {
      callSid: record.callSid,
      index: i + 1,
      sttToAgentMs: l.handoff?.sttToAgentMs ?? null,
      agentToTtsMs: l.handoff?.agentToTtsMs ?? null,
      ttsToFrameMs: l.handoff?.ttsToFrameMs ?? null,
      transcriptToRequestArrivalMs: req && tr ? Math.round((req.at - tr.t) * 100) / 100 : null,
      sttMs: l.sttMs,
      agentMs: l.agentMs,
      ttsMs: l.ttsMs,
      totalMs: l.totalMs,
      llmNewConnection: req ? req.firstOnConnection : null,
      ttsNewConnection: ctx && ended ? ctx.openedAt >= ended.t : null,
    };
  });
}

(RELAY ? runRelayHandoff({ calls: CALLS, turns: TURNS, gapMs: Number(values.gap) }) : main()).catch((err) => {
  console.error(err);
  process.exit(1);
});
