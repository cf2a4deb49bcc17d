"""Checks a Fabrique badge (a VC-JWT) with code Fabrique did not write.

Usage: badge_check.py BASE_URL JWT_FILE

Reads the lab's DID document (did:web, served at BASE_URL/.well-known/did.json), finds the
verification method the JWT header's `kid` names, verifies the Ed25519 signature with
PyPI's `cryptography`, then fetches the credential's Bitstring Status List (itself a
VC-JWT, verified the same way), decodes it as W3C Bitstring Status List v1.0 says
(multibase base64url `u`, GZIP, bit 0 the most significant bit of the first byte) and
prints one JSON object with what it found.

It also hands the JWT to PyJWT, a JOSE library, with the key it finds by `kid` in the lab's
JWK Set (BASE_URL/badges/keys.json): what a verifier that knows nothing of Open Badges
would say, including about `nbf` and `exp`.
"""

import base64
import gzip
import hashlib
import json
import sys
import urllib.request

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers.get("Content-Type", ""), response.read().decode()


def verify_jwt(compact, did_document):
    """(signature holds, kid, header, payload) of a compact JWS against the DID document."""
    header_b64, payload_b64, signature_b64 = compact.strip().split(".")
    header = json.loads(b64url(header_b64))
    payload = json.loads(b64url(payload_b64))
    if header.get("alg") != "EdDSA":
        return False, None, header, payload
    kid = header.get("kid")
    methods = {m["id"]: m for m in did_document["verificationMethod"]}
    if kid not in methods or kid not in did_document.get("assertionMethod", []):
        return False, kid, header, payload
    jwk = methods[kid]["publicKeyJwk"]
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519", jwk
    # RFC 7638: the thumbprint of the key, which Fabrique uses as the key's id.
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True)
    thumb = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    header["kid_is_thumbprint"] = kid.endswith("#" + thumb)
    key = Ed25519PublicKey.from_public_bytes(b64url(jwk["x"]))
    try:
        key.verify(b64url(signature_b64), f"{header_b64}.{payload_b64}".encode())
        return True, kid, header, payload
    except InvalidSignature:
        return False, kid, header, payload


def main():
    base, jwt_file = sys.argv[1], sys.argv[2]
    _, did_text = fetch(base + "/.well-known/did.json")
    did_document = json.loads(did_text)
    compact = open(jwt_file).read()
    holds, kid, header, vc = verify_jwt(compact, did_document)
    result = {
        "did": did_document["id"],
        "keys": len(did_document["verificationMethod"]),
        "signature": "valid" if holds else "invalid",
        "kid": kid,
        "typ": header.get("typ"),
        "kid_is_thumbprint": header.get("kid_is_thumbprint", False),
        "iss": vc.get("iss"),
        "issuer": vc.get("issuer", {}).get("id"),
        "holder": vc["credentialSubject"]["identifier"][0]["identityHash"],
        "nbf_matches": vc.get("nbf") is not None,
    }
    try:
        signing_key = jwt.PyJWKClient(base + "/badges/keys.json").get_signing_key_from_jwt(compact)
        jwt.decode(compact.strip(), signing_key.key, algorithms=["EdDSA"], issuer=vc.get("iss"))
        result["pyjwt"] = "valid"
    except jwt.ExpiredSignatureError:
        result["pyjwt"] = "expired"
    except jwt.InvalidSignatureError:
        result["pyjwt"] = "invalid signature"
    except jwt.PyJWTError as e:
        result["pyjwt"] = f"refused: {type(e).__name__}"
    status = vc.get("credentialStatus")
    if status:
        assert status["type"] == "BitstringStatusListEntry", status
        assert status["statusPurpose"] == "revocation", status
        content_type, list_jwt = fetch(status["statusListCredential"])
        list_holds, _, _, list_vc = verify_jwt(list_jwt, did_document)
        subject = list_vc["credentialSubject"]
        assert list_vc["id"] == status["statusListCredential"], list_vc["id"]
        assert "BitstringStatusListCredential" in list_vc["type"], list_vc["type"]
        assert subject["type"] == "BitstringStatusList", subject
        encoded = subject["encodedList"]
        assert encoded.startswith("u"), "multibase base64url"
        bits = gzip.decompress(b64url(encoded[1:]))
        index = int(status["statusListIndex"])
        result.update(
            {
                "list_content_type": content_type,
                "list_signature": "valid" if list_holds else "invalid",
                "list_purpose": subject["statusPurpose"],
                "list_bytes": len(bits),
                "index": index,
                "revoked": bool((bits[index // 8] >> (7 - index % 8)) & 1),
                "bits_set": sum(bin(b).count("1") for b in bits),
            }
        )
    print(json.dumps(result))


main()
