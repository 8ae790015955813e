"""Sampling: which windows of the corpus show a latent -- train / test (disjoint by construction) and
non-activating windows -- and which latents are explained at all.

- :mod:`.rules`: the rules (units, ranking, quantile bins, train / test / random-negative draws), numpy + DuckDB;
- :mod:`.builder`: the driver that builds one partition's rows (``build_examples``) and its table frames;
- :mod:`.neighbours` / :mod:`.embeddings`: neighbour and embedding hard negatives;
- :mod:`.checks`: the rules checked on a stored partition;
- :mod:`.readback`: a partition's windows read back with their tokens and activations, by columns.
"""

from . import embeddings, neighbours
from .builder import THREADS, Built, build_examples, neighbours_frame, selection_frame, windows_frame
from .checks import disjointness
from .readback import Windows, read_windows
from .rules import windows_per_row

__all__ = ["THREADS", "Built", "Windows", "build_examples", "disjointness", "embeddings", "neighbours",
           "neighbours_frame", "read_windows", "selection_frame", "windows_frame", "windows_per_row"]
