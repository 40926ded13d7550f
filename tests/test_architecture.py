"""The architecture's arrows, enforced: no import circle, and no import against the layers.

Every module of ``marketplace/`` and ``client/`` is read (not imported) and every import in
it counts, including those inside functions: a lazy import is still a dependency, and a
circle through one only waits for the wrong call order to break. The layers, lowest first:
the core (``marketplace.metadata``), the store, the domains (moderation, exports), the web
package, whose shared modules sit below its views. The rules are those of README's map.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("marketplace", "client")
CORE = "marketplace.metadata"
WEB = "marketplace.web"
VIEWS = "marketplace.web.views"
# The domains between the web package and the store.
DOMAINS = ("marketplace.moderation", "marketplace.exports", "marketplace.log")
# The only modules outside the web package that may start it: the commands and wsgi.py.
WEB_STARTERS = ("marketplace.cli",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(name: str, path: Path) -> set[str]:
    """Every module name an import statement of the file names, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def resolve(target: str, known: dict[str, Path]) -> str | None:
    """The project module an imported name is (``from a import b``: module a.b, or a)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph = {}
    for name, path in known.items():
        targets = {resolve(t, known) for t in imported_names(name, path)}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def forbidden(source: str, target: str) -> str | None:
    """Why an arrow breaks the layers, or None when it is allowed."""
    if within(source, CORE) and not within(target, CORE):
        return "the core imports nothing of the marketplace or the client"
    if within(source, "client") and within(target, "marketplace") and not within(target, CORE):
        return "the client never imports the server"
    if within(source, "marketplace.store") and any(
            within(target, p) for p in (WEB, *DOMAINS)):
        return "the store imports no web, moderation, exports or log code"
    if any(within(source, p) for p in DOMAINS) and within(target, WEB):
        return "moderation, exports and the log import no web code"
    if within(target, WEB) and not within(source, WEB) and source not in WEB_STARTERS:
        return "only the commands start the web package"
    if within(source, VIEWS) and within(target, VIEWS) and target != VIEWS:
        return "views never import each other"
    if within(source, WEB) and target == f"{WEB}.app":
        return "nothing in the web package imports the app module"
    if within(source, WEB) and not within(source, VIEWS) and source != f"{WEB}.app" \
            and within(target, VIEWS):
        return "the web package's shared modules sit below its views"
    return None


GRAPH = import_graph()
# Packages of the domain that know nothing of HTTP frameworks.
WITHOUT_FLASK = (CORE, "marketplace.store", *DOMAINS, "client")


def test_the_walk_sees_the_packages_and_their_imports():
    """The walk itself can fail: it finds lazy imports, and relative ones."""
    assert "marketplace.metadata.model" in GRAPH and "client.cli" in GRAPH
    assert "marketplace.metadata.model" in GRAPH["marketplace.metadata.validation"]


def test_no_import_circle():
    assert cycles(GRAPH) == []


def test_a_circle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("source, target", [
    ("marketplace.metadata.model", "marketplace.store.base"),
    ("client.cli", "marketplace.files"),
    ("marketplace.store.sqlite", "marketplace.moderation.workflow"),
    ("marketplace.exports.feed", "marketplace.web.urls"),
    ("marketplace.log.served", "marketplace.web.current"),
    ("marketplace.store.sqlite_state", "marketplace.log.check"),
    ("marketplace.service", "marketplace.web.app"),
    ("marketplace.web.views.pages", "marketplace.web.views.api"),
    ("marketplace.web.params", "marketplace.web.app"),
])
def test_the_rules_refuse_the_arrows_they_name(source, target):
    assert forbidden(source, target)


def test_no_forbidden_arrow():
    broken = [f"{source} -> {target}: {why}" for source, targets in sorted(GRAPH.items())
              for target in sorted(targets) if (why := forbidden(source, target))]
    assert broken == []


def test_only_the_web_package_imports_flask():
    found = [name for name, path in sorted(modules().items())
             if any(within(name, package) for package in WITHOUT_FLASK)
             and any(within(target, "flask") for target in imported_names(name, path))]
    assert found == []
