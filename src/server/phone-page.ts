import { readFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";

const asset = (name: string) => readFileSync(new URL(`./phone/${name}`, import.meta.url), "utf8");

/**
 * The browser softphone's page and scripts. They hold no secret, so they are served to anyone; what they do needs
 * the API token when one is set (the page takes it from `?access_token=`), like the rest of the control API.
 */
export function registerPhonePage(fastify: FastifyInstance): void {
  const files = {
    "/phone": { type: "text/html; charset=utf-8", body: asset("index.html") },
    "/phone/phone.js": { type: "text/javascript; charset=utf-8", body: asset("phone.js") },
    "/phone/audio-worklet.js": { type: "text/javascript; charset=utf-8", body: asset("audio-worklet.js") },
  };
  for (const [path, f] of Object.entries(files)) fastify.get(path, async (_req, reply) => reply.type(f.type).header("cache-control", "no-cache").send(f.body));
  // The root is where a person lands first: the softphone, with the token they came with.
  fastify.get("/", async (req, reply) => reply.redirect(`/phone${req.url.slice(1)}`));
}
