import { restCredentials, type Config } from "../config.ts";
import { BrowserCarrier } from "./browser/carrier.ts";
import type { Carrier, Carriers } from "./carrier.ts";
import { TelnyxCarrier } from "./telnyx/carrier.ts";
import { TelnyxRest } from "./telnyx/rest.ts";
import { TwilioCarrier } from "./twilio/carrier.ts";
import { PlivoCarrier } from "./plivo/carrier.ts";
import { plivoCredentials } from "./plivo/config.ts";
import { PlivoRest } from "./plivo/rest.ts";
import { TwilioRest } from "./twilio/rest.ts";

export interface CarrierOverrides {
  /** A Twilio REST client other than the configured one (tests: one that fails or records on purpose). */
  twilioRest?: TwilioRest | null;
}

/**
 * The carriers this process serves, from the configuration. A carrier added to Parley adds its lines here.
 *
 * - Twilio: served when TWILIO_AUTH_TOKEN is set, or when no other carrier is configured (then unsigned, for
 *   development, as before carriers: `src/config.ts` refuses that on a non-loopback HOST).
 * - Telnyx: served when TELNYX_API_KEY and TELNYX_PUBLIC_KEY are set (config.ts requires both or neither); places
 *   calls with TELNYX_CONNECTION_ID.
 * - Plivo: served when PLIVO_AUTH_TOKEN is set (it checks the V3 signatures); places calls with PLIVO_AUTH_ID too.
 * - The browser softphone, unless SOFTPHONE=false.
 *
 * The outbound carrier is OUTBOUND_CARRIER, else the first of these that can place calls.
 */
export function createCarriers(config: Config, overrides: CarrierOverrides = {}): Carriers {
  const all: Carrier[] = [];
  const telnyx =
    config.telnyxApiKey && config.telnyxPublicKey
      ? new TelnyxCarrier({
          rest: new TelnyxRest({ apiKey: config.telnyxApiKey, apiUrl: config.telnyxApiUrl }),
          publicKey: config.telnyxPublicKey,
          ...(config.telnyxConnectionId ? { connectionId: config.telnyxConnectionId } : {}),
          ...(config.telnyxFromNumber ? { fromNumber: config.telnyxFromNumber } : {}),
        })
      : null;
  const plivo = config.plivoAuthToken
    ? new PlivoCarrier({
        authToken: config.plivoAuthToken,
        rest: plivoCredentials(config) ? new PlivoRest(plivoCredentials(config)!) : null,
        ...(config.plivoFromNumber ? { fromNumber: config.plivoFromNumber } : {}),
      })
    : null;
  if (config.twilioAuthToken || (!telnyx && !plivo)) {
    const creds = restCredentials(config);
    const rest = overrides.twilioRest !== undefined ? overrides.twilioRest : creds ? new TwilioRest(creds) : null;
    all.push(
      new TwilioCarrier({
        ...(config.twilioAuthToken ? { authToken: config.twilioAuthToken } : {}),
        rest,
        ...(config.twilioFromNumber ? { fromNumber: config.twilioFromNumber } : {}),
      }),
    );
  }
  if (telnyx) all.push(telnyx);
  if (plivo) all.push(plivo);
  if (config.softphone) all.push(new BrowserCarrier());
  const chosen = config.outboundCarrier ? all.find((c) => c.name === config.outboundCarrier && c.place) : undefined;
  const outbound = chosen ?? all.find((c) => c.name !== "browser" && !!c.place) ?? null;
  return { get: (name) => all.find((c) => c.name === name), all, outbound };
}
