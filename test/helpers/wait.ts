import type { EventEmitter } from "node:events";

/**
 * Resolves once `pred` holds: checked now and on every `change` the emitter announces (a stand-in's frame, event or
 * connection), so tests wait on what happened rather than on a poll interval. Rejects after `timeoutMs` with
 * `timedOut()`'s message, which can say what was seen instead.
 */
export function waitForChange(emitter: EventEmitter, pred: () => boolean, timeoutMs: number, timedOut: () => string): Promise<void> {
  if (pred()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!pred()) return;
      cleanup();
      resolve();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(timedOut()));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      emitter.off("change", check);
    };
    emitter.on("change", check);
  });
}
