"""Dependencies point one way (STYLE.md): read every module's imports with `ast`, without importing it."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "src" / "m365connect"
PACKAGE = "m365connect"


@dataclass(frozen=True)
class Module:
    """One source file: its dotted name, whether it is a package's __init__, and what it imports."""

    name: str
    path: Path
    is_package: bool
    imports: frozenset[str]
    sql_names: frozenset[str] = frozenset()  # names imported from sqlalchemy (and its sql/dialects)

    @property
    def relative(self) -> str:
        return self.path.relative_to(PACKAGE_ROOT).as_posix()


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _known(name: str) -> bool:
    """Whether a dotted m365connect name is a module or package of ours."""
    path = PACKAGE_ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(source: str, *, name: str, is_package: bool) -> frozenset[str]:
    """Every module this source imports (type-checking-only imports included), as absolute names.

    `from a.b import c` counts as `a.b.c` when that is one of our modules, else as `a.b`.
    """
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if base.startswith(PACKAGE) and _known(candidate) else base)
    return frozenset(found)


def sql_names_of(source: str) -> frozenset[str]:
    """The names a source takes from `sqlalchemy`, `sqlalchemy.sql*` and `sqlalchemy.dialects*`, and any
    `import sqlalchemy` (which can reach every construct)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and _is_sql_module(node.module):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(f"import {alias.name}" for alias in node.names if _is_sql_module(alias.name))
    return frozenset(found)


def _is_sql_module(module: str) -> bool:
    return module == "sqlalchemy" or module.startswith(("sqlalchemy.sql", "sqlalchemy.dialects"))


def load_modules() -> list[Module]:
    modules = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        name, is_package = module_name(path)
        source = path.read_text()
        imports = imports_of(source, name=name, is_package=is_package)
        modules.append(
            Module(
                name=name, path=path, is_package=is_package, imports=imports, sql_names=sql_names_of(source)
            )
        )
    return modules


MODULES = load_modules()


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def top_level(name: str) -> str:
    return name.split(".")[0]


def violations(modules: list[Module], rule: str) -> list[str]:
    """'file: imported' for every import that breaks `rule`."""
    broken: list[str] = []
    for module in modules:
        for imported in sorted(module.imports):
            if RULES[rule](module, imported):
                broken.append(f"{module.relative}: {imported}")
    return broken


def _web_or_sql_in_pure_package(module: Module, imported: str) -> bool:
    pure = ("microsoft", "deliverability", "simulator")
    return any(in_package(module.name, f"{PACKAGE}.{p}") for p in pure) and top_level(imported) in (
        "fastapi",
        "sqlalchemy",
    )


def _simulator_reaches_out(module: Module, imported: str) -> bool:
    return (
        in_package(module.name, f"{PACKAGE}.simulator")
        and in_package(imported, PACKAGE)
        and not in_package(imported, f"{PACKAGE}.simulator")
    )


LEAVES = (f"{PACKAGE}.codes",)  # modules that import nothing of ours: every layer may use them


def _client_package_reaches_out(module: Module, imported: str) -> bool:
    for own in (f"{PACKAGE}.microsoft", f"{PACKAGE}.deliverability"):
        if in_package(module.name, own):
            return in_package(imported, PACKAGE) and not in_package(imported, own) and imported not in LEAVES
    return False


def _leaf_imports_ours(module: Module, imported: str) -> bool:
    return module.name in LEAVES and in_package(imported, PACKAGE)


def _repository_reaches_up(module: Module, imported: str) -> bool:
    last = imported.rpartition(".")[2]
    return (
        module.name.endswith(".repository")
        and in_package(imported, PACKAGE)
        and (last in ("router", "service") or imported == f"{PACKAGE}.app")
    )


DOMAIN_PACKAGES = (
    "accounts",
    "credentials",
    "mailboxes",
    "events",
    "webhooks",
    "health",
    "console",
    "jobs",
)
# Roles that may speak HTTP; every other module of a domain package is service-level (service.py, bulk.py,
# addresses.py, ...), as are repositories and models. The console has several routers (`*_router.py`)
# and its HTTP plumbing (`web.py`: templates, cookies, the signed-in dependency).
HTTP_ROLES = ("router", "schemas", "web")


def _speaks_http(role: str | None) -> bool:
    return role is not None and (role in HTTP_ROLES or role.endswith("_router"))


def _domain_role(module: Module) -> str | None:
    """The module's file name when it belongs to a domain package, else None."""
    parts = module.name.split(".")
    if len(parts) == 3 and parts[1] in DOMAIN_PACKAGES:
        return parts[2]
    return None


def _service_level_speaks_http(module: Module, imported: str) -> bool:
    role = _domain_role(module)
    if role is None or _speaks_http(role):
        return False
    return (
        (imported.rpartition(".")[2] == "router" and in_package(imported, PACKAGE))
        or top_level(imported) in ("fastapi", "starlette")
        or in_package(imported, f"{PACKAGE}.api")
    )


def _api_reaches_up(module: Module, imported: str) -> bool:
    return in_package(module.name, f"{PACKAGE}.api") and (
        imported == f"{PACKAGE}.app" or (in_package(imported, PACKAGE) and imported.endswith(".router"))
    )


def _api_imported_outside_http(module: Module, imported: str) -> bool:
    if not in_package(imported, f"{PACKAGE}.api") or in_package(module.name, f"{PACKAGE}.api"):
        return False
    role = _domain_role(module)
    composition_roots = (f"{PACKAGE}.app", f"{PACKAGE}.state", f"{PACKAGE}.cli")
    return not _speaks_http(role) and module.name not in composition_roots


# Statement builders: outside repositories, migrations and db/ they mean SQL written in the wrong place.
SQL_CONSTRUCTS = frozenset(
    {"select", "insert", "update", "delete", "text", "func", "and_", "or_", "exists", "literal_column",
     "bindparam", "union", "union_all", "import sqlalchemy"}
)  # fmt: skip


def _sql_outside_repositories(module: Module, imported: str) -> bool:
    if imported != "sqlalchemy" and not _is_sql_module(imported):
        return False
    if module.name.endswith(".repository") or any(
        in_package(module.name, f"{PACKAGE}.{p}") for p in ("migrations", "db")
    ):
        return False
    used = module.sql_names & SQL_CONSTRUCTS
    if module.name.endswith(".models"):
        used -= {"text", "func"}  # DDL: server defaults and partial index conditions
    return bool(used) or imported.startswith("sqlalchemy.dialects")


def _app_imported_elsewhere(module: Module, imported: str) -> bool:
    allowed = (f"{PACKAGE}.app", f"{PACKAGE}.cli")
    return imported == f"{PACKAGE}.app" and module.name not in allowed


RULES = {
    "microsoft/, deliverability/ and simulator/ import neither fastapi nor sqlalchemy": (
        _web_or_sql_in_pure_package
    ),
    "simulator/ imports only m365connect.simulator.* of ours": _simulator_reaches_out,
    "microsoft/ and deliverability/ import only themselves (and the leaf codes.py) of ours": (
        _client_package_reaches_out
    ),
    "codes.py imports nothing of ours": _leaf_imports_ours,
    "repositories import no router, service or app": _repository_reaches_up,
    "service-level modules of a domain import no router, api/, fastapi or starlette": (
        _service_level_speaks_http
    ),
    "only app.py and cli.py import m365connect.app": _app_imported_elsewhere,
    "api/ imports no router and not m365connect.app": _api_reaches_up,
    "only routers, schemas, api/ and the composition roots import api/": _api_imported_outside_http,
    "SQL only in repositories, migrations and db/": _sql_outside_repositories,
}


@pytest.mark.parametrize("rule", list(RULES))
def test_layering_rule_holds(rule: str) -> None:
    assert violations(MODULES, rule) == []


def test_the_walk_sees_the_whole_package() -> None:
    by_name = {module.name: module for module in MODULES}
    for expected in (
        "m365connect.app",
        "m365connect.cli",
        "m365connect.microsoft.token",
        "m365connect.deliverability",
        "m365connect.simulator.server",
        "m365connect.credentials.repository",
        "m365connect.mailboxes.service",
    ):
        assert expected in by_name
    # Known edges, so that a walker that finds nothing cannot pass the rules above.
    assert "m365connect.app" in by_name["m365connect.cli"].imports
    assert "httpx" in by_name["m365connect.microsoft.token"].imports
    assert "starlette.routing" in by_name["m365connect.simulator.identity"].imports
    assert "m365connect.credentials.service" in by_name["m365connect.credentials.router"].imports
    assert "m365connect.accounts.service" in by_name["m365connect.cli"].imports  # `from pkg import module`
    assert any(m.name.endswith(".repository") and m.imports for m in MODULES)


def _fake(name: str, source: str, *, is_package: bool = False) -> Module:
    imports = imports_of(source, name=name, is_package=is_package)
    path = PACKAGE_ROOT.joinpath(*name.split(".")[1:]).with_suffix(".py")
    return Module(
        name=name, path=path, is_package=is_package, imports=imports, sql_names=sql_names_of(source)
    )


@pytest.mark.parametrize(
    ("rule", "module"),
    [
        ("microsoft/, deliverability/ and simulator/ import neither fastapi nor sqlalchemy",
         _fake("m365connect.microsoft.graph", "from sqlalchemy.ext.asyncio import AsyncSession")),
        ("microsoft/, deliverability/ and simulator/ import neither fastapi nor sqlalchemy",
         _fake("m365connect.simulator.app", "import fastapi")),
        ("simulator/ imports only m365connect.simulator.* of ours",
         _fake("m365connect.simulator.graph", "from m365connect.microsoft.graph_types import GraphResponse")),
        ("simulator/ imports only m365connect.simulator.* of ours",
         _fake("m365connect.simulator.graph", "from ..errors import Error")),
        ("microsoft/ and deliverability/ import only themselves (and the leaf codes.py) of ours",
         _fake("m365connect.deliverability.spf", "from m365connect.microsoft import token")),
        ("microsoft/ and deliverability/ import only themselves (and the leaf codes.py) of ours",
         _fake("m365connect.microsoft.token", "from m365connect import errors")),
        ("repositories import no router, service or app",
         _fake("m365connect.mailboxes.repository", "from m365connect.credentials import service")),
        ("repositories import no router, service or app",
         _fake("m365connect.mailboxes.repository", "from .router import router")),
        ("service-level modules of a domain import no router, api/, fastapi or starlette",
         _fake("m365connect.mailboxes.service", "import m365connect.credentials.router")),
        ("service-level modules of a domain import no router, api/, fastapi or starlette",
         _fake("m365connect.mailboxes.bulk", "from m365connect.api.deps import SessionDep")),
        ("service-level modules of a domain import no router, api/, fastapi or starlette",
         _fake("m365connect.credentials.repository", "from fastapi import Request")),
        ("codes.py imports nothing of ours", _fake("m365connect.codes", "from m365connect import errors")),
        ("api/ imports no router and not m365connect.app",
         _fake("m365connect.api.deps", "from m365connect.mailboxes.router import router")),
        ("only routers, schemas, api/ and the composition roots import api/",
         _fake("m365connect.credentials.service", "from m365connect.api import responses")),
        ("only routers, schemas, api/ and the composition roots import api/",
         _fake("m365connect.microsoft.graph", "from m365connect.api.edge import EdgeMiddleware")),
        ("SQL only in repositories, migrations and db/",
         _fake("m365connect.mailboxes.bulk", "from sqlalchemy import select")),
        ("SQL only in repositories, migrations and db/",
         _fake("m365connect.api.probes", "from sqlalchemy import text")),
        ("SQL only in repositories, migrations and db/",
         _fake("m365connect.credentials.service", "from sqlalchemy.dialects import postgresql")),
        ("only app.py and cli.py import m365connect.app",
         _fake("m365connect.state", "from m365connect.app import create_app")),
        ("only app.py and cli.py import m365connect.app",
         _fake("m365connect.api.deps", "from m365connect import app")),
    ],
)  # fmt: skip
def test_each_rule_catches_a_violation(rule: str, module: Module) -> None:
    assert violations([module], rule) != []


def test_allowed_imports_pass_every_rule() -> None:
    allowed = [
        _fake("m365connect.simulator.app", "from starlette.applications import Starlette\nimport uvicorn"),
        _fake("m365connect.simulator.graph", "from .state import SimulatorState"),
        _fake("m365connect.microsoft.graph", "from m365connect.microsoft.token import TokenClient"),
        _fake("m365connect.credentials.service", "from m365connect.microsoft.token import TokenClient"),
        _fake("m365connect.cli", "from m365connect.app import create_app"),
        _fake("m365connect.microsoft.error_codes", "from m365connect.codes import ErrorCode"),
        _fake("m365connect.mailboxes.router", "from m365connect.api.deps import SessionDep"),
        _fake("m365connect.mailboxes.schemas", "from m365connect.api.responses import example"),
        _fake("m365connect.mailboxes.repository", "from sqlalchemy import select, update"),
        _fake("m365connect.mailboxes.models", "from sqlalchemy import Index, String, text"),
        _fake("m365connect.mailboxes.bulk", "from sqlalchemy.exc import IntegrityError"),
        _fake("m365connect.api.probes", "from m365connect.credentials.service import secrets_without_key"),
    ]
    for rule in RULES:
        assert violations(allowed, rule) == [], rule
