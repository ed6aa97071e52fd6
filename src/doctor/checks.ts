import { nonPublicReason } from "./address.ts";
import { describeNetworkError, send, tryUpgrade } from "./http.ts";
import type { CheckResult, DoctorCarrier, HttpAnswer, SignedRequest, Transport } from "./types.ts";
import { streamUrlFor } from "./urls.ts";

export interface DoctorInput {
  /** PUBLIC_URL as configured (not yet validated: checking it is the first check). */
  publicUrl: string | undefined;
  carrier: DoctorCarrier;
  transport: Transport;
}

export interface Progress {
  start?: (id: string, title: string) => void;
  result?: (r: CheckResult) => void;
}

type Outcome = Omit<CheckResult, "id" | "title" | "ms">;
const pass = (detail: string): Outcome => ({ status: "pass", detail });
const fail = (detail: string, fix: string): Outcome => ({ status: "fail", detail, fix });
const skip = (detail: string, fix: string): Outcome => ({ status: "skip", detail, fix });

/**
 * Run the checklist against a deployment, in order, one check at a time (the stream check uses the stream URL the
 * webhook's answer named, the clock check the account read's Date header). Each check is bounded by the transport's
 * timeout per request and by a limit of its own, so a silent host gives a clear failure, never a hang.
 */
export async function runChecks(input: DoctorInput, progress: Progress = {}): Promise<CheckResult[]> {
  const { carrier, transport } = input;
  const results: CheckResult[] = [];
  const timeoutMs = transport.timeoutMs;
  const http = (r: SignedRequest): Promise<HttpAnswer> => send(transport, r.url, { method: r.method, headers: r.headers, body: r.body, timeoutMs });
  const probeId = () => carrier.probeCallId();
  const probes: string[] = [];

  let publicUrl: URL | null = null;
  try {
    if (input.publicUrl) publicUrl = new URL(input.publicUrl);
  } catch {
    publicUrl = null;
  }
  const noUrl = (): Outcome =>
    skip(input.publicUrl ? "PUBLIC_URL is not a URL" : "PUBLIC_URL is not set", "set PUBLIC_URL to the https:// origin the carrier reaches Parley on");
  const needCreds = (): Outcome | null =>
    carrier.missing.length ? skip(`needs ${carrier.missing.join(" and ")}`, `set ${carrier.missing.join(" and ")} (the carrier's credentials)`) : null;

  const reach = "make PUBLIC_URL reach Parley: is Parley running, and the tunnel or TLS proxy in front of it up?";
  const run = async (id: string, title: string, check: () => Promise<Outcome>, networkFix = reach): Promise<CheckResult> => {
    progress.start?.(id, title);
    const t0 = performance.now();
    let limit: NodeJS.Timeout | undefined;
    let outcome: Outcome;
    try {
      outcome = await Promise.race([
        check(),
        new Promise<Outcome>((resolve) => {
          // Several requests per check, each with its own timeout: this only catches what those cannot.
          limit = setTimeout(() => resolve(fail(`no result within ${3 * timeoutMs} ms`, "check that the host answers at all")), 3 * timeoutMs);
        }),
      ]);
    } catch (err) {
      outcome = fail(describeNetworkError(err), networkFix);
    } finally {
      clearTimeout(limit);
    }
    const result: CheckResult = { id, title, ...outcome, ms: Math.round(performance.now() - t0) };
    results.push(result);
    progress.result?.(result);
    return result;
  };

  // 1. PUBLIC_URL: https, and a name the carrier can reach from the internet.
  await run("public-url", "PUBLIC_URL is public https", async () => {
    if (!input.publicUrl) return noUrl();
    if (!publicUrl) return fail(`PUBLIC_URL=${input.publicUrl} is not a URL`, "set PUBLIC_URL to an origin like https://parley.example.com");
    const problems: string[] = [];
    if (publicUrl.protocol !== "https:")
      problems.push(`${publicUrl.protocol.slice(0, -1)}, not https (carriers need TLS for webhooks and wss:// for media)`);
    const host = publicUrl.hostname.replace(/^\[|\]$/g, "");
    let addresses: string[];
    try {
      addresses = await transport.resolve(host);
    } catch (err) {
      return fail(`${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? describeNetworkError(err)})`, "create a public DNS record for it, or use a tunnel's https:// address");
    }
    const bad = addresses.map((a) => [a, nonPublicReason(a)] as const).filter(([, why]) => why);
    for (const [a, why] of bad) problems.push(`${host} resolves to ${a}, ${why}`);
    if (problems.length)
      return fail(problems.join("; "), "expose Parley through a TLS proxy or tunnel (cloudflared, ngrok) and set PUBLIC_URL to its public https:// address");
    return pass(`${publicUrl.origin} → ${addresses.join(", ")}`);
  });

  // 2. The webhook answers 200 with the carrier's document, naming the public wss:// stream URL.
  const expectedStream = publicUrl ? streamUrlFor(publicUrl, carrier.streamPath) : null;
  const webhookFix = (status: number, url: string): string =>
    status === 403
      ? `the signature did not verify: Parley checks it over PUBLIC_URL + path, so PUBLIC_URL must be exactly the origin the carrier calls, and the key the carrier's`
      : status === 404
        ? `nothing serves ${carrier.webhookPath} there: point PUBLIC_URL (and the tunnel) at Parley, and give Parley this carrier's settings`
        : `make ${url} reach Parley (is it running, does the proxy forward POSTs?)`;
  let namedStreamUrl: string | undefined;
  const canSign = !!publicUrl && carrier.webhook(publicUrl, "probe", "signed") !== null;
  await run("webhook", canSign || !publicUrl ? "webhook answers with the stream document" : "webhook is served by Parley", async () => {
    if (!publicUrl) return noUrl();
    const id = probeId();
    const req = carrier.webhook(publicUrl, id, "signed");
    if (!req) {
      // The doctor cannot sign as this carrier: what it can check is that the webhook is served by Parley, which
      // refuses a forged request (403) where a wrong host would answer 404 or 502.
      const forged = carrier.webhook(publicUrl, id, "forged")!;
      const answer = await http(forged);
      if (answer.status === 403) return pass(`served at ${forged.url} (a forged signature: 403); ${carrier.cannotSign}`);
      return fail(`POST ${forged.url} with a forged signature answered HTTP ${answer.status}${snippet(answer.body)}`, webhookFix(answer.status, forged.url));
    }
    const answer = await http(req);
    probes.push(id);
    if (answer.status !== 200) return fail(`POST ${req.url} answered HTTP ${answer.status}${snippet(answer.body)}`, webhookFix(answer.status, req.url));
    const named = carrier.streamUrlOf(answer);
    if ("error" in named) return fail(named.error, named.fix ?? `make ${req.url} reach Parley itself, not another app`);
    const problems: string[] = [];
    const u = new URL(named.url);
    if (u.protocol !== "wss:") problems.push(`it is ${u.protocol}//, not wss://`);
    if (expectedStream && `${u.origin}${u.pathname}` !== expectedStream) problems.push(`expected ${expectedStream}`);
    if (!problems.length) namedStreamUrl = named.url;
    if (problems.length)
      return fail(`the document names ${named.url}: ${problems.join("; ")}`, `Parley names PUBLIC_URL in its documents: set PUBLIC_URL on the running Parley to ${publicUrl.origin} and restart it`);
    return pass(`200, names ${named.url}`);
  });

  // 3. The stream URL upgrades when signed, and refuses an unsigned upgrade.
  const canOpen = !!publicUrl && carrier.streamUpgrade(publicUrl, "signed", namedStreamUrl) !== null;
  await run("stream", canOpen || !publicUrl ? "stream upgrades when signed, refuses unsigned" : "stream refuses upgrades without a token", async () => {
    if (!publicUrl) return noUrl();
    const signed = carrier.streamUpgrade(publicUrl, "signed", namedStreamUrl);
    const unsigned = carrier.streamUpgrade(publicUrl, "unsigned", namedStreamUrl)!;
    let accepted = "";
    if (signed) {
      const got = await tryUpgrade(transport, signed.url, signed.headers, timeoutMs);
      if (got.status !== 101)
        return fail(
          `signed upgrade to ${signed.url} answered HTTP ${got.status}, not 101`,
          got.status === 403
            ? "the signature did not verify: PUBLIC_URL must be exactly the public origin, and the key the carrier's"
            : "the proxy or tunnel must forward WebSocket upgrades (Upgrade and Connection headers) to Parley",
        );
      accepted = "signed: 101; ";
    }
    const refused = await tryUpgrade(transport, unsigned.url, unsigned.headers, timeoutMs);
    if (refused.status === 101) return fail(`an unsigned upgrade to ${unsigned.url} was accepted: anyone can open a media stream`, carrier.signatureFix);
    if (!signed && refused.status !== 403 && refused.status !== 401)
      return fail(
        `an upgrade without a token to ${unsigned.url} answered HTTP ${refused.status}, not 403`,
        refused.status === 404 ? `Parley does not serve this carrier's stream there: give the running Parley this carrier's settings` : "the proxy or tunnel must forward WebSocket upgrades to Parley",
      );
    return pass(`${accepted}unsigned: ${refused.status}${signed ? "" : `; ${carrier.cannotOpenStream}`}`);
  });

  // 4. The signature setting: an unsigned webhook is refused.
  await run("signature", "unsigned and forged webhooks are refused", async () => {
    if (!publicUrl) return noUrl();
    const seen: string[] = [];
    for (const mode of ["unsigned", "forged"] as const) {
      const id = probeId();
      const answer = await http(carrier.webhook(publicUrl, id, mode)!);
      const what = mode === "unsigned" ? "an unsigned" : "a forged";
      if (answer.status === 200) {
        probes.push(id);
        return fail(`${what} webhook was answered HTTP 200: anyone can start calls`, carrier.signatureFix);
      }
      if (answer.status !== 403 && answer.status !== 401)
        return fail(`${what} webhook was answered HTTP ${answer.status}, not 403`, webhookFix(answer.status, new URL(carrier.webhookPath, publicUrl).toString()));
      seen.push(`${mode}: ${answer.status}`);
    }
    return pass(`POST ${carrier.webhookPath} ${seen.join(", ")}`);
  });

  // The probe calls Parley answered: end them as the carrier would when the caller hangs up before the stream.
  for (const id of probes) {
    const bye = publicUrl ? carrier.hangupWebhook(publicUrl, id) : null;
    if (bye) await http(bye).catch(() => {});
  }

  // 5. The credentials, with a harmless read. Its Date header serves the clock check.
  let account: { answer: HttpAnswer; t0: number; t1: number } | null = null;
  await run("credentials", "carrier credentials work", async () => {
    const missing = needCreds();
    if (missing) return missing;
    const t0 = transport.now();
    const answer = await carrier.readAccount();
    account = { answer, t0, t1: transport.now() };
    if (answer.status === 401 || answer.status === 403) return fail(`the account read answered HTTP ${answer.status}`, carrier.credentialsFix);
    if (answer.status !== 200) return fail(`the account read answered HTTP ${answer.status}${snippet(answer.body)}`, "the carrier's API is unwell or unreachable; try again");
    const status = (JSON.parse(answer.body) as { status?: string }).status;
    if (status && status !== "active") return fail(`the account is ${status}`, "reactivate the account in the carrier's console");
    return pass(`account read: 200${status ? `, ${status}` : ""}`);
  }, "the carrier's REST API did not answer: check this machine's internet access (and TWILIO_API_URL if set)");

  // 6. The number's voice URL points at this Parley.
  await run("number", "the number's voice URL points here", async () => {
    if (!publicUrl) return noUrl();
    const missing = needCreds();
    if (missing) return missing;
    const read = await carrier.readNumberVoiceUrl();
    if ("error" in read) return fail(read.error, read.fix);
    const expected = carrier.expectedVoiceUrl(publicUrl);
    if (read.voiceUrl !== expected) return fail(`the number's voice URL is ${read.detail}`, `set the number's voice webhook ("A call comes in") to POST ${expected}`);
    return pass(read.detail);
  }, "the carrier's REST API did not answer: check this machine's internet access");

  // 7. The clock, against the carrier's Date header (1 s resolution: the carrier's time lies in [date, date + 1 s)).
  await run("clock", "clock within the carrier's signature skew", async () => {
    const got = account as { answer: HttpAnswer; t0: number; t1: number } | null;
    if (!got) return skip("no answer from the carrier to compare with", "fix the credentials check first");
    const date = Date.parse(String(got.answer.headers.date ?? ""));
    if (Number.isNaN(date)) return skip("the carrier's answer had no Date header", "run the doctor again");
    const mid = (got.t0 + got.t1) / 2;
    const skew = mid < date ? mid - date : mid > date + 1000 ? mid - (date + 1000) : 0;
    const text = `${skew >= 0 ? "+" : "−"}${(Math.abs(skew) / 1000).toFixed(1)} s against the carrier (limit ±${carrier.maxClockSkewMs / 1000} s)`;
    if (Math.abs(skew) > carrier.maxClockSkewMs)
      return fail(`local clock ${text}`, `synchronise the clock (systemd-timesyncd, chrony or ntpd); the limit: ${carrier.clockSkewBasis}`);
    return pass(text);
  });

  return results;
}

function snippet(body: string): string {
  const s = body.trim().replace(/\s+/g, " ").slice(0, 80);
  return s ? ` ("${s}")` : "";
}
