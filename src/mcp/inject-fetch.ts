/**
 * A fetch function that answers from this process's own fastify routes (`fastify.inject`), for the `/mcp` route.
 *
 * Why not a request to our own port: the service may listen on any HOST (0.0.0.0, ::, one interface, behind a tunnel
 * whose public URL is not reachable from inside), and requests from loopback would all share one rate-limit bucket,
 * so one busy MCP client could starve the others. Injected requests carry the MCP client's own address instead, and
 * still run every hook, validator and error handler of the control API, with no socket.
 */
import { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { FetchLike } from "./http-api.ts";

const NO_BODY = new Set([101, 204, 205, 304]);

export function injectFetch(fastify: FastifyInstance, remoteAddress: string): FetchLike {
  return async (url, init) => {
    const u = new URL(url);
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((v, k) => (headers[k] = v));
    const signal = init.signal ?? undefined;
    signal?.throwIfAborted();
    const res = await fastify.inject({
      method: (init.method ?? "GET") as "GET",
      url: u.pathname + u.search,
      headers,
      remoteAddress,
      ...(typeof init.body === "string" ? { payload: init.body } : {}),
      // Resolves at the response head, so a Server-Sent Events stream can be read while the route still writes it.
      payloadAsStream: true,
      // An abort closes the injected request, as a socket closing would: the events route then unsubscribes.
      ...(signal ? { signal } : {}),
    });
    const out = new Headers();
    for (const [k, v] of Object.entries(res.headers)) {
      if (Array.isArray(v)) for (const one of v) out.append(k, String(one));
      else if (v !== undefined) out.set(k, String(v));
    }
    const stream = res.stream();
    if (NO_BODY.has(res.statusCode)) {
      stream.resume();
      return new Response(null, { status: res.statusCode, headers: out });
    }
    return new Response(Readable.toWeb(stream) as ReadableStream<Uint8Array>, { status: res.statusCode, headers: out });
  };
}
