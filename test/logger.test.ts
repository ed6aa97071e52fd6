/** The service's logger (createLogger): JSON lines when piped, one readable line per entry on a terminal, no secrets. */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/bootstrap.ts";

/** A stream that keeps what is written; `isTTY` says whether it poses as a terminal. */
function sink(isTTY: boolean): Writable & { isTTY: boolean; text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return Object.assign(w, { isTTY, text: () => chunks.join("") });
}

const SECRETS = {
  req: { method: "GET", url: "/api/calls", headers: { authorization: "Bearer req-header-secret", host: "parley" } },
  headers: { authorization: "Bearer top-level-header-secret" },
  upstream: { authorization: "Bearer nested-secret", token: "nested-token-secret" },
  token: "stream-token-secret",
  apiToken: "api-token-secret",
  access_token: "query-token-secret",
};

describe("createLogger", () => {
  it("writes one JSON object per line when the output is not a terminal, with every secret redacted", async () => {
    const out = sink(false);
    const log = createLogger({ logLevel: "info" }, out);
    log.info(SECRETS, "request");
    log.info({ query: { access_token: "nested-query-token-secret" }, settings: { apiToken: "nested-api-token-secret" } }, "nested");
    log.flush();
    await new Promise((r) => setImmediate(r));
    const lines = out.text().trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    const [first, second] = lines.map((l) => JSON.parse(l) as Record<string, any>);
    expect(first).toMatchObject({ msg: "request", service: "parley", level: 30 });
    expect(first!.req.headers).toEqual({ authorization: "[Redacted]", host: "parley" });
    expect(first!.headers.authorization).toBe("[Redacted]");
    expect(first!.upstream).toEqual({ authorization: "[Redacted]", token: "[Redacted]" });
    expect(first).toMatchObject({ token: "[Redacted]", apiToken: "[Redacted]", access_token: "[Redacted]" });
    expect(second).toMatchObject({ query: { access_token: "[Redacted]" }, settings: { apiToken: "[Redacted]" } });
    expect(out.text()).not.toMatch(/secret/);
  });

  it("writes one readable line per entry on a terminal: time, level, message, fields; secrets redacted", async () => {
    const out = sink(true);
    const log = createLogger({ logLevel: "info" }, out);
    log.info({ port: 3334 }, "parley is listening");
    log.warn(SECRETS, "request");
    log.debug("below the level"); // dropped by pino's level check before it reaches the stream
    // pino-pretty formats through a stream pipeline: let it run until both lines are out (turns, not wall-clock time).
    for (let i = 0; i < 1000 && (out.text().match(/\n/g) ?? []).length < 2; i++) await new Promise((r) => setImmediate(r));
    const lines = out.text().trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: parley is listening \{"port":3334\}$/);
    expect(lines[1]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: request \{.*"authorization":"\[Redacted\]".*\}$/);
    expect(() => JSON.parse(lines[0]!)).toThrow();
    expect(out.text()).not.toMatch(/secret/);
    expect(out.text()).not.toMatch(/\u001b\[/); // no colour codes outside a real terminal
  });
});
