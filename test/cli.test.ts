/**
 * The `parley` CLI, run as a real child process against a fake control API that speaks the documented contract:
 * JSON routes under /api/calls, `{ error }` bodies on failure, a bearer token, and an SSE event stream.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";

const BIN = fileURLToPath(new URL("../bin/parley.js", import.meta.url));
const TOKEN = "s3cret";
const T0 = Date.UTC(2025, 0, 31, 9, 0, 0);

interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  body: string;
}

let server: Server;
let base: string;
let seen: Seen[] = [];

/** The event stream of CA1, cut into small byte chunks so lines (and one UTF-8 character) split across reads. */
const EVENTS = [
  { t: T0, type: "state", value: { active: "greeting" } },
  { t: T0 + 1500, type: "transcript", text: "is the café open" },
  { t: T0 + 2250, type: "turn", turn: { turnId: 2, role: "assistant", text: "You said: is the café open", interrupted: true, heardText: "You said", latency: { totalMs: 743.4 } } },
  { t: T0 + 2600, type: "barge-in", heardText: "You said", turnId: 2 },
  { t: T0 + 2700, type: "state", value: { active: { replying: "speaking" } } },
  { t: T0 + 2800, type: "mark", name: "m-7" },
];
const SSE = Buffer.from(
  `: keep-alive\n\n${EVENTS.map((e) => `event: ${e.type}\r\ndata: ${JSON.stringify(e)}\r\n\r\n`).join("")}event: end\ndata: {"reason":"caller hung up"}\n\n`,
);

async function streamEvents(res: ServerResponse, endStream: boolean): Promise<void> {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const body = endStream ? SSE : SSE.subarray(0, SSE.indexOf("event: transcript"));
  for (let i = 0; i < body.length; i += 7) {
    res.write(body.subarray(i, i + 7));
    await new Promise((r) => setTimeout(r, 1));
  }
  // The connection stays open after `end`: the CLI must stop on the event, not on the socket closing.
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body = "";
  for await (const chunk of req) body += chunk;
  const url = req.url ?? "";
  seen.push({ method: req.method ?? "", url, auth: req.headers.authorization, body });
  if (req.headers.authorization !== `Bearer ${TOKEN}`) return json(res, 401, { error: "missing or invalid API token" });
  const path = url.split("?")[0];
  if (req.method === "GET" && path === "/api/calls") {
    return json(res, 200, {
      calls: [
        { callSid: "CA1", direction: "inbound", from: "+15550001111", to: "+15559990000", state: { active: { replying: "speaking" } }, createdAt: T0, endedAt: null, endReason: null, live: true },
        { callSid: "CA22", direction: "outbound", from: "+15559990000", to: "+447700900123", state: "ended", createdAt: T0 - 3_600_000, endedAt: T0 - 3_600_000 + 65_000, endReason: "caller hung up", live: false },
      ],
    });
  }
  if (req.method === "POST" && path === "/api/calls") return json(res, 201, { callSid: "CAnew", state: "connecting" });
  if (req.method === "GET" && (path === "/api/calls/CA1/events" || path === "/api/calls/CAnew/events")) return streamEvents(res, true);
  if (req.method === "GET" && path === "/api/calls/CAforever/events") return streamEvents(res, false);
  if (req.method === "POST" && (path === "/api/calls/CA1/hangup" || path === "/api/calls/CA1/speak")) return json(res, 202, { ok: true });
  return json(res, 404, { error: `no call ${path?.split("/")[3] ?? ""}` });
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the CLI; `whenOutput` is called on each stdout chunk (to signal it mid-run). */
function parley(args: string[], env: Record<string, string | undefined> = {}, whenOutput?: (out: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, PARLEY_URL: base, API_TOKEN: TOKEN, TZ: "UTC", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      whenOutput?.(stdout, child);
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

beforeEach(() => {
  seen = [];
});

describe("parley calls", () => {
  it("prints an aligned table with state paths, start times and durations", async () => {
    const r = await parley(["calls"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^ID\s+DIRECTION\s+FROM\s+TO\s+STATE\s+STARTED\s+DURATION$/);
    expect(lines[1]).toMatch(/^CA1\s+inbound\s+\+15550001111\s+\+15559990000\s+active\.replying\.speaking\s+2025-01-31 09:00:00\s+live$/);
    expect(lines[2]).toMatch(/^CA22\s+outbound\s+\+15559990000\s+\+447700900123\s+ended\s+2025-01-31 08:00:00\s+1m 05s$/);
    // Aligned: every column starts at the same offset on every line.
    for (const header of ["DIRECTION", "STATE", "STARTED", "DURATION"]) {
      const col = lines[0]!.indexOf(header);
      expect(lines[1]![col - 1]).toBe(" ");
      expect(lines[2]![col]).not.toBe(" ");
    }
    expect(seen[0]).toMatchObject({ method: "GET", url: "/api/calls", auth: `Bearer ${TOKEN}` });
  });

  it("prints JSON with --json", async () => {
    const r = await parley(["calls", "--json"]);
    expect(r.code).toBe(0);
    const calls = JSON.parse(r.stdout) as { callSid: string }[];
    expect(calls.map((c) => c.callSid)).toEqual(["CA1", "CA22"]);
  });

  it("sends filters, with --since 10m as epoch milliseconds ten minutes back", async () => {
    const before = Date.now();
    const r = await parley(["calls", "--state", "active", "--direction", "inbound", "--since", "10m"]);
    const after = Date.now();
    expect(r.code).toBe(0);
    const q = new URL(seen[0]!.url, base).searchParams;
    expect(q.get("state")).toBe("active");
    expect(q.get("direction")).toBe("inbound");
    const since = Number(q.get("since"));
    expect(since).toBeGreaterThanOrEqual(before - 600_000);
    expect(since).toBeLessThanOrEqual(after - 600_000);
  });

  it("sends an ISO --since as epoch milliseconds", async () => {
    await parley(["calls", "--since", "2025-01-31T09:00:00Z"]);
    expect(new URL(seen[0]!.url, base).searchParams.get("since")).toBe(String(T0));
  });
});

describe("parley call", () => {
  it("posts the call and prints its id and state", async () => {
    const r = await parley(["call", "+15551234567", "--message", "Your order has shipped.", "--mode", "notify", "--from", "+15559990000"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^CAnew\s+connecting\n$/);
    expect(seen[0]).toMatchObject({ method: "POST", url: "/api/calls", auth: `Bearer ${TOKEN}` });
    expect(JSON.parse(seen[0]!.body)).toEqual({ to: "+15551234567", from: "+15559990000", mode: "notify", message: "Your order has shipped." });
  });

  it("defaults to conversation mode and leaves out from", async () => {
    const r = await parley(["call", "+15551234567", "-m", "Hi"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(seen[0]!.body)).toEqual({ to: "+15551234567", mode: "conversation", message: "Hi" });
  });
});

describe("parley tail", () => {
  it("prints one line per event and exits 0 when the stream sends end", async () => {
    const r = await parley(["tail", "CA1"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(seen[0]).toMatchObject({ method: "GET", url: "/api/calls/CA1/events", auth: `Bearer ${TOKEN}` });
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toEqual([
      expect.stringMatching(/^09:00:00\.000 +state +active\.greeting$/),
      expect.stringMatching(/^09:00:01\.500 +transcript +"is the café open"$/),
      expect.stringMatching(/^09:00:02\.250 +turn +assistant "You said: is the café open" +interrupted, heard "You said" +total 743 ms$/),
      expect.stringMatching(/^09:00:02\.600 +barge-in +turn 2 +heard "You said"$/),
      expect.stringMatching(/^09:00:02\.700 +state +active\.replying\.speaking$/),
      expect.stringMatching(/^09:00:02\.800 +mark +m-7$/),
      "Call ended: caller hung up",
    ]);
  });

  it("prints events as JSON lines with --json", async () => {
    const r = await parley(["tail", "CA1", "--json"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as unknown)).toEqual([...EVENTS, { type: "end", reason: "caller hung up" }]);
  });

  it("exits 0 on Ctrl-C", async () => {
    const r = await parley(["tail", "CAforever"], {}, (out, child) => {
      if (out.includes("active.greeting")) child.kill("SIGINT");
    });
    expect(r.stdout).toContain("active.greeting");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  it("follows a new call with call --follow", async () => {
    const r = await parley(["call", "+15551234567", "-m", "Hi", "--follow"]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")[0]).toMatch(/^CAnew\s+connecting$/);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(["POST /api/calls", "GET /api/calls/CAnew/events"]);
  });

  it("reports an unknown call as the API's error", async () => {
    const r = await parley(["tail", "CAnope"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("parley: no call CAnope (HTTP 404)\n");
  });
});

describe("parley hangup and speak", () => {
  it("hangup posts to the call's hangup path with the bearer token", async () => {
    const r = await parley(["hangup", "CA1"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("CA1");
    expect(seen).toEqual([{ method: "POST", url: "/api/calls/CA1/hangup", auth: `Bearer ${TOKEN}`, body: "" }]);
  });

  it("speak posts the text and the interrupt flag", async () => {
    let r = await parley(["speak", "CA1", "One moment please."]);
    expect(r.code).toBe(0);
    r = await parley(["--token", TOKEN, "speak", "CA1", "Sorry,", "I", "must", "go", "--interrupt"], { API_TOKEN: undefined });
    expect(r.code).toBe(0);
    expect(seen.map((s) => [s.method, s.url, s.auth, JSON.parse(s.body) as unknown])).toEqual([
      ["POST", "/api/calls/CA1/speak", `Bearer ${TOKEN}`, { text: "One moment please.", interrupt: false }],
      ["POST", "/api/calls/CA1/speak", `Bearer ${TOKEN}`, { text: "Sorry, I must go", interrupt: true }],
    ]);
  });
});

describe("errors", () => {
  it("401 prints the API's message, the status and a hint to set API_TOKEN", async () => {
    const r = await parley(["calls"], { API_TOKEN: undefined });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("parley: missing or invalid API token (HTTP 401)");
    expect(r.stderr).toContain("API_TOKEN");
    expect(seen[0]!.auth).toBeUndefined();
  });

  it("connection refused names the URL and suggests starting Parley", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((r) => closed.close(r));
    const r = await parley(["calls"], { PARLEY_URL: url });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`parley: cannot reach Parley at ${url} — is it running? (npm start)\n`);
  });

  it("--url overrides PARLEY_URL", async () => {
    const r = await parley(["calls", "--url", base], { PARLEY_URL: "http://127.0.0.1:1" });
    expect(r.code).toBe(0);
  });

  it.each([
    [[], "missing command"],
    [["dial"], "unknown command 'dial'"],
    [["call", "--message", "hi"], "missing <number>"],
    [["call", "+15551234567"], "missing --message"],
    [["call", "+15551234567", "-m", "hi", "--mode", "shout"], "--mode must be conversation or notify"],
    [["calls", "--since", "yesterday"], "--since must be"],
    [["calls", "--direction", "sideways"], "--direction must be inbound, outbound or browser"],
    [["calls", "--bogus"], "Unknown option '--bogus'"],
    [["calls", "--json=yes"], "Option '--json' does not take an argument"],
    [["calls", "--state", "bogus"], "--state must be one of live, ended, "],
    [["tail"], "missing <callSid>"],
    [["tail", "CA1", "--bogus"], "Unknown option '--bogus'"],
    [["speak", "CA1"], "missing <text>"],
    [["hangup", "CA1", "CA2"], "unexpected argument 'CA2'"],
    [["help", "dial"], "unknown command 'dial'"],
    [["start", "--bogus"], "Unknown option '--bogus'"],
  ])("bad usage %j exits 2 with one line on stderr and asks nothing of the API", async (args, message) => {
    const r = await parley(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`parley: ${message}`);
    expect(r.stderr).toMatch(/^parley: [^\n]+ \(see 'parley ([a-z]+ )?--help'\)\n$/);
    expect(seen).toEqual([]);
  });

  it("--state names every valid state, read from the call machine", async () => {
    const r = await parley(["calls", "--state", "bogus"]);
    expect(r.code).toBe(2);
    for (const state of ["live", "ended", "listening", "speaking", "reconnecting", "greeting"]) expect(r.stderr).toMatch(new RegExp(`[ ,]${state}[,;]`));
    expect(r.stderr).toContain("got 'bogus'");
    // A real state name goes through to the API.
    const ok = await parley(["calls", "--state", "reconnecting"]);
    expect(ok.code).toBe(0);
    expect(new URL(seen[0]!.url, base).searchParams.get("state")).toBe("reconnecting");
  });

  it.each(["start", "call", "calls", "tail", "speak", "hangup"])("parley %s --help prints its usage and exits 0, before any other option is checked", async (command) => {
    const r = await parley([command, "-h", "--bogus"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: parley ${command}`);
    expect(seen).toEqual([]);
  });

  it("--help prints usage with examples and exits 0", async () => {
    const main = await parley(["--help"]);
    expect(main.code).toBe(0);
    expect(main.stdout).toContain("Usage: parley <command>");
    expect(main.stdout).toContain("Examples:");
    const call = await parley(["call", "--help"]);
    expect(call.code).toBe(0);
    expect(call.stdout).toContain("Usage: parley call <number> --message <text>");
    expect(call.stdout).toContain("Examples:");
  });
});

/**
 * The real service, started the way the README says (`parley start`, logs piped, so JSON), with a real call placed
 * over the Media Streams protocol and hung up: what a stranger sees in the first ten minutes.
 */
describe("against a real Parley started with `parley start`", () => {
  let service: ChildProcess;
  let exited: Promise<number | null>;
  let dataDir = "";
  let url = "";
  let stdout = "";
  const logLines = () => stdout.split("\n").filter(Boolean);

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), "parley-cli-"));
    // Only what a stranger would have: no tokens, no config file, the default host.
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "info", GREETING: "Hi." };
    service = spawn(process.execPath, [BIN, "start"], { env, stdio: ["ignore", "pipe", "pipe"] });
    exited = new Promise((r) => service.once("exit", (code) => r(code)));
    let stderr = "";
    service.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`parley start did not log where to open the pages:\n${stdout}${stderr}`)), 170_000);
      service.stdout!.on("data", (d: Buffer) => {
        stdout += d.toString();
        const line = logLines().find((l) => l.includes('"msg":"open '));
        if (!line) return;
        clearTimeout(timer);
        url = /open (http:\/\/127\.0\.0\.1:\d+)\//.exec(line)![1]!;
        resolve();
      });
      service.once("exit", (code) => reject(new Error(`parley start exited (${code}):\n${stdout}${stderr}`)));
    });
  }, 180_000);

  afterAll(async () => {
    if (service && service.exitCode === null) service.kill("SIGINT");
    if (service) await exited;
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("logs JSON lines when piped, and a start-up line naming the softphone and the visualizer, which open", async () => {
    const entries = logLines().map((l) => JSON.parse(l) as { msg: string; level: number });
    const open = entries.find((e) => e.msg.startsWith("open "))!;
    expect(open.msg).toBe(`open ${url}/ to talk to Parley from this browser (the softphone), or ${url}/debug to watch calls move through the state machine`);
    const phone = await fetch(`${url}/`);
    expect(phone.status).toBe(200);
    expect(phone.url).toBe(`${url}/phone`);
    expect(await phone.text()).toContain("<html");
    const debug = await fetch(`${url}/debug`);
    expect(debug.status).toBe(200);
    expect(debug.headers.get("content-type")).toContain("text/html");
  });

  it("tail of an ended call prints its events from the record and the reason it ended", async () => {
    const call = new TwilioCall({ baseUrl: url, from: "+15550100001", to: "+15550100002" });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 60_000, "the greeting");
    await call.hangUp();
    let rec: { endedAt: number | null; endReason: string | null; states: unknown[] } | undefined;
    for (let i = 0; i < 100 && !rec?.endedAt; i++) {
      rec = (await (await fetch(`${url}/api/calls/${call.callSid}`)).json()) as typeof rec;
      if (!rec?.endedAt) await new Promise((r) => setTimeout(r, 100));
    }
    expect(rec!.endReason).toBeTruthy();

    const r = await parley(["tail", call.callSid], { PARLEY_URL: url, API_TOKEN: undefined });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} +call\.created +direction=inbound from=\+15550100001 to=\+15550100002 mode=conversation$/);
    // Every event kind the record holds, in time order, as `parley tail` prints live events.
    expect(lines.some((l) => / stream\.started$/.test(l))).toBe(true);
    expect(lines.some((l) => / state +live\.active\.greeting +event=STREAM\.STARTED$/.test(l))).toBe(true);
    expect(lines.some((l) => / turn +assistant "Hi\."$/.test(l))).toBe(true);
    // The greeting's delivery (a flag in the record) at the moment the greeting state ended on its last mark.
    const delivered = lines.findIndex((l) => / greeting\.delivered$/.test(l));
    expect(delivered).toBeGreaterThan(0);
    expect(lines[delivered + 1]).toMatch(/ state +live\.active\.listening +event=PLAYBACK\.DONE$/);
    expect(lines[delivered]!.slice(0, 12)).toBe(lines[delivered + 1]!.slice(0, 12));
    expect(lines.filter((l) => / state /.test(l))).toHaveLength(rec!.states.length);
    expect(lines.filter((l) => l.endsWith(` call.ended          ${rec!.endReason}`))).toHaveLength(1);
    expect(lines.at(-1)).toBe(`Call ended: ${rec!.endReason}`);

    const json = await parley(["tail", call.callSid, "--json"], { PARLEY_URL: url, API_TOKEN: undefined });
    expect(json.code).toBe(0);
    const events = json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as { t?: number; type: string; reason?: string });
    expect(events).toHaveLength(lines.length);
    expect(events[0]!.type).toBe("call.created");
    const times = events.slice(0, -1).map((e) => e.t!);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(events.at(-1)).toMatchObject({ type: "end", reason: rec!.endReason });

    const listed = await parley(["calls", "--state", "ended"], { PARLEY_URL: url, API_TOKEN: undefined });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(call.callSid);
  }, 120_000);

  it("shuts down on Ctrl-C with exit 0", async () => {
    service.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(logLines().some((l) => l.includes('"msg":"shutting down"'))).toBe(true);
  }, 60_000);
});
