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
