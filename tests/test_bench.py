"""`make bench`'s command line (the measurements themselves are not unit-tested: no timings
in tests)."""

import pytest
import torch

from bplambda import bench


def test_sync_check_refuses_a_device_without_cuda_in_one_line(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--sync-check", "--device", "cpu"])
    assert "run it with --device cuda" in capsys.readouterr().err


def test_the_peer_table_sets_every_rule_against_the_lstm_loop():
    tiny = {"tiny": (3, 2, 4, 2, 5, 2, "bce")}
    table = bench.peer_table(torch.device("cpu"), tiny, threads=(1,), repeats=1)
    assert set(table.method) == set(bench.PEER_RULES)
    assert set(table.models) == {1, 2}
    assert (table.ratio > 0).all()
    assert "ratio, 1 thread" in bench.show_peer_table(table)


def test_notebook_05s_costs_cover_every_condition_at_each_number_of_seeds():
    table = bench.generalisation_costs(
        torch.device("cpu"), "smoke", "pattern_generation", seed_counts=(2, 1), iterations=1,
        eval_examples=4, solver_steps=1, rules=("bptt", "eprop", "sg"), slow_iterations=6,
    )  # fmt: skip
    assert list(zip(table.conditions, table.seeds, table.models)) == [
        ("BPTT", 2, 2), ("e-prop", 2, 2), ("SG(1)", 2, 2),
        ("BPTT", 1, 1), ("e-prop", 1, 1), ("SG(1)", 1, 1),
    ]  # fmt: skip
    # smoke: 4 iterations, a checkpoint every 2 and at the start; e-prop trains slow_iterations
    assert list(table.iterations[:3]) == [4, 6, 4] and list(table.checkpoints[:3]) == [3, 4, 3]
    costs = ["s_per_iteration", "s_evaluation", "s_hessian_build", "s_per_hvp",
             "s_hessian_build_float64", "s_per_hvp_float64", "s_task"]  # fmt: skip
    assert (table[costs] > 0).all().all()
    assert "s_per_hvp" in bench.show_generalisation_costs(table)
