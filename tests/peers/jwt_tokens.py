"""Mints the keys and tokens tests/jwt_authn.rs sends to Ringway and Envoy.

Keys and signatures come from PyJWT and cryptography; the handful of
attack tokens PyJWT refuses to make (alg none, an HS256 token keyed with
the RSA public key, malformed segments) are put together by hand.

Usage: jwt_tokens.py DIR — writes DIR/jwks.json, DIR/other.json and
DIR/tokens.json (a name → token map).
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

out = sys.argv[1]
now = int(time.time())


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key, kid, alg=None):
    algorithm = {
        rsa.RSAPublicKey: jwt.algorithms.RSAAlgorithm,
        ec.EllipticCurvePublicKey: jwt.algorithms.ECAlgorithm,
        ed25519.Ed25519PublicKey: jwt.algorithms.OKPAlgorithm,
    }
    for kind, codec in algorithm.items():
        if isinstance(key, kind):
            jwk = json.loads(codec.to_jwk(key))
            jwk["kid"] = kid
            if alg:
                jwk["alg"] = alg
            return jwk
    raise ValueError(key)


rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_keys = {
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "ES384": ec.generate_private_key(ec.SECP384R1()),
    "ES512": ec.generate_private_key(ec.SECP521R1()),
}
ed_key = ed25519.Ed25519PrivateKey.generate()
secret = b"a shared secret of thirty-two bytes!"
other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

keys = [public_jwk(rsa_key.public_key(), "r1")]
keys += [public_jwk(k.public_key(), alg.lower(), alg) for alg, k in ec_keys.items()]
keys.append(public_jwk(ed_key.public_key(), "ed"))
keys.append({"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(secret)})
# A key Envoy skips as invalid (an exponent other than 3 or 65537).
keys.append({"kty": "RSA", "kid": "odd", "n": b64(b"\xc1" * 256), "e": b64(b"\x05")})
json.dump({"keys": keys}, open(f"{out}/jwks.json", "w"))
json.dump({"keys": [public_jwk(other_key.public_key(), "o1")]}, open(f"{out}/other.json", "w"))

ISS = "https://issuer"
CLAIMS = {"iss": ISS, "sub": "alice", "aud": "api", "exp": now + 3600}


def sign(claims, alg="RS256", key=rsa_key, kid="r1", **header):
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, **header} if kid else header)


def handmade(header, claims, signature=b"sig"):
    return f"{b64(json.dumps(header))}.{b64(json.dumps(claims))}.{b64(signature)}"


def hs256_with(secret_bytes, claims, kid):
    head = f"{b64(json.dumps({'alg': 'HS256', 'kid': kid}))}.{b64(json.dumps(claims))}"
    mac = hmac.new(secret_bytes, head.encode(), hashlib.sha256).digest()
    return f"{head}.{b64(mac)}"


good = sign(
    dict(CLAIMS, num=3, frac=1.5, neg=-2, flag=True, obj={"k": "v"}, list=[1, "x"], deep={"a": {"b": "c"}})
)
rsa_pem = rsa_key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
tampered_payload = b64(json.dumps(dict(CLAIMS, sub="mallory")))
head, _, sig = good.split(".")
tokens = {
    "good": good,
    "rs384": sign(CLAIMS, "RS384"),
    "rs512": sign(CLAIMS, "RS512"),
    "ps256": sign(CLAIMS, "PS256"),
    "ps384": sign(CLAIMS, "PS384"),
    "ps512": sign(CLAIMS, "PS512"),
    "es256": sign(CLAIMS, "ES256", ec_keys["ES256"], "es256"),
    "es384": sign(CLAIMS, "ES384", ec_keys["ES384"], "es384"),
    "es512": sign(CLAIMS, "ES512", ec_keys["ES512"], "es512"),
    "eddsa": sign(CLAIMS, "EdDSA", ed_key, "ed"),
    "hs256": sign(CLAIMS, "HS256", secret, "hs"),
    "no_kid": sign(CLAIMS, "ES384", ec_keys["ES384"], None),
    "expired": sign(dict(CLAIMS, exp=now - 3600)),
    "expired_within_skew": sign(dict(CLAIMS, exp=now - 20)),
    "not_yet_valid": sign(dict(CLAIMS, nbf=now + 3600)),
    "wrong_issuer": sign(dict(CLAIMS, iss="https://elsewhere")),
    "no_issuer": sign({k: v for k, v in CLAIMS.items() if k != "iss"}),
    "wrong_audience": sign(dict(CLAIMS, aud="nope")),
    "audience_url": sign(dict(CLAIMS, aud=["x", "http://api2"])),
    "special_audience": sign(dict(CLAIMS, aud="special")),
    "no_audience": sign({k: v for k, v in CLAIMS.items() if k != "aud"}),
    "alg_none": handmade({"alg": "none", "kid": "r1"}, CLAIMS, b""),
    "alg_none_signed": handmade({"alg": "none"}, CLAIMS),
    "hs_rs_confusion": hs256_with(rsa_pem, CLAIMS, "r1"),
    "hs_rs_confusion_no_kid": hs256_with(rsa_pem, CLAIMS, ""),
    "tampered": f"{head}.{tampered_payload}.{sig}",
    "unknown_kid": sign(CLAIMS, kid="r9"),
    "other_key": sign(CLAIMS, key=other_key, kid="o1"),
    "two_segments": f"{head}.{tampered_payload}",
    "four_segments": good + ".x",
    "empty_middle": f"{head}..{sig}",
    "bad_base64_header": "!!!." + good.split(".", 1)[1],
    "header_not_json": f"{b64('nope')}.{tampered_payload}.{sig}",
    "header_not_object": f"{b64('[1]')}.{tampered_payload}.{sig}",
    "payload_not_json": f"{head}.{b64('{')}.{sig}",
    "bad_signature_base64": f"{head}.{tampered_payload}.***",
    "iss_number": handmade({"alg": "RS256"}, dict(CLAIMS, iss=7)),
    "exp_string": handmade({"alg": "RS256"}, dict(CLAIMS, exp="soon")),
    "exp_negative": handmade({"alg": "RS256"}, dict(CLAIMS, exp=-5)),
    "aud_number": handmade({"alg": "RS256"}, dict(CLAIMS, aud=[1])),
    "kid_number": handmade({"alg": "RS256", "kid": 3}, CLAIMS),
    "no_alg": handmade({"kid": "r1"}, CLAIMS),
    "ed_short_signature": handmade({"alg": "EdDSA", "kid": "ed"}, CLAIMS, b"short"),
    "other_issuer": sign(dict(CLAIMS, iss="https://other"), key=other_key, kid="o1"),
    "strict_ok": sign(dict(CLAIMS, iss="https://strict", iat=now, exp=now + 600)),
    "strict_wrong_subject": sign(dict(CLAIMS, iss="https://strict", sub="bob", iat=now, exp=now + 600)),
    "strict_no_exp": sign({"iss": "https://strict", "sub": "alice", "aud": "api", "iat": now}),
    "strict_too_long": sign(dict(CLAIMS, iss="https://strict", iat=now, exp=now + 7200)),
    "strict_no_iat": sign(dict(CLAIMS, iss="https://strict", exp=now + 600)),
    "strict_expired_past_skew": sign(dict(CLAIMS, iss="https://strict", iat=now - 600, exp=now - 20)),
    "oversized": sign(dict(CLAIMS, pad="x" * 70000)),
    "role_admin": sign(dict(CLAIMS, role="admin")),
    "role_user": sign(dict(CLAIMS, role="user")),
}
json.dump(tokens, open(f"{out}/tokens.json", "w"))
