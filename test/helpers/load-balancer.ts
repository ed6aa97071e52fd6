import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A small HTTP load balancer for fleet tests, doing what HAProxy or nginx do in front of Parley: it health-checks each
 * backend's `/healthz` (200 = in rotation; 503 draining or no answer = out), sends each request to the first backend
 * in rotation (or, with `roundRobin`, to each in turn, as HAProxy's `balance roundrobin` does), and moves on to the
 * next when a backend refuses the connection. Twilio's webhooks and `<Connect action>`
 * requests go through it; media streams go straight to the instance that runs the call (its INSTANCE_URL).
 */
export class TestLoadBalancer {
  readonly up = new Map<string, boolean>();
  /** Which backend answered each request: path and backend, in order. */
  readonly routed: { path: string; backend: string; at: number }[] = [];
  private readonly timer: NodeJS.Timeout;
  private turn = 0;

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
    readonly backends: string[],
    checkMs: number,
    private readonly roundRobin: boolean,
  ) {
    for (const b of backends) this.up.set(b, true);
    this.timer = setInterval(() => void this.check(), checkMs);
  }

  static async start(backends: string[], checkMs = 200, opts: { roundRobin?: boolean } = {}): Promise<TestLoadBalancer> {
    let lb: TestLoadBalancer | null = null;
    const server = http.createServer((req, res) => void lb!.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    lb = new TestLoadBalancer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, backends, checkMs, opts.roundRobin ?? false);
    return lb;
  }

  /** Wait until every backend passes its health check (the checks run from the start, before the backends are up). */
  async allUp(timeoutMs = 30_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      await this.check();
      if (this.backends.every((b) => this.up.get(b))) return;
      if (Date.now() > until) throw new Error(`load balancer: backends not up: ${this.backends.filter((b) => !this.up.get(b)).join(", ")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async check(): Promise<void> {
    await Promise.all(
      this.backends.map(async (b) => {
        try {
          const res = await fetch(`${b}/healthz`, { signal: AbortSignal.timeout(500) });
          await res.body?.cancel();
          this.up.set(b, res.status === 200);
        } catch {
          this.up.set(b, false);
        }
      }),
    );
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    let order = this.backends.filter((x) => this.up.get(x));
    if (this.roundRobin && order.length) {
      const first = this.turn++ % order.length;
      order = [...order.slice(first), ...order.slice(0, first)];
    }
    for (const b of order) {
      try {
        const out = await forward(b, req, body);
        this.routed.push({ path: req.url ?? "", backend: b, at: Date.now() });
        res.writeHead(out.status, out.headers);
        res.end(out.body);
        return;
      } catch {
        this.up.set(b, false); // refused: out of rotation until its health check passes again
      }
    }
    res.writeHead(503, { "content-type": "text/plain" });
    res.end("no backend in rotation\n");
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function forward(backend: string, req: IncomingMessage, body: Buffer): Promise<{ status: number; headers: http.OutgoingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(req.url ?? "/", backend);
    const out = http.request(u, { method: req.method, headers: { ...req.headers, host: u.host } }, (r) => {
      const chunks: Buffer[] = [];
      r.on("data", (c: Buffer) => chunks.push(c));
      r.on("end", () => {
        const { "transfer-encoding": _te, connection: _c, ...headers } = r.headers;
        resolve({ status: r.statusCode ?? 502, headers, body: Buffer.concat(chunks) });
      });
      r.on("error", reject);
    });
    out.on("error", reject);
    out.end(body);
  });
}
