"""Examples benchmark (not a test): one full latent range of the offline default, the vectorized build vs a
per-latent Python implementation measured in the same run (goal: >= 20x faster).

Data: the real activations and tokens of the offline default (``make run``), read from a read-only
copy of ``data/autointerp.duckdb`` (or ``--source``) and written into a scratch warehouse. Both sides
start from the same warehouse and end with the rows inserted into table ``example_windows`` (windows, not
copies of their tokens and activations: the ``examples`` view joins those in); the sampler is
``data/project.yaml``'s, with every eligible latent of the range selected (max_per_range = None); both
sides build the same splits (train, test, non_activating, train_non_activating), nearly the same rows.
Printed: end to end (build + write + commit) and the build alone (rows in memory) for each side, the best
of 2 rounds that interleave the sides (3 vectorized builds per round, on ``examples.THREADS`` threads and
on one); the read-back of the windows with their tokens and activations (view vs by columns) and the
end to end with it; the load average before and after (a busy machine gives numbers, no headline).

    .venv/bin/python benchmarks/examples.py [--layer layers.6] [--first 0] [--last 1023] [--embedding]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from autointerp_assets.core import sampling as ex  # noqa: E402
from autointerp_assets.core.config import load_config  # noqa: E402
from autointerp_assets.core.storage import Warehouse  # noqa: E402
from autointerp_assets_tests.support.examples_data import AFP, CORPUS, write_activations, write_tokens  # noqa: E402
from machine import describe, load, verdict  # noqa: E402


def load_source(path: Path, layer: str, first: int, last: int, batch_rows: int):
    with tempfile.TemporaryDirectory() as d:  # never open the project's file itself (a run may hold it)
        copy = Path(d) / "src.duckdb"
        shutil.copy(path, copy)
        con = duckdb.connect(str(copy), read_only=True)
        # in the order the pipeline's cache writer stores them: forward-pass batches in row order, each sorted
        # by (latent, token) (the view's join returns them in no particular order)
        acts = con.execute("SELECT latent, row_id, pos, value FROM activations WHERE layer = ? AND latent BETWEEN ? "
                           "AND ? ORDER BY row_id // ?, latent, row_id, pos",
                           [layer, first, last, batch_rows]).fetchall()
        fp = con.execute("SELECT corpus_fp FROM tokens GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
        rows = [r[0] for r in con.execute("SELECT token_ids FROM tokens WHERE corpus_fp = ? ORDER BY row_id", [fp])
                .fetchall()]
        sae = con.execute("SELECT any_value(path) FROM sparse_coders WHERE layer = ?", [layer]).fetchone()[0]
        con.close()
    return acts, rows, sae


BUILD_S: dict[str, float] = {}  # the last build's seconds before the write (rows in memory), per side


def sql_build(wh: Warehouse, cfg, ctx_len: int, layer: str, first: int, last: int, key=None, w_dec=None,
              threads: int = ex.THREADS) -> int:
    with wh.write() as con:
        t0 = time.perf_counter()
        built = ex.build_examples(con, cfg, ctx_len, None, layer, first, last, CORPUS, w_dec=w_dec,
                                  embedding_key=key, threads=threads)
        BUILD_S["sql"] = time.perf_counter() - t0
        con.execute("DELETE FROM example_windows")
        wh.insert(con, "example_windows", ex.windows_frame(built, "bench", CORPUS, AFP))
        return con.execute("SELECT count(*) FROM example_windows").fetchone()[0]


def python_build(wh: Warehouse, cfg, ctx_len: int, layer: str, first: int, last: int, bulk: bool) -> int:
    """The straightforward way, latent by latent (fixed windows, quantile train, disjoint quantile test,
    random negatives without replacement). ``bulk=False``: each latent's activations are queried when
    it is processed (a per-latent loader); ``bulk=True``: the range is pulled into Python first."""
    w, q = cfg.example_ctx_len, cfg.n_quantiles
    nw = ex.windows_per_row(ctx_len, w)
    out = []
    t0 = time.perf_counter()
    with wh.read() as con:
        lengths = [r[0] for r in con.execute("SELECT len(token_ids) FROM tokens WHERE corpus_fp = ? ORDER BY row_id",
                                             [CORPUS]).fetchall()]
        by_latent = defaultdict(list)
        if bulk:
            for lat, row, pos, val in con.execute("SELECT latent, row_id, pos, value FROM activations WHERE layer = ? "
                                                  "AND latent BETWEEN ? AND ?", [layer, first, last]).fetchall():
                by_latent[lat].append((row, pos, val))
        for lat in range(first, last + 1):
            if not bulk:
                by_latent[lat] = con.execute("SELECT row_id, pos, value FROM activations WHERE layer = ? AND latent = ?",
                                             [layer, lat]).fetchall()
            _one_latent(cfg, lat, layer, by_latent.pop(lat, []), lengths, nw, w, q, out)
    BUILD_S["python"] = time.perf_counter() - t0
    return _insert(wh, out)


def _one_latent(cfg, lat, layer, acts, lengths, nw, w, q, out) -> None:
    values = {(row, pos): val for row, pos, val in acts}
    wins: dict[tuple[int, int], float] = {}
    for (row, pos), val in values.items():
        k = (pos - 1) // w
        if k < nw and val > wins.get((row, k), 0.0):
            wins[(row, k)] = val
    if len(wins) < cfg.min_examples:
        return
    rng = random.Random(cfg.seed * 1_000_003 + lat)
    ranked = sorted(wins, key=lambda u: (-wins[u], u))
    size, extra = divmod(len(ranked), q)
    bins, start = [], 0
    for i in range(q):
        stop = start + size + (i < extra)
        bins.append([(u, i) for u in ranked[start:stop]])
        start = stop
    for b in bins:
        rng.shuffle(b)

    def spread(pools, n):
        picked, depth = [], 0
        while len(picked) < n and any(len(p) > depth for p in pools):
            picked += [p[depth] for p in pools if len(p) > depth][: n - len(picked)]
            depth += 1
        return picked

    train = spread(bins, cfg.n_train)
    used = {u for u, _ in train}
    test = spread([[x for x in b if x[0] not in used] for b in bins], cfg.n_test)
    n_neg = cfg.n_non_activating + cfg.n_train_non_activating  # the scorers' first, then the explainer's
    negs, seen, tries = [], set(), 0
    while len(negs) < n_neg and tries < 4 * n_neg + 16:
        u = divmod(rng.randrange(len(lengths) * nw), nw)
        tries += 1
        if u not in wins and u not in seen:
            seen.add(u)
            negs.append((u, -1))
    k = cfg.n_non_activating
    for split, items in (("train", train), ("test", test), ("non_activating", negs[:k]),
                         ("train_non_activating", negs[k:])):
        for (row, k), quantile in items:
            start = 1 + k * w
            out.append({"layer": layer, "latent": lat, "split": split, "example_id": row * nw + k,
                        "quantile": quantile, "row_id": row, "start_pos": start,
                        "length": min(w, lengths[row] - start), "max_activation": wins.get((row, k), 0.0),
                        "sampler_fp": "bench", "corpus_fp": CORPUS, "activations_fp": AFP})


def _insert(wh, out) -> int:
    frame = pl.DataFrame(out, schema_overrides={"quantile": pl.Int16, "start_pos": pl.Int16, "length": pl.Int16,
                                                "max_activation": pl.Float32})
    with wh.write() as con:
        con.execute("DELETE FROM example_windows")
        wh.insert(con, "example_windows", frame)
        return con.execute("SELECT count(*) FROM example_windows").fetchone()[0]


def timed(fn, repeat: int = 2):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default=str(ROOT / "data/autointerp.duckdb"))
    ap.add_argument("--layer", default="layers.6")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=1023)
    ap.add_argument("--embedding", action="store_true", help="also time embedding hard negatives (embeds the corpus)")
    args = ap.parse_args()
    cfg = load_config(ROOT / "data/project.yaml")
    ctx_len, s = cfg.corpus.ctx_len, cfg.sampler
    if not Path(args.source).exists():
        sys.exit(f"{args.source} not found: run `make run` first (the benchmark uses its activations)")
    acts, rows, sae_path = load_source(Path(args.source), args.layer, args.first, args.last,
                                       cfg.caching.batch_rows)
    with tempfile.TemporaryDirectory() as d:
        wh = Warehouse(Path(d) / "bench.duckdb")
        write_tokens(wh, rows)
        write_activations(wh, args.layer, args.first, args.last, ctx_len, acts)
        rng = (args.layer, args.first, args.last)
        print(describe())
        load_before = load()
        print(f"{args.layer} latents {args.first}-{args.last}: {len(acts):,} activations, {len(rows)} rows of "
              f"{ctx_len}; sampler: example_ctx_len {s.example_ctx_len}, min_examples {s.min_examples}, "
              f"{s.n_quantiles} quantiles, train {s.n_train} / test {s.n_test} / non-activating {s.n_non_activating}")
        t_py = b_py = t_pyb = b_pyb = t_sql = b_sql = b_one = float("inf")
        n_sql = 0
        for _ in range(2):  # rounds interleave the sides (a shared machine drifts); each keeps its best
            t, n_py = timed(lambda: python_build(wh, s, ctx_len, *rng, bulk=False), repeat=1)
            t_py, b_py = min(t_py, t), min(b_py, BUILD_S["python"])
            t, n_pyb = timed(lambda: python_build(wh, s, ctx_len, *rng, bulk=True), repeat=1)
            t_pyb, b_pyb = min(t_pyb, t), min(b_pyb, BUILD_S["python"])
            for _ in range(3):  # vectorized: on examples.THREADS threads (the default), and on one
                t, n_sql = timed(lambda: sql_build(wh, s, ctx_len, *rng), repeat=1)
                t_sql, b_sql = min(t_sql, t), min(b_sql, BUILD_S["sql"])
                sql_build(wh, s, ctx_len, *rng, threads=1)
                b_one = min(b_one, BUILD_S["sql"])
        selected = wh.scalar("SELECT count(DISTINCT latent) FROM example_windows")
        splits = dict(wh.query("SELECT split, count(*) FROM example_windows GROUP BY split").iter_rows())
        print("end to end = build + DELETE/INSERT into `example_windows` + commit (same warehouse, same write path); "
              "build = the rows in memory")
        print(f"per-latent Python, a query per latent : {t_py:7.2f} s  (build {b_py:.2f} s; {n_py:,} example rows)")
        print(f"per-latent Python, range pulled first : {t_pyb:7.2f} s  (build {b_pyb:.2f} s; {n_pyb:,} example rows)")
        print(f"vectorized (this project)             : {t_sql:7.2f} s  (build {b_sql:.3f} s on {ex.THREADS} threads, "
              f"{b_one:.3f} s on 1; {n_sql:,} example rows {splits}, {selected} latents)")
        print(f"  end to end: {t_py / t_sql:.1f}x / {t_pyb / t_sql:.1f}x faster; "
              f"build: {b_py / b_sql:.1f}x / {b_pyb / b_sql:.1f}x faster ({b_py / b_one:.1f}x / {b_pyb / b_one:.1f}x "
              f"on one thread)")
        # the tokens and activations are not copied at build time: a reader gathers them from the corpus and the
        # cache -- through the view `examples` (SQL joins) or by columns (sampling.read_windows, what the LLM
        # stages read) -- for the whole range and for one stage's read of 24 latents
        view = "SELECT * FROM examples WHERE layer = ? AND latent BETWEEN ? AND ?"
        splits = ["train", "test", "non_activating", "train_non_activating"]
        eligible = [r[0] for r in wh.query("SELECT DISTINCT latent FROM example_windows ORDER BY 1").rows()][:24]
        t_all, n_all = timed(lambda: wh.query(view, list(rng)).height, repeat=3)
        t_24, n_24 = timed(lambda: wh.query(view, [args.layer, eligible[0], eligible[-1]]).height, repeat=3)

        def columns(a: int, b: int) -> int:
            with wh.read() as con:
                return len(ex.read_windows(con, args.layer, a, b, splits))

        c_all, m_all = timed(lambda: columns(args.first, args.last), repeat=3)
        c_24, m_24 = timed(lambda: columns(eligible[0], eligible[-1]), repeat=3)
        print(f"read back with token ids + activations, whole range ({n_all:,} rows): view `examples` {t_all:.2f} s, "
              f"by columns {c_all:.3f} s ({t_all / c_all:.1f}x); latents {eligible[0]}-{eligible[-1]} (a stage's "
              f"read, {n_24:,} rows): view {t_24:.3f} s, by columns {c_24:.3f} s")
        assert m_all == n_all and m_24 == n_24, "the columnar read and the view disagree on the rows"
        e2e = t_sql + c_all
        print(f"  end to end with the read-back by columns: {e2e:.2f} s = {t_py / e2e:.1f}x / {t_pyb / e2e:.1f}x "
              "faster than the per-latent sides (which hold their examples in memory: no read-back)")
        quiet, line = verdict(load_before, load())
        print(line)
        variants = {
            "centred windows": s.model_copy(update={"window": "centred"}),
            "mix train": s.model_copy(update={"train_type": "mix"}),
            "neighbours (co-occurrence) negatives": s.model_copy(update={"non_activating_source": "neighbours"}),
            "neighbours (decoder) negatives": s.model_copy(update={"non_activating_source": "neighbours",
                                                                   "neighbour_type": "decoder"}),
        }
        for name, vcfg in variants.items():
            w_dec = None
            if vcfg.neighbour_type == "decoder":
                if not sae_path or not Path(sae_path).exists():
                    print(f"vectorized, {name}: skipped (no sparse coder checkpoint at {sae_path})")
                    continue
                w_dec = ex.neighbours.decoder_rows(sae_path, args.first, args.last)
            t, n = timed(lambda: sql_build(wh, vcfg, ctx_len, *rng, w_dec=w_dec))
            print(f"vectorized, {name:38s}: {t:6.2f} s  ({n:,} rows)")
        if args.embedding:
            from autointerp_assets.core.sampling import embeddings
            from autointerp_assets.core.stages.context import Context
            from autointerp_assets.core.stages.examples import _decode_fn

            ecfg = s.model_copy(update={"non_activating_source": "embedding"})
            t0 = time.perf_counter()
            info = embeddings.ensure_window_embeddings(wh, CORPUS, s.example_ctx_len, ctx_len, s.embedding_model,
                                                       _decode_fn(Context.of(cfg).model_dir()), log=lambda m: None)
            t_emb = time.perf_counter() - t0
            t, n = timed(lambda: sql_build(wh, ecfg, ctx_len, *rng, key=info["model"]))
            print(f"embedding the corpus windows once: {t_emb:.1f} s ({info['embedded_windows']:,} windows)")
            print(f"vectorized, embedding hard negatives (cached): {t:6.2f} s  ({n:,} rows)")


if __name__ == "__main__":
    main()
