"""The house plan, checked on the source: where identity, stages and Dagster may live and who may import whom."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "autointerp_assets"


def modules() -> dict[str, ast.Module]:
    """{dotted module name: its syntax tree} for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def imports(name: str, tree: ast.Module, top_level: bool = False) -> set[str]:
    """Every module ``name`` imports (relative imports resolved; ``from x import y`` counts x and x.y);
    ``top_level``: only those imported when the module loads (not inside a function)."""
    is_pkg = (PACKAGE.parent / Path(*name.split("."))).is_dir()
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in (tree.body if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parent = base[:len(base) - node.level + 1]
                mod = ".".join(parent + ([mod] if mod else []))
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def fingerprint_calls(tree: ast.Module) -> list[str | None]:
    """The kind (first argument, when a literal) of every call of ``fingerprint(...)`` in the module."""
    kinds = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if called == "fingerprint":
                arg = node.args[0] if node.args else None
                kinds.append(arg.value if isinstance(arg, ast.Constant) else None)
    return kinds


def test_every_fingerprint_is_computed_once_in_the_identity_module():
    mods = modules()
    callers = {name: fingerprint_calls(tree) for name, tree in mods.items()}
    assert {name for name, kinds in callers.items() if kinds} == {"autointerp_assets.core.identity"}
    kinds = Counter(callers["autointerp_assets.core.identity"])
    assert None not in kinds  # every kind is a literal, readable in one place
    assert [k for k, n in kinds.items() if n > 1] == []  # one definition per kind
    assert {"corpus", "tokenizer", "sae-train", "sae", "activations", "cache", "sampler", "steering", "explainer",
            "scorer", "calibration"} <= set(kinds)


def test_the_core_never_imports_the_stages_or_the_dagster_shell():
    mods = modules()
    for name, tree in mods.items():
        deps = imports(name, tree)
        if name.startswith("autointerp_assets.core") and not name.startswith("autointerp_assets.core.stages"):
            assert not {d for d in deps if d.startswith("autointerp_assets.core.stages")}, name
        if name.startswith("autointerp_assets.core"):
            assert not {d for d in deps if d.split(".")[0] == "dagster" or d.startswith("autointerp_assets.defs")
                        or d.startswith("autointerp_assets.cli")}, name


def test_the_registry_and_the_sensor_take_identity_from_the_identity_module():
    mods = modules()
    for name in ("autointerp_assets.core.registry", "autointerp_assets.defs.sensors",
                 "autointerp_assets.core.stages.explanations", "autointerp_assets.core.stages.classifier_scores",
                 "autointerp_assets.core.stages.scorers"):
        assert "autointerp_assets.core.identity" in imports(name, mods[name]) or \
            "autointerp_assets.core.identity.explainer_fp" in imports(name, mods[name]), name


def test_the_core_has_no_import_cycle():
    mods = {n: t for n, t in modules().items() if n.startswith("autointerp_assets.core")}
    graph = {n: {d for d in imports(n, t, top_level=True) if d in mods and d != n} for n, t in mods.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of concepts: drop package -> child edges
    graph = {n: {d for d in deps if not d.startswith(n + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for d in graph[n]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])


SQL_START = re.compile(r"^\s*(SELECT|INSERT|DELETE|UPDATE|WITH|CREATE|DROP|ALTER|COPY)\b", re.I)
SQL_BODY = re.compile(r"\b(SELECT\b.*\bFROM|INSERT INTO|DELETE FROM|UPDATE \w+ SET|CREATE (OR REPLACE )?(TEMP |TABLE|VIEW)|"
                      r"COPY\b.*\bTO|DROP (TABLE|VIEW)|ALTER TABLE)\b", re.S | re.I)
SQL_SETTING = re.compile(r"^\s*SET \w+\s*=", re.I)


def sql_strings(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, text) of every string literal (f-strings included, docstrings not) that is a SQL statement."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    out = []
    for n in ast.walk(tree):
        if id(n) in docs or id(n) in inner:
            continue
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            text = n.value
        elif isinstance(n, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in n.values)
        else:
            continue
        if (SQL_START.match(text) and SQL_BODY.search(" ".join(text.split()))) or SQL_SETTING.match(text):
            out.append((n.lineno, " ".join(text.split())[:60]))
    return out


# modules whose SQL is not the warehouse's: defs.instance reads Dagster's own SQLite storages (a migration
# stamp) while it sets the instance up, and must stay light to import there
NOT_THE_WAREHOUSE = {"autointerp_assets.defs.instance"}


def test_no_sql_outside_the_storage_layer():
    """The warehouse's SQL lives in core/storage (schema.py: tables and views; queries.py: the named queries;
    the warehouse's own statements); the stages, the checks and the exports pass values to named queries."""
    found = {name: sql_strings(tree) for name, tree in modules().items()
             if not name.startswith("autointerp_assets.core.storage") and name not in NOT_THE_WAREHOUSE}
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_the_detector_finds_sql_in_a_stage():
    tree = ast.parse('def f(con, t):\n    con.execute(f"DELETE FROM {t} WHERE x = 1")\n'
                     '    con.execute("DROP TABLE IF EXISTS t")\n    con.execute("SET threads = 1")\n'
                     '    return con.execute("SELECT a FROM b WHERE c = ?", [1])\n')
    assert [line for line, _ in sql_strings(tree)] == [2, 3, 4, 5]


def test_the_flag_update_sets_every_flag_column():
    from autointerp_assets.core.scoring.heuristics import FLAG_COLUMNS
    from autointerp_assets.core.storage import queries

    assert all(f"{c} = f.{c}" in " ".join(queries.SET_LATENT_FLAGS.split()) for c in FLAG_COLUMNS)


def bare_writes(tree: ast.Module) -> list[int]:
    """Lines of ``with <x>.write() ...`` blocks: a write transaction that a lake conflict would fail, not retry."""
    return [item.context_expr.lineno for node in ast.walk(tree) if isinstance(node, (ast.With, ast.AsyncWith))
            for item in node.items if isinstance(item.context_expr, ast.Call)
            and isinstance(item.context_expr.func, ast.Attribute) and item.context_expr.func.attr == "write"
            and not (isinstance(item.context_expr.func.value, ast.Attribute)
                     and item.context_expr.func.value.attr == "wh"
                     and isinstance(item.context_expr.func.value.value, ast.Name)
                     and item.context_expr.func.value.value.id == "cal")]


def test_every_write_outside_the_warehouse_is_retried_on_a_lake():
    """The stages write through ``Warehouse.attempts()`` (a lake's conflicting commit runs the block again); a
    bare ``write()`` block is the warehouse's own, or the calibration's private DuckDB file (``cal.wh``)."""
    found = {name: bare_writes(tree) for name, tree in modules().items()
             if name != "autointerp_assets.core.storage.warehouse"}
    assert {name: lines for name, lines in found.items() if lines} == {}
    assert bare_writes(ast.parse("with ctx.wh.write() as con:\n    pass\nwith cal.wh.write() as c:\n    pass\n")) == [1]
