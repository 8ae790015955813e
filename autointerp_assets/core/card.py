"""The terminal card of one latent (``autointerp latent LAYER N``): a dashboard record (``core.dashboard``)
as text within 100 columns.

Firing tokens are highlighted with a background colour graded by activation where the terminal shows
colour (a TTY without ``NO_COLOR``, or ``--color always``), else marked ``<<like this>>``. Each example is cut to
a window around its strongest token so that it fits one line.
"""

from __future__ import annotations

import os
import sys

from .display import number

WIDTH = 100
# background shades from weak to strong activation (xterm-256 colours: pale yellow -> orange -> red)
SHADES = (230, 229, 222, 215, 209, 203)
RESET = "\x1b[0m"
PER_QUANTILE = 2
N_NEGATIVE = 3


def use_colour(mode: str = "auto", stream=None) -> bool:
    if mode in ("always", "never"):
        return mode == "always"
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR") \
        and os.environ.get("TERM", "") != "dumb"


def _visible(tok: str) -> str:
    return tok.replace("\n", "↵").replace("\t", "⇥").replace("\r", "")


def _window(tokens: list[list], room: int) -> tuple[int, int]:
    """[a, b) of the tokens to show: around the strongest token, at most ``room`` visible characters."""
    if not tokens:
        return 0, 0
    peak = max(range(len(tokens)), key=lambda i: tokens[i][1])
    a, b, used = peak, peak + 1, len(_visible(tokens[peak][0])) + 4
    while True:  # grow right first (context after the peak is short in centred windows), then left
        grew = False
        for side in ("right", "left"):
            i = b if side == "right" else a - 1
            if 0 <= i < len(tokens):
                w = len(_visible(tokens[i][0])) + (4 if tokens[i][1] > 0 else 0)
                if used + w <= room:
                    used += w
                    a, b = (a, b + 1) if side == "right" else (a - 1, b)
                    grew = True
        if not grew:
            return a, b


def highlight(tokens: list[list], colour: bool, room: int, scale: float | None = None) -> str:
    """Tokens a..b around the peak with firing ones highlighted; '…' where the example was cut."""
    a, b = _window(tokens, room - 2)
    top = scale or max((t[1] for t in tokens), default=0) or 1.0
    out, open_span = [], False
    for i in range(a, b):
        tok, act = _visible(tokens[i][0]), tokens[i][1]
        if colour:
            if act > 0:
                shade = SHADES[min(len(SHADES) - 1, int(act / top * len(SHADES)))]
                out.append(f"\x1b[48;5;{shade}m\x1b[38;5;16m{tok}{RESET}")
            else:
                out.append(tok)
            continue
        if act > 0 and not open_span:
            out.append("<<")
            open_span = True
        out.append(tok)
        nxt = tokens[i + 1][1] if i + 1 < b else 0
        if open_span and nxt <= 0:
            out.append(">>")
            open_span = False
    return ("…" if a > 0 else "") + "".join(out) + ("…" if b < len(tokens) else "")


def _ival(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci and ci[0] is not None and ci[1] is not None else ""


def _score_line(s: dict) -> str:
    ival = _ival(s["ci"])
    if s["control"] is not None:
        cival = _ival(s["control_ci"])
        ctl = f"{number(s['control'])} {cival}"
        diff = f"{s['difference']:+.3f}"
    else:
        ctl, diff = "–", "–"
    metric = s["metric"].replace("balanced_accuracy", "bal. acc.").replace("correlation", "corr.")
    value = number(s["value"]) if s["status"] == "ok" else s["status"]
    return f"    {s['scorer']:<13}{metric:<10}{value:>7} {ival:<13}  {ctl:<20} {diff:>7}"


def histogram_lines(hist: list[int], top: float | None, bars: int = 8, width: int = 44) -> list[str]:
    """The 16-bin histogram over (0, max] merged into ``bars`` horizontal bars."""
    if not hist or not top:
        return ["    (no activations)"]
    k = max(1, len(hist) // bars)
    merged = [sum(hist[i:i + k]) for i in range(0, len(hist), k)]
    peak = max(merged) or 1
    step = top / len(merged)
    lines = []
    for i, c in enumerate(merged):
        bar = "█" * max(1 if c else 0, round(width * c / peak))
        lines.append(f"    {i * step:>6.2f}–{(i + 1) * step:<6.2f} {bar} {c:,}")
    return lines


def render_card(rec: dict, colour: bool = False, first: int | None = None, last: int | None = None,
                per_quantile: int = PER_QUANTILE, n_negative: int = N_NEGATIVE) -> str:
    """The card of one dashboard record, every line at most 100 columns (colour codes aside)."""
    L: list[str] = []
    rng = f" · partition {first:05d}-{last:05d}" if first is not None else ""
    sel = f" ({rec['selection']})" if rec.get("selection") and rec["selection"] != rec["status"] else ""
    L.append(f"{rec['layer']} · latent {rec['latent']}{rng} · {rec['status']}{sel}")
    dens = rec["density"]
    of = f" of {rec['n_tokens']:,} tokens" if rec.get("n_tokens") else " tokens"
    L.append(f"fires on {rec['n_firing']:,}{of} (density {number(dens * 100 if dens is not None else None, 3)} %) "
             f"in {rec['n_windows']:,} windows · max {number(rec['max_activation'], 2)} · "
             f"mean {number(rec['mean_activation'], 2)}")
    flags = [k.replace("_", "-") for k, v in rec["flags"].items() if v]
    top = ""
    if rec.get("top_token") is not None and rec.get("top_token_share") is not None:
        top = f' · top token "{_visible(rec["top_token"])}" carries {rec["top_token_share"] * 100:.0f} % of the mass'
    L.append(f"flags: {', '.join(flags) if flags else 'none'}{top}")
    L.append("")
    exps = rec["explanations"]
    L.append(f"explanations ({len(exps)}; * = the active explainer)" if exps else "explanations: none (not selected "
             "for explaining: see its status)")
    for e in exps:
        mark = "*" if e["active"] else " "
        name = e["explainer"] if e["explainer"] != e["explainer_fp"] else "(not in the registry)"
        L.append(f"{mark} {name} · {e.get('model') or '?'} · {e['explainer_fp']}")
        text = e["text"] if e["status"] == "ok" else f"({e['status']}: {e.get('error') or 'no explanation'})"
        L += _wrap(f'"{text}"' if e["status"] == "ok" else text, WIDTH - 4, "    ")
        if e["scores"]:
            L.append(f"    {'scorer':<13}{'metric':<10}{'value':>7} {'[95 % CI]':<13}  {'control [95 % CI]':<20} "
                     f"{'real−ctl':>7}")
            L += [_score_line(s) for s in e["scores"]]
    L.append("")
    n = sum(rec["histogram"] or [])
    L.append(f"activation histogram ({n:,} firings; 16 bins over (0, max] merged in pairs)")
    L += histogram_lines(rec["histogram"], rec["max_activation"])
    L.append("")
    exs = rec["examples"]
    if exs:
        L.append("top examples by quantile (q0 = strongest; train and test windows)")
        quantiles = sorted({e["quantile"] for e in exs})
        for q in quantiles:
            best = sorted([e for e in exs if e["quantile"] == q], key=lambda e: -(e["max"] or 0))[:per_quantile]
            for e in best:
                head = f"  q{q} {number(e['max'], 2):>6} "
                L.append(head + highlight(e["tokens"], colour, WIDTH - len(head), rec["max_activation"]))
    neg = rec["non_activating"][:n_negative]
    if neg:
        L.append("")
        L.append("non-activating examples (the latent never fires here)")
        for e in neg:
            src = e["source"] or "random"
            if e.get("neighbour") is not None:
                src += f" of {e['neighbour']}"
            head = f"  {src[:16]:<16} "
            L.append(head + highlight(e["tokens"], colour, WIDTH - len(head)))
    if rec["neighbours"]:
        L.append("")
        kind = {"decoder": "decoder cosine", "cooccurrence": "co-occurrence Jaccard"}.get(rec["neighbours"][0]["kind"],
                                                                                           rec["neighbours"][0]["kind"])
        items = [f"{n['latent']} ({n['similarity']:.2f})" for n in rec["neighbours"]]
        L += _wrap(", ".join(items), WIDTH - 4, "    ", first_line=f"neighbours by {kind}: ")
    return "\n".join(line.rstrip() for line in L)


def _wrap(text: str, width: int, indent: str, first_line: str | None = None) -> list[str]:
    import textwrap

    if first_line is not None:
        lines = textwrap.wrap(text, width=WIDTH, initial_indent=first_line, subsequent_indent=indent)
        return lines or [first_line]
    return textwrap.wrap(text, width=width + len(indent), initial_indent=indent, subsequent_indent=indent) or [indent]
