from autointerp_assets.core.config import ExplainerConfig
from autointerp_assets.core.explainers import (
    EXPLAINER_PROMPT_VERSION,
    build_explainer_request,
    display_token,
    fit_explainer_request,
    highlight,
    normalize,
    parse_explanation,
    prompt_version,
    promoted_tokens,
)
from autointerp_assets.core.records import Example


def _ex(i, toks, acts, q=0):
    return Example(example_id=i, str_tokens=tuple(toks), activations=tuple(acts), activating=True, quantile=q)


def test_version():
    assert EXPLAINER_PROMPT_VERSION == "default-v1"


def test_highlight_runs_and_threshold():
    toks = ["The", " quick", " brown", " fox", " jumps", " over"]
    acts = [0.0, 2.0, 10.0, 0.5, 3.1, 0.0]
    # threshold 0.3 * 10 = 3: strictly above -> brown, jumps
    assert highlight(toks, acts, 0.3) == "The quick<< brown>> fox<< jumps>> over"
    # threshold 0.1 * 10 = 1: quick+brown is one run, fox is not (0.5), jumps is
    assert highlight(toks, acts, 0.1) == "The<< quick brown>> fox<< jumps>> over"
    # a run at the very end is closed
    assert highlight(["a", "b"], [0.0, 1.0], 0.3) == "a<<b>>"
    assert highlight(["a", "b"], [1.0, 1.0], 0.3) == "<<ab>>"


def test_highlight_zero_max_has_no_markers():
    assert highlight(["a", " b"], [0.0, 0.0], 0.3) == "a b"
    assert highlight([], [], 0.3) == ""


def test_normalize():
    assert normalize([0.0, 0.1, 2.5, 5.0, 9.99, 10.0, 12.0, -1.0], 10.0) == [0, 1, 3, 5, 10, 10, 10, 0]
    assert normalize([0.0, 0.04, 1.0], 4.0) == [0, 1, 3]
    assert normalize([1.0, 2.0], 0.0) == [0, 0]


def _examples(n, length=32):
    out = []
    for i in range(n):
        toks = [f" w{j}" for j in range(length)]
        acts = [0.0] * length
        acts[5] = 4.0 + i % 3
        acts[6] = 2.0
        acts[20] = 1.0
        out.append(_ex(i, toks, acts, q=i % 10))
    return out


def test_request_structure_and_sampling():
    cfg = ExplainerConfig()
    req = build_explainer_request(cfg, _examples(3), latent_max=6.0)
    roles = [m["role"] for m in req.messages]
    assert roles[0] == "system"
    assert roles[-1] == "user"
    assert 2 <= roles.count("assistant") <= 3 and roles.count("user") == roles.count("assistant") + 1
    for m in req.messages:
        if m["role"] == "assistant":
            assert m["content"].startswith("[EXPLANATION]:")
    assert "[EXPLANATION]:" in req.messages[0]["content"]
    last = req.messages[-1]["content"].split("\n")
    # example 0: act 4 at pos 5 (> 0.3*4), pos 6 = 2 (> 1.2), pos 20 = 1 (not > 1.2)
    assert last[0] == "Example 1:  w0 w1 w2 w3 w4<< w5 w6>> w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 " \
                      "w20 w21 w22 w23 w24 w25 w26 w27 w28 w29 w30 w31"
    # normalized to the latent max 6: ceil(4*10/6)=7, ceil(2*10/6)=4
    assert last[1] == "Activations: w5 (7), w6 (4)"
    assert last[2].startswith("Example 2: ")
    assert last[5] == "Activations: w5 (10), w6 (4)"
    assert req.prefill == "[EXPLANATION]:"
    assert req.sampling.stop == ()  # no newline stop: a leading blank line must not end the answer
    assert req.sampling.temperature == 0.0 and req.sampling.max_tokens == cfg.max_tokens


def test_request_options():
    cfg = ExplainerConfig(prefill_marker=False, show_activations=False, max_examples=2, temperature=0.7)
    req = build_explainer_request(cfg, _examples(5), latent_max=6.0)
    assert req.prefill == ""
    assert req.sampling.stop == ()
    assert req.sampling.temperature == 0.7
    last = req.messages[-1]["content"]
    assert "Activations" not in last and "Example 3" not in last and "Example 2" in last
    assert all("Activations" not in m["content"] for m in req.messages)


def test_activation_line_caps_at_ten_strongest_in_text_order():
    toks = [f" t{j}" for j in range(32)]
    acts = [float(j) for j in range(32)]  # max 31; > 9.3 -> 10..31, keep the strongest 10: 22..31
    req = build_explainer_request(ExplainerConfig(), [_ex(0, toks, acts)], latent_max=31.0)
    line = req.messages[-1]["content"].split("\n")[1]
    assert line.startswith("Activations: t22 (")
    assert line.count("(") == 10 and line.endswith("t31 (10)")


def test_newlines_in_tokens_stay_on_one_line():
    req = build_explainer_request(ExplainerConfig(), [_ex(0, ["a", "\n", "b"], [0.0, 1.0, 0.0])], latent_max=1.0)
    lines = req.messages[-1]["content"].split("\n")
    assert lines == ["Example 1: a<<\\n>>b", "Activations: \\n (10)"]


def test_prompt_is_compact():
    # 40 examples x 32 tokens (each word ~1-2 tokens): the whole prompt must stay small in characters
    req = build_explainer_request(ExplainerConfig(), _examples(40), latent_max=6.0)
    fixed = sum(len(m["content"]) for m in req.messages[:-1])
    assert fixed < 2000


def test_parse_explanation_good():
    assert parse_explanation("Some thinking.\n[EXPLANATION]: Names of cities.") == "Names of cities."
    assert parse_explanation("[explanation]:   \"The word not\"  ") == "The word not"
    assert parse_explanation("Explanation: opening brackets") == "opening brackets"
    assert parse_explanation("**Explanation:** the keyword import") == "the keyword import"


def test_parse_explanation_prefilled():
    assert parse_explanation(" Words inside string literals.", prefill="[EXPLANATION]:") == \
        "Words inside string literals."
    # the model repeated the marker: the last one wins
    assert parse_explanation(" [EXPLANATION]: Numbers.", prefill="[EXPLANATION]:") == "Numbers."


def test_parse_explanation_last_marker_and_multiline():
    text = "[EXPLANATION]: draft one\n[EXPLANATION]:\n\n  The token << def >> in code.\nMore text."
    assert parse_explanation(text) == "The token def in code."
    assert parse_explanation("[EXPLANATION]: first line\nsecond line") == "first line"


def test_parse_explanation_failures():
    assert parse_explanation("Names of cities.") is None  # no marker
    assert parse_explanation("") is None
    assert parse_explanation("", prefill="[EXPLANATION]:") is None  # empty
    assert parse_explanation("   \n  ", prefill="[EXPLANATION]:") is None
    assert parse_explanation(" ...", prefill="[EXPLANATION]:") is None  # punctuation only
    assert parse_explanation(" " + "x" * 301, prefill="[EXPLANATION]:") is None  # too long
    assert parse_explanation(" " + "x" * 300, prefill="[EXPLANATION]:") == "x" * 300


def _chars(req):
    return sum(len(m["content"]) for m in req.messages)


def test_fit_explainer_request():
    cfg = ExplainerConfig()
    toks = [f" t{j}" for j in range(32)]
    exs = [_ex(i, toks, [float(j + 1) for j in range(32)], q=i % 10) for i in range(40)]  # dense latent
    full = build_explainer_request(cfg, exs, 32.0)
    req, n = fit_explainer_request(cfg, exs, 32.0, _chars, 10**9)
    assert (req, n) == (full, 40)
    # a little smaller: fewer listed activations, all examples kept
    req, n = fit_explainer_request(cfg, exs, 32.0, _chars, _chars(full) - 100)
    assert n == 40 and req.messages[-1]["content"].split("\n")[1].count("(") == 5
    # much smaller: fewer examples, spread over the list, and it fits
    budget = _chars(full) // 2
    req, n = fit_explainer_request(cfg, exs, 32.0, _chars, budget)
    assert 1 < n < 40 and _chars(req) <= budget
    lines = [l for l in req.messages[-1]["content"].split("\n") if l.startswith("Activations")]
    assert len(lines) == n and all(l.count("(") == 3 for l in lines)
    # impossible: one example comes back
    req, n = fit_explainer_request(cfg, exs, 32.0, _chars, 10)
    assert n == 1 and req.messages[-1]["content"].count("Example ") == 1


def test_display_token_escapes():
    assert display_token(" x\n\t") == " x\\n\\t"
    assert display_token(">>>") == "> > >"
    assert display_token(" <<=") == " < <="
    req = build_explainer_request(ExplainerConfig(), [_ex(0, [">>>", " f", "(x)"], [0.0, 2.0, 0.0])], 2.0)
    assert req.messages[-1]["content"].split("\n")[0] == "Example 1: > > ><< f>>(x)"


def _neg(i, length=8):
    return Example(100 + i, tuple(f" z{i}_{j}" for j in range(length)), (0.0,) * length, False, -1)


def test_kinds_change_prompt_and_version():
    exs, negs, logit = _examples(3), [_neg(i) for i in range(12)], [" cat", " dog", "\n"]
    base = build_explainer_request(ExplainerConfig(), exs, 6.0, counterexamples=negs, logit_tokens=logit)
    # extras are ignored by the default kind
    assert base == build_explainer_request(ExplainerConfig(), exs, 6.0)
    con = build_explainer_request(ExplainerConfig(kind="contrastive", n_counterexamples=4), exs, 6.0,
                                  counterexamples=negs)
    user = con.messages[-1]["content"]
    assert [l.split(":")[0] for l in user.split("\n") if l.startswith("Counterexample")] == \
        [f"Counterexample {i}" for i in range(1, 5)]
    assert "\nCounterexample 1:  z0_0 z0_1 z0_2" in user
    assert "<<" not in user.split("Counterexample 1")[1] and "NOT fire" in con.messages[0]["content"]
    lg = build_explainer_request(ExplainerConfig(kind="logit", n_logit_tokens=2), exs, 6.0, logit_tokens=logit)
    assert lg.messages[-1]["content"].endswith('Tokens this latent promotes: "cat", "dog"')
    st = build_explainer_request(ExplainerConfig(kind="single_token"), exs, 6.0)
    assert "specific token" in st.messages[0]["content"]
    cot = build_explainer_request(ExplainerConfig(chain_of_thought=True, max_tokens=48), exs, 6.0)
    assert cot.prefill == "" and cot.sampling.max_tokens == 160 and "think" in cot.messages[0]["content"]
    versions = {prompt_version(ExplainerConfig(kind=k, chain_of_thought=c))
                for k in ("default", "contrastive", "single_token", "logit") for c in (False, True)}
    assert len(versions) == 8 and prompt_version(ExplainerConfig()) == "default-v1/default-v1"
    # a chain-of-thought answer is parsed from its last marker line
    assert parse_explanation("The marked tokens are animals.\n[EXPLANATION]: Animal nouns.", cot.prefill) == \
        "Animal nouns."


def test_fit_keeps_extras():
    exs, negs = _examples(40), [_neg(i) for i in range(5)]
    cfg = ExplainerConfig(kind="contrastive")
    chars = lambda r: sum(len(m["content"]) for m in r.messages)
    full = build_explainer_request(cfg, exs, 6.0, counterexamples=negs)
    req, n = fit_explainer_request(cfg, exs, 6.0, chars, chars(full) // 2, counterexamples=negs)
    assert n < 40 and "Counterexample 5:" in req.messages[-1]["content"] and chars(req) <= chars(full) // 2


def test_promoted_tokens_is_the_logit_lens_top_k():
    import torch

    g = torch.Generator().manual_seed(0)
    w_dec, unembed, norm = torch.randn(3, 8, generator=g), torch.randn(50, 8, generator=g), torch.rand(8, generator=g)
    ids = promoted_tokens(w_dec, unembed, norm, k=4)
    assert ids.shape == (3, 4)
    for i in range(3):
        logits = [float((w_dec[i] * norm) @ unembed[v]) for v in range(50)]
        assert ids[i].tolist() == sorted(range(50), key=lambda v: -logits[v])[:4]
