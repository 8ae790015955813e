"""Same rows before and after a change: run the tiny pipeline with the code at a git ref and with the working
tree, each into its own warehouse, and compare every table row by row.

    .venv/bin/python tools/same_rows.py --base <ref>        # e.g. the commit before a restructuring

Both runs use the tests' tiny project (2 layers x 2 latent ranges, the calibration, every asset; with
``--every-scorer`` also every explainer kind and every scorer with its control, steering included), the same
converted model and this tree's virtual environment; each trains its own sparse coders in a workdir of its
own. Columns that differ by nature between two runs are left out: timestamps (``*_at``), run ids, wall-clock
durations. Prints one line per table (rows, differences) and exits 1 when any table differs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]
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


def tiny_config(workdir: Path, database: Path, dtype: str | None = None, every_scorer: bool = False) -> dict:
    sys.path.insert(0, str(ROOT))
    from autointerp_assets_tests.support.projects import tiny

    raw = {**tiny(database), "workdir": str(workdir), **(EVERY_SCORER if every_scorer else {})}
    if dtype:  # the LLM's dtype (float32: answers that do not depend on how vLLM happened to batch them)
        raw["explainer"] = {**raw["explainer"], "llm": {**raw["explainer"]["llm"], "dtype": dtype}}
    return raw


def in_its_names(tree: Path, raw: dict) -> dict:
    """The config in the section names of the code in ``tree`` (older code: ``scoring`` was ``scoring_extras``)."""
    if "scoring_extras:" in (tree / "autointerp_assets" / "core" / "config.py").read_text() and "scoring" in raw:
        raw = {("scoring_extras" if k == "scoring" else k): v for k, v in raw.items()}
    return raw


def run_pipeline(tree: Path, out: Path, dtype: str | None = None, every_scorer: bool = False) -> float:
    """`autointerp run` of the tiny project with the code in ``tree``; returns seconds."""
    work = out / "work"
    work.mkdir(parents=True)
    (work / "models").symlink_to(ROOT / "data" / "models")
    cfg = out / "project.yaml"
    cfg.write_text(yaml.safe_dump(in_its_names(tree, tiny_config(work, out / "warehouse.duckdb", dtype, every_scorer))))
    (out / "dagster_home").mkdir()
    env = {**os.environ, "AUTOINTERP_CONFIG": str(cfg), "DAGSTER_HOME": str(out / "dagster_home"),
           "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    with open(out / "run.log", "w") as log:
        rc = subprocess.run([sys.executable, "-c", "import sys; from autointerp_assets.cli import main; "
                             "sys.exit(main(['run']))"], cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"the run in {tree} failed (exit {rc}): see {out / 'run.log'}")
    return time.perf_counter() - t0


def volatile(column: str) -> bool:
    return column in VOLATILE or column.endswith(VOLATILE_SUFFIXES)


def compare(a: Path, b: Path) -> list[tuple[str, int, int, int, list[str]]]:
    """(table, rows before, rows after, differing rows both ways, the columns that differ) for every base table
    of either warehouse. Text is compared with each run's own directory cut out (paths of its workdir)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    tables = sorted({r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name IN ('a', 'b') AND NOT temporary").fetchall()})
    out = []
    for t in tables:
        cols = {db: [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? ORDER BY column_index",
            [db, t]).fetchall()] for db in ("a", "b")}
        if not cols["a"] or not cols["b"]:
            out.append((t, -1 if not cols["a"] else 0, -1 if not cols["b"] else 0, -1))
            continue
        types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = 'a' "
                                 "AND table_name = ?", [t]).fetchall())
        keep = [c for c in cols["a"] if c in cols["b"] and not volatile(c)]

        def expr(c: str, db: str) -> str:
            root = str((a if db == "a" else b).parent).replace("'", "''")
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="git ref of the code to compare against (e.g. a commit)")
    p.add_argument("--after", help="git ref of the other code (default: the working tree); the same ref as --base "
                   "measures the noise floor: what two runs of the same code differ in")
    p.add_argument("--llm-dtype", help="the LLM's dtype in both runs, e.g. float32 (default: the project's auto)")
    p.add_argument("--every-scorer", action="store_true", help="also run every explainer kind (baselines, "
                   "output-centric) and every scorer with its control, steering and intervention included")
    p.add_argument("--keep", help="keep the runs in this directory (default: a temporary one, removed)")
    args = p.parse_args(argv)
    root = Path(args.keep or tempfile.mkdtemp(prefix="same-rows-"))
    base_tree, after_tree = root / "base-tree", (root / "after-tree" if args.after else ROOT)
    trees = [(base_tree, args.base)] + ([(after_tree, args.after)] if args.after else [])
    for tree, ref in trees:
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), ref], cwd=ROOT, check=True)
    try:
        secs = {name: run_pipeline(tree, root / name, args.llm_dtype, args.every_scorer)
                for name, tree in (("before", base_tree), ("after", after_tree))}
        for db in ("warehouse.duckdb", "warehouse.calibration.duckdb"):
            rows = compare(root / "before" / db, root / "after" / db)
            print(f"{db}: before {secs['before']:.0f} s, after {secs['after']:.0f} s")
            print(f"  {'table':<34}{'before':>10}{'after':>10}{'differ':>10}  columns that differ")
            for t, n_a, n_b, d, cols in rows:
                print(f"  {t:<34}{n_a:>10}{n_b:>10}{d:>10}  {', '.join(cols)}")
            bad = [t for t, n_a, n_b, d, cols in rows if d != 0 or cols]
            secs.setdefault("bad", []).extend(f"{db}:{t}" for t in bad)
        print("differences in: " + ", ".join(secs["bad"]) if secs["bad"] else "0 differences in every table")
        return 1 if secs["bad"] else 0
    finally:
        for tree, _ in trees:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


if __name__ == "__main__":
    sys.exit(main())
