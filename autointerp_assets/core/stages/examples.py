"""Stage examples: train / test / non-activating windows of a partition (SQL in core.examples)."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from .. import examples as examples_mod
from ..fingerprint import fingerprint
from ..records import Example
from .context import Context


def _split_statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def run_examples(ctx: Context, layer: str, first: int, last: int) -> dict:
    cfg = ctx.cfg
    afp = ctx.wh.scalar("SELECT any_value(activations_fp) FROM activations WHERE layer = ? AND latent BETWEEN ? AND ?",
                        [layer, first, last])
    if afp is None:
        raise RuntimeError(f"no activations for {layer} {first}-{last}: materialize activations first")
    spec = examples_mod.sampler_spec(cfg.sampler, afp, cfg.latents.max_per_range)
    sfp = fingerprint("sampler", spec)
    params = {"layer": layer, "first": first, "last": last, "corpus_fp": ctx.corpus_fp()}
    sql = examples_mod.build_examples_sql(cfg.sampler, cfg.corpus.ctx_len, cfg.latents.max_per_range)
    with ctx.wh.write() as con:
        ctx.wh.record_fingerprint(con, sfp, "sampler", spec)
        for stmt in _split_statements(sql):
            con.execute(stmt, {k: v for k, v in params.items() if f"${k}" in stmt})
        for table in ("examples", "latent_selection"):
            ctx.wh.delete_partition(con, table, layer, first, last)
        con.execute("INSERT INTO examples BY NAME SELECT *, ? AS sampler_fp FROM _examples", [sfp])
        con.execute("INSERT INTO latent_selection BY NAME SELECT ? AS layer, latent, status, n_windows, ? AS sampler_fp "
                    "FROM _selection", [layer, sfp])
        status = dict(con.execute("SELECT status, count(*) FROM _selection GROUP BY status").fetchall())
        splits = dict(con.execute("SELECT split, count(*) FROM _examples GROUP BY split").fetchall())
    return {"sampler_fp": sfp, "latents": status, "examples": splits}


@lru_cache(maxsize=4)
def _token_strings(model_dir: str) -> tuple[str, ...]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return tuple(tok.decode([i]) for i in range(len(tok)))


def load_examples(ctx: Context, layer: str, first: int, last: int, splits: Sequence[str]) -> dict[int, dict[str, list[Example]]]:
    vocab = _token_strings(ctx.model_dir())
    frame = ctx.wh.query(
        "SELECT latent, split, example_id, quantile, token_ids, acts FROM examples "
        "WHERE layer = ? AND latent BETWEEN ? AND ? AND split IN (SELECT unnest(?)) ORDER BY latent, split, example_id",
        [layer, first, last, list(splits)])
    out: dict[int, dict[str, list[Example]]] = {}
    for r in frame.iter_rows(named=True):
        ex = Example(r["example_id"], tuple(vocab[t] for t in r["token_ids"]), tuple(r["acts"]),
                     r["split"] != "non_activating", r["quantile"])
        out.setdefault(r["latent"], {}).setdefault(r["split"], []).append(ex)
    return out
