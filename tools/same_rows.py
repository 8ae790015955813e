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
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp_assets_tests.support.same_rows import compare_attached, run_pipeline  # noqa: E402


def compare(a: Path, b: Path) -> list[tuple[str, int, int, int, list[str]]]:
    """(table, rows before, rows after, differing rows both ways, the columns that differ) for every base table
    of either warehouse file (``support.same_rows.compare_attached``)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    return compare_attached(con, a.parent, b.parent)


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
