"""The DKIM verdict for Microsoft 365, as API.md §3 defines `dkim_correct`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.txtbase
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from m365connect.deliverability.resolver import DnsError, Records

SELECTORS = ("selector1", "selector2")
MIN_KEY_BITS = 1024
_MAX_LABEL = 63
_TAG_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")
# The order in which key problems are reported when no selector has a usable key.
_KEY_PROBLEMS = ("dns_error", "key_revoked", "key_too_small", "key_invalid")

Lookup = Callable[[dns.name.Name, dns.rdatatype.RdataType], Awaitable[Records]]


@dataclass(frozen=True)
class _Selector:
    """What one selector name leads to: its CNAME state, and the key state behind a Microsoft CNAME."""

    cname: str  # "ok", "missing", "not_microsoft" or "dns_error"
    key: str | None = None  # "ok", "no_key", "key_revoked", "key_too_small", "key_invalid", "dns_error"


def is_microsoft_target(target: str, selector: str, domain: str, *, pattern: re.Pattern[str]) -> bool:
    """Whether a CNAME target is Microsoft's for this selector and domain (case-insensitive); `pattern`
    is the target form of the sending tenant's cloud (deliverability/clouds.py)."""
    match = pattern.match(target.lower().removesuffix("."))
    if match is None or match["selector"] != selector:
        return False
    expected = f"{selector}-{domain.replace('.', '-')}"
    # A label holds 63 characters at most; for longer domains Microsoft's shortening is undocumented.
    return f"{selector}-{match['label']}" == expected or len(expected) > _MAX_LABEL


def key_state(records: Records) -> str:
    """Judge the TXT records at a CNAME target; the best state among them wins."""
    states = [_key_record_state(b"".join(rdata.strings)) for rdata in _txts(records)]
    if not states:
        return "no_key"
    return min(states, key=("ok", *_KEY_PROBLEMS, "no_key").index)


def _txts(records: Records) -> list[dns.rdtypes.txtbase.TXTBase]:
    return [rdata for rdata in records.rdatas if isinstance(rdata, dns.rdtypes.txtbase.TXTBase)]


def _key_record_state(record: bytes) -> str:
    """Judge one DKIM key record (RFC 6376 §3.6.1; RSA of at least 1024 bits, RFC 8301)."""
    tags = parse_tags(record.decode("latin-1"))
    if tags is None:
        return "key_invalid"
    if "p" not in tags:
        return "no_key"
    services = tags.get("s", "*").split(":")
    if (
        tags.get("v", "DKIM1") != "DKIM1"
        or tags.get("k", "rsa").lower() != "rsa"
        or not {"*", "email"} & {s.strip() for s in services}
    ):
        return "key_invalid"
    data = re.sub(r"\s", "", tags["p"])
    if not data:
        return "key_revoked"
    bits = rsa_key_bits(data)
    if bits is None:
        return "key_invalid"
    return "ok" if bits >= MIN_KEY_BITS else "key_too_small"


def parse_tags(text: str) -> dict[str, str] | None:
    """Parse a DKIM tag-list; None if it is malformed (a bad spec or a duplicate tag, §3.2)."""
    tags: dict[str, str] = {}
    for spec in text.split(";"):
        if not spec.strip():
            continue
        name, equals, value = spec.partition("=")
        name = name.strip()
        if not equals or not _TAG_NAME.match(name) or name in tags:
            return None
        tags[name] = value.strip()
    return tags


def rsa_key_bits(data: str) -> int | None:
    """Return the size of the RSA key in base64 SPKI DER (or bare PKCS#1), or None if it is not one."""
    try:
        der = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        pem = (
            b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END RSA PUBLIC KEY-----\n"
        )
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError):
            return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


async def _check_selector(
    lookup: Lookup, domain: dns.name.Name, selector: str, pattern: re.Pattern[str]
) -> _Selector:
    """One selector: its CNAME and, behind a Microsoft CNAME, the key record.

    One TXT query at the selector name suffices: the resolver follows the CNAME and returns it with the
    target's records. Only when that query fails do we ask step by step, so that a failing target is
    told apart from a failing selector name (the second selector may still carry the key).
    """
    try:
        name = dns.name.from_text(f"{selector}._domainkey", domain)
    except dns.name.NameTooLong:  # a domain close to 253 characters: the selector name cannot exist
        return _Selector("missing")
    try:
        chained = await lookup(name, dns.rdatatype.TXT)
    except DnsError:
        return await _check_selector_stepwise(lookup, domain, selector, name, pattern)
    if chained.cname is None:
        return _Selector("missing")
    if not is_microsoft_target(
        chained.cname.to_text(), selector, domain.to_text(omit_final_dot=True), pattern=pattern
    ):
        return _Selector("not_microsoft")
    return _Selector("ok", key_state(chained))


async def _check_selector_stepwise(
    lookup: Lookup, domain: dns.name.Name, selector: str, name: dns.name.Name, pattern: re.Pattern[str]
) -> _Selector:
    """The selector's CNAME query, then the key query at its target."""
    try:
        answer = await lookup(name, dns.rdatatype.CNAME)
        cnames = [r for r in answer.rdatas if isinstance(r, dns.rdtypes.ANY.CNAME.CNAME)]
        if not cnames:
            return _Selector("missing")
        target = cnames[0].target
        if not is_microsoft_target(
            target.to_text(), selector, domain.to_text(omit_final_dot=True), pattern=pattern
        ):
            return _Selector("not_microsoft")
    except DnsError:
        return _Selector("dns_error")
    try:
        return _Selector("ok", key_state(await lookup(target, dns.rdatatype.TXT)))
    except DnsError:
        return _Selector("ok", "dns_error")


async def check_dkim(lookup: Lookup, domain: dns.name.Name, *, pattern: re.Pattern[str]) -> str:
    """Return the dkim_reason for a domain: "ok", or why it is not correct; `pattern` is the CNAME
    target form of the sending tenant's cloud."""
    selectors = await asyncio.gather(*(_check_selector(lookup, domain, s, pattern) for s in SELECTORS))
    cnames = [selector.cname for selector in selectors]
    if "dns_error" in cnames:
        return "dns_error"
    if cnames == ["missing", "missing"]:
        return "not_configured"
    if "missing" in cnames:
        return f"{SELECTORS[cnames.index('missing')]}_cname_missing"
    if "not_microsoft" in cnames:
        return "cname_not_microsoft"
    keys = [selector.key for selector in selectors]
    if "ok" in keys:
        return "ok"
    return next((problem for problem in _KEY_PROBLEMS if problem in keys), "no_key")
