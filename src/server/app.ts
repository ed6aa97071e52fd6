import Fastify, { LogController, type FastifyError, type FastifyInstance } from "fastify";
import { CallManager, CapacityError, RequestError } from "../call/call-manager.ts";
import type { Services } from "../call/services.ts";
import { publicOrigin } from "../config.ts";
import { bearerOf, registerControlApi } from "./control-api.ts";
import { DEBUG_PAGE } from "./debug-page.ts";
import { renderChart } from "../chart/statechart.ts";
import { callMachine } from "../../machines/call.machine.ts";
import { attachMediaStreams } from "./media-stream.ts";
import { bearerMatches, redactUrl } from "./security.ts";
import { createSharedState, type SharedState } from "../state/shared-state.ts";
import { StateUnavailableError } from "../state/redis-client.ts";
import { CommandBus, RemoteCommandError } from "../state/call-commands.ts";
import { clientAddress, trustProxies } from "./client-address.ts";
import { registerPhonePage } from "./phone-page.ts";
import { registerVoiceRoutes } from "./voice-routes.ts";
import { registerMcpRoute } from "../mcp/http-route.ts";
import { parseFormBody, parseJsonBody } from "./webhook-body.ts";

export interface App {
  fastify: FastifyInstance;
  manager: CallManager;
  /** Tokens, replay guard, rate limits, the cap and call ownership: in memory, or in Redis (REDIS_URL). */
  state: SharedState;
  /** Start listening; resolves with the bound port. */
  listen(): Promise<number>;
  close(): Promise<void>;
}

export function buildApp(given: Services): App {
  const { config, log, clock } = given;
  // Per-request lines would drown the call events; our handlers log what matters.
  const logController = new LogController({ disableRequestLogging: true });
  // X-Forwarded-For only from the proxies named in TRUST_PROXY (see client-address.ts); req.ip follows it.
  const trusted = trustProxies(config.trustProxy);
  const fastify = Fastify({
    trustProxy: (address: string) => trusted(address),
    loggerInstance: log,
    bodyLimit: 64 * 1024,
    logController,
    // Unknown fields are a client's mistake worth telling about, not something to drop silently.
    ajv: { customOptions: { removeAdditional: false } },
  }) as unknown as FastifyInstance;
  let boundPort = config.port;
  const origin = () => publicOrigin(config, boundPort);
  // A call this instance lost to another (its lease renewal refused) is let go here.
  const state = createSharedState(config, clock, given.redis, log, (callSid) => manager.lose(callSid));
  // Shared records: every journal line is also appended to Redis (the journal on disk stays the durable copy).
  const services: Services = state.records ? { ...given, store: given.store.withMirror(state.records) } : given;
  // In a fleet, each instance's /metrics says whose they are (a single instance's series stay as they were).
  if (state.kind === "redis") services.metrics?.registry.setDefaultLabels({ instance: state.instanceId });
  // Streams go straight to the instance that runs the call (INSTANCE_URL); webhooks go through PUBLIC_URL.
  const streamOrigin = () => (config.instanceUrl ? new URL(config.instanceUrl) : origin());
  const manager: CallManager = new CallManager(
    services,
    () => {
      const so = streamOrigin();
      return { webhookOrigin: origin().origin, streamOrigin: `${so.protocol === "https:" ? "wss:" : "ws:"}//${so.host}` };
    },
    state,
  );
  // Commands for calls another instance runs, and theirs for ours, over Redis pub/sub.
  if (services.redis) manager.commands = new CommandBus(services.redis, state.instanceId, (callSid, op, args) => manager.execute(callSid, op, args), log);
  const counters: Record<string, number> = {};

  // Signatures are computed over the exact bytes Twilio sent, so keep them next to the parsed body.
  const keepRaw =
    (parse: (raw: string) => unknown) =>
    (req: import("fastify").FastifyRequest, body: string | Buffer, done: (err: Error | null, value?: unknown) => void): void => {
      const raw = body.toString();
      (req as { rawBody?: string }).rawBody = raw;
      try {
        done(null, parse(raw));
      } catch (err) {
        (err as FastifyError).statusCode = 400;
        done(err as Error);
      }
    };
  fastify.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, keepRaw(parseFormBody));
  fastify.addContentTypeParser("application/json", { parseAs: "string" }, keepRaw(parseJsonBody));

  fastify.addHook("onRequest", async (req, reply) => {
    if (!(await state.rateLimit.take(req.ip))) {
      log.warn({ remote: req.ip, url: redactUrl(req.url) }, "rate limit exceeded");
      return reply.code(429).header("retry-after", "1").send({ error: `rate limit exceeded (RATE_LIMIT_PER_MINUTE=${config.rateLimitPerMinute})` });
    }
  });

  fastify.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) return reply.code(400).send({ error: `invalid request: ${err.message}` });
    if (err instanceof RequestError) return reply.code(err.status).send({ error: err.message });
    if (err instanceof CapacityError) return reply.code(503).header("retry-after", String(err.retryAfterS)).send({ error: `busy: ${err.message}` });
    if (err instanceof RemoteCommandError) return reply.code(err.status).send({ error: err.message });
    if (err instanceof StateUnavailableError) return reply.code(503).header("retry-after", "5").send({ error: err.message });
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ error: err.message });
    log.error({ err, url: redactUrl(req.url) }, "request failed");
    return reply.code(500).send({ error: "internal error" });
  });

  // Unhealthy while the fleet's shared state is unreachable: live calls go on, new ones are refused until it is back.
  fastify.get("/healthz", async (_req, reply) => {
    const problem = state.problem();
    const body = { ok: !problem, liveCalls: manager.liveCount, vad: services.vad.stats(), protocolErrors: counters };
    // SIGTERM: the load balancer must send new calls elsewhere while this instance's calls finish.
    if (manager.isDraining) return reply.code(503).send({ ...body, ok: false, status: "draining", instance: state.instanceId });
    return problem ? reply.code(503).send({ ...body, redis: problem }) : body;
  });

  // The pipeline's own timing (exact percentiles), for the capacity benchmark and for operators.
  const statsAuth = async (req: import("fastify").FastifyRequest, reply: import("fastify").FastifyReply) => {
    if (config.apiToken && !bearerMatches(bearerOf(req), config.apiToken)) return reply.code(401).send({ error: "missing or invalid bearer token (API_TOKEN)" });
  };
  // The visualizer: the chart is drawn once, from the machine definition.
  let chart: Promise<string> | null = null;
  fastify.get("/debug", { onRequest: statsAuth }, async (_req, reply) => reply.type("text/html; charset=utf-8").send(DEBUG_PAGE));
  fastify.get("/debug/chart.svg", { onRequest: statsAuth }, async (_req, reply) => {
    chart ??= renderChart(callMachine);
    return reply.type("image/svg+xml").send(await chart);
  });
  fastify.get("/debug/stats", { onRequest: statsAuth }, async () => {
    const redis = state.stats();
    return {
      liveCalls: manager.liveCount,
      ...services.stats.snapshot(),
      vad: services.vad.stats(),
      stt: { provider: services.stt.name, ...services.stt.stats?.() },
      ...(redis ? { redis, records: state.records?.stats() } : {}),
    };
  });
  fastify.post("/debug/stats/reset", { onRequest: statsAuth }, async () => {
    services.stats.reset();
    services.vad.resetTiming();
    services.redis?.resetStats();
    return { ok: true };
  });
  // Starts the "sinceMark" figures afresh (e.g. once every call of a load test is live).
  fastify.post("/debug/stats/mark", { onRequest: statsAuth }, async () => {
    services.stats.mark();
    services.vad.resetTiming();
    return { ok: true };
  });

  fastify.get("/metrics", async (req, reply) => {
    if (config.apiToken && !bearerMatches(req.headers.authorization, config.apiToken)) return reply.code(401).send({ error: "missing or invalid bearer token (API_TOKEN)" });
    services.metrics.liveCalls.set(manager.liveCount);
    return reply.type(services.metrics.registry.contentType).send(await services.metrics.registry.metrics());
  });

  registerVoiceRoutes(fastify, services, manager, state.replay, origin);
  registerControlApi(fastify, services, manager);
  registerMcpRoute(fastify, { apiToken: config.apiToken });
  if (config.softphone) registerPhonePage(fastify);

  const wss = attachMediaStreams(fastify.server, {
    manager,
    log,
    carriers: services.carriers,
    publicOrigin: streamOrigin,
    counters,
    clientOf: (req) => clientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"], trusted),
    allowUpgrade: (ip) => state.rateLimit.take(ip),
    limits: config,
  });

  return {
    fastify,
    manager,
    state,
    async listen() {
      await fastify.listen({ port: config.port, host: config.host });
      const addr = fastify.server.address();
      boundPort = typeof addr === "object" && addr ? addr.port : config.port;
      // Where other instances hand this one's calls back (a <Connect action> that lands elsewhere).
      await manager.commands?.start();
      if (state.kind === "redis") await manager.directory.register(state.instanceId, streamOrigin().toString()).catch((err: Error) => log.warn({ err: err.message }, "could not register INSTANCE_URL in Redis"));
      return boundPort;
    },
    async close() {
      manager.shutdown();
      // Their last lines into the shared record, then their leases back, before the connection goes.
      await manager.settled();
      // Sockets that never became calls, or whose peer does not answer the close handshake, must not hold shutdown.
      for (const ws of wss.clients) ws.close(1001, "server shutting down");
      const kill = setTimeout(() => wss.clients.forEach((ws) => ws.terminate()), 1000);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await fastify.close();
      clearTimeout(kill);
      state.close();
      manager.commands?.close();
    },
  };
}
