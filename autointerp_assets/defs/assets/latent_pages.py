import dagster as dg

from ...core.registry import explainer_names
from ...core.stages.latent_pages import run_latent_pages
from ..execution import CLIENT, step_tags
from ..partitions import PARTITIONS, bounds
from ..resources import ProjectResource
from .scores import scores


@dg.asset(group_name="browser", kinds={"html", "duckdb"}, partitions_def=PARTITIONS, deps=[scores],
          op_tags=step_tags(CLIENT),
          description="The latent browser's static pages of the partition (index, one page per latent, explainer "
                      "comparison) and the cross-partition index; open them from `open_in_browser` while "
                      "`autointerp browse` serves the site, or as files. Also stores explanation embeddings (search).")
def latent_pages(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    layer, first, last = bounds(context.partition_key)
    names, active = explainer_names(project.config_path or None)
    out = run_latent_pages(ctx, layer, first, last, names, active)
    rel = f"{layer}/{first:05d}-{last:05d}/index.html"
    url = ctx.cfg.browser_url
    return dg.MaterializeResult(metadata={
        "open_in_browser": dg.MetadataValue.url(f"{url}/{rel}"),
        "all_partitions": dg.MetadataValue.url(f"{url}/index.html"),
        "serve_with": dg.MetadataValue.text(f"autointerp browse  (serves {out['root']} on {url})"),
        "pages_dir": dg.MetadataValue.path(out["dir"]),
        **{k: out[k] for k in ("latents", "latent_pages", "index_rows", "explanations_embedded", "site_partitions",
                               "seconds")}})
