import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Carrier, CarrierEvent, CarrierReply, RawRequest } from "../carriers/carrier.ts";
import { CapacityError, RequestError, type CallManager } from "../call/call-manager.ts";
import type { Services } from "../call/services.ts";
import type { ReplayGuard } from "../state/replay.ts";
import { StateUnavailableError } from "../state/redis-client.ts";
import { errorMessage } from "../util/errors.ts";

/**
 * Each carrier's webhooks, on its own paths (`carrier.paths`: Twilio's `/voice/webhook`, `/voice/status` and
 * `/voice/connect-action`, as they always were; Telnyx's `/telnyx/webhook`). One handler serves them all: the carrier
 * verifies the request (403 when refused: signature, clock skew), a request already handled is refused as a replay
 * (409), and the carrier says what the request means in Parley's words (`CarrierEvent`), which is acted on here. The
 * replay check is one step (claimed as it is checked, given back if the request fails), so two copies arriving
 * together at one instance or two let exactly one through.
 */
export function registerVoiceRoutes(fastify: FastifyInstance, services: Services, manager: CallManager, replay: ReplayGuard, origin: () => URL): void {
  const { log } = services;
  for (const carrier of services.carriers.all) {
    const paths = new Set([carrier.paths.webhook, carrier.paths.status, carrier.paths.resume].filter((p): p is string => !!p));
    for (const path of paths) fastify.post(path, (req, reply) => handle(carrier, req, reply));
  }

  const handle = async (carrier: Carrier, req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const raw: RawRequest = {
      method: req.method,
      url: new URL(req.url, origin()).toString(),
      headers: req.headers,
      body: (req as FastifyRequest & { rawBody?: string }).rawBody ?? "",
    };
    const verified = await carrier.verifyWebhook(raw);
    if (!verified.ok) {
      log.warn({ carrier: carrier.name, url: raw.url, remote: req.ip }, `webhook refused: ${verified.reason}`);
      return reply.code(verified.status).type("text/plain").send("invalid signature\n");
    }
    const key = verified.replayKey;
    if (key && !(await replay.claim(key))) {
      log.warn({ carrier: carrier.name, url: raw.url, remote: req.ip }, "webhook refused: replay of a request already handled");
      return reply.code(409).type("text/plain").send("replayed request\n");
    }
    let result: unknown;
    try {
      result = await act(carrier, carrier.event(raw), reply);
    } catch (err) {
      // Not handled: the carrier's retry of this very request must get through.
      if (key) await replay.forget(key).catch(() => {});
      throw err;
    }
    if (key && reply.statusCode >= 400) await replay.forget(key).catch(() => {});
    return result;
  };

  /** Answer with the carrier's document: in the response (TwiML), or as a REST command after an empty 200 (Telnyx). */
  const send = async (carrier: Carrier, reply: FastifyReply, doc: CarrierReply, carrierCallId: string): Promise<unknown> => {
    if (doc.via === "response") return reply.type(doc.contentType).send(doc.body);
    if (!carrier.command) throw new Error(`${carrier.name} answers by command but has no command()`);
    await carrier.command(carrierCallId, doc);
    return reply.code(200).send({ ok: true });
  };

  const act = async (carrier: Carrier, ev: CarrierEvent, reply: FastifyReply): Promise<unknown> => {
    switch (ev.kind) {
      case "invalid":
        return reply.code(400).type("text/plain").send(`${ev.reason}\n`);
      case "ignored":
        log.debug({ carrier: carrier.name, why: ev.why }, "carrier webhook ignored");
        return reply.code(200).send({ ok: true });
      case "incoming":
        return ev.callId ? answerPlaced(carrier, ev.callId, ev.carrierCallId, reply) : answerInbound(carrier, ev, reply);
      case "status": {
        const callSid = ev.callId ?? (carrier.callIds === "carrier" ? ev.carrierCallId : undefined);
        if (!callSid) return reply.code(200).send({ outcome: "unknown" });
        const { kind: _k, carrierCallId: _c, callId: _i, ...update } = ev;
        const outcome = await manager.status(callSid, update);
        log.debug({ carrier: carrier.name, callSid, status: ev.status, carrierStatus: ev.carrierStatus, outcome }, "call status");
        return reply.code(outcome === "unknown" ? 404 : 200).send({ outcome });
      }
      case "stream-ended": {
        const callSid = ev.callId ?? (carrier.callIds === "carrier" ? ev.carrierCallId : undefined);
        if (!callSid) return reply.code(200).send({ ok: true });
        const { reply: doc, resumed } = await manager.resume(carrier, callSid, ev.carrierCallId);
        log.info({ carrier: carrier.name, callSid, resumed }, resumed ? "stream ended while the call is up: handing the carrier a new stream" : "stream ended: hanging up");
        if (!doc) return reply.code(200).send({ ok: true });
        return send(carrier, reply, doc, ev.carrierCallId);
      }
    }
  };

  const answerInbound = async (carrier: Carrier, ev: Extract<CarrierEvent, { kind: "incoming" }>, reply: FastifyReply): Promise<unknown> => {
    const { config } = services;
    const refusal = inboundRefusal(config.inboundPolicy, config.inboundAllowlist, ev.from);
    if (refusal) {
      log.warn({ carrier: carrier.name, carrierCallId: ev.carrierCallId, from: ev.from }, `inbound call from ${ev.from || "an unknown number"} rejected: ${refusal}`);
      return send(carrier, reply, carrier.reject("rejected", ev.carrierCallId), ev.carrierCallId);
    }
    let doc: CarrierReply;
    try {
      doc = await manager.answerInbound(carrier, { carrierCallId: ev.carrierCallId, from: ev.from, to: ev.to });
    } catch (err) {
      if (err instanceof CapacityError || err instanceof StateUnavailableError) {
        log.warn({ carrier: carrier.name, carrierCallId: ev.carrierCallId, from: ev.from }, `inbound call rejected as busy: ${err.message}`);
        return send(carrier, reply, carrier.reject("busy", ev.carrierCallId), ev.carrierCallId);
      }
      if (err instanceof RequestError) return reply.code(err.status).type("text/plain").send(`${err.message}\n`);
      throw err;
    }
    log.info({ carrier: carrier.name, carrierCallId: ev.carrierCallId, from: ev.from, to: ev.to }, "incoming call answered with a media stream");
    try {
      return await send(carrier, reply, doc, ev.carrierCallId);
    } catch (err) {
      // The carrier refused our answer command: the call cannot go on, and it must not hold a slot.
      log.error({ carrier: carrier.name, carrierCallId: ev.carrierCallId, err: errorMessage(err) }, "could not answer the call");
      manager.abandon(ev.carrierCallId, carrier, `could not answer: ${errorMessage(err)}`);
      return reply.code(502).type("text/plain").send("could not answer the call\n");
    }
  };

  const answerPlaced = async (carrier: Carrier, callSid: string, carrierCallId: string, reply: FastifyReply): Promise<unknown> => {
    const doc = await manager.answerPlaced(carrier, callSid);
    if (!doc) return send(carrier, reply, carrier.resume ? carrier.resume(null, carrierCallId) : carrier.reject("rejected", carrierCallId), carrierCallId);
    return send(carrier, reply, doc, carrierCallId);
  };
}

/** Why an inbound call is refused under the policy, with how to allow it; null when allowed. */
export function inboundRefusal(policy: "open" | "allowlist" | "disabled", allowlist: string[], from: string): string | null {
  if (policy === "disabled") return "INBOUND_POLICY=disabled; set INBOUND_POLICY=open, or allowlist with INBOUND_ALLOWLIST, to accept calls";
  if (policy === "allowlist" && !allowlist.includes(from))
    return `INBOUND_POLICY=allowlist and ${from || "the caller"} is not in INBOUND_ALLOWLIST; add it (E.164, comma-separated) to accept this caller`;
  return null;
}
