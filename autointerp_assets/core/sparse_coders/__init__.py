"""Sparse coders: one encoder interface over every checkpoint format, plus TopK training.

- ``base``: the ``SparseCoder`` interface (``encode(x) -> (values, indices)``, ``hook_input``), errors;
- ``sparsify_format`` / ``saelens_format`` / ``gemmascope_format``: one adapter per format;
- ``loading``: source (local dir or ``hf:<repo>``), per-hookpoint directory, format detection;
- ``training``: TopK SAEs for the offline default (saved in sparsify layout).
"""

from .base import CoderInfo, LinearCoder, SparseCoder, SparseCoderError, dense_to_sparse
from .loading import (FORMATS, checkpoint_dir, coder_info, detect_format, load_dir, load_sparse_coder,
                      resolve_source, subdir)
from .training import train_topk_sae

__all__ = ["FORMATS", "CoderInfo", "LinearCoder", "SparseCoder", "SparseCoderError", "checkpoint_dir",
           "coder_info", "dense_to_sparse", "detect_format", "load_dir", "load_sparse_coder", "resolve_source",
           "subdir", "train_topk_sae"]
