"""Figures say what their spreads are: a 95% bootstrap band only where a condition has more than
three seeds, each seed drawn (and a range named) where it has fewer."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from bplambda.plots import lead_vs_length, lines, points, window_bounds  # noqa: E402


def _table(seeds: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"condition": c, "family": f, "lmbda": lm, "n": np.nan, "variant": "default",
             "seed": s, "batch": b, "metric": "loss", "value": rng.normal()}
            for c, f, lm in (("BP(1)", "bp_lambda", 1.0), ("BPTT", "bptt", np.nan))
            for s in range(seeds) for b in range(4)]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seeds, words, absent", [(3, "each seed", "bootstrap"),
                                                  (5, "95% bootstrap", "each seed")])  # fmt: skip
def test_lines_draw_bands_only_beyond_three_seeds(seeds, words, absent):
    fig = lines(_table(seeds), x="batch", metrics=["loss"], title="t")
    title = fig._suptitle.get_text()
    assert words in title and absent not in title
    ax = fig.axes[0]
    assert len(ax.collections) == (0 if seeds <= 3 else 2)  # the bands
    assert len(ax.lines) == (2 + 2 * seeds if seeds <= 3 else 2)  # means (+ each seed)
    plt.close(fig)


def test_lines_that_coincide_keep_their_markers_apart():
    """Issue 24, item 5: BP(1)'s level line lay under TBPTT(5)'s, with markers on the same
    updates; two rules with equal values now mark different points."""
    table = _table(2)
    table = pd.concat([table.assign(batch=table.batch + 4 * k) for k in range(8)])  # 32 x
    table = table.assign(value=table.batch.astype(float))  # both rules: the same line
    fig = lines(table, x="batch", metrics=["loss"], title="t")
    marked = []
    for line in fig.axes[0].lines:
        if line.get_label() in ("BP(1)", "BPTT"):
            every = line.get_markevery()
            start, step = every if isinstance(every, tuple) else (0, every)
            marked.append(set(np.asarray(line.get_xdata())[start::step]))
    assert len(marked) == 2 and all(marked) and not marked[0] & marked[1]
    plt.close(fig)


def test_points_with_few_seeds_show_their_range():
    final = _table(2)[lambda t: t.batch == 3].rename(columns={"value": "score"})
    fig = points(final, x="condition", y="score", title="t", ylabel="s")
    title = fig.axes[0].get_title()
    assert "range of the seeds" in title and "bootstrap" not in title
    bars = [
        line.get_ydata()
        for line in fig.axes[0].lines
        if len(line.get_xdata()) == 2
        and line.get_xdata()[0] == line.get_xdata()[1] == 0
        and np.isfinite(line.get_ydata()).all()  # seaborn adds an empty one per hue level
    ]
    scores = final[final.condition == "BP(1)"].score  # BP(1)'s bar: lowest seed to highest
    assert len(bars) == 1 and np.allclose(sorted(bars[0]), [scores.min(), scores.max()])
    plt.close(fig)


def test_the_n_star_figure_names_each_spectral_radius_and_draws_unmatched_windows_above():
    bounds = pd.DataFrame({"rho_label": ["init", "init", "ρ = 1", "ρ = 1"], "T": [10, 20, 10, 20],
                           "n_star_low": [1, 2, 5, np.inf],
                           "n_star_high": [2, 3, 10, np.inf]})  # fmt: skip
    fig = window_bounds(bounds, (1, 2, 3, 5, 10), title="n*")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["init", "ρ = 1"]
    assert ax.get_lines()[1].get_ydata()[-1] == 15  # inf: drawn at 1.5 × the largest window
    plt.close(fig)


def test_the_lead_figure_fits_its_canvas_names_its_legend_and_says_which_n_was_best():
    """Its title, axis label and legend stay inside the figure and apart from one another,
    the legend has a human title, and every point names the window that was best there."""
    rows = [{"seed": s, "T": T, "rho_label": label, "best_n": n, "metric": "lead",
             "value": 0.1 * s - T / 100, "condition": label}
            for s in range(5) for T, n in ((10, 3), (20, 5))
            for label in ("init (ρ ≈ 0.58)", "ρ = 1")]  # fmt: skip
    title = (
        "BP(1)'s lead over the best SG(n) that bootstraps (n: the best window at each T), "
        "by ρ, a long title that must wrap"
    )
    fig = lead_vs_length(pd.DataFrame(rows), title)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    ax = fig.axes[0]
    title = fig._suptitle.get_window_extent(renderer)
    ylabel = ax.yaxis.label.get_window_extent(renderer)
    legend = ax.get_legend()
    drawn = Bbox.union([ax.get_tightbbox(renderer), legend.get_window_extent(renderer)])
    assert drawn.x0 - 5 <= title.x0 and title.x1 <= drawn.x1 + 5  # over the plot, not beside
    assert not title.overlaps(ylabel) and canvas.y0 <= ylabel.y0
    assert legend.get_title().get_text() == "fixed RNN"
    notes = sorted(t.get_text() for t in ax.texts)
    assert notes == ["n=3", "n=3", "n=5", "n=5"]
    plt.close(fig)
