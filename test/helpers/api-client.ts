import type { CallRecord } from "../../src/store/call-record.ts";

export type LiveRecord = CallRecord & { live: boolean };

/**
 * The control API as the end-to-end tests use it: bearer token, JSON in and out, and waiting for a call's record to
 * reach a state. `base` is read on each request, so it may be filled in by a `beforeAll` after this is made.
 */
export function apiClient(base: () => string, token: string) {
  const api = async (p: string, body?: unknown): Promise<{ status: number; json: any }> => {
    const res = await fetch(`${base()}${p}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const record = async (id: string): Promise<LiveRecord> => (await api(`/api/calls/${id}`)).json as LiveRecord;
  /** Polls the record (every 50 ms, up to `tries` times) until `check` holds; the error shows the record. */
  const waitRecord = async (id: string, check: (r: LiveRecord) => boolean, what: string, tries = 300): Promise<LiveRecord> => {
    for (let i = 0; i < tries; i++) {
      const r = await record(id);
      if (check(r)) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await record(id)).slice(0, 800)}`);
  };
  return { api, record, waitRecord };
}
