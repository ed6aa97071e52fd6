import { BlockList, isIP } from "node:net";

/**
 * Who a request comes from. Behind a TLS proxy every request arrives from the proxy, so per-client limits would become
 * one global limit; but X-Forwarded-For is whatever the sender wrote, so it is believed only from proxies the operator
 * named (TRUST_PROXY). Walking the list from the right, the first address that is not a trusted proxy is the client:
 * an entry a client forged at the left end is never reached while a trusted proxy appended the real one.
 */
export type TrustFn = (address: string) => boolean;

/** A trust test for TRUST_PROXY's entries (addresses, CIDR ranges, "loopback"); none trusts nobody. */
export function trustProxies(entries: string[]): TrustFn {
  if (!entries.length) return () => false;
  const list = new BlockList();
  for (const e of entries) {
    if (e === "loopback") {
      list.addSubnet("127.0.0.0", 8, "ipv4");
      list.addAddress("::1", "ipv6");
      continue;
    }
    const [addr, bits] = e.split("/") as [string, string | undefined];
    const type = isIP(addr) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return (address) => {
    const a = normalize(address);
    const family = isIP(a);
    return family !== 0 && list.check(a, family === 6 ? "ipv6" : "ipv4");
  };
}

/** The client's address: the socket's peer, or, through trusted proxies only, the address they forwarded for. */
export function clientAddress(remote: string | undefined, forwardedFor: string | string[] | undefined, trusted: TrustFn): string {
  let addr = normalize(remote ?? "");
  if (!addr || !trusted(addr) || !forwardedFor) return addr || "unknown";
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor).split(",");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normalize(hops[i]!.trim());
    if (!isIP(hop)) return addr; // junk in the header: stop at the last address we could vouch for
    addr = hop;
    if (!trusted(addr)) return addr;
  }
  return addr;
}

/** IPv4 peers of a dual-stack socket show up as ::ffff:a.b.c.d. */
function normalize(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
