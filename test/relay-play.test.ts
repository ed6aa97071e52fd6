import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { fetchPlayAudio, MAX_PLAY_REDIRECTS, PlayError } from "../src/responders/relay/play-audio.ts";
import { RelayResponder } from "../src/responders/relay/relay-responder.ts";
import { RelayApp } from "./helpers/relay-app.ts";
import { RecordingHost } from "./helpers/relay-host.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A real local HTTP server; `handle` answers each request. Records how many body bytes each response wrote. */
async function server(handle: (req: http.IncomingMessage, res: http.ServerResponse, base: string) => void) {
  const s = http.createServer((req, res) => handle(req, res, base));
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  cleanups.push(() => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r()))));
  return base;
}

const limits = { maxBytes: 64 * 1024, timeoutMs: 2000 };
const mulaw = new Uint8Array(1600).fill(0x7f);
const refused = (p: Promise<unknown>, message: RegExp) => expect(p).rejects.toSatisfy((e) => e instanceof PlayError && message.test((e as Error).message));

describe("relay play: what a download may do", () => {
  it("only http(s) URLs are fetched", async () => {
    await refused(fetchPlayAudio("file:///etc/passwd", limits), /only http\(s\) URLs are fetched, not file:/);
    await refused(fetchPlayAudio("data:audio/basic;base64,f39/fw==", limits), /only http\(s\) URLs are fetched, not data:/);
    await refused(fetchPlayAudio("not a url", limits), /is not a URL/);
  });

  it(`redirects are followed ${MAX_PLAY_REDIRECTS} times at most, and only to http(s)`, async () => {
    const base = await server((req, res, b) => {
      const m = /^\/hop\/(\d+)$/.exec(req.url ?? "");
      if (m) {
        const n = Number(m[1]);
        return void res.writeHead(302, { location: n > 0 ? `${b}/hop/${n - 1}` : "/audio.ul" }).end();
      }
      if (req.url === "/to-file") return void res.writeHead(302, { location: "file:///etc/passwd" }).end();
      res.writeHead(200, { "content-type": "audio/basic" }).end(Buffer.from(mulaw));
    });
    // hop/N answers N+1 redirects before the audio
    expect(await fetchPlayAudio(`${base}/hop/${MAX_PLAY_REDIRECTS - 1}`, limits)).toEqual(mulaw);
    await refused(fetchPlayAudio(`${base}/hop/${MAX_PLAY_REDIRECTS}`, limits), new RegExp(`more than ${MAX_PLAY_REDIRECTS} redirects`));
    await refused(fetchPlayAudio(`${base}/to-file`, limits), /only http\(s\) URLs are fetched, not file:/);
  });

  it("a body that trickles in past the time limit is abandoned", async () => {
    const base = await server((_req, res) => {
      res.writeHead(200, { "content-type": "audio/basic" });
      const t = setInterval(() => res.write(Buffer.alloc(100, 0x7f)), 50);
      res.on("close", () => clearInterval(t));
    });
    await refused(fetchPlayAudio(`${base}/trickle.ul`, { ...limits, timeoutMs: 300 }), /download took longer than 300 ms/);
  });

  it("a body with no Content-Length is read as a stream and cut at the byte cap; the server sees the download stop", async () => {
    let closed!: () => void;
    const stopped = new Promise<void>((r) => (closed = r));
    const base = await server((_req, res) => {
      res.writeHead(200, { "content-type": "audio/basic" }); // chunked, endless
      const pump = () => {
        while (res.write(Buffer.alloc(8192, 0x7f)));
      };
      res.on("drain", pump);
      res.on("close", closed);
      pump();
    });
    await refused(fetchPlayAudio(`${base}/endless.ul`, { ...limits, maxBytes: 20_000 }), /more than the 20000-byte limit/);
    await stopped;
  });

  it("content that is not WAV or raw mu-law is refused even when labelled mu-law", async () => {
    const bodies: Record<string, [string, Uint8Array]> = {
      "/id3.ul": ["audio/basic", Buffer.concat([Buffer.from("ID3\x04\x00"), Buffer.alloc(200)])],
      "/page.ul": ["audio/x-mulaw", Buffer.from("<!DOCTYPE html><html><body>Not found</body></html>")],
      "/ogg": ["application/octet-stream", Buffer.concat([Buffer.from("OggS"), Buffer.alloc(200)])],
      "/avi.wav": ["audio/wav", Buffer.concat([Buffer.from("RIFF\x10\x00\x00\x00AVI "), Buffer.alloc(200)])],
      "/plain": ["text/plain", Buffer.from("hello")],
    };
    const base = await server((req, res) => {
      const [type, body] = bodies[req.url ?? ""]!;
      res.writeHead(200, { "content-type": type }).end(body);
    });
    await refused(fetchPlayAudio(`${base}/id3.ul`, limits), /the file is MP3, not WAV or raw mu-law/);
    await refused(fetchPlayAudio(`${base}/page.ul`, limits), /the file is HTML or XML/);
    await refused(fetchPlayAudio(`${base}/ogg`, limits), /the file is Ogg/);
    await refused(fetchPlayAudio(`${base}/avi.wav`, limits), /a RIFF file that is not WAVE/);
    await refused(fetchPlayAudio(`${base}/plain`, limits), /unsupported audio type "text\/plain"/);
  });

  it("through a call's relay session: a refused play is an error frame to the app, and the session goes on", async () => {
    const base = await server((_req, res) => void res.writeHead(302, { location: "file:///etc/passwd" }).end());
    const app = await RelayApp.start({});
    cleanups.push(() => app.close());
    const host = new RecordingHost();
    const responder = new RelayResponder({ url: app.url });
    cleanups.push(() => responder.close("test over"));
    await responder.open(host);
    await app.waitFor(() => app.sessions.length === 1 && !!app.session.setup, "setup");
    app.session.play(`${base}/x.ul`);
    await app.session.say(["Still here."]);
    await app.waitFor(() => app.session.of("error").length === 1, "error frame");
    expect(String(app.session.of("error")[0]!.description)).toMatch(/x\.ul: only http\(s\) URLs are fetched, not file:/);
    await host.waitFor(() => host.says.length === 1, "the text after it");
    expect(host.plays).toEqual([]);
  });
});
