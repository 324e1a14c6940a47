"""The DMARC record judge (RFC 7489 §6.3, §6.4, §6.6.3 step 6), table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m365connect.deliverability.dmarc_syntax import DmarcRecord, is_dmarc_record, judge_record

OK_NONE = DmarcRecord("ok", "none")
OK_QUARANTINE = DmarcRecord("ok", "quarantine")
OK_REJECT = DmarcRecord("ok", "reject")
INVALID = DmarcRecord("invalid_syntax")
NO_POLICY = DmarcRecord("no_policy")

CASES = [
    # RFC 7489 Appendix B.2.1: monitoring only, aggregate reports to the domain itself.
    ("v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com", OK_NONE),
    # Appendix B.2.2: aggregate and failure reports, the latter to a third party.
    (
        "v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com; "
        "ruf=mailto:auth-reports@thirdparty.example.net",
        OK_NONE,
    ),
    # Appendix B.2.3: two report URIs, one with a size limit (!10m), and pct.
    (
        "v=DMARC1; p=quarantine; rua=mailto:dmarc-feedback@example.com,"
        "mailto:tld-test@thirdparty.example.net!10m; pct=25",
        OK_QUARANTINE,
    ),
    # §7.1: the record a third party publishes to accept reports is a DMARC record without a policy.
    ("v=DMARC1", NO_POLICY),
    ("v=DMARC1; p=reject", OK_REJECT),
    ("v=DMARC1;p=reject;", OK_REJECT),  # no spaces, and the trailing separator §6.4 allows
    ("v = DMARC1 ;  p = reject ; ", OK_REJECT),  # *WSP around "=" and ";"
    ("V=DMARC1; P=REJECT; ADKIM=S", OK_REJECT),  # tag names and keywords are ABNF strings: any case
    ("v=DMARC1; p=none; sp=reject; adkim=s; aspf=r; fo=0:1:d:s; rf=afrf; ri=86400; pct=100", OK_NONE),
    ("v=DMARC1; rua=mailto:d@example.com; p=reject", OK_REJECT),  # p after v, not necessarily second
    ("v=DMARC1; p=reject; pct=0", OK_REJECT),
    ("v=DMARC1; p=reject; rua=mailto:a@example.com!10, mailto:b@example.com!5k", OK_REJECT),
    ("v=DMARC1; p=reject; rua=https://reports.example.com/dmarc", OK_REJECT),  # any URI scheme (§6.2)
    ("v=DMARC1; p=reject; rua=dmarc@example.com, mailto:dmarc@example.com", OK_REJECT),  # one usable URI
    ("v=DMARC1; p=reject; np=reject; psd=n; t=y", OK_REJECT),  # unknown tags are ignored (§6.3)
    # §6.6.3 step 6: a missing or invalid p (or an invalid sp) with a usable rua counts as p=none.
    ("v=DMARC1; rua=mailto:dmarc@example.com", OK_NONE),
    ("v=DMARC1; p=monitor; rua=mailto:dmarc@example.com", OK_NONE),
    ("v=DMARC1; p=reject; sp=block; rua=mailto:dmarc@example.com", OK_NONE),
    ("v=DMARC1; p=; rua=mailto:dmarc@example.com", OK_NONE),
    # ... and without one, no DMARC policy applies.
    ("v=DMARC1; p=monitor", NO_POLICY),
    ("v=DMARC1; p=reject; sp=block", NO_POLICY),
    ("v=DMARC1; sp=reject", NO_POLICY),
    ("v=DMARC1; ruf=mailto:dmarc@example.com", NO_POLICY),  # ruf does not count: step 6 names rua
    # Tag values outside §6.4's grammar.
    ("v=DMARC1; p=reject; pct=101", INVALID),
    ("v=DMARC1; p=reject; pct=-1", INVALID),
    ("v=DMARC1; p=reject; pct=0100", INVALID),  # 1*3DIGIT
    ("v=DMARC1; p=reject; pct=", INVALID),
    ("v=DMARC1; p=reject; adkim=relaxed", INVALID),
    ("v=DMARC1; p=reject; aspf=x", INVALID),
    ("v=DMARC1; p=reject; fo=2", INVALID),
    ("v=DMARC1; p=reject; fo=0,1", INVALID),
    ("v=DMARC1; p=reject; rf=afrf:", INVALID),
    ("v=DMARC1; p=reject; ri=1h", INVALID),
    ("v=DMARC1; p=reject; ri=4294967296", INVALID),  # a 32-bit unsigned integer at most
    ("v=DMARC1; p=reject; rua=dmarc@example.com", INVALID),  # an address is not a URI
    ("v=DMARC1; p=reject; rua=mailto:", INVALID),
    ("v=DMARC1; p=reject; rua=", INVALID),
    ("v=DMARC1; p=reject; ruf=mailto:a b@example.com", INVALID),
    # A bad rua is not "usable" for step 6 either.
    ("v=DMARC1; p=monitor; rua=dmarc@example.com", INVALID),
    # Tag-list structure.
    ("v=DMARC1; p=reject; p=none", INVALID),  # a tag given twice
    ("v=DMARC1; p=reject; garbage", INVALID),  # a spec without "="
    ("v=DMARC1; p=reject; =x", INVALID),
    ("v=DMARC1; p=reject; 1x=y", INVALID),
    ("v=DMARC1; p=reject\x00", NO_POLICY),  # p=reject<NUL> is not a policy keyword
    ("v=DMARC1; p=reject; pct=100\n", INVALID),  # a line feed is not white space here (WSP: SP / HTAB)
    ("v=DMARC1; p=reject; rua=mailto:d@example.com\n", INVALID),
    ("v=DMARC1; p=reject; fo=1\n", INVALID),
]


@pytest.mark.parametrize(("record", "expected"), CASES)
def test_judge_record(record: str, expected: DmarcRecord) -> None:
    assert is_dmarc_record(record)
    assert judge_record(record) == expected


@pytest.mark.parametrize(
    "record",
    [
        "",
        "p=reject; v=DMARC1",  # v must be the first tag (§6.3)
        "v=DMARC2; p=reject",
        "v=dmarc1; p=reject",  # %x44.4d.41.52.43.31: "DMARC1" is case-sensitive
        "v=DMARC10; p=reject",
        "v=DMARC1 p=reject",
        " v=DMARC1; p=reject",
        "v=spf1 -all",
        "google-site-verification=abc",
    ],
)
def test_records_that_are_not_dmarc_records(record: str) -> None:
    """§6.6.3 steps 2 and 4 discard them before anything else is looked at."""
    assert not is_dmarc_record(record)


@pytest.mark.parametrize(
    ("record", "subdomain", "policy"),
    [
        ("v=DMARC1; p=reject; sp=none", True, "none"),
        ("v=DMARC1; p=reject; sp=none", False, "reject"),
        ("v=DMARC1; p=quarantine", True, "quarantine"),
    ],
)
def test_a_subdomain_gets_sp_when_there_is_one(record: str, subdomain: bool, policy: str) -> None:
    assert judge_record(record, subdomain=subdomain) == DmarcRecord("ok", policy)


@settings(max_examples=500, database=None, deadline=None)
@given(st.text())
def test_judging_never_raises(text: str) -> None:
    judged = judge_record("v=DMARC1; " + text)
    assert judged.reason in {"ok", "invalid_syntax", "no_policy"}
    assert (judged.policy is not None) == (judged.reason == "ok")
