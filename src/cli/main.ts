/**
 * `parley`: run the service, or drive a running one through its control API. Exit status: 0 done, 1 the API or the
 * connection failed, 2 bad command line.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ApiClient, ApiError, UnreachableError } from "./api-client.ts";
import * as commands from "./commands.ts";
import { UsageError, type Context } from "./commands.ts";
import { COMMAND_USAGE, DEFAULT_URL, MAIN_USAGE } from "./usage.ts";
import { errorMessage } from "../util/errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

const GLOBAL: Options = {
  url: { type: "string" },
  token: { type: "string" },
  help: { type: "boolean", short: "h" },
};

interface Command {
  options: Options;
  run: (ctx: Context) => Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  call: {
    options: {
      message: { type: "string", short: "m" },
      mode: { type: "string" },
      from: { type: "string" },
      follow: { type: "boolean", short: "f" },
      json: { type: "boolean" },
    },
    run: commands.call,
  },
  calls: {
    options: { state: { type: "string" }, direction: { type: "string" }, since: { type: "string" }, json: { type: "boolean" } },
    run: commands.calls,
  },
  tail: { options: { json: { type: "boolean" } }, run: commands.tail },
  hangup: { options: {}, run: commands.hangup },
  speak: { options: { interrupt: { type: "boolean" } }, run: commands.speak },
};

/** The command is the first word that is neither an option nor the value of a global option written `--url X`. */
function splitCommand(args: string[]): { name: string | undefined; rest: string[] } {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--url" || a === "--token") i++;
    else if (a === "--") return { name: args[i + 1], rest: [...args.slice(0, i), ...args.slice(i + 2)] };
    else if (!a.startsWith("-")) return { name: a, rest: [...args.slice(0, i), ...args.slice(i + 1)] };
  }
  return { name: undefined, rest: args };
}

function baseUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`invalid URL '${raw}' (from --url or PARLEY_URL)`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new UsageError(`--url must be http:// or https://, not '${raw}'`);
  return raw;
}

async function run(argv: string[]): Promise<number | "running"> {
  const { name, rest } = splitCommand(argv);
  const wantsHelp = rest.includes("--help") || rest.includes("-h");

  if (name === undefined) {
    if (wantsHelp) return print(MAIN_USAGE, 0);
    throw new UsageError("missing command");
  }
  if (name === "help") {
    const topic = rest.find((a) => !a.startsWith("-"));
    if (topic && !COMMAND_USAGE[topic]) throw new UsageError(`unknown command '${topic}'`);
    return print(topic ? COMMAND_USAGE[topic]! : MAIN_USAGE, 0);
  }
  if (name === "start") {
    if (wantsHelp) return print(COMMAND_USAGE.start!, 0);
    // src/main.ts runs the service when imported and reads its own options (--config) from process.argv.
    process.argv = [process.argv[0]!, process.argv[1]!, ...rest];
    await import("../main.ts");
    return "running";
  }

  if (name === "mcp") {
    if (wantsHelp) return print(COMMAND_USAGE.mcp!, 0);
    const { values } = parseArgs({ args: rest, options: GLOBAL, allowPositionals: false, strict: true });
    const url = baseUrl((values.url as string | undefined) || process.env.PARLEY_URL || DEFAULT_URL);
    const token = (values.token as string | undefined) || process.env.API_TOKEN || undefined;
    // stdout is the MCP protocol from here on: nothing else may be printed to it.
    await (await import("../mcp/stdio.ts")).runStdioServer({ url, ...(token ? { token } : {}) });
    return "running";
  }

  if (name === "doctor") {
    if (wantsHelp) return print(COMMAND_USAGE.doctor!, 0);
    return await runDoctor(rest);
  }

  const command = COMMANDS[name];
  if (!command) throw new UsageError(`unknown command '${name}'`);
  if (wantsHelp) return print(COMMAND_USAGE[name]!, 0); // before parsing: `--help` wins over a bad option
  try {
    return await runCommand(name, command, rest);
  } catch (err) {
    // Tag usage errors with the command, so its usage (not the general one) follows the message.
    if (err instanceof UsageError && err.cause === undefined) throw new UsageError(err.message, { cause: name });
    throw err;
  }
}

async function runCommand(name: string, command: Command, rest: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { ...GLOBAL, ...command.options }, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs's first sentence is clear ("Unknown option '--x'", "Option '--since <value>' argument missing"); the
    // rest (how to pass a positional that starts with '-') would make the one-line error three.
    throw new UsageError(errorMessage(err).split(/\.\s/)[0]!);
  }
  const values = parsed.values as Context["values"];
  if (values.help) return print(COMMAND_USAGE[name]!, 0);

  const url = baseUrl((values.url as string | undefined) || process.env.PARLEY_URL || DEFAULT_URL);
  const token = (values.token as string | undefined) || process.env.API_TOKEN || undefined;
  const out = (line: string) => void process.stdout.write(`${line}\n`);
  return command.run({ client: new ApiClient(url, token), positionals: parsed.positionals, values, out });
}

/** `parley doctor`: checks a deployment from its settings (the environment), not through the control API. */
async function runDoctor(rest: string[]): Promise<number> {
  const { doctor, CARRIERS, defaultCarrier, parseTimeout } = await import("../doctor/run.ts");
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { carrier: { type: "string" }, "public-url": { type: "string" }, number: { type: "string" }, timeout: { type: "string" }, json: { type: "boolean" } },
      allowPositionals: false,
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(errorMessage(err).split(/\.\s/)[0]!, { cause: "doctor" });
  }
  const carrier = values.carrier ?? defaultCarrier(process.env);
  if (!(CARRIERS as readonly string[]).includes(carrier)) throw new UsageError(`unknown carrier '${carrier}' (known: ${CARRIERS.join(", ")})`, { cause: "doctor" });
  const timeoutMs = values.timeout === undefined ? undefined : parseTimeout(values.timeout);
  if (timeoutMs === null) throw new UsageError(`--timeout must be a duration like 5s or 1500ms, not '${values.timeout}'`, { cause: "doctor" });
  return doctor({
    env: process.env,
    carrier,
    ...(values["public-url"] ? { publicUrl: values["public-url"] } : {}),
    ...(values.number ? { number: values.number } : {}),
    json: !!values.json,
    write: (s) => void process.stdout.write(s),
    tty: !!process.stdout.isTTY && !process.env.NO_COLOR,
    ...(timeoutMs !== undefined ? { transport: { timeoutMs } } : {}),
  });
}

function print(text: string, code: number): number {
  process.stdout.write(`${text}\n`);
  return code;
}

/** One line: the message and where the usage is (the command name travels as the error's cause). */
function usageFailure(err: UsageError): number {
  const name = typeof err.cause === "string" && COMMAND_USAGE[err.cause] ? err.cause : undefined;
  process.stderr.write(`parley: ${err.message} (see 'parley ${name ? `${name} ` : ""}--help')\n`);
  return 2;
}

function failure(err: unknown, hadToken: boolean): number {
  if (err instanceof UsageError) return usageFailure(err);
  if (err instanceof UnreachableError) {
    process.stderr.write(`parley: cannot reach Parley at ${err.url} — is it running? (npm start)\n`);
  } else if (err instanceof ApiError) {
    process.stderr.write(`parley: ${err.message} (HTTP ${err.status})\n`);
    if (err.status === 401) {
      process.stderr.write(
        hadToken
          ? "hint: the API token was refused; set API_TOKEN (or --token) to the token the service was started with\n"
          : "hint: the service requires an API token; set API_TOKEN (or pass --token)\n",
      );
    }
  } else {
    process.stderr.write(`parley: ${errorMessage(err)}\n`);
  }
  return 1;
}

// `parley calls | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const argv = process.argv.slice(2);
const hadToken = argv.some((a) => a === "--token" || a.startsWith("--token=")) || !!process.env.API_TOKEN;
run(argv).then(
  (code) => {
    if (code !== "running") process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = failure(err, hadToken);
  },
);
