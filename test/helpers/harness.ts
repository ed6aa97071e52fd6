import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { closeServices, createLogger, createServices } from "../../src/bootstrap.ts";
import type { Services } from "../../src/call/services.ts";
import { loadConfig } from "../../src/config.ts";
import { createCarriers } from "../../src/carriers/registry.ts";
import { buildApp, type App } from "../../src/server/app.ts";

/**
 * One set of real services (VAD, recogniser, synthesizer, records in a temporary folder) for a test file, and as many
 * Parley apps on top of it as the tests need, each with its own overrides. Everything is torn down after the file.
 */
export function useParley(env: () => Record<string, string> = () => ({})) {
  let services: Services | undefined;
  let dataDir = "";
  const apps: App[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), "parley-test-"));
    const config = loadConfig({ env: { DATA_DIR: dataDir, LOG_LEVEL: "silent", PORT: "0", ...env() } });
    services = await createServices(config, createLogger(config));
  }, 120_000);

  afterAll(async () => {
    for (const app of apps) await app.close().catch(() => {});
    if (services) await closeServices(services);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  return {
    get services(): Services {
      if (!services) throw new Error("services are not started yet");
      return services;
    },
    /** A new app on the shared services; returns it and its base URL. */
    async start(overrides: Partial<Services> = {}, config: Partial<Services["config"]> = {}): Promise<{ app: App; base: string }> {
      const s = this.services;
      const merged = { ...s.config, ...config };
      // The carriers follow this app's configuration (credentials, stand-in URLs), unless a test brings its own.
      const app = buildApp({ ...s, carriers: createCarriers(merged), ...overrides, config: merged });
      apps.push(app);
      return { app, base: `http://127.0.0.1:${await app.listen()}` };
    },
  };
}
