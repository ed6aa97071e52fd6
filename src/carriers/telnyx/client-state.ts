import { isSafeCallId } from "../../store/call-store.ts";

/**
 * Telnyx's `client_state`: an opaque base64 string set on a command (answer, dial, streaming_start) and echoed on
 * every later webhook and in the stream's `start`. Parley puts its own call id there, so every event names the
 * record it belongs to without a lookup table, on whichever instance it lands. Telnyx ids (`v3:…`) never name files.
 */
export function clientStateOf(callId: string): string {
  return Buffer.from(JSON.stringify({ parley: callId })).toString("base64");
}

/** Parley's call id from a `client_state`, or undefined when it holds none (or something that is not a safe id). */
export function callIdOfClientState(state: unknown): string | undefined {
  if (typeof state !== "string" || state.length > 4096) return undefined;
  try {
    const v = JSON.parse(Buffer.from(state, "base64").toString("utf8")) as { parley?: unknown };
    return typeof v?.parley === "string" && isSafeCallId(v.parley) ? v.parley : undefined;
  } catch {
    return undefined;
  }
}
