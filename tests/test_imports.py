"""The import graph keeps the pipeline's shape (every import counts, also inside functions).

- A stage imports only earlier stages: decode < mapping < aggregation < ingest < receivers
  < commit < runtime < tools < cli (receivers hand bytes to ingest; ingest sees the commit
  only through ``model.Commit``).
- ``model`` and ``errors`` import nothing of the product: every stage may import them.
- Exporters import from ``collector`` only the shared contract: ``model``, ``config``,
  ``errors``, ``credentials``, ``telemetry`` (the instrument names) and the ``aggregation``
  rules the SQL sink applies (pure functions on ``model`` records). Only ``runtime`` (the
  wiring), ``tools`` and ``cli`` import exporters.
- Nothing imports ``collector.tools`` but ``collector.cli`` (and tools themselves); tests and
  bench may, since they drive synthetic traffic.
- No cycles; ``bench`` imports nothing from ``tests``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import ROOT

STAGES = ("decode", "mapping", "aggregation", "ingest", "receivers", "commit", "runtime",
          "tools", "cli")  # fmt: skip
BASE = frozenset({"collector.model", "collector.errors"})
FOR_EXPORTERS = ("collector.model", "collector.config", "collector.errors", "collector.credentials",
                 "collector.telemetry", "collector.aggregation")  # fmt: skip


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _graph(*packages: str) -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from a import b`` counts ``a.b`` when
    ``a.b`` is a module, else ``a``)."""
    files = {_module(p): p for package in packages for p in (ROOT / package).rglob("*.py")
             if "migrations" not in p.parts}  # fmt: skip
    known = {_module(p) for package in ("collector", "exporters", "bench", "tests")
             for p in (ROOT / package).rglob("*.py")}  # fmt: skip
    return {
        module: {name for name in _imports(path) if name in known and name != module}
        for module, path in files.items()
    }


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "collector" or len(parts) < 2:
        return None
    return STAGES.index(parts[1]) if parts[1] in STAGES else None


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_no_stage_imports_a_later_stage() -> None:
    wrong = []
    for module, imported in _graph("collector").items():
        rank = _stage(module)
        for name in imported:
            other = _stage(name)
            if rank is not None and other is not None and other > rank:
                wrong.append(f"{module} -> {name}")
    assert wrong == []


def test_model_and_errors_import_nothing_of_the_product() -> None:
    graph = _graph("collector")
    assert {module: graph[module] for module in BASE if graph[module]} == {}


def test_exporters_import_only_the_shared_contract() -> None:
    wrong = [f"{module} -> {name}" for module, imported in _graph("exporters").items()
             for name in imported if _under(name, "collector")
             and not any(_under(name, allowed) for allowed in FOR_EXPORTERS)]  # fmt: skip
    assert wrong == []
    importers = {module for module, imported in _graph("collector").items()
                 if any(_under(name, "exporters") for name in imported)}  # fmt: skip
    assert {m for m in importers if _stage(m) not in (STAGES.index("runtime"),
            STAGES.index("tools"), STAGES.index("cli"))} == set()  # fmt: skip


def test_nothing_imports_tools_but_the_cli() -> None:
    graph = _graph("collector", "exporters")
    importers = {module for module, imported in graph.items()
                 if any(_under(name, "collector.tools") for name in imported)}  # fmt: skip
    assert {m for m in importers if not _under(m, "collector.tools")} == {"collector.cli"}


def test_no_import_cycles() -> None:
    graph = _graph("collector", "exporters", "bench")
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module):], module])
            return
        if module in done:
            return
        for name in sorted(graph.get(module, ())):
            visit(name, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_bench_imports_nothing_from_tests() -> None:
    wrong = [f"{module} -> {name}" for module, imported in _graph("bench").items()
             for name in imported if _under(name, "tests")]  # fmt: skip
    assert wrong == []
