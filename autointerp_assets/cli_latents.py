"""The CLI commands for looking at latents (registered by ``cli.py``):

    autointerp latent LAYER N [--explainer NAME]   a latent's card: explanations, scores vs control, examples
    autointerp browse [--port P]                    serve the latent browser's pages on 127.0.0.1
    autointerp search "closing brackets" [-k 10]    latents ranked by their explanation's meaning
    autointerp export DIR --to parquet|neuronpedia|delphi
"""

from __future__ import annotations

import sys


def add_parsers(sub) -> None:
    p = sub.add_parser("latent", help="one latent's card: explanations, scores vs control, histogram, examples")
    p.add_argument("layer", help="hookpoint, e.g. layers.6")
    p.add_argument("latent", type=int)
    p.add_argument("--explainer", help="only this explainer (registry name or fingerprint)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="highlight firing tokens with colour (auto: when the terminal shows it; else << >>)")
    p.add_argument("--examples", type=int, default=2, help="examples shown per quantile (default 2)")
    b = sub.add_parser("browse", help="serve the latent browser (pages of asset latent_pages) on 127.0.0.1")
    b.add_argument("--port", type=int, help="default: browser.port of the config (8700)")
    b.add_argument("--host", help="default: browser.host of the config (127.0.0.1)")
    b.add_argument("--no-search", action="store_true", help="do not load the sentence model (no semantic search)")
    s = sub.add_parser("search", help="latents whose explanations are nearest in meaning to a query")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=10, help="results (default 10)")
    s.add_argument("--layer", help="only this hookpoint")
    s.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    e = sub.add_parser("export", help="explanations, scores and examples to Parquet, Neuronpedia or delphi files")
    e.add_argument("dest", help="output directory")
    e.add_argument("--to", choices=("parquet", "neuronpedia", "delphi"), default="parquet")
    e.add_argument("--layer", help="only this hookpoint")
    e.add_argument("--explainer", help="neuronpedia / delphi: the explainer to export (registry name or "
                   "fingerprint; default: the active one)")
    e.add_argument("--model-id", help="neuronpedia: the model id (default: the subject model's name)")
    e.add_argument("--source-set", default="autointerp-res", help="neuronpedia: source set name (default %(default)s)")


COMMANDS = ("latent", "browse", "search", "export")


def run(args) -> int:
    return {"latent": cmd_latent, "browse": cmd_browse, "search": cmd_search, "export": cmd_export}[args.cmd](args)


def _config_file():
    import os

    return os.environ.get("AUTOINTERP_CONFIG") or None


def _quiet_models() -> None:
    """No progress bars while a sentence model loads (the command's output is the table)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _explainer_fp(wanted: str | None, names: dict[str, str]) -> str | None:
    """A registry name or a fingerprint (prefix) -> fingerprint; None for None."""
    if not wanted:
        return None
    by_name = {n: fp for fp, n in names.items()}
    if wanted in by_name:
        return by_name[wanted]
    return wanted


def cmd_latent(args) -> int:
    from .core import card, dashboard
    from .core.config import load_config
    from .core.registry import explainer_names
    from .core.stages.context import Context
    from .core.stages.corpus import ensure_vocabulary

    cfg = load_config()
    if args.layer not in cfg.layer_keys():
        print(f"autointerp latent: unknown layer {args.layer!r}: use one of {', '.join(cfg.layer_keys())}",
              file=sys.stderr)
        return 2
    rng = next(((a, b) for a, b in cfg.latents.ranges() if a <= args.latent <= b), None)
    if rng is None:
        lo, hi = cfg.latents.ranges()[0][0], cfg.latents.ranges()[-1][1]
        print(f"autointerp latent: latent {args.latent} is outside the configured latents {lo}..{hi}", file=sys.stderr)
        return 2
    ctx = Context.of(cfg)
    names, active = explainer_names(_config_file())
    ensure_vocabulary(ctx)
    data = dashboard.read_range(ctx.wh, args.layer, args.latent, args.latent, ctx.corpus_fp())
    if data["latents"].is_empty():
        print(f"autointerp latent: no statistics for {args.layer} latent {args.latent} yet: materialize the "
              f"partition {rng[0]:05d}-{rng[1]:05d}|{args.layer} (autointerp run)", file=sys.stderr)
        return 1
    if data["neighbours"].is_empty():  # decoder neighbours are searched within the latent's partition
        nb = dashboard.decoder_neighbours_of(data["coder_path"], rng[0], rng[1], [args.latent],
                                             cfg.browser.n_neighbours)
        if nb is not None:
            data["neighbours"] = nb
    rec = dashboard.latent_records(data, names, active, n_neighbours=cfg.browser.n_neighbours)[0]
    want = _explainer_fp(args.explainer, names)
    if want:
        rec["explanations"] = [e for e in rec["explanations"] if e["explainer_fp"].startswith(want)
                               or e["explainer"] == args.explainer]
        if not rec["explanations"]:
            print(f"autointerp latent: no explanation of {args.layer} latent {args.latent} by {args.explainer!r} "
                  f"(explainers: {', '.join(sorted(set(names.values())))})", file=sys.stderr)
            return 1
    print(card.render_card(rec, card.use_colour(args.color), rng[0], rng[1], per_quantile=args.examples))
    return 0


def cmd_browse(args) -> int:
    from .core.browser.server import make_server
    from .core.config import load_config
    from .core.search import SiteIndex

    cfg = load_config()
    _quiet_models()
    host, port = args.host or cfg.browser.host, args.port or cfg.browser.port
    try:
        server = make_server(cfg.browser_dir, host, port, None if args.no_search else
                             SiteIndex(cfg.browser_dir, cfg.search_model))
    except (FileNotFoundError, OSError) as e:
        print(f"autointerp browse: {e}", file=sys.stderr)
        return 1
    print(f"latent browser: http://{host}:{port}/  (pages in {cfg.browser_dir}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_search(args) -> int:
    import polars as pl

    from .core import display, search
    from .core.config import load_config
    from .core.registry import explainer_names
    from .core.storage import Warehouse

    cfg = load_config()
    names, _ = explainer_names(_config_file())
    _quiet_models()
    res = search.search(Warehouse.of(cfg), cfg.search_model, args.query, args.k, args.layer)
    if res.is_empty():
        print("autointerp search: no explanations yet: run the pipeline (autointerp run)", file=sys.stderr)
        return 1
    res = res.with_columns(explainer=pl.col("explainer_fp").replace_strict(names, default=pl.col("explainer_fp")))
    cols = ["rank", "similarity", "layer", "latent", "explainer", "explanation"]
    if args.format == "table":
        print(f'latents whose explanation is nearest to "{args.query}" ({cfg.search_model}, cosine):')
        res = res.with_columns(pl.col("similarity").round(3))
    print(display.render(res.select(cols), args.format))
    return 0


def cmd_export(args) -> int:
    from .core import export
    from .core.config import load_config
    from .core.registry import explainer_names
    from .core.stages.context import Context
    from .core.stages.corpus import ensure_vocabulary

    cfg = load_config()
    ctx = Context.of(cfg)
    names, active = explainer_names(_config_file())
    if args.to == "parquet":
        out = export.to_parquet(ctx.wh, args.dest, args.layer)
    else:
        ensure_vocabulary(ctx)
        efp = _explainer_fp(args.explainer, names) or active
        layers = [args.layer] if args.layer else list(cfg.layer_keys())
        if args.to == "neuronpedia":
            out = export.to_neuronpedia(ctx.wh, args.dest, layers, efp, ctx.corpus_fp(),
                                        model_id=args.model_id or cfg.subject_model, source_set=args.source_set,
                                        explainer_name=names.get(efp, efp))
        else:
            out = export.to_delphi(ctx.wh, args.dest, layers, efp, ctx.corpus_fp())
    print(f"exported to {args.dest} ({args.to}): " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                                                            for k, v in out.items()))
    return 0
