import { z } from "zod";
import { E164 } from "../../util/e164.ts";

/**
 * Plivo's settings, spread into `src/config.ts`'s schema and ENV_KEYS so they are validated (and their errors worded)
 * like every other setting, while the Plivo parts stay in this folder.
 */

/** Plivo's auth ids: `MA` (main account) or `SA` (subaccount) and 18 upper-case letters or digits. */
const AUTH_ID = /^(MA|SA)[A-Z0-9]{18}$/;

export const plivoConfigShape = {
  plivoAuthId: z.string().regex(AUTH_ID, "must look like MA or SA followed by 18 upper-case letters or digits (Plivo console, Overview)").optional(),
  /** Checks webhook and media-socket signatures (V3), and authenticates REST calls with PLIVO_AUTH_ID. */
  plivoAuthToken: z.string().min(1).optional(),
  plivoApiUrl: z.string().url().default("https://api.plivo.com"),
  plivoFromNumber: z.string().regex(E164, "must be an E.164 number like +15551234567").optional(),
};

export const PLIVO_ENV_KEYS = {
  PLIVO_AUTH_ID: "plivoAuthId",
  PLIVO_AUTH_TOKEN: "plivoAuthToken",
  PLIVO_API_URL: "plivoApiUrl",
  PLIVO_FROM_NUMBER: "plivoFromNumber",
} as const;

type PlivoConfig = {
  plivoAuthId?: string | undefined;
  plivoAuthToken?: string | undefined;
  plivoApiUrl: string;
  plivoFromNumber?: string | undefined;
  outboundCarrier?: string | undefined;
};

/** Settings that are each valid but do not work together, with the fix. */
export function plivoConfigProblems(config: PlivoConfig): string[] {
  const problems: string[] = [];
  if (config.plivoAuthId && !config.plivoAuthToken) problems.push("PLIVO_AUTH_ID is set without PLIVO_AUTH_TOKEN: Plivo's REST API needs both (Plivo console, Overview)");
  if (config.plivoFromNumber && !(config.plivoAuthId && config.plivoAuthToken))
    problems.push("PLIVO_FROM_NUMBER places calls through Plivo's REST API, which needs PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN");
  if (config.outboundCarrier === "plivo" && !(config.plivoAuthId && config.plivoAuthToken)) problems.push("OUTBOUND_CARRIER=plivo needs PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN");
  return problems;
}

/** Plivo REST credentials, when outbound calls through Plivo are possible. */
export function plivoCredentials(config: PlivoConfig): { authId: string; authToken: string; apiUrl: string } | null {
  return config.plivoAuthId && config.plivoAuthToken ? { authId: config.plivoAuthId, authToken: config.plivoAuthToken, apiUrl: config.plivoApiUrl } : null;
}
