import { parseArgs } from "node:util";
import { COMMAND_USAGE } from "./cli/usage.ts";
import { ConfigError, loadConfig, publicOrigin, type Config } from "./config.ts";
import { errorMessage } from "./util/errors.ts";

/** `npm start -- --help` and `parley start --help` print the usage; a bad option is a one-line error, exit 2. */
function options(): { config?: string } {
  let values;
  try {
    ({ values } = parseArgs({ options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } }, allowPositionals: false }));
  } catch (err) {
    console.error(`parley: ${errorMessage(err).split(/\.\s/)[0]} (see 'parley start --help')`);
    process.exit(2);
  }
  if (values.help) {
    console.log(COMMAND_USAGE.start);
    process.exit(0);
  }
  return values;
}

/** The start-up line a person reads first: where to open the pages (on this machine, whatever HOST is). */
function openLine(config: Config, port: number): string {
  const local = publicOrigin({ ...config, publicUrl: undefined }, port);
  const page = (path: string) => new URL(path, local).toString();
  const token = config.apiToken ? " (add ?access_token=<API_TOKEN> to each address)" : "";
  return config.softphone
    ? `open ${page("/")} to talk to Parley from this browser (the softphone), or ${page("/debug")} to watch calls move through the state machine${token}`
    : `open ${page("/debug")} to watch calls move through the state machine${token}`;
}

async function main(): Promise<void> {
  const values = options();
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
  // Loaded once the options and settings are checked: the service's modules (ONNX runtime, recogniser) take seconds to
  // load, and `--help` or a typo should answer at once.
  const [{ closeServices, createLogger, createServices }, { buildApp }] = await Promise.all([import("./bootstrap.ts"), import("./server/app.ts")]);
  const log = createLogger(config);
  // Twilio's routes are served unsigned only when no carrier is configured at all (src/carriers/registry.ts).
  if (!config.twilioAuthToken && !config.telnyxPublicKey && !config.plivoAuthToken)
    log.warn("no carrier credentials (TWILIO_AUTH_TOKEN, TELNYX_PUBLIC_KEY, PLIVO_AUTH_TOKEN): Twilio's webhook and media stream are served with signatures NOT checked");

  const services = await createServices(config, log);
  const app = buildApp(services);
  const port = await app.listen();
  const origin = publicOrigin(config, port);
  // Each carrier served, with the URLs its console must name (the stream URLs are what Parley's answers name).
  const wsOrigin = `${origin.protocol === "https:" ? "wss" : "ws"}://${origin.host}`;
  const carriers = Object.fromEntries(
    services.carriers.all
      .filter((c) => c.paths.webhook)
      .map((c) => [c.name, { webhook: new URL(c.paths.webhook!, origin).toString(), ...(c.paths.status ? { status: new URL(c.paths.status, origin).toString() } : {}), stream: `${wsOrigin}${c.paths.stream}` }]),
  );
  log.info({ port, carriers }, "parley is listening");
  log.info(openLine(config, port));

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, liveCalls: app.manager.liveCount }, "shutting down");
    // Only in a fleet: a single instance shuts down at once as it always did (its calls resume from disk on restart).
    if (signal === "SIGTERM" && app.state.kind === "redis" && config.drainTimeoutS > 0 && app.manager.liveCount) {
      // Draining: /healthz says so (503), new calls are refused, live ones get DRAIN_TIMEOUT_S to finish; the rest are
      // suspended and their leases given back, so Twilio's <Connect action> carries them to another instance.
      log.info({ drainTimeoutS: config.drainTimeoutS }, "draining: no new calls; waiting for live calls to finish");
      const { finished, handedOver } = await app.manager.drain(config.drainTimeoutS * 1000);
      log.info({ finished, handedOver }, "drained");
    }
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
