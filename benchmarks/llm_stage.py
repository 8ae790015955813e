"""LLM stage benchmark: (1) throughput of explain + detection + fuzzing through the real stages and the
OpenAI engine against a local OpenAI-compatible server with a fixed per-request latency and a
concurrency limit, as a fraction of that server's saturation throughput measured in the same run;
pipelined (a latent's scoring starts when its explanation lands; ``--sequential``: every latent explained,
then scored); (2) prompt tokens per scored latent at the paper's settings (50 activating + 50 non-activating test
examples, 5 per prompt, 32-token windows), counted with the SmolLM2 chat template on real windows of
`make run`'s DuckDB (data/autointerp.duckdb).

    .venv/bin/python benchmarks/llm_stage.py [--latents 64] [--latency-s 0.2] [--capacity 32] [--sequential]
        [--in-flight N]

The defaults are issue 19's setting (a server of 32 slots at 0.2 s, the project's default client) on a
partition of 64 latents; a default latent range holds up to 1,024.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import duckdb  # noqa: E402

from autointerp_assets.core.config import ExplainerConfig, LLMConfig, ScorerConfig, parse_config  # noqa: E402
from autointerp_assets.core.explainers import build_explainer_request  # noqa: E402
from autointerp_assets.core.llm import make_client  # noqa: E402
from autointerp_assets.core.llm.base import ChatRequest  # noqa: E402
from autointerp_assets.core.records import Example  # noqa: E402
from autointerp_assets.core.scoring import classifier  # noqa: E402
from autointerp_assets.core.stages.classifier_scores import run_classifier_scores  # noqa: E402
from autointerp_assets.core.stages.context import Context  # noqa: E402
from autointerp_assets.core.stages.explain_and_score import run_explain_and_score  # noqa: E402
from autointerp_assets.core.stages.explanations import run_explanations  # noqa: E402
from autointerp_assets.core.stages.llm_runs import prompt_counter  # noqa: E402
from autointerp_assets.core.subject_model import resolve_model  # noqa: E402
from autointerp_assets.core.vocabulary import token_strings  # noqa: E402
from autointerp_assets_tests.support.synthetic import write_partition  # noqa: E402
from machine import describe, load, verdict  # noqa: E402

PAPER = {"detection": 17_000, "fuzzing": 19_600}


def start_server(latency_s: float, capacity: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "autointerp_assets_tests.support.fake_openai", "--latency-s", str(latency_s),
                             "--capacity", str(capacity)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return proc, proc.stdout.readline().strip()


async def saturate(url: str, n: int, concurrency: int) -> float:
    """Requests/s of the server alone: n tiny requests, `concurrency` at a time, raw aiohttp."""
    import aiohttp

    body = {"model": "m", "messages": [{"role": "user", "content": "Answer with a list of 1 value."}]}
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as s:
        async def one():
            async with sem, s.post(url + "/chat/completions", json=body) as r:
                await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


def throughput(n_latents: int, latency_s: float, capacity: int, pipelined: bool = True,
               in_flight: int | None = None) -> dict:
    """``in_flight``: the client's max_concurrency (default: the project's default)."""
    proc, url = start_server(latency_s, capacity)
    try:
        sat = asyncio.run(saturate(url, capacity * 20, capacity * 2))
        tmp = Path(tempfile.mkdtemp(prefix="llm-bench-"))
        llm = {"engine": "openai", "model": "smollm2", "base_url": url,
               "max_concurrency": in_flight or LLMConfig().max_concurrency,
               "api_key_env": "AUTOINTERP_BENCH_UNSET_KEY"}
        cfg = parse_config({"database": str(tmp / "bench.duckdb"), "workdir": str(ROOT / "data"),
                            "hookpoints": ["layers.1"], "latents": {"start": 0, "stop": 1024, "range_size": 1024},
                            "sampler": {"example_ctx_len": 32, "min_examples": 100, "n_train": 40, "n_test": 50,
                                        "n_non_activating": 50},
                            "explainer": {"llm": llm}, "scorer": {"scorers": ["detection", "fuzzing"]}})
        ctx = Context.of(cfg)
        write_partition(ctx.wh, "layers.1", list(range(n_latents)), n_train=40, n_test=50, n_non_activating=50, ctx=32)
        client = make_client(cfg.explainer.llm, str(ctx.workdir))
        # a warm process (as in a backfill): vocabulary and tokenizer loaded once, before timing
        token_strings(ctx.model_dir())
        prompt_counter(cfg.explainer.llm, ctx.workdir)(ChatRequest.of([{"role": "user", "content": "hi"}]))
        t0, cpu0 = time.perf_counter(), time.process_time()
        if pipelined:
            e, s = run_explain_and_score(ctx, client, client, "layers.1", 0, 1023)
        else:
            e = run_explanations(ctx, client, "layers.1", 0, 1023)
            s = run_classifier_scores(ctx, client, "layers.1", 0, 1023)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        requests = e["llm_calls"] + s["llm_calls"]
        # time with requests going out: the event loop when pipelined, else the two generate() calls
        gen = s["seconds"] if pipelined else e["seconds"] + s["seconds"]
        per_latent = requests / n_latents
        return {"latents": n_latents, "requests": requests, "requests_per_latent": per_latent,
                "server_saturation_req_s": sat, "ideal_req_s": capacity / latency_s,
                "stage_req_s": requests / wall, "stage_latents_s": n_latents / wall,
                "saturation_latents_s": sat / per_latent, "fraction": (requests / wall) / sat,
                "fraction_generate_only": (requests / gen) / sat, "peak_in_flight": client.peak_in_flight,
                "wall_s": wall, "cpu_ms_per_request": 1000 * cpu / requests}
    finally:
        proc.terminate()
        proc.wait(10)


def real_examples(db: Path, n_latents: int, ctx: int = 32, n: int = 50):
    """Per latent: 50 activating and 50 non-activating real 32-token windows with real activations."""
    con = duckdb.connect(str(db), read_only=True)
    layer = con.execute("SELECT min(layer) FROM activations").fetchone()[0]
    lats = [r[0] for r in con.execute(
        f"SELECT latent FROM activations WHERE layer = ? GROUP BY latent "
        f"HAVING count(DISTINCT (row_id, (pos - 1) // {ctx})) >= {n} ORDER BY latent LIMIT ?", [layer, n_latents]).fetchall()]
    rows = dict(con.execute("SELECT row_id, token_ids FROM tokens").fetchall())
    n_rows = len(rows)
    out = []
    for lat in lats:
        acts = con.execute("SELECT row_id, pos, value FROM activations WHERE layer = ? AND latent = ?", [layer, lat]).fetchall()
        by_win: dict = {}
        for r, p, v in acts:
            by_win.setdefault((r, (p - 1) // ctx), {})[p] = v
        wins = sorted(by_win)[:: max(1, len(by_win) // n)][:n]
        pos_ex = []
        for i, (r, w) in enumerate(wins):
            start = 1 + w * ctx
            ids = rows[r][start:start + ctx]
            pos_ex.append((ids, [by_win[(r, w)].get(start + j, 0.0) for j in range(len(ids))]))
        neg_ex, k = [], 0
        while len(neg_ex) < n:
            r, w = (k * 7919) % n_rows, k % 3
            k += 1
            if (r, w) not in by_win and r in rows:
                ids = rows[r][1 + w * ctx:1 + (w + 1) * ctx]
                if len(ids) == ctx:
                    neg_ex.append((ids, [0.0] * ctx))
        expl = con.execute("SELECT any_value(explanation) FROM explanations WHERE layer = ? AND latent = ? "
                           "AND status = 'ok'", [layer, lat]).fetchone()[0] or "Words in technical documentation."
        out.append((lat, pos_ex, neg_ex, expl))
    return out


def tokens_per_latent(n_latents: int) -> dict:
    db = ROOT / "data" / "autointerp.duckdb"
    if not db.exists():
        return {"error": f"{db} missing: run `make run` first"}
    model = resolve_model("smollm2", ROOT / "data")
    vocab = token_strings(model)
    count = prompt_counter(parse_config({}).explainer.llm, ROOT / "data")
    scfg = ScorerConfig(examples_per_prompt=5)
    res = {"detection": [], "fuzzing": [], "explanation": []}
    for lat, pos, neg, expl in real_examples(db, n_latents):
        test = [Example(i, tuple(vocab[t] for t in ids), tuple(a), True, i % 10) for i, (ids, a) in enumerate(pos)]
        non = [Example(100 + i, tuple(vocab[t] for t in ids), tuple(a), False, -1) for i, (ids, a) in enumerate(neg)]
        job = classifier.ScoreJob(f"x/{lat}", expl, test, non)
        for kind in ("detection", "fuzzing"):
            reqs = classifier.scorer_requests([kind], job, scfg)
            assert len(reqs) == 20
            res[kind].append(sum(count(r) for r in reqs))
        res["explanation"].append(count(build_explainer_request(ExplainerConfig(), test[:40], max(
            max(e.activations) for e in test))))
    return {k: statistics.mean(v) for k, v in res.items()} | {"latents": len(res["detection"])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latents", type=int, default=64)
    ap.add_argument("--latency-s", type=float, default=0.2)
    ap.add_argument("--capacity", type=int, default=32)
    ap.add_argument("--token-latents", type=int, default=20)
    ap.add_argument("--sequential", action="store_true", help="explain every latent, then score (the stages apart)")
    ap.add_argument("--in-flight", type=int, default=None, help="the client's max_concurrency (default: the project's)")
    a = ap.parse_args()
    print(describe())
    before = load()
    t = throughput(a.latents, a.latency_s, a.capacity, not a.sequential, a.in_flight)
    quiet, line = verdict(before, load())
    print(f"server: {a.latency_s}s per request, {a.capacity} at once -> ideal {t['ideal_req_s']:.1f} req/s, "
          f"measured saturation {t['server_saturation_req_s']:.1f} req/s")
    print(f"stages (explain + detection + fuzzing, paper settings: {t['requests_per_latent']:.0f} requests/latent): "
          f"{t['latents']} latents, {t['requests']} requests in {t['wall_s']:.1f}s, peak in flight {t['peak_in_flight']}")
    inside = "the event loop" if not a.sequential else "the generate() calls"
    print(f"  {'pipelined' if not a.sequential else 'explain all, then score'}: {t['stage_latents_s']:.2f} latents/s "
          f"vs saturation {t['saturation_latents_s']:.2f} latents/s -> fraction {t['fraction']:.3f} "
          f"(inside {inside}: {t['fraction_generate_only']:.3f})")
    print(f"  client CPU per request: {t['cpu_ms_per_request']:.2f} ms (this process: client, prompts, parsing, "
          "ledger and warehouse I/O; the server is another process)")
    print(f"  {line}" + ("" if quiet else " -- the fraction above is not a headline"))
    tok = tokens_per_latent(a.token_latents)
    if "error" in tok:
        print("tokens:", tok["error"])
        return
    for kind in ("detection", "fuzzing"):
        print(f"prompt tokens per scored latent, {kind}: {tok[kind] / 1000:.1f}k (paper {PAPER[kind] / 1000:.1f}k, "
              f"ratio {tok[kind] / PAPER[kind]:.2f}) over {tok['latents']} latents")
    print(f"explainer prompt (40 examples): {tok['explanation'] / 1000:.1f}k tokens")


if __name__ == "__main__":
    main()
