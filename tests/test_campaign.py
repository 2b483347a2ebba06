"""The campaign report (each shard's status, progress and time left from its saved states) and
the queue that runs its unfinished shards."""

import fcntl
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from bplambda.campaign import (
    REPORT,
    ShardProgress,
    batches_per_condition,
    campaign_progress,
    hours_left,
    main,
    report,
    shard_progress,
)
from bplambda.campaign_queue import LOCK, Job, Queue, commit_shard, pending
from bplambda.campaign_queue import main as queue_main
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
    assert "# 04_copy_repeat, from ../campaign-abc123: sg oracle\n" in text
    assert "python -m bplambda.campaign_queue results/paper" in text
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
    assert "03_sequential_mnist  # all shards done" in text
    assert "../campaign-def456" not in text  # nothing of 03 is left to run
    assert "# 04_copy_repeat, from ../campaign-abc123: sg oracle" in text


def test_a_planned_notebook_shows_its_estimates_before_its_sweep_starts(campaign):
    plan = json.loads((campaign / "campaign.json").read_text())
    plan["notebooks"]["05_generalisation_curvature"] = {
        "commit": "fed789", "command": "LATER", "estimates_h": {"bptt-seed0": 1.5}}  # fmt: skip
    (campaign / "campaign.json").write_text(json.dumps(plan))
    text = report(campaign)
    assert ("| 05_generalisation_curvature | `fed789` | bptt-seed0 | not started | – | 0 min | "
            "– | 1.5 h |") in text  # fmt: skip
    assert "# 05_generalisation_curvature, from ../campaign-fed789: bptt-seed0" in text
    assert (
        "- 05_generalisation_curvature: 0 of 1 shards finished, 0.0 spent, about 1.5 left" in text
    )


def test_the_plans_order_runs_the_deciding_shards_first(campaign):
    plan = json.loads((campaign / "campaign.json").read_text())
    plan["notebooks"]["04_copy_repeat"]["order"] = ["bptt", "oracle", "sg"]  # bptt finished
    (campaign / "campaign.json").write_text(json.dumps(plan))
    text = report(campaign)
    assert text.index("| bptt |") < text.index("| sg |") < text.index("| oracle |")  # sweep's
    assert "# 04_copy_repeat, from ../campaign-abc123: oracle sg\n" in text
    assert [job.shard for job in pending(campaign)] == ["oracle", "sg"]
    assert [job.shard for job in pending(campaign, shards=["sg", "bptt"])] == ["sg"]  # bptt: done
    with pytest.raises(ValueError, match=r"--shards \['sg-seed9'\]: no such shard"):
        pending(campaign, shards=["sg-seed9"])
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


def test_pending_names_each_unfinished_shard_with_its_sweep_command_and_worktree(campaign, capsys):
    sg, oracle = pending(campaign)
    assert (sg.sweep, sg.shard, sg.command, sg.commit) == (
        "04_copy_repeat", "sg", "SWEEP --shards sg", "abc123")  # fmt: skip
    assert sg.worktree.name == "campaign-abc123" and sg.folder == campaign / "04_copy_repeat"
    assert oracle.shard == "oracle"
    assert [job.name for job in pending(campaign, ["04"])] == [
        "04_copy_repeat sg",
        "04_copy_repeat oracle",
    ]
    assert queue_main([str(campaign), "--notebooks", "05"]) == 2
    assert "the campaign plan has no notebook '05'" in capsys.readouterr().err
    assert queue_main([str(campaign / "elsewhere")]) == 2
    assert "holds no campaign.json" in capsys.readouterr().err
    with (campaign / LOCK).open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert queue_main([str(campaign)]) == 2
    assert "another queue is running this campaign" in capsys.readouterr().err


def test_a_side_run_of_a_notebook_lives_in_its_own_folder_and_names_its_notebook(campaign):
    """A second sweep of notebook 04 at another setting: its shards are counted as 04's, its
    rows carry its folder, and choosing notebook 04 takes both sweeps."""
    side = campaign / "side" / "04_other_setting"
    shutil.copytree(campaign / "04_copy_repeat", side)
    plan = json.loads((campaign / "campaign.json").read_text())
    plan["notebooks"]["side/04_other_setting"] = {
        "notebook": "04_copy_repeat", "commit": "abc123", "command": "SIDE"}  # fmt: skip
    (campaign / "campaign.json").write_text(json.dumps(plan))
    text = report(campaign)
    assert "| side/04_other_setting | `abc123` | sg | started | 15 / 30 (50%) |" in text
    assert "# side/04_other_setting, from ../campaign-abc123: sg oracle" in text
    jobs = pending(campaign, ["04"])
    assert [job.name for job in jobs] == ["04_copy_repeat sg", "04_copy_repeat oracle",
                                          "side/04_other_setting sg",
                                          "side/04_other_setting oracle"]  # fmt: skip
    assert (jobs[2].command, jobs[2].folder) == ("SIDE --shards sg", side)
    chosen = pending(campaign, ["side/04_other_setting", "04_copy_repeat", "04"])
    assert [job.sweep for job in chosen] == ["side/04_other_setting"] * 2 + ["04_copy_repeat"] * 2


def _job(tmp_path: Path, shard: str, command: str) -> Job:
    return Job("04_copy_repeat", shard, command, "", tmp_path, tmp_path)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_queue_runs_the_shards_in_order_single_threaded_from_their_worktree(tmp_path):
    said, ended = [], []
    jobs = [_job(tmp_path, f"s{i}", f'echo "$OMP_NUM_THREADS $PWD" > out{i}; sleep 0.2')
            for i in range(3)]  # fmt: skip
    queue = Queue(jobs, 2, tmp_path / "logs", say=said.append,
                  after_each=lambda job, rc: ended.append((job.shard, rc)))  # fmt: skip
    assert queue.run(poll=0.02) == {f"04_copy_repeat s{i}": 0 for i in range(3)}
    assert [line.split(" ", 1)[1] for line in said if " start " in line] == [
        f"start 04_copy_repeat s{i} (try 1 of 3)" for i in range(3)]  # fmt: skip
    assert sorted(ended) == [("s0", 0), ("s1", 0), ("s2", 0)]
    assert (tmp_path / "out2").read_text() == f"1 {tmp_path}\n"
    assert (tmp_path / "logs" / "04_copy_repeat-s0.log").exists()
    with pytest.raises(ValueError, match="run at least one process"):
        Queue(jobs, 0, tmp_path)


def test_a_failed_shard_is_tried_again_up_to_three_times(tmp_path):
    flaky = 'n=$(cat count 2>/dev/null || echo 0); echo $((n + 1)) > count; [ "$n" -ge 1 ]'
    queue = Queue([_job(tmp_path, "flaky", flaky), _job(tmp_path, "broken", "exit 3")], 1,
                  tmp_path / "logs", say=lambda line: None)  # fmt: skip
    assert queue.run(poll=0.02) == {"04_copy_repeat flaky": 0, "04_copy_repeat broken": 3}
    assert (tmp_path / "count").read_text() == "2\n"
    assert (tmp_path / "logs" / "04_copy_repeat-broken.log").exists()


def test_a_stop_ends_each_running_shard_after_its_next_save_and_starts_no_other(tmp_path):
    """The shard saves 0.5 s after the stop; the queue ends it (and the process it started in
    a session of its own, as papermill starts its kernel) then, well before its 60 s sleep."""
    state = tmp_path / "shards" / "3-saver" / "state"
    saver = (f"setsid sleep 61 & echo $! > kernel.pid; sleep 0.6; mkdir -p {state}; "
             f"touch {state}/A.pt; sleep 60")  # fmt: skip
    queue = Queue([_job(tmp_path, "saver", saver), _job(tmp_path, "next", "touch next")], 1,
                  tmp_path / "logs", say=lambda line: None)  # fmt: skip
    threading.Timer(0.1, queue.request_stop).start()
    started = time.monotonic()
    assert queue.run(poll=0.02) == {}
    assert queue.stopped == ["04_copy_repeat saver"] and 0.5 < time.monotonic() - started < 10
    assert (state / "A.pt").exists() and not (tmp_path / "next").exists()
    time.sleep(0.2)
    assert not _alive(int((tmp_path / "kernel.pid").read_text()))


def test_a_stop_ends_a_shard_that_does_not_save_after_the_longest_wait(tmp_path):
    queue = Queue([_job(tmp_path, "quiet", "sleep 60")], 1, tmp_path / "logs", save_wait=0.3,
                  say=lambda line: None)  # fmt: skip
    threading.Timer(0.1, queue.request_stop).start()
    started = time.monotonic()
    queue.run(poll=0.02)
    assert queue.stopped == ["04_copy_repeat quiet"] and time.monotonic() - started < 10


def test_a_shard_is_committed_alone_with_the_report_when_it_ends(campaign):
    """Its folder and CAMPAIGN.md, and nothing else that is staged or changed; once for each
    change (a finished shard whose folder is unchanged is not committed again)."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", str(campaign), *args], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "0")
    git("config", "user.name", "t")
    git("config", "user.email", "t@t")
    (campaign / "CAMPAIGN.md").write_text(report(campaign))
    (campaign / "mine.txt").write_text("someone's edit")
    git("add", "mine.txt")
    sweep = campaign / "04_copy_repeat"
    job = Job("04_copy_repeat", "sg", "SWEEP", "abc123", campaign, sweep)
    save_atomically({"key": "k", "batch": 20, "seconds": 30.0}, sweep / "shards/1-sg/state/SG2.pt")
    message = commit_shard(campaign, job, campaign_progress(campaign)[job.sweep], repo=campaign)
    assert message == ("Campaign, 04_copy_repeat: sg saved at 20 of 30 batches (67%); 1 of 3 "
                       "shards done; CAMPAIGN.md")  # fmt: skip
    assert git("log", "-1", "--format=%s") == message + "\n"
    assert git("show", "--name-only", "--format=", "HEAD").split() == [
        "04_copy_repeat/shards/1-sg/state/SG2.pt", "CAMPAIGN.md"]  # fmt: skip
    assert git("diff", "--cached", "--name-only").split() == ["mine.txt"]
    progress = campaign_progress(campaign)[job.sweep]
    assert commit_shard(campaign, job, progress, repo=campaign) is None
    finished = Job("04_copy_repeat", "bptt", "SWEEP", "abc123", campaign, sweep)
    assert commit_shard(campaign, finished, progress, repo=campaign).startswith(
        "Campaign, 04_copy_repeat: bptt finished (1 min); "
    )
