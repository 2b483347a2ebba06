"""The campaign report: each shard's status, progress and time left from its saved states."""

import json

import pytest

from bplambda.campaign import REPORT, main, report, shard_progress
from bplambda.resume import save_atomically


@pytest.fixture
def campaign(tmp_path):
    """A 04 sweep of two shards (30 updates per condition in smoke): ``bptt`` finished, ``sg``
    half-way through its one condition, ``oracle`` not started."""
    sweep = tmp_path / "04_copy_repeat"
    shards = [{"name": rule, "folder": f"shards/{i}-{rule}", "parameters": {"rules": [rule]}}
              for i, rule in enumerate(("bptt", "sg", "oracle"))]  # fmt: skip
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps(
        {"notebook": "04_copy_repeat", "profile": "smoke", "parameters": {},
         "shard_by": "conditions", "shards": shards}))  # fmt: skip
    done = sweep / "shards/0-bptt"
    save_atomically({"key": "k", "seconds": 40.0}, done / "state" / "BPTT.done.pt")
    (done / "raw").mkdir()
    (done / "raw" / "run_copy_repeat.csv.gz").write_bytes(b"")
    save_atomically({"key": "k", "batch": 15, "seconds": 20.0},
                    sweep / "shards/1-sg" / "state" / "SG2.pt")  # fmt: skip
    (tmp_path / "campaign.json").write_text(
        json.dumps(
            {"commit": "abc123", "notebooks": {"04_copy_repeat": {"estimates_h": {"sg": 0.5}}}}
        )
    )
    return tmp_path


def test_each_shard_reports_its_progress_and_time_left(campaign):
    sweep = campaign / "04_copy_repeat"
    record = json.loads((sweep / "sweep.json").read_text())
    bptt, sg, oracle = (shard_progress(sweep, s, "04_copy_repeat", "smoke")
                        for s in record["shards"])  # fmt: skip
    assert (bptt.status, bptt.done, bptt.total, bptt.seconds_left) == ("finished", 30, 30, 0.0)
    assert (sg.status, sg.done, sg.total, sg.seconds, sg.seconds_left) == (
        "started", 15, 30, 20.0, 20.0)  # fmt: skip
    assert (oracle.status, oracle.done, oracle.seconds_left) == ("not started", 0, None)
    text = report(campaign)
    assert "`abc123`" in text
    assert "| 04_copy_repeat | sg | started | 15 / 30 (50%) | 0 min | 0 min | 30 min |" in text


def test_the_report_is_written_beside_the_plan_and_a_folder_without_one_is_refused(
    campaign, tmp_path, capsys
):
    assert main([str(campaign)]) == 0
    assert "| oracle | not started |" in (campaign / REPORT).read_text()
    assert main([str(tmp_path / "elsewhere")]) == 2
    assert "holds no campaign.json" in capsys.readouterr().err
