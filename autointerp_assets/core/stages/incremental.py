"""Incremental, monotone LLM stages: send only the work that is missing or failed, never lose a good result.

The units of work are latents (``explanations``) and (latent, scorer) pairs (``scores``), for the current
explainer fingerprint. Three rules:

- **Plan** (:func:`done_latents`, :func:`done_scores`): a unit is done when it has an ``ok`` row (for an
  explanation: made from the current examples; for a score: ``ok`` or ``undefined``, by the current scorer
  fingerprint, at least as new as the ok explanation it scores). A run sends only the units that are not done, unless
  it is forced (``autointerp run --force`` / the run tag ``autointerp/force``), which re-sends all of them.
- **Merge** (:func:`..storage.monotone.merge`): a new ``ok`` row replaces the unit's row (and its item rows); a new failure
  replaces a failure, but never an ``ok`` row: the good row stays and the failure is kept beside it
  (``attempts``, ``failed_attempts``, ``last_error``, ``last_failed_at``). A unit that was not sent (the
  budget) is never counted as an attempt.
- **Verdict** (:func:`verdict`): a stage whose units failed beyond ``failures.max_share``, or that met a fatal
  server error, fails its step with one line (after its results and failures are committed).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

from ..errors import StageFailed
from ..storage import queries
from ..storage.monotone import DONE


def done_latents(wh, layer: str, first: int, last: int, efp: str, sampler_fp: str | None = None) -> set[int]:
    """Latents of the range with an ok explanation by this explainer (made from the examples of
    ``sampler_fp`` when given: an explanation of other examples is redone, never kept as done)."""
    return set(wh.query(queries.RANGE_DONE_EXPLANATIONS, [layer, first, last, efp, sampler_fp, sampler_fp])["latent"].to_list())


def done_scores(wh, layer: str, first: int, last: int, efp: str,
                scorers: Sequence[str] | Mapping[str, str]) -> set[tuple[int, str]]:
    """(latent, scorer) pairs with a done score (ok, or undefined: answered, the metric has no value) at least as
    new as the ok explanation it scores. ``scorers``: names, or {name: current scorer fingerprint}, then a score
    by another scorer fingerprint (the scorer's config changed) is not done."""
    if not scorers:
        return set()
    fps = dict(scorers) if isinstance(scorers, Mapping) else {}
    rows = wh.query(queries.RANGE_DONE_SCORES, [layer, first, last, efp, list(DONE), list(scorers)])
    return {(lat, name) for lat, name, sfp in rows.iter_rows() if fps.get(name, sfp) == sfp}


def failed_units(con, table: str, layer: str, efp: str, latents: Sequence[int],
                 scorers: Sequence[str] | None = None) -> list[str]:
    """The reason of every unit of ``latents`` (x ``scorers`` for scores) whose row is a failure now (not a
    budget stop): the partition's state, for :func:`verdict`."""
    if not latents:
        return []
    if table == "explanations":
        rows = con.execute(queries.FAILED_EXPLANATION_REASONS, [layer, efp, list(latents)]).fetchall()
    else:
        rows = con.execute(queries.FAILED_SCORE_REASONS, [layer, efp, list(latents), list(scorers or [])]).fetchall()
    return [r[0] for r in rows]


def verdict(stage: str, where: str, *, sent: int, server_failures: Sequence[str], units: int,
            failures: Sequence[str], max_share: float, fatal: str | None = None, unit: str = "latents",
            summary: dict | None = None) -> None:
    """Raise :class:`StageFailed` (one line) when

    - a fatal server error (refused connection, key, model) stopped the stage;
    - more than ``max_share`` of the ``sent`` units failed with server errors left after the retries (5xx,
      429, timeouts, malformed bodies: ``server_failures``, one reason each) — the server is unhealthy;
    - more than ``max_share`` of the partition's ``units`` are failures now (``failures``: one reason per
      failed unit, this run's and earlier ones) — answers or requests that do not work.
    """
    kept = "earlier good results are kept, and the next run re-sends only what is missing or failed"
    if fatal:
        raise StageFailed(f"{stage} of {where}: {fatal}; stopped at once ({sent} {unit} were to be sent; {kept})",
                          summary)
    if sent and server_failures and len(server_failures) / sent > max_share:
        top, n = Counter(_kind(r) for r in server_failures).most_common(1)[0]
        raise StageFailed(f"{stage} of {where}: {len(server_failures)} of {sent} {unit} sent failed after retries "
                          f"(more than failures.max_share = {max_share:g}), {n}x: {top}; check the LLM server (its log, "
                          f"load, llm.timeout_s) and re-run: {kept}", summary)
    if units and failures and len(failures) / units > max_share:
        top, n = Counter(_kind(r) for r in failures).most_common(1)[0]
        raise StageFailed(f"{stage} of {where}: {len(failures)} of {units} {unit} are failures (more than "
                          f"failures.max_share = {max_share:g}), {n}x: {top}; fix the cause (the model's answers, "
                          f"max_tokens, the prompts' length) and re-run: {kept}", summary)


def _kind(reason: str | None) -> str:
    text = " ".join((reason or "unknown").split())
    return text if len(text) <= 160 else text[:157] + "..."
