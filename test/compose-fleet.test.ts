/**
 * docker-compose.yml (the fleet: what `docker compose up` runs) and deploy/haproxy.cfg, checked without a Docker engine: the compose file parses as YAML
 * (merge keys resolved), each instance's settings load through the service's own config validation, Redis persists,
 * and the load balancer health-checks /healthz and keeps WebSockets open.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse, parseDocument } from "yaml";
import { ENV_KEYS, loadConfig } from "../src/config.ts";
import { composeCommand, interpolate } from "./helpers/compose.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TEXT = readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8");
const HAPROXY = readFileSync(path.join(ROOT, "deploy/haproxy.cfg"), "utf8");

interface Service {
  build?: string;
  image?: string;
  command?: string[];
  ports?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: unknown;
}
const compose = () => parse(TEXT, { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };

describe("docker-compose.yml: the fleet", () => {
  it("is valid YAML", () => {
    expect(parseDocument(TEXT, { merge: true }).errors.map((e) => e.message)).toEqual([]);
  });

  it("runs two Parley instances, Redis with append-only persistence and HAProxy, all from official images or this Dockerfile", () => {
    const { services, volumes } = compose();
    expect(Object.keys(services).sort()).toEqual(["haproxy", "parley1", "parley2", "redis"]);
    expect(services.redis!.image).toMatch(/^redis:\d/);
    expect(services.redis!.command).toEqual(expect.arrayContaining(["--appendonly", "yes"]));
    expect(services.redis!.volumes).toEqual(["redis-data:/data"]);
    expect(services.haproxy!.image).toMatch(/^haproxy:\d/);
    expect(services.haproxy!.ports).toEqual(["3334:3334"]);
    const [, mounted] = /^\.\/(.+?):\/usr\/local\/etc\/haproxy\/haproxy\.cfg:ro$/.exec(services.haproxy!.volumes![0]!)!;
    expect(existsSync(path.join(ROOT, mounted!))).toBe(true);
    for (const name of ["parley1", "parley2"]) {
      expect(services[name]!.build).toBe(".");
      expect(services[name]!.volumes).toEqual([`${name}-data:/data`]);
      expect(services[name]!.healthcheck!.test[3]).toContain("http://127.0.0.1:3334/healthz");
    }
    expect(Object.keys(volumes).sort()).toEqual(["parley1-data", "parley2-data", "redis-data"]);
  });

  it("each instance's settings load through Parley's validation: its own name and stream host, the shared Redis", () => {
    const outside = { TWILIO_AUTH_TOKEN: "twilio-auth-token", API_TOKEN: "an-api-token-of-24-chars", PUBLIC_URL: "https://voice.example.com", PARLEY_DOMAIN: "example.com" };
    const configs = ["parley1", "parley2"].map((name) => {
      const env = compose().services[name]!.environment!;
      for (const [k, v] of Object.entries(env)) {
        expect(ENV_KEYS, k).toHaveProperty(k);
        expect(typeof v, k).toBe("string");
      }
      return loadConfig({ env: Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(v, outside)])) });
    });
    expect(configs.map((c) => [c.instanceId, c.instanceUrl, c.redisUrl, c.publicUrl])).toEqual([
      ["parley1", "https://parley1.example.com", "redis://redis:6379", "https://voice.example.com"],
      ["parley2", "https://parley2.example.com", "redis://redis:6379", "https://voice.example.com"],
    ]);
    expect(configs[0]!.drainTimeoutS).toBeGreaterThan(0);
    const env = compose().services.parley1!.environment!;
    expect(() => Object.values(env).map((v) => interpolate(v, { ...outside, PARLEY_DOMAIN: "" }))).toThrow(/^PARLEY_DOMAIN: /);
  });

  it("HAProxy health-checks /healthz, keeps media WebSockets open, and routes each instance's stream host to it", () => {
    const { services } = compose();
    expect(HAPROXY).toMatch(/option httpchk GET \/healthz/);
    expect(HAPROXY).toMatch(/http-check expect status 200/);
    expect(HAPROXY).toMatch(/timeout tunnel \d+h/);
    for (const name of ["parley1", "parley2"]) {
      expect(HAPROXY).toMatch(new RegExp(`server ${name} ${name}:3334 check`));
      expect(HAPROXY).toMatch(new RegExp(`use_backend ${name} if \\{ hdr_beg\\(host\\) -i ${name}\\. \\}`));
      expect(services[name]!.environment!.INSTANCE_URL).toMatch(new RegExp(`^https://${name}\\.`));
    }
  });
  const cmd = composeCommand();
  it.skipIf(!cmd)(`is what \`${cmd?.join(" ") ?? "docker compose"} up\` runs with no -f: the fleet${cmd ? "" : " (skipped: neither `docker compose` nor `docker-compose` is installed here)"}`, () => {
    const run = (extra: Record<string, string>) =>
      spawnSync(cmd![0]!, [...cmd!.slice(1), "config"], { cwd: ROOT, encoding: "utf8", env: { PATH: process.env.PATH, HOME: process.env.HOME, ...extra } });
    const ok = run({ TWILIO_AUTH_TOKEN: "twilio-auth-token", API_TOKEN: "an-api-token-of-24-chars", PUBLIC_URL: "https://voice.example.com", PARLEY_DOMAIN: "example.com" });
    expect(ok.stderr).not.toMatch(/error/i);
    expect(ok.status).toBe(0);
    const { services } = parse(ok.stdout) as { services: Record<string, { environment?: Record<string, string> }> };
    expect(Object.keys(services).sort()).toEqual(["haproxy", "parley1", "parley2", "redis"]);
    expect(services.parley2!.environment).toMatchObject({ INSTANCE_ID: "parley2", INSTANCE_URL: "https://parley2.example.com", REDIS_URL: "redis://redis:6379" });
    const missing = run({ TWILIO_AUTH_TOKEN: "twilio-auth-token", API_TOKEN: "an-api-token-of-24-chars", PUBLIC_URL: "https://voice.example.com" });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain("set PARLEY_DOMAIN");
  }, 60_000);
});
