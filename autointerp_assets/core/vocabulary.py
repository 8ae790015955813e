"""Token strings: what each token id of a tokenizer reads as, stored once per tokenizer in the warehouse.

Table ``vocabulary`` holds, per tokenizer fingerprint, every token id with its decoded text (``token``:
what a reader sees, e.g. ``" the"``) and its raw vocabulary piece (``piece``, e.g. ``"Ġthe"``); table
``corpora`` says which tokenizer made each corpus. With both, SQL alone turns token ids into text
(view ``example_text``). The tokenizer fingerprint is the subject model's identity (name + digest of
its tokenizer and weight files), so two corpora made with the same model share one vocabulary.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import polars as pl

from .identity import tokenizer_fp
from .storage import queries


@lru_cache(maxsize=4)
def token_strings(model_dir: str) -> tuple[str, ...]:
    """The decoded text of every token id of the tokenizer in ``model_dir`` (index = token id)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return tuple(tok.decode([i]) for i in range(len(tok)))


def vocabulary_frame(model_dir: str, tfp: str) -> pl.DataFrame:
    """One row per token id: (tokenizer_fp, token_id, token, piece)."""
    from transformers import AutoTokenizer

    strings = token_strings(model_dir)
    pieces = AutoTokenizer.from_pretrained(model_dir).convert_ids_to_tokens(list(range(len(strings))))
    return pl.DataFrame({"tokenizer_fp": [tfp] * len(strings), "token_id": list(range(len(strings))),
                         "token": list(strings), "piece": [p if isinstance(p, str) else "" for p in pieces]},
                        schema_overrides={"token_id": pl.Int32})


def write_vocabulary(wh, con, model_dir: str | Path, identity: dict, corpus_fp: str, source: str) -> str:
    """Inside the caller's write transaction: the tokenizer's vocabulary (once) and the corpus -> tokenizer row."""
    tfp = tokenizer_fp(identity)
    if not con.execute(queries.TOKENIZER_VOCABULARY_COUNT, [tfp]).fetchone()[0]:
        wh.record_fingerprint(con, tfp, "tokenizer", identity)
        wh.insert(con, "vocabulary", vocabulary_frame(str(model_dir), tfp))
    con.execute(queries.DELETE_CORPUS, [corpus_fp])
    con.execute(queries.INSERT_CORPUS, [corpus_fp, tfp, source])
    return tfp
