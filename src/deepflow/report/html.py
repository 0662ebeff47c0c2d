"""``deepflow report --html``: one self-contained HTML page from :class:`ReportData`.

The charts are inline SVG written here (no JavaScript, no external file, no plotting
library): the page opens offline in any browser and survives being mailed around. All text
from the scenario (its name, reasons) is HTML-escaped. The numbers come computed
(:func:`deepflow.report.data.report_data`); this module only lays them out.
"""

from __future__ import annotations

from html import escape

from deepflow.report.data import Bar, ReportData, Segment
from deepflow.units import format_time

__all__ = ["PHASE_COLORS", "render_html"]

PHASE_COLORS = {
    "F": "#4e79a7",
    "B": "#f28e2b",
    "pp": "#76b7b2",
    "dp": "#59a14f",
    "opt": "#b07aa1",
}
"""Timeline colour of each phase; others are grey. A segment of the compute stream holds
the phase's compute, tensor-parallel communication and recompute of one micro-batch and
chunk (their split is in the time breakdown above)."""

_BAR_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1")

_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.sub { color: #555; } table.kv td { padding: 2px 14px 2px 0; }
table.kv td:first-child { color: #555; } .bad { color: #b00; } .note { color: #555; }
svg text { font-family: sans-serif; font-size: 12px; fill: #222; }
"""


def _bar_chart(bars: tuple[Bar, ...], width: int = 760) -> str:
    """Horizontal bars, one per part, length proportional to its share, labelled."""
    if not bars:
        return '<p class="note">nothing to show</p>'
    row, label_w, text_w = 24, 150, 150
    plot_w = width - label_w - text_w
    top = max(b.share for b in bars) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row * len(bars) + 8}">'
    ]
    for i, b in enumerate(bars):
        y = 4 + i * row
        w = max(1.0, plot_w * b.share / top)
        color = _BAR_COLORS[i % len(_BAR_COLORS)]
        parts.append(
            f'<text x="0" y="{y + 15}">{escape(b.label)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" fill="{color}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{escape(b.text)} ({b.share:.1%})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _color(seg: Segment) -> str:
    by_category = {"pp_comm": "pp", "dp_comm": "dp", "optimizer": "opt"}
    return PHASE_COLORS.get(by_category.get(seg.category, seg.phase), "#999999")


def _timeline(data: ReportData, width: int = 1060) -> str:
    """One row per track (rank and stream), one rectangle per segment, a time axis."""
    if not data.timeline or data.simulated_step_s is None:
        return f'<p class="note">{escape(data.timeline_note or "no timeline")}</p>'
    label_w, row, axis = 230, 18, 28
    plot_w = width - label_w - 10
    span = data.simulated_step_s or 1.0
    scale = plot_w / span
    index = {t: i for i, t in enumerate(data.tracks)}
    height = row * len(data.tracks) + axis
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for track, i in index.items():
        y = i * row
        if i % 2 == 0:
            out.append(
                f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="{row}" fill="#f4f4f4"/>'
            )
        out.append(f'<text x="0" y="{y + 13}">{escape(track)}</text>')
    for seg in data.timeline:
        y = index[seg.track] * row + 2
        x = label_w + seg.start_s * scale
        w = max(0.5, (seg.end_s - seg.start_s) * scale)
        out.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 4}" fill="{_color(seg)}"/>'
        )
    y_axis = row * len(data.tracks)
    for k in range(6):
        x = label_w + plot_w * k / 5
        out.append(
            f'<line x1="{x:.1f}" y1="{y_axis}" x2="{x:.1f}" y2="{y_axis + 5}" stroke="#222"/>'
            f'<text x="{x:.1f}" y="{y_axis + 18}" text-anchor="middle">'
            f"{escape(format_time(span * k / 5)) if k else '0'}</text>"
        )
    out.append("</svg>")
    legend = " ".join(
        f'<span style="color:{c}">&#9632;</span> {escape(n)}'
        for n, c in (
            ("forward", PHASE_COLORS["F"]),
            ("backward", PHASE_COLORS["B"]),
            ("pipeline send/recv", PHASE_COLORS["pp"]),
            ("data-parallel comm.", PHASE_COLORS["dp"]),
            ("optimizer", PHASE_COLORS["opt"]),
        )
    )
    return "".join(out) + f'<p class="note">{legend}</p>'


def _nearest(data: ReportData) -> str:
    n = data.nearest
    if n is None:
        return f'<p class="note">{escape(data.nearest_note or "none")}</p>'
    error = "infeasible: " + (n.reason or "") if n.error is None else f"{n.error:+.1%}"
    predicted = "-" if n.predicted_s is None else format_time(n.predicted_s)
    rows = (
        ("data set, row", f"{n.dataset} {n.row_id}"),
        ("run", n.description),
        ("source", n.source),
        ("parameters", f"{n.parameters / 1e9:.3g} B"),
        ("accelerators", str(n.num_accelerators)),
        ("measured step", format_time(n.measured_s)),
        ("predicted step", predicted),
        ("error", error),
    )
    cells = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return (
        f'<table class="kv">{cells}</table><p class="note">Nearest: among the published '
        "step times that <code>deepflow validate</code> checks, the run on the same "
        "accelerator whose parameter count is closest on a log scale (ties: closest "
        "accelerator count). Its error is how far this model was off on that run, not an "
        "error bar for this scenario.</p>"
    )


def render_html(data: ReportData) -> str:
    """The report page of ``data``: a complete HTML document as a string."""
    p = data.prediction
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>deepflow report: {escape(data.title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(data.title)}</h1>",
        f'<p class="sub">{escape(data.subtitle)}</p>',
        f'<p class="sub">strategy: {escape(data.strategy)}</p>',
        "<h2>Prediction (closed form)</h2>",
    ]
    if not p.feasible:
        parts.append(f'<p class="bad">infeasible: {escape(p.reason or "")}</p>')
    else:
        cells = "".join(
            f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in data.headline
        )
        parts.append(f'<table class="kv">{cells}</table>')
        parts.append("<h2>Where the step time goes</h2>")
        parts.append(_bar_chart(data.time_parts))
    parts.append("<h2>Memory of the fullest device (share of its capacity)</h2>")
    parts.append(_bar_chart(data.memory_parts))
    parts.append("<h2>Pipeline timeline (event-driven simulator)</h2>")
    if data.simulated_step_s is not None:
        parts.append(
            f'<p class="sub">simulated step {escape(format_time(data.simulated_step_s))}; '
            "one row per simulated rank (one per pipeline stage) and stream</p>"
        )
    parts.append(_timeline(data))
    parts.append("<h2>Nearest published measurement</h2>")
    parts.append(_nearest(data))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
