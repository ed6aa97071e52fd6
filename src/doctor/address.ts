import { isIP } from "node:net";

/**
 * Why an address cannot be reached by a carrier from the internet, or null when it is a public address. A carrier's
 * servers connect from outside: a name that resolves to loopback, a private range (RFC 1918, unique-local), link-local,
 * carrier-grade NAT or an unspecified address points them at their own network, never at this Parley.
 */
export function nonPublicReason(address: string): string | null {
  const family = isIP(address);
  if (family === 4) return v4Reason(address);
  if (family === 6) return v6Reason(address.toLowerCase());
  return "not an IP address";
}

function v4Reason(a: string): string | null {
  const [x, y] = a.split(".").map(Number) as [number, number, number, number];
  if (x === 127) return "loopback (127.0.0.0/8)";
  if (x === 10) return "private (10.0.0.0/8)";
  if (x === 172 && y >= 16 && y <= 31) return "private (172.16.0.0/12)";
  if (x === 192 && y === 168) return "private (192.168.0.0/16)";
  if (x === 169 && y === 254) return "link-local (169.254.0.0/16)";
  if (x === 100 && y >= 64 && y <= 127) return "carrier-grade NAT (100.64.0.0/10)";
  if (x === 0) return "unspecified (0.0.0.0/8)";
  if (x >= 224) return "multicast or reserved (224.0.0.0/3)";
  return null;
}

function v6Reason(a: string): string | null {
  // IPv4-mapped (::ffff:10.0.0.1) and its hex form (::ffff:a00:1): the IPv4 rules apply.
  const mapped = /^(?:0{0,4}:){0,5}:?ffff:(.+)$/.exec(a);
  if (mapped) {
    const rest = mapped[1]!;
    if (isIP(rest) === 4) return v4Reason(rest);
    const hex = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(rest);
    if (hex) {
      const hi = parseInt(hex[1]!, 16);
      const lo = parseInt(hex[2]!, 16);
      return v4Reason(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
    }
  }
  if (a === "::1") return "loopback (::1)";
  if (a === "::") return "unspecified (::)";
  const first = parseInt(a.split(":")[0] || "0", 16);
  if ((first & 0xfe00) === 0xfc00) return "unique-local (fc00::/7)";
  if ((first & 0xffc0) === 0xfe80) return "link-local (fe80::/10)";
  if ((first & 0xff00) === 0xff00) return "multicast (ff00::/8)";
  return null;
}
