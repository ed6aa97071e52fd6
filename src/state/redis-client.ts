import { createHash } from "node:crypto";
import { Redis } from "ioredis";

/** Shared state could not be reached: new calls are refused (503) until it is back. */
export class StateUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StateUnavailableError";
  }
}

/** A Redis URL for logs and errors: the password (if any) replaced. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "REDACTED";
    return u.toString();
  } catch {
    return "(unparseable REDIS_URL)";
  }
}

export interface RedisOptions {
  /** Every key is written under this prefix (REDIS_KEY_PREFIX). */
  prefix?: string;
  /** How long to wait for the first connection before giving up. */
  connectTimeoutMs?: number;
  /** A command that gets no answer within this fails (so a hung Redis cannot hang a webhook). */
  commandTimeoutMs?: number;
}

/**
 * One connection to Redis, shared by every piece of shared state of a process. It counts the commands it sends, by
 * kind (scripts by their name), so the cost per call and per turn can be read off `/debug/stats`.
 *
 * Commands are never queued while Redis is away (`enableOfflineQueue: false`): they fail at once, so a webhook
 * answers "unavailable" now rather than hanging until Redis returns. ioredis reconnects in the background.
 */
export class RedisConnection {
  readonly client: Redis;
  readonly url: string;
  readonly prefix: string;
  private readonly ops: Record<string, number> = {};
  private total = 0;
  private readonly scripts = new Map<string, string>();
  private lastError: string | null = null;

  private constructor(url: string, opts: RedisOptions) {
    this.url = redactRedisUrl(url);
    this.prefix = opts.prefix ?? "parley:";
    this.client = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: opts.commandTimeoutMs ?? 2000,
      connectTimeout: opts.connectTimeoutMs ?? 5000,
      // Reconnect soon after a restart, without hammering a server that is down.
      retryStrategy: (times) => Math.min(50 * times, 1000),
    });
    this.client.on("error", (err: Error) => (this.lastError = err.message || String(err)));
    this.client.on("ready", () => (this.lastError = null));
    // Count at the one place every command passes through (scripts are sent as EVALSHA, named by their hash here).
    const send = this.client.sendCommand.bind(this.client);
    this.client.sendCommand = ((command: { name: string; args: unknown[] }, stream?: unknown) => {
      let kind = command.name;
      if (kind === "evalsha" || kind === "eval") kind = `script:${this.scripts.get(String(command.args[0])) ?? "?"}`;
      this.ops[kind] = (this.ops[kind] ?? 0) + 1;
      this.total++;
      return send(command as never, stream as never);
    }) as typeof this.client.sendCommand;
  }

  /** Connect, or fail with an error naming the (redacted) URL. */
  static async connect(url: string, opts: RedisOptions = {}): Promise<RedisConnection> {
    const conn = new RedisConnection(url, opts);
    try {
      await conn.client.connect();
      await conn.client.ping();
    } catch (err) {
      conn.client.disconnect();
      throw new StateUnavailableError(`Redis at ${conn.url} (REDIS_URL) is unreachable: ${conn.lastError ?? (err as Error).message}`, { cause: err });
    }
    return conn;
  }

  /** Register a Lua script; `run` sends it by hash (loading it once per connection). */
  script(name: string, numberOfKeys: number, lua: string): void {
    this.client.defineCommand(name, { numberOfKeys, lua });
    this.scripts.set(createHash("sha1").update(lua).digest("hex"), name);
  }

  /** Run a registered script; any failure to reach Redis becomes a StateUnavailableError. */
  async run<T>(name: string, keys: string[], args: (string | number)[]): Promise<T> {
    return this.call(() => (this.client as unknown as Record<string, (...a: unknown[]) => Promise<T>>)[name]!(...keys, ...args));
  }

  /** Run a command; failing to reach Redis becomes a StateUnavailableError (a Redis error reply stays as it is). */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if ((err as Error).name === "ReplyError") throw err;
      throw new StateUnavailableError(`shared state unavailable: Redis at ${this.url} ${this.problem() ?? `failed: ${(err as Error).message}`}`, { cause: err });
    }
  }

  key(...parts: string[]): string {
    return this.prefix + parts.join(":");
  }

  /** Why Redis cannot be used now, or null when it is connected. */
  problem(): string | null {
    if (this.client.status === "ready") return null;
    return `unreachable: ${this.lastError ?? this.client.status}`;
  }

  stats(): { url: string; status: string; ops: Record<string, number>; total: number } {
    return { url: this.url, status: this.problem() ?? "ready", ops: { ...this.ops }, total: this.total };
  }

  resetStats(): void {
    for (const k of Object.keys(this.ops)) delete this.ops[k];
    this.total = 0;
  }

  async close(): Promise<void> {
    try {
      if (this.client.status === "ready") await this.client.quit();
    } catch {
      // already gone
    }
    this.client.disconnect();
  }
}
