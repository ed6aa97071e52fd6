import { beforeAll, describe, expect, it } from "vitest";
import { loadCarrier, type LoadCarrier } from "../bench/load/carrier-setup.ts";
import type { ResultMessage } from "../bench/load/protocol.ts";
import { generatorRefuses, runGenerator } from "./helpers/load-generator.ts";
import { apiClient } from "./helpers/api-client.ts";
import { useParley } from "./helpers/harness.ts";

/**
 * The capacity bench's load generator on Telnyx's and Plivo's wires (bench/load/wire-telnyx.ts, wire-plivo.ts),
 * against a real Parley configured for both carriers: the same script as on Twilio (greeting, turns, barge-ins),
 * through each carrier's control plane (Telnyx: signed webhook, Parley's `answer` command on the generator's REST API;
 * Plivo: signed answer request, XML, signed upgrade) and media frames (marks vs checkpoints, clear vs clearAudio).
 */
describe("load generator on Telnyx and Plivo", () => {
  let telnyx: LoadCarrier;
  let plivo: LoadCarrier;
  beforeAll(async () => {
    telnyx = await loadCarrier("telnyx");
    plivo = await loadCarrier("plivo");
  });
  const API_TOKEN = "load-generator-carriers-api-token";
  const parley = useParley(() => ({ GREETING: "Hello! This is Parley.", ...telnyx.env, ...plivo.env, API_TOKEN }));
  let base = "";
  beforeAll(async () => {
    ({ base } = await parley.start());
  });
  const { record } = apiClient(() => base, API_TOKEN);

  /** Every call ran the script end to end, and Parley's record of it (found by the id the generator reports) has turns. */
  async function expectWholeRun(r: ResultMessage, calls: number): Promise<void> {
    expect(r.errors).toMatchObject({ connect: 0, closedByServer: 0, protocol: 0, total: 0 });
    expect(r.callsCompleted).toBe(calls);
    expect(r.greetingMs).toHaveLength(calls);
    for (const c of r.perCall) {
      expect(c).toMatchObject({ connected: true, end: "caller", error: null });
      expect(c.turnLatencies).toBeGreaterThanOrEqual(1);
      const rec = await record(encodeURIComponent(c.callSid));
      expect(rec.callSid).toBe(c.callSid);
      expect(rec.turns.length).toBeGreaterThanOrEqual(1);
    }
    for (const ms of r.turnLatencyMs) expect(ms).toBeGreaterThan(0);
    expect(r.bargeInAttempts).toBeGreaterThanOrEqual(1);
    expect(r.bargeInMs.length).toBeGreaterThanOrEqual(1);
    expect(r.clears).toBeGreaterThanOrEqual(r.bargeInMs.length);
    for (const ms of r.bargeInMs) expect(ms).toBeGreaterThan(0);
    expect(r.lateAfterClear).toBe(0);
  }

  it("plays Telnyx's side: call.initiated, Parley's answer command, the stream, barge-ins with clear, hang-ups", async () => {
    const { result, code } = await runGenerator(["--url", base, "--calls", "2", "--seconds", "7", "--ramp-ms", "200", ...telnyx.generatorArgs]);
    expect(code).toBe(0);
    await expectWholeRun(result, 2);
    // Parley's own ids (from client_state), never Telnyx's `v3:` ids.
    for (const c of result.perCall) expect(c.callSid).not.toMatch(/^v3:/);
  });

  it("plays Plivo's side: answer XML, signed upgrade, checkpoints and clearAudio, hang-ups", async () => {
    const { result, code } = await runGenerator(["--url", base, "--calls", "2", "--seconds", "7", "--ramp-ms", "200", ...plivo.generatorArgs]);
    expect(code).toBe(0);
    await expectWholeRun(result, 2);
  });

  it("is refused by Parley when it signs with the wrong keys", async () => {
    // Another account's key pair: Parley holds the first one's public key.
    const wrongTelnyx = await loadCarrier("telnyx");
    const t = await runGenerator(["--url", base, "--calls", "1", "--seconds", "1", ...wrongTelnyx.generatorArgs]);
    expect(t.result.errors.connect).toBe(1);
    expect(t.result.errors.messages[0]).toMatch(/call\.initiated webhook answered 403/);

    const wrongPlivo = plivo.generatorArgs.map((a, i, all) => (all[i - 1] === "--auth-token" ? "not-the-auth-token" : a));
    const p = await runGenerator(["--url", base, "--calls", "1", "--seconds", "1", ...wrongPlivo]);
    expect(p.result.errors.connect).toBe(1);
    expect(p.result.errors.messages[0]).toMatch(/answer URL answered 403/);
  });

  it("refuses to start without the carrier's credentials, saying which", async () => {
    const { code, message } = await generatorRefuses(["--url", base, "--carrier", "plivo"]);
    expect(code).toBe(2);
    expect(message).toMatch(/--carrier plivo needs --auth-id and --auth-token/);
  });
});
