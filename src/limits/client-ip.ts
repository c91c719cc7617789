/**
 * The client IP a request is limited by. The socket address wins unless it is a trusted proxy;
 * then X-Forwarded-For is walked from the right (the nearest hop first), trusted hops are
 * skipped, and the first untrusted address is the client (the reasoning of RFC 7239 section 8.1
 * and nginx's `real_ip_recursive`): everything left of it may be forged, so it is never read.
 * A header sent by an untrusted peer is ignored. Addresses are parsed into eight 16-bit groups
 * (IPv4 as `::ffff:a.b.c.d`), so IPv4 rules match IPv4-mapped sockets and vice versa; results are
 * canonical (IPv4 dotted, IPv6 in RFC 5952 form) so one client has one limiter key.
 *
 * `untrustedForwardWarning` says once when X-Forwarded-For comes from a peer not in the list:
 * a load balancer the relay does not trust puts every client in the balancer's one per-IP
 * bucket (issue 19.6: 160 of 800 requests refused at 100 req/s), which nothing told before.
 */
import type { Logger } from "../log.js";

/** An address as eight 16-bit groups; IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`). */
export type IpGroups = readonly number[];

type Matcher = (ip: IpGroups) => boolean;
const compiled = new WeakMap<readonly string[], Matcher>();

/** What `clientIp` returns when the socket has no address (already closed). */
export const UNKNOWN_CLIENT = "unknown";

export function clientIp(socketAddress: string | undefined, forwardedFor: string | undefined, trustProxy: readonly string[]): string {
  if (socketAddress === undefined || socketAddress === "") return UNKNOWN_CLIENT;
  if (trustProxy.length === 0) {
    // Node reports canonical socket addresses; only the IPv4-mapped form needs unwrapping.
    return socketAddress.startsWith("::ffff:") && socketAddress.includes(".") ? socketAddress.slice(7) : socketAddress;
  }
  const socket = parseIp(socketAddress);
  if (socket === null) return socketAddress;
  const trusted = trustMatcher(trustProxy);
  if (!trusted(socket)) return formatIp(socket);
  let client = socket;
  if (forwardedFor !== undefined) {
    const hops = forwardedFor.split(",");
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = (hops[i] ?? "").trim();
      if (hop === "") continue;
      const ip = parseHop(hop);
      if (ip === null) break; // garbage from a trusted hop: keep the nearest known address (as nginx does)
      client = ip;
      if (!trusted(ip)) break;
    }
  }
  return formatIp(client);
}

/**
 * A check for each request's socket address and X-Forwarded-For: the first one that carries the
 * header from a peer not in `trustProxy` is logged (warn), once; after that the check is one
 * boolean. The peer's address is logged (the operator needs it for RELAYAPI_TRUST_PROXY), the
 * header's contents are not.
 */
export function untrustedForwardWarning(
  trustProxy: readonly string[],
  log: Logger,
): (socketAddress: string | undefined, forwardedFor: string | undefined) => void {
  let warned = false;
  return (socketAddress, forwardedFor) => {
    if (warned || forwardedFor === undefined || socketAddress === undefined || socketAddress === "") return;
    if (trustProxy.length > 0) {
      const peer = parseIp(socketAddress);
      if (peer !== null && trustMatcher(trustProxy)(peer)) return;
    }
    warned = true;
    log.warn("X-Forwarded-For ignored: the peer is not in trustProxy (logged once)", {
      peer: clientIp(socketAddress, undefined, []),
      trustProxy: trustProxy.length,
      hint: "behind a load balancer or proxy, set RELAYAPI_TRUST_PROXY to its addresses; until then every client it forwards shares its per-IP limit (RELAYAPI_IP_RPM)",
    });
  };
}

/** Compiles (and caches per array) a trust list; throws on an invalid entry so config can validate early. */
export function trustMatcher(trustProxy: readonly string[]): Matcher {
  let m = compiled.get(trustProxy);
  if (m === undefined) {
    const rules = trustProxy.map(parseRule);
    m = (ip) => rules.some((r) => inPrefix(ip, r.net, r.bits));
    compiled.set(trustProxy, m);
  }
  return m;
}

function parseRule(entry: string): { net: IpGroups; bits: number } {
  const [addr = "", len, extra] = entry.trim().split("/");
  const net = parseIp(addr);
  const v4 = net !== null && !addr.includes(":");
  const max = v4 ? 32 : 128;
  const bits = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (net === null || extra !== undefined || !(bits >= 0 && bits <= max)) throw new RangeError(`trustProxy: invalid address or CIDR "${entry}"`);
  return { net, bits: v4 ? bits + 96 : bits };
}

function inPrefix(ip: IpGroups, net: IpGroups, bits: number): boolean {
  for (let g = 0; g < 8 && bits > 0; g++, bits -= 16) {
    const mask = bits >= 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff;
    if (((ip[g] ?? 0) & mask) !== ((net[g] ?? 0) & mask)) return false;
  }
  return true;
}

/** An X-Forwarded-For element: a bare address, `[v6]:port`, `[v6]` or `v4:port`. */
function parseHop(hop: string): IpGroups | null {
  if (hop.startsWith("[")) {
    const end = hop.indexOf("]");
    return end > 0 && /^(:\d{1,5})?$/.test(hop.slice(end + 1)) ? parseIp(hop.slice(1, end)) : null;
  }
  const colon = hop.indexOf(":");
  if (colon > 0 && colon === hop.lastIndexOf(":") && /^\d{1,5}$/.test(hop.slice(colon + 1))) return parseIp(hop.slice(0, colon));
  return parseIp(hop);
}

/** Parses IPv4 or IPv6 (zone ids dropped); null when invalid. */
export function parseIp(s: string): IpGroups | null {
  const zone = s.indexOf("%");
  const a = zone >= 0 ? s.slice(0, zone) : s;
  if (!a.includes(":")) {
    const v4 = parseV4(a);
    return v4 === null ? null : [0, 0, 0, 0, 0, 0xffff, v4[0], v4[1]];
  }
  const halves = a.split("::");
  if (halves.length > 2) return null;
  const head = groups(halves[0] ?? "", halves.length === 1);
  const tail = halves.length === 2 ? groups(halves[1] ?? "", true) : [];
  if (head === null || tail === null) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  return [...head, ...new Array<number>(halves.length === 1 ? 0 : missing).fill(0), ...tail];
}

function groups(part: string, mayEndInV4: boolean): number[] | null {
  if (part === "") return [];
  const out: number[] = [];
  const items = part.split(":");
  for (let i = 0; i < items.length; i++) {
    const item = items[i] ?? "";
    if (mayEndInV4 && i === items.length - 1 && item.includes(".")) {
      const v4 = parseV4(item);
      if (v4 === null) return null;
      out.push(v4[0], v4[1]);
    } else if (/^[0-9a-fA-F]{1,4}$/.test(item)) out.push(parseInt(item, 16));
    else return null;
  }
  return out;
}

/** Dotted quad without leading zeros (which some parsers read as octal) as two 16-bit groups. */
function parseV4(s: string): [number, number] | null {
  const p = s.split(".");
  if (p.length !== 4) return null;
  const n: number[] = [];
  for (const x of p) {
    if (!/^(0|[1-9]\d{0,2})$/.test(x) || Number(x) > 255) return null;
    n.push(Number(x));
  }
  return [((n[0] ?? 0) << 8) | (n[1] ?? 0), ((n[2] ?? 0) << 8) | (n[3] ?? 0)];
}

/** Canonical text: IPv4 (also IPv4-mapped) dotted, IPv6 per RFC 5952 (lower case, longest zero run as `::`). */
export function formatIp(ip: IpGroups): string {
  if (isV4(ip)) {
    const hi = ip[6] ?? 0;
    const lo = ip[7] ?? 0;
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  let best = -1;
  let bestLen = 1; // RFC 5952 4.2.2: a single zero group is not shortened
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && ip[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = ip.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

export function isV4(ip: IpGroups): boolean {
  return ip[0] === 0 && ip[1] === 0 && ip[2] === 0 && ip[3] === 0 && ip[4] === 0 && ip[5] === 0xffff;
}
