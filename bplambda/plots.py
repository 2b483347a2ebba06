"""Seaborn figures used by the notebooks. Each function takes a tidy table, returns a figure.

Bands are 95% bootstrap intervals over seeds (seaborn's ``errorbar=("ci", 95)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bplambda.analysis import condition_order

METRIC_LABELS = {
    "alignment_synthetic": r"$\cos(g(s_t),\ \partial L_{>t}/\partial s_t)$",
    "alignment_signal": r"$\cos(\mathrm{signal}_t,\ \partial L_{>t}/\partial s_t)$",
    "alignment_applied": r"$\cos(g(s_t),\ \partial L_{>t}/\partial s_t)$ where applied",
    "lead": "BP(1) − best SG(n): alignment where applied",
    "gradient_ratio": r"$\|\partial L_{>t}/\partial s_t\|$ at t = 1 / t = T−1",
    "update_alignment": r"$\cos(\Delta\Psi,\ \Delta\Psi_\mathrm{BPTT})$",
    "future_gradient_norm": r"$\|\partial L_{>t}/\partial s_t\|$ (batch mean)",
    "loss": "task loss (batch mean)",
    "val_error": "validation error (fraction)",
    "val_loss": "validation loss (cross-entropy, nats)",
    "train_loss": "training loss (cross-entropy, nats)",
    "T": "sequence length T (steps)",
    "N": "pattern length N (steps)",
    "R": "repeats R",
}
AXIS_LABELS = {"lmbda": "λ", "T": "sequence length T", "t": "time step t",
               "batch": "batch (optimiser steps)", "epoch": "epoch", "n": "window n"}  # fmt: skip
BANDS = "lines: mean over seeds; bands: 95% bootstrap interval"

sns.set_theme(context="notebook", style="whitegrid")


def _palette(order: Sequence[str]) -> dict[str, tuple]:
    """Blues→greens for BP(λ), oranges for SG(n), greys for TBPTT(n), black for the exact ones."""
    palette: dict[str, tuple] = {}
    for family, cmap in (("BP", "viridis_r"), ("SG", "Oranges"), ("TBPTT", "Greys")):
        members = [c for c in order if c.split("(")[0] == family]
        colours = sns.color_palette(cmap, len(members) + (0 if family == "BP" else 1))
        palette.update(zip(members, colours[-len(members) :] if members else []))
    palette.update({c: (0.0, 0.0, 0.0) for c in order if c in ("BPTT", "oracle")})
    return palette


def lines(
    data: pd.DataFrame,
    x: str,
    metrics: Sequence[str],
    title: str,
    log_y: Sequence[str] = (),
    xlabel: str | None = None,
    hue: str = "condition",
) -> plt.Figure:
    """One panel per metric: value vs ``x``, a line per ``hue`` value (conditions by default,
    in the house colours) with a band over seeds."""
    by_condition = hue == "condition"
    order = condition_order(data.condition) if by_condition else sorted(data[hue].unique())
    palette = _palette(order) if by_condition else "viridis"
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        subset = data[data.metric == metric]
        sns.lineplot(subset, x=x, y="value", hue=hue, hue_order=[c for c in order if c in
                     set(subset[hue])], palette=palette, errorbar=("ci", 95), ax=ax,
                     legend=ax is axes[0][-1])  # fmt: skip
        ax.set(ylabel=METRIC_LABELS.get(metric, metric), xlabel=xlabel or AXIS_LABELS.get(x, x))
        if metric in log_y:
            ax.set_yscale("log")
    legend = axes[0][-1].get_legend()
    if legend is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.suptitle(f"{title}\n({BANDS})", fontsize="medium")
    fig.tight_layout()
    return fig


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


def points(data: pd.DataFrame, x: str, y: str, title: str, ylabel: str) -> plt.Figure:
    """Mean and 95% interval over seeds per condition, with each seed as a dot."""
    order = condition_order(data[x])
    palette = _palette(order)
    fig, ax = plt.subplots(figsize=(0.7 * len(order) + 2.5, 4))
    sns.pointplot(data, x=x, y=y, order=order, hue=x, palette=palette, errorbar=("ci", 95),
                  linestyle="none", markers="D", ax=ax, legend=False)  # fmt: skip
    sns.stripplot(data, x=x, y=y, order=order, color="0.4", size=3, alpha=0.6, ax=ax)
    ax.set(
        xlabel="",
        ylabel=ylabel,
        title=f"{title}\n(diamonds: mean over seeds, 95% bootstrap interval; dots: seeds)",
    )
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig
