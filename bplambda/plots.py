"""Seaborn figures used by the notebooks. Each function takes a tidy table, returns a figure.

A condition with more than ``RANGE_ONLY`` (3) seeds gets a 95% bootstrap band (or bar); with
fewer, an interval says no more than the seeds' range, so each seed is drawn instead (thin
lines, or a bar from the lowest seed to the highest), and the titles say which.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Callable, Sequence
from typing import ParamSpec

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from bplambda.analysis import by_run
from bplambda.labels import DEFAULT_VARIANT, POOLS, condition_order, conditions, with_labels
from bplambda.verdicts import RANGE_ONLY
from bplambda.wording import counted

P = ParamSpec("P")

PANEL_TITLES = {
    "alignment_synthetic": "g at every state",
    "alignment_applied": "g where the rule applies it",
    "alignment_signal": "the learning signal the RNN receives",
    "update_alignment": "the weight update",
    "future_gradient_norm": "size of the future gradient",
    "loss": "task loss",
    "val_error": "validation error",
    "val_loss": "validation loss",
    "train_loss": "training loss",
    "solved_T": "largest T solved",
    "T": "T being trained",
    "N": "pattern length N",
}
"""A panel's title, where a figure has several (the y-label says it in full)."""
TASK_NAMES = {"seq_mnist": "sequential MNIST", "pattern_generation": "pattern generation",
              "delayed_match": "delayed match-to-sample"}  # fmt: skip
"""Liu et al.'s tasks as a panel names them."""
METRIC_LABELS = {
    "alignment_synthetic": r"$\cos(g(s_t),\ \partial L_{>t}/\partial s_t)$",
    "alignment_signal": r"$\cos(\mathrm{signal}_t,\ \partial L_{>t}/\partial s_t)$",
    "alignment_applied": r"$\cos(g(s_t),\ \partial L_{>t}/\partial s_t)$ where applied",
    "lead": "BP(1) − best SG(n): alignment where applied",
    "gradient_ratio": r"$\|\partial L_{>t}/\partial s_t\|$ at t = 1 / t = T−1",
    "update_alignment": r"$\cos(\Delta\Psi,\ \Delta\Psi_\mathrm{BPTT})$",
    "future_gradient_norm": r"$\|\partial L_{>t}/\partial s_t\|$ (batch mean)",
    "loss": "task loss (batch mean)",
    "lambda_max": r"$\lambda_{\max}$ of the full loss (recurrent block)",
    "gap_test_loss": "generalisation gap: test − train loss",
    "gap_test_noisy_loss": "gap: noisy test − train loss",
    "gap_test_error": "gap: test − train error",
    "test_loss": "test loss",
    "val_error": "validation error (fraction)",
    "val_loss": "validation loss (cross-entropy, nats)",
    "train_loss": "training loss (cross-entropy, nats)",
    "T": "T being trained (steps)",
    "solved_T": "largest T solved (steps)",
    "N": "pattern length N (steps)",
    "R": "repeats R",
}
LEGEND_TITLES = {"rho_label": "fixed RNN", "T": "sequence length T"}
"""A legend's title for the column its entries come from."""
AXIS_LABELS = {"lmbda": "λ", "T": "sequence length T", "t": "time step t",
               "batch": "batch (optimiser steps)", "epoch": "epoch", "n": "window n"}  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
"""One per line of a panel, a few along each: lines that coincide (two rules at the same
curriculum level) stay visible."""
SPREADS = {
    "band": "bands: 95% bootstrap interval over seeds",
    "seeds": f"thin lines: each seed (≤ {RANGE_ONLY} seeds: no interval)",
}
"""How a line's spread over seeds is drawn, as the titles say it."""


MATH = re.compile(r"\$[^$]*\$")
UNBROKEN = "\N{NO-BREAK SPACE}"
TITLE_CHARACTERS_PER_INCH = 8
"""About how many characters of an axes title (notebook context) fit in an inch."""
TITLE_LINE_INCHES = 0.25
"""The height of a line of an axes title (notebook context)."""
REFERENCE_MARKERS = {"bptt": "o", "oracle": "X"}
"""Scatter markers of the exact rules, which share black: BPTT and the oracle apart."""


def _wrap(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters (each of its own lines wrapped apart),
    never broken inside TeX math (``$…$``): matplotlib reads math line by line, and a broken
    one is drawn as raw TeX."""
    kept = MATH.sub(lambda math: math.group().replace(" ", UNBROKEN), text)
    lines = [textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)
             for line in kept.split("\n")]  # fmt: skip
    return "\n".join(lines).replace(UNBROKEN, " ")


def _house_style(figure: Callable[P, plt.Figure]) -> Callable[P, plt.Figure]:
    """Draw ``figure`` in seaborn's whitegrid style, notebook context and deep palette, without
    touching the caller's matplotlib settings (importing this module changes nothing)."""

    @functools.wraps(figure)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> plt.Figure:
        with (
            sns.axes_style("whitegrid"),
            sns.plotting_context("notebook"),
            sns.color_palette("deep"),
        ):
            return figure(*args, **kwargs)

    return drawn


N_BOOT = 1000
"""Resamples of the bootstrap bands (as seaborn's default)."""


def bootstrap_bands(data: pd.DataFrame, keys: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """Per group of ``keys``: the mean of ``value`` and its 95% percentile-bootstrap interval
    (``N_BOOT`` resamples of the group's rows, NaN left out), as seaborn's ``errorbar=("ci",
    95)`` but all groups of a size at once, and repeatable (``seed``). Columns: ``keys``,
    ``mean``, ``low``, ``high``."""
    finite = data[data.value.notna()]
    groups = finite.groupby(list(keys), sort=True)["value"].apply(np.asarray)
    sizes = groups.map(len)
    rng = np.random.default_rng(seed)
    low, high = pd.Series(np.nan, index=groups.index), pd.Series(np.nan, index=groups.index)
    for size in sorted(sizes.unique()):
        members = sizes.index[sizes == size]
        values = np.stack(groups[members].to_list())  # (G, size)
        means = values[:, rng.integers(0, size, (N_BOOT, size))].mean(-1)  # (G, N_BOOT)
        low[members], high[members] = np.percentile(means, [2.5, 97.5], axis=1)
    return pd.DataFrame({"mean": groups.map(np.mean), "low": low, "high": high}).reset_index()


def _lines_with_bands(
    ax: plt.Axes,
    data: pd.DataFrame,
    x: str,
    hue: str,
    order: Sequence[str],
    palette: dict[str, tuple],
    legend: bool,
    styles: dict[str, str] | None = None,
) -> set[str]:
    """A line per ``hue`` value (in ``order``, coloured by ``palette``, in its line style from
    ``styles``, else solid): the mean of ``value`` over the rows at each ``x`` (with its own
    markers, each line's a fraction of a step after the previous line's, so that lines that
    coincide, e.g. two rules at the same curriculum level, still show every marker), with its
    95% bootstrap band (:func:`bootstrap_bands`), or, for a value with at most ``RANGE_ONLY``
    rows at every ``x``, each seed as a thin line. Returns how the spreads were drawn (keys of
    :data:`SPREADS`)."""
    bands = bootstrap_bands(data, [hue, x])
    sizes = data[data.value.notna()].groupby([hue, x]).size().groupby(level=0).max()
    drawn = set()
    names = [n for n in order if n in set(bands[hue])]
    for i, name in enumerate(names):
        line = bands[bands[hue] == name]
        every = max(1, len(line) // 8)
        ax.plot(line[x], line["mean"], color=palette[name], label=name,
                linestyle=(styles or {}).get(name, "-"), marker=MARKERS[i % len(MARKERS)],
                markersize=4, markevery=(i * every // len(names), every))  # fmt: skip
        if sizes[name] > RANGE_ONLY or "seed" not in data:
            ax.fill_between(line[x], line["low"], line["high"], color=palette[name], alpha=0.2,
                            linewidth=0)  # fmt: skip
            drawn.add("band")
            continue
        for _, seed in data[data[hue] == name].groupby("seed"):
            ax.plot(seed[x], seed.value, color=palette[name], linewidth=0.6, alpha=0.5)
        drawn.add("seeds")
    if legend:
        ax.legend(title=hue)
    return drawn


def _spread_note(drawn: set[str]) -> str:
    """The title's note on the lines of a figure: the mean, and how its spread was drawn."""
    return "; ".join(["lines: mean over seeds", *(SPREADS[k] for k in SPREADS if k in drawn)])


def _interval_bars(data: pd.DataFrame, x: str | list[str], y: str) -> tuple[tuple[str, int], str]:
    """seaborn's ``errorbar`` for per-condition points and the title's words for it: a 95%
    bootstrap interval, or the range of the seeds where a condition has ≤ ``RANGE_ONLY``."""
    if data[data[y].notna()].groupby(x).size().min() <= RANGE_ONLY:
        return ("pi", 100), f"bars: range of the seeds (≤ {RANGE_ONLY} seeds)"
    return ("ci", 95), "bars: 95% bootstrap interval"


LIU_COLOURS = {("mdgl", DEFAULT_VARIANT): "#d62728", ("mdgl", "cell_type"): "#ff9896",
               ("eprop", DEFAULT_VARIANT): "#9467bd",
               ("rflo", DEFAULT_VARIANT): "#e377c2"}  # fmt: skip
"""Liu et al.'s rules, a hue each (MDGL red, its cell-type approximation light red, e-prop
purple, RFLO pink), apart from one another and from the BP(λ)/SG/TBPTT pool's greens→blues,
oranges and greys."""
LINE_STYLES = {"sg": "--", "tbptt": ":", "oracle": "--"}
"""Line style by family (solid otherwise; a variant, e.g. MDGL's cell-type approximation,
dash-dotted): a rule that computes the same as another (SG(1) and BP(0); the oracle and BPTT)
is drawn dashed over it, and both stay visible."""
VARIANT_STYLE = "-."


def _palette(data: pd.DataFrame) -> dict[str, tuple]:
    """The house colours of the conditions of ``data`` (with their labels): greens→blues for
    BP(λ), oranges for SG(n), greys for TBPTT(n), a hue each for Liu et al.'s rules
    (:data:`LIU_COLOURS`), black for the exact ones."""
    ordered = conditions(data)
    palette: dict[str, tuple] = {}
    for family, cmap in (("bp_lambda", "viridis_r"), ("sg", "Oranges"), ("tbptt", "Greys")):
        members = ordered.condition[ordered.family == family].tolist()
        colours = sns.color_palette(cmap, len(members) + (0 if family == "bp_lambda" else 1))
        palette.update(zip(members, colours[-len(members) :] if members else []))
    for row in ordered.itertuples():
        colour = LIU_COLOURS.get((row.family, row.variant))
        if colour is not None:
            palette[row.condition] = sns.color_palette([colour])[0]
        elif row.family in ("bptt", "oracle"):
            palette[row.condition] = (0.0, 0.0, 0.0)
    return palette


def _line_styles(data: pd.DataFrame) -> dict[str, str]:
    """The line style of each condition of ``data`` (:data:`LINE_STYLES`)."""
    return {row.condition: VARIANT_STYLE if row.variant != DEFAULT_VARIANT
            else LINE_STYLES.get(row.family, "-")
            for row in conditions(data).itertuples()}  # fmt: skip


@_house_style
def lines(
    data: pd.DataFrame,
    x: str,
    metrics: Sequence[str],
    title: str,
    log_y: Sequence[str] = (),
    xlabel: str | None = None,
    hue: str = "condition",
    hue_title: str | None = None,
) -> plt.Figure:
    """One panel per metric (titled by :data:`PANEL_TITLES` where there are several): value vs
    ``x``, a line per ``hue`` value (conditions by default, in the house colours and line
    styles) with a band over seeds; ``hue_title`` names the legend (default: ``hue`` as
    :data:`LEGEND_TITLES` says it)."""
    if hue == "condition":
        order, palette, styles = condition_order(data), _palette(data), _line_styles(data)
    else:
        order, styles = sorted(data[hue].unique()), None
        palette = dict(zip(order, sns.color_palette("viridis", len(order))))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4), squeeze=False)
    drawn: set[str] = set()
    for ax, metric in zip(axes[0], metrics):
        subset = data[data.metric == metric]
        drawn |= _lines_with_bands(ax, subset, x, hue, order, palette, legend=ax is axes[0][-1],
                                   styles=styles)  # fmt: skip
        ax.set(ylabel=_wrap(METRIC_LABELS.get(metric, metric), 32),
               xlabel=xlabel or AXIS_LABELS.get(x, x))  # fmt: skip
        if len(metrics) > 1:
            ax.set_title(PANEL_TITLES.get(metric, metric))
        if metric in log_y:
            ax.set_yscale("log")
    if axes[0][-1].get_legend() is not None:
        axes[0][-1].get_legend().set_title(hue_title or LEGEND_TITLES.get(hue, hue))
    width = 32 * len(metrics) + 22  # characters that fit over the panels and the legend
    fig.suptitle(_wrap(f"{title} ({_spread_note(drawn)})", width), fontsize="medium")
    _legend_right(fig, axes[0][-1])
    return fig


def lead_vs_length(lead: pd.DataFrame, title: str) -> plt.Figure:
    """BP(1)'s lead over the best bootstrapping SG(n) against T, a line per spectral radius
    (``rho_label``), each point labelled with the window n that was best there (``best_n``)."""
    fig = lines(lead, x="T", metrics=["lead"], hue="rho_label", title=title)
    ax = fig.axes[0]
    legend = ax.get_legend()
    colours = {text.get_text(): handle.get_color()
               for text, handle in zip(legend.get_texts(), legend.legend_handles)}  # fmt: skip
    means = lead.groupby(["rho_label", "T"]).agg(value=("value", "mean"), n=("best_n", "first"))
    lines_in_order = list(dict.fromkeys(means.index.get_level_values(0)))
    for (label, T), row in means.iterrows():
        offset = 9 * lines_in_order.index(label) - 9  # apart where the lines meet
        ax.annotate(f"n={row.n:g}", (T, row.value), textcoords="offset points",
                    xytext=(5, offset), fontsize="x-small",
                    color=colours.get(label, "0.25"))  # fmt: skip
    fig.tight_layout()
    return fig


@_house_style
def heatmap(summary: pd.DataFrame, index: str, columns: str, title: str, label: str) -> plt.Figure:
    """A mean-value heatmap, e.g. final alignment over λ (rows) × T (columns)."""
    table = summary.pivot(index=index, columns=columns, values="mean").sort_index(ascending=False)
    fig, ax = plt.subplots(figsize=(1.2 * table.shape[1] + 2.5, 0.42 * table.shape[0] + 1.5))
    sns.heatmap(table, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax,
                cbar_kws={"label": label})  # fmt: skip
    ax.set(title=f"{title}\n(mean over seeds)", xlabel=AXIS_LABELS.get(columns, columns),
           ylabel=AXIS_LABELS.get(index, index))  # fmt: skip
    fig.tight_layout()
    return fig


@_house_style
def points(data: pd.DataFrame, x: str, y: str, title: str, ylabel: str) -> plt.Figure:
    """Mean and interval over seeds per condition (:func:`_interval_bars`), with each seed as a
    dot."""
    order = condition_order(data)
    palette = _palette(data)
    errorbar, bars = _interval_bars(data, x, y)
    width = 0.7 * len(order) + 2.5  # inches
    fig, ax = plt.subplots(figsize=(width, 4))
    sns.pointplot(data, x=x, y=y, order=order, hue=x, palette=palette, errorbar=errorbar,
                  linestyle="none", markers="D", ax=ax, legend=False)  # fmt: skip
    sns.stripplot(data, x=x, y=y, order=order, color="0.4", size=3, alpha=0.6, ax=ax)
    ax.set(
        xlabel="",
        ylabel=ylabel,
        title=_wrap(
            f"{title}\n(diamonds: mean over seeds; {bars}; dots: seeds)",
            int(TITLE_CHARACTERS_PER_INCH * width),
        ),
    )
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


@_house_style
def window_bounds(bounds: pd.DataFrame, windows: Sequence[int], title: str) -> plt.Figure:
    """n*(T) per ρ (``rho_label``): a bar from ``n_star_low`` to ``n_star_high`` at each T,
    the line through the upper bounds; a bound no window reached (``inf``) is drawn above the
    largest window, at the dotted line."""
    beyond = 1.5 * max(windows)
    fig, ax = plt.subplots(figsize=(6, 4))
    shift = 0.6 * (np.arange(bounds.rho_label.nunique()) - (bounds.rho_label.nunique() - 1) / 2)
    for offset, (label, rows) in zip(shift, bounds.groupby("rho_label", sort=False)):
        low, high = (rows[c].replace(np.inf, beyond) for c in ("n_star_low", "n_star_high"))
        x = rows["T"] + offset  # side by side where bounds coincide
        line = ax.plot(x, high, marker="o", label=label)[0]
        ax.vlines(x, low, high, color=line.get_color(), linewidth=3, alpha=0.5)
    ax.axhline(beyond, color="0.5", linestyle=":", linewidth=1)
    ax.set(xlabel=AXIS_LABELS.get("T", "T"), ylabel="n* (SG window)", yscale="log",
           yticks=[*sorted(windows), beyond], yticklabels=[*map(str, sorted(windows)),
           f"> {max(windows)}"],
           title=_wrap(f"{title}\n(bars: from the first window not separated below BP(1) "
                       "to the first that also reaches its mean)", 46))  # fmt: skip
    ax.minorticks_off()
    ax.legend(title="spectral radius")
    _legend_right(fig, ax)
    return fig


def _panels(data: pd.DataFrame, panel: str) -> tuple[plt.Figure, list, list[str]]:
    """A row of panels, one per value of ``panel`` in sorted order (the same in every figure,
    whatever order the table holds them in)."""
    names = sorted(set(data[panel]))
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.2), squeeze=False)
    return fig, list(axes[0]), names


def _finite(values: pd.Series) -> pd.Series:
    return values[values.notna() & (values.abs() < float("inf"))]


def _scale(values: pd.Series) -> str:
    """``"log"`` for positive values spanning more than a factor of 10, else ``"linear"``."""
    finite = _finite(values)
    if finite.empty or (finite <= 0).any():
        return "linear"
    return "log" if finite.max() > 10 * finite.min() else "linear"


LINEAR_WITHIN = 1.0
"""A symlog axis is linear within ± this, logarithmic beyond."""
X_TICKS = 5
"""Ticks a linear x-axis of a panel (5 inches) has at most."""
SHORT_RANGE = 2.0
"""Decades a log axis spans at most to be labelled at 1, 2 and 5 of each (else at 1)."""


def _set_scale(ax: plt.Axes, axis: str, scale: str) -> None:
    """Set ``ax``'s ``axis`` (``"x"``, ``"y"``) to ``scale``, after the data are drawn: a log
    or symlog axis is labelled in plain numbers, a log one over a short range
    (:data:`SHORT_RANGE`) at 1, 2 and 5 of each decade, minor ticks unlabelled (matplotlib
    labels every minor tick of a short range, ``2×10⁰ 3×10⁰ …``, and they run into one
    another); a linear x-axis has at most :data:`X_TICKS` ticks (a narrow range has long labels,
    ``0.010025``)."""
    along = getattr(ax, f"{axis}axis")
    if scale == "symlog":
        getattr(ax, f"set_{axis}scale")(scale, linthresh=LINEAR_WITHIN)
    else:
        getattr(ax, f"set_{axis}scale")(scale)
    if scale == "linear":
        if axis == "x":
            along.set_major_locator(ticker.MaxNLocator(nbins=X_TICKS - 1))
        return
    low, high = getattr(ax, f"get_{axis}lim")()
    if scale == "symlog":
        low, high = max(low, LINEAR_WITHIN), max(high, -low, LINEAR_WITHIN)
    subs = (1.0, 2.0, 5.0) if np.log10(high / low) <= SHORT_RANGE else (1.0,)
    along.set_major_locator(ticker.LogLocator(subs=subs) if scale == "log" else
                            ticker.SymmetricalLogLocator(subs=subs, linthresh=LINEAR_WITHIN,
                                                         base=10))  # fmt: skip
    along.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    along.set_minor_formatter(ticker.NullFormatter())


LEGEND_ROWS = 10
"""Entries per legend column: a longer legend gets another column rather than run off the
canvas."""


def _legend_right(fig: plt.Figure, ax: plt.Axes) -> None:
    """The legend of ``ax`` to the right of it, in columns of at most :data:`LEGEND_ROWS`."""
    legend = ax.get_legend()
    if legend is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), frameon=False,
                        ncols=-(-len(legend.get_texts()) // LEGEND_ROWS))  # fmt: skip
    fig.tight_layout()


REFERENCES = ("bptt", "oracle")
"""The exact rules: drawn in every pool's row, the line the others are read against."""


def _pool_rows(data: pd.DataFrame) -> list[tuple[str, set[str]]]:
    """A row per pool of :data:`~bplambda.labels.POOLS` with a rule in ``data``: its name and
    families, with the :data:`REFERENCES` in every row; families of no pool in a last row."""
    present = set(data.family)
    rows = [(name, {*families, *REFERENCES}) for name, families in POOLS.items()
            if present & (set(families) - set(REFERENCES))]  # fmt: skip
    rest = present - {family for _, families in rows for family in families}
    if rest or not rows:
        rows.append(("other rules" if rows else "every rule", rest | set(REFERENCES)))
    return rows


def _mark_level(axes: Sequence[plt.Axes], level: float, name: str) -> str:
    """A dashed line at ``level`` across ``axes`` (a column sharing its y-axis) where it lies
    inside their range; else a line in the top panel's title saying that it lies above (or
    below) it, so an unreached level does not squash the data. Returns how it was drawn."""
    low, high = axes[0].get_ylim()
    if low <= level <= high:
        for ax in axes:
            ax.axhline(level, color="0.3", linestyle="--", linewidth=1)
        return "drawn"
    where = "above" if level > high else "below"
    axes[0].set_title(f"{axes[0].get_title()}\n({name} = {level:g}: {where} this range)")
    return where


@_house_style
def curvature_trajectories(checkpoints: pd.DataFrame, lr: float, title: str) -> plt.Figure:
    """λ_max vs training iterations: a column per task, a row per pool of rules
    (:func:`_pool_rows`: Liu et al.'s rules, BP(λ)/SG(n)/TBPTT(n), BPTT and the oracle in
    both), a line per condition (band over seeds), the rows of a task on one y-range. Every
    panel on one scale, symlog (:data:`LINEAR_WITHIN`): λ_max spans decades within a task and
    between tasks, is read against 2/η as a ratio, and keeps its sign (small negative values
    early in training), which a log axis would drop. The edge of stability 2/η of plain
    gradient descent is dashed where it lies inside a task's range, else noted."""
    data = checkpoints[checkpoints.metric == "lambda_max"]
    tasks, rows = sorted(set(data.task)), _pool_rows(data)
    fig, axes = plt.subplots(len(rows), len(tasks), figsize=(5.2 * len(tasks), 3.6 * len(rows)),
                             squeeze=False, sharey="col")  # fmt: skip
    drawn: set[str] = set()
    for (pool, families), row in zip(rows, axes):
        pooled = data[data.family.isin(families)]
        order, palette, styles = condition_order(pooled), _palette(pooled), _line_styles(pooled)
        for ax, task in zip(row, tasks):
            drawn |= _lines_with_bands(ax, pooled[pooled.task == task], "batch", "condition",
                                       order, palette, ax is row[-1], styles)  # fmt: skip
            ax.set(title=f"{TASK_NAMES.get(task, task)}: {pool}", xlabel="iterations",
                   ylabel=r"$\lambda_{\max}$")  # fmt: skip
            _set_scale(ax, "y", "symlog")
    edge = {_mark_level(column, 2 / lr, "2/η") for column in axes.T}
    marked = "dashed where inside a task's range" if "drawn" in edge else "outside every range"
    fig.suptitle(f"{title}\n({_spread_note(drawn)}; 2/η = {2 / lr:g}: {marked}; y: linear "
                 f"within ±{LINEAR_WITHIN:g}, logarithmic beyond)", fontsize="medium")  # fmt: skip
    for row in axes:
        _legend_right(fig, row[-1])
    return fig


def _scatter(
    data: pd.DataFrame,
    x: str,
    y: str,
    order: Sequence[str],
    palette: dict[str, tuple],
    ax: plt.Axes,
    legend: bool,
) -> None:
    """A dot per row of ``data`` (a run), coloured by condition; the oracle a cross, so that it
    and BPTT (both black, :func:`_palette`) stay apart (:data:`REFERENCE_MARKERS`)."""
    present = [c for c in order if c in set(data.condition)]
    families = conditions(data).set_index("condition").family
    markers = {c: REFERENCE_MARKERS.get(families[c], "o") for c in present}
    sns.scatterplot(data, x=x, y=y, hue="condition", style="condition", palette=palette,
                    hue_order=present, style_order=present, markers=markers, s=40, ax=ax,
                    legend=legend)  # fmt: skip


@_house_style
def correlation_scatter(
    final: pd.DataFrame, correlations: pd.DataFrame, x: str, y: str, title: str
) -> plt.Figure:
    """``y`` vs ``x`` of every (condition, seed) run, one panel per task, with each pool's
    Spearman correlation over its rules' means (and its exact permutation p) in the title."""
    wide = with_labels(by_run(final, ["task", "condition", "seed"]), final)
    fig, axes, tasks = _panels(wide, "task")
    order, palette = condition_order(wide), _palette(wide)
    width = int(TITLE_CHARACTERS_PER_INCH * fig.get_figwidth() / len(axes))  # a panel's
    lines = 1
    for ax, task in zip(axes, tasks):
        subset = wide[wide.task == task]
        _scatter(subset, x, y, order, palette, ax, legend=ax is axes[-1])
        means = correlations[(correlations.task == task) & (correlations.x == x)
                             & (correlations.y == y)
                             & (correlations.unit == "condition means")]  # fmt: skip
        notes = [_wrap(f"{r.scope}: Spearman {r.spearman_r:.2f} (p={r.spearman_p:.2g}, "
                               f"{counted(r.n, 'rules')})", width)
                 for r in means.itertuples()] or ["too few rules"]  # fmt: skip
        ax.set(title="\n".join([TASK_NAMES.get(task, task), *notes]),
               xlabel=METRIC_LABELS.get(x, x), ylabel=METRIC_LABELS.get(y, y))  # fmt: skip
        lines = max(lines, ax.get_title().count("\n") + 1)
        _set_scale(ax, "x", _scale(subset[x]))
    fig.set_figheight(fig.get_figheight() + TITLE_LINE_INCHES * (lines - 1))  # the axes keep
    fig.suptitle(title, fontsize="medium")  # their height under a title of several lines
    _legend_right(fig, axes[-1])
    return fig


@_house_style
def points_by_panel(
    data: pd.DataFrame, y: str, panel: str, title: str, ylabel: str, log: bool = False
) -> plt.Figure:
    """:func:`points` (mean and interval over seeds per condition, seeds as dots), one panel
    per value of ``panel`` (e.g. the task); ``log`` where the panel has a positive value."""
    fig, axes, names = _panels(data, panel)
    errorbar, bars = _interval_bars(data, ["condition", panel], y)
    for ax, name in zip(axes, names):
        subset = data[data[panel] == name]
        order, palette = condition_order(subset), _palette(subset)
        sns.pointplot(subset, x="condition", y=y, order=order, hue="condition",
                      palette=palette, errorbar=errorbar, linestyle="none",
                      markers="D", ax=ax, legend=False)  # fmt: skip
        sns.stripplot(subset, x="condition", y=y, order=order, color="0.4", size=3, alpha=0.6,
                      ax=ax)  # fmt: skip
        ax.set(title=TASK_NAMES.get(name, name), xlabel="", ylabel=ylabel)
        drawn = _finite(subset[y])  # none where every model diverged: no log axis to draw
        _set_scale(ax, "y", "log" if log and (drawn > 0).any() else "linear")
        ax.tick_params(axis="x", rotation=60)
    fig.suptitle(f"{title}\n(diamonds: mean over seeds; {bars}; dots: seeds)",
                 fontsize="medium")  # fmt: skip
    fig.tight_layout()
    return fig


@_house_style
def measured_vs_predicted(final: pd.DataFrame, title: str) -> plt.Figure:
    """Final λ_max against Liu et al.'s bound 2/(η·c₁), one panel per task, with the line
    measured = predicted; a task where no run has a finite bound (c₁ ≤ 0) says so."""
    wide = with_labels(by_run(final, ["task", "condition", "seed"]), final)
    fig, axes, tasks = _panels(wide, "task")
    bounded = wide[wide.predicted_lambda_max.between(0, float("inf"), inclusive="neither")]
    order, palette = condition_order(bounded), _palette(bounded)
    keyed = [ax for ax, task in zip(axes, tasks) if task in set(bounded.task)][-1:]
    for ax, task in zip(axes, tasks):
        ax.set(title=TASK_NAMES.get(task, task), xlabel=r"predicted $2/(\eta c_1)$",
               ylabel=r"measured $\lambda_{\max}$ (end)")  # fmt: skip
        subset = bounded[bounded.task == task]
        if subset.empty:
            ax.text(0.5, 0.5, "no finite bound:\nc₁ ≤ 0 in every run", ha="center",
                    va="center", transform=ax.transAxes)  # fmt: skip
            continue
        _scatter(subset, "predicted_lambda_max", "lambda_max_final", order, palette, ax,
                 legend=ax in keyed)  # fmt: skip
        both = pd.concat([subset.predicted_lambda_max, subset.lambda_max_final])
        ax.plot([both.min(), both.max()], [both.min(), both.max()], color="0.3",
                linestyle="--", linewidth=1)  # fmt: skip
        _set_scale(ax, "x", _scale(both))
        _set_scale(ax, "y", _scale(both))
    fig.suptitle(f"{title}\n(dashed: measured = predicted; runs with c₁ ≤ 0 have no bound)",
                 fontsize="medium")  # fmt: skip
    if keyed and keyed[0] is not axes[-1]:  # the key goes right of the last panel
        axes[-1].legend(*keyed[0].get_legend_handles_labels())
        keyed[0].get_legend().remove()
    _legend_right(fig, axes[-1])
    return fig
