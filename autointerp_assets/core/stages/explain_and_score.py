"""Stage explanations and the first pass of stage scores in one event loop, for engines that take overlapping
``generate`` calls (a server: ``LLMClient.concurrent``).

A latent's yes/no scoring requests (detection, fuzzing) go out as soon as its explanation lands, while other
latents' explanations and scores are in flight: no barrier between the two stages, so the server stays busy
to the end. Warehouse work stays off the request path: the explanations are planned and admitted before the
loop; the scoring pass's set-up (examples, done pairs) is read in a worker thread while the first
explanations are in flight; each wave of landed explanations is admitted to the ledger in a worker thread
(the next wave collects meanwhile) while other requests keep going. After the loop the two stages' rows are
merged as when they run one after the other -- the explanations with their ledger rows, then the scores with
theirs -- so both stages' outcomes (rows, failures, budget stops) are those of the sequential stages.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from ..errors import StageFailed
from ..llm.accounting import BudgetExceeded
from .classifier_scores import ClassifierPass
from .context import Context
from .explanations import ExplainPlan, finish_explanations, outcome, plan_explanations


def pipelined(explain_client, score_client) -> bool:
    """Whether both engines take overlapping calls (else the stages run one after the other)."""
    return all(getattr(c, "concurrent", False) for c in (explain_client, score_client))


# explanation requests built and admitted per wave: a small first wave gets the server going at once, the rest
# are built (the tokenizer fits each prompt to the context) while earlier ones are in flight
FIRST_WAVE, WAVE = 8, 32


def run_explain_and_score(ctx: Context, explain_client, score_client, layer: str, first: int, last: int,
                          force: bool = False) -> tuple[dict, dict]:
    """(stage explanations' result, the scoring pass's result). Raises the explanations' StageFailed /
    BudgetExceeded after both stages' rows are committed; the scoring pass's own stop (budget, failures) is
    its result's ``stopped`` (one line): stage scores meets it again when it sends what is missing."""
    with ctx.wh.session():  # one open database for the planning's reads
        plan = plan_explanations(ctx, layer, first, last, force)
    t0 = time.perf_counter()
    responses, scoring = asyncio.run(_loop(ctx, plan, explain_client, score_client))
    secs = time.perf_counter() - t0
    with ctx.wh.session():
        try:
            explained = finish_explanations(ctx, plan, responses, secs)
        except (StageFailed, BudgetExceeded):
            try:  # what was scored is committed too (its requests were paid for); the explanations' error wins
                scoring.finish()
            except (StageFailed, BudgetExceeded):
                pass
            raise
        try:
            scored = scoring.finish()
        except (StageFailed, BudgetExceeded) as e:
            scored = {**getattr(e, "summary", {}), "stopped": str(e)}
        return explained, scored


def _start(ctx: Context, client, plan: ExplainPlan) -> ClassifierPass:
    with ctx.wh.session():  # the warehouse thread's work meanwhile waits for it
        return ClassifierPass(ctx, client, plan.layer, plan.first, plan.last, plan.efp, plan.force)


async def _loop(ctx: Context, plan: ExplainPlan, explain_client, score_client) -> tuple[list, ClassifierPass]:
    loop = asyncio.get_running_loop()
    db = ThreadPoolExecutor(1, thread_name_prefix="warehouse")  # the loop's warehouse calls, one at a time

    def at_warehouse(fn, *args):
        return loop.run_in_executor(db, fn, *args)

    landed: asyncio.Queue[int | None] = asyncio.Queue()
    tasks: list[asyncio.Task] = []  # tasks[j] answers plan.sent[j]

    async def explain() -> None:
        size = FIRST_WAVE
        while len(plan.built) < len(plan.latents) and not plan.stopped:
            built = await asyncio.to_thread(plan.build, size)
            for req in await at_warehouse(plan.admit, built):  # the ledger's write-ahead rows
                task = asyncio.create_task(explain_client.generate([req]))  # one call per latent: each lands alone
                task.add_done_callback(lambda _, j=len(tasks): landed.put_nowait(j))
                tasks.append(task)
            size = WAVE
        landed.put_nowait(None)  # every explanation request is out

    async def score(explained: list[tuple[int, str]]) -> None:
        latents = scoring.add(explained)  # builds the latents' scoring prompts
        if latents:
            admitted = await at_warehouse(scoring.admit, latents)
            sends.append(asyncio.create_task(scoring.send(admitted)))

    try:
        producer = asyncio.create_task(explain())
        scoring = await at_warehouse(_start, ctx, score_client, plan)
        sends: list[asyncio.Task] = []
        explaining = set(plan.latents)  # scored when their (new) explanation lands
        await score([(lat, text) for lat, text in scoring.setup.explanations.iter_rows() if lat not in explaining])
        responses: dict[int, object] = {}
        all_out = False
        while not (all_out and len(responses) == len(tasks)):
            wave = [await landed.get()]
            wave += [landed.get_nowait() for _ in range(landed.qsize())]  # everything that landed meanwhile
            all_out = all_out or None in wave
            explained = []
            for j in sorted(j for j in wave if j is not None):
                responses[j] = tasks[j].result()[0]
                status, text, _ = outcome(plan.sent[j], responses[j])
                if status == "ok":
                    explained.append((plan.latents[j], text))
            await score(explained)
        await producer
        await asyncio.gather(*sends)
    finally:
        db.shutdown(wait=True)
    return [responses[j] for j in range(len(tasks))], scoring
