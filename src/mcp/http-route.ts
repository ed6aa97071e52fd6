/**
 * MCP over Streamable HTTP at `/mcp`, inside the service. Stateless: each POST gets its own McpServer and transport
 * (a stateless transport cannot be reused), so nothing is kept between requests and any instance can answer. Replies
 * are Server-Sent Events, not plain JSON, because JSON replies silently drop the progress notifications
 * wait_for_call sends. GET (a standalone notification stream) and DELETE (end a session) have no meaning without
 * sessions: 405, which MCP clients take as "no standalone stream" and carry on.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { bearerMatches } from "../server/security.ts";
import type { ParleyApi } from "./api.ts";
import { HttpParleyApi } from "./http-api.ts";
import { injectFetch } from "./inject-fetch.ts";
import { createMcpServer } from "./server.ts";

export const MCP_PATH = "/mcp";

export interface McpRouteOptions {
  /** API_TOKEN: required as a bearer token on /mcp when set, and carried to the control API. */
  apiToken?: string;
  /** The API the tools drive for one request; by default this service's own control API, in-process. */
  apiFor?: (req: FastifyRequest) => ParleyApi;
}

export function registerMcpRoute(fastify: FastifyInstance, opts: McpRouteOptions = {}): void {
  const { apiToken } = opts;
  // The control API's routes, answered in-process for the MCP client's own address (see inject-fetch.ts).
  const apiFor = opts.apiFor ?? ((req: FastifyRequest) => new HttpParleyApi({ url: "http://parley.internal", token: apiToken, fetch: injectFetch(fastify, req.ip) }));

  const authorize = async (req: FastifyRequest, reply: FastifyReply) => {
    if (apiToken && !bearerMatches(req.headers.authorization, apiToken))
      return reply.code(401).header("www-authenticate", 'Bearer realm="parley"').send({ error: "missing or invalid bearer token (API_TOKEN)" });
  };

  fastify.post(MCP_PATH, { onRequest: authorize }, async (req, reply) => {
    const server = createMcpServer(apiFor(req));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    reply.hijack(); // the transport writes the response itself
    // The client went away or the reply is complete: end the server, which also aborts a tool still waiting.
    reply.raw.on("close", () => {
      void transport.close();
      void server.close();
    });
    try {
      await server.connect(transport);
      // fastify has parsed the JSON body already; the transport must not read the stream again.
      await transport.handleRequest(req.raw, reply.raw, req.body);
    } catch (err) {
      req.log.error({ err }, "MCP request failed");
      if (!reply.raw.headersSent) reply.raw.writeHead(500, { "content-type": "application/json" });
      reply.raw.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32603, message: "internal error" }, id: null }));
    }
  });

  const notAllowed = async (_req: FastifyRequest, reply: FastifyReply) =>
    reply.code(405).header("allow", "POST").send({ error: "this MCP endpoint is stateless: POST JSON-RPC requests to it" });
  fastify.get(MCP_PATH, { onRequest: authorize }, notAllowed);
  fastify.delete(MCP_PATH, { onRequest: authorize }, notAllowed);
}
