"""Which SG(n) boundaries bootstrap, n*(T), and the "best SG" that leaves degenerate windows
out (notebooks 01 and 02), on hand-made cases and against the rule's own chunk layout."""

import numpy as np
import pandas as pd
import pytest
import torch

from bplambda.experiments import lambda_sweeps
from bplambda.experiments.sg_windows import (
    at_boundaries,
    bootstrapped_steps,
    bootstraps,
    degenerate_note,
    exact_steps,
    grows,
    smallest_matching_window,
    window_table,
)
from bplambda.rules.truncated import chunk_layout, chunk_starts
from bplambda.verdicts import all_positive


def test_boundaries_bootstrap_except_the_last_and_none_does_where_n_is_half_the_length():
    assert bootstrapped_steps(10, 3) == [1, 4] and exact_steps(10, 3) == [7]
    assert not bootstraps(10, 5) and not bootstraps(20, 10) and not bootstraps(10, 10)
    assert bootstrapped_steps(40, 10) == [10, 20] and exact_steps(40, 10) == [30]
    assert exact_steps(10, 10) == []  # one chunk: g is never applied
    table = window_table([1, 5, 10], [10, 20]).set_index(["n", "T"])
    assert table.loc[(5, 10), "boundaries"] == 1 and not table.loc[(5, 10), "bootstraps"]
    assert table.loc[(5, 20), "bootstrapped_steps"] == "5 10"


def test_the_summaries_label_the_windows_that_bootstrap_nothing():
    """Issue 24, item 1: degenerate windows stay in the tables, labelled (SG(5) at T = 10 was
    the old "best SG", 1.00 [1.00, 1.00], with no label in any summary)."""
    note = degenerate_note((1, 2, 3, 5, 10), (10, 20, 40, 60))
    assert note.endswith(": SG(5) at T = 10; SG(10) at T = 10, 20.")
    assert degenerate_note((1, 2), (10, 20)) == ""


@pytest.mark.parametrize("T", [5, 10, 20, 40, 60])
def test_the_bootstrapped_steps_are_where_the_rules_targets_carry_a_g(T):
    """The rule's layout puts γ^n at a chunk's end c where the chunk started at a carry: the
    target of g applied at that chunk's start bootstraps from g(s_c)."""
    for n in (1, 2, 3, 5, 10):
        layout = chunk_layout(T, n, 1.0, torch.float64, torch.device("cpu"))
        cuts = sorted(layout.cut_steps)
        carries = [c for c, b in zip(cuts, layout.bootstrap.tolist()) if b != 0]
        starts = chunk_starts(T, n)
        previous = {c: starts[i - 1] for i, c in enumerate(starts) if i}
        assert sorted(previous[c] for c in carries) == bootstrapped_steps(T, n), (T, n)


def _signals(means: dict[float, float], spread: float = 0.01) -> pd.DataFrame:
    """Five seeds around each mean, by SG window (NaN: BP(1))."""
    offsets = np.linspace(-spread, spread, 5)
    return pd.DataFrame([{"condition": "BP(1)" if np.isnan(n) else f"SG({n:g})",
                          "family": "bp_lambda" if np.isnan(n) else "sg", "n": n,
                          "metric": "alignment_signal", "seed": s, "value": m + o}
                         for n, m in means.items() for s, o in enumerate(offsets)])  # fmt: skip


def test_n_star_is_bounded_by_the_first_window_that_could_match_and_the_first_that_does():
    finals = _signals({np.nan: 0.90, 1: 0.20, 2: 0.895, 3: 0.95})
    assert smallest_matching_window(finals, "BP(1)", (1, 2, 3)) == (2, 3)
    assert smallest_matching_window(finals, "BP(1)", (1,)) == (np.inf, np.inf)
    assert grows((1, 2), (3, np.inf)).startswith("reproduced")
    assert grows((2, 3), (1, 2)).startswith("NOT reproduced")
    assert grows((1, 3), (2, 5)).startswith("inconclusive")
    assert grows((np.inf, np.inf), (np.inf, np.inf)).startswith("inconclusive (no window")


def test_n_star_is_not_testable_where_every_seed_of_bp_1_diverged():
    finals = _signals({np.nan: 0.90, 1: 0.20, 2: 0.895})
    finals.loc[finals.condition == "BP(1)", "value"] = np.nan  # a diverged model's value
    low, high = smallest_matching_window(finals, "BP(1)", (1, 2))
    assert np.isnan(low) and np.isnan(high)
    assert grows((low, high), (1, 2)).startswith("not testable")


def test_all_positive_needs_every_paired_difference_above_zero():
    up, flat = np.linspace(0.1, 0.2, 5), np.linspace(-0.1, 0.1, 5)
    assert all_positive([up, up]) == "reproduced"
    assert all_positive([up, flat]).startswith("inconclusive")
    assert all_positive([up, -up]) == "NOT reproduced"


def test_the_lead_is_taken_against_the_best_window_that_bootstraps():
    rows = []
    for condition, family, n, value in [
        ("BP(1)", "bp_lambda", np.nan, 0.6),
        ("SG(3)", "sg", 3, 0.5),
        ("SG(10)", "sg", 10, 1.0),
    ]:
        for seed in range(3):
            rows.append({"rho": np.nan, "T": 20, "condition": condition, "family": family,
                         "n": n, "seed": seed, "metric": "alignment_applied",
                         "value": value + 0.01 * seed, "last_batch": value})  # fmt: skip
    lead = lambda_sweeps._leads(pd.DataFrame(rows), 1.0)
    assert set(lead.best_sg) == {"SG(3)"} and set(lead.best_n) == {3}  # SG(10) at T=20: exact
    assert lead[lead.final == "value"].value.to_numpy() == pytest.approx([0.1] * 3)


def test_a_sweep_whose_every_model_diverged_has_no_lead_and_a_blank_table():
    """A diverged model's values are NaN: no SG(n) is left to lead against and no mean to
    show, which the report says instead of failing."""
    rows = [{"rho": np.nan, "T": 10, "condition": c, "family": f, "lmbda": lm, "n": n,
             "variant": "default", "seed": 0, "metric": metric, "value": np.nan,
             "last_batch": np.nan, "mean": np.nan}
            for c, f, lm, n in (("SG(2)", "sg", np.nan, 2), ("BP(1)", "bp_lambda", 1.0, np.nan))
            for metric in ("alignment_applied", "alignment_synthetic")]  # fmt: skip
    assert lambda_sweeps._leads(pd.DataFrame(rows), 1.0).empty
    table = lambda_sweeps.by_length_table(pd.DataFrame(rows))
    assert list(table.condition) == ["BP(1)", "SG(2)"] and table.iloc[:, 1:].isna().all().all()


def test_the_summary_by_length_compares_where_each_rule_applies_g_and_labels_every_state():
    """SG's g at every state is not what SG uses: the comparison columns come first and hold
    the alignment where each rule applies g; every state is kept beside, labelled so."""
    rows = [{"rho": rho, "T": T, "condition": c, "family": f, "lmbda": lm, "n": n,
             "variant": "default", "metric": metric, "mean": value + T / 1000 + (rho == 0.9)}
            for rho in (np.nan, 0.9) for T in (20, 10)
            for c, f, lm, n, applied, every in (("SG(2)", "sg", np.nan, 2, 0.9, 0.3),
                                                ("BP(1)", "bp_lambda", 1.0, np.nan, 0.8, 0.8))
            for metric, value in (("alignment_applied", applied),
                                  ("alignment_synthetic", every),
                                  ("alignment_signal", 0.5))]  # fmt: skip
    table = lambda_sweeps.by_length_table(pd.DataFrame(rows))
    assert list(table.columns) == ["condition", "T=10, where applied", "T=20, where applied",
                                   "T=10, every state", "T=20, every state"]  # fmt: skip
    assert list(table.condition) == ["BP(1)", "SG(2)"]
    sg = table.set_index("condition").loc["SG(2)"]
    assert sg["T=10, where applied"] == pytest.approx(0.91)  # the paper's init (ρ NaN) alone
    assert sg["T=20, every state"] == pytest.approx(0.32)


def test_g_is_compared_at_sgs_bootstrapped_boundaries_only_and_paired_by_seed():
    """Issue 24, item 1: where the bias lives. SG(3) at T = 10 bootstraps at steps 1 and 4; its
    last boundary (7) is exact and is left out; BP(1) is read at the same steps, per seed."""
    rows = []
    for seed in (0, 1):
        for t in range(1, 10):
            sg = {1: 0.2, 4: 0.4, 7: 1.0}.get(t, -1.0) + seed / 10  # -1: never applied there
            rows += [{"condition": "SG(3)", "family": "sg", "n": 3, "seed": seed, "t": t,
                      "metric": "alignment_synthetic", "value": sg},
                     {"condition": "BP(1)", "family": "bp_lambda", "n": np.nan, "seed": seed,
                      "t": t, "metric": "alignment_synthetic", "value": 0.5 + t / 100}]  # fmt: skip
    paired = at_boundaries(pd.DataFrame(rows), "BP(1)", 3, 10).set_index("seed")
    assert paired.sg.tolist() == pytest.approx([0.3, 0.4])  # steps 1 and 4 only
    assert paired.bp.tolist() == pytest.approx([0.525, 0.525])
    assert paired.difference.tolist() == pytest.approx([0.225, 0.125])
