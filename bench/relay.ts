/**
 * Parley's own hand-off in the ConversationRelay path, against the reference app on loopback (same process, so the
 * app's send time and Parley's receive time are read from one clock):
 *   - in a turn:      app sends a `text` token that completes a clause -> the token leaves `respond()`
 *   - out of a turn:  app sends a `text` token that completes a clause -> `host.say(clause)`
 * Each token is a whole clause ("…, "), as an LLM's clause-ending token is. Tokens are paced (`--gap`, like a model's
 * stream) so the figure is the hand-off, not a queue of tokens sent at once.
 *   npm run bench:relay -- [--turns 200] [--tokens 20] [--gap 5]
 * The whole hand-off inside real calls (clause token -> clause at the TTS, first TTS byte -> first frame) is
 * `npm run bench:handoff -- --agent relay` (bench/handoff-relay.ts).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { RelayResponder } from "../src/responders/relay/relay-responder.ts";
import { RelayApp } from "../test/helpers/relay-app.ts";
import { RecordingHost } from "../test/helpers/relay-host.ts";
import { machine, stats } from "./parley-process.ts";
import { parseCli } from "./cli.ts";

const { values, check } = parseCli(
  "bench:relay",
  `Usage: npm run bench:relay -- [--turns N] [--tokens N] [--gap MS] [--help]

The relay responder's own hand-off: from a ConversationRelay app's text token to it leaving respond(), against the
reference app on loopback.`,
  { turns: { type: "string", default: "200" }, tokens: { type: "string", default: "20" }, gap: { type: "string", default: "5" } },
);
const TURNS = check.int("turns", 1);
const TOKENS = check.int("tokens", 1);
check.positive("gap", true);
const WARMUP = 5;

async function main() {
  const sentAt = new Map<string, number>();
  let turnNo = 0;
  const clause = (t: number, i: number) => `clause ${i} of reply ${t}, `;
  const app = await RelayApp.start({
    authToken: "bench-token",
    tokenGapMs: Number(values.gap),
    reply: () => Array.from({ length: TOKENS }, (_, i) => clause(turnNo, i)),
    onTokenSent: (token) => sentAt.set(token.trim(), performance.now()),
  });
  const host = new RecordingHost();
  const sayAt = new Map<string, number>();
  const hostSay = host.say.bind(host);
  host.say = (text, opts) => {
    sayAt.set(text.trim(), performance.now());
    hostSay(text, opts);
  };
  const responder = new RelayResponder({ url: app.url, authToken: "bench-token" });
  await responder.open(host);

  const inTurn: number[] = [];
  for (turnNo = 0; turnNo < TURNS + WARMUP; turnNo++) {
    process.stderr.write(`\rturn ${turnNo + 1}/${TURNS + WARMUP} …`);
    for await (const item of responder.respond({ turnId: turnNo, userText: "go on", history: [], signal: new AbortController().signal })) {
      const at = performance.now();
      if (typeof item === "string" && turnNo >= WARMUP) inTurn.push(at - sentAt.get(item.trim())!);
    }
  }
  const outOfTurn: number[] = [];
  for (let c = 0; c < TURNS / 4 + WARMUP; c++) {
    const tokens = Array.from({ length: TOKENS }, (_, i) => clause(100_000 + c, i));
    const before = host.says.length;
    await app.session.say(tokens);
    await host.waitFor(() => host.says.length === before + TOKENS, "clauses said");
    if (c >= WARMUP) for (const t of tokens) outOfTurn.push(sayAt.get(t.trim())! - sentAt.get(t.trim())!);
  }
  process.stderr.write("\n");
  responder.close("bench over");
  await app.close();

  const summary = {
    machine: machine(),
    turns: TURNS,
    tokensPerTurn: TOKENS,
    gapMs: Number(values.gap),
    tokenToRespondMs: stats(inTurn),
    tokenToHostSayMs: stats(outOfTurn),
  };
  mkdirSync("bench/out", { recursive: true });
  writeFileSync("bench/out/relay.json", JSON.stringify(summary, null, 2));
  const f = (x: number) => x.toFixed(3);
  const row = (name: string, s: ReturnType<typeof stats>) => `| ${name} | ${s.n} | ${f(s.p50)} | ${f(s.p95)} | ${f(s.p99)} | ${f(s.max)} |`;
  console.log(`\nRelay hand-off (${summary.machine.cpu}, ${summary.machine.cores} cores, Node ${process.version}), loopback, token gap ${summary.gapMs} ms\n`);
  console.log("| hand-off (ms) | n | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|");
  console.log(row("app text token -> out of respond()", summary.tokenToRespondMs));
  console.log(row("app text token -> host.say (outside a turn)", summary.tokenToHostSayMs));
  console.log("\nwritten: bench/out/relay.json");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
