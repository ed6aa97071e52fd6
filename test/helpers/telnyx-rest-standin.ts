import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * The reads of Telnyx's v2 REST API that `parley doctor` makes, in Telnyx's JSON shapes (`{data: …}`, errors as
 * `{errors: [{code, title, detail}]}`), behind `Authorization: Bearer <key>`: `GET /v2/balance`,
 * `GET /v2/phone_numbers?filter[phone_number]=`, `GET /v2/call_control_applications/{id}`.
 */
export class TelnyxRestStandIn {
  /** TELNYX_API_URL for Parley and the doctor. */
  readonly url: string;
  numbers: Array<{ phoneNumber: string; connectionId: string | null }> = [];
  /** Call Control applications by id (a connection id missing here is a SIP connection or another kind). */
  applications: Record<string, { name: string; webhookEventUrl: string }> = {};

  private constructor(
    private readonly server: Server,
    readonly apiKey: string,
  ) {
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2`;
  }

  static async start(apiKey: string): Promise<TelnyxRestStandIn> {
    let standIn: TelnyxRestStandIn | null = null;
    const server = createServer((req, res) => {
      const reply = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
      const error = (status: number, code: string, title: string) => reply(status, { errors: [{ code, title, detail: title }] });
      if (req.headers.authorization !== `Bearer ${standIn!.apiKey}`) return error(401, "10009", "Authentication failed");
      const u = new URL(req.url ?? "/", "http://x");
      if (req.method !== "GET") return error(405, "10015", "Method not allowed");
      if (u.pathname === "/v2/balance") return reply(200, { data: { record_type: "balance", balance: "10.00", credit_limit: "0.00", available_credit: "10.00", currency: "USD" } });
      if (u.pathname === "/v2/phone_numbers") {
        const wanted = u.searchParams.get("filter[phone_number]");
        const rows = standIn!.numbers
          .filter((n) => !wanted || n.phoneNumber === wanted)
          .map((n, i) => ({
            id: String(1000 + i),
            record_type: "phone_number",
            phone_number: n.phoneNumber,
            status: "active",
            connection_id: n.connectionId,
            connection_name: n.connectionId ? (standIn!.applications[n.connectionId]?.name ?? "a SIP connection") : null,
          }));
        return reply(200, { data: rows, meta: { page_number: 1, page_size: 20, total_pages: 1, total_results: rows.length } });
      }
      const app = /^\/v2\/call_control_applications\/([^/]+)$/.exec(u.pathname);
      if (app) {
        const a = standIn!.applications[decodeURIComponent(app[1]!)];
        if (!a) return error(404, "10005", "Resource not found");
        return reply(200, { data: { id: app[1], record_type: "call_control_application", application_name: a.name, webhook_event_url: a.webhookEventUrl, webhook_api_version: "2", active: true } });
      }
      return error(404, "10005", "Resource not found");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    standIn = new TelnyxRestStandIn(server, apiKey);
    return standIn;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
