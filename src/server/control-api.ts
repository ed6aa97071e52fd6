import type { CallCommands } from "../state/call-commands.ts";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { RequestError, type CallManager } from "../call/call-manager.ts";
import type { TransferRequest } from "../call/transfer.ts";
import { AskError } from "../responders/assistant.ts";
import type { Services } from "../call/services.ts";
import type { RecordEvent } from "../store/call-record.ts";
import { PHONE_STREAM_PATH } from "./media-stream.ts";
import { bearerMatches } from "./security.ts";
import { registerRecordingRoute } from "./recording-route.ts";
import { E164_PATTERN as E164 } from "../util/e164.ts";


/** The bearer token: the header, or `access_token` in the query for EventSource and pages, which cannot set headers. */
export function bearerOf(req: FastifyRequest): string | undefined {
  const q = (req.query as Record<string, unknown> | undefined)?.access_token;
  return req.headers.authorization ?? (typeof q === "string" ? `Bearer ${q}` : undefined);
}
const callSidParam = { type: "object", required: ["callSid"], properties: { callSid: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" } } } as const;
const error = { type: "object", properties: { error: { type: "string" } } } as const;

/** JSON schemas: fastify validates requests with them, and the OpenAPI description is built from the same objects. */
export const schemas = {
  createCall: {
    type: "object",
    required: ["to"],
    additionalProperties: false,
    properties: {
      to: { type: "string", pattern: E164, description: "E.164 number to call" },
      from: { type: "string", pattern: E164, description: "Caller ID; defaults to TWILIO_FROM_NUMBER" },
      mode: { type: "string", enum: ["conversation", "notify"], default: "conversation" },
      message: { type: "string", minLength: 1, maxLength: 1000, description: "Spoken as soon as the callee answers (required for notify)" },
      instructions: { type: "string", minLength: 1, maxLength: 20000, description: "The brief: what this call is for, for the agent" },
      voice: { type: "string", minLength: 1, maxLength: 100 },
      language: { type: "string", description: "BCP-47, e.g. en-US" },
      tools: { type: "array", items: { type: "string" }, description: "Names of user tools (AGENT_TOOLS_MODULE) this call may use" },
      agent: {
        description: '"llm" (default), "assistant" (turns driven by POST /api/calls/:id/ask), or {"relay": "wss://..."} (a ConversationRelay app)',
        oneOf: [
          { type: "string", enum: ["llm", "assistant"] },
          { type: "object", required: ["relay"], additionalProperties: false, properties: { relay: { type: "string" }, customParameters: { type: "object", additionalProperties: { type: "string" } } } },
        ],
      },
      outcomeSchema: { type: "object", description: "JSON Schema the outcome's data must satisfy" },
      outcomeWebhook: { type: "string", description: "POSTed the outcome, signed (X-Parley-Signature)" },
      metadata: { type: "object", description: "Anything; returned in the record and the outcome" },
      filler: { type: "string", minLength: 1, maxLength: 200, description: "Assistant-driven calls: said while the assistant thinks" },
      record: { type: "boolean", description: "Record the call (stereo WAV, caller left, Parley right; GET /api/calls/:id/recording); default RECORD_CALLS" },
      recordingNotice: { type: "string", minLength: 1, maxLength: 500, description: "Said before the first words of a recorded call; default RECORDING_NOTICE" },
      voicemail: { type: "string", enum: ["leave", "hangup", "continue"], description: "A machine answered: leave voicemailMessage after its beep, hang up, or talk as to a person; default VOICEMAIL" },
      voicemailMessage: { type: "string", minLength: 1, maxLength: 1000, description: "What is left on voicemail; default the call's message" },
    },
  },
  ask: {
    type: "object",
    required: ["text"],
    additionalProperties: false,
    properties: {
      text: { type: "string", minLength: 1, maxLength: 1000 },
      timeoutMs: { type: "integer", minimum: 1000, maximum: 300000, default: 30000, description: "From the question being asked to the callee's answer" },
    },
  },
  dtmf: {
    type: "object",
    required: ["digits"],
    additionalProperties: false,
    properties: { digits: { type: "string", pattern: "^[0-9*#]{1,64}$" } },
  },
  hangup: {
    type: "object",
    additionalProperties: false,
    properties: { message: { type: "string", minLength: 1, maxLength: 1000, description: "Said as the goodbye" } },
  },
  transfer: {
    type: "object",
    additionalProperties: false,
    properties: {
      // Not the E.164 pattern here: a bad number is refused by the transfer itself, so the refusal is on the call's record too.
      to: { type: "string", maxLength: 64, description: "E.164 number of the human; default TRANSFER_NUMBER" },
      mode: { type: "string", enum: ["cold", "warm"], description: "cold: connect the caller straight to the number; warm: call the human first, brief them, then join the calls. Default TRANSFER_MODE" },
      announcement: { type: "string", minLength: 1, maxLength: 500, description: "Said to the caller first" },
      briefing: { type: "string", minLength: 1, maxLength: 1000, description: "Warm: said to the human before joining (default: who is calling and a summary of the call so far)" },
    },
  },
  listQuery: {
    type: "object",
    additionalProperties: false,
    properties: {
      state: { type: "string", description: "live, ended, or a state name such as listening or reconnecting" },
      direction: { type: "string", enum: ["inbound", "outbound", "browser"] },
      since: { type: "integer", minimum: 0, description: "epoch milliseconds" },
      limit: { type: "integer", minimum: 1, maximum: 1000, description: "at most this many calls" },
      access_token: { type: "string", description: "the API token, for clients that cannot send headers (EventSource)" },
    },
  },
  speak: {
    type: "object",
    required: ["text"],
    additionalProperties: false,
    properties: {
      text: { type: "string", minLength: 1, maxLength: 1000 },
      interrupt: { type: "boolean", default: false, description: "Stop what is being said now instead of waiting for a pause" },
    },
  },
} as const;

type CallParams = { Params: { callSid: string } };

export function registerControlApi(fastify: FastifyInstance, services: Services, manager: CallManager): void {
  const { config } = services;

  const authorize = async (req: FastifyRequest, reply: FastifyReply) => {
    if (config.apiToken && !bearerMatches(bearerOf(req), config.apiToken))
      return reply.code(401).header("www-authenticate", 'Bearer realm="parley"').send({ error: "missing or invalid bearer token (API_TOKEN)" });
  };

  const liveCall = async (callSid: string): Promise<CallCommands> => {
    const call = manager.get(callSid);
    if (call?.live) return call;
    // Run by another instance of the fleet: the command goes to it over Redis.
    const remote = await manager.remote(callSid);
    if (remote) return remote;
    const rec = await manager.recordOf(callSid);
    throw rec ? new RequestError(`call ${callSid} is not live (${rec.endReason ?? "ended"})`, 409) : new RequestError(`no call ${callSid}`, 404);
  };

  fastify.get("/api/openapi.json", async () => openapi());

  fastify.register(async (api) => {
    api.addHook("onRequest", authorize);

    api.post<{ Body: { to: string; from?: string; mode?: "conversation" | "notify"; message?: string } & Record<string, unknown> }>(
      "/api/calls",
      { schema: { body: schemas.createCall } },
      async (req, reply) => {
        const { to, from, mode, message, ...session } = req.body;
        const call = await manager.placeOutbound({ to, ...(from ? { from } : {}), ...(mode ? { mode } : {}), ...(message ? { message } : {}), session });
        return reply.code(201).send({ ...call.record, state: call.state, live: call.live });
      },
    );

    // The softphone's call: the browser is the caller, and the token admits its stream on /phone/stream.
    api.post("/api/phone/calls", async (_req, reply) => {
      if (!config.softphone) return reply.code(404).send({ error: "the softphone is disabled (SOFTPHONE=false)" });
      const { callSid, token } = await manager.answerBrowser({ from: "softphone" });
      return reply.code(201).send({ callSid, token, streamPath: `${PHONE_STREAM_PATH}?token=${token}` });
    });

    api.get<{ Querystring: { state?: string; direction?: string; since?: number; limit?: number } }>("/api/calls", { schema: { querystring: schemas.listQuery } }, async (req) => {
      const calls = await manager.list(req.query);
      return { calls: req.query.limit ? calls.slice(0, req.query.limit) : calls };
    });

    api.get<CallParams>("/api/calls/:callSid", { schema: { params: callSidParam } }, async (req, reply) => {
      const rec = await manager.recordOf(req.params.callSid);
      return rec ?? reply.code(404).send({ error: `no call ${req.params.callSid}` });
    });

    api.post<CallParams & { Body: { text: string; interrupt: boolean } }>(
      "/api/calls/:callSid/speak",
      { schema: { params: callSidParam, body: schemas.speak } },
      async (req, reply) => {
        await (await liveCall(req.params.callSid)).say(req.body.text, req.body.interrupt);
        return reply.code(202).send({ ok: true });
      },
    );

    api.post<CallParams & { Body: { message?: string } | undefined }>(
      "/api/calls/:callSid/hangup",
      // A hang-up needs no body at all (the CLI and most clients send none); one with a message is checked.
      { schema: { params: callSidParam, body: schemas.hangup }, preValidation: async (req) => void (req.body ??= {}) },
      async (req, reply) => {
        await (await liveCall(req.params.callSid)).sayGoodbyeAndHangUp("hung up through the control API", req.body?.message);
        return reply.code(202).send({ ok: true });
      },
    );

    // An assistant's turn: say this, and answer with what the callee says next.
    api.post<CallParams & { Body: { text: string; timeoutMs: number } }>("/api/calls/:callSid/ask", { schema: { params: callSidParam, body: schemas.ask } }, async (req) => {
      const call = await liveCall(req.params.callSid);
      try {
        return await call.ask(req.body.text, req.body.timeoutMs);
      } catch (err) {
        if (err instanceof AskError) throw new RequestError(err.message, err.status);
        throw err;
      }
    });

    api.post<CallParams & { Body: { digits: string } }>("/api/calls/:callSid/dtmf", { schema: { params: callSidParam, body: schemas.dtmf } }, async (req, reply) => {
      await (await liveCall(req.params.callSid)).sendDigits(req.body.digits);
      return reply.code(202).send({ ok: true });
    });

    // Hand the call over to a human: checked at once (400 for a bad number), then carried out; the record tells how it went.
    api.post<CallParams & { Body: Omit<TransferRequest, "by"> | undefined }>(
      "/api/calls/:callSid/transfer",
      { schema: { params: callSidParam, body: schemas.transfer }, preValidation: async (req) => void (req.body ??= {}) },
      async (req, reply) => {
        const { callSid } = req.params;
        if (!manager.get(callSid)?.live) {
          if (await manager.remote(callSid)) throw new RequestError(`call ${callSid} runs on another instance: send the transfer there`, 409);
          await liveCall(callSid);
        }
        const started = manager.transfer(callSid, { ...req.body, by: "api" });
        return reply.code(202).send({ ok: true, status: "started", ...started });
      },
    );

    registerRecordingRoute(api, services, manager);

    api.get<CallParams>("/api/calls/:callSid/events", { schema: { params: callSidParam } }, async (req, reply) => {
      const { callSid } = req.params;
      const call = manager.get(callSid);
      const rec = call ? null : await manager.recordOf(callSid);
      if (!call && !rec) return reply.code(404).send({ error: `no call ${callSid}` });
      // Live on another instance of the fleet: its events come from there, over Redis.
      const owner = !call && rec?.live && (rec as { owner?: string }).owner && manager.commands ? (rec as { owner: string }).owner : null;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" });
      const send = (e: RecordEvent) => res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      const state = call ? call.state : rec!.state;
      send({ t: services.clock.now(), type: "snapshot", callSid, state, live: !!call?.live || !!owner });
      if (owner) {
        const keepalive = setInterval(() => res.write(": keepalive\n\n"), 15_000);
        let stop = () => {};
        const cleanup = () => {
          clearInterval(keepalive);
          stop();
        };
        req.raw.on("close", cleanup);
        try {
          stop = await manager.commands!.watch(owner, callSid, (e) => {
            if (e.type !== "released") return void send(e as RecordEvent);
            res.end();
            cleanup();
          });
        } catch (err) {
          send({ t: services.clock.now(), type: "error", message: (err as Error).message });
          res.end();
          cleanup();
        }
        return;
      }
      if (!call?.live) {
        // Ended: its end, then its outcome (waiting for one still being written).
        send({ t: rec?.endedAt ?? services.clock.now(), type: "end", reason: rec?.endReason ?? "ended" });
        await manager.outcomePending(callSid);
        const outcome = (await manager.recordOf(callSid))?.outcome;
        if (outcome) send({ t: outcome.createdAt, type: "outcome", outcome });
        res.end();
        return;
      }
      const keepalive = setInterval(() => res.write(": keepalive\n\n"), 15_000);
      // After `end` the stream stays open for the outcome; the call releases its observers once it is written.
      const unsubscribe = call.subscribe((e) => {
        if (e.type === "released") {
          res.end();
          cleanup();
        } else send(e);
      });
      const cleanup = () => {
        clearInterval(keepalive);
        unsubscribe();
      };
      req.raw.on("close", cleanup);
    });
  });
}

function openapi() {
  const json = (schema: object) => ({ content: { "application/json": { schema } } });
  const errors = { "400": { description: "Invalid request", ...json(error) }, "401": { description: "Missing or invalid bearer token", ...json(error) } };
  const callPath = { name: "callSid", in: "path", required: true, schema: callSidParam.properties.callSid };
  return {
    openapi: "3.1.0",
    info: { title: "Parley control API", version: "1", description: "Place, watch, steer and end phone calls. Every call runs over one Twilio Media Stream." },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "API_TOKEN" } } },
    security: [{ bearer: [] }],
    paths: {
      "/api/calls": {
        post: {
          summary: "Place an outbound call (conversation: speak the message, then converse; notify: speak it and hang up)",
          requestBody: { required: true, ...json(schemas.createCall) },
          responses: { "201": { description: "The call record, state connecting.ringing" }, ...errors, "503": { description: "Not configured for outbound calls, or at capacity", ...json(error) } },
        },
        get: {
          summary: "List calls, newest first",
          parameters: Object.entries(schemas.listQuery.properties).map(([name, schema]) => ({ name, in: "query", schema })),
          responses: { "200": { description: "{ calls: [...] }" }, ...errors },
        },
      },
      "/api/phone/calls": {
        post: {
          summary: "Start a softphone call: the browser is the caller. Open a WebSocket on streamPath within 60 s and speak the Twilio Media Streams protocol, with the token as the start message's customParameters.token",
          responses: { "201": { description: "{ callSid, token, streamPath }" }, ...errors, "404": { description: "SOFTPHONE=false" }, "503": { description: "At capacity", ...json(error) } },
        },
      },
      "/api/calls/{callSid}": { get: { summary: "A call's record", parameters: [callPath], responses: { "200": { description: "The record" }, "404": { description: "Unknown call", ...json(error) } } } },
      "/api/calls/{callSid}/speak": {
        post: { summary: "Say something on a live call", parameters: [callPath], requestBody: { required: true, ...json(schemas.speak) }, responses: { "202": { description: "Queued" }, ...errors, "404": { description: "Unknown call" }, "409": { description: "The call is not live" } } },
      },
      "/api/calls/{callSid}/hangup": {
        post: { summary: "Say goodbye (message, or the standard words) and hang up", parameters: [callPath], requestBody: { required: false, ...json(schemas.hangup) }, responses: { "202": { description: "Hanging up" }, "404": { description: "Unknown call" }, "409": { description: "The call is not live" } } },
      },
      "/api/calls/{callSid}/ask": {
        post: {
          summary: 'Assistant-driven calls (agent "assistant"): say text, then answer with what the callee says next: {reply, status}, status answered, silence, ended or interrupted',
          parameters: [callPath],
          requestBody: { required: true, ...json(schemas.ask) },
          responses: { "200": { description: "{ reply, status }" }, ...errors, "404": { description: "Unknown call" }, "409": { description: "Not live, not assistant-driven, or an ask is already waiting" } },
        },
      },
      "/api/calls/{callSid}/dtmf": {
        post: { summary: "Play touch tones into the call (at the next pause)", parameters: [callPath], requestBody: { required: true, ...json(schemas.dtmf) }, responses: { "202": { description: "Queued" }, ...errors, "404": { description: "Unknown call" }, "409": { description: "The call is not live" } } },
      },
      "/api/calls/{callSid}/transfer": {
        post: {
          summary: "Hand the call over to a human: cold (the caller hears the announcement, then is connected to the number) or warm (Parley calls the human, briefs them, then joins the calls). The record's `transfer` says how it went",
          parameters: [callPath],
          requestBody: { required: false, ...json(schemas.transfer) },
          responses: { "202": { description: "{ ok, status: started, mode, to }" }, ...errors, "404": { description: "Unknown call" }, "409": { description: "Not live, a transfer already under way, or no carrier to transfer with (a softphone call, no REST credentials)" } },
        },
      },
      "/api/calls/{callSid}/recording": {
        get: {
          summary: "The call's recording: WAV, 16-bit PCM, 8 kHz, stereo (left the caller, right what Parley played to them). Range requests give 206",
          parameters: [callPath, { name: "Range", in: "header", required: false, schema: { type: "string" }, description: "bytes=start-end (one range)" }],
          responses: { "200": { description: "audio/wav" }, "206": { description: "The requested range" }, "401": errors["401"], "404": { description: "Unknown call, or a call without a recording", ...json(error) }, "416": { description: "Range not satisfiable", ...json(error) } },
        },
      },
      "/api/calls/{callSid}/events": {
        get: { summary: "Live events (Server-Sent Events): state changes, partial and final transcripts, marks, barge-ins, turns with latencies; then `event: end`, then `event: outcome` once the outcome is written, and the stream closes", parameters: [callPath], responses: { "200": { description: "text/event-stream" } } },
      },
    },
  };
}
