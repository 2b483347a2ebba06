"""Every figure the notebooks make, drawn from small hand-made tables shaped like a run's (the
notebooks' own titles and value ranges), passes :func:`bplambda.figure_checks.layout_problems`:
titles, axis labels and tick labels inside the canvas, no two tick labels of an axis overlapping,
legends in human labels."""

import inspect

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bplambda import plots  # noqa: E402
from bplambda.analysis import ALIGNMENTS  # noqa: E402
from bplambda.figure_checks import layout_problems, unreadable_label  # noqa: E402

TOY = [("BP(0)", "bp_lambda", 0.0, np.nan), ("BP(0.5)", "bp_lambda", 0.5, np.nan),
       ("BP(1)", "bp_lambda", 1.0, np.nan), ("oracle", "oracle", np.nan, np.nan),
       ("SG(1)", "sg", np.nan, 1), ("SG(2)", "sg", np.nan, 2), ("SG(3)", "sg", np.nan, 3),
       ("SG(5)", "sg", np.nan, 5)]  # fmt: skip
LIU = [*TOY[:4], ("BPTT", "bptt", np.nan, np.nan), *TOY[4:6], ("SG(4)", "sg", np.nan, 4),
       *((f"TBPTT({n})", "tbptt", np.nan, n) for n in (1, 2, 4)),
       ("MDGL", "mdgl", np.nan, np.nan), ("MDGL-type", "mdgl", np.nan, np.nan, "cell_type"),
       ("e-prop", "eprop", np.nan, np.nan), ("RFLO", "rflo", np.nan, np.nan)]  # fmt: skip
LAMBDA_MAX = {"delayed_match": (1.3, 35.0), "pattern_generation": (15.0, 2000.0),
              "seq_mnist": (15.0, 4500.0)}  # fmt: skip
"""λ_max's range per task in the medium runs: delayed match's spans little over a decade."""
SEEDS = range(5)


def _conditions(rows: list[tuple]) -> list[dict]:
    """Each condition's labels (:data:`bplambda.labels.LABELS`); variant default unless named."""
    return [dict(zip(("condition", "family", "lmbda", "n", "variant"), (*row, "default")[:5]))
            for row in rows]  # fmt: skip


def _toy_by_batch() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{**c, "seed": s, "batch": b, "metric": m, "value": rng.uniform(0, 1)}
                         for c in _conditions(TOY) for s in SEEDS for b in range(0, 1001, 50)
                         for m in ALIGNMENTS])  # fmt: skip


def _liu_final() -> pd.DataFrame:
    """Per task, condition and seed: final λ_max (log-uniform over the task's range), the gap,
    the bound and λ_max at the end."""
    rng = np.random.default_rng(1)
    rows = []
    for task, (low, high) in LAMBDA_MAX.items():
        for c in _conditions(LIU):
            for s in SEEDS:
                lam = float(np.exp(rng.uniform(np.log(low), np.log(high))))
                values = {"lambda_max": lam, "gap_test_loss": rng.normal(0, 0.05),
                          "predicted_lambda_max": lam * rng.uniform(0.5, 2),
                          "lambda_max_final": lam}  # fmt: skip
                rows += [{"task": task, **c, "seed": s, "metric": m, "value": v}
                         for m, v in values.items()]  # fmt: skip
    return pd.DataFrame(rows)


def _checkpoints() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    return pd.DataFrame([{"task": task, **c, "seed": s, "batch": b, "metric": "lambda_max",
                          "value": float(np.exp(rng.uniform(np.log(low), np.log(high))))}
                         for task, (low, high) in LAMBDA_MAX.items() for c in _conditions(LIU)
                         for s in SEEDS for b in range(0, 1001, 200)])  # fmt: skip


def _correlations() -> pd.DataFrame:
    return pd.DataFrame([{"task": task, "scope": pool, "unit": "condition means",
                          "x": "lambda_max", "y": "gap_test_loss", "n": 7, "spearman_r": -0.52,
                          "spearman_p": 2.2e-6}
                         for task in LAMBDA_MAX
                         for pool in ("Liu et al.'s rules", "BP(λ), SG(n), TBPTT(n)")])  # fmt: skip


def _lead() -> pd.DataFrame:
    return pd.DataFrame([{"seed": s, "T": T, "rho_label": label, "best_n": n, "metric": "lead",
                          "value": 0.1 * s - T / 100, "condition": label}
                         for s in SEEDS for T, n in ((10, 3), (20, 5), (40, 5), (60, 10))
                         for label in ("init (ρ ≈ 0.58)", "ρ = 0.9", "ρ = 1")])  # fmt: skip


def _heatmap_summary() -> pd.DataFrame:
    return pd.DataFrame([{"lmbda": lm / 10, "T": T, "mean": lm / 10 / T * 10}
                         for lm in range(11) for T in (10, 20, 40, 60)])  # fmt: skip


def _bounds() -> pd.DataFrame:
    return pd.DataFrame({"rho_label": ["init (ρ ≈ 0.58)"] * 2 + ["ρ = 1"] * 2,
                         "T": [10, 60, 10, 60], "n_star_low": [2, 1, 5, np.inf],
                         "n_star_high": [3, 2, 10, np.inf]})  # fmt: skip


def _solved(conditions: int) -> pd.DataFrame:
    """Copy-repeat's largest T solved for the first ``conditions`` of :data:`LIU`, 2 seeds (a
    few conditions make a narrow figure, whose title must still fit)."""
    rng = np.random.default_rng(3)
    return pd.DataFrame([{**c, "seed": s, "solved_T": rng.integers(5, 10)}
                         for c in _conditions(LIU[:conditions]) for s in range(2)])  # fmt: skip


FIGURES = {
    "lines": lambda: plots.lines(
        _toy_by_batch(),
        x="batch",
        metrics=ALIGNMENTS,
        title="Fixed RNN, T = 10: alignment over training (mean over t < T)",
    ),  # fmt: skip
    "lead_vs_length": lambda: plots.lead_vs_length(
        _lead(),
        "BP(1)'s lead over the best SG(n) that bootstraps (n: the best window at each T), by ρ",
    ),  # fmt: skip
    "heatmap": lambda: plots.heatmap(
        _heatmap_summary(),
        index="lmbda",
        columns="T",
        label="final alignment",
        title="BP(λ): final alignment of g(s_t), paper initialisation",
    ),  # fmt: skip
    "points": lambda: plots.points(
        _solved(5),
        x="condition",
        y="solved_T",
        ylabel="largest T solved",
        title="Within 10,000 updates",
    ),  # fmt: skip
    "window_bounds": lambda: plots.window_bounds(
        _bounds(),
        (1, 2, 3, 5, 10),
        "n*(T): the smallest SG window matching BP(1)'s learning signal",
    ),
    "curvature_trajectories": lambda: plots.curvature_trajectories(
        _checkpoints(), 0.01, "Top Hessian eigenvalue of the full loss during training"
    ),
    "correlation_scatter": lambda: plots.correlation_scatter(
        _liu_final(),
        _correlations(),
        "lambda_max",
        "gap_test_loss",
        "Generalisation gap vs curvature (every rule and seed)",
    ),
    "points_by_panel": lambda: plots.points_by_panel(
        _liu_final()[lambda t: t.metric == "lambda_max"],
        "value",
        "task",
        r"Final $\lambda_{\max}$ (last checkpoints) per condition",
        r"$\lambda_{\max}$ (last checkpoints)",
        log=True,
    ),
    "measured_vs_predicted": lambda: plots.measured_vs_predicted(
        _liu_final(), "λ_max at the end vs the bound 2/(η·c₁)"
    ),
}


def test_every_figure_function_is_checked():
    """Driven by the module, so a new figure function cannot go unchecked."""
    made = {name for name, f in inspect.getmembers(plots, inspect.isfunction)
            if f.__module__ == plots.__name__ and not name.startswith("_")
            and inspect.signature(f).return_annotation in (plt.Figure, "plt.Figure")}  # fmt: skip
    assert made == set(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_the_figure_can_be_read(name):
    fig = FIGURES[name]()
    try:
        assert layout_problems(fig) == []
    finally:
        plt.close(fig)


def test_the_checker_sees_overlaps_a_label_off_the_canvas_broken_math_and_a_column_name():
    """A negative control: each defect the checker exists for, made on purpose, is reported."""
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1], label="rho_label")
    ax.set_xticks([0, 0.01], ["a long tick label", "another long one"])
    ax.set_ylabel("y", labelpad=400)  # pushed off the canvas's left edge
    ax.set_xlabel("$\\cos(g(s_t),\n\\partial L)$")  # math wrapped over two lines
    ax.legend()
    problems = layout_problems(fig)
    plt.close(fig)
    assert any("tick labels" in p and "overlap" in p for p in problems)
    assert any("y label" in p and "outside the canvas" in p for p in problems)
    assert any("x label" in p and "broken math" in p for p in problems)
    assert any("'rho_label'" in p and "column name" in p for p in problems)


def test_the_checker_sees_a_panel_title_running_into_its_neighbours():
    """A negative control for the texts of different panels: a title wider than its panel
    (correlation_scatter's, before its notes wrapped by the panel) covers the next one's."""
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].set_title("a title far wider than the panel it is drawn over, into the next")
    axes[1].set_title("the next panel's title")
    fig.tight_layout()
    problems = layout_problems(fig)
    plt.close(fig)
    assert any("axes 0 title" in p and "axes 1 title" in p and "overlap" in p for p in problems)


@pytest.mark.parametrize("name", ["correlation_scatter", "measured_vs_predicted"])
def test_bptt_and_the_oracle_are_told_apart_in_a_scatter(name):
    """Both exact rules are black: in a scatter only the marker tells them apart."""
    fig = FIGURES[name]()
    try:
        legend = next(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)
        marks = {t.get_text(): h.get_marker()
                 for t, h in zip(legend.get_texts(), legend.legend_handles)}  # fmt: skip
        assert marks["BPTT"] != marks["oracle"]
    finally:
        plt.close(fig)


HUMAN = [("BP(1)", True), (r"$\lambda_{\max}$", True), ("rho_label", False), ("_child0", False),
         ("", False)]  # fmt: skip


@pytest.mark.parametrize("text, fine", HUMAN)
def test_human_labels(text, fine):
    assert (unreadable_label(text) is None) == fine


@pytest.mark.parametrize("gap, overlap", [(0.02, True), (0.4, False)])  # upright: both do
def test_slanted_tick_labels_overlap_only_where_their_text_does(gap, overlap):
    """Labels at 60° have upright boxes that overlap whenever they are near: the checker reads
    the slanted text instead."""
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_xlim(-0.5, 2.5)
    ax.set_xticks([0, gap], ["a long label one", "a long label two"])
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    problems = [p for p in layout_problems(fig) if "overlap" in p]
    plt.close(fig)
    assert bool(problems) == overlap


def test_a_scatter_over_a_narrow_range_keeps_its_ticks_apart():
    """A smoke run's delayed match has λ_max in 0.01000–0.01014: linear, with long labels."""
    final = _liu_final()
    narrow = (final.task == "delayed_match") & (final.metric == "lambda_max")
    final.loc[narrow, "value"] = np.linspace(0.01, 0.01014, narrow.sum())
    fig = plots.correlation_scatter(final, _correlations(), "lambda_max", "gap_test_loss", "t")
    try:
        assert layout_problems(fig) == []
    finally:
        plt.close(fig)


def test_a_log_panel_whose_every_model_diverged_is_drawn_linear():
    """A task where every model diverged has no finite value (NaN: never averaged); its panel
    cannot be log-scaled, and the other panels keep their log axis."""
    final = _liu_final()[lambda t: t.metric == "lambda_max"]
    gone = final.task == final.task.iloc[0]
    final = final.assign(value=final.value.where(~gone))
    figure = plots.points_by_panel(final, "value", "task", "title", "λ_max", log=True)
    assert [ax.get_yscale() for ax in figure.axes[:2]] == ["linear", "log"]
    plt.close(figure)
