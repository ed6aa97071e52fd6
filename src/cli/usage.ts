/** Help text for `parley --help` and `parley <command> --help`. */

import { fileURLToPath } from "node:url";

export const DEFAULT_URL = "http://127.0.0.1:3334";

/** This checkout's launcher, by absolute path: an MCP client starts tools from its own directory, where `npx parley`
 *  would fetch an unrelated npm package of that name. */
const LAUNCHER = fileURLToPath(new URL("../../bin/parley.js", import.meta.url));

const CONNECTION = `Connection:
  --url <url>        Parley's address (env PARLEY_URL, default ${DEFAULT_URL})
  --token <token>    API bearer token (env API_TOKEN)`;

export const MAIN_USAGE = `Usage: parley <command> [options]

Commands:
  start                          Run the Parley service in this terminal
  call <number> --message <text> Place an outbound call (number in E.164: +15551234567)
  calls                          List calls
  tail <callSid>                 Follow a call's events until it ends
  speak <callSid> <text>         Say something on a live call
  hangup <callSid>               End a live call
  doctor                         Check a deployment: public URL, webhook, stream, signatures, carrier account
  mcp                            Serve MCP on stdio, for AI assistants (talks to a running Parley)
  help [command]                 Show help for a command

${CONNECTION}

Examples:
  parley start
  parley call +15551234567 --message "Your table for two is confirmed for 8pm." --mode notify
  parley calls --since 2h
  parley tail CA0123456789abcdef0123456789abcdef
  parley doctor

Run 'parley <command> --help' for a command's options.`;

export const COMMAND_USAGE: Record<string, string> = {
  doctor: `Usage: parley doctor [--carrier twilio|telnyx|plivo] [--public-url <url>] [--number <e164>] [--timeout <time>] [--json]

Check a deployment end to end, as the carrier sees it, and print a checklist: each line passes (✓)
or fails (✗, with the fix); a check that lacks a setting is skipped (–). Reads the deployment's
settings from the environment: PUBLIC_URL, and the carrier's credentials and number
(Twilio: TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER, TWILIO_API_URL;
Telnyx: TELNYX_API_KEY, TELNYX_FROM_NUMBER, TELNYX_API_URL;
Plivo: PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN, PLIVO_FROM_NUMBER, PLIVO_API_URL).

Checks, in order:
  PUBLIC_URL is https and its name resolves to public addresses (not loopback or private ranges)
  the webhook answers a signed probe call with 200 and the document naming the public wss:// stream
  the stream URL upgrades (101) when signed and refuses an unsigned upgrade
  unsigned and forged webhooks are refused (signature checks are on)
  the credentials work (a read of the account through the carrier's REST API)
  the number's voice URL points at this Parley (read through the REST API)
  the clock is within the carrier's signature skew (against the REST answer's Date header)
The probe calls are ended at once with the carrier's "completed" status; they show in 'parley calls'
(Twilio's CallSid starts CAd0c). Telnyx signs webhooks with its own private key and admits streams
by a per-call token only it receives, so on Telnyx the doctor checks that Parley serves both and
refuses forged or tokenless requests, and says that the answer and the 101 are not checked.

Options:
  --carrier <name>       twilio, telnyx or plivo (default: the first whose settings are set, else twilio)
  --public-url <url>     Check this origin instead of PUBLIC_URL
  --number <e164>        The number callers dial (default the carrier's *_FROM_NUMBER)
  --timeout <time>       Limit per request: 10s (default), 1500ms, ...
  --json                 Print the results as one JSON document, no progress

Exit status: 0 when every check passed, 1 when any failed or was skipped, 2 bad command line.

Examples:
  PUBLIC_URL=https://parley.example.com TWILIO_ACCOUNT_SID=AC... TWILIO_AUTH_TOKEN=... parley doctor
  parley doctor --number +15551234567 --json | jq '.checks[] | select(.status != "pass")'`,

  mcp: `Usage: parley mcp [--url <url>] [--token <token>]

Serve the Model Context Protocol on stdin/stdout, so an AI assistant (Claude Desktop, Cursor, any MCP client) can
place and drive calls through a running Parley: place_call, get_call, list_calls, ask, say, send_dtmf, transfer_call, hang_up,
wait_for_call. Logs go to stderr; stdout carries only the protocol. See README.md ("MCP").

${CONNECTION}

Example client configuration:
  {"mcpServers": {"parley": {"command": "node", "args": [${JSON.stringify(LAUNCHER)}, "mcp"],
                             "env": {"PARLEY_URL": "http://127.0.0.1:3334", "API_TOKEN": "..."}}}}`,

  start: `Usage: parley start [--config <file.json>]

Run the Parley service in the foreground (the same as 'npm start'). Settings come from the
environment, or from a JSON file given by --config or PARLEY_CONFIG; see README.md ("Configuration").
Ctrl-C shuts it down gracefully.

Examples:
  parley start
  PORT=8080 LOG_LEVEL=debug parley start
  parley start --config parley.json`,

  call: `Usage: parley call <number> --message <text> [--mode conversation|notify] [--from <number>] [--follow] [--json]

Place an outbound call and print its id and state.

Options:
  -m, --message <text>   What Parley says when the call is answered (required)
  --mode <mode>          conversation (default): say the message, then hold a conversation;
                         notify: say the message, then hang up
  --from <number>        Number to call from, E.164 (default: the service's TWILIO_FROM_NUMBER)
  -f, --follow           Then print the call's events until it ends (like 'parley tail')
  --json                 Print the API's response as JSON

${CONNECTION}

Examples:
  parley call +15551234567 --message "Hi, this is Parley calling about your order."
  parley call +15551234567 -m "Your package has arrived." --mode notify --follow`,

  calls: `Usage: parley calls [--state <state>] [--direction inbound|outbound|browser] [--since <time>] [--json]

List calls (most recent activity as the service orders them).

Options:
  --state <state>        Only calls in this state: live, ended, or a state of the call
                         machine (listening, speaking, reconnecting, ...)
  --direction <dir>      inbound, outbound or browser (the softphone)
  --since <time>         Only calls created since an ISO time (2025-01-31T09:00:00Z)
                         or a span back from now: 30s, 10m, 2h, 1d
  --json                 Print the calls as a JSON array

${CONNECTION}

Examples:
  parley calls
  parley calls --state live
  parley calls --direction inbound --since 1d --json`,

  tail: `Usage: parley tail <callSid> [--json]

Print a call's events, one line each (time, type, details), until the call ends, then the
reason it ended. A call that has already ended prints its events from its record and exits.
Ctrl-C stops following.

Options:
  --json                 Print each event as a line of JSON

${CONNECTION}

Examples:
  parley tail CA0123456789abcdef0123456789abcdef
  parley tail CA0123456789abcdef0123456789abcdef --json | jq 'select(.type == "turn")'`,

  speak: `Usage: parley speak <callSid> <text> [--interrupt]

Say something on a live call.

Options:
  --interrupt            Cut off whatever Parley is saying and say this at once

${CONNECTION}

Examples:
  parley speak CA0123456789abcdef0123456789abcdef "One moment while I check that."
  parley speak CA0123456789abcdef0123456789abcdef "Sorry, I have to go." --interrupt`,

  hangup: `Usage: parley hangup <callSid>

End a live call.

${CONNECTION}

Example:
  parley hangup CA0123456789abcdef0123456789abcdef`,
};
