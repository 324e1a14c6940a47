"""The one table of error explanations: complete (docs/api.md and the code), rendered into docs/errors.md,
and specific where the brief asks for it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from m365connect.codes import HEALTH_CODES, ITEM_CODES, REQUEST_CODES, ErrorCode
from m365connect.explanations import EXPLANATIONS, Context, Where, admin_consent_url, explain, render_markdown
from m365connect.microsoft.error_codes import AADSTS_TABLE, GRAPH_ERROR_TABLE, OAUTH_ERROR_TABLE, RETRY

ROOT = Path(__file__).resolve().parent.parent
API_DOC = (ROOT / "docs" / "api.md").read_text()
# Backticked UPPER_SNAKE words of docs/api.md that are values, not error codes.
NOT_ERRORS = {"APP_ONLY"}


def documented_codes() -> set[str]:
    spans = re.findall(r"`([^`\n]+)`", API_DOC)
    words = {w for span in spans for w in re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", span)}
    return {w for w in words if w not in NOT_ERRORS and not w.startswith("M365CONNECT_")}


def documented_statuses() -> set[str]:
    section = API_DOC.split("### Error bodies", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| (\d{3}) \|", section, flags=re.MULTILINE)) - {"422"}  # 422: the codes


def test_docs_errors_md_is_rendered_from_the_table() -> None:
    assert (ROOT / "docs" / "errors.md").read_text() == render_markdown(), (
        "regenerate: .venv/bin/python -m m365connect.explanations > docs/errors.md"
    )


def test_every_code_and_status_of_api_md_is_explained() -> None:
    codes = documented_codes()
    # The extraction finds codes of each kind (a parser that finds nothing cannot pass).
    assert {
        "WRONG_ALIAS",
        "INVALID_TENANT_ID",
        "TOO_MANY_ACCOUNTS",
        "MICROSOFT_GRAPH_CREDENTIAL_IN_USE",
    } <= codes
    assert {"401", "404", "413", "503"} <= documented_statuses()
    assert sorted((codes | documented_statuses()) - set(EXPLANATIONS)) == []


def test_every_code_of_the_vocabulary_is_explained_where_it_appears() -> None:
    explained = {code for code, entry in EXPLANATIONS.items() if isinstance(code, ErrorCode)}
    assert explained == set(ErrorCode)
    by_where = {where: {e.code for e in EXPLANATIONS.values() if e.where is where} for where in Where}
    assert by_where[Where.ITEM] == ITEM_CODES
    assert by_where[Where.CODE_422] == REQUEST_CODES
    assert by_where[Where.HEALTH] == HEALTH_CODES
    assert ITEM_CODES
    assert REQUEST_CODES
    assert not ITEM_CODES & REQUEST_CODES


def test_api_md_documents_exactly_the_vocabulary() -> None:
    assert documented_codes() == {str(code) for code in ErrorCode}


def test_the_microsoft_tables_answer_codes_of_the_vocabulary() -> None:
    graph = {rule.result for rule in GRAPH_ERROR_TABLE}
    token = {v for v in (*AADSTS_TABLE.values(), *OAUTH_ERROR_TABLE.values()) if v != RETRY}
    assert graph <= ITEM_CODES
    assert token <= REQUEST_CODES
    # The tables were read, not assumed empty:
    assert ErrorCode.CLIENT_SECRET_EXPIRED in token
    assert ErrorCode.MAILBOX_ACCESS_DENIED in graph


def test_wrong_alias_names_the_primary_address() -> None:
    text = explain(
        "WRONG_ALIAS", Context(mailbox_email="jimothy@contoso.com", primary_email="jim@contoso.com")
    )
    assert "jim@contoso.com" in text


def test_mailbox_access_denied_names_the_exchange_settings_and_commands() -> None:
    text = explain("MAILBOX_ACCESS_DENIED", Context(mailbox_email="kevin@contoso.com", client_id="app-1"))
    for needle in (
        "application access policy",
        "RBAC for Applications",
        "Get-ApplicationAccessPolicy",
        "Test-ApplicationAccessPolicy -Identity kevin@contoso.com -AppId app-1",
        "New-ManagementRoleAssignment -App app-1",
        "-CustomResourceScope",
        "Test-ServicePrincipalAuthorization -Identity app-1 -Resource kevin@contoso.com",
        "Get-ManagementRoleAssignment -RoleAssignee app-1",
        "30 minutes to 2 hours",
    ):
        assert needle in text


def test_missing_permissions_lists_them_and_the_consent_url_of_the_cloud() -> None:
    context = Context(
        tenant_id="contoso.com", client_id="app-1", login_url="https://login.microsoftonline.us/"
    )
    text = explain("MISSING_PERMISSIONS", context)
    for permission in ("User.Read.All", "Mail.Send", "MailboxSettings.Read", "Application"):
        assert permission in text
    assert "https://login.microsoftonline.us/contoso.com/adminconsent?client_id=app-1" in text
    assert admin_consent_url(tenant_id="t", client_id="c") == (
        "https://login.microsoftonline.com/t/adminconsent?client_id=c"
    )


@pytest.mark.parametrize("code", sorted(EXPLANATIONS))
def test_each_explanation_has_a_meaning_and_a_fix_that_uses_what_is_known(code: str) -> None:
    entry = EXPLANATIONS[code]
    assert entry.meaning.endswith(".")
    assert entry.fix
    known = Context(mailbox_email="m@x.com", primary_email="p@x.com", tenant_id="t", client_id="c")
    text = explain(code, known)
    assert not re.search(r"<(mailbox_email|primary_email|tenant_id|client_id)>", text), text


def test_an_unknown_code_says_so() -> None:
    assert explain("SOMETHING_NEW") == "Unknown code SOMETHING_NEW: see docs/api.md."


def test_the_spf_and_dkim_tables_agree_with_the_checker() -> None:
    from m365connect.deliverability.clouds import MAIL_CLOUDS
    from m365connect.explanations import DKIM_TARGETS, SPF_INCLUDES

    assert {c: r.spf_include.to_text(omit_final_dot=True) for c, r in MAIL_CLOUDS.items()} == dict(
        SPF_INCLUDES
    )
    assert set(DKIM_TARGETS) == set(MAIL_CLOUDS)
    for cloud, target in DKIM_TARGETS.items():  # the initial domain named is one the checker accepts
        initial = target.split(" ")[0].replace("<tenant>", "contoso")
        assert MAIL_CLOUDS[cloud].dkim_target.match(f"selector1-contoso-com._domainkey.{initial}"), cloud


@pytest.mark.parametrize(
    ("cloud", "include", "dkim"),
    [
        ("global", "spf.protection.outlook.com", "onmicrosoft.com"),
        ("usgov", "spf.protection.office365.us", "onmicrosoft.us"),
        ("usgov-dod", "spf.protection.office365.us", "onmicrosoft.us"),
        ("china", "spf.protection.partner.outlook.cn", "partner.onmschina.cn"),
    ],
)
def test_the_spf_and_dkim_fixes_name_what_the_credentials_cloud_publishes(
    cloud: str, include: str, dkim: str
) -> None:
    spf = explain("SPF no_microsoft_include", Context(cloud=cloud))
    assert f"include:{include} " in spf
    others = {
        "spf.protection.outlook.com",
        "spf.protection.office365.us",
        "spf.protection.partner.outlook.cn",
    }
    assert not {other for other in others - {include} if other in spf}
    assert f"<tenant>.{dkim}" in explain("DKIM cname_not_microsoft", Context(cloud=cloud))
