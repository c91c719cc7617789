#!/usr/bin/env python3
"""Mint a RelayAPI sealed token in Python with a standard JOSE library (jwcrypto).

Users of the original RelayAPI Python SDK keep minting tokens in their Python backends; the
format is now a compact JWE (README "Sealed tokens"), so no RelayAPI package is needed, only
jwcrypto (Debian: python3-jwcrypto; pip: jwcrypto).

  # alg dir + A256GCM under an issuer key (`relayapi issuer create` prints kid and secret)
  python3 mint_token.py dir --issuer-key KID:SECRET --provider openai --upstream-key sk-... \
      --max-calls 20 --expires-in 600 --subject user-42 --models gpt-4o-mini

  # alg ECDH-ES (X25519) to the relay's public key (`relayapi pubkey > relay.jwk`); the token
  # carries its own upstream key and may never name a pool
  python3 mint_token.py ecdh-es --relay-key relay.jwk --provider openai --upstream-key sk-...

  # check a test vector (test/vectors/*.json): decrypt it and compare the claims
  python3 mint_token.py check-vector ../../test/vectors/dir-basic.json

The token is printed on stdout. In your own code, call mint_dir() or mint_ecdh_es().
"""
import argparse
import json
import secrets
import sys
import time

from jwcrypto import jwe, jwk
from jwcrypto.common import base64url_decode, json_encode


def mint_dir(claims, kid, secret):
    """Seal claims under an issuer key: kid and the base64url 32-byte secret."""
    if len(base64url_decode(secret)) != 32:
        raise ValueError("the issuer secret must be 32 bytes, base64url")
    key = jwk.JWK(kty="oct", k=secret)
    token = jwe.JWE(json_encode(claims), protected=json_encode({"alg": "dir", "enc": "A256GCM", "kid": kid}))
    token.add_recipient(key)
    return token.serialize(compact=True)


def mint_ecdh_es(claims, relay_jwk):
    """Seal claims to the relay's public X25519 JWK (a dict with kid)."""
    if "pool" in claims:
        raise ValueError("an ECDH-ES token may not name a pool")
    key = jwk.JWK(kty=relay_jwk["kty"], crv=relay_jwk["crv"], x=relay_jwk["x"])
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "kid": relay_jwk["kid"]}
    token = jwe.JWE(json_encode(claims), protected=json_encode(header))
    token.add_recipient(key)
    return token.serialize(compact=True)


def claims_from(args):
    now = int(time.time())
    claims = {
        "jti": args.jti or secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + args.expires_in,
        "prv": args.provider,
        "key": args.upstream_key,
    }
    if args.max_calls is not None:
        claims["max"] = args.max_calls
    if args.subject:
        claims["sub"] = args.subject
    if args.models:
        claims["mdl"] = args.models.split(",")
    if args.paths:
        claims["pth"] = args.paths.split(",")
    if args.origins:
        claims["org"] = args.origins.split(",")
    return claims


def check_vector(path):
    """Decrypt a committed test vector with jwcrypto and compare its claims."""
    with open(path) as f:
        v = json.load(f)
    if v["alg"] == "dir":
        key = jwk.JWK(kty="oct", k=v["issuerKey"]["secret"])
    else:
        key = jwk.JWK(**v["relayPrivateJwk"])
    token = jwe.JWE()
    token.allowed_algs = ["dir", "ECDH-ES", "A256GCM"]
    token.deserialize(v["jwe"], key=key)
    claims = json.loads(token.payload)
    if claims != v["claims"]:
        raise SystemExit(f"{path}: claims differ: {claims}")
    header = token.jose_header
    if header.get("kid") != v["header"]["kid"] or header.get("alg") != v["alg"]:
        raise SystemExit(f"{path}: header differs: {header}")
    print(f"{path}: ok")


def main(argv):
    parser = argparse.ArgumentParser(description="Mint a RelayAPI sealed token (JWE) with jwcrypto.")
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("dir", "ecdh-es"):
        p = sub.add_parser(mode)
        if mode == "dir":
            p.add_argument("--issuer-key", required=True, help="KID:SECRET from `relayapi issuer create`")
        else:
            p.add_argument("--relay-key", required=True, help="the relay's public JWK (JSON or a file), from `relayapi pubkey`")
        p.add_argument("--provider", required=True)
        p.add_argument("--upstream-key", required=True)
        p.add_argument("--max-calls", type=int)
        p.add_argument("--expires-in", type=int, default=3600, help="seconds (default 3600)")
        p.add_argument("--subject")
        p.add_argument("--models", help="comma-separated")
        p.add_argument("--paths", help="comma-separated path prefixes")
        p.add_argument("--origins", help="comma-separated origins")
        p.add_argument("--jti")
    sub.add_parser("check-vector").add_argument("files", nargs="+")
    args = parser.parse_args(argv)

    if args.mode == "check-vector":
        for path in args.files:
            check_vector(path)
        return
    claims = claims_from(args)
    if args.mode == "dir":
        kid, _, secret = args.issuer_key.rpartition(":")
        if not kid:
            parser.error("--issuer-key must look like KID:SECRET")
        print(mint_dir(claims, kid, secret))
    else:
        raw = args.relay_key.strip()
        if not raw.startswith("{"):
            with open(raw) as f:
                raw = f.read()
        print(mint_ecdh_es(claims, json.loads(raw)))


if __name__ == "__main__":
    main(sys.argv[1:])
