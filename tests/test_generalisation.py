"""Notebook 05's experiment module: conditions, the end-of-run curvature, the matched-loss
comparison, correlations and the verdict helpers, on small hand-made cases."""

import numpy as np
import pandas as pd
import pytest
import torch

from bplambda.errors import ParameterError
from bplambda.experiments import generalisation as gen
from bplambda.experiments import sequential_mnist
from bplambda.experiments.conditions import single_condition
from bplambda.experiments.generalisation_claims import _bound_verdict
from bplambda.sharpness import final_curvature
from bplambda.stacking import init_stacked_network
from bplambda.tasks.liu import liu_task


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
    assert sorted(checkpoints[checkpoints.condition == "e-prop"].batch) == [2, 4]
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


def test_matched_loss_takes_each_runs_first_checkpoint_at_the_common_level():
    losses = {("A", 0): [1.0, 0.5, 0.2], ("B", 0): [1.0, 0.8, 0.6]}  # level: max(0.2, 0.6)
    lambdas = {("A", 0): [1, 2, 3], ("B", 0): [4, 5, 6]}
    matched = gen.matched_loss(_checkpoints(losses, lambdas))
    at = matched[matched.metric == "lambda_max"].set_index("condition")
    assert at.loc["A", "value"] == 2 and at.loc["B", "value"] == 6  # A at 0.5, B at 0.6
    assert (matched.level == 0.6).all()


def test_correlations_pool_runs_and_split_them_by_family():
    seeds = range(6)
    final = pd.DataFrame(
        [{"task": "t", "condition": c, "family": c, "lmbda": np.nan, "n": np.nan, "seed": s,
          "diverged": False, "metric": m, "value": v}
         for c, shift in (("A", 0.0), ("B", 10.0)) for s in seeds
         for m, v in (("lambda_max", shift + s), ("gap_test_loss", (shift + s) ** 2))]
    )  # fmt: skip
    table = gen.correlations(final).set_index("scope")
    assert table.loc["pooled", "n"] == 12 and table.loc["pooled", "spearman_r"] == pytest.approx(1)
    assert table.loc["A", "n"] == 6 and table.loc["pooled", "pearson_r"] < 1  # not linear
    anti = final.assign(value=np.where(final.metric == "gap_test_loss", -final.value, final.value))
    pooled = gen.correlations(anti).set_index("scope").loc["pooled"]
    assert pooled.spearman_r == pytest.approx(-1)


def test_the_stability_bound_is_tested_only_where_it_binds():
    assert _bound_verdict(0.9, 0.01, 1.0, 10) == "reproduced"
    assert _bound_verdict(0.9, 0.01, 0.1, 10).startswith("inconclusive (λ_max stays below")
    assert _bound_verdict(0.9, 0.01, 3.0, 10).startswith("NOT reproduced")
    assert _bound_verdict(0.1, 0.5, 1.0, 10).startswith("inconclusive (10 runs")
