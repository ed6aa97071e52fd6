/**
 * `npm run bench:handoff -- --agent relay`: Parley's whole ConversationRelay hand-off inside real calls. Parley runs as
 * its own process (`npm start`), with the Deepgram and ElevenLabs stand-ins, and every call's agent is the reference
 * relay app (test/helpers/relay-app.ts, `AGENT_RELAY_URL`). Per reply:
 *   - clause token -> TTS text: the app sends the token that completes its first clause (found with Parley's own
 *     clause rule) -> the ElevenLabs stand-in receives that clause. The app and the stand-in live in this process, so
 *     both times are read from one clock; the figure includes two loopback socket hops (app -> Parley -> stand-in), so
 *     it is an upper bound of Parley's own time. Every later clause of the reply is measured the same way.
 *   - first TTS byte -> first frame: from the call record (both ends in Parley's clock), as for the cascade.
 * Each reply is 3 clauses of LLM-like word tokens, `--gap` ms apart (a model's stream); the first two are closed by a
 * token, the third by `last: true`, so two clause figures per reply. (The record's "agent first text -> TTS text" is
 * not used here: for word tokens it is mostly the wait for the clause's remaining words.)
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { ClauseChunker } from "../src/providers/agent/clauses.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "../test/helpers/audio.ts";
import { DeepgramMock } from "../test/helpers/deepgram-mock.ts";
import { ElevenLabsMock } from "../test/helpers/elevenlabs-mock.ts";
import { RelayApp } from "../test/helpers/relay-app.ts";
import { finishedUtterances, TwilioCall } from "../test/helpers/twilio-client.ts";
import { machine, startParley, stats } from "./parley-process.ts";

const QUESTIONS = [
  { clip: "whats-the-weather-like", text: "what's the weather like" },
  { clip: "austen-0880", text: "he was not an ill disposed young man" },
  { clip: "new-home-in-the-stars", text: "we must find a new home in the stars" },
] as const;

/** One reply: word tokens with leading spaces, as a model streams them; three clauses. */
const REPLY = "The weather today is mild, with a light breeze from the west, and no rain is expected tonight.";
const TOKENS = REPLY.split(/(?= )/);

/** Index of the token that completes each clause, and the clause text Parley will send to the TTS. */
function clauseEnds(tokens: string[]): Array<{ token: number; clause: string }> {
  const chunker = new ClauseChunker();
  const out: Array<{ token: number; clause: string }> = [];
  tokens.forEach((t, i) => {
    for (const clause of chunker.push(t)) out.push({ token: i, clause });
  });
  return out; // the last clause is closed by `last: true` (a flush), not by a token: not counted
}

export async function runRelayHandoff(opts: { calls: number; turns: number; gapMs: number }): Promise<void> {
  const ends = clauseEnds(TOKENS);
  const deepgram = await DeepgramMock.start({ apiKey: "dg", endpointOnSilence: true });
  const elevenlabs = await ElevenLabsMock.start({ apiKey: "el" });
  /** Per reply, when each of its tokens left the app. */
  const replies: number[][] = [];
  const app = await RelayApp.start({
    tokenGapMs: opts.gapMs,
    greeting: ["Hello, ", "how can I help you today?"],
    reply: () => (replies.push([]), TOKENS),
    onTokenSent: () => replies.at(-1)?.push(performance.now()),
  });
  const parley = await startParley({
    DATA_DIR: mkdtempSync(path.join(tmpdir(), "parley-handoff-relay-")),
    GREETING: "",
    AGENT_RELAY_URL: app.url,
    DEEPGRAM_API_KEY: "dg",
    DEEPGRAM_URL: deepgram.url,
    ELEVENLABS_API_KEY: "el",
    ELEVENLABS_URL: elevenlabs.url,
  });
  const clips = await Promise.all(QUESTIONS.map((q) => clipMulaw(q.clip)));
  const records: CallRecord[] = [];
  const load = loadavg();
  try {
    for (let i = 0; i < opts.calls; i++) {
      process.stderr.write(`\rcall ${i + 1}/${opts.calls} …`);
      deepgram.script = Array.from({ length: opts.turns }, (_, q) => QUESTIONS[q % QUESTIONS.length]!.text);
      deepgram.line = 0;
      deepgram.wordsFinalized = 0;
      const call = new TwilioCall({ baseUrl: parley.url });
      await call.connect();
      await call.waitFor(() => finishedUtterances(call) >= 2, 15_000, "the app's greeting"); // two clauses
      for (let q = 0; q < opts.turns; q++) {
        const heard = finishedUtterances(call);
        call.say(clips[q % clips.length]!);
        call.silence(1500);
        await call.waitFor(() => finishedUtterances(call) > heard, 20_000, `reply ${q + 1}`);
      }
      await call.hangUp();
      await new Promise((r) => setTimeout(r, 100));
      records.push((await (await fetch(`${parley.url}/api/calls/${call.callSid}`)).json()) as CallRecord);
    }
    process.stderr.write("\n");
  } finally {
    parley.child.kill("SIGTERM");
    await Promise.all([deepgram.close(), elevenlabs.close(), app.close()]);
  }

  // Every text message the TTS stand-in received, in arrival order.
  const ttsTexts = elevenlabs.connections
    .flatMap((c) => c.messages)
    .filter((m) => typeof m.json?.text === "string" && String(m.json.text).trim())
    .map((m) => ({ at: m.at, text: String(m.json!.text).trim() }))
    .sort((a, b) => a.at - b.at);
  const firstClause: number[] = [];
  const laterClauses: number[] = [];
  let missing = 0;
  for (const sent of replies) {
    ends.forEach((e, k) => {
      const at = sent[e.token];
      const got = at === undefined ? undefined : ttsTexts.find((m) => m.at >= at && m.text === e.clause);
      if (at === undefined || !got) return void missing++;
      (k === 0 ? firstClause : laterClauses).push(got.at - at);
    });
  }
  const replyTurns = records.flatMap((r) => r.turns.filter((t) => t.kind === "reply" && t.latency));
  const num = (xs: Array<number | null | undefined>) => xs.filter((v): v is number => typeof v === "number");
  const summary = {
    machine: machine(),
    loadAverage: load.map((x) => Math.round(x * 100) / 100),
    calls: opts.calls,
    turnsPerCall: opts.turns,
    tokenGapMs: opts.gapMs,
    replies: replies.length,
    clausesNotMatched: missing,
    /** Raw samples (ms), to see how many of a tail there are. */
    samples: { firstClause: firstClause.map((x) => Math.round(x * 100) / 100), laterClauses: laterClauses.map((x) => Math.round(x * 100) / 100) },
    figures: {
      firstClauseTokenToTts: stats(firstClause),
      laterClauseTokenToTts: stats(laterClauses),
      ttsByteToFirstFrame: stats(num(replyTurns.map((t) => t.latency!.handoff?.ttsToFrameMs))),
    },
  };
  mkdirSync("bench/out", { recursive: true });
  writeFileSync("bench/out/handoff-relay.json", JSON.stringify(summary, null, 2));
  const f = (x: number) => (Number.isNaN(x) ? "–" : x.toFixed(2));
  console.log(
    `\nParley's relay hand-off in calls (${summary.machine.cpu}, ${summary.machine.cores} cores, Node ${process.version}; load ${summary.loadAverage.join(" ")}); ` +
      `${summary.replies} replies, ${missing} clauses unmatched\n`,
  );
  console.log("| (ms) | n | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|");
  const rows: Array<[keyof typeof summary.figures, string]> = [
    ["firstClauseTokenToTts", "app's first-clause token -> clause at the TTS (one clock, 2 loopback hops)"],
    ["laterClauseTokenToTts", "app's later-clause token -> clause at the TTS"],
    ["ttsByteToFirstFrame", "first TTS byte -> first frame out (record)"],
  ];
  for (const [k, label] of rows) {
    const s = summary.figures[k];
    console.log(`| ${label} | ${s.n} | ${f(s.p50)} | ${f(s.p95)} | ${f(s.p99)} | ${f(s.max)} |`);
  }
  console.log("\nwritten: bench/out/handoff-relay.json");
}
