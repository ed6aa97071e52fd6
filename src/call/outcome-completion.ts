import { sendOutcome, writeOutcome } from "../outcome/writer.ts";
import type { CallRuntime } from "./call-runtime.ts";
import type { Services } from "./services.ts";

/** Write an ended call's outcome, deliver it to the session's webhook, then let the call's observers go. */
export async function completeOutcome(services: Services, call: CallRuntime): Promise<void> {
  const { config, clock, log, outcomes } = services;
  const deps = { extractor: outcomes, now: () => clock.now(), log, ...(config.outcomeWebhookSecret ? { secret: config.outcomeWebhookSecret } : {}), append: (type: string, data: Record<string, unknown>) => call.appendAfterEnd(type, data) };
  try {
    const outcome = await writeOutcome(call.record, deps);
    const url = call.session.outcomeWebhook;
    call.release();
    if (url) await sendOutcome(url, outcome, deps);
  } catch (err) {
    log.error({ err, callSid: call.callSid }, "could not write the call's outcome");
    call.release();
  }
}
