"""The package's structure, checked from its source with ``ast`` (nothing is imported).

* the intra-package import graph (top-level, function-local and ``TYPE_CHECKING`` imports) has no cycle;
* every import edge is allowed by the layer table below (config -> model -> engine <- ledger; io and
  analysis see only Datasets and the public config; only tests import :mod:`leadsim.testing`, and its
  reference twins do not import the orchestrator);
* every numba-compiled function is in ``leadsim/model/_kernel.py`` (numba's disk cache is keyed on the
  compiled function's own file, so a helper elsewhere could go stale);
* no ``assert`` statement (input checks raise; ``python -O`` strips asserts);
* no docstring or comment points at something a user of the package cannot open.

Each checker is also run on a small planted package, so a test here that passes has shown it can fail.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "leadsim"

# ---------------------------------------------------------------------------------------------------------
# Layers: which layer each module belongs to, and which layers each layer may import
# ---------------------------------------------------------------------------------------------------------
LAYER_OF_PREFIX = {  # longest matching prefix wins
    "leadsim._version": "base",
    "leadsim.atomic": "base",           # the atomic-write helper, should it live at the top (io and model use it)
    "leadsim.errors": "base",
    "leadsim.schedules": "base",        # the banded rule (numpy only), shared by model and ledger
    "leadsim.config": "config",
    "leadsim.model": "model",
    "leadsim.model.parameter_sets": "model",  # the keyed parameter set of each draw (simulation.parameter_draws)
    "leadsim.ledger": "ledger",
    "leadsim.io": "io",
    "leadsim.analysis": "analysis",
    "leadsim.analysis.parameter_risk": "analysis",  # parameter-risk share of a run's variance
    "leadsim.engine": "engine",
    "leadsim.distributed": "engine",
    "leadsim.simulate": "engine",
    "leadsim.attribution": "engine",    # variance attribution: settles 2^k subsets of sources on one set of draws
    "leadsim.precision": "api",         # run until a metric's standard error meets a target (engine + analysis)
    "leadsim.testing": "testing",             # numpy reference twins: model only, never the orchestrator
    "leadsim.testing.calibration": "checks",  # model-vs-public-facts runs: a user of the whole API
    "leadsim.fit": "fit",               # fitting a config to an ACO's panel: config, cost model, simulate
    "leadsim.decide": "decide",         # options on common draws: engine's seam, ledger, risk metrics, reports
    "leadsim.cli": "cli",
    "leadsim": "api",                   # the package's __init__: the public facade
}

ALLOWED = {
    "base": {"base"},
    "config": {"base", "config"},
    "model": {"base", "config", "model"},
    "ledger": {"base", "config", "ledger"},
    "io": {"base", "config", "io"},
    "analysis": {"base", "config", "io", "analysis"},
    "engine": {"base", "config", "model", "ledger", "io", "engine"},
    "testing": {"base", "config", "model", "testing"},
    "checks": {"base", "config", "model", "ledger", "io", "analysis", "engine", "api", "testing"},
    "api": {"base", "config", "io", "analysis", "engine", "decide"},
    "fit": {"base", "config", "model", "engine", "fit"},
    "decide": {"base", "config", "model", "ledger", "io", "analysis", "engine", "decide"},
    "cli": {"base", "config", "io", "analysis", "engine", "api", "fit", "decide", "cli"},
}


def layer_of(module: str) -> str:
    best = max((p for p in LAYER_OF_PREFIX if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise KeyError(f"{module} has no layer: add it to LAYER_OF_PREFIX")
    return LAYER_OF_PREFIX[best]


# ---------------------------------------------------------------------------------------------------------
# The import graph
# ---------------------------------------------------------------------------------------------------------
def module_files(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the package at ``root``."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` for imports inside the package, wherever they are in the file.

    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``. Parent packages a
    dotted import initialises implicitly are not edges (every module would then depend on the facade).
    """
    files = module_files(root)
    graph: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in files else src for a in node.names]
            for t in targets:
                if t in files and t != mod:
                    edges.setdefault(t, node.lineno)
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, {})):
            if colour.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if n not in colour and (c := visit(n)):
                return c
        stack.pop()
        colour[m] = 2
        return None

    for m in sorted(graph):
        if m not in colour and (c := visit(m)):
            return c
    return None


def forbidden_edges(graph: dict[str, dict[str, int]]) -> list[str]:
    bad = []
    for m, edges in sorted(graph.items()):
        lm = layer_of(m)
        for n, line in sorted(edges.items()):
            ln = layer_of(n)
            if ln not in ALLOWED[lm]:
                bad.append(f"{m} ({lm}) imports {n} ({ln}) at line {line}")
    return bad


def test_import_graph_has_no_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 30  # every module was found
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_import_follows_the_layers():
    graph = import_graph(PACKAGE)
    assert sum(map(len, graph.values())) > 60  # the edges were found (function-local ones included)
    assert graph["leadsim.cli"]["leadsim.analysis.report"]  # a function-local import is an edge
    assert forbidden_edges(graph) == []


def test_every_module_has_a_layer():
    for m in module_files(PACKAGE):
        assert layer_of(m) in ALLOWED


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "leadsim"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for sub in {Path(n).parent for n in files} - {Path(".")}:
        (root / sub / "__init__.py").touch()
    return root


def test_the_checks_catch_a_planted_cycle_and_backward_edge(tmp_path):
    root = _plant(tmp_path, {
        "io/schema.py": "def f():\n    from leadsim.io import sink\n",   # function-local, relative-free
        "io/sink.py": "from .schema import f\n",                          # relative import
        "model/cohort.py": "from leadsim.ledger import settlement\n",   # model -> ledger: backward
        "ledger/settlement.py": "import leadsim.config\n",
        "config/__init__.py": "",
        "analysis/risk.py": "from leadsim.model.cohort import x\n",     # analysis -> model internals
        "engine.py": "from leadsim.testing import reference\n",         # only tests import testing
        "testing/reference.py": "",
    })
    graph = import_graph(root)
    assert find_cycle(graph) in (["leadsim.io.schema", "leadsim.io.sink", "leadsim.io.schema"],
                                 ["leadsim.io.sink", "leadsim.io.schema", "leadsim.io.sink"])
    assert forbidden_edges(graph) == [
        "leadsim.analysis.risk (analysis) imports leadsim.model.cohort (model) at line 1",
        "leadsim.engine (engine) imports leadsim.testing.reference (testing) at line 1",
        "leadsim.model.cohort (model) imports leadsim.ledger.settlement (ledger) at line 1",
    ]


# ---------------------------------------------------------------------------------------------------------
# numba code, asserts, dangling references
# ---------------------------------------------------------------------------------------------------------
KERNEL_FILE = Path("model/_kernel.py")
NUMBA_DECORATORS = {"njit", "jit", "vectorize", "guvectorize", "stencil", "cfunc", "generated_jit"}


def _decorator_name(d: ast.expr) -> str:
    if isinstance(d, ast.Call):
        d = d.func
    if isinstance(d, ast.Attribute):
        return d.attr
    return d.id if isinstance(d, ast.Name) else ""


def numba_functions_outside_kernel(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        decorators = {id(d) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                      for d in n.decorator_list}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(_decorator_name(d) in NUMBA_DECORATORS for d in node.decorator_list):
                    if path.relative_to(root) != KERNEL_FILE:
                        out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
            elif (isinstance(node, ast.Call) and id(node) not in decorators
                  and _decorator_name(node.func) in NUMBA_DECORATORS):
                # nb.njit(f) or numba.vectorize(...)(f) used as a call, not a decorator
                if path.relative_to(root) != KERNEL_FILE:
                    out.append(f"{path.relative_to(root)}:{node.lineno} call")
    return out


def assert_statements(root: Path) -> list[str]:
    return [f"{p.relative_to(root)}:{n.lineno}" for p in sorted(root.rglob("*.py"))
            for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Assert)]


DANGLING = [
    (re.compile(r"anchors\.md"), "anchors.md"),
    (re.compile(r"\.\./shared"), "../shared"),
    (re.compile(r"\bspec/"), "spec/"),
    (re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE), "issue number"),
    (re.compile(r"(?<![\w&#])#\d+\b"), "issue number"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b"), "commit hash"),
]
DOC_LINK = re.compile(r"\bdocs/[\w./-]+?\.md\b")


def docs_and_comments(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every docstring-like string statement and every comment of a file."""
    text = path.read_text()
    out = [(n.lineno, n.value.value) for n in ast.walk(ast.parse(text))
           if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)]
    out += [(t.start[0], t.string.lstrip("#")) for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type == tokenize.COMMENT]
    return out


def dangling_references(root: Path) -> list[str]:
    repo = root.parent
    bad = []
    for path in sorted(root.rglob("*.py")):
        for line, text in docs_and_comments(path):
            for rx, what in DANGLING:
                if m := rx.search(text):
                    bad.append(f"{path.relative_to(root)}:{line} {what}: {m.group(0)!r}")
            bad += [f"{path.relative_to(root)}:{line} missing file: {m}" for m in DOC_LINK.findall(text)
                    if not (repo / m).is_file()]
    return bad


def toml_comments(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of the comments of a TOML file (the part of a line after a ``#`` outside a string)."""
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        quote = None
        for j, ch in enumerate(line):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                out.append((i, line[j + 1:]))
                break
    return out


def test_no_dangling_references_in_the_shipped_configs():
    """The configs are installed with the package (``leadsim/_configs``): their comments are documentation too."""
    repo = PACKAGE.parent
    files = sorted((repo / "configs").rglob("*.toml"))
    assert files
    bad = []
    for path in files:
        for line, text in toml_comments(path):
            bad += [f"{path.relative_to(repo)}:{line} {what}: {m.group(0)!r}" for rx, what in DANGLING
                    if (m := rx.search(text))]
            bad += [f"{path.relative_to(repo)}:{line} missing file: {m}" for m in DOC_LINK.findall(text)
                    if not (repo / m).is_file()]
    assert bad == []


def test_every_numba_function_is_in_the_kernel_module():
    assert numba_functions_outside_kernel(PACKAGE) == []
    kernel = ast.parse((PACKAGE / KERNEL_FILE).read_text())
    compiled = [n.name for n in ast.walk(kernel) if isinstance(n, ast.FunctionDef)
                and any(_decorator_name(d) in NUMBA_DECORATORS for d in n.decorator_list)]
    assert {"mix64", "simulate_draw", "cohort_chunk", "interp", "dies"} <= set(compiled)  # the scan sees them


def test_no_assert_statements():
    assert assert_statements(PACKAGE) == []


def test_no_dangling_references_in_docstrings_or_comments():
    assert dangling_references(PACKAGE) == []


def test_the_source_checks_catch_planted_violations(tmp_path):
    root = _plant(tmp_path, {
        "model/_kernel.py": "import numba as nb\n@nb.njit(cache=True)\ndef ok(x):\n    return x\n",
        "model/rng.py": ("import numba\nfrom numba import vectorize\n"
                         "@numba.njit\ndef a(x):\n    return x\n"
                         "@vectorize(['f8(f8)'])\ndef b(x):\n    return x\n"
                         "c = numba.njit(lambda x: x)\n"),
        "io/sink.py": ("def f(x):\n    '''See anchors.md and ../shared/notes, spec/lead.md, issue 9.'''\n"
                       "    assert x > 0, 'x must be positive'  # fixed in 3df6460, see #9\n"
                       "    '''docs/nowhere.md'''\n"),
    })
    (tmp_path / "docs").mkdir()
    assert numba_functions_outside_kernel(root) == ["model/rng.py:4 a", "model/rng.py:7 b", "model/rng.py:9 call"]
    assert assert_statements(root) == ["io/sink.py:3"]
    found = dangling_references(root)
    assert [f.split(" ", 1)[1].split(":")[0] for f in found] == [
        "anchors.md", "../shared", "spec/", "issue number", "missing file",
        "issue number", "commit hash"]


@pytest.mark.parametrize("text", ["0x9E3779B97F4A7C15", "4294967296.0", "seed 20270101", "x[#]",
                                  "docs/methodology.md §3.4", "the specification", "1e-5"])
def test_the_reference_scan_lets_ordinary_text_through(text, tmp_path):
    root = _plant(tmp_path, {"m.py": f"'''{text}'''\n"})
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "methodology.md").touch()
    assert dangling_references(root) == []


def test_the_toml_comment_scan(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('name = "A # not a comment"  # see shared/spec/calibration.md\n# [A] assumed\nx = 1\n')
    assert toml_comments(f) == [(1, " see shared/spec/calibration.md"), (2, " [A] assumed")]
    assert [what for _, text in toml_comments(f) for rx, what in DANGLING if rx.search(text)] == ["spec/"]
