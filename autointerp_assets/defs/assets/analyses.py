import dagster as dg

from ...core import analyses as an
from ...core.identity import explainer_fp
from ..execution import CLIENT, step_tags
from ..metadata import heatmap_png, plot_md, scatter_png, table_md
from ..resources import ProjectResource
from .latent_vectors import latent_vectors
from .scores import scores


def _round(rows: list[dict]) -> list[dict]:
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if not k.startswith("sae_fp")}
            for r in rows]


@dg.asset(op_tags=step_tags(CLIENT), group_name="analyses", kinds={"duckdb"}, deps=[scores, latent_vectors],
          description="Scorer agreement (Spearman between every pair of scorers per partition, with 95 % intervals; "
                      "view scorer_agreement) and SAE similarity through explanations (best matches by explanation "
                      "embedding vs decoder cosine and how often they agree; views latent_matches, sae_similarity) "
                      "for the active explainer, as tables and plots. Reads every materialized partition.")
def analyses(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    efp = explainer_fp(ctx.cfg)
    agree = an.agreement(ctx.wh, efp)
    md: dict = {"explainer_fp": efp, "agreement_rows": agree.height,
                "scorer_agreement": table_md(_round(agree.drop("explainer_fp").to_dicts()))}
    for (layer, rng, _), values in an.agreement_matrices(agree).items():
        labels = sorted({s for pair in values for s in pair})
        md[f"agreement_{layer}_{rng}"] = plot_md(heatmap_png(labels, values, f"Spearman between scorers, {layer} "
                                                             f"{rng}"), f"agreement {layer} {rng}")
    sim = an.similarity(ctx.wh, efp)
    md["sae_similarity"] = table_md(_round(sim.drop("explainer_fp").to_dicts()))
    m = an.matches(ctx.wh, efp)
    if m.height:
        pts = {name: list(zip(g["explanation_similarity"].to_list(), g["decoder_cosine"].to_list()))
               for name, g in (("best matches agree", m.filter(m["agree"].fill_null(False))),
                               ("disagree", m.filter(~m["agree"].fill_null(False))))}
        md["latent_matches_plot"] = plot_md(scatter_png(pts, "best match on the other side, per latent",
                                                        "explanation cosine", "decoder cosine"), "latent matches")
    return dg.MaterializeResult(metadata=md)
