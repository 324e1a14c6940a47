"""The 202's input handling without the service: the body hash fed one account at a time is the hash of
the whole canonical body (so keys stored before the change still match), and planning one item at a time
flags exactly what planning the whole list does."""

from __future__ import annotations

import hashlib
import json

from m365connect.jobs.service import body_hash
from m365connect.mailboxes.addresses import plan, planned
from m365connect.mailboxes.schemas import BulkAccount, BulkRequest


def whole_body_hash(request: BulkRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_the_streamed_body_hash_is_the_whole_canonical_bodys() -> None:
    bodies = [
        {"accounts": [{"mailbox_email": "a@example.com"}]},
        {"credential_id": 7, "auth_type": "APP_ONLY", "accounts": []},
        {
            "credential_id": 12,
            "accounts": [
                {"mailbox_email": f"user{i}@example.com", "display_name": f'Ünïcode "{i}"'}
                for i in range(2500)  # three batches of the hash
            ],
        },
    ]
    hashes = set()
    for raw in bodies:
        request = BulkRequest.model_validate(raw)
        assert body_hash(request) == whole_body_hash(request)
        hashes.add(body_hash(request))
    assert len(hashes) == len(bodies)


def test_planning_one_item_at_a_time_flags_what_the_whole_plan_does() -> None:
    emails = [
        "A@example.com",
        "b@example.com",
        "a@EXAMPLE.com",
        "not-an-address",
        " b@example.com ",
        "c@x.org",
    ]
    accounts = [BulkAccount(mailbox_email=email) for email in emails]
    assert list(planned(iter(accounts))) == plan(accounts)
    assert [item.error for item in plan(accounts)] == [
        None,
        None,
        "DUPLICATE_EMAIL",
        "INVALID_EMAIL",
        "DUPLICATE_EMAIL",
        None,
    ]
