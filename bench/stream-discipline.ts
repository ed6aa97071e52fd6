/**
 * How fast Parley lets go of sockets and streams that hold it without working, with the default settings:
 *   - 200 idle sockets (upgraded, never a `start`; from 10 loopback addresses, 20 each, under the per-address cap):
 *     upgrade -> closed by Parley (STREAM_START_TIMEOUT_MS, 5 s);
 *   - 200 idle sockets from one address: how many the per-address cap admits at once (MAX_PENDING_STREAMS_PER_CLIENT);
 *   - live calls whose media stops with the socket left open: last media sent -> socket closed (MEDIA_TIMEOUT_MS, 3 s);
 *   - live calls that never echo a mark: first mark received -> socket closed (lead + MARK_GRACE_MS, 3 s).
 * Parley runs as its own process (`npm start`), with the instant null providers.
 *   npm run bench:streams -- [--calls 20]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import WebSocket from "ws";
import { TwilioCall } from "../test/helpers/twilio-client.ts";
import { machine, startParley, stats } from "./parley-process.ts";
import { parseCli } from "./cli.ts";

const { check } = parseCli(
  "bench:streams",
  `Usage: npm run bench:streams -- [--calls N] [--help]

How fast idle stream sockets are closed, and how fast the media and mark watchdogs find a lost stream.`,
  { calls: { type: "string", default: "20" } },
);
const CALLS = check.int("calls", 1);

/** Open a socket; resolves with its upgrade status (101 or the refusal) and when it closed, relative to `t0`. */
function idleSocket(url: string, localAddress: string): Promise<{ status: number; openedAt: number; closed: Promise<{ at: number; code: number }> }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { localAddress });
    ws.on("error", () => {});
    const closed = new Promise<{ at: number; code: number }>((r) => ws.once("close", (code) => r({ at: performance.now(), code })));
    ws.once("unexpected-response", (_req, res) => resolve({ status: res.statusCode ?? 0, openedAt: performance.now(), closed }));
    ws.once("open", () => resolve({ status: 101, openedAt: performance.now(), closed }));
  });
}

async function main() {
  const parley = await startParley({ STT_PROVIDER: "null", TTS_PROVIDER: "null", GREETING: "Hello there, this is a benchmark of the watchdogs." });
  const wsUrl = parley.url.replace("http", "ws") + "/voice/stream";
  try {
    // 1. 200 idle sockets from 10 addresses.
    const t0 = performance.now();
    const idle = await Promise.all(Array.from({ length: 200 }, (_, i) => idleSocket(wsUrl, `127.0.0.${2 + (i % 10)}`)));
    const upgradedIn = performance.now() - t0;
    const closes = await Promise.all(idle.map(async (s) => ({ ...(await s.closed), openedAt: s.openedAt })));
    const allClosedIn = Math.max(...closes.map((c) => c.at)) - t0;
    const openToClose = closes.map((c) => c.at - c.openedAt);
    const codes = [...new Set(closes.map((c) => c.code))];

    // 2. 200 from one address.
    const one = await Promise.all(Array.from({ length: 200 }, () => idleSocket(wsUrl, "127.0.0.20")));
    const admitted = one.filter((s) => s.status === 101).length;
    const refused = one.filter((s) => s.status === 429).length;
    await Promise.all(one.filter((s) => s.status === 101).map((s) => s.closed));

    // 3. Media stops, socket open.
    const media: number[] = [];
    const calls = Array.from({ length: CALLS }, () => new TwilioCall({ baseUrl: parley.url }));
    for (const c of calls) await c.connect();
    await new Promise((r) => setTimeout(r, 1000));
    await Promise.all(
      calls.map(async (c) => {
        const last = c.stopMedia();
        await c.closed;
        media.push(c.now() - last);
      }),
    );

    // 4. Marks never echoed.
    const mark: number[] = [];
    const silent = Array.from({ length: CALLS }, () => new TwilioCall({ baseUrl: parley.url, echoMarks: false }));
    for (const c of silent) await c.connect();
    await Promise.all(
      silent.map(async (c) => {
        await c.closed;
        const first = c.eventsOf("mark-sent")[0];
        if (first) mark.push(c.events.find((e) => e.type === "closed")!.at - first.at);
      }),
    );

    const summary = {
      machine: machine(),
      idle: { sockets: 200, addresses: 10, upgradedInMs: upgradedIn, allClosedInMs: allClosedIn, upgradeToCloseMs: stats(openToClose), closeCodes: codes },
      oneAddress: { tried: 200, admitted, refused429: refused },
      mediaWatchdogMs: stats(media),
      markWatchdogMs: stats(mark),
    };
    mkdirSync("bench/out", { recursive: true });
    writeFileSync("bench/out/stream-discipline.json", JSON.stringify(summary, null, 2));
    const r = (x: number) => Math.round(x);
    const row = (name: string, s: ReturnType<typeof stats>) => `| ${name} | ${s.n} | ${r(s.p50)} | ${r(s.p95)} | ${r(s.max)} |`;
    console.log(`\nStream discipline, default settings (${summary.machine.cpu}, ${summary.machine.cores} cores, Node ${process.version})\n`);
    console.log(`200 idle sockets (10 addresses): upgraded in ${r(upgradedIn)} ms, all closed ${r(allClosedIn)} ms after the first upgrade began, close codes ${codes.join(", ")}`);
    console.log(`200 idle sockets from one address: ${admitted} admitted, ${refused} refused with 429\n`);
    console.log("| measure (ms) | n | p50 | p95 | max |\n|---|---|---|---|---|");
    console.log(row("idle socket: upgrade -> closed (STREAM_START_TIMEOUT_MS=5000)", summary.idle.upgradeToCloseMs));
    console.log(row("media stops, socket open: last media -> closed (MEDIA_TIMEOUT_MS=3000)", summary.mediaWatchdogMs));
    console.log(row("marks never echoed: first mark -> closed (MARK_GRACE_MS=3000)", summary.markWatchdogMs));
    console.log("\nwritten: bench/out/stream-discipline.json");
  } finally {
    parley.child.kill();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
