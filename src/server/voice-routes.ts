import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { CapacityError, RequestError, type CallManager } from "../call/call-manager.ts";
import type { Services } from "../call/services.ts";
import { isSafeCallId } from "../store/call-store.ts";
import { rejectTwiml } from "../telephony/twiml.ts";
import { verifyTwilioSignature } from "./security.ts";
import { replayKey as replayKeyOf, type ReplayGuard } from "../state/replay.ts";
import { StateUnavailableError } from "../state/redis-client.ts";
import { webhookParams } from "./webhook-body.ts";

export const VOICE_PATHS = { webhook: "/voice/webhook", status: "/voice/status", connectAction: "/voice/connect-action", amd: "/voice/amd" } as const;

type Handler = (req: FastifyRequest, body: Record<string, string>, reply: FastifyReply) => Promise<unknown>;

/**
 * Twilio's webhooks: the voice webhook (inbound calls), call status callbacks, and the <Connect action> that asks for
 * a new stream after one ended. With an auth token configured, each must carry a valid X-Twilio-Signature (403), and
 * a request already handled is refused as a replay (409). The replay check is one step (claimed as it is checked,
 * given back if the request fails), so two copies arriving together at one instance or two let exactly one through.
 */
export function registerVoiceRoutes(fastify: FastifyInstance, services: Services, manager: CallManager, replay: ReplayGuard, origin: () => URL): void {
  const { config, log } = services;

  const twilioWebhook = (handler: Handler) => async (req: FastifyRequest, reply: FastifyReply) => {
    const body = webhookParams(req.body);
    const raw = (req as FastifyRequest & { rawBody?: string }).rawBody ?? "";
    let replayKey: string | null = null;
    if (config.twilioAuthToken) {
      const sig = req.headers["x-twilio-signature"];
      const url = new URL(req.url, origin()).toString();
      if (!verifyTwilioSignature(config.twilioAuthToken, typeof sig === "string" ? sig : undefined, url, req.headers["content-type"], raw)) {
        log.warn({ url, remote: req.ip }, "webhook refused: missing or invalid X-Twilio-Signature");
        return reply.code(403).type("text/plain").send("invalid signature\n");
      }
      const key = replayKeyOf(sig as string, url, raw);
      if (!(await replay.claim(key))) {
        log.warn({ url, remote: req.ip, callSid: body.CallSid }, "webhook refused: replay of a request already handled");
        return reply.code(409).type("text/plain").send("replayed request\n");
      }
      replayKey = key;
    }
    let result: unknown;
    try {
      result = await handler(req, body, reply);
    } catch (err) {
      // Not handled: Twilio's retry of this very request must get through.
      if (replayKey) await replay.forget(replayKey).catch(() => {});
      throw err;
    }
    if (replayKey && reply.statusCode >= 400) await replay.forget(replayKey).catch(() => {});
    return result;
  };

  fastify.post(
    VOICE_PATHS.webhook,
    twilioWebhook(async (_req, body, reply) => {
      const callSid = body.CallSid;
      if (!callSid || !isSafeCallId(callSid)) return reply.code(400).type("text/plain").send("CallSid is required\n");
      reply.type("text/xml");
      const from = body.From ?? "";
      const refusal = inboundRefusal(config.inboundPolicy, config.inboundAllowlist, from);
      if (refusal) {
        log.warn({ callSid, from }, `inbound call from ${from || "an unknown number"} rejected: ${refusal}`);
        return rejectTwiml("rejected");
      }
      try {
        const twiml = await manager.answerInbound({ callSid, from: body.From, to: body.To });
        log.info({ callSid, from: body.From, to: body.To }, "incoming call answered with a media stream");
        return twiml;
      } catch (err) {
        if (err instanceof CapacityError || err instanceof StateUnavailableError) {
          log.warn({ callSid, from }, `inbound call rejected as busy: ${err.message}`);
          return rejectTwiml("busy");
        }
        if (err instanceof RequestError) return reply.code(err.status).type("text/plain").send(`${err.message}\n`);
        throw err;
      }
    }),
  );

  fastify.post(
    VOICE_PATHS.status,
    twilioWebhook(async (_req, body, reply) => {
      const { CallSid: callSid, CallStatus: status } = body;
      if (!callSid || !status) return reply.code(400).type("text/plain").send("CallSid and CallStatus are required\n");
      const outcome = await manager.status(callSid, status, body.SequenceNumber, body);
      log.debug({ callSid, status, outcome }, "call status callback");
      return reply.code(outcome === "unknown" ? 404 : 200).send({ outcome });
    }),
  );

  // Twilio's asynchronous answering-machine detection (TWILIO_AMD): who answered, as evidence for screening.
  fastify.post(
    VOICE_PATHS.amd,
    twilioWebhook(async (_req, body, reply) => {
      const { CallSid: callSid, AnsweredBy: answeredBy } = body;
      if (!callSid || !answeredBy) return reply.code(400).type("text/plain").send("CallSid and AnsweredBy are required\n");
      const duration = Number(body.MachineDetectionDuration);
      const call = manager.get(callSid);
      call?.onCarrierAmd(answeredBy, Number.isFinite(duration) ? duration : null);
      log.debug({ callSid, answeredBy, known: !!call }, "answering-machine detection");
      return reply.code(call ? 200 : 404).send({ outcome: call ? "applied" : "unknown" });
    }),
  );

  fastify.post(
    VOICE_PATHS.connectAction,
    twilioWebhook(async (_req, body, reply) => {
      const callSid = body.CallSid;
      if (!callSid) return reply.code(400).type("text/plain").send("CallSid is required\n");
      const { twiml, resumed } = await manager.resumeTwiml(callSid);
      log.info({ callSid, resumed }, resumed ? "stream ended while the call is up: handing Twilio a new stream" : "stream ended: hanging up");
      return reply.type("text/xml").send(twiml);
    }),
  );
}

/** Why an inbound call is refused under the policy, with how to allow it; null when allowed. */
export function inboundRefusal(policy: "open" | "allowlist" | "disabled", allowlist: string[], from: string): string | null {
  if (policy === "disabled") return "INBOUND_POLICY=disabled; set INBOUND_POLICY=open, or allowlist with INBOUND_ALLOWLIST, to accept calls";
  if (policy === "allowlist" && !allowlist.includes(from))
    return `INBOUND_POLICY=allowlist and ${from || "the caller"} is not in INBOUND_ALLOWLIST; add it (E.164, comma-separated) to accept this caller`;
  return null;
}
