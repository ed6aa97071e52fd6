import formbody from "@fastify/formbody";
import Fastify, { LogController, type FastifyInstance } from "fastify";
import { CallManager, CapacityError } from "../call/call-manager.ts";
import type { Services } from "../call/services.ts";
import { publicOrigin } from "../config.ts";
import { isSafeCallId } from "../store/call-store.ts";
import { isValidWebhook, webhookUrl } from "../telephony/signature.ts";
import { connectStreamTwiml, rejectTwiml } from "../telephony/twiml.ts";
import { attachMediaStreams, STREAM_PATH } from "./media-stream.ts";

export interface App {
  fastify: FastifyInstance;
  manager: CallManager;
  /** Start listening; resolves with the bound port. */
  listen(): Promise<number>;
  close(): Promise<void>;
}

export function buildApp(services: Services): App {
  const { config, log } = services;
  // Per-request lines would drown the call events; our handlers log what matters.
  const logController = new LogController({ disableRequestLogging: true });
  const fastify = Fastify({ loggerInstance: log, bodyLimit: 64 * 1024, logController }) as unknown as FastifyInstance;
  const manager = new CallManager(services);
  const counters: Record<string, number> = {};
  let boundPort = config.port;
  const origin = () => publicOrigin(config, boundPort);

  fastify.register(formbody);

  /** With an auth token configured, a webhook without a valid signature is refused. */
  const signed = (req: import("fastify").FastifyRequest): boolean => {
    if (!config.twilioAuthToken) return true;
    const sig = req.headers["x-twilio-signature"];
    const url = webhookUrl(origin(), req.url);
    const ok = isValidWebhook(config.twilioAuthToken, typeof sig === "string" ? sig : undefined, url, (req.body ?? {}) as Record<string, unknown>);
    if (!ok) log.warn({ url, remote: req.ip }, "webhook refused: missing or invalid X-Twilio-Signature");
    return ok;
  };

  fastify.get("/healthz", async () => ({ ok: true, liveCalls: manager.liveCount, vad: services.vad.stats(), protocolErrors: counters }));

  fastify.post("/voice/webhook", async (req, reply) => {
    if (!signed(req)) return reply.code(403).send("invalid signature\n");
    const body = (req.body ?? {}) as Record<string, string>;
    const callSid = body.CallSid;
    reply.type("text/xml");
    if (!callSid || !isSafeCallId(callSid)) return reply.code(400).type("text/plain").send("CallSid is required\n");
    try {
      const { token } = manager.announce({ callSid, from: body.From, to: body.To, direction: body.Direction ?? "inbound" });
      const o = origin();
      const streamUrl = `${o.protocol === "https:" ? "wss:" : "ws:"}//${o.host}${STREAM_PATH}`;
      log.info({ callSid, from: body.From, to: body.To }, "incoming call answered with a media stream");
      return connectStreamTwiml({ streamUrl, parameters: { token, callSid } });
    } catch (err) {
      if (err instanceof CapacityError) {
        log.warn({ callSid }, `call rejected: ${err.message}`);
        return rejectTwiml("busy");
      }
      throw err;
    }
  });

  fastify.get<{ Params: { callSid: string } }>("/api/calls/:callSid", async (req, reply) => {
    const { callSid } = req.params;
    if (!isSafeCallId(callSid)) return reply.code(400).send({ error: "invalid call id" });
    const rec = manager.recordOf(callSid) ?? (await services.store.read(callSid));
    if (!rec) return reply.code(404).send({ error: `no call ${callSid}` });
    return { ...rec, live: !!manager.get(callSid)?.live };
  });

  const wss = attachMediaStreams(fastify.server, { manager, log, authToken: config.twilioAuthToken, publicOrigin: origin, counters });

  return {
    fastify,
    manager,
    async listen() {
      await fastify.listen({ port: config.port, host: config.host });
      const addr = fastify.server.address();
      boundPort = typeof addr === "object" && addr ? addr.port : config.port;
      return boundPort;
    },
    async close() {
      manager.shutdown();
      // Sockets that never became calls, or whose peer does not answer the close handshake, must not hold shutdown.
      for (const ws of wss.clients) ws.close(1001, "server shutting down");
      const kill = setTimeout(() => wss.clients.forEach((ws) => ws.terminate()), 1000);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await fastify.close();
      clearTimeout(kill);
    },
  };
}
