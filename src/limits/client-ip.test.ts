/**
 * clientIp: the socket wins unless it is a trusted proxy; X-Forwarded-For is walked from the
 * right past trusted hops; spoofed headers from untrusted peers are ignored; IPv4, IPv6, CIDRs
 * and IPv4-mapped sockets; canonical output.
 */
import { isIP } from "node:net";
import { describe, expect, it } from "vitest";
import { clientIp, formatIp, parseIp, trustMatcher, UNKNOWN_CLIENT } from "./client-ip.js";

describe("clientIp", () => {
  it("uses the socket when no proxy is trusted, ignoring X-Forwarded-For", () => {
    expect(clientIp("203.0.113.9", "1.1.1.1", [])).toBe("203.0.113.9");
    expect(clientIp("::ffff:203.0.113.9", "1.1.1.1", [])).toBe("203.0.113.9");
    expect(clientIp("2001:db8::7", undefined, [])).toBe("2001:db8::7");
    expect(clientIp(undefined, "1.1.1.1", ["10.0.0.0/8"])).toBe(UNKNOWN_CLIENT);
  });

  it("ignores a spoofed header from an untrusted socket", () => {
    expect(clientIp("203.0.113.9", "10.0.0.1, 1.1.1.1", ["10.0.0.0/8"])).toBe("203.0.113.9");
  });

  it("takes the first untrusted address from the right behind trusted proxies", () => {
    const trust = ["10.0.0.0/8", "192.0.2.1"];
    expect(clientIp("10.0.0.1", "198.51.100.4", trust)).toBe("198.51.100.4");
    // The client put "6.6.6.6" in the header itself: it is left of the real client, never read.
    expect(clientIp("10.0.0.1", "6.6.6.6, 198.51.100.4, 192.0.2.1, 10.9.9.9", trust)).toBe("198.51.100.4");
    // Several headers arrive joined with ", "; empty elements are skipped.
    expect(clientIp("10.0.0.1", "198.51.100.4, , 10.2.2.2", trust)).toBe("198.51.100.4");
  });

  it("falls back to the farthest trusted hop when every hop is trusted or the header is absent", () => {
    expect(clientIp("10.0.0.1", undefined, ["10.0.0.0/8"])).toBe("10.0.0.1");
    expect(clientIp("10.0.0.1", "10.0.0.2, 10.0.0.3", ["10.0.0.0/8"])).toBe("10.0.0.2");
  });

  it("stops at garbage and keeps the nearest known address (as nginx does)", () => {
    expect(clientIp("10.0.0.1", "198.51.100.4, not-an-ip", ["10.0.0.0/8"])).toBe("10.0.0.1");
    expect(clientIp("10.0.0.1", "1.2.3.04, 10.0.0.5", ["10.0.0.0/8"])).toBe("10.0.0.5");
  });

  it("matches IPv4 rules against IPv4-mapped sockets and hops", () => {
    expect(clientIp("::ffff:10.1.2.3", "198.51.100.4", ["10.0.0.0/8"])).toBe("198.51.100.4");
    expect(clientIp("10.1.2.3", "::ffff:198.51.100.4", ["::ffff:10.0.0.0/104"])).toBe("198.51.100.4");
    expect(clientIp("::ffff:127.0.0.1", "198.51.100.4", ["127.0.0.1"])).toBe("198.51.100.4");
  });

  it("handles IPv6 proxies, ports, brackets and canonical forms", () => {
    const trust = ["2001:db8::/32", "::1"];
    expect(clientIp("2001:db8:1::1", "2001:DB8:0:0:0:0:0:1, 2a00:1450::5", trust)).toBe("2a00:1450::5");
    expect(clientIp("::1", "[2a00:1450:0:0::5]:443", trust)).toBe("2a00:1450::5");
    expect(clientIp("::1", "198.51.100.4:8080", trust)).toBe("198.51.100.4");
    expect(clientIp("0:0:0:0:0:0:0:1", "2A00:1450::0:5", trust)).toBe("2a00:1450::5");
    expect(clientIp("2001:db9::1", "2a00:1450::5", trust)).toBe("2001:db9::1");
  });

  it("rejects invalid trust entries up front", () => {
    for (const bad of ["10.0.0.0/33", "2001:db8::/129", "10.0.0", "10.0.0.0/8/1", "host.example", "10.0.0.0/x"]) {
      expect(() => trustMatcher([bad]), bad).toThrow(RangeError);
    }
    expect(trustMatcher(["0.0.0.0/0"])(parseIp("8.8.8.8") ?? [])).toBe(true);
    expect(trustMatcher(["0.0.0.0/0"])(parseIp("2001:db8::1") ?? [])).toBe(false);
  });
});

describe("parseIp and formatIp", () => {
  const samples = [
    "0.0.0.0",
    "255.255.255.255",
    "1.2.3.4",
    "01.2.3.4",
    "1.2.3.256",
    "1.2.3",
    "1.2.3.4.5",
    "1..3.4",
    "::",
    "::1",
    "1::",
    "1::2",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1::2::3",
    ":::",
    "1:::2",
    "12345::",
    "g::1",
    "::ffff:1.2.3.4",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4",
    "::1.2.3.4",
    "1.2.3.4::",
    "fe80::1%eth0",
    "",
    " 1.2.3.4",
    "2001:db8::1:0:0:1",
  ];

  it("accepts exactly what node:net accepts", () => {
    for (const s of samples) expect(parseIp(s) !== null, s).toBe(isIP(s.split("%")[0] ?? "") !== 0);
  });

  it("formats per RFC 5952", () => {
    const canon = (s: string): string => formatIp(parseIp(s) ?? []);
    expect(canon("2001:0db8:0000:0000:0001:0000:0000:0001")).toBe("2001:db8::1:0:0:1");
    expect(canon("2001:db8:0:1:1:1:1:1")).toBe("2001:db8:0:1:1:1:1:1");
    expect(canon("0:0:0:0:0:0:0:0")).toBe("::");
    expect(canon("1:0:0:0:0:0:0:0")).toBe("1::");
    expect(canon("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(canon("fe80::1%eth0")).toBe("fe80::1");
  });
});
