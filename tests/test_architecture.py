"""The floor plan's rules, read from the imports (docs/architecture.md, "Rules")."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("calltracker", "number_pool")
# Feature and model packages: plain Python over the database, Redis and remote HTTP APIs.
DOMAIN = (
    "calltracker.tracking",
    "calltracker.telephony",
    "calltracker.integrations",
    "calltracker.adspend",
    "calltracker.deals",
    "calltracker.reports",
    "calltracker.catalog",
    "calltracker.accounts",
    "calltracker.operator",
    "calltracker.demo",
    "calltracker.db",
    "number_pool",
)
# The edge: HTTP serving, the composition root and its keys, and the command line.
EDGE = ("aiohttp.web", "calltracker.web", "calltracker.keys", "calltracker.app", "calltracker.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not modules()[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module `module` names in an import, TYPE_CHECKING blocks and functions included."""
    tree = ast.parse(modules()[module].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            found.add(target)
            # `from pkg import name` imports the module pkg.name when there is one.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return frozenset(found)


def is_within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def chains_to_edge(start: str) -> Iterator[list[str]]:
    """Import chains from `start`, through project modules, to a module of the edge."""
    seen = {start}
    stack = [[start]]
    while stack:
        chain = stack.pop()
        for name in sorted(imports_of(chain[-1])):
            if is_within(name, EDGE):
                yield [*chain, name]
            elif name in modules() and name not in seen:
                seen.add(name)
                stack.append([*chain, name])


DOMAIN_MODULES = sorted(name for name in modules() if is_within(name, DOMAIN))


def test_the_rules_read_every_domain_package() -> None:
    found = {next(p for p in DOMAIN if is_within(name, (p,))) for name in DOMAIN_MODULES}
    assert found == set(DOMAIN)


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_a_domain_module_never_reaches_the_web_layer(module: str) -> None:
    chain = next(chains_to_edge(module), None)
    assert chain is None, "imports the edge: " + " -> ".join(chain or [])


@pytest.mark.parametrize("module", sorted(m for m in modules() if m.startswith("number_pool")))
def test_the_number_pool_is_a_library_of_its_own(module: str) -> None:
    assert not [name for name in imports_of(module) if is_within(name, ("calltracker",))]


def test_app_keys_are_declared_in_keys_py_only() -> None:
    declared = {
        name
        for name, path in modules().items()
        if "AppKey(" in path.read_text() or "RequestKey(" in path.read_text()
    }
    assert declared == {"calltracker.keys"}


def test_cleanup_contexts_live_in_the_app_factory() -> None:
    owners = set()
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.AsyncFunctionDef) and node.name.endswith("_ctx"):
                owners.add(name)
    assert owners == {"calltracker.app"}


def test_the_rule_would_catch_a_domain_module_importing_aiohttp_web() -> None:
    # The check itself, on a made-up module: a rule that passes everything proves nothing.
    imports_of.cache_clear()
    fake = "calltracker.tracking.fake_for_test"
    try:
        modules()[fake] = ROOT / "tests" / "architecture_fixtures" / "imports_web.py"
        assert next(chains_to_edge(fake)) == [fake, "aiohttp.web"]
    finally:
        del modules()[fake]
        imports_of.cache_clear()
