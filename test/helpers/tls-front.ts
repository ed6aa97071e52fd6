import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo, LookupFunction, Socket } from "node:net";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * A TLS-terminating front for a local Parley, standing in for the tunnel or proxy of a real deployment: https and wss
 * on its own port, with a certificate for a public-looking name made at test time by Debian's `openssl`, forwarding
 * requests and WebSocket upgrades to the target port as plain http, as cloudflared or nginx would.
 */
export interface TlsFrontOptions {
  /** The certificate's name (subjectAltName). */
  hostname: string;
  /** Forward WebSocket upgrades (a proxy without `proxy_set_header Upgrade` does not). Default true. */
  upgrades?: boolean;
}

export class TlsFront {
  /** Where requests go: Parley's port, or another local server. */
  targetPort = 0;

  private constructor(
    private readonly server: Server,
    readonly cert: string,
  ) {}

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  static async start(opts: TlsFrontOptions): Promise<TlsFront> {
    const { key, cert } = selfSigned(opts.hostname);
    let front: TlsFront | null = null;
    const server = createServer({ key, cert }, (req, res) => front!.forward(req, res));
    server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) =>
      opts.upgrades === false ? front!.withoutUpgrade(req, socket) : front!.tunnel(req, socket, head),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    front = new TlsFront(server, cert);
    return front;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private forward(req: IncomingMessage, res: ServerResponse): void {
    const upstream = httpRequest(
      { host: "127.0.0.1", port: this.targetPort, method: req.method, path: req.url, headers: { ...req.headers, "x-forwarded-proto": "https" } },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    // What a tunnel answers when its origin is down.
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end("bad gateway: the origin did not answer\n");
    });
    req.pipe(upstream);
  }

  /**
   * What a proxy that does not pass upgrades does (nginx without `proxy_set_header Upgrade`): Upgrade and Connection
   * are hop-by-hop headers, so the origin gets a plain GET, and its answer goes back as is.
   */
  withoutUpgrade(req: IncomingMessage, socket: Socket): void {
    const headers = { ...req.headers };
    for (const h of ["upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"]) delete headers[h];
    const upstream = httpRequest({ host: "127.0.0.1", port: this.targetPort, method: req.method, path: req.url, headers }, (r) => {
      const chunks: Buffer[] = [];
      r.on("data", (c: Buffer) => chunks.push(c));
      r.on("end", () => {
        const body = Buffer.concat(chunks);
        socket.end(`HTTP/1.1 ${r.statusCode} ${r.statusMessage}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body.toString("latin1")}`, "latin1");
      });
    });
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
    upstream.end();
  }

  /** Replay the upgrade request to the target and splice the two sockets. */
  private tunnel(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const upstream = connect(this.targetPort, "127.0.0.1", () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    const end = () => {
      upstream.destroy();
      socket.destroy();
    };
    upstream.on("error", end);
    socket.on("error", end);
  }
}

/** A key and a self-signed certificate for `hostname` (P-256, one day), through Debian's openssl. */
function selfSigned(hostname: string): { key: string; cert: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "parley-cert-"));
  try {
    const key = path.join(dir, "key.pem");
    const cert = path.join(dir, "cert.pem");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-keyout", key, "-out", cert, "-subj", `/CN=${hostname}`, "-addext", `subjectAltName=DNS:${hostname}`,
    ], { stdio: "ignore" });
    return { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every connection to 127.0.0.1, whatever the name (curl's --resolve): the public name lives on loopback here. */
export const toLoopback: LookupFunction = (_host, options, callback) => {
  if ((options as { all?: boolean }).all) (callback as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address: "127.0.0.1", family: 4 }]);
  else (callback as (e: null, a: string, f: number) => void)(null, "127.0.0.1", 4);
};
