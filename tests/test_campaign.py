"""The campaign report: each shard's status, progress and time left from its saved states."""

import json
from pathlib import Path

import pytest

from bplambda.campaign import (
    REPORT,
    ShardProgress,
    batches_per_condition,
    hours_left,
    main,
    report,
    shard_progress,
)
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
    (tmp_path / "campaign.json").write_text(json.dumps(
        {"notebooks": {"04_copy_repeat": {"commit": "abc123", "command": "SWEEP",
                                          "estimates_basis": "a guess",
                                          "estimates_h": {"sg": 0.5}}}}))  # fmt: skip
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
    assert ("| 04_copy_repeat | `abc123` | sg | started | 15 / 30 (50%) | 0 min | 0 min | "
            "30 min |") in text  # fmt: skip
    assert "- 04_copy_repeat: a guess" in text
    assert "git worktree add --detach ../campaign-abc123 abc123" in text
    assert ('(cd ../campaign-abc123 && for s in sg; do SWEEP --shards "$s"; done > '
            "../campaign-04A.log 2>&1 &)") in text  # fmt: skip
    assert 'for s in oracle; do SWEEP --shards "$s"; done > ../campaign-04B.log' in text
    # sg: 20 s for half; oracle: no pace and no estimate
    assert "- 04_copy_repeat: 1 of 3 shards finished, 0.0 spent, unknown left" in text


def test_each_notebook_continues_from_its_own_commit_and_a_finished_one_merges(campaign):
    plan = json.loads((campaign / "campaign.json").read_text())
    other = campaign / "03_sequential_mnist"
    other.mkdir()
    (other / "sweep.json").write_text(json.dumps(
        {"notebook": "03_sequential_mnist", "profile": "smoke", "parameters": {},
         "shard_by": "conditions", "shards": []}))  # fmt: skip
    plan["notebooks"] = {"03_sequential_mnist": {"commit": "def456", "command": "OLD"},
                         **plan["notebooks"]}  # fmt: skip
    (campaign / "campaign.json").write_text(json.dumps(plan))
    text = report(campaign)
    assert "# 03_sequential_mnist\npython -m bplambda.sweep merge " in text
    assert "../campaign-def456" not in text  # nothing of 03 is left to run
    assert 'for s in sg; do SWEEP --shards "$s"' in text


def test_a_planned_notebook_shows_its_estimates_before_its_sweep_starts(campaign):
    plan = json.loads((campaign / "campaign.json").read_text())
    plan["notebooks"]["05_generalisation_curvature"] = {
        "commit": "fed789", "command": "LATER", "estimates_h": {"bptt-seed0": 1.5}}  # fmt: skip
    (campaign / "campaign.json").write_text(json.dumps(plan))
    text = report(campaign)
    assert ("| 05_generalisation_curvature | `fed789` | bptt-seed0 | not started | – | 0 min | "
            "– | 1.5 h |") in text  # fmt: skip
    assert ('(cd ../campaign-fed789 && for s in bptt-seed0; do LATER --shards "$s"; done > '
            "../campaign-05A.log") in text  # fmt: skip
    assert (
        "- 05_generalisation_curvature: 0 of 1 shards finished, 0.0 spent, about 1.5 left" in text
    )
    plan["notebooks"]["05_generalisation_curvature"]["commit"] = "abc123"  # 04's
    (campaign / "campaign.json").write_text(json.dumps(plan))
    assert report(campaign).count("git worktree add --detach ../campaign-abc123") == 1


def test_the_plans_order_runs_the_deciding_shards_first_dealt_out_over_the_cores(campaign):
    plan = json.loads((campaign / "campaign.json").read_text())
    plan["notebooks"]["04_copy_repeat"]["order"] = ["bptt", "oracle", "sg"]  # bptt finished
    (campaign / "campaign.json").write_text(json.dumps(plan))
    text = report(campaign)
    assert text.index("| bptt |") < text.index("| sg |") < text.index("| oracle |")  # sweep's
    assert 'for s in oracle; do SWEEP --shards "$s"; done > ../campaign-04A.log' in text
    assert 'for s in sg; do SWEEP --shards "$s"; done > ../campaign-04B.log' in text
    plan["notebooks"]["04_copy_repeat"]["order"] = ["oracle", "sg-seed9"]
    (campaign / "campaign.json").write_text(json.dumps(plan))
    with pytest.raises(ValueError, match=r"order names \['sg-seed9'\], which are not its shards"):
        report(campaign)


def test_hours_left_scales_the_unstarted_estimates_by_the_finished_shards_pace():
    def shard(name: str, done: int, seconds: float, finished: bool = False,
              rules: tuple[str, ...] = ()) -> ShardProgress:  # fmt: skip
        return ShardProgress("04_copy_repeat", name, done, 100, seconds, finished, rules)

    estimates = {"a": 1.0, "b": 2.0, "c": 0.5}
    # a finished in 2 h against 1 h estimated: c's 0.5 h becomes 1 h; b is at its own pace
    progress = [shard("a", 100, 7200.0, True), shard("b", 25, 900.0), shard("c", 0, 0.0)]
    assert hours_left(progress, estimates) == pytest.approx(0.75 + 1.0)
    assert hours_left(progress[1:], estimates) == pytest.approx(0.75 + 0.5)  # none finished
    assert hours_left([*progress, shard("d", 0, 0.0)], estimates) is None
    # with rules: an unstarted shard takes the ratio of finished shards of its own rules
    estimates = {"bptt0": 1.0, "sg0": 1.0, "bptt1": 1.0, "sg1": 2.0, "tbptt1": 1.0}
    progress = [shard("bptt0", 100, 3 * 3600.0, True, ("bptt",)),
                shard("sg0", 100, 1.5 * 3600.0, True, ("sg",)),
                shard("bptt1", 0, 0.0, rules=("bptt",)), shard("sg1", 0, 0.0, rules=("sg",)),
                shard("tbptt1", 0, 0.0, rules=("tbptt",))]  # fmt: skip
    # bptt 3x, sg 1.5x, tbptt the pooled (3 + 1.5) / 2 = 2.25x
    assert hours_left(progress, estimates) == pytest.approx(3.0 + 3.0 + 2.25)


def test_the_report_is_written_beside_the_plan_and_a_folder_without_one_is_refused(
    campaign, tmp_path, capsys
):
    assert main([str(campaign)]) == 0
    assert "| oracle | not started |" in (campaign / REPORT).read_text()
    assert main([str(tmp_path / "elsewhere")]) == 2
    assert "holds no campaign.json" in capsys.readouterr().err


def test_todays_code_merges_the_committed_campaign_shards():
    """The finished shards of notebook 03's paper campaign (made by the pinned commit) are read
    and tabled by the current code, as the campaign's merge will do."""
    from bplambda.experiments import sequential_mnist
    from bplambda.paths import project_path

    sweep = project_path("results/paper/03_sequential_mnist")
    record = json.loads((sweep / "sweep.json").read_text())
    bptt = [str(sweep / s["folder"]) for s in record["shards"] if s["name"].startswith("bptt-")]
    finished = [f for f in bptt if (Path(f) / "raw").exists()]
    if len(finished) < len(bptt):
        pytest.skip("the campaign's BPTT shards are not all finished")
    cfg = sequential_mnist.config("paper", rules=["bptt"], merge_from=finished)
    tables = sequential_mnist.tables(sequential_mnist.run(cfg), cfg)
    best = tables["best"]
    assert sorted(best.seed) == [0, 1, 2, 3, 4] and set(best.condition) == {"BPTT"}
    assert tables["epochs"].epoch.max() == 50
    assert tables["test_error"].set_index("condition").loc["BPTT", "seeds"] == 5


def test_notebook_05_shards_count_the_iterations_of_their_rules():
    def batches(rule: str) -> list[int]:
        parameters = {"rules": [rule], "tasks": ["seq_mnist"]}
        return batches_per_condition("05_generalisation_curvature", parameters, "paper")

    assert batches("mdgl") == [16_000, 16_000]  # both MDGL variants
    assert batches("bptt") == [10_000]


def test_each_followed_notebook_counts_the_batches_its_run_trains():
    """03: epochs x the training split's batches (smoke's ``limit`` caps the split); 04: the
    updates; one entry per unit of the grid (BP(λ) once per LSTM mode); 01 is not followed."""
    assert batches_per_condition("03_sequential_mnist", {"rules": ["bp_lambda"]}, "paper") == [
        50 * 960] * 2  # fmt: skip
    assert batches_per_condition("03_sequential_mnist", {"rules": ["bptt"]}, "smoke") == [
        500 // 50]  # fmt: skip
    assert batches_per_condition("04_copy_repeat", {"rules": ["sg"]}, "paper") == [150_000]
    with pytest.raises(ValueError, match="counts no training batches"):
        batches_per_condition("01_toy_alignment", {}, "smoke")
