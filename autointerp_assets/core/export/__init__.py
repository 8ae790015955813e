"""Exports of the warehouse for other tools (``autointerp export DIR --to ...``):

- ``parquet``: one directory per table (and the ``activations`` / ``example_text`` views), hive-partitioned
  by ``layer`` (``<table>/layer=layers.6/data_0.parquet``); tables without a layer are one file.
- ``neuronpedia``: Neuronpedia's export layout (what its importer reads): ``<model>/<source>/`` with
  ``model``/``release``/``sourceset``/``source.jsonl`` and gzipped JSONL batches of ``features``,
  ``activations`` and ``explanations`` whose fields are the columns of its database tables.
- ``delphi``: delphi's result files, ``explanations/<layer>_latent<N>.txt`` (a JSON string) and
  ``scores/<detection|fuzz>/<layer>_latent<N>.txt`` (a JSON list of per-example classifier outputs), plus
  ``log/hookpoint_firing_counts.pt`` and ``run_config.json``, so delphi's analysis code reads them.
"""

from .delphi import read_delphi, to_delphi
from .neuronpedia import read_neuronpedia, to_neuronpedia
from .parquet import to_parquet

__all__ = ["read_delphi", "read_neuronpedia", "to_delphi", "to_neuronpedia", "to_parquet"]
