import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:net";

/**
 * What a load run on a carrier needs on both sides: the environment that configures Parley for the carrier (its
 * credentials, and for Telnyx the REST API the generator serves) and the generator's matching arguments. Fresh
 * credentials per run: nothing here is a secret anywhere else.
 */
export type LoadCarrierName = "twilio" | "telnyx" | "plivo";

export interface LoadCarrier {
  name: LoadCarrierName;
  /** For Parley's process (merged into its environment). */
  env: Record<string, string>;
  /** For bench/load/generator.ts, after --url/--calls/... */
  generatorArgs: string[];
}

/** A port nobody is listening on now (the generator's Telnyx REST API takes it a moment later). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function loadCarrier(name: LoadCarrierName): Promise<LoadCarrier> {
  // Parley refuses carrier credentials without an API token (its control API would be open): the bench makes one.
  const API_TOKEN = randomBytes(24).toString("base64url");
  if (name === "telnyx") {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const apiKey = `KEY${randomBytes(12).toString("hex")}`;
    const port = await freePort();
    return {
      name,
      env: {
        API_TOKEN,
        TELNYX_API_KEY: apiKey,
        // The portal's form: the raw 32-byte key, base64 (the JWK's `x`).
        TELNYX_PUBLIC_KEY: Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64"),
        TELNYX_API_URL: `http://127.0.0.1:${port}/v2`,
      },
      generatorArgs: [
        "--carrier",
        "telnyx",
        "--telnyx-private-key",
        privateKey.export({ format: "der", type: "pkcs8" }).toString("base64"),
        "--telnyx-api-key",
        apiKey,
        "--telnyx-rest-port",
        String(port),
      ],
    };
  }
  if (name === "plivo") {
    const authId = `MA${randomBytes(9).toString("hex").toUpperCase()}`;
    const authToken = randomBytes(20).toString("hex");
    return { name, env: { API_TOKEN, PLIVO_AUTH_ID: authId, PLIVO_AUTH_TOKEN: authToken }, generatorArgs: ["--carrier", "plivo", "--auth-id", authId, "--auth-token", authToken] };
  }
  return { name, env: {}, generatorArgs: [] };
}
