/** The wss:// URL Parley should name for a stream path under PUBLIC_URL (ws:// under an http:// one). */
export function streamUrlFor(publicUrl: URL, path: string): string {
  const u = new URL(path, publicUrl);
  u.protocol = u.protocol === "http:" ? "ws:" : "wss:";
  return `${u.origin}${u.pathname}`;
}
