import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import type { CallManager } from "../call/call-manager.ts";
import type { Services } from "../call/services.ts";

const callSidParam = { type: "object", required: ["callSid"], properties: { callSid: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" } } } as const;

/** One `bytes=` range of a file of `size` bytes: [start, end] inclusive, "unsatisfiable", or null for none/ignored. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | "unsatisfiable" | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  // Several ranges or another unit: RFC 9110 lets a server ignore the header and send the whole file.
  if (!m || (m[1] === "" && m[2] === "")) return m ? "unsatisfiable" : null;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return { start, end };
}

/**
 * GET /api/calls/:callSid/recording: the call's WAV, whole or by range. Registered inside the bearer-token scope of
 * the control API. A live call's recording is served as far as it has been written (its header covers that much).
 */
export function registerRecordingRoute(api: FastifyInstance, services: Services, manager: CallManager): void {
  api.get<{ Params: { callSid: string } }>("/api/calls/:callSid/recording", { schema: { params: callSidParam } }, async (req, reply) => {
    const { callSid } = req.params;
    const rec = await manager.recordOf(callSid);
    if (!rec) return reply.code(404).send({ error: `no call ${callSid}` });
    if (!rec.recording) return reply.code(404).send({ error: `call ${callSid} has no recording (record it with "record": true in its session, or RECORD_CALLS=true)` });
    await services.recordings.settled(callSid);
    const file = services.recordings.resolve(rec.recording.file);
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch {
      const days = services.config.recordingsRetentionDays;
      return reply.code(404).send({ error: `the recording of call ${callSid} is no longer on disk${days > 0 ? ` (recordings are kept ${days} days: RECORDINGS_RETENTION_DAYS)` : ""}` });
    }
    reply.header("accept-ranges", "bytes").header("content-type", "audio/wav").header("content-disposition", `attachment; filename="${rec.recording.file}"`);
    const range = parseRange(req.headers.range, size);
    if (range === "unsatisfiable")
      return reply.code(416).header("content-range", `bytes */${size}`).header("content-type", "application/json").send({ error: `range ${req.headers.range} is not satisfiable: the recording has ${size} bytes` });
    if (!range) return reply.header("content-length", size).send(createReadStream(file));
    return reply
      .code(206)
      .header("content-range", `bytes ${range.start}-${range.end}/${size}`)
      .header("content-length", range.end - range.start + 1)
      .send(createReadStream(file, { start: range.start, end: range.end }));
  });
}
