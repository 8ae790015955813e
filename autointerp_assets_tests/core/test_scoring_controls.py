"""The random-explanation control's derangement."""

from __future__ import annotations

from autointerp_assets.core.records import Example
from autointerp_assets.core.scoring import classifier, controls


def test_derangement_never_maps_a_latent_to_itself():
    for n in range(2, 40):
        for seed in range(25):
            p = controls.derangement(n, seed)
            assert sorted(p) == list(range(n))
            assert all(p[i] != i for i in range(n))
    assert controls.derangement(1, 0) == [] and controls.derangement(0, 0) == []
    assert controls.derangement(10, "layers.6:00000-01023") == controls.derangement(10, "layers.6:00000-01023")
    # not always the same cycle: over seeds, latent 0 gets every other latent's explanation
    assert {controls.derangement(5, s)[0] for s in range(200)} == {1, 2, 3, 4}


def test_control_jobs_keep_examples_and_swap_explanations():
    ex = Example(1, ("a",), (1.0,), True, 0)
    jobs = [classifier.ScoreJob(f"l/{i}", f"explanation {i}", [ex], []) for i in (3, 7, 9)]
    donors = controls.donors([3, 7, 9], seed=4)
    assert set(donors) == {3, 7, 9} and all(donors[k] != k for k in donors)
    ctl = controls.control_jobs(jobs, {f"l/{i}": f"explanation {i}" for i in (3, 7, 9)},
                                {f"l/{k}": f"l/{v}" for k, v in donors.items()})
    for job, c in zip(jobs, ctl):
        assert c.key == job.key and c.test == job.test and c.non_activating == job.non_activating
        assert c.explanation == f"explanation {donors[int(job.key[2:])]}" != job.explanation
