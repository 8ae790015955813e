"""Readable numbers and terminal output on known values: tables within 100 columns, the latent card, pages."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from autointerp_assets.core import card, display
from autointerp_assets.core.browser import pages, site

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def record(latent: int = 7, explainers: int = 1) -> dict:
    """A dashboard record with known values (the shape core.dashboard.latent_records returns)."""
    toks = [[" The", 0.0], [" quick", 0.0], [" *", 3.5], [" operator", 7.0], [" multiplies", 0.0], ["\n", 0.0]]
    exps = []
    for i in range(explainers):
        exps.append({"explainer_fp": f"explainer-{i:012d}", "explainer": ["project", "brief"][i], "active": i == 0,
                     "model": "smollm2", "status": "ok", "text": f"multiplication operators ({i})", "error": None,
                     "scores": [{"scorer": "detection", "metric": "balanced_accuracy", "value": 0.65 + i / 10,
                                 "status": "ok", "ci": [0.55, 0.75], "control": 0.5, "control_ci": [0.4, 0.6],
                                 "difference": 0.15 + i / 10, "n": 40, "n_failed": 0},
                                {"scorer": "embedding", "metric": "auroc", "value": 0.61, "status": "ok",
                                 "ci": [None, None], "control": None, "control_ci": [None, None],
                                 "difference": None, "n": 40, "n_failed": 0}]})
    ex = [{"split": "train", "example_id": j, "quantile": j % 2, "max": 7.0 - j, "text": "", "tokens": toks,
           "source": None, "neighbour": None, "similarity": None} for j in range(4)]
    neg = [{"split": "non_activating", "example_id": 99, "quantile": 0, "max": 0.0, "text": "",
            "tokens": [[" plain", 0.0], [" text", 0.0]], "source": "neighbours", "neighbour": 3, "similarity": 0.4}]
    return {"layer": "layers.6", "latent": latent, "status": "alive", "selection": "selected", "n_firing": 1234,
            "n_windows": 321, "n_tokens": 131072, "density": 0.0094, "max_activation": 7.0, "mean_activation": 2.1,
            "histogram": [50, 30, 20, 10, 5, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 1],
            "flags": {"positional": False, "single_token": True, "unigram": False}, "position_u": 0.01,
            "top_token": " operator", "top_token_share": 0.62, "tokens_for_mass": 3, "explanations": exps,
            "examples": ex, "non_activating": neg,
            "neighbours": [{"latent": 3, "similarity": 0.41, "kind": "decoder"},
                           {"latent": 9, "similarity": 0.2, "kind": "decoder"}]}


def test_numbers_read_as_people_expect():
    assert display.number(0.5375000000000001) == "0.538"
    assert display.number(-5.55e-17) == "0" and display.number(None) == "–"
    assert display.number(1234567) == "1,234,567" and display.number(2.5e-05) == "2.5e-05"
    assert display.rounded({"a": 0.5375000000000001, "b": [-5.55e-17, 123456.789], "c": "x", "d": 3}) == \
        {"a": 0.5375, "b": [0.0, 123457.0], "c": "x", "d": 3}


def test_wide_results_fold_within_100_columns_and_formats_round_trip():
    frame = pl.DataFrame({"layer": ["layers.6", "layers.15"], "latents": ["00000-01023", "01024-02047"],
                          **{f"median_detection_metric_{i}": [0.5375000000000001, -5.55e-17] for i in range(8)},
                          "note": ["x" * 200, "short"]})
    text = display.render(frame, "table")
    lines = text.splitlines()
    assert max(len(x) for x in lines) <= 100
    assert sum(1 for x in lines if x.startswith("layer ")) >= 2  # folded into blocks, keys repeated
    assert "0.538" in text and "e-17" not in text and "…" in text
    assert json.loads(display.render(frame, "json"))[0]["median_detection_metric_0"] == 0.5375000000000001
    assert display.render(frame, "csv").splitlines()[0].startswith("layer,latents,")
    md = display.render(frame, "markdown").splitlines()
    assert md[0].startswith("| layer | latents |") and md[1].startswith("|---|---|---:|")
    with pytest.raises(ValueError, match="unknown format"):
        display.render(frame, "xml")


def test_card_fits_100_columns_with_plain_marks_and_colour():
    rec = record(explainers=2)
    plain = card.render_card(rec, colour=False, first=0, last=1023)
    lines = plain.splitlines()
    assert max(len(x) for x in lines) <= 100, [x for x in lines if len(x) > 100]
    assert lines[0] == "layers.6 · latent 7 · partition 00000-01023 · alive (selected)"
    assert "<< * operator>>" in plain  # one span over adjacent firing tokens
    assert '"multiplication operators (0)"' in plain and '"multiplication operators (1)"' in plain
    assert "* project" in plain and "  brief" in plain  # the active explainer is starred
    det = next(x for x in lines if x.strip().startswith("detection"))
    assert "0.650" in det and "[0.55, 0.75]" in det and "0.500 [0.40, 0.60]" in det and "+0.150" in det
    assert "single-token" in plain and "neighbours by decoder cosine: 3 (0.41), 9 (0.20)" in plain
    assert "neighbours of 3" in plain and "(density 0.940 %)" in plain
    colour = card.render_card(rec, colour=True)
    assert "\x1b[48;5;" in colour and "<<" not in colour
    assert max(len(ANSI.sub("", x)) for x in colour.splitlines()) <= 100


def test_long_examples_are_cut_around_the_peak():
    toks = [[f" w{i}", 0.0] for i in range(60)]
    toks[50] = [" PEAK", 5.0]
    out = card.highlight(toks, colour=False, room=40)
    assert "<< PEAK>>" in out and out.startswith("…") and len(out) <= 40


def test_latent_page_and_index_rows(tmp_path):
    recs = [record(7, explainers=2), {**record(8), "explanations": [], "examples": [], "non_activating": []}]
    out = site.write_partition(tmp_path, recs, "layers.6", 0, 1023)
    assert out == {**out, "latents": 2, "pages": 1, "index_rows": 3}
    page = (tmp_path / "layers.6" / "00000-01023" / "latents" / "7.html").read_text()
    assert 'data-a="7"' in page and 'title="&#x27; operator&#x27;: 7"' in page  # activation on hover
    assert "multiplication operators (0)" in page and 'data-value="0.65"' in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: no external resource
    data = json.loads(re.search(r'id="latent-data">(.*?)</script>', page).group(1))
    assert data["latent"] == 7 and data["explanations"][1]["explainer"] == "brief"
    idx = json.loads((tmp_path / "layers.6" / "00000-01023" / "partition.json").read_text())
    cols = {c: i for i, c in enumerate(idx["columns"])}
    assert [r[cols["latent"]] for r in idx["rows"]] == [7, 7, 8]
    assert idx["rows"][0][cols["scores"]] == {"detection": 0.65, "embedding": 0.61}
    assert idx["rows"][0][cols["controls"]] == {"detection": 0.5}
    assert idx["rows"][2][cols["explainer"]] is None and not idx["rows"][2][cols["page"]]
    assert idx["scorers"] == ["detection", "embedding"]
    whole = site.write_site(tmp_path)
    assert whole == {"partitions": 1, "latents": 2, "rows": 3}
    compare = (tmp_path / "compare.html").read_text()
    assert "b = brief" in compare and "+0.100" in compare  # paired difference of the two explainers
    assert (tmp_path / "static" / "browser.js").exists() and (tmp_path / "index.html").exists()
    assert pages.esc('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"


def test_companion_explainers_are_named_for_people(tmp_path):
    """The card, the pages and the exports name every explainer stored beside the active one: a baseline and an
    output-centric explainer by their kind (their fingerprints as the stages compute them), not by a hash."""
    from autointerp_assets.core.config import load_config
    from autointerp_assets.core.identity import explainer_fp
    from autointerp_assets.core.registry import explainer_names
    from autointerp_assets.core.stages import Context, baseline_contexts
    from autointerp_assets_tests.conftest import write_config

    path = write_config(tmp_path / "project.yaml", {"database": str(tmp_path / "w.duckdb"),
                                                     "baseline_explainers": ["top_tokens", "logit_lens"],
                                                     "output_explainers": ["token_change"]})
    names, active = explainer_names(path)
    cfg = load_config(path)
    made = {b.cfg.explainer.kind: explainer_fp(b.cfg) for b in baseline_contexts(Context.of(cfg))}
    assert {names[fp] for fp in made.values()} == {"baseline top_tokens", "baseline logit_lens",
                                                   "output-centric token_change"}
    assert names[made["token_change"]] == "output-centric token_change" and active not in made.values()
    assert names[active] == "project"
