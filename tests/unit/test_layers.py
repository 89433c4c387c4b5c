"""The layering of tracker's modules (README.md, Development): data flows one way, and
no import runs back up. Every module under tracker/ is parsed (not imported) and every
import of a tracker module is read: at the top of the module, inside a function (a lazy
import), under ``if TYPE_CHECKING:``, and the ``"tracker.x.y:attr"`` targets handed to
``importlib.import_module`` (the CLI's lazy commands). Each kind counts: a lazy import is
still an edge, only a later one.

The granularity is the README's: a package under tracker/ (``tracker.store``,
``tracker.poll``, ...) is one unit, and so is each top-level module (``tracker.config``,
``tracker.api``); ``tracker`` alone is the package's ``__init__``. Between units there is
no cycle, and each unit imports only units of its own layer or of layers below it.

``.venv/bin/python -m tests.unit.test_layers`` prints the graph between units, each
edge with the kinds of its imports.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tracker"

#: the layers, lowest first; a unit may import its own layer and those below it
LAYERS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (name, frozenset(units.split()))
    for name, units in (
        # what every part shares: records, errors, settings, text, the network's rules
        (
            "foundation",
            "tracker.exceptions tracker.version tracker.timeparse tracker.domain"
            " tracker.events tracker.text tracker.net tracker.settingtypes tracker.inputs"
            " tracker.logsetup tracker.records tracker.waiting tracker.observer tracker.eventloop"
            " tracker.config",
        ),
        # the only SQL
        ("store", "tracker.store"),
        # the daemon and what it runs: polling, callbacks, the output archive
        ("parts", "tracker.poll tracker.callbacks tracker.archive"),
        # the application layer the entry points call (api -> store)
        (
            "api",
            "tracker.api tracker.syncapi tracker.asyncapi tracker.arguments"
            " tracker.registering tracker.health",
        ),
        # the entry points: the command line, `tracker serve`, the package's own API
        ("entry", "tracker tracker.__main__ tracker.cli tracker.service"),
    )
)
#: the upstream simulator stands apart: it may use the foundation and nothing else
SIMULATOR = "tracker.simulator"
#: what the simulator may import besides itself
SIMULATOR_MAY_IMPORT = LAYERS[0][1]
#: the layer that may run the simulator (`tracker simulate`, `tracker demo`)
SIMULATOR_USERS = LAYERS[-1][1]
#: the daemon's code, which the simulator never imports
DAEMON_UNITS = frozenset({"tracker.store", "tracker.poll", "tracker.callbacks", "tracker.archive"})

#: kinds of import, as failure messages name them
TOP, FUNCTION, TYPE_CHECKING, STRING = "top", "in a function", "TYPE_CHECKING", "by name"
#: "tracker.cli.show:show_command", as handed to importlib.import_module
TARGET = re.compile(r"^(tracker(?:\.\w+)+)(?::\w+)?$")


@dataclass(frozen=True)
class Import:
    source: str  #: the importing module, "tracker.store.store"
    target: str  #: the imported module (or the package an imported name is from)
    kind: str
    where: str  #: "tracker/store/store.py:12"

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target} ({self.kind})"


@cache
def modules() -> dict[str, Path]:
    """Every module under tracker/, by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def unit(module: str) -> str:
    """The README's unit of a module: its package under tracker/, or itself."""
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _kinds(tree: ast.Module) -> dict[int, str]:
    """Each node's kind when it is not TOP: under TYPE_CHECKING, or in a function."""
    kinds: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for inner in ast.walk(node):
                if inner is not node:
                    kinds.setdefault(id(inner), FUNCTION)
    for node in ast.walk(tree):  # TYPE_CHECKING wins, even inside a function
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                for inner in ast.walk(statement):
                    kinds[id(inner)] = TYPE_CHECKING
    return kinds


@cache
def imports() -> tuple[Import, ...]:
    known = modules()
    found = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        kinds = _kinds(tree)
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            targets: list[str] = []
            kind = kinds.get(id(node), TOP)
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node)
                # `from tracker import arguments` imports the module tracker.arguments
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = TARGET.match(node.value)
                if match and ":" in node.value and match.group(1) in known:
                    targets, kind = [match.group(1)], STRING
            line = getattr(node, "lineno", 0)
            for target in targets:
                if target == "tracker" or target.startswith("tracker."):
                    found.append(Import(module, target, kind, f"{where}:{line}"))
    return tuple(found)


def unit_graph() -> dict[str, dict[str, list[Import]]]:
    """Unit -> the units it imports -> the imports that make that edge."""
    graph: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for found in imports():
        source, target = unit(found.source), unit(found.target)
        if source != target:
            graph[source][target].append(found)
    return graph


def layer_of(name: str) -> int | None:
    for rank, (_, units) in enumerate(LAYERS):
        if name in units:
            return rank
    return None


def cycles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, {}):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(graph) | {t for targets in graph.values() for t in targets}):
        if node not in index:
            visit(node)
    return found


def offending(source_units: set[str], target_units: set[str]) -> list[str]:
    """The imports from any of ``source_units`` into any of ``target_units``."""
    found = {
        str(made)
        for source, targets in unit_graph().items()
        if source in source_units
        for target, imports_ in targets.items()
        if target in target_units
        for made in imports_
    }
    return sorted(found)


# -- tests -------------------------------------------------------------------------------


def test_the_parse_sees_every_kind_of_import() -> None:
    """The reader is not blind: each kind of import occurs in the tree today (a lazy
    ``from tracker import api`` in the package, TYPE_CHECKING imports, the CLI's
    commands by name), so a rule below is checked against all of them."""
    kinds = {found.kind for found in imports()}
    assert kinds == {TOP, FUNCTION, TYPE_CHECKING, STRING}
    assert len(modules()) > 100


def test_every_unit_has_a_layer() -> None:
    """A new package or top-level module must be placed in LAYERS (or be the
    simulator) before the rules can say what it may import."""
    units = {unit(module) for module in modules()}
    unplaced = sorted(u for u in units if layer_of(u) is None and u != SIMULATOR)
    assert not unplaced, f"add these to LAYERS in {Path(__file__).name}: {unplaced}"


def shortest_cycle(graph: dict[str, dict[str, list[Import]]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first unit, as units (first = last)."""
    start = component[0]
    came_from: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for other in sorted(graph.get(node, {})):
            if other == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if other in component and other not in came_from:
                came_from[other] = node
                queue.append(other)
    return component


def test_no_import_cycle_between_units() -> None:
    graph = unit_graph()
    found = cycles(graph)
    detail = []
    for component in found:
        path = shortest_cycle(graph, component)
        detail.append(" -> ".join(path))
        detail += [f"    {graph[a][b][0]}" for a, b in pairwise(path)]
    assert not found, "import cycles between units:\n" + "\n".join(detail)


def test_no_unit_imports_a_layer_above_its_own() -> None:
    upward = []
    for source, targets in unit_graph().items():
        rank = layer_of(source)
        if rank is None:  # the simulator: its own test
            continue
        for target, made in targets.items():
            if target == SIMULATOR and source in SIMULATOR_USERS:
                continue
            target_rank = layer_of(target)
            if target_rank is None or target_rank > rank:
                upward += [f"{m}  [{LAYERS[rank][0]} -> {target}]" for m in made]
    assert not upward, "imports that run back up:\n" + "\n".join(sorted(set(upward)))


def test_nothing_below_store_imports_anything_above_it() -> None:
    """The store imports only the foundation: not the daemon, the callbacks, the
    archive, the API, the service, the command line or the simulator."""
    allowed = LAYERS[0][1] | {"tracker.store"}
    above = {unit(module) for module in modules()} - allowed
    bad = offending({"tracker.store"}, above)
    assert not bad, "\n".join(bad)
    bad = offending(set(LAYERS[0][1]), above | {"tracker.store"})
    assert not bad, "\n".join(bad)


def test_cli_and_service_go_through_api_never_the_reverse() -> None:
    """``cli | service -> api -> store``: the application layer imports neither."""
    entry = {"tracker.cli", "tracker.service"}
    bad = offending(set(LAYERS[3][1]), entry | {"tracker"})
    assert not bad, "\n".join(bad)


def test_poll_archive_and_callbacks_never_import_cli_service_or_api() -> None:
    parts = {"tracker.poll", "tracker.archive", "tracker.callbacks"}
    bad = offending(parts, set(LAYERS[3][1]) | set(LAYERS[4][1]))
    assert not bad, "\n".join(bad)


def test_only_the_main_module_imports_the_cli() -> None:
    everyone = {unit(module) for module in modules()}
    bad = offending(everyone - {"tracker.__main__", "tracker.cli"}, {"tracker.cli"})
    assert not bad, "\n".join(bad)


def test_no_module_imports_the_package_itself() -> None:
    """``tracker/__init__.py`` hands out the Python API (it imports tracker.api on first
    use), so a part that imported it would import upward; the version is in
    tracker.version."""
    bad = offending({unit(module) for module in modules()}, {"tracker"})
    assert not bad, "\n".join(bad)


def test_the_simulator_imports_no_daemon_code() -> None:
    everyone = {unit(module) for module in modules()}
    bad = offending({SIMULATOR}, everyone - SIMULATOR_MAY_IMPORT - {SIMULATOR})
    assert not bad, "\n".join(bad)
    bad = offending({SIMULATOR}, set(DAEMON_UNITS))
    assert not bad, "\n".join(bad)


if __name__ == "__main__":
    for source, targets in sorted(unit_graph().items()):
        print(source)
        for target, made in sorted(targets.items()):
            kinds = ", ".join(sorted({m.kind for m in made}))
            print(f"    -> {target}  ({len(made)}: {kinds})")
