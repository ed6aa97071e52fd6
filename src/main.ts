import { parseArgs } from "node:util";
import { closeServices, createLogger, createServices } from "./bootstrap.ts";
import { ConfigError, loadConfig, publicOrigin } from "./config.ts";
import { buildApp } from "./server/app.ts";
import { errorMessage } from "./util/errors.ts";

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: "string", short: "c" } }, allowPositionals: false });
  let config;
  try {
    config = loadConfig({ file: values.config });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`parley: ${err.message}\nSee README.md ("Configuration") for every setting.`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config);
  if (!config.twilioAuthToken) log.warn("TWILIO_AUTH_TOKEN is not set: webhook and media stream signatures are NOT checked");

  const services = await createServices(config, log);
  const app = buildApp(services);
  const port = await app.listen();
  const origin = publicOrigin(config, port);
  log.info(
    { port, webhook: new URL("/voice/webhook", origin).toString(), stream: `${origin.protocol === "https:" ? "wss" : "ws"}://${origin.host}/voice/stream` },
    "parley is listening",
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, liveCalls: app.manager.liveCount }, "shutting down");
    await app.close();
    await closeServices(services);
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

main().catch((err) => {
  console.error(`parley: ${errorMessage(err)}`);
  process.exit(1);
});
