"""The import rules of the layout (docs/design.md, Layers), read from the source.

Every import counts: at module level, inside a function, under ``if TYPE_CHECKING``, and
``importlib.import_module("...")`` with a literal name. Each module belongs to a layer; a layer may
import only the layers the design allows. The hardware edge imports no Django and no app; the
agent imports only the standard library and itself. No two modules import each other, directly
or round a longer loop.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

APPS = ("accounts", "access", "audit", "inventory", "installs", "serialconsole", "webhooks")
EDGE = (
    "provisioner.bmc",
    "provisioner.pdu",
    "provisioner.pxe",
    "provisioner.agent",
    "provisioner.lab",
    "provisioner.memory_os",
)

# layer -> the other layers it may import. Read downwards: config wires everything; the console
# combines apps; an app imports only the apps below it; core and the hardware edge import no app.
ALLOWED: dict[str, set[str]] = {
    "config": {"console", *APPS, "core", *EDGE},
    "console": {*APPS, "core", *EDGE},
    # Webhooks hear what installs, inventory and the audit log do (post_save), so they sit above them all.
    "webhooks": {"installs", "inventory", "access", "audit", "accounts", "core", *EDGE},
    "installs": {"inventory", "access", "audit", "accounts", "core", *EDGE},
    "access": {"inventory", "audit", "accounts", "core", *EDGE},
    "serialconsole": {"inventory", "audit", "accounts", "core", *EDGE},
    "inventory": {"audit", "accounts", "core", *EDGE},
    "accounts": {"audit", "core"},
    "audit": {"core"},
    "core": set(),
    "provisioner.bmc": set(),
    "provisioner.pdu": {"provisioner.bmc"},  # a PDU outlet speaks the BMC driver's power half and errors
    "provisioner.pxe": set(),
    "provisioner.agent": set(),
    "provisioner.memory_os": {"provisioner.agent", "provisioner.pxe"},
    "provisioner.lab": {
        "provisioner.agent",
        "provisioner.bmc",
        "provisioner.pdu",
        "provisioner.pxe",
        "provisioner.memory_os",
    },
}
PACKAGES = ("config", "console", "core", *APPS, "provisioner")
# What the hardware edge never imports, whatever the layer table says: the web stack.
WEB_STACK = ("django", "channels", "channels_redis", "daphne", "rq", "django_rq", "ninja", "psycopg", "redis")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports, resolved to a module where it names one
    line: int
    in_function: bool
    # The package a ``from package import submodule`` runs first: an arrow for loops, not for the layer table.
    package_first: bool = False

    def __str__(self) -> str:
        where = " (inside a function)" if self.in_function else ""
        return f"{self.module}:{self.line} imports {self.target}{where}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def sources(root: Path) -> dict[str, tuple[Path, str]]:
    """Every project module (migrations included) -> (its path, its source)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(root, path)] = (path, path.read_text())
    return found


def imports(module: str, source: str, *, is_package: bool, known: Iterable[str]) -> list[Import]:
    """The imports of one module, each resolved to the most specific project module it names."""
    known = set(known)
    tree = ast.parse(source)
    found: list[Import] = []
    package = module if is_package else module.rpartition(".")[0]

    def add(name: str, node: ast.AST, in_function: bool, package_first: bool = False) -> None:
        found.append(Import(module, name, node.lineno, in_function, package_first))

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child, in_function)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    origin = ".".join(base + ([child.module] if child.module else []))
                else:
                    origin = child.module or ""
                for alias in child.names:
                    # ``from pkg import name``: the submodule pkg.name when there is one, else pkg itself.
                    submodule = f"{origin}.{alias.name}"
                    if submodule in known:
                        add(submodule, child, in_function)
                        if origin != package or not is_package:
                            add(origin, child, in_function, package_first=True)
                    else:
                        add(origin, child, in_function)
            elif (
                isinstance(child, ast.Call)
                and getattr(child.func, "attr", getattr(child.func, "id", "")) == "import_module"
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and isinstance(child.args[0].value, str)
            ):
                add(child.args[0].value, child, in_function)
            visit(child, nested)

    visit(tree, False)
    return found


def all_imports(root: Path) -> list[Import]:
    modules = sources(root)
    result = []
    for name, (path, text) in modules.items():
        result += imports(name, text, is_package=path.name == "__init__.py", known=modules)
    return result


def top_level(name: str) -> str:
    return name.split(".")[0]


def forbidden(found: Iterable[Import]) -> list[str]:
    """Every import the layer table does not allow, in words."""
    stdlib = sys.stdlib_module_names
    problems = []
    for imp in found:
        source_layer = layer_of(imp.module)
        if source_layer is None or imp.package_first:
            continue
        target_top = top_level(imp.target)
        if target_top in PACKAGES:
            target_layer = layer_of(imp.target)
            if target_layer is None:  # the provisioner package itself: an edge package must be named
                if source_layer.startswith("provisioner."):
                    problems.append(f"{imp}: import the edge package by name (provisioner.<package>)")
                continue
            if target_layer != source_layer and target_layer not in ALLOWED[source_layer]:
                problems.append(f"{imp}: {source_layer} may not import {target_layer}")
        elif source_layer.startswith("provisioner."):
            if source_layer == "provisioner.agent" and target_top not in stdlib:
                problems.append(f"{imp}: the agent uses only the standard library")
            elif target_top in WEB_STACK:
                problems.append(f"{imp}: the hardware edge never imports {target_top}")
    return problems


def cycles(found: Iterable[Import]) -> list[list[str]]:
    """Groups of modules that import each other (strongly connected components of more than one).

    ``from package import submodule`` runs the package first, so it counts as an arrow to the package
    too: a submodule that imports a sibling that way, while the package's ``__init__`` imports the
    submodule, is a loop (import the sibling by its full name: ``import package.sibling as sibling``)."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        if imp.target == imp.module:
            continue
        if top_level(imp.target) in PACKAGES:
            graph.setdefault(imp.module, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def strongconnect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                strongconnect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(graph):
            if node not in index:
                strongconnect(node)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(groups)
