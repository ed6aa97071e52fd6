import { AskError } from "../responders/assistant.ts";
import type { CommandBus, Op } from "../state/call-commands.ts";
import { RequestError } from "./call-manager.ts";
import type { CallRuntime } from "./call-runtime.ts";

/** Carry out a control-API command another instance routed here for `call` (see src/state/call-commands.ts). */
export async function runCommand(call: CallRuntime, op: Exclude<Op, "watch">, args: unknown[]): Promise<unknown> {
  const str = (i: number) => (typeof args[i] === "string" ? (args[i] as string) : undefined);
  switch (op) {
    case "say":
      return call.say(str(0) ?? "", args[1] === true);
    case "hangup":
      return call.sayGoodbyeAndHangUp(str(0) ?? "hung up through the control API", str(1));
    case "dtmf":
      return call.sendDigits(str(0) ?? "");
    case "ask":
      try {
        return await call.ask(str(0) ?? "", typeof args[1] === "number" ? args[1] : 30_000);
      } catch (err) {
        if (err instanceof AskError) throw new RequestError(err.message, err.status);
        throw err;
      }
  }
}

/**
 * Publish `call`'s events for the SSE streams that follow it from other instances, until nobody listens any more (a
 * publish reaches no one) or the call lets its observers go; then `done`.
 */
export function publishEvents(call: CallRuntime, bus: CommandBus, done: () => void): void {
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    stop();
    done();
  };
  const stop = call.subscribe((e) => {
    bus.publishEvent(call.callSid, e).then(
      (listeners) => listeners || end(),
      () => {},
    );
    if (e.type === "released") end();
  });
}
