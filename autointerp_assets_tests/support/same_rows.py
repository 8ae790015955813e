"""The tiny project run in a process of its own, and every table of two warehouses compared row by row
(``tools/same_rows.py`` and the lake tests): columns that differ by nature between two runs are left out -- timestamps (``*_at``), run ids, wall-clock durations -- floats
compared rounded and each run's own directory cut out of text."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .projects import ROOT, tiny

VOLATILE_SUFFIXES = ("_at", "_seconds", "_s")  # timestamps and durations
VOLATILE = {"run_id", "call_id", "seconds", "wall", "pid"}  # call_id: a random id per LLM request
DIGITS = 10  # floats are compared rounded: DuckDB's parallel sums may differ in the last bits between runs


# --every-scorer: every explainer kind and every scorer with its control, steering included
EVERY_SCORER = {
    "baseline_explainers": ["top_tokens", "logit_lens"], "output_explainers": ["token_change", "input_output"],
    "scoring": {"scorers": ["embedding", "surprisal", "simulation", "intruder", "intervention"],
                "control_scorers": ["detection", "fuzzing", "embedding", "surprisal", "simulation", "intervention"],
                "bootstrap_samples": 200},
    "steering": {"n_explain": 4, "n_score": 6, "max_new_tokens": 6}}


def tiny_config(workdir: Path, database: Path, dtype: str | None = None, every_scorer: bool = False,
                extra: dict | None = None) -> dict:
    raw = {**tiny(database), "workdir": str(workdir), **(EVERY_SCORER if every_scorer else {}), **(extra or {})}
    if dtype:  # the LLM's dtype (float32: answers that do not depend on how vLLM happened to batch them)
        raw["explainer"] = {**raw["explainer"], "llm": {**raw["explainer"]["llm"], "dtype": dtype}}
    return raw


def in_its_names(tree: Path, raw: dict) -> dict:
    """The config in the section names of the code in ``tree`` (older code: ``scoring`` was ``scoring_extras``)."""
    if "scoring_extras:" in (tree / "autointerp_assets" / "core" / "config.py").read_text() and "scoring" in raw:
        raw = {("scoring_extras" if k == "scoring" else k): v for k, v in raw.items()}
    return raw


def tiny_project(tree: Path, out: Path, dtype: str | None = None, every_scorer: bool = False,
                 extra: dict | None = None) -> dict:
    """The tiny project's config (with ``extra`` sections) in ``out`` for the code in ``tree``, its work directory
    and Dagster home there too; returns the environment that runs it."""
    work = out / "work"
    work.mkdir(parents=True)
    (work / "models").symlink_to(ROOT / "data" / "models")
    cfg = out / "project.yaml"
    cfg.write_text(yaml.safe_dump(in_its_names(tree, tiny_config(work, out / "warehouse.duckdb", dtype, every_scorer, extra))))
    (out / "dagster_home").mkdir()
    return {**os.environ, "AUTOINTERP_CONFIG": str(cfg), "DAGSTER_HOME": str(out / "dagster_home"),
            "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def run_pipeline(tree: Path, out: Path, dtype: str | None = None, every_scorer: bool = False,
                 extra: dict | None = None) -> float:
    """`autointerp run` of the tiny project (with ``extra`` config sections) with the code in ``tree``, in a process
    of its own (a fresh LLM engine: answers that depend on nothing else run before); returns seconds."""
    env = tiny_project(tree, out, dtype, every_scorer, extra)
    t0 = time.perf_counter()
    with open(out / "run.log", "w") as log:
        rc = subprocess.run([sys.executable, "-c", "import sys; from autointerp_assets.cli import main; "
                             "sys.exit(main(['run']))"], cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"the run in {tree} failed (exit {rc}): see {out / 'run.log'}")
    return time.perf_counter() - t0


def volatile(column: str) -> bool:
    return column in VOLATILE or column.endswith(VOLATILE_SUFFIXES)


def compare_attached(con, a: Path, b: Path, leave_out: set[tuple[str, str]] = frozenset()
                     ) -> list[tuple[str, int, int, int, list[str]]]:
    """(table, rows in a, rows in b, differing rows both ways, the columns that differ) for every base table of
    the databases attached to ``con`` as ``a`` and ``b``; ``a`` / ``b``: each run's directory (cut out of text);
    ``leave_out``: (table, column) pairs the caller compares otherwise (:func:`max_difference`)."""
    tables = sorted({r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name IN ('a', 'b') AND NOT temporary").fetchall()})
    out = []
    for t in tables:
        cols = {db: [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? ORDER BY column_index",
            [db, t]).fetchall()] for db in ("a", "b")}
        if not cols["a"] or not cols["b"]:
            out.append((t, -1 if not cols["a"] else 0, -1 if not cols["b"] else 0, -1, []))
            continue
        types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = 'a' "
                                 "AND table_name = ?", [t]).fetchall())
        keep = [c for c in cols["a"] if c in cols["b"] and not volatile(c) and (t, c) not in leave_out]

        def expr(c: str, db: str) -> str:
            root = str(a if db == "a" else b).replace("'", "''")
            if types[c] in ("DOUBLE", "FLOAT", "REAL"):
                return f'round("{c}", {DIGITS}) AS "{c}"'
            if types[c] in ("VARCHAR", "JSON"):
                return f"replace(\"{c}\"::VARCHAR, '{root}', '<run>') AS \"{c}\""
            return f'"{c}"'

        def rows_not_in(x: str, y: str, columns: list[str]) -> int:
            sx, sy = (", ".join(expr(c, d) for c in columns) for d in (x, y))
            return con.execute(f"SELECT count(*) FROM (SELECT {sx} FROM {x}.{t} EXCEPT ALL SELECT {sy} FROM {y}.{t})"
                               ).fetchone()[0]

        n_a, n_b = (con.execute(f"SELECT count(*) FROM {db}.{t}").fetchone()[0] for db in ("a", "b"))
        diff = rows_not_in("a", "b", keep) + rows_not_in("b", "a", keep)
        differ = [c for c in keep if diff and rows_not_in("a", "b", [c]) + rows_not_in("b", "a", [c])]
        differ += sorted(set(cols["a"]) ^ set(cols["b"]))  # a column only one side has
        out.append((t, n_a, n_b, diff, differ))
    return out


def max_difference(con, table: str, column: str) -> tuple[int, int, float | None]:
    """(rows of ``a.table``, of them the rows matched in ``b`` on every other kept column, the largest absolute
    difference of ``column`` between matched rows): a float that may differ in its last bits between runs."""
    cols = [c for c, in con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = 'a' AND "
                                    "table_name = ? ORDER BY column_index", [table]).fetchall()]
    on = " AND ".join(f'x."{c}" IS NOT DISTINCT FROM y."{c}"' for c in cols if c != column and not volatile(c))
    n = con.execute(f"SELECT count(*) FROM a.{table}").fetchone()[0]
    matched, worst = con.execute(f'SELECT count(*), max(abs(x."{column}" - y."{column}")) FROM a.{table} x '
                                 f"JOIN b.{table} y ON {on}").fetchone()
    return n, matched, worst
