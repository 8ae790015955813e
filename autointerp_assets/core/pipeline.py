"""The stages as plain functions over a Warehouse: what each Dagster asset calls (usable from a notebook).

corpus_tokens -> sparse_coders -> activations -> latent_stats -> examples -> explanations -> scores
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import polars as pl

from . import caching, corpus, examples as examples_mod, explainers, metrics, scorers
from .config import LLMConfig, ProjectConfig
from .fingerprint import file_digest, fingerprint
from .records import Example
from .sparse_coders import coder_info, load_sparse_coder, train_topk_sae
from .storage import Warehouse
from .storage.warehouse import arrow_table
from .subject_model import resolve_model

log = logging.getLogger(__name__)
Log = Callable[[str], None]

CACHE_VERSION = "topk-nonzero-v1"


# --- identities and fingerprints ---------------------------------------------------------------
@lru_cache(maxsize=16)
def _dir_revision(path: str) -> str:
    p = Path(path)
    parts = [file_digest(p / "config.json", limit=None)]
    for w in sorted(p.glob("*.safetensors")):
        parts.append(file_digest(w))
    return ":".join(parts)


def model_identity(name: str, workdir: Path) -> dict:
    """Name + revision (digest of the local files) without loading the model."""
    resolved = resolve_model(name, workdir)
    rev = _dir_revision(resolved) if Path(resolved).is_dir() else "hub"
    return {"name": name, "revision": rev}


def llm_identity(cfg: LLMConfig, workdir: Path) -> dict:
    ident = {"engine": cfg.engine, "model": cfg.model}
    if cfg.engine == "vllm":
        ident["revision"] = model_identity(cfg.model, workdir)["revision"]
    else:
        ident["base_url"] = cfg.base_url
    return ident


def corpus_spec(cfg: ProjectConfig, workdir: Path) -> dict:
    return {"corpus": cfg.corpus.model_dump(), "tokenizer": model_identity(cfg.subject_model, workdir)}


def explainer_spec(cfg: ProjectConfig, workdir: Path) -> dict:
    e = cfg.explainer
    return {"llm": llm_identity(e.llm, workdir), "settings": e.model_dump(exclude={"llm"}),
            "prompt_version": explainers.EXPLAINER_PROMPT_VERSION}


def scorer_spec(cfg: ProjectConfig, workdir: Path, kind: str) -> dict:
    s = cfg.scorer
    return {"llm": llm_identity(cfg.scorer_llm, workdir), "kind": kind,
            "settings": s.model_dump(exclude={"llm", "scorers"}),
            "prompt_version": scorers.SCORER_PROMPT_VERSION[kind]}


@dataclass
class Context:
    """What every stage needs: the config, its warehouse, the workdir, a logger."""

    cfg: ProjectConfig
    wh: Warehouse
    log: Log = log.info

    @property
    def workdir(self) -> Path:
        return self.cfg.resolve(self.cfg.workdir)

    @classmethod
    def of(cls, cfg: ProjectConfig, log_fn: Log | None = None) -> "Context":
        return cls(cfg, Warehouse(cfg.resolve(cfg.database)), log_fn or log.info)

    def model_dir(self) -> str:
        return resolve_model(self.cfg.subject_model, self.workdir)

    def corpus_fp(self) -> str:
        return fingerprint("corpus", corpus_spec(self.cfg, self.workdir))


# --- corpus_tokens ------------------------------------------------------------------------------
def run_corpus(ctx: Context) -> dict:
    from transformers import AutoTokenizer

    cfg = ctx.cfg.corpus
    tok = AutoTokenizer.from_pretrained(ctx.model_dir())
    n_rows = cfg.n_tokens // cfg.ctx_len
    t0 = time.perf_counter()
    rows = corpus.pack_rows(corpus.iter_documents(cfg), tok, cfg.ctx_len, n_rows, corpus.bos_id(cfg, tok))
    fp = ctx.corpus_fp()
    frame = pl.DataFrame({"corpus_fp": [fp] * n_rows, "row_id": np.arange(n_rows, dtype=np.int32),
                          "token_ids": rows.tolist()}, schema_overrides={"token_ids": pl.List(pl.Int32)})
    with ctx.wh.write() as con:
        ctx.wh.record_fingerprint(con, fp, "corpus", corpus_spec(ctx.cfg, ctx.workdir))
        con.execute("DELETE FROM tokens WHERE corpus_fp = ?", [fp])
        ctx.wh.insert(con, "tokens", frame)
    secs = time.perf_counter() - t0
    ctx.log(f"corpus {cfg.source}: {n_rows} rows x {cfg.ctx_len} tokens in {secs:.1f}s ({fp})")
    return {"corpus_fp": fp, "rows": n_rows, "tokens": n_rows * cfg.ctx_len, "seconds": round(secs, 2)}


def load_rows(ctx: Context, limit: int | None = None) -> np.ndarray:
    fp = ctx.corpus_fp()
    with ctx.wh.read() as con:
        tbl = con.execute(
            f"SELECT token_ids FROM tokens WHERE corpus_fp = ? ORDER BY row_id {'LIMIT ' + str(limit) if limit else ''}",
            [fp])
        tbl = arrow_table(tbl)
    if tbl.num_rows == 0:
        raise RuntimeError(f"no corpus rows for {fp}: materialize corpus_tokens first")
    col = tbl.column("token_ids").combine_chunks()
    return np.asarray(col.flatten(), dtype=np.int32).reshape(tbl.num_rows, -1)


# --- sparse_coders ------------------------------------------------------------------------------
def sae_train_spec(ctx: Context) -> dict:
    return {"sae": ctx.cfg.sae.model_dump(), "hookpoints": list(ctx.cfg.hookpoints),
            "corpus_fp": ctx.corpus_fp(), "model": model_identity(ctx.cfg.subject_model, ctx.workdir),
            "dtype": ctx.cfg.caching.dtype}


def sae_root(ctx: Context) -> Path:
    if ctx.cfg.sae.source != "train":
        return ctx.cfg.resolve(ctx.cfg.sae.source)
    return ctx.workdir / "sparse_coders" / fingerprint("sae-train", sae_train_spec(ctx))


def run_sparse_coders(ctx: Context) -> list[dict]:
    cfg = ctx.cfg
    root = sae_root(ctx)
    stats: dict[str, dict] = {}
    hooks = list(cfg.hookpoints)
    missing = [h for h in hooks if not (root / h / "sae.safetensors").exists()]
    lm = None
    if cfg.sae.source == "train" and missing:
        lm, _ = caching.load_subject_model(ctx.model_dir(), cfg.caching.dtype, cfg.caching.threads)
        n_rows = max(1, cfg.sae.train_tokens // cfg.corpus.ctx_len)
        rows = load_rows(ctx, n_rows)
        t0 = time.perf_counter()
        resid = caching.collect_training_residuals(lm, missing, rows, cfg.caching.batch_rows)
        ctx.log(f"collected {len(rows) * (cfg.corpus.ctx_len - 1)} training tokens at {missing} "
                f"in {time.perf_counter() - t0:.1f}s")
        for h in missing:
            sae, st = train_topk_sae(resid.pop(h), cfg.sae, log=lambda m, h=h: ctx.log(f"{h}: {m}"))
            tmp = root / (h + ".tmp")
            sae.save_to_disk(tmp)
            tmp.rename(root / h)  # atomic: a half-written SAE is never picked up
            stats[h] = st
    infos = []
    for h in hooks:
        sae = load_sparse_coder(root, h)
        info = coder_info(root, h, sae)
        _check_width(ctx, h, info.d_in, lm)
        if cfg.latents.stop > info.num_latents:
            raise ValueError(f"latents.stop ({cfg.latents.stop}) exceeds the {info.num_latents} latents of the "
                             f"sparse coder at {h}: lower latents.stop")
        st = stats.get(h, {})
        infos.append({"layer": h, "sae_fp": fingerprint("sae", {"digest": info.digest}), "path": info.path,
                      "d_in": info.d_in, "num_latents": info.num_latents, "k": info.k,
                      "source": cfg.sae.source, "train_tokens": st.get("train_tokens"),
                      "fvu": st.get("fvu"), "dead_fraction": st.get("dead_fraction")})
    frame = pl.DataFrame(infos)
    with ctx.wh.write() as con:
        con.execute(f"DELETE FROM sparse_coders WHERE layer IN ({','.join('?' * len(hooks))})", hooks)
        for i in infos:
            prev = con.execute("SELECT 1 FROM fingerprints WHERE fingerprint = ?", [i["sae_fp"]]).fetchone()
            if not prev:
                ctx.wh.record_fingerprint(con, i["sae_fp"], "sae", {"layer": i["layer"], "path": i["path"]})
        ctx.wh.insert(con, "sparse_coders", frame)
    return infos


def _check_width(ctx: Context, hookpoint: str, d_in: int, lm=None) -> None:
    from transformers import AutoConfig

    width = getattr(AutoConfig.from_pretrained(ctx.model_dir()), "hidden_size", None)
    if width is not None and width != d_in:
        raise ValueError(f"the sparse coder at {hookpoint} expects d_in={d_in} but the model's width is {width}: "
                         f"use the SAE trained for this model/hookpoint")


def coder_rows(ctx: Context) -> dict[str, dict]:
    hooks = list(ctx.cfg.hookpoints)
    frame = ctx.wh.query("SELECT * FROM sparse_coders WHERE layer IN (" + ",".join("?" * len(hooks)) + ")", hooks)
    got = {r["layer"]: r for r in frame.to_dicts()}
    if set(got) != set(hooks):
        raise RuntimeError(f"no sparse coder recorded for {sorted(set(hooks) - set(got))}: materialize sparse_coders")
    return got


# --- activations --------------------------------------------------------------------------------
def activations_fp(ctx: Context, layer: str, coders: dict[str, dict]) -> str:
    return fingerprint("activations", {"version": CACHE_VERSION, "corpus_fp": ctx.corpus_fp(),
                                       "model": model_identity(ctx.cfg.subject_model, ctx.workdir),
                                       "dtype": ctx.cfg.caching.dtype, "sae_fp": coders[layer]["sae_fp"]})


def cache_fp(ctx: Context, coders: dict[str, dict]) -> str:
    lat = ctx.cfg.latents
    return fingerprint("cache", {"layers": {h: activations_fp(ctx, h, coders) for h in ctx.cfg.hookpoints},
                                 "latents": [lat.start, lat.stop]})


def ensure_cache(ctx: Context) -> tuple[str, dict]:
    """One forward pass over the corpus for all hookpoints (resumable); reused when already complete."""
    cfg = ctx.cfg
    coders = coder_rows(ctx)
    cfp = cache_fp(ctx, coders)
    with ctx.wh.read() as con:
        done = con.execute("SELECT n_tokens, n_nonzero, seconds FROM cache_complete WHERE cache_fp = ?", [cfp]).fetchone()
        start_row = con.execute("SELECT coalesce(max(row_stop), 0) FROM cache_progress WHERE cache_fp = ?",
                                [cfp]).fetchone()[0]
    if done:
        ctx.log(f"activation cache {cfp} complete: reusing it (no forward pass)")
        return cfp, {"reused": True, "tokens": done[0], "nonzero": done[1], "seconds": done[2]}
    rows = load_rows(ctx)
    n_rows = len(rows)
    if start_row:
        ctx.log(f"resuming activation cache {cfp} at row {start_row}/{n_rows}")
    with ctx.wh.write() as con:  # rows past the resume point can only be leftovers; keep the cache exact
        con.execute("DELETE FROM activation_cache WHERE cache_fp = ? AND row_id >= ?", [cfp, start_row])
    lm, _ = caching.load_subject_model(ctx.model_dir(), cfg.caching.dtype, cfg.caching.threads)
    saes = {h: load_sparse_coder(Path(coders[h]["path"]).parent, h) for h in cfg.hookpoints}
    t_start, done_tokens, last_log = time.perf_counter(), 0, 0.0
    total_nz = 0
    for a, b, per_hook, secs in caching.cache_batches(lm, saes, rows, cfg.caching.batch_rows,
                                                       cfg.latents.start, cfg.latents.stop, start_row):
        frame = pl.concat([pl.DataFrame({"cache_fp": cfp, "layer": ba.hookpoint, "latent": ba.latent,
                                         "row_id": ba.row_id, "pos": ba.pos, "value": ba.value})
                           for ba in per_hook])
        with ctx.wh.write() as con:  # a batch and its progress mark commit together
            ctx.wh.insert(con, "activation_cache", frame)
            con.execute("INSERT INTO cache_progress (cache_fp, batch_index, row_start, row_stop, n_nonzero, seconds)"
                        " VALUES (?, ?, ?, ?, ?, ?)", [cfp, a // cfg.caching.batch_rows, a, b, frame.height, secs])
        total_nz += frame.height
        done_tokens += (b - a) * cfg.corpus.ctx_len
        el = time.perf_counter() - t_start
        if el - last_log > 10 or b == n_rows:
            last_log = el
            rate = done_tokens / max(el, 1e-9)
            eta = (n_rows - b) * cfg.corpus.ctx_len / max(rate, 1e-9)
            ctx.log(f"caching: {b * cfg.corpus.ctx_len}/{n_rows * cfg.corpus.ctx_len} tokens, "
                    f"{rate:,.0f} tok/s, ETA {eta:.0f}s")
    elapsed = time.perf_counter() - t_start
    with ctx.wh.write() as con:
        n_nz = con.execute("SELECT count(*) FROM activation_cache WHERE cache_fp = ?", [cfp]).fetchone()[0]
        con.execute("INSERT INTO cache_complete (cache_fp, n_rows, n_tokens, n_nonzero, seconds) VALUES (?,?,?,?,?) "
                    "ON CONFLICT DO NOTHING", [cfp, n_rows, n_rows * cfg.corpus.ctx_len, n_nz, elapsed])
    tokens = (n_rows - start_row) * cfg.corpus.ctx_len
    return cfp, {"reused": False, "tokens": tokens, "nonzero": int(n_nz), "seconds": round(elapsed, 2),
                 "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1)}


def publish_activations(ctx: Context, cfp: str, layer: str, first: int, last: int) -> int:
    coders = coder_rows(ctx)
    afp = activations_fp(ctx, layer, coders)
    with ctx.wh.write() as con:
        ctx.wh.delete_partition(con, "activations", layer, first, last)
        con.execute("INSERT INTO activations BY NAME SELECT layer, latent, row_id, pos, value, ? AS activations_fp "
                    "FROM activation_cache WHERE cache_fp = ? AND layer = ? AND latent BETWEEN ? AND ? "
                    "ORDER BY latent, row_id, pos", [afp, cfp, layer, first, last])
        n = con.execute("SELECT count(*) FROM activations WHERE layer = ? AND latent BETWEEN ? AND ?",
                        [layer, first, last]).fetchone()[0]
    return int(n)


# --- latent_stats -------------------------------------------------------------------------------
def run_latent_stats(ctx: Context, layer: str, first: int, last: int) -> dict:
    cfg = ctx.cfg
    w = cfg.sampler.example_ctx_len
    n_rows = ctx.wh.scalar("SELECT count(*) FROM tokens WHERE corpus_fp = ?", [ctx.corpus_fp()])
    n_tokens = n_rows * (cfg.corpus.ctx_len - 1)
    sql = f"""
        WITH a AS (SELECT * FROM activations WHERE layer = $layer AND latent BETWEEN $first AND $last),
        per AS (
            SELECT latent, count(*) AS n_firing,
                   count(DISTINCT (row_id, (pos - 1) // {w})) AS n_windows,
                   max(value) AS max_activation, avg(value) AS mean_activation,
                   quantile_cont(value, [0.1, 0.25, 0.5, 0.75, 0.9, 0.99]) AS quantile_edges,
                   any_value(activations_fp) AS activations_fp
            FROM a GROUP BY latent
        )
        SELECT $layer AS layer, l.latent, coalesce(n_firing, 0) AS n_firing, coalesce(n_windows, 0) AS n_windows,
               coalesce(n_firing, 0) / {max(n_tokens, 1)}::DOUBLE AS density,
               max_activation::REAL AS max_activation, mean_activation::REAL AS mean_activation,
               quantile_edges::REAL[] AS quantile_edges,
               CASE WHEN n_firing IS NULL THEN 'dead'
                    WHEN n_windows < {cfg.sampler.min_examples} THEN 'too_rare' ELSE 'alive' END AS status,
               coalesce(activations_fp, (SELECT any_value(activations_fp) FROM a), '') AS activations_fp
        FROM range($first, $last + 1) l(latent) LEFT JOIN per USING (latent)
        ORDER BY latent
    """
    with ctx.wh.write() as con:
        ctx.wh.delete_partition(con, "latent_stats", layer, first, last)
        con.execute("INSERT INTO latent_stats BY NAME " + sql, {"layer": layer, "first": first, "last": last})
        counts = con.execute("SELECT status, count(*) FROM latent_stats WHERE layer = ? AND latent BETWEEN ? AND ? "
                             "GROUP BY status", [layer, first, last]).fetchall()
        dens = con.execute("SELECT density FROM latent_stats WHERE layer = ? AND latent BETWEEN ? AND ? ORDER BY latent",
                           [layer, first, last]).fetchall()
    return {"status_counts": dict(counts), "densities": [d[0] for d in dens]}


# --- examples -----------------------------------------------------------------------------------
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


# --- explanations -------------------------------------------------------------------------------
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


def _prompt_counter(llm: LLMConfig, workdir: Path) -> Callable:
    """Prompt length in tokens with the LLM's own chat template when it is local, else ~4 chars/token."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve_model(llm.model, workdir))
    except Exception:  # remote-only model names: estimate
        return lambda req: sum(len(m["content"]) for m in req.messages) // 4 + len(req.prefill) // 4 + 16

    def count(req) -> int:
        text = tok.apply_chat_template(list(req.messages), add_generation_prompt=True, tokenize=False)
        return len(tok(text + req.prefill, add_special_tokens=False)["input_ids"])

    return count


def _rate(n: int, secs: float) -> float:
    return round(n / secs, 3) if secs > 0 else 0.0


def run_explanations(ctx: Context, client, layer: str, first: int, last: int) -> dict:
    cfg = ctx.cfg
    efp = fingerprint("explainer", explainer_spec(cfg, ctx.workdir))
    exs = load_examples(ctx, layer, first, last, ["train"])
    sfp = ctx.wh.scalar("SELECT any_value(sampler_fp) FROM latent_selection WHERE layer = ? AND latent BETWEEN ? AND ?",
                        [layer, first, last]) or ""
    maxes = dict(ctx.wh.query("SELECT latent, max_activation FROM latent_stats WHERE layer = ? AND latent BETWEEN ? AND ?",
                              [layer, first, last]).iter_rows())
    latents = sorted(exs)
    count = _prompt_counter(cfg.explainer.llm, ctx.workdir)
    budget = cfg.explainer.llm.max_model_len - cfg.explainer.max_tokens - 8
    reqs = [explainers.fit_explainer_request(cfg.explainer, exs[lat]["train"], float(maxes.get(lat) or 0.0),
                                             count, budget)[0] for lat in latents]
    t0 = time.perf_counter()
    responses = asyncio.run(client.generate(reqs)) if reqs else []
    secs = time.perf_counter() - t0
    rows = []
    for lat, req, resp in zip(latents, reqs, responses):
        text = explainers.parse_explanation(resp.text, req.prefill) if resp.ok else None
        status = "llm_error" if not resp.ok else ("ok" if text else "parse_error")
        rows.append({"layer": layer, "latent": lat, "explainer_fp": efp, "status": status, "explanation": text,
                     "raw_text": req.prefill + resp.text, "error": resp.error, "prompt_tokens": resp.prompt_tokens,
                     "cached_tokens": resp.cached_tokens, "completion_tokens": resp.completion_tokens,
                     "latency_s": resp.latency_s, "sampler_fp": sfp})
    frame = pl.DataFrame(rows, schema_overrides={"explanation": pl.Utf8, "error": pl.Utf8}) if rows else pl.DataFrame()
    ctx.wh.replace_partition(layer, first, last, {"explanations": frame}, where={"explanations": {"explainer_fp": efp}},
                             fingerprints={efp: ("explainer", explainer_spec(cfg, ctx.workdir))})
    st = frame["status"].value_counts().rows() if rows else []
    return {"explainer_fp": efp, "status": dict(st), "latents": len(rows), "seconds": round(secs, 2),
            "latents_per_s": _rate(len(rows), secs),
            "prompt_tokens": int(sum(r["prompt_tokens"] for r in rows)),
            "completion_tokens": int(sum(r["completion_tokens"] for r in rows)),
            "sample": [(r["latent"], r["explanation"]) for r in rows[:5]]}


# --- scores -------------------------------------------------------------------------------------
def run_scores(ctx: Context, client, layer: str, first: int, last: int) -> dict:
    cfg = ctx.cfg
    efp = fingerprint("explainer", explainer_spec(cfg, ctx.workdir))
    expl = ctx.wh.query("SELECT latent, explanation FROM explanations WHERE layer = ? AND latent BETWEEN ? AND ? "
                        "AND explainer_fp = ? AND status = 'ok' ORDER BY latent", [layer, first, last, efp])
    samp = ctx.wh.scalar("SELECT any_value(sampler_fp) FROM examples WHERE layer = ? AND latent BETWEEN ? AND ?",
                         [layer, first, last]) or ""
    exs = load_examples(ctx, layer, first, last, ["test", "non_activating"])
    jobs = [scorers.ScoreJob(f"{layer}/{lat}", text, exs.get(lat, {}).get("test", []),
                             exs.get(lat, {}).get("non_activating", []))
            for lat, text in expl.iter_rows()]
    item_rows, score_rows, fps = [], [], {}
    t0 = time.perf_counter()
    for kind in cfg.scorer.scorers:
        sfp = fingerprint("scorer", scorer_spec(cfg, ctx.workdir, kind))
        fps[sfp] = ("scorer", scorer_spec(cfg, ctx.workdir, kind))
        results = asyncio.run(scorers.score_latents(client, kind, jobs, cfg.scorer)) if jobs else []
        for res in results:
            lat = int(res.key.rsplit("/", 1)[1])
            m = metrics.classification_metrics([i.truth for i in res.items], [i.prediction for i in res.items],
                                               [i.probability for i in res.items])
            for i in res.items:
                item_rows.append({"layer": layer, "latent": lat, "explainer_fp": efp, "scorer": kind, "scorer_fp": sfp,
                                  "example_id": i.example_id, "batch_index": i.batch_index, "quantile": i.quantile,
                                  "activating": i.activating, "truth": i.truth, "prediction": i.prediction,
                                  "probability": i.probability})
            ok = m["n"] - m["n_failed"] > 0 and m["balanced_accuracy"] is not None
            score_rows.append({"layer": layer, "latent": lat, "explainer_fp": efp, "scorer": kind, "scorer_fp": sfp,
                               "sampler_fp": samp, "status": "ok" if ok else "failed", "n": m["n"], "n_failed": m["n_failed"],
                               "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"],
                               "precision": m["precision"], "recall": m["recall"], "f1": m["f1"], "auroc": m["auroc"],
                               "n_batches": res.n_batches, "n_failed_batches": res.n_failed_batches,
                               "failure_reasons": list(res.failure_reasons), "prompt_tokens": res.prompt_tokens,
                               "completion_tokens": res.completion_tokens, "latency_s": res.latency_s})
    secs = time.perf_counter() - t0
    f64 = {k: pl.Float64 for k in ("balanced_accuracy", "accuracy", "precision", "recall", "f1", "auroc", "probability")}
    frames = {
        "score_items": pl.DataFrame(item_rows, schema_overrides={k: v for k, v in f64.items() if k == "probability"}
                                    | {"prediction": pl.Boolean}) if item_rows else pl.DataFrame(),
        "scores": pl.DataFrame(score_rows, schema_overrides={k: v for k, v in f64.items() if k != "probability"}
                               | {"failure_reasons": pl.List(pl.Utf8)}) if score_rows else pl.DataFrame(),
    }
    ctx.wh.replace_partition(layer, first, last, frames,
                             where={t: {"explainer_fp": efp} for t in frames}, fingerprints=fps)
    summary = {}
    for kind in cfg.scorer.scorers:
        vals = [r["balanced_accuracy"] for r in score_rows if r["scorer"] == kind and r["status"] == "ok"]
        aucs = [r["auroc"] for r in score_rows if r["scorer"] == kind and r["auroc"] is not None]
        summary[kind] = {"latents_scored": len(vals),
                         "median_balanced_accuracy": float(np.median(vals)) if vals else None,
                         "median_auroc": float(np.median(aucs)) if aucs else None,
                         "failed_batches": sum(r["n_failed_batches"] for r in score_rows if r["scorer"] == kind)}
    return {"explainer_fp": efp, "latents": len(jobs), "seconds": round(secs, 2),
            "latents_per_s": _rate(len(jobs), secs), "scorers": summary,
            "balanced_accuracies": {k: [r["balanced_accuracy"] for r in score_rows if r["scorer"] == k and r["status"] == "ok"]
                                    for k in cfg.scorer.scorers},
            "prompt_tokens": int(sum(r["prompt_tokens"] or 0 for r in score_rows))}


# --- summary ------------------------------------------------------------------------------------
def partition_summary(ctx: Context) -> pl.DataFrame:
    """One row per (layer, latent range, explainer): latents scored and median balanced accuracies."""
    cfg = ctx.cfg
    ranges = [(k, a, b) for k, (a, b) in zip(cfg.latent_keys(), cfg.latents.ranges())]
    values = ", ".join(f"('{k}', {a}, {b})" for k, a, b in ranges)
    return ctx.wh.query(f"""
        WITH r(latents, first, last) AS (VALUES {values})
        SELECT s.layer, r.latents, s.explainer_fp,
               count(DISTINCT s.latent) FILTER (WHERE s.status = 'ok') AS latents_scored,
               round(median(s.balanced_accuracy) FILTER (WHERE s.scorer = 'detection' AND s.status = 'ok'), 3)
                   AS median_detection_bacc,
               round(median(s.balanced_accuracy) FILTER (WHERE s.scorer = 'fuzzing' AND s.status = 'ok'), 3)
                   AS median_fuzzing_bacc,
               round(median(s.auroc) FILTER (WHERE s.scorer = 'detection'), 3) AS median_detection_auroc,
               round(median(s.auroc) FILTER (WHERE s.scorer = 'fuzzing'), 3) AS median_fuzzing_auroc
        FROM scores s JOIN r ON s.latent BETWEEN r.first AND r.last
        GROUP BY ALL ORDER BY s.layer, r.latents, s.explainer_fp
    """)

