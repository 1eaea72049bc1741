"""Small server-side charts as inline SVG strings, with no dependency.

Three charts for the HTML report (``modeltrace.drift.html``):

* :func:`sparkline`: the history of a score, with its threshold as a dashed line;
* :func:`paired_histogram`: reference vs current share per bin, bins labelled;
* :func:`line_chart`: one or more series over time (realized and estimated
  performance), gaps where a value is missing, an optional threshold line.

Every chart is an ``<svg role="img">`` with ``<title>`` and ``<desc>`` elements
referenced by ``aria-labelledby``, so screen readers announce it; every text
that comes from data is escaped. Non-finite values are treated as missing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape

REFERENCE_COLOUR = "#7b8da6"
CURRENT_COLOUR = "#e07b24"
LINE_COLOURS = ("#1f6fb2", "#2c8a4b", "#7a4fb0", "#8a6d1f")
THRESHOLD_COLOUR = "#c0392b"
AXIS_COLOUR = "#888888"
FONT = 'font-family="system-ui, sans-serif"'


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_number(value: float | None, digits: int = 3) -> str:
    """A short human form of a number (an en dash when missing)."""
    number = _clean(value)
    if number is None:
        return "\u2013"
    if number == 0:
        return "0"
    if abs(number) >= 1e12 or abs(number) < 1e-3:
        return f"{number:.{digits - 1}e}"
    if abs(number) >= 10**digits or number.is_integer():
        return f"{number:,.0f}"
    return f"{number:.{digits}g}"


def format_time(value: float | str | None) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM`` UTC; strings are returned as they are."""
    if value is None:
        return "\u2013"
    if isinstance(value, str):
        return value
    number = _clean(value)
    if number is None:
        return "\u2013"
    return datetime.fromtimestamp(number, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _chart_id(*parts: object) -> str:
    return "c" + hashlib.sha1(repr(parts).encode()).hexdigest()[:10]


def _open(width: int, height: int, title: str, desc: str, chart_id: str, css: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d">'
        f'<title id="{chart_id}-t">{escape(title)}</title>'
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>'
    )


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Callable[[float], float]:
    span = hi - lo if hi > lo else 1.0

    def to_px(v: float) -> float:
        return out_lo + (v - lo) / span * (out_hi - out_lo)

    return to_px


def _path(
    points: Sequence[tuple[float, float | None]],
    x_px: Callable[[float], float],
    y_px: Callable[[float], float],
) -> list[str]:
    """SVG path data, one ``M``-started run per stretch without missing values."""
    runs: list[str] = []
    current: list[str] = []
    for x, y in points:
        if y is None:
            if current:
                runs.append(" ".join(current))
                current = []
            continue
        cmd = "M" if not current else "L"
        current.append(f"{cmd}{x_px(x):.1f},{y_px(y):.1f}")
    if current:
        runs.append(" ".join(current))
    return runs


def sparkline(
    values: Sequence[float | None],
    *,
    title: str,
    threshold: float | None = None,
    width: int = 120,
    height: int = 28,
) -> str:
    """History of a score (oldest first) as a small line, threshold dashed, last point marked."""
    clean = [_clean(v) for v in values]
    known = [v for v in clean if v is not None]
    limit = _clean(threshold)
    cid = _chart_id("spark", title, clean, limit)
    if known:
        desc = (
            f"{len(known)} values from {format_number(known[0])} to {format_number(known[-1])}"
            f", min {format_number(min(known))}, max {format_number(max(known))}"
        )
    else:
        desc = "no history yet"
    if limit is not None:
        desc += f"; threshold {format_number(limit)}"
    parts = [_open(width, height, title, desc, cid, "mt-spark")]
    lo = min([*known, *([limit] if limit is not None else [])], default=0.0)
    hi = max([*known, *([limit] if limit is not None else [])], default=1.0)
    pad = 3.0
    y_px = _scale(lo, hi, height - pad, pad)
    x_px = _scale(0, max(len(clean) - 1, 1), pad, width - pad)
    if limit is not None:
        y = y_px(limit)
        parts.append(
            f'<line x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="{THRESHOLD_COLOUR}" '
            'stroke-width="1" stroke-dasharray="3 2"/>'
        )
    indexed = [(float(i), v) for i, v in enumerate(clean)]
    for run in _path(indexed, x_px, y_px):
        parts.append(f'<path d="{run}" fill="none" stroke="{LINE_COLOURS[0]}" stroke-width="1.5"/>')
    if clean and clean[-1] is not None:
        parts.append(
            f'<circle cx="{x_px(len(clean) - 1):.1f}" cy="{y_px(clean[-1]):.1f}" r="2.5" '
            f'fill="{LINE_COLOURS[0]}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _shares(counts: Sequence[float]) -> list[float]:
    clean = [max(_clean(c) or 0.0, 0.0) for c in counts]
    total = sum(clean)
    return [c / total if total > 0 else 0.0 for c in clean]


def _short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def paired_histogram(
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    title: str,
    width: int = 420,
    height: int = 180,
) -> str:
    """Reference vs current share of rows per bin, side by side, bins labelled below.

    Counts may be weighted; each side is normalised to shares so windows of
    different sizes compare. Long or numerous labels are shortened on the axis
    and given in full in each bin's tooltip and in the description.
    """
    if not len(labels) == len(reference) == len(current):
        raise ValueError(
            f"labels, reference and current must have one entry per bin, got "
            f"{len(labels)}, {len(reference)} and {len(current)}"
        )
    names = [str(label) for label in labels]
    ref, cur = _shares(reference), _shares(current)
    cid = _chart_id("hist", title, names, ref, cur)
    summary = "; ".join(
        f"{n}: reference {r:.1%}, current {c:.1%}" for n, r, c in zip(names, ref, cur, strict=True)
    )
    parts = [_open(width, height, title, f"Share of rows per bin. {summary}", cid, "mt-hist")]
    left, right, top, bottom = 36.0, 6.0, 18.0, 30.0
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([*ref, *cur, 1e-9])
    y_px = _scale(0.0, peak, top + plot_h, top)
    parts.append(
        f'<g {FONT} font-size="10" fill="#333">'
        f'<rect x="{left}" y="4" width="9" height="9" fill="{REFERENCE_COLOUR}"/>'
        f'<text x="{left + 12}" y="12">reference</text>'
        f'<rect x="{left + 72}" y="4" width="9" height="9" fill="{CURRENT_COLOUR}"/>'
        f'<text x="{left + 84}" y="12">current</text>'
        f'<text x="{left - 4}" y="{top + 4:.1f}" text-anchor="end">{peak:.0%}</text>'
        f'<text x="{left - 4}" y="{top + plot_h:.1f}" text-anchor="end">0%</text></g>'
    )
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{AXIS_COLOUR}"/>'
    )
    n = max(len(names), 1)
    slot = plot_w / n
    bar = max(slot * 0.4, 0.5)
    every = max(1, math.ceil(n / max(int(plot_w // 42), 1)))
    max_chars = max(3, int(slot * every // 6))
    for i, (name, r, c) in enumerate(zip(names, ref, cur, strict=True)):
        x0 = left + i * slot + slot * 0.1
        tip = escape(f"{name}: reference {r:.1%}, current {c:.1%}")
        parts.append(f"<g><title>{tip}</title>")
        for offset, share, colour in ((0.0, r, REFERENCE_COLOUR), (bar, c, CURRENT_COLOUR)):
            y = y_px(share)
            parts.append(
                f'<rect x="{x0 + offset:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{top + plot_h - y:.1f}" fill="{colour}"/>'
            )
        parts.append("</g>")
        if i % every == 0:
            parts.append(
                f'<text {FONT} font-size="9" fill="#333" x="{left + (i + 0.5) * slot:.1f}" '
                f'y="{top + plot_h + 12:.1f}" text-anchor="middle">'
                f"{escape(_short(name, max_chars))}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Series:
    """One line of a :func:`line_chart`: ``points`` are ``(epoch seconds, value or None)``."""

    name: str
    points: Sequence[tuple[float, float | None]]
    dashed: bool = False


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    threshold: float | None = None,
    y_label: str = "",
    width: int = 560,
    height: int = 200,
) -> str:
    """Series over time on shared axes, with a legend and an optional threshold line."""
    cleaned = [
        (s, sorted(((float(t), _clean(v)) for t, v in s.points), key=lambda p: p[0]))
        for s in series
    ]
    xs = [t for _, pts in cleaned for t, _ in pts]
    ys = [v for _, pts in cleaned for _, v in pts if v is not None]
    limit = _clean(threshold)
    cid = _chart_id("line", title, [(s.name, pts) for s, pts in cleaned], limit)
    desc_parts = []
    for s, pts in cleaned:
        values = [v for _, v in pts if v is not None]
        if values:
            desc_parts.append(
                f"{s.name}: {len(values)} points, latest {format_number(values[-1])}, "
                f"min {format_number(min(values))}, max {format_number(max(values))}"
            )
        else:
            desc_parts.append(f"{s.name}: no data")
    if limit is not None:
        desc_parts.append(f"threshold {format_number(limit)}")
    parts = [_open(width, height, title, "; ".join(desc_parts), cid, "mt-line")]
    left, right, top, bottom = 48.0, 10.0, 22.0, 24.0
    lo = min([*ys, *([limit] if limit is not None else [])], default=0.0)
    hi = max([*ys, *([limit] if limit is not None else [])], default=1.0)
    pad = (hi - lo) * 0.08 or 0.05
    lo, hi = lo - pad, hi + pad
    y_px = _scale(lo, hi, height - bottom, top)
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x_px = _scale(x_lo, x_hi, left, width - right)
    parts.append(
        f'<g {FONT} font-size="10" fill="#333">'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{escape(format_number(hi))}</text>'
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">'
        f"{escape(format_number(lo))}</text>"
        f'<text x="{left}" y="{height - 6}">{escape(format_time(x_lo) if xs else "")}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">'
        f"{escape(format_time(x_hi) if xs else '')}</text>"
    )
    if y_label:
        parts.append(f'<text x="4" y="12">{escape(y_label)}</text>')
    legend_x = left + 90
    for i, (s, _) in enumerate(cleaned):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(
            f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="8" y2="8" stroke="{colour}" '
            f'stroke-width="2"{dash}/><text x="{legend_x + 22}" y="12">{escape(s.name)}</text>'
        )
        legend_x += 30 + 7 * len(s.name)
    parts.append("</g>")
    parts.append(
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="{AXIS_COLOUR}"/>'
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" '
        f'stroke="{AXIS_COLOUR}"/>'
    )
    if limit is not None:
        y = y_px(limit)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{THRESHOLD_COLOUR}" stroke-dasharray="4 3"><title>threshold '
            f"{escape(format_number(limit))}</title></line>"
            f'<text {FONT} font-size="9" fill="{THRESHOLD_COLOUR}" x="{width - right - 2}" '
            f'y="{y - 3:.1f}" text-anchor="end">threshold {escape(format_number(limit))}</text>'
        )
    for i, (s, pts) in enumerate(cleaned):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        for run in _path(pts, x_px, y_px):
            parts.append(f'<path d="{run}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for t, v in pts:
            if v is not None:
                parts.append(
                    f'<circle cx="{x_px(t):.1f}" cy="{y_px(v):.1f}" r="2.5" fill="{colour}">'
                    f"<title>{escape(s.name)} {escape(format_time(t))}: "
                    f"{escape(format_number(v))}</title></circle>"
                )
    parts.append("</svg>")
    return "".join(parts)
