"""What a terminal shows of a Dagster run: one line per log record, one line per failed step or check.

Dagster's default console logger prints a failed step with its whole traceback (~170 lines). `autointerp run`
uses :data:`one_line_console` instead — each record's first line, prefixed with its step — and reports each
failure with :func:`failures`: the step, the partition and the real cause in one line. The tracebacks stay
in the Dagster event log (``$DAGSTER_HOME``; the UI's run page).
"""

from __future__ import annotations

import logging
import sys

import dagster as dg


LOGGERS_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


class OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        text = str(meta.get("orig_message") or record.getMessage()).strip()
        first = text.splitlines()[0] if text else ""
        event = meta.get("dagster_event")
        kind = getattr(event, "event_type_value", None)
        if kind in ("STEP_FAILURE", "RUN_FAILURE"):
            first = f"{kind}: {first}"
        step = meta.get("step_key")
        return f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {step + ': ' if step else ''}{first}"


@dg.logger(config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
           description="Console logger printing the first line of each record (tracebacks stay in the event log).")
def one_line_console(init_context) -> logging.Logger:
    lg = logging.Logger("autointerp", level=init_context.logger_config["log_level"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    lg.addHandler(handler)
    return lg


def _cause(error) -> str:
    """The innermost user error of a Dagster SerializableErrorInfo, as one line: our own errors as their
    message (already naming the file / server / fix), others as ``Type: first line``."""
    while error is not None and error.cls_name in ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError") \
            and error.cause is not None:
        error = error.cause
    if error is None:
        return "unknown error"
    lines = [ln for ln in error.message.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else error.cls_name
    head, sep, text = first.partition(": ")
    text = " ".join((text if sep and head.rsplit(".", 1)[-1] == error.cls_name else first).split())
    return text if _ours(error.cls_name) else f"{error.cls_name}: {text}"


def _ours(cls_name: str) -> bool:
    return cls_name in ("InputError", "StageFailed", "StorageError", "ConfigError", "BudgetExceeded", "LLMServerError",
                        "CorpusError", "ModelError", "SparseCoderError", "Failure")


def failures(result) -> list[tuple[str, str]]:
    """(step or check, one line) for every failed step and every failed ERROR-severity check of a run."""
    out = []
    for ev in result.get_step_failure_events():
        data = ev.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            out.append((ev.step_key, " ".join(data.user_failure_data.description.split())))
        else:
            out.append((ev.step_key, _cause(data.error)))
    for ev in result.get_asset_check_evaluations():
        if not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR:
            desc = ev.description or ", ".join(f"{k}={v.value}" for k, v in list(ev.metadata.items())[:6]
                                               if not isinstance(v.value, str) or len(v.value) < 40)
            out.append((f"check {ev.check_name}", f"failed: {desc}"))
    return out
