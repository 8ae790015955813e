"""Scorers beyond detection/fuzzing, the random-explanation control, confidence intervals and flags.

One module per piece: ``simulation`` (LLM predicts 0-10 per token; Pearson r), ``embedding`` (AUROC of
explanation-example cosine), ``surprisal`` (AUROC of the explanation's loss reduction under a base LM),
``intruder`` (explanation-free odd-one-out accuracy), ``controls`` (seeded derangement of explanations),
``bootstrap`` (per-latent CIs, per-partition medians / IQR), ``heuristics`` (positional / unigram flags).
Pure code: no storage, no Dagster; the stage ``core.stages.scores_more`` drives them.
"""
