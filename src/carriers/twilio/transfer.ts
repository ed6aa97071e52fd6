import twilio from "twilio";
import type { CallTransfer } from "../carrier.ts";
import type { TwilioRest } from "./rest.ts";

/**
 * Call transfer on Twilio: the only Twilio-specific part of a transfer (src/call/transfer.ts orchestrates it).
 * Both kinds replace the TwiML the call runs with a REST update; a call inside `<Connect><Stream>` leaves it, and its
 * media stream ends, which is how the hand-over is meant to end Parley's part in the call.
 */

/** Cold: `<Dial>` the number; the caller is connected to whoever answers there. */
export function dialTwiml(to: string, callerId?: string): string {
  const vr = new twilio.twiml.VoiceResponse();
  vr.dial(callerId ? { callerId } : {}, to);
  return vr.toString();
}

/**
 * Warm: both legs `<Dial><Conference>` into one room. The room starts when the first leg enters and ends when either
 * leaves (`endConferenceOnExit`), so nobody is left alone in it; no beep, no hold music before the second arrives.
 */
export function conferenceTwiml(room: string): string {
  const vr = new twilio.twiml.VoiceResponse();
  vr.dial().conference({ startConferenceOnEnter: true, endConferenceOnExit: true, beep: "false", waitUrl: "" }, room);
  return vr.toString();
}

export class TwilioTransfer implements CallTransfer {
  constructor(
    private readonly rest: TwilioRest,
    private readonly callerId?: string,
  ) {}

  connect(callSid: string, to: string): Promise<void> {
    return this.rest.updateTwiml(callSid, dialTwiml(to, this.callerId));
  }

  async join(callSids: string[], room: string): Promise<void> {
    await Promise.all(callSids.map((sid) => this.rest.updateTwiml(sid, conferenceTwiml(room))));
  }
}
