"""Notebook 05's experiment module: conditions, the end-of-run curvature, the matched-loss
comparison, correlations and the verdict helpers, on small hand-made cases."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from bplambda.errors import ParameterError
from bplambda.experiments import generalisation as gen
from bplambda.experiments import generalisation_stats as stats
from bplambda.experiments import sequential_mnist
from bplambda.experiments.conditions import single_condition
from bplambda.experiments.generalisation_claims import (
    _AtTask,
    _bound_verdict,
    _correlation_verdict,
    _liu_versus_bptt,
    _seeds_run,
    _stability_bound,
    _untestable,
    _variance_verdict,
)
from bplambda.experiments.liu_settings import MODPROP, settings_table
from bplambda.labels import DEFAULT_VARIANT
from bplambda.sharpness import final_curvature
from bplambda.stacking import init_stacked_network
from bplambda.tasks.delayed_match import DelayedMatch
from bplambda.tasks.liu import LIU_TASKS, has_cell_types, liu_task
from bplambda.verdicts import permutation_spearman_p, smallest_permutation_p


def _config(**overrides):
    return gen.config("smoke", **{"tasks": ["pattern_generation"], **overrides})


def test_conditions_follow_the_rule_order_and_share_each_seeds_network():
    cfg = _config(rules=["bp_lambda", "mdgl", "bptt", "sg"], windows=[1, 2], lambdas=[0, 1])
    names = [list(dict.fromkeys(label["condition"] for label in c.labels))
             for c in gen.liu_conditions(cfg)]  # fmt: skip
    assert names == [["BPTT"], ["MDGL"], ["MDGL-type"], ["SG(1)", "SG(2)"], ["BP(0)", "BP(1)"]]
    task, cell = liu_task("pattern_generation", cfg)
    nets = [init_stacked_network(cell, task.output_size, [3], rule=c.rule)
            for c in gen.liu_conditions(_config(rules=["bptt", "rflo", "bp_lambda"]))]  # fmt: skip
    for net in nets[1:]:  # a rule's own state (feedback, synthesiser) is drawn after
        for group in ("rnn", "readout"):
            for name, value in nets[0][group].items():
                assert torch.equal(net[group][name], value)
    assert "feedback" in nets[1] and "synthesiser" in nets[2]


def test_grids_refuse_rules_they_do_not_run_and_empty_lists_they_need():
    with pytest.raises(ParameterError, match="notebook 05"):
        sequential_mnist.config("smoke", rules=["bptt", "eprop"])
    with pytest.raises(ParameterError, match="windows"):
        _config(rules=["tbptt"], windows=[])
    with pytest.raises(ParameterError, match="mdgl_variants"):
        _config(mdgl_variants="[cell_group]")
    with pytest.raises(ParameterError, match="tasks"):
        _config(tasks=["copy_repeat"])


def test_slow_rules_train_longer_and_equal_steps_compare_at_iterations():
    cfg = _config(rules=["bptt", "eprop"], seeds=[0], iterations=2, slow_iterations=4,
                  checkpoint_every=2, final_checkpoints=1)  # fmt: skip
    table = gen.run(cfg)
    ends = table[table.metric == "seconds"].set_index("condition").batch
    assert ends.to_dict() == {"BPTT": 2, "e-prop": 4}
    checkpoints = table[table.metric == "lambda_max"]
    assert sorted(checkpoints[checkpoints.condition == "e-prop"].batch) == [
        0,
        2,
        4,
    ]  # iteration 0: the initial network
    hvps = table[table.metric == "lambda_max_hvps"].value
    assert len(hvps) == len(checkpoints) and hvps.between(1, cfg.curvature_iterations).all()
    final = gen.tables(table, cfg)["final_by_seed"]
    at_two = checkpoints[(checkpoints.condition == "e-prop") & (checkpoints.batch == 2)]
    equal_steps = final[(final.condition == "e-prop") & (final.metric == "lambda_max")]
    assert equal_steps.value.item() == at_two.value.item()  # not batch 4's
    with pytest.raises(ParameterError, match="slow_iterations=3 is below iterations=4"):
        _config(iterations=4, slow_iterations=3)


def test_both_checkpoint_solvers_find_the_same_largest_magnitude_eigenvalue():
    found = {}
    for solver in ("power", "lanczos"):
        cfg = _config(rules=["bptt"], seeds=[0, 1], iterations=2, checkpoint_every=2,
                      curvature_iterations=100, curvature_rtol=1e-6,
                      checkpoint_solver=solver)  # fmt: skip
        table = gen.run(cfg)
        rows = table[table.metric.isin(["lambda_max", "lambda_max_converged"])]
        found[solver] = rows.pivot_table(index="seed", columns="metric", values="value")
    assert (found["power"].lambda_max_converged == 1).all()
    assert (found["lanczos"].lambda_max_converged == 1).all()
    np.testing.assert_allclose(found["lanczos"].lambda_max, found["power"].lambda_max, rtol=1e-3)
    with pytest.raises(ParameterError, match="checkpoint_solver"):
        _config(checkpoint_solver="arnoldi")


def test_bptts_own_curvature_along_the_sharp_direction_is_one():
    cfg = _config(hidden_size=6, pattern_seq_len=12, curvature_batch=2, lr=0.05)
    task, cell = liu_task("pattern_generation", cfg)
    for name, close_to_one in (("bptt", True), ("eprop", False)):
        condition = single_condition(name, [0, 1])
        params = init_stacked_network(cell, 1, [0, 1], torch.float64, rule=condition.rule)
        params["rnn"] = {k: 2 * v for k, v in params["rnn"].items()}  # units on and off
        end = final_curvature(cell, condition.rule, params, task, cfg)
        assert end["c1"].shape == (2,) and bool(end["lambda_max_final_converged"].all())
        assert torch.allclose(end["predicted_lambda_max"], 2 / (cfg.lr * end["c1"]))
        error = (end["c1"] - 1).abs().max().item()
        assert error < 1e-5 if close_to_one else error > 1e-3, (name, end["c1"])


def _checkpoints(losses: dict[tuple[str, int], list[float]], lambdas) -> pd.DataFrame:
    rows = []
    for (condition, seed), series in losses.items():
        for k, (loss, lam) in enumerate(zip(series, lambdas[(condition, seed)])):
            base = {"task": "t", "condition": condition, "family": condition,
                    "lmbda": np.nan, "n": np.nan, "seed": seed, "diverged": False,
                    "batch": 10 * (k + 1)}  # fmt: skip
            rows += [{**base, "metric": "train_loss", "value": loss},
                     {**base, "metric": "lambda_max", "value": lam}]  # fmt: skip
    return pd.DataFrame(rows)


def test_matched_loss_takes_each_runs_first_checkpoint_at_the_level_learning_runs_reach():
    """The level comes from the runs that learn (lowest loss ≤ 80% of their first): C, stuck
    near chance, neither sets it nor appears, and ``matched_runs`` says so."""
    losses = {("A", 0): [1.0, 0.5, 0.2], ("B", 0): [1.0, 0.8, 0.6],  # level: max(0.2, 0.6)
              ("C", 0): [1.0, 0.95, 0.9]}  # fmt: skip
    lambdas = {("A", 0): [1, 2, 3], ("B", 0): [4, 5, 6], ("C", 0): [7, 8, 9]}
    checkpoints = _checkpoints(losses, lambdas)
    matched = stats.matched_loss(checkpoints)
    at = matched[matched.metric == "lambda_max"].set_index("condition")
    assert at.loc["A", "value"] == 2 and at.loc["B", "value"] == 6  # A at 0.5, B at 0.6
    assert "C" not in at.index and (matched.level == 0.6).all()
    runs = stats.matched_runs(checkpoints).set_index("condition")
    assert runs.learns.tolist() == [True, True, False] and runs.reached.tolist() == [
        True,
        True,
        False,
    ]
    assert runs.loc["A", "batch"] == 20 and np.isnan(runs.loc["C", "batch"])


def test_a_run_that_starts_above_chance_learns_only_below_80_percent_of_chance():
    """A classifier can start far above chance (seq-MNIST medium: 4.15 against ln 10 = 2.30):
    falling to 55% of its start at 2.2, still at chance, it has not learnt and must not set the
    level; on a task without a chance loss (pattern generation) its start is the reference."""
    losses = {("A", 0): [4.0, 3.0, 2.2], ("B", 0): [2.3, 1.9, 1.5]}
    lambdas = {("A", 0): [1, 2, 3], ("B", 0): [4, 5, 6]}
    mnist = _checkpoints(losses, lambdas).assign(task="seq_mnist")
    runs = stats.matched_runs(mnist).set_index("condition")
    assert runs.learns.tolist() == [False, True] and (runs.level == 1.5).all()
    regression = stats.matched_runs(mnist.assign(task="pattern_generation"))
    assert regression.learns.all() and (regression.level == 2.2).all()


def _final(conditions: dict[str, tuple[str, float, float | None]], seeds=range(6)):
    """Final rows per (condition: (family, shift, n)) and seed: λ_max = shift + seed, the gap
    its square; a condition named ``…-type`` is its family's cell-type variant."""
    return pd.DataFrame(
        [{"task": "t", "condition": c, "family": family, "lmbda": np.nan, "n": n,
          "variant": "cell_type" if c.endswith("-type") else DEFAULT_VARIANT, "seed": s,
          "diverged": False, "metric": m, "value": v}
         for c, (family, shift, n) in conditions.items() for s in seeds
         for m, v in (("lambda_max", shift + s), ("gap_test_loss", (shift + s) ** 2))]
    )  # fmt: skip


LIU_AND_OURS = {"BPTT": ("bptt", 0.0, np.nan), "e-prop": ("eprop", 10.0, np.nan),
                "RFLO": ("rflo", 20.0, np.nan), "MDGL": ("mdgl", 30.0, np.nan),
                "Oracle": ("oracle", 40.0, np.nan), "TBPTT(1)": ("tbptt", 10.0, 1),
                "BP(1)": ("bp_lambda", 50.0, np.nan)}  # fmt: skip


def test_correlations_count_each_rule_in_one_pool_and_test_the_rules_means():
    """Liu et al.'s rules and ours are pooled apart, the oracle (BPTT) in neither, so TBPTT(1)
    (e-prop at α = 0) is never counted twice; the pool's verdict test runs over its rules'
    means, with an exact permutation p (4 rules: at best 2/24)."""
    table = stats.correlations(_final(LIU_AND_OURS), typed=())
    liu = table[table.scope == "Liu et al.'s rules"].set_index("unit")
    assert liu.loc["runs", "n"] == 24 and liu.loc["runs", "spearman_r"] == pytest.approx(1)
    assert liu.loc["runs", "pearson_r"] < 1  # not linear
    assert liu.loc["condition means", "n"] == 4
    assert liu.loc["condition means", "spearman_p"] == pytest.approx(2 / 24)
    assert (table[table.unit == "seeds"].n == 6).all()
    assert set(table[table.unit == "seeds"].scope) == set(LIU_AND_OURS)
    ours = table[table.scope == "BP(λ), SG(n), TBPTT(n)"].set_index("unit")
    assert ours.loc["runs", "n"] == 12 and "condition means" not in ours.index  # 2 rules
    anti = _final(LIU_AND_OURS).pipe(lambda f: f.assign(
        value=np.where(f.metric == "gap_test_loss", -f.value, f.value)))  # fmt: skip
    flipped = stats.correlations(anti, typed=())
    assert flipped[flipped.unit == "runs"].spearman_r.iloc[0] == pytest.approx(-1)


def test_mdgl_type_counts_in_the_pools_only_where_the_network_has_cell_types():
    """Cell-type MDGL's types are the E and I populations of a Dale's-law network: only
    delayed match has one. Elsewhere its two blocks of sign-free weights average to ≈ 0 and it
    is ≈ e-prop, so Liu et al.'s pool leaves it out (else e-prop counts twice), the table of
    unpooled runs sets it beside e-prop and says why, and its claims say so; its own seeds are
    still correlated."""
    paper = gen.config("paper", tasks=["pattern_generation", "delayed_match"])
    assert [t for t in LIU_TASKS if has_cell_types(t, paper)] == ["delayed_match"]
    assert not has_cell_types("delayed_match", replace(paper, dms_excitatory_fraction=None))
    grid = {**LIU_AND_OURS, "MDGL-type": ("mdgl", 35.0, np.nan)}
    final = pd.concat([_final(grid).assign(task="pattern_generation"),
                       _final(grid).assign(task="delayed_match")])  # fmt: skip
    table = stats.correlations(final, typed=["delayed_match"])
    liu = table[table.scope == "Liu et al.'s rules"].set_index(["task", "unit"]).n
    assert liu["pattern_generation", "runs"] == 24 and liu["delayed_match", "runs"] == 30
    assert liu["pattern_generation", "condition means"] == 4
    assert liu["delayed_match", "condition means"] == 5
    seeds = table[table.unit == "seeds"]
    assert set(seeds.task[seeds.scope == "MDGL-type"]) == {"pattern_generation", "delayed_match"}
    out = stats.unpooled(final, typed=["delayed_match"])
    assert out[["task", "condition", "why"]].values.tolist() == [
        ["pattern_generation", "MDGL-type", stats.NO_CELL_TYPES]
    ]
    assert out["lambda_max (MDGL-type)"].iloc[0] == 37.5
    assert out["lambda_max (e-prop)"].iloc[0] == 12.5
    assert stats.unpooled(final, typed=LIU_TASKS).empty
    at = _AtTask("pattern_generation", final, final, {}, dict(zip(out.condition, out.why)))
    assert at.text("MDGL-type", "lambda_max").startswith(
        f"MDGL-type (out of the pools: {stats.NO_CELL_TYPES}) "
    )
    assert at.text("MDGL", "lambda_max").startswith("MDGL ")


def test_the_identities_are_set_side_by_side_where_they_hold():
    """Oracle = BPTT everywhere; on seq-MNIST (α = 0, a last-step loss) e-prop = TBPTT(1) and
    MDGL = TBPTT(2) (test_liu_rules), but not MDGL-type, whose W̃ is averaged."""
    grid = {**LIU_AND_OURS, "MDGL-type": ("mdgl", 35.0, np.nan), "TBPTT(2)": ("tbptt", 30.0, 2)}
    final = pd.concat([_final(grid).assign(task="seq_mnist"),
                       _final(grid).assign(task="delayed_match")])  # fmt: skip
    found = stats.identities(final)
    pairs = set(zip(found["task"], found["condition"], found["equals"]))
    assert pairs == {
        ("seq_mnist", "Oracle", "BPTT"),
        ("delayed_match", "Oracle", "BPTT"),
        ("seq_mnist", "e-prop", "TBPTT(1)"),
        ("seq_mnist", "MDGL", "TBPTT(2)"),
    }  # α = 0 only on seq-MNIST
    row = found[(found.task == "seq_mnist") & (found.condition == "e-prop")].iloc[0]
    assert row["lambda_max (e-prop)"] == row["lambda_max (TBPTT(1))"] == 12.5


def test_the_permutation_p_of_spearman_is_exact_for_a_few_units():
    assert permutation_spearman_p([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(2 / 120)
    assert permutation_spearman_p([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(2 / 24)
    assert permutation_spearman_p([1, 2, 3, 4], [1, 3, 2, 4]) > 0.3
    many = permutation_spearman_p(range(12), range(12))
    assert 0 < many < 1e-3  # Monte Carlo: the observed pairing counts, so never 0
    for n in (4, 5, 12):  # the floor is what a perfect ordering gets
        assert smallest_permutation_p(n) == pytest.approx(
            permutation_spearman_p(range(n), range(n))
        )


def test_a_pool_of_four_conditions_cannot_decide_its_correlation():
    """4 conditions: even a perfect ordering has exact p = 2/24 = 0.083, so the verdict says the
    pool cannot decide instead of calling a perfect ordering weak; 5 can (2/120)."""
    four = pd.Series({"n": 4, "spearman_r": 1.0, "spearman_p": 2 / 24})
    five = pd.Series({"n": 5, "spearman_r": 1.0, "spearman_p": 2 / 120})
    assert _correlation_verdict(four) == (
        "inconclusive (4 conditions cannot decide: the exact permutation p is at least 0.083; "
        "here 0.083)"
    )
    assert _correlation_verdict(five) == "reproduced"


def test_delayed_match_on_fresh_trials_cannot_show_its_clean_gap():
    """Trained on fresh trials drawn like the test, delayed match's test − train is zero by
    construction: its clean-gap verdicts read "not testable"; with a finite training set, or
    on the other tasks, they are judged."""
    fresh, finite = SimpleNamespace(dms_train_size=None), SimpleNamespace(dms_train_size=512)
    assert set(_untestable("delayed_match", fresh)) == {"gap_test_loss"}
    assert _untestable("delayed_match", finite) == {} == _untestable("seq_mnist", fresh)
    at = _AtTask("delayed_match", pd.DataFrame(), pd.DataFrame(),
                 _untestable("delayed_match", fresh), {})  # fmt: skip
    assert at.judged("gap_test_loss", "reproduced").startswith("not testable (training trials")
    assert at.judged("gap_test_noisy_loss", "reproduced") == "reproduced"


def test_a_variance_claim_needs_ten_seeds_per_rule():
    assert _variance_verdict(1.5, 30.0, 5).startswith("cannot decide (5 seeds")
    assert _variance_verdict(1.5, 30.0, 10) == "reproduced"
    assert _variance_verdict(0.01, 0.5, 10) == "NOT reproduced"
    assert _variance_verdict(0.5, 3.0, 12) == "inconclusive (12 seeds)"


def test_a_variance_claim_counts_the_seeds_with_a_gap_not_the_seeds_run():
    """A diverged seed has no gap (NaN): with 10 seeds of e-prop and 10 of BPTT, one of which
    diverged, the variance rests on 9 of BPTT's and cannot decide (the paper budget's BPTT seed
    6 diverged at its third iteration)."""
    rng = np.random.default_rng(0)
    rows = [{"task": "seq_mnist", "condition": condition, "seed": seed, "metric": metric,
             "diverged": condition == "BPTT" and seed == 6,
             "value": np.nan if condition == "BPTT" and seed == 6 else scale * rng.normal()}
            for condition, scale in (("BPTT", 0.01), ("e-prop", 1.0)) for seed in range(10)
            for metric in ("gap_test_loss", "lambda_max")]  # fmt: skip
    final = pd.DataFrame(rows)
    claims = {c["claim"]: c["verdict"] for c in _liu_versus_bptt(
        _AtTask("seq_mnist", final, final, {}, {}), "budget")}  # fmt: skip
    assert claims["seq_mnist: e-prop's gap is more variable over seeds than BPTT's"] == (
        "cannot decide (9 seeds; a variance claim needs ≥ 10)")  # fmt: skip
    assert len(gen.DEFAULTS["paper"]["seeds"]) >= 10


def test_the_stability_bound_is_tested_only_where_it_binds():
    assert _bound_verdict(0.9, 0.01, 1.0, 10) == "reproduced"
    assert _bound_verdict(0.9, 0.01, 0.1, 10).startswith("inconclusive (λ_max stays below")
    assert _bound_verdict(0.9, 0.01, 3.0, 10).startswith("NOT reproduced")
    assert _bound_verdict(0.1, 0.5, 1.0, 10).startswith("inconclusive (10 runs")


def test_a_task_where_every_run_diverged_has_no_stability_bound_claim():
    """A diverged run's final values are NaN and left out, so such a task has no end-of-run
    λ_max or bound at all: no claim, rather than a failure that loses the whole report."""
    final = pd.DataFrame({"task": "seq_mnist", "condition": "BPTT", "seed": [0, 1],
                          "metric": "lambda_max", "value": np.nan})  # fmt: skip
    at = _AtTask("seq_mnist", final, final.iloc[:0], {}, {})
    assert _stability_bound(at) == []


def test_the_paper_profile_follows_the_authors_wherever_their_setting_is_known():
    """Every known setting of Liu et al. (and of the same author's delayed task) is the paper
    profile's, or a stated, deliberate difference; smaller profiles say what they shrink."""
    paper = settings_table(gen.config("paper", tasks=["pattern_generation", "delayed_match"]))
    assert not (paper.follows == "NO").any(), paper[paper.follows == "NO"]
    assert set(paper.follows) <= {"yes", "unknown"} | {f for f in paper.follows if
                                                       f.startswith("no: ")}  # fmt: skip
    deliberate = paper[paper.follows.str.startswith("no: ")]
    training = {"optimiser", "lr", "l2", "iterations"}  # ModProp's delayed-match training
    assert set(deliberate.setting) == {"checkpoint_every", "seeds", "curvature_batch", *training}
    modprop = deliberate[deliberate.source.str.startswith(MODPROP)]
    assert set(modprop.setting) == training and modprop.follows.nunique() == 1
    noise = paper[paper.setting == "DelayedMatch.noise_std"].iloc[0]
    assert noise[["Liu et al.", "paper", "follows"]].tolist() == [0.01, DelayedMatch.noise_std,
                                                                  "yes"]  # fmt: skip
    medium = settings_table(gen.config("medium", tasks=["delayed_match"]))
    shrunk = set(medium[medium.follows == "shrunk"].setting)
    assert {"delay", "tau_dms", "iterations"} <= shrunk
    stated = medium[medium.source.str.startswith(MODPROP) & medium.setting.isin(training)]
    assert len(stated) == 4 and stated.follows.str.startswith("no: ").all()  # a design choice


def test_the_budget_counts_the_seeds_that_ran_not_the_seeds_asked_for():
    """A merge of the finished shards holds fewer seeds than the profile's 10, and the rules a
    variance claim compares may hold more than the others."""

    def runs(condition, seeds, diverged=False):
        return [{"task": "seq_mnist", "condition": condition, "seed": seed, "diverged": diverged,
                 "metric": "lambda_max", "value": np.nan if diverged else 1.0}
                for seed in seeds]  # fmt: skip

    five = pd.DataFrame(runs("BPTT", range(5)) + runs("BP(1)", range(5), diverged=True))
    assert _seeds_run(five) == "5 seeds"
    assert _seeds_run(pd.concat([five, pd.DataFrame(runs("e-prop", range(10)))])) == (
        "5–10 seeds per rule"
    )
