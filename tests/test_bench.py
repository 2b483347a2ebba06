"""`make bench`'s command line (the measurements themselves are not unit-tested: no timings
in tests)."""

import pytest

from bplambda import bench


def test_sync_check_refuses_a_device_without_cuda_in_one_line(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--sync-check", "--device", "cpu"])
    assert "run it with --device cuda" in capsys.readouterr().err
