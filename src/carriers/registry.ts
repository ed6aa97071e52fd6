import { restCredentials, type Config } from "../config.ts";
import { BrowserCarrier } from "./browser/carrier.ts";
import type { Carrier, Carriers } from "./carrier.ts";
import { TwilioCarrier } from "./twilio/carrier.ts";
import { PlivoCarrier } from "./plivo/carrier.ts";
import { plivoCredentials } from "./plivo/config.ts";
import { PlivoRest } from "./plivo/rest.ts";
import { TwilioRest } from "./twilio/rest.ts";

export interface CarrierOverrides {
  /** A Twilio REST client other than the configured one (tests: a stand-in, or one that fails on purpose). */
  twilioRest?: TwilioRest | null;
}

/**
 * The carriers this process serves. Twilio is always served (its routes answer unsigned requests only when
 * TWILIO_AUTH_TOKEN is unset, for development, as before); the softphone unless SOFTPHONE=false. A carrier added to
 * Parley adds its line here.
 */
export function createCarriers(config: Config, overrides: CarrierOverrides = {}): Carriers {
  const creds = restCredentials(config);
  const twilioRest = overrides.twilioRest !== undefined ? overrides.twilioRest : creds ? new TwilioRest(creds) : null;
  const twilio = new TwilioCarrier({ ...(config.twilioAuthToken ? { authToken: config.twilioAuthToken } : {}), rest: twilioRest });
  const all: Carrier[] = [twilio];
  // Plivo is served once it has a token to check signatures with (PLIVO_AUTH_TOKEN), or credentials to place calls.
  if (config.plivoAuthToken) all.push(new PlivoCarrier({ authToken: config.plivoAuthToken, rest: plivoCredentials(config) ? new PlivoRest(plivoCredentials(config)!) : null }));
  if (config.softphone) all.push(new BrowserCarrier());
  const outbound = all.find((c) => c.name !== "browser" && !!c.place) ?? null;
  return {
    get: (name) => all.find((c) => c.name === name),
    all,
    outbound,
  };
}
