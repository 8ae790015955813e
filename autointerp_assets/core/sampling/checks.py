"""Checks over stored examples of a partition (what the asset checks run; usable on any warehouse)."""

from __future__ import annotations

from ..storage import queries


def disjointness(con, layer: str, first: int, last: int) -> dict:
    """Violations of the sampling rules in table ``example_windows`` for (layer, first..last):

    - ``overlapping_windows``: (train, test) pairs of a latent whose windows share a corpus token
      (same row, intersecting [start_pos, start_pos + len)); the rule of ``sampling``;
    - ``shared_peaks``: test windows containing the peak (max-activation token) of a train window;
    - ``shared_negatives``: (train_non_activating, non_activating) pairs of a latent whose windows share a
      corpus token: the explainer's counterexamples must not be the scorers' negatives;
    - ``firing_negatives``: non-activating windows (either split) in which the latent has an activation in
      ``activations``.
    All four are 0 for a correct partition.
    """
    p = {"layer": layer, "first": first, "last": last}
    overlap = con.execute(queries.TRAIN_TEST_OVERLAPS, p).fetchone()[0]
    peaks = con.execute(queries.TRAIN_PEAKS_IN_TEST, p).fetchone()[0]
    shared = con.execute(queries.SHARED_NEGATIVES, p).fetchone()[0]
    firing = con.execute(queries.FIRING_NEGATIVES, p).fetchone()[0]
    return {"overlapping_windows": int(overlap), "shared_peaks": int(peaks), "shared_negatives": int(shared),
            "firing_negatives": int(firing)}
