"""`m365connect demo`: a real process that starts the simulator and the service, connects the example
mailboxes, prints the results and the commands to try, and stops cleanly (Ctrl-C, or at once with
--no-wait)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from m365connect.demo.scenario import (
    load_packaged_scenario,
    packaged_certificate_path,
    packaged_scenario_path,
    plan,
    todays_tenant,
)
from tests import scenario_values as sv
from tests.certificates import REGISTERED, load
from tests.processes import default_sigint, stop

ROOT = Path(__file__).resolve().parent.parent
EXECUTABLE = Path(sys.executable).parent / "m365connect"
TIMEOUT = 60.0


def _clean_env(**extra: str) -> dict[str, str]:
    """No M365CONNECT_* variable, and a PATH without the venv: as a user who has not activated it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("M365CONNECT_")}
    path = os.pathsep.join(
        part for part in env.get("PATH", os.defpath).split(os.pathsep) if Path(part) != EXECUTABLE.parent
    )
    return {**env, "PATH": path, **extra}


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    """Children of a test; each is stopped (killed if it lingers) whatever happens."""
    children: list[subprocess.Popen[str]] = []
    yield children
    stop(children)


def _row(output: str, mailbox: str) -> list[str]:
    """The cells of the results table's row for this mailbox."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if cells and cells[0] == mailbox:
            return cells
    raise AssertionError(f"no row for {mailbox} in:\n{output}")


def _assert_results(output: str) -> None:
    assert f"Credential 1 'Woodpecker connector' (tenant {sv.CONTOSO_TENANT}): 6 of 14 connected" in output
    assert f"(tenant {sv.FABRIKAM_TENANT}): 10 of 11 connected" in output
    assert _row(output, "jim@contoso.com")[1:4] == ["connected", "yes", "yes"]
    alias = _row(output, "jimothy@contoso.com")
    assert alias[1] == "WRONG_ALIAS"
    assert "Submit jim@contoso.com instead." in alias[-1]
    assert _row(output, "kevin@contoso.com")[1] == "MAILBOX_ACCESS_DENIED"
    assert _row(output, "toby@contoso.com")[1] == "MAILBOX_DISABLED"
    # A shared mailbox (sign-in blocked) connects, and says so; a user mailbox is a user.
    assert _row(output, "sales@contoso.com")[1:6] == ["connected", "yes", "yes", "yes", "shared"]
    assert _row(output, "jim@contoso.com")[5] == "user"
    assert _row(output, "conference-room@contoso.com")[1] == "UNSUPPORTED_MAILBOX_TYPE"
    assert _row(output, "nellie@tailspintoys.com")[1:4] == ["connected", "no", "yes"]
    assert _row(output, "stanley@fourthcoffee.com")[1:4] == ["connected", "yes", "no"]
    assert _row(output, "meredith@broken.example")[1:4] == ["connected", "no", "no"]
    # A GCC High (usgov) credential: its domain publishes the usgov SPF include and DKIM targets.
    assert f"(tenant {sv.TAILWIND_TENANT}, cloud usgov): 1 of 2 connected" in output
    assert _row(output, sv.TAILWIND_MAILBOX)[1:5] == ["connected", "yes", "yes", "yes"]
    # Why each "no" is a no, per domain: a DNS failure is told apart from a wrong record.
    words = " ".join(output.split())
    assert "tailspintoys.com: SPF no_record, DMARC no_record" in words
    assert "fourthcoffee.com: DKIM selector2_cname_missing" in words
    assert "broken.example: SPF dns_error, DKIM dns_error, DMARC dns_error" in words
    assert f"Test-ApplicationAccessPolicy -Identity kevin@contoso.com -AppId {sv.WORKING_APP}" in output
    _assert_todays_tenant(output)


def _assert_todays_tenant(output: str) -> None:
    """The second part, on its own account: a certificate credential connects the shared mailboxes, an
    RBAC-scoped app connects its scope only, the usgov credential talked to usgov, and no mail was sent."""
    assert "Today's tenant" in output
    today = output.split("Today's tenant", 1)[1].split("Try it", 1)[0]
    thumbprint = load(REGISTERED).thumbprint
    assert f"'Certificate connector' (certificate {thumbprint}): 3 of 3 connected" in today
    assert _row(today, "sales@contoso.com")[1:6] == ["connected", "yes", "yes", "yes", "shared"]
    assert _row(today, "accounting@contoso.com")[5] == "shared"
    words = " ".join(today.split())
    assert "'Scoped sender (RBAC for Applications)' (token roles User.Read.All, no Mail.Send" in words
    assert "): 2 of 4 connected" in words
    assert [_row(today, m)[1] for m in ("jim@contoso.com", "pam@contoso.com")] == ["connected", "connected"]
    assert [_row(today, m)[1] for m in ("nate@contoso.com", "kevin@contoso.com")] == [
        "MAILBOX_ACCESS_DENIED"
    ] * 2
    assert (
        f"Test-ServicePrincipalAuthorization -Identity {sv.SCOPED_APP} -Resource kevin@contoso.com" in words
    )
    usgov = re.search(r"^\s*usgov: (\d+) token requests, (\d+) Graph requests$", today, flags=re.MULTILINE)
    assert usgov, today
    assert int(usgov.group(1)) >= 1
    assert int(usgov.group(2)) >= 1
    assert "Messages sent, per the simulator's mail log: 0 " in today


def _assert_failing_then_recovered(output: str) -> int:
    """The third part: a local receiver subscribed, the user disabled, verify now finds it FAILING, the
    receiver gets mailbox.failing with a verified signature; enabled again, mailbox.recovered. The
    mailbox's id."""
    assert "A mailbox fails and recovers; a webhook hears both" in output
    part = output.split("A mailbox fails and recovers", 1)[1].split("Try it", 1)[0]
    words = " ".join(part.split())
    assert "Demo setting: M365CONNECT_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true" in words
    assert re.search(
        r"Webhook 1 subscribed: http://127\.0\.0\.1:\d+/hook \(mailbox\.failing, mailbox\.recovered\)", words
    ), part
    assert "whsec_" not in output  # the secret verifies deliveries, it is never printed
    disabled = words.index("The tenant's admin disables the user (sign-in blocked): jim@contoso.com")
    enabled = words.index("The tenant's admin enables the user again: jim@contoso.com")
    assert disabled < enabled
    verified = re.search(r"POST /rest/v2/mailboxes/microsoft/(\d+)/verify", words)
    assert verified, part
    mailbox_id = int(verified.group(1))
    failing, recovered = words[disabled:enabled], words[enabled:]
    assert "health FAILING, MAILBOX_DISABLED, status ACTIVE" in failing
    assert re.search(
        rf"The receiver got mailbox\.failing for mailbox {mailbox_id} jim@contoso\.com \(health FAILING, "
        r"MAILBOX_DISABLED\); webhook-id \S+, signature verified \(Standard Webhooks\)",
        failing,
    ), part
    assert "health OK, status ACTIVE" in recovered
    assert re.search(
        rf"The receiver got mailbox\.recovered for mailbox {mailbox_id} jim@contoso\.com \(health OK\); "
        r"webhook-id \S+, signature verified \(Standard Webhooks\)",
        recovered,
    ), part
    return mailbox_id


def _start_serving_demo(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], Path]:
    """`m365connect demo --port 0` in its own process, once it serves and waits for Ctrl-C."""
    log = tmp_path / "demo.log"
    with log.open("w") as output:
        child = subprocess.Popen(
            [str(EXECUTABLE), "demo", "--port", "0"],
            cwd=tmp_path,
            env=_clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=default_sigint,
        )
    spawn.append(child)
    deadline = time.monotonic() + TIMEOUT
    while "Press Ctrl-C" not in log.read_text():
        assert child.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return child, log


def test_demo_serves_until_ctrl_c_and_its_printed_commands_work(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    child, log = _start_serving_demo(tmp_path, spawn)
    printed = log.read_text()
    _assert_results(printed)
    url = re.search(r"The service is running at (http://127\.0\.0\.1:\d+) ", printed)
    key = re.search(r"^export KEY=(\S+)$", printed, flags=re.MULTILINE)
    database = re.search(r"\(database (\S+)\)", printed)
    connect = re.search(r"^M365CONNECT_API_KEY=\$KEY (.+ connect .+)$", printed, flags=re.MULTILINE)
    tail = re.search(r"^M365CONNECT_API_KEY=\$KEY (.+ events tail .+)$", printed, flags=re.MULTILINE)
    listing = re.search(r"^M365CONNECT_API_KEY=\$KEY (.+ webhooks list .+)$", printed, flags=re.MULTILINE)
    mailbox_id = _assert_failing_then_recovered(printed)
    assert url, printed
    assert key, printed
    assert database, printed
    assert connect, printed
    assert tail, printed
    assert listing, printed

    with httpx.Client(base_url=url.group(1), headers={"x-api-key": key.group(1)}, timeout=10) as http:
        credentials = http.get("/rest/v2/mailboxes/microsoft/credentials").json()["credentials"]
        assert [c["client_id"] for c in credentials] == [sv.WORKING_APP, sv.FABRIKAM_APP, sv.TAILWIND_APP]
        mailboxes = http.get("/rest/v2/mailboxes/microsoft").json()
        assert mailboxes["pagination_data"]["total_elements"] == 6 + 10 + 1
    command = shlex.split(connect.group(1))
    assert command[0] == str(EXECUTABLE)  # not a bare `m365connect`: the venv is not on PATH
    tried = subprocess.run(
        command,  # as printed
        env={**_clean_env(), "M365CONNECT_API_KEY": key.group(1)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert tried.returncode == 0, tried.stdout + tried.stderr
    assert "4 connected, 0 failed" in tried.stdout
    _try_events_tail_and_webhooks_list(
        tail.group(1), listing.group(1), key=key.group(1), mailbox_id=mailbox_id, cwd=tmp_path, spawn=spawn
    )

    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=20) == 0, log.read_text()
    assert log.read_text().rstrip().endswith("stopped")
    assert not Path(database.group(1)).parent.exists()  # the temporary database is gone


def _try_events_tail_and_webhooks_list(
    tail: str, listing: str, *, key: str, mailbox_id: int, cwd: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """The printed `webhooks list` shows the demo's receiver; the printed `events tail` follows the stream
    from its start and shows the mailbox failing, then recovered (stopped once it did)."""
    env = {**_clean_env(), "M365CONNECT_API_KEY": key}
    listed = subprocess.run(
        shlex.split(listing), env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert re.search(r"http://127\.0\.0\.1:\d+/hook", listed.stdout), listed.stdout
    following = subprocess.Popen(
        shlex.split(tail),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    spawn.append(following)
    assert following.stdout is not None
    seen: list[str] = []
    for line in following.stdout:  # follows forever: read until the recovery, then stop it
        seen.append(line)
        if "mailbox.recovered" in line:
            break
    following.send_signal(signal.SIGINT)
    following.wait(timeout=20)
    following.stdout.close()
    types = [line.split()[2] for line in seen if f"mailbox {mailbox_id} jim@contoso.com" in line]
    assert types[-2:] == ["mailbox.failing", "mailbox.recovered"], "".join(seen)


def test_demo_stopped_by_sigterm_removes_everything(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    child, log = _start_serving_demo(tmp_path, spawn)
    database = re.search(r"\(database (\S+)\)", log.read_text())
    assert database, log.read_text()
    child.send_signal(signal.SIGTERM)  # kill, systemd, docker stop: unwinds like Ctrl-C
    assert child.wait(timeout=20) == 0, log.read_text()
    assert log.read_text().rstrip().endswith("stopped")
    assert not Path(database.group(1)).parent.exists()


def test_demo_no_wait_prints_and_exits(tmp_path: Path) -> None:
    finished = subprocess.run(
        [str(EXECUTABLE), "demo", "--no-wait", "--port", "0"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    _assert_results(finished.stdout)
    _assert_failing_then_recovered(finished.stdout)
    assert "curl -s -X POST http://127.0.0.1:" in finished.stdout
    assert "Press Ctrl-C" not in finished.stdout
    assert finished.stdout.rstrip().endswith("stopped")


def test_the_packaged_scenario_is_the_documented_example() -> None:
    with packaged_scenario_path() as packaged:
        assert packaged.read_bytes() == (ROOT / "examples" / "scenario.yaml").read_bytes(), (
            "copy examples/scenario.yaml to src/m365connect/simulator/examples/scenario.yaml"
        )
        assert packaged.is_relative_to(ROOT / "src" / "m365connect")  # inside the package: in the wheel


def test_the_packaged_certificate_is_the_example_one() -> None:
    with packaged_certificate_path() as packaged:
        assert packaged.read_bytes() == REGISTERED.read_bytes()
        assert packaged.is_relative_to(ROOT / "src" / "m365connect")


def test_todays_tenant_is_found_in_the_example() -> None:
    today = todays_tenant(load_packaged_scenario(), REGISTERED.read_text())
    assert today is not None
    assert (today.tenant_id, today.certificate_client_id, today.scoped_client_id) == (
        sv.CONTOSO_TENANT,
        sv.CERTIFICATE_APP,
        sv.SCOPED_APP,
    )
    assert today.certificate_addresses == ["sales@contoso.com", "accounting@contoso.com", "oscar@contoso.com"]
    assert (today.in_scope, today.out_of_scope) == (
        ["jim@contoso.com", "pam@contoso.com"],
        ["nate@contoso.com", "kevin@contoso.com"],
    )
    # Another certificate (not registered with any app): no such tenant.
    assert (
        todays_tenant(load_packaged_scenario(), load(REGISTERED).certificate_pem.replace("M", "N", 1)) is None
    )


def test_the_plan_uses_each_tenants_working_app_and_all_its_users() -> None:
    scenario = load_packaged_scenario()
    contoso, fabrikam, tailwind = plan(scenario)
    assert (tailwind.cloud, tailwind.client_id) == ("usgov", sv.TAILWIND_APP)
    assert (contoso.client_id, contoso.client_secret) == (sv.WORKING_APP, sv.WORKING_SECRET)
    assert (fabrikam.client_id, fabrikam.client_secret) == (sv.FABRIKAM_APP, sv.FABRIKAM_SECRET)
    assert len(contoso.addresses) == len(scenario.tenants[0].users) + 2  # an alias and an unknown address
    assert contoso.addresses[-2:] == ["jimothy@contoso.com", "nobody@contoso.com"]
    assert "holly@northwindtraders.com" in contoso.addresses  # the guest, by its mail
    assert len(fabrikam.addresses) == len(scenario.tenants[1].users) + 1


def _demo(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXECUTABLE), "demo", "--no-wait", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_demo_takes_another_port_when_its_port_is_taken_and_says_so(tmp_path: Path) -> None:
    # As after the README's `m365connect serve` (port 8000): here a port this test holds, not 8000 itself,
    # which another process of the machine may be using.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = _demo("--port", str(port), env=_clean_env(), cwd=tmp_path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    said = re.search(
        rf"^Port {port} is already in use \(by `m365connect serve`\?\): the demo serves on "
        r"http://127\.0\.0\.1:(\d+) instead\.$",
        finished.stdout,
        flags=re.MULTILINE,
    )
    assert said, finished.stdout
    assert int(said.group(1)) != port
    _assert_results(finished.stdout)
    assert f"The service is running at http://127.0.0.1:{said.group(1)} " in finished.stdout


def test_demo_at_80_columns_cuts_no_explanation(tmp_path: Path) -> None:
    # A terminal of 80 columns (TTY_COMPATIBLE makes rich treat the pipe as one).
    env = _clean_env(TTY_COMPATIBLE="1", NO_COLOR="1", COLUMNS="80")
    finished = _demo("--port", "0", env=env, cwd=tmp_path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    shown = re.sub(r"\x1b\[[0-9;]*m", "", finished.stdout)  # bold and underline: no width on screen
    tables = [line for line in shown.splitlines() if line[:1] in "┏┃┡│└"]
    assert tables
    assert max(len(line) for line in tables) <= 80
    words = " ".join(shown.split())
    for meaning in (
        "kevin@contoso.com MAILBOX_ACCESS_DENIED: Exchange Online does not let this app send as this mailbox "
        "(outside its RBAC for Applications scope, or excluded by an application access policy).",
        "holly@northwindtraders.com NO_EXCHANGE_MAILBOX: The user has no Exchange Online mailbox (no licence "
        "with Exchange, hosted on-premises, soft-deleted, or a guest).",
        "jimothy@contoso.com WRONG_ALIAS: This address is a secondary address (alias) of a mailbox. "
        "Submit jim@contoso.com instead.",
    ):
        assert meaning in words, shown
