"""Stage latent_pages: the latent browser's static pages of one partition, then the cross-partition pages.

One short read of the partition (``dashboard.read_range``) and one short write (its explanation embeddings,
for search); the HTML is written after both, with no warehouse connection open, so the pipeline's
writers are never held up by the pages. The token strings come from ``vocabulary`` (written once for a
warehouse made before it existed).
"""

from __future__ import annotations

import time

from .. import dashboard, search
from ..browser import site
from .context import Context
from .corpus import ensure_vocabulary


def run_latent_pages(ctx: Context, layer: str, first: int, last: int, names: dict[str, str] | None = None,
                     active_fp: str | None = None) -> dict:
    cfg = ctx.cfg
    t0 = time.perf_counter()
    ensure_vocabulary(ctx)
    data = dashboard.read_range(ctx.wh, layer, first, last, ctx.corpus_fp())
    t_read = time.perf_counter() - t0
    records = dashboard.latent_records(data, names, active_fp, n_neighbours=cfg.browser.n_neighbours,
                                       first=first, last=last)
    t1 = time.perf_counter()
    emb = search.partition_embeddings(ctx.wh, cfg.search_model, layer, first, last)
    ctx.wh.replace_partition(layer, first, last, {"explanation_embeddings": emb})
    t_embed = time.perf_counter() - t1
    root = cfg.browser_dir
    search.save_npz(site.partition_dir(root, layer, first, last) / "search.npz", emb)
    part = site.write_partition(root, records, layer, first, last,
                                {"note": f"explainers: {', '.join(sorted(set((names or {}).values()))) or '–'}"})
    whole = site.write_site(root)
    secs = time.perf_counter() - t0
    ctx.log(f"latent pages {layer} {first}-{last}: {part['pages']} latent pages, {part['index_rows']} index rows "
            f"in {secs:.1f}s (read {t_read:.1f}s, embeddings {t_embed:.1f}s) -> {part['dir']}")
    return {"latents": part["latents"], "latent_pages": part["pages"], "index_rows": part["index_rows"],
            "explanations_embedded": emb.height, "site_partitions": whole["partitions"],
            "site_latents": whole["latents"], "dir": part["dir"], "root": str(root),
            "seconds": round(secs, 2), "read_seconds": round(t_read, 2), "embed_seconds": round(t_embed, 2)}
