"""What a figure must pass before a reader sees it: every title, axis label, tick label and
legend inside the canvas, no two tick labels of one axis on top of each other, no two titles or
axis labels on top of each other (a wide panel title runs into its neighbour's), and legends
that speak in human labels (not a table's column names).

Checked on the drawn figure (matplotlib's window extents, in pixels), so it catches what the
eye would: e.g. a log axis over less than two decades labels its minor ticks
(``2×10⁰ 3×10⁰ 4×10⁰ …``) until they run into one another.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backend_bases import RendererBase
from matplotlib.text import Text
from matplotlib.transforms import Bbox

TOLERANCE = 1.0
"""Pixels a text may pass the canvas's edge or touch its neighbour by (anti-aliasing)."""
MATH = re.compile(r"\$[^$]*\$")
"""TeX math (``$\\lambda_{\\max}$``): its underscores are subscripts, not column names."""


def _shown(text: Text | None) -> bool:
    return text is not None and text.get_visible() and bool(text.get_text().strip())


def _titles_and_labels(fig: plt.Figure) -> Iterator[tuple[str, Text]]:
    """The figure's title, then per axes its titles and axis labels, each with a name for the
    report."""
    if _shown(fig._suptitle):
        yield "figure title", fig._suptitle
    for i, ax in enumerate(fig.axes):
        for name, text in (("title", ax.title), ("left title", ax._left_title),
                           ("right title", ax._right_title), ("x label", ax.xaxis.label),
                           ("y label", ax.yaxis.label)):  # fmt: skip
            if _shown(text):
                yield f"axes {i} {name} {text.get_text()!r}", text


def _tick_labels(ax: plt.Axes, axis: str) -> list[Text]:
    """The tick labels of ``ax``'s ``axis`` (``"x"``, ``"y"``) that are drawn: major and minor,
    visible, non-empty and inside the axes' view."""
    along = getattr(ax, f"{axis}axis")
    low, high = sorted(along.get_view_interval())
    slack = 1e-9 * (high - low)
    ticks = [*along.get_major_ticks(), *along.get_minor_ticks()]
    return [tick.label1 for tick in ticks
            if _shown(tick.label1) and tick.get_visible()
            and low - slack <= tick.get_loc() <= high + slack]  # fmt: skip


def _outside(box: Bbox, canvas: Bbox) -> bool:
    return (box.x0 < canvas.x0 - TOLERANCE or box.y0 < canvas.y0 - TOLERANCE
            or box.x1 > canvas.x1 + TOLERANCE or box.y1 > canvas.y1 + TOLERANCE)  # fmt: skip


def _overlap(a: Bbox, b: Bbox) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > TOLERANCE
            and min(a.y1, b.y1) - max(a.y0, b.y0) > TOLERANCE)  # fmt: skip


def _labels_overlap(a: Text, b: Text, renderer: RendererBase) -> bool:
    """Whether two tick labels cover one another. Slanted labels (rotated, not by a multiple of
    90°) have upright boxes that overlap when the text does not: two rectangles at the same
    angle overlap when their centres lie closer, along the text and across it, than their
    half sizes add up to (the separating axes of two rectangles are their own sides)."""
    box_a, box_b = a.get_window_extent(renderer), b.get_window_extent(renderer)
    angle = a.get_rotation()
    if angle % 90 == 0 or angle != b.get_rotation():
        return _overlap(box_a, box_b)
    theta = np.radians(angle)
    along, across = (
        np.array([np.cos(theta), np.sin(theta)]),
        np.array([-np.sin(theta), np.cos(theta)]),
    )
    shift = (
        np.array(
            [box_b.x0 + box_b.x1 - box_a.x0 - box_a.x1, box_b.y0 + box_b.y1 - box_a.y0 - box_a.y1]
        )
        / 2
    )  # centre to centre
    sizes = [renderer.get_text_width_height_descent(t.get_text(), t.get_fontproperties(),
                                                    ismath="$" in t.get_text())[:2]
             for t in (a, b)]  # fmt: skip
    half_width, half_height = (sizes[0][0] + sizes[1][0]) / 2, (sizes[0][1] + sizes[1][1]) / 2
    return (abs(shift @ along) < half_width - TOLERANCE
            and abs(shift @ across) < half_height - TOLERANCE)  # fmt: skip


def broken_math(text: str) -> bool:
    """Whether a line of ``text`` has an unpaired ``$``: matplotlib reads math line by line, so
    a formula wrapped over two lines is drawn as raw TeX (``$\\cos(g(s_t),\\``)."""
    return any(line.replace(r"\$", "").count("$") % 2 for line in text.split("\n"))


def unreadable_label(text: str) -> str | None:
    """Why ``text`` is no human legend label (empty, matplotlib's hidden ``_…`` names, or a
    column name such as ``rho_label``: an underscore outside TeX math), else ``None``."""
    if not text.strip():
        return "empty"
    if text.startswith("_"):
        return "a hidden (underscore) name"
    if "_" in MATH.sub("", text):
        return "a column name (underscore outside math)"
    return None


def layout_problems(fig: plt.Figure) -> list[str]:
    """Draw ``fig`` and list what a reader could not read: a title, axis label, tick label or
    legend outside the canvas, two tick labels of one axis overlapping, two titles or axis
    labels (of any panels) overlapping, a legend entry or title that is not a human label
    (:func:`unreadable_label`). Empty: the figure passes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    named = list(_titles_and_labels(fig))
    problems = [f"{name} is outside the canvas" for name, text in named
                if _outside(text.get_window_extent(renderer), canvas)]  # fmt: skip
    problems += [f"{name} has broken math" for name, text in named
                 if broken_math(text.get_text())]  # fmt: skip
    boxes = [(name, text.get_window_extent(renderer)) for name, text in named]
    problems += [f"{boxes[a][0]} and {boxes[b][0]} overlap"
                 for a in range(len(boxes)) for b in range(a + 1, len(boxes))
                 if _overlap(boxes[a][1], boxes[b][1])]  # fmt: skip
    for i, ax in enumerate(fig.axes):
        for axis in ("x", "y"):
            labels = _tick_labels(ax, axis)
            boxes = [label.get_window_extent(renderer) for label in labels]
            problems += [f"axes {i} {axis} tick label {label.get_text()!r} is outside the canvas"
                         for label, box in zip(labels, boxes) if _outside(box, canvas)]  # fmt: skip
            problems += [f"axes {i} {axis} tick labels {labels[a].get_text()!r} and "
                         f"{labels[b].get_text()!r} overlap"
                         for a in range(len(labels)) for b in range(a + 1, len(labels))
                         if _labels_overlap(labels[a], labels[b], renderer)]  # fmt: skip
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for legend in [*legends, *fig.legends]:
        if _outside(legend.get_window_extent(renderer), canvas):
            problems.append("a legend is outside the canvas")
        entries = [t.get_text() for t in legend.get_texts()]
        title = legend.get_title().get_text()
        for text in entries + ([title] if title.strip() else []):
            why = unreadable_label(text)
            if why is not None:
                problems.append(f"legend label {text!r} is {why}")
    return problems
