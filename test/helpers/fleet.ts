import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "../../bench/parley-process.ts";
import { TestLoadBalancer } from "./load-balancer.ts";
import { TestRedis } from "./redis.ts";

/** Parley as its own process, as `npm start` runs it, answering /healthz at `base`. */
export async function parleyProcess(base: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", "src/main.ts"], { env: { ...process.env, ...env }, stdio: ["ignore", "inherit", "inherit"] });
  for (const until = Date.now() + 180_000; Date.now() < until; ) {
    if (child.exitCode !== null) throw new Error(`parley exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) return child;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`parley at ${base} did not start within 180 s`);
}

export interface FleetOptions {
  /** The instances, by INSTANCE_ID (default A and B). */
  names?: string[];
  /** Each instance's own settings on top of the fleet's (ports, disks, Redis, the load balancer as PUBLIC_URL). */
  env?: (name: string) => Record<string, string>;
  /** The load balancer's policy for webhooks: the first instance in rotation (default), or each in turn. */
  roundRobin?: boolean;
  /** Extra Node options for each Parley process (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** How often the load balancer health-checks each instance (default 200 ms). */
  checkMs?: number;
}

/**
 * A fleet as it runs in production: Parley instances as separate processes, each with its own DATA_DIR (two machines'
 * disks) and port, one real redis-server, and a load balancer in front for Twilio's webhooks (PUBLIC_URL). Media
 * streams go straight to the instance that runs the call (INSTANCE_URL). Used by the fleet tests and bench/fleet.ts.
 */
export class TestFleet {
  /** The process running each instance now (a restarted instance's new process replaces the old one). */
  readonly proc: Record<string, ChildProcess> = {};
  private readonly children: ChildProcess[] = [];

  private constructor(
    readonly redis: TestRedis,
    readonly lb: TestLoadBalancer,
    readonly names: string[],
    private readonly ports: Record<string, number>,
    private readonly dirs: Record<string, string>,
    private readonly opts: FleetOptions,
  ) {}

  /** Redis, the load balancer and every instance (started together), all in rotation when this resolves. */
  static async start(opts: FleetOptions = {}): Promise<TestFleet> {
    const names = opts.names ?? ["A", "B"];
    const redis = await TestRedis.start();
    const ports: Record<string, number> = {};
    const dirs: Record<string, string> = {};
    for (const n of names) {
      ports[n] = await freePort();
      dirs[n] = mkdtempSync(path.join(tmpdir(), `parley-fleet-${n}-`));
    }
    const lb = await TestLoadBalancer.start(
      names.map((n) => `http://127.0.0.1:${ports[n]}`),
      opts.checkMs ?? 200,
      { roundRobin: opts.roundRobin ?? false },
    );
    const fleet = new TestFleet(redis, lb, names, ports, dirs, opts);
    try {
      await Promise.all(names.map((n) => fleet.instance(n)));
      // The first webhook must find every instance in rotation, not a health check that ran while one was starting.
      await lb.allUp();
    } catch (err) {
      await fleet.close();
      throw err;
    }
    return fleet;
  }

  url(name: string): string {
    return `http://127.0.0.1:${this.ports[name]}`;
  }

  /** Start instance `name` (again, after it exited): its own process, on its own port and disk. */
  async instance(name: string): Promise<ChildProcess> {
    const child = await parleyProcess(
      this.url(name),
      {
        PORT: String(this.ports[name]),
        DATA_DIR: this.dirs[name]!,
        INSTANCE_ID: name,
        INSTANCE_URL: this.url(name),
        PUBLIC_URL: this.lb.url,
        REDIS_URL: this.redis.url,
        LOG_LEVEL: "warn",
        // Every request here comes from 127.0.0.1 (the load balancer's health checks among them).
        RATE_LIMIT_PER_MINUTE: "100000",
        ...this.opts.env?.(name),
      },
      this.opts.nodeArgs,
    );
    this.children.push(child);
    this.proc[name] = child;
    return child;
  }

  /** Signal instance `name`'s process; resolves with its exit code once it has exited. */
  stop(name: string, signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    const child = this.proc[name]!;
    const exited = new Promise<number | null>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
      else child.once("exit", (code) => resolve(code));
    });
    child.kill(signal);
    return exited;
  }

  async close(): Promise<void> {
    const exits = this.children
      .filter((c) => c.exitCode === null && c.signalCode === null)
      .map((c) => new Promise<void>((resolve) => (c.once("exit", () => resolve()), c.kill("SIGKILL"))));
    await Promise.all(exits);
    await this.lb.close();
    await this.redis.close();
    for (const d of Object.values(this.dirs)) rmSync(d, { recursive: true, force: true });
  }
}
