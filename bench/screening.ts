/**
 * Screening outbound calls for who answered, timed against the Twilio stand-in: every answer in the test set (people's
 * short hellos, voicemail greetings with beeps of five pitches, a fax) is played by the callee's side on its own clock,
 * and Parley (its own process, `npm start`) must decide who answered and act. Reports the confusion table and:
 *   - a person: the end of their hello (by energy) -> the greeting's first frame at the callee (target <= 400 ms);
 *   - a machine: the end of the beep -> the voicemail message's first frame at the callee (target <= 500 ms).
 *
 *   npm run bench:screening -- [--rounds 3]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { answeringSet } from "../test/helpers/answering.ts";
import { TwilioStandIn } from "../test/helpers/twilio-standin.ts";
import { parseCli } from "./cli.ts";
import { machine, startParley, stats } from "./parley-process.ts";
import { quantileRow } from "./table.ts";

const USAGE = `
npm run bench:screening -- [options]   who answered an outbound call, and how soon Parley acted on it

  --rounds N     times the whole answer set is played (all answers of a round at once; default 3)
  -h, --help     this text
`;
const { check } = parseCli("bench:screening", USAGE, { rounds: { type: "string", default: "3" } });
const ROUNDS = check.int("rounds", 1);
const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
const AUTH = "bench-auth-token";
const API_TOKEN = "bench-api-token-0123456789abcdef";
const MESSAGE = "Hi, this is Parley calling about your appointment tomorrow. Please call us back.";

interface Result {
  name: string;
  truth: string;
  decided: string;
  /** Cue end -> Parley's first frame at the callee, ms (null: nothing was played). */
  afterCueMs: number | null;
}

async function main() {
  const set = await answeringSet();
  const standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH, ringMs: 200 });
  const parley = await startParley({ TWILIO_ACCOUNT_SID: ACCOUNT, TWILIO_AUTH_TOKEN: AUTH, TWILIO_API_URL: standIn.url, TWILIO_FROM_NUMBER: "+15550100001", API_TOKEN });
  const api = async (p: string, body?: unknown) => {
    const res = await fetch(`${parley.url}${p}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${API_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return (await res.json()) as any;
  };
  const results: Result[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      process.stderr.write(`\rround ${round}/${ROUNDS}: ${set.length} calls at once …`);
      const done = set.map(async (a, i) => {
        const placed = await api("/api/calls", { to: `+1555010${String(1000 + i)}`, message: "Hello, this is Parley from the dental office.", voicemail: "leave", voicemailMessage: MESSAGE });
        const call = standIn.call(placed.callSid);
        const stream = await call.waitForStream(1);
        const { startsAt } = stream.say(a.audio.mulaw);
        const cueAt = startsAt + a.audio.cueEndMs;
        // A person has heard the greeting once it has played a second; a machine's call ends by itself.
        if (a.truth === "human") await stream.waitFor(() => stream.frames.length >= 50, 20_000, "the greeting");
        else await Promise.race([call.ended, new Promise((r) => setTimeout(r, 40_000))]);
        const rec = await api(`/api/calls/${placed.callSid}`);
        if (rec.live) await api(`/api/calls/${placed.callSid}/hangup`, {});
        results.push({ name: a.name, truth: a.truth, decided: rec.answeredBy ?? "none", afterCueMs: stream.frames[0] ? stream.frames[0].at - cueAt : null });
      });
      await Promise.all(done);
    }
  } finally {
    process.stderr.write("\n");
    parley.child.kill();
    await standIn.close();
  }

  const classes = ["human", "machine", "fax"];
  const table = [`| answered by \\ decided | ${[...classes, "unknown"].join(" | ")} |`, `|---|${[...classes, "unknown"].map(() => "---:").join("|")}|`];
  for (const t of classes) table.push(`| ${t} | ${[...classes, "unknown"].map((d) => results.filter((r) => r.truth === t && r.decided === d).length).join(" | ")} |`);
  const human = stats(results.filter((r) => r.truth === "human" && r.afterCueMs !== null).map((r) => r.afterCueMs!));
  const machineMs = stats(results.filter((r) => r.truth === "machine" && r.afterCueMs !== null).map((r) => r.afterCueMs!));
  const correct = results.filter((r) => r.truth === r.decided).length;
  const out = [
    `screening: ${results.length} calls (${ROUNDS} rounds of ${set.length} answers, each round's calls at once), ${correct} classified right`,
    "",
    ...table,
    "",
    "| measure (ms) | p50 | p95 | p99 | max |",
    "|---|---|---|---|---|",
    quantileRow("person: end of hello -> greeting's first frame (target <= 400)", human),
    quantileRow("machine: end of beep -> message's first frame (target <= 500)", machineMs),
    "",
    `fax calls with any audio from Parley: ${results.filter((r) => r.truth === "fax" && r.afterCueMs !== null).length}`,
    ...results.filter((r) => r.truth !== r.decided).map((r) => `misclassified: ${r.name} as ${r.decided}`),
  ].join("\n");
  console.log(out);
  mkdirSync("bench/out", { recursive: true });
  writeFileSync("bench/out/screening.json", JSON.stringify({ machine: machine(), rounds: ROUNDS, results, human, machineMs }, null, 2));
  console.log("written: bench/out/screening.json");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
