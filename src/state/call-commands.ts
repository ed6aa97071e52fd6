import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { RedisConnection } from "./redis-client.ts";

/** What the control API asks of a live call; a call on another instance answers the same, through Redis. */
export interface CallCommands {
  say(text: string, interrupt: boolean): unknown;
  sayGoodbyeAndHangUp(reason: string, farewell?: string): unknown;
  ask(text: string, timeoutMs: number): Promise<unknown>;
  sendDigits(digits: string): unknown;
}

export type Op = "say" | "hangup" | "ask" | "dtmf" | "watch";
interface Command {
  id: string;
  from: string;
  callSid: string;
  op: Op;
  args: unknown[];
}
interface Reply {
  id: string;
  ok: boolean;
  result?: unknown;
  error?: string;
  status?: number;
}

/** A command the owner could not carry out, with the HTTP status it answered (404, 409...). */
export class RemoteCommandError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/**
 * Commands for calls owned by another instance, over Redis pub/sub: each instance listens on `cmd:<INSTANCE_ID>` and
 * answers on the asker's `reply:<INSTANCE_ID>`. Pub/sub needs a connection of its own (a subscribed connection can
 * do nothing else). Nothing here is on the media path: one PUBLISH per command each way.
 */
export class CommandBus {
  private readonly sub: Redis;
  private readonly waiting = new Map<string, { resolve: (r: Reply) => void; timer: NodeJS.Timeout }>();
  /** SSE streams here following calls that run elsewhere, by event channel. */
  private readonly watchers = new Map<string, Set<(e: { type: string } & Record<string, unknown>) => void>>();

  constructor(
    private readonly redis: RedisConnection,
    private readonly instanceId: string,
    private readonly execute: (callSid: string, op: Op, args: unknown[]) => Promise<unknown>,
    private readonly log?: Logger,
  ) {
    this.sub = redis.client.duplicate({ enableOfflineQueue: true });
    this.sub.on("error", () => {}); // the main connection reports Redis's health
    this.sub.on("message", (channel: string, message: string) => void this.onMessage(channel, message));
  }

  /**
   * Follow the events of a call `owner` runs (for SSE): this instance subscribes to `ev:<CallSid>`, then asks the
   * owner to publish the call's events there. The owner stops by itself once nobody listens. Resolves with the stop.
   */
  async watch(owner: string, callSid: string, onEvent: (e: { type: string } & Record<string, unknown>) => void): Promise<() => void> {
    const ch = this.redis.key("ev", callSid);
    let set = this.watchers.get(ch);
    if (!set) {
      this.watchers.set(ch, (set = new Set()));
      await this.sub.subscribe(ch);
    }
    set.add(onEvent);
    const stop = () => {
      set.delete(onEvent);
      if (set.size || this.watchers.get(ch) !== set) return;
      this.watchers.delete(ch);
      void this.sub.unsubscribe(ch).catch(() => {});
    };
    try {
      await this.send(owner, { id: randomBytes(9).toString("base64url"), from: this.instanceId, callSid, op: "watch", args: [] }, 5000);
    } catch (err) {
      stop();
      throw err;
    }
    return stop;
  }

  /** One event of a watched call, to whoever follows it; the number of instances listening (0: stop publishing). */
  publishEvent(callSid: string, e: object): Promise<number> {
    return this.redis.call(() => this.redis.client.publish(this.redis.key("ev", callSid), JSON.stringify(e)));
  }

  private channel(kind: "cmd" | "reply", instanceId: string): string {
    return this.redis.key(kind, instanceId);
  }

  async start(): Promise<void> {
    await this.sub.subscribe(this.channel("cmd", this.instanceId), this.channel("reply", this.instanceId));
  }

  /** The control API's view of a call that `owner` runs. */
  remote(owner: string, callSid: string): CallCommands {
    const send = (op: Op, args: unknown[], timeoutMs = 5000) => this.send(owner, { id: randomBytes(9).toString("base64url"), from: this.instanceId, callSid, op, args }, timeoutMs);
    return {
      say: (text, interrupt) => send("say", [text, interrupt]),
      sayGoodbyeAndHangUp: (reason, farewell) => send("hangup", [reason, farewell]),
      // The owner waits up to timeoutMs for the callee; the answer then has to travel back.
      ask: (text, timeoutMs) => send("ask", [text, timeoutMs], timeoutMs + 5000),
      sendDigits: (digits) => send("dtmf", [digits]),
    };
  }

  private async send(owner: string, cmd: Command, timeoutMs: number): Promise<unknown> {
    const reply = new Promise<Reply>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(cmd.id);
        resolve({ id: cmd.id, ok: false, status: 504, error: `instance ${owner}, which runs call ${cmd.callSid}, did not answer within ${timeoutMs} ms` });
      }, timeoutMs);
      this.waiting.set(cmd.id, { resolve, timer });
    });
    const receivers = await this.redis.call(() => this.redis.client.publish(this.channel("cmd", owner), JSON.stringify(cmd)));
    if (!receivers) {
      this.waiting.get(cmd.id)?.resolve({ id: cmd.id, ok: false, status: 503, error: `instance ${owner}, which runs call ${cmd.callSid}, is not listening (gone?)` });
      clearTimeout(this.waiting.get(cmd.id)?.timer);
      this.waiting.delete(cmd.id);
    }
    const r = await reply;
    if (!r.ok) throw new RemoteCommandError(r.error ?? "command failed", r.status ?? 500);
    return r.result;
  }

  private async onMessage(channel: string, message: string): Promise<void> {
    let parsed: Command | Reply;
    try {
      parsed = JSON.parse(message) as Command | Reply;
    } catch {
      return;
    }
    const watching = this.watchers.get(channel);
    if (watching) {
      for (const fn of watching) fn(parsed as unknown as { type: string });
      return;
    }
    if (channel === this.channel("reply", this.instanceId)) {
      const w = this.waiting.get(parsed.id);
      if (!w) return;
      clearTimeout(w.timer);
      this.waiting.delete(parsed.id);
      w.resolve(parsed as Reply);
      return;
    }
    const cmd = parsed as Command;
    let reply: Reply;
    try {
      reply = { id: cmd.id, ok: true, result: (await this.execute(cmd.callSid, cmd.op, cmd.args)) ?? null };
    } catch (err) {
      const status = (err as { status?: number }).status;
      reply = { id: cmd.id, ok: false, error: (err as Error).message, status: typeof status === "number" ? status : 500 };
    }
    await this.redis.call(() => this.redis.client.publish(this.channel("reply", cmd.from), JSON.stringify(reply))).catch((err: Error) => this.log?.warn({ err: err.message, callSid: cmd.callSid }, "could not answer a routed command"));
  }

  close(): void {
    for (const w of this.waiting.values()) clearTimeout(w.timer);
    this.sub.disconnect();
  }
}
