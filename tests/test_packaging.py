"""The container files: the Dockerfile installs the pinned versions and runs as a non-root user, and
docker-compose.yml wires PostgreSQL and only names settings that exist."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from m365connect.cli import app as cli_app
from m365connect.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_VARIABLES = {f"M365CONNECT_{name.upper()}" for name in Settings.model_fields}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def env_file_names(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {name.strip(): value.strip() for name, value in pairs}


def test_dockerfile_installs_pinned_versions_and_runs_unprivileged() -> None:
    steps = instructions(ROOT / "Dockerfile")
    final = final_stage(steps)
    assert all(args.split()[0] == "python:3.11-slim" for name, args in steps if name == "FROM")
    runs = " ".join(args for name, args in steps if name == "RUN")
    assert "pip install -c constraints.txt ." in runs
    assert any(name == "COPY" and "constraints.txt" in args for name, args in steps)
    users = [args for name, args in final if name == "USER"]
    assert users, "the final image must switch to an unprivileged user"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert ("EXPOSE", "8000") in final
    [command] = [json.loads(args) for name, args in final if name == "CMD"]
    assert command == ["m365connect", "serve", "--host", "0.0.0.0"]


def test_the_command_the_image_runs_exists() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["m365connect"] == "m365connect.cli:main"
    helped = CliRunner().invoke(cli_app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert helped.exit_code == 0
    for option in ("--host", "--port", "--proxy-headers", "--forwarded-allow-ips"):
        assert option in helped.output


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for name, args in instructions(ROOT / "Dockerfile"):
        if name != "COPY" or args.startswith("--from"):
            continue
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


def test_compose_runs_the_service_on_a_healthy_postgresql() -> None:
    spec = compose()
    postgres, service = spec["services"]["postgres"], spec["services"]["m365connect"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in spec["volumes"]  # a named volume, not a bind mount
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service["build"] == "."
    assert any(port.endswith(":8000") for port in service["ports"])


def test_compose_and_its_env_file_name_only_existing_settings() -> None:
    service = compose()["services"]["m365connect"]
    named = set(service["environment"])
    assert named <= SETTINGS_VARIABLES, named - SETTINGS_VARIABLES
    [env_file] = service["env_file"]
    example = env_file_names(ROOT / f"{env_file}.example")
    settings_in_example = {name for name in example if name.startswith("M365CONNECT_")}
    assert settings_in_example <= SETTINGS_VARIABLES, settings_in_example - SETTINGS_VARIABLES
    assert {"M365CONNECT_DATABASE_URL", "M365CONNECT_ENCRYPTION_KEYS"} <= settings_in_example
    url = example["M365CONNECT_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in url  # the compose service's name
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert any(fnmatch.fnmatch(env_file, pattern) for pattern in ignored)  # never baked into the image
