/**
 * Control-plane timing with a local Twilio stand-in (REST API, status callbacks, Media Streams, <Connect action>):
 *   - outbound: callee answers -> first frame of the message reaches the callee's side (includes the stream's
 *     WebSocket setup, as with Twilio), and `start` -> first frame;
 *   - resume: the socket drops mid-greeting -> first frame on the new stream (Twilio's action request, new TwiML,
 *     new WebSocket, greeting replayed).
 * Parley runs as its own process (`npm start`).   npm run bench:telephony -- [--calls 5]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { TwilioStandIn } from "../test/helpers/twilio-standin.ts";
import { parseCli } from "./cli.ts";
import { machine, startParley, stats } from "./parley-process.ts";
import { num } from "./table.ts";

const USAGE = `
npm run bench:telephony -- [options]   control-plane timing against a local Twilio stand-in

  --calls N      outbound + resumed inbound calls, one after another (default 5)
  -h, --help     this text
`;
const { check } = parseCli("bench:telephony", USAGE, { calls: { type: "string", default: "5" } });
const CALLS = check.int("calls", 1);
const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
const AUTH = "bench-auth-token";
const API_TOKEN = "bench-api-token-0123456789abcdef";

async function main() {
  const standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH, ringMs: 200 });
  const parley = await startParley({ TWILIO_ACCOUNT_SID: ACCOUNT, TWILIO_AUTH_TOKEN: AUTH, TWILIO_API_URL: standIn.url, TWILIO_FROM_NUMBER: "+15550100001", API_TOKEN });
  const answerToFirst: number[] = [];
  const startToFirst: number[] = [];
  const resume: number[] = [];
  try {
    for (let i = 0; i < CALLS; i++) {
      process.stderr.write(`\rcall ${i + 1}/${CALLS} …`);
      const res = await fetch(`${parley.url}/api/calls`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${API_TOKEN}` },
        body: JSON.stringify({ to: "+15550100002", mode: "notify", message: `This is notification number ${i + 1}.` }),
      });
      const call = standIn.call(((await res.json()) as { callSid: string }).callSid);
      const s = await call.waitForStream(1);
      await s.waitFor(() => s.frames.length > 0, 10_000, "first frame");
      answerToFirst.push(s.frames[0]!.at - call.answeredAt!);
      startToFirst.push(s.frames[0]!.at - s.startSentAt);
      await call.ended;

      const inbound = await standIn.inbound({ webhookUrl: `${parley.url}/voice/webhook`, from: "+15550100003", to: "+15550100001" });
      const s1 = await inbound.waitForStream(1);
      await s1.waitFor(() => s1.frames.length >= 10, 10_000, "greeting playing");
      const droppedAt = performance.timeOrigin + performance.now();
      inbound.drop();
      const s2 = await inbound.waitForStream(2, 15_000);
      await s2.waitFor(() => s2.frames.length > 0, 10_000, "greeting on the new stream");
      resume.push(s2.frames[0]!.at - droppedAt);
      await inbound.callerHangsUp();
    }
    process.stderr.write("\n");
  } finally {
    parley.child.kill("SIGTERM");
    await standIn.close();
  }
  const summary = { machine: machine(), calls: CALLS, answerToFirstFrameMs: stats(answerToFirst), startToFirstFrameMs: stats(startToFirst), resumeToFirstFrameMs: stats(resume) };
  mkdirSync("bench/out", { recursive: true });
  writeFileSync("bench/out/telephony.json", JSON.stringify(summary, null, 2));
  const row = (name: string, s: ReturnType<typeof stats>) => `| ${name} | ${s.n} | ${num(s.p50)} | ${num(s.p95)} | ${num(s.max)} |`;
  console.log(`\nParley control plane (${summary.machine.cpu}, ${summary.machine.cores} cores, Node ${process.version})\n`);
  console.log("| measure (ms) | n | p50 | p95 | max |\n|---|---|---|---|---|");
  console.log(row("outbound: answer -> first frame of the message", summary.answerToFirstFrameMs));
  console.log(row("outbound: stream `start` -> first frame", summary.startToFirstFrameMs));
  console.log(row("dropped socket -> first frame on the resumed stream", summary.resumeToFirstFrameMs));
  console.log("\nwritten: bench/out/telephony.json");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
