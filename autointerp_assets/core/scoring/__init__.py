"""Scoring: every scorer, the metrics, the random-explanation control, the intervals and the flags.

One module per piece: ``classifier`` (detection, fuzzing, fuzzing_active: does the explanation let an LLM
tell activating from non-activating examples?), ``intervention`` (which continuation was steered?),
``simulation`` (LLM predicts 0-10 per token; Pearson r), ``embedding`` (AUROC of explanation-example
cosine), ``surprisal`` (AUROC of the explanation's loss reduction under a base LM), ``intruder``
(explanation-free odd-one-out accuracy), ``metrics`` (per-latent balanced accuracy, F1, AUROC; ok / failed /
undefined), ``controls`` (seeded derangement of explanations), ``bootstrap`` (per-latent CIs, per-partition
medians / IQR), ``sensitivity`` (does a scorer read the explanation?), ``heuristics`` (positional / unigram
flags). Pure code: no storage, no Dagster; stage ``scores`` (core/stages/scores.py and its passes)
drive them.
"""
