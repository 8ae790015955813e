"""Checks over stored examples of a partition (what the asset checks run; usable on any warehouse)."""

from __future__ import annotations


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
    part = "layer = $layer AND latent BETWEEN $first AND $last"
    overlap = con.execute(f"""
        WITH e AS (SELECT latent, split, row_id, start_pos, start_pos + length AS stop
                   FROM example_windows WHERE {part})
        SELECT count(*) FROM e a JOIN e b ON a.latent = b.latent AND a.row_id = b.row_id
            AND a.start_pos < b.stop AND b.start_pos < a.stop
        WHERE a.split = 'train' AND b.split = 'test'""", p).fetchone()[0]
    peaks = con.execute(f"""
        WITH e AS (SELECT latent, split, row_id, start_pos, start_pos + len(token_ids) AS stop,
                          start_pos + list_position(acts, list_max(acts)) - 1 AS peak
                   FROM examples WHERE {part} AND split IN ('train', 'test'))
        SELECT count(*) FROM e a JOIN e b ON a.latent = b.latent AND a.row_id = b.row_id
            AND a.peak >= b.start_pos AND a.peak < b.stop
        WHERE a.split = 'train' AND b.split = 'test'""", p).fetchone()[0]
    shared = con.execute(f"""
        WITH e AS (SELECT latent, split, row_id, start_pos, start_pos + length AS stop
                   FROM example_windows WHERE {part} AND split IN ('non_activating', 'train_non_activating'))
        SELECT count(*) FROM e a JOIN e b ON a.latent = b.latent AND a.row_id = b.row_id
            AND a.start_pos < b.stop AND b.start_pos < a.stop
        WHERE a.split = 'train_non_activating' AND b.split = 'non_activating'""", p).fetchone()[0]
    firing = con.execute(f"""
        SELECT count(DISTINCT (e.latent, e.example_id)) FROM example_windows e JOIN activations a
            ON a.layer = e.layer AND a.latent = e.latent AND a.row_id = e.row_id
            AND a.pos >= e.start_pos AND a.pos < e.start_pos + e.length
        WHERE e.split IN ('non_activating', 'train_non_activating') AND e.layer = $layer AND e.latent BETWEEN $first AND $last""", p).fetchone()[0]
    return {"overlapping_windows": int(overlap), "shared_peaks": int(peaks), "shared_negatives": int(shared),
            "firing_negatives": int(firing)}
