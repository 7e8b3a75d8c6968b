#!/usr/bin/env python3
"""A stand-in identity provider for the external-issuer tests (tests/jwks.rs):
it mints JWTs with PyJWT and the `cryptography` package, sharing no code with
tracevault. Usage: mint_jwt.py DIR, with one JSON job on stdin:

  {"keys": {"rsa-1": "RSA", "ec-1": "P-256", "ed-1": "Ed25519", ...},
   "jwks": {"jwks.json": ["rsa-1", "ec-1", "ed-1"], ...},
   "tokens": [{"key": "rsa-1", "alg": "RS256", "kid": "rsa-1", "claims": {...},
               "special": "none" | "hs256-with-public-key"}, ...]}

Private keys are generated once (RSA-2048, P-256, Ed25519) and kept in DIR as
PKCS#8 PEM, so later jobs reuse them. Each "jwks" entry writes DIR/<name>, a
JWKS of the named keys' public halves. "kid" defaults to the key name (null:
no kid). Prints {"tokens": [...]} in the order asked.
"""
import base64
import hashlib
import hmac
import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


def load_or_create(directory, name, kind):
    path = os.path.join(directory, name + ".pem")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    if kind == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "P-256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "Ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError("unknown key kind " + kind)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with open(path, "wb") as f:
        f.write(pem)
    return key


def public_jwk(kid, kind, key):
    pub = key.public_key()
    if kind == "RSA":
        jwk, alg = RSAAlgorithm.to_jwk(pub, as_dict=True), "RS256"
    elif kind == "P-256":
        jwk, alg = ECAlgorithm.to_jwk(pub, as_dict=True), "ES256"
    else:
        jwk, alg = OKPAlgorithm.to_jwk(pub, as_dict=True), "EdDSA"
    jwk.update({"kid": kid, "use": "sig", "alg": alg})
    return jwk


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(spec, keys):
    claims = spec["claims"]
    kid = spec.get("kid", spec.get("key"))
    headers = {"kid": kid} if kid is not None else {}
    special = spec.get("special")
    if special == "none":
        return jwt.encode(claims, None, algorithm="none", headers=headers)
    if special == "hs256-with-public-key":
        # Algorithm confusion: HMAC keyed with the RSA public key's PEM. PyJWT
        # refuses to do this, so the HMAC is computed here by hand.
        pem = keys[spec["key"]].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = dict(headers, alg="HS256", typ="JWT")
        signing_input = (
            b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        )
        sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64url(sig)
    return jwt.encode(claims, keys[spec["key"]], algorithm=spec["alg"], headers=headers)


def main():
    directory = sys.argv[1]
    os.makedirs(directory, exist_ok=True)
    job = json.load(sys.stdin)
    kinds = job.get("keys", {})
    keys = {name: load_or_create(directory, name, kind) for name, kind in kinds.items()}
    for filename, names in job.get("jwks", {}).items():
        doc = {"keys": [public_jwk(n, kinds[n], keys[n]) for n in names]}
        with open(os.path.join(directory, filename), "w") as f:
            json.dump(doc, f)
    tokens = [mint(spec, keys) for spec in job.get("tokens", [])]
    json.dump({"tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
