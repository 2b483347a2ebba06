"""Notebook 05's one line on λ_max solves that missed their tolerance, on hand-made
checkpoint tables; and that a run keeps the flags without printing a warning per checkpoint."""

import math
import warnings

import pandas as pd

from bplambda.convergence import FLAG, VALUE, convergence_summary
from bplambda.curvature import ConvergenceWarning
from bplambda.experiments import generalisation as gen


def _checkpoints(missed: set[tuple[str, int, str, int]], broken=frozenset()) -> pd.DataFrame:
    """Two tasks × checkpoints 0, 50, 100 × (BPTT, BP(1)) × seeds 0–2, in the long layout of
    notebook 05's checkpoints table (with a metric that is neither flag nor value)."""
    rows = []
    for task in ("seq_mnist", "delayed_match"):
        for batch in (0, 50, 100):
            for condition, lmbda in (("BPTT", math.nan), ("BP(1)", 1.0)):
                for seed in range(3):
                    model = (task, batch, condition, seed)
                    key = dict(task=task, condition=condition, lmbda=lmbda, seed=seed,
                               batch=batch, t=-1)  # fmt: skip
                    value = math.nan if model in broken else 2.0
                    rows += [{**key, "metric": FLAG, "value": float(model not in missed)},
                             {**key, "metric": VALUE, "value": value},
                             {**key, "metric": "train_loss", "value": 0.5}]  # fmt: skip
    return pd.DataFrame(rows)


def test_every_solve_converged_is_one_short_line():
    line = convergence_summary(_checkpoints(set()), max_iter=20)
    assert line == "λ_max at the checkpoints: 36 solves of at most 20 HVPs, every one converged."


def test_misses_are_counted_per_checkpoint_with_the_models_named():
    missed = {("seq_mnist", 50, "BPTT", 1), ("seq_mnist", 50, "BP(1)", 0),
              ("delayed_match", 100, "BP(1)", 2)}  # fmt: skip
    line = convergence_summary(_checkpoints(missed), max_iter=20)
    assert "\n" not in line
    assert "36 solves of at most 20 HVPs, 3 did not converge:" in line
    assert "seq_mnist at batch 50: 2 of 6 models (BPTT seed 1, BP(1) seed 0)" in line
    assert "delayed_match at batch 100: 1 of 6 models (BP(1) seed 2)" in line
    assert "not finite" not in line and "more checkpoint" not in line
    assert f"`{FLAG}`" in line


def test_a_long_list_is_cut_to_the_first_checkpoints_and_models():
    missed = {
        (task, batch, condition, seed)
        for task in ("seq_mnist", "delayed_match")
        for batch in (0, 50, 100)
        for condition in ("BPTT", "BP(1)")
        for seed in range(3)
    }
    line = convergence_summary(_checkpoints(missed), max_iter=5, checkpoints_shown=2,
                               models_named=4)  # fmt: skip
    assert "36 did not converge" in line
    assert line.count(" of 6 models") == 2 and "; and 4 more checkpoints." in line
    assert "(BPTT seed 0, BPTT seed 1, BPTT seed 2, BP(1) seed 0, …)" in line


def test_a_diverged_net_is_counted_as_not_finite():
    model = ("seq_mnist", 100, "BP(1)", 1)
    line = convergence_summary(_checkpoints({model}, broken={model}), max_iter=20)
    assert "1 did not converge (1 of them not finite: a diverged net)" in line


def test_a_run_keeps_each_solves_flag_and_warns_no_more():
    cfg = gen.config("smoke", tasks=["pattern_generation"], rules=["bptt"], seeds=[0, 1],
                     iterations=2, checkpoint_every=2, curvature_iterations=2)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = gen.run(cfg)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    flags = table[table.metric == FLAG]
    assert len(flags) == 4 and (flags.value == 0).any()  # 2 HVPs cannot meet the tolerance
    assert "did not converge" in convergence_summary(table, cfg.curvature_iterations)
