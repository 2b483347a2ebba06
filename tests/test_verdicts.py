"""Verdicts follow the intervals; the alignment a rule is judged on is where it applies g;
final values, the MNIST checkpoint rule and the ρ rescaling on small hand-made cases."""

import numpy as np
import pandas as pd
import pytest
import torch

from bplambda import ToyTask, TrainConfig, make_cell, make_rule, train, true_future_gradients
from bplambda.analysis import best_condition, final_values
from bplambda.cells import LSTM, MaskedCell
from bplambda.experiments.toy_runs import spectral_radius, toy_network
from bplambda.metrics import signal_alignments
from bplambda.synthesiser import synthesise
from bplambda.verdicts import (
    all_positive,
    both_ways,
    consistent,
    finding,
    increasing,
    interval,
    reported_interval,
    variance_ratio,
)
from bplambda.wording import counted

LOW, MID, HIGH = [0.1, 0.12, 0.11, 0.13, 0.09], [0.5, 0.52, 0.49, 0.51, 0.5], [0.9, 0.91, 0.92]


def test_a_claim_is_decided_only_where_the_intervals_separate():
    assert increasing([LOW, MID, [0.9, 0.91, 0.92, 0.93, 0.9]]) == "reproduced"
    assert increasing([HIGH, MID]) == "NOT reproduced (on 3-seed ranges)"
    assert increasing([LOW, MID, [0.4, 0.6, 0.5, 0.45, 0.55]]) == "inconclusive (5 seeds)"
    assert increasing([LOW, [0.0, 1.0]]) == "inconclusive (2 seeds)"  # two seeds: min–max
    assert increasing([LOW, MID, [0.2, 0.3]]) == "indicative (2 seeds; ranges: NOT reproduced)"
    assert increasing([LOW, MID, HIGH[:2]]) == "indicative (2 seeds; ranges: reproduced)"
    with_diverged = [np.nan, 0.1, 0.12, 0.11, 0.1]  # the diverged seed (NaN) is left out
    assert increasing([with_diverged, MID]) == "reproduced"


def test_intervals_with_few_seeds_are_labelled_ranges():
    assert "range, 2 seeds" in interval([0.2, 0.4]).text()
    assert "95% CI, 5 seeds" in interval(MID).text()
    two = interval([0.2, 0.4])
    assert two.low == pytest.approx(0.2) and two.high == pytest.approx(0.4)


def test_one_seed_is_said_in_the_singular_and_more_in_the_plural():
    """A smoke run has one seed (and one epoch): its texts say "1 seed", never "1 seeds"."""
    assert counted(1, "seeds") == "1 seed" and counted(2, "seeds") == "2 seeds"
    assert counted(0, "seeds") == "0 seeds"
    assert counted(1000, "iterations") == "1,000 iterations"
    assert interval([0.3]).text().endswith("(range, 1 seed)")
    assert finding([0.9], [0.1], "a", "b") == "indicative (1 seed; ranges: finding: a > b)"
    assert increasing([[0.1], [0.1]]) == "inconclusive (1 seed)"


def test_a_reported_mean_and_sd_become_a_t_interval():
    official = reported_interval(0.93, 0.06, 5)  # ± 2.776 · 0.06 / √5, ± 0.005 of rounding
    assert official.low == pytest.approx(0.93 - 0.0745 - 0.005, abs=1e-3)
    exact = reported_interval(1.00, 0.00, 3)  # reported to two decimals: [0.995, 1.005]
    assert consistent([0.999, 0.9995, 1.0], exact).startswith("consistent")
    assert consistent([0.9, 0.95, 0.92, 0.97, 0.91], official).startswith("consistent")
    assert consistent(LOW, official) == "differs (lower; intervals separate)"


def test_findings_and_two_definitions():
    assert finding(HIGH, LOW, "faithful", "exact") == "finding: faithful > exact (on 3-seed ranges)"
    assert finding(MID, [0.4, 0.6], "a", "b") == "inconclusive (2 seeds)"
    assert both_ways("reproduced", "reproduced", ("x", "y")) == "reproduced"
    # no seed on a side (e.g. none reached the matched loss): nothing to test, not "0 seeds"
    nothing = "not testable (no seed on one side)"
    assert finding(MID, [], "a", "b") == nothing == increasing([[np.nan, np.nan], MID])
    assert all_positive([]) == nothing == all_positive([[0.1, 0.2], []])
    mixed = both_ways("reproduced", "inconclusive (5 seeds)", ("last-epoch mean", "last batch"))
    assert mixed.startswith("inconclusive (last-epoch mean: reproduced; last batch:")


def test_final_values_average_the_last_epoch_and_keep_the_last_batch():
    rows = []
    for seed, diverged in ((0, False), (1, True)):
        for batch, value in ((0, 9.0), (10, 1.0), (15, 2.0), (19, 6.0)):
            if diverged and batch > 10:
                continue
            rows.append({"condition": "BP(1)", "T": 10, "seed": seed, "diverged": diverged,
                         "diverged_at": 10.0 if diverged else np.nan, "batch": batch, "t": -1,
                         "metric": "loss", "value": value})  # fmt: skip
    finals = final_values(pd.DataFrame(rows), window=10).set_index("seed")
    assert finals.loc[0, "value"] == pytest.approx(3.0)  # batches 10, 15, 19: the last 10
    assert finals.loc[0, "last_batch"] == 6.0
    assert np.isnan(finals.loc[1, "value"]) and np.isnan(finals.loc[1, "last_batch"])


def test_the_best_rival_skips_diverged_conditions_and_survives_all_of_them_diverged():
    means = pd.Series({"SG(5)": 0.3, "TBPTT(5)": np.nan, "SG(10)": 0.1})
    assert best_condition(means) == "SG(5)"
    assert best_condition(means, lowest=True) == "SG(10)"
    assert best_condition(pd.Series({"SG(5)": np.nan, "TBPTT(5)": np.nan})) == "SG(5)"


def test_sg_is_judged_at_its_chunk_ends_and_bp_lambda_everywhere():
    cell = make_cell("linear_rnn", 10, 6)
    task = ToyTask(seq_len=7, batch_size=3)
    params = toy_network(cell, task, [0], None, "float64", "cpu", make_rule("bp_lambda"))
    params["synthesiser"] = {k: v + 0.1 for k, v in params["synthesiser"].items()}
    inputs, targets = task.sample([torch.Generator()])
    inputs, targets = inputs.double(), targets.to(torch.device("cpu"), torch.float64)
    true = torch.randn(7, 1, 3, 6, dtype=torch.float64)
    for rule, applied_steps in ((make_rule("sg", window=3), {0, 3}),
                                (make_rule("bp_lambda"), set(range(7)))):  # fmt: skip
        out = rule.gradients(cell, params, inputs, targets)
        metrics = signal_alignments(out, true)
        applied = metrics["alignment_applied"]
        finite = {int(k) for k in torch.nonzero(~applied.isnan().all(-1)).flatten()}
        assert finite == applied_steps - {6}  # g(s_T) := 0 is never applied
        g = synthesise(params["synthesiser"], out.states)  # computed here, not by the rule
        for k in finite:
            direct = torch.nn.functional.cosine_similarity(g[k], true[k], dim=-1).mean(-1)
            assert torch.allclose(applied[k], direct, atol=1e-12)


def test_the_true_gradient_of_a_faithful_cell_uses_the_exact_jacobian():
    faithful = make_cell("lstm_faithful", 3, 4)
    assert faithful.exact() == LSTM(3, 4) and LSTM(3, 4).exact() == LSTM(3, 4)
    assert MaskedCell(faithful).exact() == MaskedCell(LSTM(3, 4))
    assert faithful != LSTM(3, 4)
    # the alignment logged in training is measured against the exact Jacobian's true gradient
    cell, task, rule = make_cell("lstm_faithful", 10, 4), ToyTask(seq_len=6, batch_size=3), \
        make_rule("bp_lambda")  # fmt: skip
    params = toy_network(cell, task, [0], None, "float64", "cpu", rule)
    config = TrainConfig(num_batches=1, track_alignment=True, progress=False)
    start = {g: {k: v.clone() for k, v in p.items()} for g, p in params.items()}
    table = train(cell, rule, task, config, seeds=[0], dtype="float64", params=params).table
    logged = table[table.metric == "future_gradient_norm"].sort_values("t").value.to_numpy()
    inputs, targets = task.sample([torch.Generator()])
    inputs, targets = inputs.double(), targets.to(torch.device("cpu"), torch.float64)
    out = rule.gradients(cell, start, inputs, targets)
    norms = {
        name: true_future_gradients(c, start["rnn"], inputs, out.states, out.immediate)
        .norm(dim=-1).mean(-1).squeeze(-1).numpy()
        for name, c in (("exact", LSTM(10, 4)), ("faithful", cell))
    }  # fmt: skip
    np.testing.assert_allclose(logged, norms["exact"], rtol=1e-10)
    assert not np.allclose(logged, norms["faithful"], rtol=1e-3)


def test_the_toy_network_is_rescaled_to_the_spectral_radius_asked_for():
    cell = make_cell("linear_rnn", 10, 30)
    task = ToyTask(seq_len=10)
    paper = toy_network(cell, task, [0, 1], None, "float64", "cpu")
    unit = toy_network(cell, task, [0, 1], 1.0, "float64", "cpu")
    assert spectral_radius(paper["rnn"]["weight_hh"]).max() < 0.7
    assert torch.allclose(
        spectral_radius(unit["rnn"]["weight_hh"]), torch.ones(2, dtype=torch.float64)
    )
    ratio = unit["rnn"]["weight_hh"] / paper["rnn"]["weight_hh"]  # a scale, nothing else
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio))
    assert torch.equal(unit["rnn"]["weight_ih"], paper["rnn"]["weight_ih"])


@pytest.mark.parametrize("seeds", [2, 3])
def test_a_range_label_is_what_the_interval_is(seeds):
    """Up to RANGE_ONLY seeds the 95% percentile bootstrap is exactly the seeds' min–max."""
    values = np.random.default_rng(seeds).normal(size=seeds)
    found = interval(values)
    assert (found.low, found.high) == (values.min(), values.max())
    four = interval(np.random.default_rng(4).normal(size=4))
    assert "95% CI" in four.text() and "range" in found.text()


def test_the_variance_ratio_interval_excludes_1_only_where_the_spreads_differ():
    wide = np.array([0.0, 10.0, -10.0, 5.0, -5.0, np.nan])  # a missing seed is left out
    narrow = wide / 100
    ratio, low, high = variance_ratio(wide, narrow)
    assert ratio == pytest.approx(1e4) and low > 1 < high
    assert variance_ratio(narrow, narrow)[1] < 1 < variance_ratio(narrow, narrow)[2]
    assert np.isnan(variance_ratio(wide, np.ones(5))).all()  # no spread to compare against
