/**
 * docker-compose.single.yml (one instance, no Redis) and the Dockerfile, checked without a Docker engine: the compose file parses as YAML (with the
 * npm `yaml` parser, and with `docker compose config` where a compose binary exists), its settings load through the
 * service's own config validation, and the image copies everything the service imports.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse, parseDocument } from "yaml";
import { ENV_KEYS, loadConfig } from "../src/config.ts";
import { composeCommand, interpolate } from "./helpers/compose.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const COMPOSE_TEXT = readFileSync(path.join(ROOT, "docker-compose.single.yml"), "utf8");

interface Service {
  build: string;
  ports: string[];
  environment: Record<string, string>;
  volumes: string[];
  healthcheck: { test: string[]; interval: string; timeout: string; retries: number };
  restart: string;
}
const compose = () => parse(COMPOSE_TEXT) as { services: Record<string, Service>; volumes: Record<string, unknown> };

describe("docker-compose.single.yml", () => {
  it("is valid YAML", () => {
    const doc = parseDocument(COMPOSE_TEXT);
    expect(doc.errors.map((e) => e.message)).toEqual([]);
  });

  it("runs one service from this Dockerfile, on port 3334, with its records on a volume and a health check", () => {
    const { services, volumes } = compose();
    expect(Object.keys(services)).toEqual(["parley"]);
    const s = services.parley!;
    expect(s.build).toBe(".");
    expect(s.ports).toEqual(["3334:3334"]);
    expect(s.environment.HOST).toBe("0.0.0.0");
    expect(s.environment.PORT).toBe("3334");
    expect(s.environment.DATA_DIR).toBe("/data");
    expect(s.volumes).toEqual(["parley-data:/data"]);
    expect(Object.keys(volumes)).toEqual(["parley-data"]);
    expect(s.restart).toBe("unless-stopped");
    // The health check asks the service's /healthz on the port it listens on, with the node that is in the image.
    expect(s.healthcheck.test.slice(0, 3)).toEqual(["CMD", "node", "-e"]);
    expect(s.healthcheck.test[3]).toContain(`http://127.0.0.1:${s.environment.PORT}/healthz`);
    expect(s.healthcheck.retries).toBeGreaterThan(0);
  });

  it("passes only settings the service knows, every value a string, and requires both tokens", () => {
    const env = compose().services.parley!.environment;
    for (const [name, value] of Object.entries(env)) {
      expect(ENV_KEYS, name).toHaveProperty(name);
      expect(typeof value, name).toBe("string");
    }
    // Bound to all interfaces the service refuses to start without them: compose says so before it starts.
    expect(env.TWILIO_AUTH_TOKEN).toMatch(/^\$\{TWILIO_AUTH_TOKEN:\?.+\}$/);
    expect(env.API_TOKEN).toMatch(/^\$\{API_TOKEN:\?.+\}$/);
  });

  it("loads through the service's config validation once the tokens are set, and names a missing token", () => {
    const env = compose().services.parley!.environment;
    const outside = { TWILIO_AUTH_TOKEN: "twilio-auth-token", API_TOKEN: "an-api-token-of-24-chars" };
    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(v, outside)]));
    const config = loadConfig({ env: resolved });
    expect(config.host).toBe("0.0.0.0");
    expect(config.port).toBe(3334);
    expect(config.dataDir).toBe("/data");
    expect(config.apiToken).toBe(outside.API_TOKEN);
    expect(config.greeting).toBe("Hello! This is Parley. How can I help you today?");
    expect(() => Object.values(env).map((v) => interpolate(v, { TWILIO_AUTH_TOKEN: "x" }))).toThrow(/^API_TOKEN: set API_TOKEN \(16\+ characters\)/);
  });

  const cmd = composeCommand();
  it.skipIf(!cmd)(`is accepted by \`${cmd?.join(" ") ?? "docker compose"} config\`${cmd ? "" : " (skipped: neither `docker compose` nor `docker-compose` is installed here)"}`, () => {
    const run = (extra: Record<string, string>) =>
      spawnSync(cmd![0]!, [...cmd!.slice(1), "-f", "docker-compose.single.yml", "config"], { cwd: ROOT, encoding: "utf8", env: { PATH: process.env.PATH, HOME: process.env.HOME, ...extra } });
    const ok = run({ TWILIO_AUTH_TOKEN: "twilio-auth-token", API_TOKEN: "an-api-token-of-24-chars", LOG_LEVEL: "debug" });
    expect(ok.stderr).not.toMatch(/error/i);
    expect(ok.status).toBe(0);
    const env = (parse(ok.stdout) as { services: Record<string, { environment: Record<string, string> }> }).services.parley!.environment;
    expect(env).toMatchObject({ HOST: "0.0.0.0", PORT: "3334", API_TOKEN: "an-api-token-of-24-chars", TWILIO_AUTH_TOKEN: "twilio-auth-token", LOG_LEVEL: "debug" });
    const missing = run({ TWILIO_AUTH_TOKEN: "twilio-auth-token" });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain("set API_TOKEN (16+ characters) for the control API");
  }, 60_000);
});

describe("Dockerfile", () => {
  const lines = readFileSync(path.join(ROOT, "Dockerfile"), "utf8")
    .split("\n")
    .filter((l) => l.trim() && !l.startsWith("#"));
  const copied = lines.filter((l) => l.startsWith("COPY ")).flatMap((l) => l.split(/\s+/).slice(1, -1));

  /** Top-level folders the service's sources import from (relative imports out of src/, e.g. ../machines). */
  function importedFolders(): Set<string> {
    const folders = new Set<string>();
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(file);
        else if (/\.(ts|js)$/.test(entry.name)) {
          for (const m of readFileSync(file, "utf8").matchAll(/(?:from|import\()\s*["'](\.{1,2}\/[^"']+)["']/g)) {
            folders.add(path.relative(ROOT, path.resolve(dir, m[1]!)).split(path.sep)[0]!);
          }
        }
      }
    };
    walk(path.join(ROOT, "src"));
    return folders;
  }

  it("copies every folder the service imports, the CLI, and .npmrc before installing", () => {
    const folders = importedFolders();
    expect(folders).toContain("machines");
    for (const folder of [...folders, "bin"]) expect(copied, folder).toContain(folder);
    const install = lines.findIndex((l) => l.startsWith("RUN npm ci"));
    const npmrc = lines.findIndex((l) => l.startsWith("COPY ") && l.includes(".npmrc"));
    expect(npmrc).toBeGreaterThanOrEqual(0);
    expect(npmrc).toBeLessThan(install);
    expect(lines[install]).toContain("--omit=dev");
  });

  it("runs what `npm start` runs, on the port compose publishes", () => {
    const start = (JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: { start: string } }).scripts.start;
    const cmd = lines.find((l) => l.startsWith("CMD "))!;
    expect((JSON.parse(cmd.slice(4)) as string[]).join(" ")).toBe(start);
    expect(lines).toContain("EXPOSE 3334");
    expect(lines.some((l) => /^ENV .*HOST=0\.0\.0\.0/.test(l))).toBe(true);
  });
});
