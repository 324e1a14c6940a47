"""Client assertions (RFC 7523) checked as Entra checks them: the certificate named by the header's
thumbprint must be one of the app's keyCredentials, unexpired, and its key must verify the signature;
`aud` must be this token endpoint, `iss` = `sub` = the client id, and the assertion within its times.
Refusals carry Entra's codes and "[Reason - ...]" texts (AADSTS700027, 700021, 700024, 50027, 50012).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from m365connect.simulator.aad_errors import AadError
from m365connect.simulator.directory import DirectoryApp

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW_SECONDS = 300


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _malformed(detail: str) -> AadError:
    return AadError(401, "invalid_client", 50027, f"JWT token is invalid or malformed. {detail}")


def _split(assertion: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    parts = assertion.split(".")
    if len(parts) != 3:
        raise _malformed("The token does not have three segments.")
    try:
        header, claims = json.loads(_b64(parts[0])), json.loads(_b64(parts[1]))
        signature = _b64(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _malformed("A segment is not base64url JSON.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _malformed("A segment is not a JSON object.")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), signature


def _digests(certificate: x509.Certificate) -> tuple[bytes, bytes]:
    """The certificate's SHA-1 (x5t) and SHA-256 (x5t#S256) thumbprints."""
    sha1 = certificate.fingerprint(hashes.SHA1())  # SHA-1: Entra's identifier (x5t), not a MAC
    return sha1, certificate.fingerprint(hashes.SHA256())


def _signature_error(app: DirectoryApp, reason: str, thumbprint: str) -> AadError:
    return AadError(
        401,
        "invalid_client",
        700027,
        f"Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of key used by "
        f"client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to "
        f"see configured keys for app Id '{app.client_id}'.]",
    )


def _certificate(app: DirectoryApp, header: dict[str, Any]) -> x509.Certificate:
    named = header.get("x5t#S256") or header.get("x5t")
    if not isinstance(named, str) or not named:
        raise _malformed("No certificate thumbprint specified in token header.")
    try:
        digest = _b64(named.rstrip("="))  # MSAL pads x5t, RFC 7515 does not: Entra takes both
    except (binascii.Error, ValueError):
        raise _malformed("The certificate thumbprint is not base64url.") from None
    shown = digest.hex().upper()
    key = next((k for k in app.key_credentials if digest in _digests(k.parsed)), None)
    if key is None:
        raise _signature_error(app, "The key was not found.", shown)
    if key.expired(datetime.now(UTC)):
        raise _signature_error(app, "The key used is expired.", shown)
    return key.parsed


def _verify_signature(
    app: DirectoryApp, certificate: x509.Certificate, header: dict[str, Any], signed: bytes, signature: bytes
) -> None:
    key = certificate.public_key()
    algorithm = header.get("alg")
    schemes: dict[Any, padding.AsymmetricPadding] = {
        "RS256": padding.PKCS1v15(),
        "PS256": padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
    }
    if not isinstance(key, rsa.RSAPublicKey) or algorithm not in schemes:
        raise _malformed(f"Unsupported signing algorithm '{algorithm}'.")
    try:
        key.verify(signature, signed, schemes[algorithm], hashes.SHA256())
    except InvalidSignature:
        shown = certificate.fingerprint(hashes.SHA1()).hex().upper()
        reason = "The provided signature value did not match the expected signature value."
        raise _signature_error(app, reason, shown) from None


def _check_claims(claims: dict[str, Any], *, client_id: str, token_urls: tuple[str, ...]) -> None:
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        message = "Client assertion application identifier doesn't match 'client_id' parameter."
        raise AadError(401, "invalid_client", 700021, message)
    if claims.get("aud") not in token_urls:
        raise AadError(
            401, "invalid_client", 50012, "Client assertion audience claim does not match Realm issuer."
        )
    now = time.time()
    nbf, exp = claims.get("nbf", now), claims.get("exp")
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        raise _malformed("The 'exp' and 'nbf' claims must be numbers.")
    if not nbf - CLOCK_SKEW_SECONDS <= now < exp + CLOCK_SKEW_SECONDS:
        message = f"Client assertion is not within its valid time range. Current time: {int(now)}."
        raise AadError(401, "invalid_client", 700024, message)


def check_assertion(
    app: DirectoryApp, form: dict[str, str], *, client_id: str, token_urls: tuple[str, ...]
) -> None:
    """Accept the request's client assertion for this app, or raise Entra's error for it."""
    if form.get("client_assertion_type") != JWT_BEARER:
        message = "The request body must contain the following parameter: 'client_assertion_type'."
        raise AadError(400, "invalid_request", 900144, message)
    header, claims, signed, signature = _split(form.get("client_assertion", ""))
    certificate = _certificate(app, header)
    _verify_signature(app, certificate, header, signed, signature)
    _check_claims(claims, client_id=client_id, token_urls=token_urls)
