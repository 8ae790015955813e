"""Stage explanations and the first pass of stage scores in one event loop, for engines that take overlapping
``generate`` calls (a server: ``LLMClient.concurrent``).

A latent's yes/no scoring requests (detection, fuzzing) go out as soon as its explanation lands, while other
latents' explanations and scores are in flight: no barrier between the two stages, so the server stays busy
to the end. Explanation prompts are built (the tokenizer fits each to the context) and admitted to the ledger
in waves of 4, 8, 16, then 32 latents while earlier ones are in flight. Warehouse work stays off the event loop,
on one worker thread: the ledger's write-ahead rows of each wave (of explanations, and of landed explanations'
scoring), the scoring pass's set-up (after the first wave is out), and the explanations' commit (when the last
has landed, while scoring goes on). The scores are committed last, so both stages' rows, ledger, failures and
budget stops are those of the two stages run one after the other (tested).
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


# explanation requests built and admitted in waves of 4, 8, 16, then 32 latents: the first goes out at once, the
# next are built (the tokenizer fits each prompt to the context) while earlier ones are in flight
FIRST_WAVE, WAVE = 4, 32


def run_explain_and_score(ctx: Context, explain_client, score_client, layer: str, first: int, last: int,
                          force: bool = False) -> tuple[dict, dict]:
    """(stage explanations' result, the scoring pass's result). Raises the explanations' StageFailed /
    BudgetExceeded after both stages' rows are committed; the scoring pass's own stop (budget, failures) is
    its result's ``stopped`` (one line): stage scores meets it again when it sends what is missing."""
    with ctx.wh.session():  # one open database for the planning's reads
        plan = plan_explanations(ctx, layer, first, last, force)
    explained, scoring = asyncio.run(_Pipeline(ctx, plan, explain_client, score_client).run())
    with ctx.wh.session():
        try:
            scored = scoring.finish()
        except (StageFailed, BudgetExceeded) as e:
            scored = {**getattr(e, "summary", {}), "stopped": str(e)}
    if isinstance(explained, BaseException):  # committed before the scores were; reported after them
        raise explained
    return explained, scored


class _Pipeline:
    """One run's event loop: explanation requests out in waves, each landed explanation's scoring requests out
    at once, the warehouse's work (ledger rows, the scoring set-up, the explanations' commit) on one worker
    thread."""

    def __init__(self, ctx: Context, plan: ExplainPlan, explain_client, score_client):
        self.ctx, self.plan, self.explain_client, self.score_client = ctx, plan, explain_client, score_client
        self.landed: asyncio.Queue[int | None] = asyncio.Queue()  # indices of landed explanations; None: all out
        self.tasks: list[asyncio.Task] = []  # tasks[j] answers plan.sent[j]
        self.sends: list[asyncio.Task] = []
        self.scoring: ClassifierPass | None = None
        self.first_out = asyncio.Event()  # the first wave is out (or there is nothing to explain)

    async def run(self) -> tuple[dict | BaseException, ClassifierPass]:
        """Stage explanations' result (or its StageFailed / BudgetExceeded), committed while the last scoring
        requests are in flight, and the scoring pass with every answer in (not yet committed)."""
        t0, plan = time.perf_counter(), self.plan
        self.db = ThreadPoolExecutor(1, thread_name_prefix="warehouse")  # the loop's warehouse calls, in turn
        try:
            producer = asyncio.create_task(self._explain())
            await self.first_out.wait()  # the first explanation requests before the scoring set-up's reads
            self.scoring = await self._at_warehouse(self._start)
            explaining = set(plan.latents)  # scored when their (new) explanation lands
            await self._score([(lat, text) for lat, text in self.scoring.setup.explanations.iter_rows()
                               if lat not in explaining])
            answers: dict[int, object] = {}
            all_out = False
            while not (all_out and len(answers) == len(self.tasks)):
                wave = [await self.landed.get()]
                wave += [self.landed.get_nowait() for _ in range(self.landed.qsize())]  # all landed meanwhile
                all_out = all_out or None in wave
                ok = []
                for j in sorted(j for j in wave if j is not None):
                    answers[j] = self.tasks[j].result()[0]
                    status, text, _ = outcome(plan.sent[j], answers[j])
                    if status == "ok":
                        ok.append((plan.latents[j], text))
                await self._score(ok)
            await producer
            committed = self._at_warehouse(self._commit_explanations, [answers[j] for j in range(len(self.tasks))],
                                           time.perf_counter() - t0)
            await asyncio.gather(*self.sends)
            self.scoring.secs = time.perf_counter() - t0  # the time requests were going out
            return await committed, self.scoring
        finally:
            self.db.shutdown(wait=True)

    def _at_warehouse(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self.db, fn, *args)

    async def _explain(self) -> None:
        plan, size = self.plan, FIRST_WAVE
        while len(plan.built) < len(plan.latents) and not plan.stopped:
            built = await asyncio.to_thread(plan.build, size)
            for req in await self._at_warehouse(plan.admit, built):  # the ledger's write-ahead rows
                task = asyncio.create_task(self.explain_client.generate([req]))  # one call per latent
                task.add_done_callback(lambda _, j=len(self.tasks): self.landed.put_nowait(j))
                self.tasks.append(task)
            self.first_out.set()
            size = min(2 * size, WAVE)
        self.first_out.set()
        self.landed.put_nowait(None)

    async def _score(self, explained: list[tuple[int, str]]) -> None:
        latents = self.scoring.add(explained)  # builds the latents' scoring prompts
        if latents:
            admitted = await self._at_warehouse(self.scoring.admit, latents)
            self.sends.append(asyncio.create_task(self.scoring.send(admitted)))

    def _start(self) -> ClassifierPass:
        p = self.plan
        with self.ctx.wh.session():
            return ClassifierPass(self.ctx, self.score_client, p.layer, p.first, p.last, p.efp, p.force)

    def _commit_explanations(self, answers: list, secs: float) -> dict | BaseException:
        try:
            with self.ctx.wh.session():
                return finish_explanations(self.ctx, self.plan, answers, secs)
        except (StageFailed, BudgetExceeded) as e:
            return e
