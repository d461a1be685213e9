"""The plots of `kagent report`, drawn as inline SVG: the best-speedup curve, the lineage
graph coloured by verdict and the verdict counts. Everything written into the SVG from an
archive goes through `esc`."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

# Verdict colours (fill, text drawn on it) live in agent.present, the one place for them.
from kagent.agent.present import OTHER_COLOUR, STATUS_COLOURS, speedup_text

if TYPE_CHECKING:
    from kagent.agent.report import Node, RunData

STATUS_ORDER = list(STATUS_COLOURS)
CURVE_COLOUR = "#1f5fbf"  # the best-so-far line
POINT_COLOUR = "#9ab6e0"  # every timed candidate's own speedup
BEST_RING = "#111111"


def esc(value: Any) -> str:
    """Text or attribute value, escaped for HTML (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def colour(status: str) -> tuple[str, str]:
    """The (fill, text) colours of a status, grey for one without its own."""
    return STATUS_COLOURS.get(status, OTHER_COLOUR)


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number (bools excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# ---------------------------------------------------------------- SVG helpers


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high`."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < high - 1e-12:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt_tick(value: float) -> str:
    return f"{value:g}"


def _svg_open(kind: str, width: float, height: float, label: str) -> str:
    return (f'<svg class="plot plot-{kind}" data-plot="{kind}" viewBox="0 0 {_num(width)} {_num(height)}" '
            f'width="{_num(width)}" height="{_num(height)}" role="img" aria-label="{esc(label)}">'
            f'<title>{esc(label)}</title>')


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start", extra: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}"{klass}{extra}>{esc(text)}</text>'


# ---------------------------------------------------------------- the curve


CURVE_LABELS = {  # mode -> (what the plot shows, its y axis, a warning drawn on it)
    "speedup": ("best speedup so far over candidates", "best speedup (x)", ""),
    "untimed": ("best fitness so far over candidates (not timed)", "best fitness (not timed)",
                "not timed: showing best fitness"),
    "failing": ("best fitness so far over candidates (no correct candidate)", "best fitness",
                "no correct candidate yet: showing best fitness"),
    "empty": ("no candidate evaluated yet", "", ""),
}


def curve_series(nodes: list[Node]) -> tuple[str, list[tuple[int, float]], list[tuple[int, float]]]:
    """(mode, best-so-far points, each candidate's own value), x = candidate number. mode:
    "speedup" when some correct candidate's timing was a performance measurement (the values are
    those speedups); otherwise the values are fitness (agent.selection): "untimed" when candidates
    were correct but none timed, "failing" when none was correct, "empty" when none was evaluated."""
    timed = [n for n in nodes if n.status == "correct" and n.timed and n.speedup is not None]
    if timed:
        pick = {n.id: n.speedup for n in timed}
        mode = "speedup"
    else:
        pick = {n.id: n.fitness for n in nodes if n.fitness is not None}
        mode = "empty" if not pick else "untimed" if any(n.status == "correct" for n in nodes) else "failing"
    best, steps, own = None, [], []
    for node in nodes:
        value = pick.get(node.id)
        if value is not None:
            own.append((node.number, value))
            best = value if best is None else max(best, value)
        if best is not None:
            steps.append((node.number, best))
    return mode, steps, own


def curve_svg(data: RunData, width: float = 600, height: float = 300) -> str:
    """The best-so-far curve as inline SVG (width and height in CSS px): best speedup, or best fitness
    when nothing was timed, over candidates in creation order, with each timed candidate's own
    speedup as a dot."""
    mode, steps, own = curve_series(data.nodes)
    what, y_label, warning = CURVE_LABELS[mode]
    left, right, top, bottom = 58, 18, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(data.nodes), 1)
    values = [v for _, v in own] + ([1.0] if mode == "speedup" else [])
    y_ticks = nice_ticks(max(values) * 1.08 if values else 1.0)
    y_max = y_ticks[-1]

    def sx(number: float) -> float:  # candidates 1..n, half a step of margin on each side
        return left + (number - 0.5) / n * plot_w

    def sy(value: float) -> float:
        return top + plot_h - max(value, 0.0) / y_max * plot_h

    out = [_svg_open("curve", width, height, f"{data.task_name}: {what}")]
    out.append(f'<rect x="{left}" y="{top}" width="{_num(plot_w)}" height="{_num(plot_h)}" class="frame"/>')
    for tick in y_ticks:
        y = sy(tick)
        out.append(f'<line x1="{left}" x2="{_num(left + plot_w)}" y1="{_num(y)}" y2="{_num(y)}" class="grid"/>')
        out.append(_text(left - 6, y + 4, _fmt_tick(tick), "tick", "end"))
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 10**9) if n / s <= 12)
    for number in range(1, n + 1):
        if number == 1 or number % step == 0:
            out.append(_text(sx(number), top + plot_h + 16, str(number), "tick", "middle"))
    out.append(_text(left + plot_w / 2, height - 6, "candidate", "axis", "middle"))
    out.append(_text(14, top + plot_h / 2, y_label, "axis", "middle",
                     f' transform="rotate(-90 14 {_num(top + plot_h / 2)})"'))
    if mode == "speedup":
        y = sy(1.0)
        out.append(f'<line x1="{left}" x2="{_num(left + plot_w)}" y1="{_num(y)}" y2="{_num(y)}" class="parity"/>')
        out.append(_text(left + plot_w - 4, y - 5, "eager PyTorch (1x)", "note", "end"))
    if mode == "empty":
        out.append(_text(left + plot_w / 2, top + plot_h / 2, "no candidate evaluated yet", "empty", "middle"))
    for number, value in own:
        out.append(f'<circle cx="{_num(sx(number))}" cy="{_num(sy(value))}" r="3.5" class="own">'
                   f'<title>{esc(f"candidate {number}: {value:.3g}")}</title></circle>')
    if steps:
        path = f"M{_num(sx(steps[0][0]))},{_num(sy(steps[0][1]))}"
        for number, value in steps[1:]:
            path += f" H{_num(sx(number))} V{_num(sy(value))}"
        out.append(f'<path d="{path}" class="best-line"/>')
        previous = None
        for number, value in steps:
            if value != previous:
                out.append(f'<circle cx="{_num(sx(number))}" cy="{_num(sy(value))}" r="4.5" class="best-point">'
                           f'<title>{esc(f"best after candidate {number}: {value:.3g}")}</title></circle>')
            previous = value
    if warning:
        out.append(_text(left + 8, top + 16, warning, "warn"))
    out.append("</svg>")
    return "".join(out)


def curve_caption(data: RunData) -> str:
    """The sentence under the curve: what it shows and where it ends."""
    mode, steps, _ = curve_series(data.nodes)
    if mode == "speedup":
        return (f"Best speedup over eager PyTorch after each candidate (correct, timed candidates only): "
                f"{speedup_text(steps[-1][1])} after {len(data.nodes)} candidates. Light dots: each timed candidate.")
    if mode == "untimed":
        return ("Not timed: no candidate's timing was a performance measurement on this device "
                "(e.g. an interpreter or compile-only check), so this shows the best fitness so far "
                "(correct = 2, failures below 0.5) instead of a speedup.")
    if mode == "failing":
        return ("No correct candidate yet, so no speedup: this shows the best fitness so far "
                "(failures score below 0.5: compiled but wrong above what did not compile).")
    return "No candidate has been evaluated yet."


# ---------------------------------------------------------------- the lineage graph


def lineage_legend(data: RunData) -> str:
    """The lineage graph's key, in HTML above the graph (it stays readable however wide the graph)."""
    items = [f'<span><i class="dot" style="background:{colour(s)[0]}"></i>{esc(s)} ({c})</span>'
             for s, c in data.counts().items()]
    ids = {n.id for n in data.nodes}
    operations = {n.operation for n in data.nodes if n.parent_id in ids}
    if operations - {"repair"}:
        items.append('<span><i class="line"></i>refine: parent → child</span>')
    if "repair" in operations:
        items.append('<span><i class="line dashed"></i>repair: parent → child</span>')
    if data.best is not None:
        items.append('<span><i class="ring"></i>best kernel</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def lineage_svg(data: RunData, prefix: str, width: float = 1080, compact: bool = False) -> str:
    """One node per candidate: x by creation order, y by depth (drafts on top, a child one row
    below its parent); edges parent -> child, dashed for repairs; the best kernel ringed. The
    graph is at least 12 px (9 when compact) a candidate wide: a long run scrolls sideways rather than
    shrinks."""
    nodes = data.nodes
    label = f"{data.task_name}: lineage of {len(nodes)} candidates, coloured by verdict"
    if not nodes:
        return "".join([_svg_open("lineage", 320, 60, label),
                        _text(160, 34, "no candidates yet", "empty", "middle"), "</svg>"])
    left, right, top = 62, 16, 8
    row_h = 34 if compact else 44
    col_w = min(52.0, max(9.0 if compact else 12.0, (width - left - right) / len(nodes)))
    width = left + right + col_w * len(nodes)
    radius = max(3.6, min(10.0 if compact else 13.0, col_w * 0.42, row_h * 0.3))
    depth_max = max(n.depth for n in nodes)
    height = top * 2 + (depth_max + 1) * row_h

    def pos(node: Node) -> tuple[float, float]:
        return left + (node.number - 0.5) * col_w, top + node.depth * row_h + row_h / 2

    out = [_svg_open("lineage", width, height, label)]
    for depth in range(depth_max + 1):
        y = top + depth * row_h + row_h / 2
        out.append(f'<line x1="{left - 4}" x2="{_num(width - right)}" y1="{_num(y)}" y2="{_num(y)}" class="lane"/>')
        out.append(_text(left - 10, y + 4, "drafts" if depth == 0 else f"depth {depth}", "tick", "end"))
    by_id = {n.id: n for n in nodes}
    faint = ' stroke-opacity="0.55"' if len(nodes) > 40 else ""
    for node in nodes:
        parent = by_id.get(node.parent_id)
        if parent is None:
            continue
        (px, py), (cx, cy) = pos(parent), pos(node)
        bend = (cx - px) / 2
        dash = ' stroke-dasharray="5 3"' if node.operation == "repair" else ""
        out.append(f'<path d="M{_num(px)},{_num(py)} C{_num(px + bend)},{_num(py)} {_num(cx - bend)},{_num(cy)} '
                   f'{_num(cx)},{_num(cy)}" class="edge"{dash}{faint}/>')
    for node in nodes:
        x, y = pos(node)
        fill, ink = colour(node.status)
        speed = f", {speedup_text(node.speedup)}" + ("" if node.timed else " (not timed)") if node.speedup is not None else ""
        tip = (f"#{node.id} {node.operation}" + (f" of #{node.parent_id}" if node.parent_id is not None else "")
               + f": {node.status}" + (f" ({node.reason})" if node.reason else "") + speed)
        pending = ' stroke-dasharray="3 2" stroke="#888888"' if node.status == "pending" else ""
        out.append(f'<a href="#{prefix}c{node.id}"><g class="node"><title>{esc(tip)}</title>')
        if node.id == data.best_id:
            out.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(radius + 3.5)}" class="best-ring" fill="none"/>')
        out.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(radius)}" fill="{fill}" class="node-ring"'
                   f'{pending}/>')
        if radius >= 8.5:
            size = 10 if node.id < 100 else 8
            out.append(f'<text x="{_num(x)}" y="{_num(y + size * 0.36)}" text-anchor="middle" class="node-id" '
                       f'fill="{ink}" font-size="{size}">{node.id}</text>')
        out.append("</g></a>")
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------- the verdict counts


def verdicts_svg(data: RunData, width: float = 420) -> str:
    """The verdict counts of a run as horizontal bars, inline SVG `width` CSS px wide."""
    counts = data.counts()
    label = f"{data.task_name}: verdict counts"
    bar_h, gap, label_w, top = 22, 8, 118, 8
    height = top * 2 + max(len(counts), 1) * (bar_h + gap)
    out = [_svg_open("verdicts", width, height, label)]
    if not counts:
        out.append(_text(width / 2, height / 2 + 4, "no candidates yet", "empty", "middle"))
    biggest = max(counts.values(), default=1)
    span = width - label_w - 56
    for row, (status, count) in enumerate(counts.items()):
        y = top + row * (bar_h + gap)
        fill, _ = colour(status)
        length = max(2.0, count / biggest * span)
        out.append(_text(label_w - 8, y + bar_h * 0.7, status, "legend", "end"))
        out.append(f'<rect x="{label_w}" y="{y}" width="{_num(length)}" height="{bar_h}" fill="{fill}" rx="2">'
                   f'<title>{esc(f"{status}: {count}")}</title></rect>')
        out.append(_text(label_w + length + 6, y + bar_h * 0.7, str(count), "count"))
    out.append("</svg>")
    return "".join(out)
