/**
 * What DPoP costs per call: microseconds per verifyDpopProof with real ES256 and Ed25519 keys
 * (issue 9: <= 150 µs), with the key cached (the steady state) and new, and the signature check
 * alone as the floor. `npm run bench` reports it; `node bin/run-ts.js bench/dpop-cost.ts` prints it.
 */
import { createPublicKey, randomUUID, verify, type JsonWebKey as NodeJwk } from "node:crypto";
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from "jose";
import { MemoryReplayCache, accessTokenHash, verifyDpopProof, type DpopCheck } from "../src/tokens/dpop.js";

const URL_ = "https://relay.example/api/openai/v1/chat/completions";
const TOKEN = "rly_bench_token";
const NOW = Math.floor(Date.now() / 1000);

interface Signer {
  privateKey: CryptoKey;
  jwk: JWK;
  jkt: string;
}

async function signer(alg: "ES256" | "EdDSA"): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { crv: alg === "EdDSA" ? "Ed25519" : undefined });
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}

function proof(alg: string, s: Signer): Promise<string> {
  return new SignJWT({ htm: "POST", htu: URL_, iat: NOW, jti: randomUUID(), ath: accessTokenHash(TOKEN) })
    .setProtectedHeader({ typ: "dpop+jwt", alg, jwk: s.jwk })
    .sign(s.privateKey);
}

/** Verifies each check in turn; microseconds per verification, wall clock and CPU (all threads). */
async function run(checks: DpopCheck[]): Promise<[number, number]> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (const c of checks) await verifyDpopProof(c);
  const cpu = process.cpuUsage(cpu0);
  return [((performance.now() - t0) * 1000) / checks.length, (cpu.user + cpu.system) / checks.length];
}

const check = (p: string, s: Signer, replay: MemoryReplayCache): DpopCheck => ({
  proof: p,
  method: "POST",
  url: URL_,
  accessToken: TOKEN,
  jkt: s.jkt,
  nowSec: NOW,
  replay,
});

export interface DpopCost {
  alg: "ES256" | "EdDSA";
  /** Best-of-rounds microseconds per verification: [wall, CPU of all threads]. */
  cachedKey: [number, number];
  newKey: [number, number];
  signatureAlone: [number, number];
}

const best = (xs: [number, number][]): [number, number] => [Math.min(...xs.map((x) => x[0])), Math.min(...xs.map((x) => x[1]))];

export async function measureDpopCost(alg: "ES256" | "EdDSA"): Promise<DpopCost> {
  const s = await signer(alg);
  const replay = new MemoryReplayCache();
  const warm: [number, number][] = [];
  for (let round = 0; round < 8; round++) {
    const proofs = await Promise.all(Array.from({ length: 1000 }, () => proof(alg, s)));
    warm.push(await run(proofs.map((p) => check(p, s, replay))));
  }
  const cold: [number, number][] = [];
  for (let round = 0; round < 3; round++) {
    const signers = await Promise.all(Array.from({ length: 200 }, () => signer(alg)));
    cold.push(await run(await Promise.all(signers.map(async (k) => check(await proof(alg, k), k, replay)))));
  }
  // The floor: the signature check alone, as verifyDpopProof makes it.
  const key = createPublicKey({ key: s.jwk as NodeJwk, format: "jwk" });
  const proofs = await Promise.all(Array.from({ length: 1000 }, () => proof(alg, s)));
  const floor: [number, number][] = [];
  for (let round = 0; round < 5; round++) {
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    for (const p of proofs) {
      const dot = p.lastIndexOf(".");
      const input = Buffer.from(p.slice(0, dot), "ascii");
      const sig = Buffer.from(p.slice(dot + 1), "base64url");
      if (!(alg === "ES256" ? verify("sha256", input, { key, dsaEncoding: "ieee-p1363" }, sig) : verify(null, input, key, sig)))
        throw new Error("bad signature");
    }
    const cpu = process.cpuUsage(cpu0);
    floor.push([((performance.now() - t0) * 1000) / proofs.length, (cpu.user + cpu.system) / proofs.length]);
  }
  return { alg, cachedKey: best(warm), newKey: best(cold), signatureAlone: best(floor) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const fmt = ([wall, cpu]: [number, number]): string => `${wall.toFixed(1).padStart(6)} wall ${cpu.toFixed(1).padStart(6)} cpu`;
  console.log(`node ${process.version}, load ${loadavg()[0]!.toFixed(1)}; microseconds per verification (best of rounds)`);
  for (const alg of ["ES256", "EdDSA"] as const) {
    const c = await measureDpopCost(alg);
    console.log(`${alg.padEnd(6)} cached key ${fmt(c.cachedKey)}   new key ${fmt(c.newKey)}   signature alone ${fmt(c.signatureAlone)}`);
  }
}
