import Telnyx, { APIError } from "telnyx";
import { errorMessage } from "../../util/errors.ts";

/**
 * Parley's client for Telnyx's Call Control API (answer, stream, dial, reject, hang up), built on the official
 * `telnyx` package, so the wire format and auth are what Telnyx's SDK sends. It honours a base URL, so tests point it
 * at a local stand-in (TELNYX_API_URL).
 */
export interface TelnyxRestOptions {
  apiKey: string;
  /** Default https://api.telnyx.com/v2. */
  apiUrl?: string;
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
}

/** A failed command. `status`/`code` are absent when Telnyx never answered (network error, timeout). */
export class TelnyxRestError extends Error {
  constructor(
    message: string,
    readonly operation: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = "TelnyxRestError";
  }
}

/** Telnyx's "Call has already ended" (HTTP 422): a hang-up of a call that is over has nothing left to do. */
const CALL_ENDED = "90018";

type ActionName = "answer" | "reject" | "startStreaming" | "hangup";

export class TelnyxRest {
  private readonly client: Telnyx;

  constructor(opts: TelnyxRestOptions) {
    // No retries: a retried dial could place a second call; Parley decides what a failure means.
    this.client = new Telnyx({ apiKey: opts.apiKey, baseURL: opts.apiUrl ?? "https://api.telnyx.com/v2", maxRetries: 0, timeout: opts.timeoutMs ?? 10_000 });
  }

  /** `POST /calls`: resolves with the new call's `call_control_id`. */
  async dial(params: Record<string, unknown>): Promise<string> {
    const res = await this.run("dial", () => this.client.calls.dial(params as unknown as Parameters<Telnyx["calls"]["dial"]>[0]));
    const id = res.data?.call_control_id;
    if (!id) throw new TelnyxRestError("Telnyx dial returned no call_control_id", "dial");
    return id;
  }

  /** `POST /calls/{id}/actions/{action}` with `body`. A hang-up of a call already over succeeds. */
  async action(callControlId: string, action: ActionName, body: Record<string, unknown>): Promise<void> {
    const actions = this.client.calls.actions;
    const send = (): Promise<unknown> => {
      switch (action) {
        case "answer":
          return actions.answer(callControlId, body as Parameters<typeof actions.answer>[1]);
        case "reject":
          return actions.reject(callControlId, body as unknown as Parameters<typeof actions.reject>[1]);
        case "startStreaming":
          return actions.startStreaming(callControlId, body as Parameters<typeof actions.startStreaming>[1]);
        case "hangup":
          return actions.hangup(callControlId, body as Parameters<typeof actions.hangup>[1]);
      }
    };
    try {
      await this.run(`${action} ${callControlId}`, send);
    } catch (err) {
      if (action === "hangup" && err instanceof TelnyxRestError && err.code === CALL_ENDED) return;
      throw err;
    }
  }

  private async run<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof APIError && err.status !== undefined) {
        const first = (err.error as { errors?: { code?: unknown; title?: unknown; detail?: unknown }[] } | undefined)?.errors?.[0];
        const code = first?.code !== undefined ? String(first.code) : undefined;
        const detail = [code && `Telnyx error ${code}`, first?.title, first?.detail].filter(Boolean).join(": ");
        throw new TelnyxRestError(`Telnyx ${operation} failed: HTTP ${err.status}${detail ? `, ${detail}` : ""}`, operation, err.status, code);
      }
      throw new TelnyxRestError(`Telnyx ${operation} failed: ${errorMessage(err)}`, operation);
    }
  }
}
