import { lookup } from "node:dns/promises";
import { runChecks } from "./checks.ts";
import { allPassed, jsonReport, summary, textProgress } from "./report.ts";
import { plivoDoctor } from "./plivo.ts";
import { telnyxDoctor } from "./telnyx.ts";
import { twilioDoctor } from "./twilio.ts";
import type { DoctorCarrier, Transport } from "./types.ts";

export const DEFAULT_TIMEOUT_MS = 10_000;
export const CARRIERS = ["twilio", "telnyx", "plivo"] as const;

export interface DoctorOptions {
  /** The deployment's settings: the same environment variables Parley reads. */
  env: Record<string, string | undefined>;
  carrier?: string;
  /** Overrides PUBLIC_URL. */
  publicUrl?: string;
  /** Overrides the carrier's number setting (TWILIO_FROM_NUMBER). */
  number?: string;
  json?: boolean;
  write: (s: string) => void;
  /** Colours and progress: only when writing to a terminal. */
  tty: boolean;
  /** Stand-ins for DNS, TLS trust, routing and the clock (tests); the real network when omitted. */
  transport?: Partial<Transport>;
}

/** The real network: the system resolver (every address of the name), the system's CAs, the system clock. */
export async function systemResolve(host: string): Promise<string[]> {
  return (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
}

/** Build the carrier's adapter from the deployment's settings. Throws for an unknown carrier. */
export function carrierFor(name: string, env: DoctorOptions["env"], number: string | undefined, transport: Transport): DoctorCarrier {
  switch (name) {
    case "twilio":
      return twilioDoctor(
        {
          accountSid: env.TWILIO_ACCOUNT_SID || undefined,
          authToken: env.TWILIO_AUTH_TOKEN || undefined,
          number: number ?? (env.TWILIO_FROM_NUMBER || undefined),
          apiUrl: env.TWILIO_API_URL || "https://api.twilio.com",
        },
        transport,
      );
    case "telnyx":
      return telnyxDoctor(
        {
          apiKey: env.TELNYX_API_KEY || undefined,
          number: number ?? (env.TELNYX_FROM_NUMBER || undefined),
          apiUrl: env.TELNYX_API_URL || "https://api.telnyx.com/v2",
        },
        transport,
      );
    case "plivo":
      return plivoDoctor(
        {
          authId: env.PLIVO_AUTH_ID || undefined,
          authToken: env.PLIVO_AUTH_TOKEN || undefined,
          number: number ?? (env.PLIVO_FROM_NUMBER || undefined),
          apiUrl: env.PLIVO_API_URL || "https://api.plivo.com",
        },
        transport,
      );
    default:
      throw new Error(`unknown carrier '${name}' (known: ${CARRIERS.join(", ")})`);
  }
}

/** The carrier the deployment's settings name: Twilio's, else Telnyx's, else Plivo's; Twilio when none. */
export function defaultCarrier(env: DoctorOptions["env"]): string {
  if (env.TWILIO_ACCOUNT_SID || env.TWILIO_AUTH_TOKEN) return "twilio";
  if (env.TELNYX_API_KEY) return "telnyx";
  if (env.PLIVO_AUTH_ID || env.PLIVO_AUTH_TOKEN) return "plivo";
  return "twilio";
}

/** "5s", "1500ms", "2000" (ms): a per-check timeout; null when it is none of these or out of range. */
export function parseTimeout(raw: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(raw.trim());
  if (!m) return null;
  const ms = Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  return ms >= 100 && ms <= 120_000 ? Math.round(ms) : null;
}

/** `parley doctor`: run the checklist and print it. Resolves with the exit code: 0 only when every check passed. */
export async function doctor(opts: DoctorOptions): Promise<number> {
  const transport: Transport = { resolve: systemResolve, now: Date.now, timeoutMs: DEFAULT_TIMEOUT_MS, ...opts.transport };
  const carrierName = opts.carrier ?? defaultCarrier(opts.env);
  const carrier = carrierFor(carrierName, opts.env, opts.number, transport);
  const publicUrl = opts.publicUrl ?? (opts.env.PUBLIC_URL || undefined);
  if (!opts.json) opts.write(`parley doctor: ${carrierName} deployment at ${publicUrl ?? "(PUBLIC_URL not set)"}\n`);
  const results = await runChecks({ publicUrl, carrier, transport }, opts.json ? {} : textProgress({ write: opts.write, tty: opts.tty }));
  opts.write(opts.json ? `${jsonReport(carrierName, publicUrl, results)}\n` : `${summary(results, opts.tty)}\n`);
  return allPassed(results) ? 0 : 1;
}
