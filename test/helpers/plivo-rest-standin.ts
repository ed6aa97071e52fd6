import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * The reads of Plivo's REST API that `parley doctor` makes, in Plivo's JSON shapes, behind HTTP Basic
 * `auth_id:auth_token`: `GET /v1/Account/{auth_id}/`, `GET …/Number/{number}/` (its `application` is the Application's
 * resource URI) and `GET …/Application/{app_id}/` (`answer_url`, `answer_method`).
 */
export class PlivoRestStandIn {
  /** PLIVO_API_URL for Parley and the doctor. */
  readonly url: string;
  /** Numbers (digits, no "+") and the id of their Application, if any. */
  numbers: Record<string, string | null> = {};
  applications: Record<string, { name: string; answerUrl: string; answerMethod: string }> = {};

  private constructor(
    private readonly server: Server,
    readonly authId: string,
    readonly authToken: string,
  ) {
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  static async start(authId: string, authToken: string): Promise<PlivoRestStandIn> {
    let standIn: PlivoRestStandIn | null = null;
    const server = createServer((req, res) => {
      const apiId = randomBytes(16).toString("hex");
      const reply = (status: number, body: Record<string, unknown>) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ api_id: apiId, ...body }));
      const me = standIn!;
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? "");
      if (!basic || Buffer.from(basic[1]!, "base64").toString() !== `${me.authId}:${me.authToken}`) return reply(401, { error: "authentication failed" });
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const base = `/v1/Account/${me.authId}/`;
      if (req.method !== "GET" || !path.startsWith(base)) return reply(404, { error: "not found" });
      const rest = path.slice(base.length);
      if (rest === "") return reply(200, { account_type: "standard", auth_id: me.authId, name: "stand-in", resource_uri: base });
      const number = /^Number\/(\d+)\/$/.exec(rest);
      if (number) {
        if (!(number[1]! in me.numbers)) return reply(404, { error: "not found" });
        const app = me.numbers[number[1]!];
        return reply(200, { number: number[1], voice_enabled: true, application: app ? `${base}Application/${app}/` : null, resource_uri: `${base}Number/${number[1]}/` });
      }
      const app = /^Application\/([^/]+)\/$/.exec(rest);
      if (app && me.applications[app[1]!]) {
        const a = me.applications[app[1]!]!;
        return reply(200, { app_id: app[1], app_name: a.name, answer_url: a.answerUrl, answer_method: a.answerMethod, resource_uri: `${base}Application/${app[1]}/` });
      }
      return reply(404, { error: "not found" });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    standIn = new PlivoRestStandIn(server, authId, authToken);
    return standIn;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
