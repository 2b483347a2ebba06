"""The wait on submitted jobs ends every shard's wait, with its state, once SLURM reports its
job ended or gone: fake jobs on a fake clock replay what sacct and squeue would say."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from bplambda import sweep
from bplambda.cluster_jobs import GRACE_SECONDS, VANISHED, failed_jobs, wait_for_jobs
from bplambda.experiments import toy_alignment
from bplambda.experiments.options import RAW, run_tables

POLL = 10.0


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeJob:
    """A submitit job as the wait sees it: ``states`` are ``(from time, state)`` as sacct
    reports them; ``done_at``: when submitit calls it done (its result written, or an end
    reported); ``error``: what its ``result()`` raises then (None: it returns)."""

    clock: Clock
    job_id: str
    states: list[tuple[float, str]]
    done_at: float | None = None
    error: str | None = None
    refreshed: list[float] = field(default_factory=list)

    @property
    def paths(self) -> SimpleNamespace:
        return SimpleNamespace(stdout=Path(f"submitit/{self.job_id}/{self.job_id}_0_log.out"))

    @property
    def state(self) -> str:
        return [state for start, state in self.states if start <= self.clock.now][-1]

    def done(self, force_check: bool = False) -> bool:
        return self.done_at is not None and self.clock.now >= self.done_at

    def result(self) -> str:
        if self.error is not None:
            raise RuntimeError(self.error)
        return "notebook.ipynb"

    def get_info(self, mode: str = "force") -> dict[str, str]:
        self.refreshed.append(self.clock.now)
        return {}


def _endings(jobs, clock, listed=lambda job_id: None):
    """``[(name, state, error, time it was reported)]`` in the order the wait reports them."""
    return [(e.name, e.state, e.error, clock.now)
            for e in wait_for_jobs(jobs, poll_s=POLL, listed_state=listed, clock=clock,
                                   sleep=clock.sleep)]  # fmt: skip


def test_a_failed_job_ends_its_wait_at_the_next_poll_while_the_others_are_waited_on():
    clock = Clock()
    long = FakeJob(clock, "7_0", [(0, "PENDING"), (20, "RUNNING"), (500, "COMPLETED")], 500)
    dead = FakeJob(clock, "7_1", [(0, "RUNNING"), (35, "FAILED")], 35, "has not produced any "
                   "output (state: FAILED)")  # fmt: skip
    cancelled = FakeJob(clock, "7_2", [(0, "RUNNING"), (41, "CANCELLED by 0")], 41, "cancelled")
    ended = _endings([("seed0", long), ("seed1", dead), ("seed2", cancelled)], clock)
    assert ended == [
        ("seed1", "FAILED", "has not produced any output (state: FAILED)", 40.0),
        ("seed2", "CANCELLED by 0", "cancelled", 50.0),
        ("seed0", "COMPLETED", None, 500.0),
    ]
    # one refresh from the scheduler per poll, through the first job still waited on
    assert long.refreshed == [POLL * i for i in range(51)] and not dead.refreshed


def test_a_job_that_no_scheduler_lists_ends_after_the_grace_time_and_a_queued_one_does_not():
    clock = Clock()
    # sacct cannot tell about either (no accounting): squeue still lists the first
    listed = FakeJob(clock, "8", [(0, "UNKNOWN")], done_at=3 * GRACE_SECONDS)
    gone = FakeJob(clock, "9", [(0, "UNKNOWN")])
    queue = {"8": "RUNNING"}
    ended = _endings([("a", listed), ("b", gone)], clock, listed=queue.get)
    assert ended == [("b", VANISHED, f"it stayed {VANISHED} for {GRACE_SECONDS:.0f} s",
                      GRACE_SECONDS), ("a", "UNKNOWN", None, 3 * GRACE_SECONDS)]  # fmt: skip


def test_a_requeued_preemption_is_waited_on_and_one_that_stays_preempted_is_not():
    clock = Clock()
    requeued = FakeJob(clock, "10_0", [(0, "RUNNING"), (30, "PREEMPTED"), (60, "PENDING"),
                                       (90, "RUNNING"), (400, "COMPLETED")], 400)  # fmt: skip
    preempted = FakeJob(clock, "10_1", [(0, "RUNNING"), (30, "PREEMPTED")])
    ended = _endings([("x", requeued), ("y", preempted)], clock)
    assert ended == [("y", "PREEMPTED", f"it stayed PREEMPTED for {GRACE_SECONDS:.0f} s",
                      30 + GRACE_SECONDS), ("x", "COMPLETED", None, 400.0)]  # fmt: skip
    # a grace period restarts when the job is queued again: PREEMPTED twice, briefly
    clock = Clock()
    twice = FakeJob(clock, "11", [(0, "PREEMPTED"), (GRACE_SECONDS - POLL, "PENDING"),
                                  (GRACE_SECONDS + POLL, "PREEMPTED"), (2 * GRACE_SECONDS,
                                  "RUNNING")], done_at=3 * GRACE_SECONDS)  # fmt: skip
    assert _endings([("z", twice)], clock) == [("z", "RUNNING", None, 3 * GRACE_SECONDS)]


def test_a_job_that_wrote_its_error_is_reported_with_the_state_slurm_then_gives_it():
    clock = Clock()
    # submitit's timeout handler writes the error at 32 s; SLURM records the end at 45 s
    ending = FakeJob(clock, "13", [(0, "RUNNING"), (45, "FAILED")], 32, "timed-out")
    # where sacct never records an end, the error is reported after the grace time
    stale = FakeJob(clock, "14", [(0, "RUNNING")], 32, "raised")
    assert _endings([("a", ending), ("b", stale)], clock) == [
        ("a", "FAILED", "timed-out", 50.0),
        ("b", "RUNNING", "raised", 40 + GRACE_SECONDS),
    ]


def test_failed_jobs_names_each_failed_shard_its_state_and_log(capsys):
    clock = Clock()
    timed_out = FakeJob(clock, "12_0", [(0, "RUNNING"), (60, "TIMEOUT")], 60, "timed out")
    fine = FakeJob(clock, "12_1", [(0, "RUNNING"), (30, "COMPLETED")], 30)
    jobs = [("bptt", timed_out), ("sg", fine)]
    assert failed_jobs(jobs, poll_s=POLL, clock=clock, sleep=clock.sleep) == ["bptt"]
    out, err = capsys.readouterr()
    assert out == "shard sg: done (job 12_1)\n"
    assert err == ("shard bptt failed: job 12_0 ended TIMEOUT without its result; its log: "
                   "submitit/12_0/12_0_0_log.out\ntimed out\n")  # fmt: skip


def _merged_sweep(tmp_path: Path, names: str, monkeypatch, parameters: dict | None = None):
    """A notebook 01 sweep record of one shard per letter of ``names`` in ``tmp_path``; the
    list the merges' notebook parameters are appended to (no notebook runs)."""
    shards = [{"name": name, "folder": f"shards/{i}-{name}", "parameters": {}}
              for i, name in enumerate(names)]  # fmt: skip
    (tmp_path / "sweep.json").write_text(json.dumps(
        {"notebook": "01_toy_alignment", "profile": "smoke", "parameters": parameters or {},
         "shard_by": "seeds", "shards": shards}))  # fmt: skip
    merged = []
    monkeypatch.setattr(sweep, "run_notebook", lambda *args: merged.append(args[3]))
    return merged


def test_a_merge_names_the_shards_that_have_not_finished(tmp_path, capsys, monkeypatch):
    merged = _merged_sweep(tmp_path, "ab", monkeypatch)
    folders = [tmp_path / "shards" / f"{i}-{name}" for i, name in enumerate("ab")]
    for folder in folders:
        assert sweep.main(["merge", str(tmp_path)]) == 1
        assert not merged
        folder.mkdir(parents=True)  # a shard's executed notebook lands there when it finished
        (folder / "01_toy_alignment.ipynb").write_text("{}")
    assert "shards ['b'] have not finished" in capsys.readouterr().err
    assert sweep.main(["merge", str(tmp_path)]) == 0
    assert merged[0]["merge_from"] == [str(f) for f in folders]


def test_a_merge_of_the_finished_shards_only_leaves_the_others_out_and_names_them(
    tmp_path, capsys, monkeypatch
):
    merged = _merged_sweep(tmp_path, "abc", monkeypatch, {"seeds": [0, 1]})
    assert sweep.main(["merge", str(tmp_path), "--finished-only"]) == 1  # none finished
    assert not merged and "no shard" in capsys.readouterr().err
    for name in "ac":
        folder = tmp_path / "shards" / f"{'abc'.index(name)}-{name}"
        folder.mkdir(parents=True)
        (folder / "01_toy_alignment.ipynb").write_text("{}")
    assert sweep.main(["merge", str(tmp_path)]) == 1  # the whole sweep still waits for b
    assert "--finished-only" in capsys.readouterr().err and not merged
    assert sweep.main(["merge", str(tmp_path), "--finished-only"]) == 0
    finished = [str(tmp_path / "shards" / folder) for folder in ("0-a", "2-c")]
    assert merged == [{"seeds": [0, 1], "merge_from": finished}]
    assert "leaving out the unfinished shards ['b']" in capsys.readouterr().out


def test_a_shard_whose_report_failed_after_its_training_ended_is_merged(tmp_path, monkeypatch):
    """Its run tables are what a merge reads (a notebook 05 shard whose every run diverged
    failed in its own report at the campaign's commit); a shard with some of them is not."""
    merged = _merged_sweep(tmp_path, "ab", monkeypatch)
    assert run_tables(toy_alignment) == ["run_toy_alignment.csv.gz", "run_toy_plastic.csv.gz"]
    for name, tables in (("a", run_tables(toy_alignment)), ("b", ["run_toy_alignment.csv.gz"])):
        raw = tmp_path / "shards" / f"{'ab'.index(name)}-{name}" / RAW
        raw.mkdir(parents=True)
        for table in tables:
            (raw / table).write_text("")
    assert sweep.main(["merge", str(tmp_path)]) == 1  # b trained its fixed RNN only
    assert sweep.main(["merge", str(tmp_path), "--finished-only"]) == 0
    assert merged[0]["merge_from"] == [str(tmp_path / "shards" / "0-a")]


def test_a_slurm_time_limit_that_would_end_every_job_at_once_is_refused(tmp_path, capsys):
    options = ["01", "--profile", "smoke", "--shard-by", "seeds", "--output-dir", str(tmp_path)]
    assert sweep.main([*options, "--time", "1"]) == 2
    assert "--time 1 is too short" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()
