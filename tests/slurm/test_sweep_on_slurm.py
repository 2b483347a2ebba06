"""The sweep against a real SLURM, as a user meets it: `make slurm-up` starts a one-node cluster
with accounting, `make test-slurm` runs these tests against it (SLURM_CONF set).

Shards are submitted with ``--executor slurm`` through ``python -m bplambda.sweep``, as a user
types it; they run single-threaded (``--cpus 1``) and, where a test does not need two at
once, one at a time (the node has two CPUs, the machine is shared). A missing cluster fails
these tests rather than skipping them: `make test-slurm` is the check that the path works.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import assert_same_tables

from bplambda import reproduce

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

RESUMABLE = ["04", "--profile", "smoke", "--shard-by", "seeds", "-p", "seeds", "[0, 1]",
             "-p", "rules", "['bptt', 'oracle']", "-p", "updates", "1000",
             "-p", "dtype", "float64"]  # fmt: skip
"""Notebook 04 (which keeps its runs' states) in two shards, each training BPTT then the
oracle for 1,000 updates (seconds each): long enough to cancel a shard between the two."""
RESUMABLE_PARAMETERS = {"seeds": [0, 1], "rules": ["bptt", "oracle"], "updates": 1000,
                        "dtype": "float64"}  # fmt: skip
REPORTED_WITHIN_S = 60
"""The longest a shard's end may take to be reported: the wait's poll (10 s), submitit's wait
for a result file (15 s), and SLURM's own delays."""
DOCUMENTED = "<!-- cluster-examples -->"
"""The marker of the documentation's cluster commands: the fenced block after it."""


@pytest.fixture(scope="module")
def partition() -> str:
    """The cluster's default partition (failing where no cluster answers)."""
    listed = subprocess.run(["sinfo", "--noheader", "--format", "%P"], capture_output=True,
                            text=True)  # fmt: skip
    if listed.returncode != 0:
        pytest.fail(f"no SLURM cluster answers (run `make slurm-up`; `make test-slurm` sets "
                    f"SLURM_CONF={os.environ.get('SLURM_CONF')}): {listed.stderr}")  # fmt: skip
    (default,) = [p.rstrip("*") for p in listed.stdout.split() if p.endswith("*")]
    return default


def on_slurm(partition: str, minutes: int = 10) -> list[str]:
    return ["--executor", "slurm", "--partition", partition, "--time", str(minutes),
            "--cpus", "1"]  # fmt: skip


def sweep(*args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m bplambda.sweep ARGS`` from the project, to its end."""
    return subprocess.run([sys.executable, "-m", "bplambda.sweep", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def start_sweep(log: Path, *args: str | Path) -> subprocess.Popen:
    """``python -m bplambda.sweep ARGS`` started in the background, its output into ``log``."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-u", "-m", "bplambda.sweep",
                                 *map(str, args)], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def wait_until(found: Callable[[], T], seconds: float, what: str) -> T:
    """``found()``'s first true value, asked twice a second; fails after ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = found()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"waited {seconds:.0f} s for {what}")


def submitted(output: str) -> dict[str, str]:
    """``{shard name: job id}`` from a sweep's ``submitted NAME: job ID`` lines."""
    return dict(re.findall(r"^submitted (\S+): job (\S+)$", output, re.MULTILINE))


def assert_reported_in_time(since: float, what: str, bound: float = REPORTED_WITHIN_S) -> None:
    """Fails where ``what`` was reported ``bound`` seconds or more after ``since`` (a
    ``time.monotonic()``); prints how long it took (`make test-slurm` shows it, ``-rA``)."""
    took = time.monotonic() - since
    print(f"{what} reported after {took:.1f} s (bound {bound:.0f} s)")
    assert took < bound


def failure_report(shard: str, job_id: str) -> str:
    """How ``--wait`` reports a shard whose job ended without its result, up to its log's path."""
    return f"shard {shard} failed: job {job_id} ended FAILED without its result; its log: "


def reported_log(output: str, report: str) -> Path:
    """The log path that follows ``report`` in a sweep's finished output."""
    found = re.search(re.escape(report) + r"(\S+)", output)
    assert found, f"no {report!r} in the sweep's output:\n{output}"
    return Path(found[1])


def job_state(job_id: str) -> str:
    """The job's state as SLURM's accounting has it (empty before it is recorded)."""
    listed = subprocess.run(["sacct", "--noheader", "--parsable2", "--format", "JobID,State",
                             "--jobs", job_id], capture_output=True, text=True)  # fmt: skip
    states = dict(line.split("|") for line in listed.stdout.splitlines())
    return states.get(job_id, "")


def step_pids(job_id: str) -> list[int]:
    """The PIDs of the job's first step (its Python process, task 0, first; then the notebook
    kernel it starts), once it runs."""
    raw = subprocess.run(["squeue", "--noheader", "--jobs", job_id, "--format", "%A"],
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    listed = subprocess.run(["scontrol", "listpids", raw], capture_output=True, text=True)
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    step = sorted((row for row in rows if row[2] == "0"), key=lambda row: row[3] != "0")
    return [int(row[0]) for row in step]


def test_a_sweep_of_two_shards_on_slurm_gives_the_tables_of_one_run(partition, tmp_path):
    """Notebook 01 in two shards (float64: one seed alone and two stacked then agree)."""
    out, single = tmp_path / "sweep", tmp_path / "single"
    done = sweep("01", "--profile", "smoke", "--shard-by", "seeds", "-p", "dtype", "float64",
                 *on_slurm(partition), "--output-dir", out, "--wait")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = submitted(done.stdout)
    assert sorted(jobs) == ["seed0", "seed1"]
    assert [job_state(job) for job in jobs.values()] == ["COMPLETED", "COMPLETED"]
    reproduce.run_notebook(reproduce.notebooks(["01"])[0], single, "smoke", {"dtype": "float64"})
    assert_same_tables(out, single)


def test_a_cancelled_shard_is_reported_and_resumes_from_its_saved_state(partition, tmp_path):
    out, single, log = tmp_path / "sweep", tmp_path / "single", tmp_path / "first.log"
    state = out / "shards" / "0-seed0" / "state"
    first = start_sweep(log, *RESUMABLE, *on_slurm(partition), "--output-dir", out,
                        "--shards", "seed0", "--wait")  # fmt: skip
    job = wait_until(lambda: submitted(log.read_text()).get("seed0"), 60, "seed0's job")
    (saved,) = wait_until(lambda: list(state.glob("*.done.pt")), 600, "seed0's BPTT to finish")
    subprocess.run(["scancel", job], check=True)
    cancelled = time.monotonic()
    assert first.wait(timeout=REPORTED_WITHIN_S) == 1, log.read_text()
    assert_reported_in_time(cancelled, "the cancelled shard")
    assert f"shard seed0 failed: job {job} ended CANCELLED" in log.read_text()
    assert list(state.glob("*.done.pt")) == [saved]  # cancelled while training the oracle
    unfinished = sweep("merge", out)
    assert unfinished.returncode == 1
    assert "shards ['seed0', 'seed1'] have not finished" in unfinished.stderr
    kept = saved.read_bytes()
    for shard in ("seed0", "seed1"):  # the cancelled shard again, then the other
        done = sweep(*RESUMABLE, *on_slurm(partition), "--output-dir", out, "--shards", shard,
                     "--wait")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    assert saved.read_bytes() == kept  # BPTT's result reused, not trained again
    assert len(list(state.glob("*.done.pt"))) == 2
    merged = sweep("merge", out)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    reproduce.run_notebook(reproduce.notebooks(["04"])[0], single, "smoke",
                           RESUMABLE_PARAMETERS)  # fmt: skip
    assert_same_tables(out, single)


def test_a_shard_that_dies_and_one_past_its_time_limit_are_reported_the_others_kept(
    partition, tmp_path
):
    """seed1's Python process is killed (SIGKILL, as the OOM killer or ``os._exit`` end it:
    no result written) while seed0 runs to its end. Then a shard that cannot finish in its
    time (notebook 04 asked for ten million updates) is submitted with a three-minute limit.
    submitit asks SLURM to signal a job 90 s before its limit (SIGUSR2; SLURM sends it up to
    a minute early), and ends a job that cannot be checkpointed there: the shard stops well
    before its limit, as "timed-out", whatever papermill was doing when the signal came.
    The limit is three minutes so that even the earliest signal (30 s in) comes after the job
    has loaded itself (a few seconds of imports) and submitit has installed its handler: a
    signal before that ends the job by SIGUSR2's default action, FAILED, with no mention of
    its time (a two-minute limit did so once in CI, stop 36)."""
    out = tmp_path / "sweep"
    options = ["01", "--profile", "smoke", "--shard-by", "seeds", "--output-dir", out]
    log = tmp_path / "killed.log"
    both = start_sweep(log, *options, *on_slurm(partition), "--shards", "seed0", "seed1",
                       "--wait")  # fmt: skip
    job = wait_until(lambda: submitted(log.read_text()).get("seed1"), 60, "seed1's job")
    os.kill(wait_until(lambda: step_pids(job), 120, "seed1's process")[0], signal.SIGKILL)
    killed = time.monotonic()
    report = failure_report("seed1", job)
    wait_until(lambda: report in log.read_text(), REPORTED_WITHIN_S, "seed1's failure")
    assert_reported_in_time(killed, "the killed shard")
    assert both.wait(timeout=600) == 1, log.read_text()
    assert "shard seed0: done" in log.read_text()
    assert reported_log(log.read_text(), report).exists()

    log = tmp_path / "timed_out.log"
    endless = [*RESUMABLE, "-p", "updates", "10000000", "--output-dir", tmp_path / "endless"]
    late = start_sweep(log, *endless, *on_slurm(partition, minutes=3), "--shards", "seed1",
                       "--wait")  # fmt: skip
    job = wait_until(lambda: submitted(log.read_text()).get("seed1"), 60, "seed1's job")
    wait_until(lambda: step_pids(job), 120, "seed1's process")
    running = time.monotonic()
    warned = 90  # the signal is due 90 s after the start (SLURM may send it earlier)
    assert late.wait(timeout=warned + REPORTED_WITHIN_S) == 1, log.read_text()
    assert_reported_in_time(running, "the timed-out shard (from its start)",
                            warned + REPORTED_WITHIN_S)  # fmt: skip
    text = log.read_text()
    assert reported_log(text, failure_report("seed1", job)).exists()
    assert "Job not requeued because: timed-out and not checkpointable" in text

    seed0 = out / "shards" / "0-seed0"
    assert (seed0 / "01_toy_alignment.ipynb").exists() and list((seed0 / "raw").iterdir())
    unfinished = sweep("merge", out)
    assert unfinished.returncode == 1
    assert "shards ['seed1'] have not finished" in unfinished.stderr


def documented_cluster_commands() -> list[str]:
    """The commands of the fenced block after :data:`DOCUMENTED` in the README or in docs/,
    one per command (continued lines joined, comment lines dropped)."""
    for page in [ROOT / "README.md", *sorted(ROOT.glob("docs/**/*.md"))]:
        text = page.read_text()
        start = text.find(DOCUMENTED)
        if start >= 0:
            break
    else:
        raise AssertionError(f"no {DOCUMENTED} block in README.md or docs/")
    block = re.search(r"```\w*\n(.*?)```", text[start:], re.DOTALL)[1]
    lines = [line for line in block.replace("\\\n", " ").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip
    return lines


def test_the_documented_cluster_commands_run_as_written(partition, tmp_path):
    """The documentation's cluster commands, only the partition renamed, from a project folder
    of their own (they write under results/; it shares the checkout's .venv and data/). A
    paper-sized sweep cannot finish here: once a job has started, the rest are cancelled,
    and the merge must then name the unfinished shards; a sweep whose jobs all finished must
    merge."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    for shared in (".venv", "data"):  # the checkout's environment and data sets
        (project / shared).symlink_to(ROOT / shared)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's bplambda

    def run(command: str) -> subprocess.CompletedProcess:
        line = re.sub(r"--partition[ =]\S+", f"--partition {partition}", command)
        return subprocess.run(["bash", "-c", line], cwd=project, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip

    commands = documented_cluster_commands()
    (merge,) = [c for c in commands if " merge " in c]
    jobs: dict[str, str] = {}
    for command in commands[: commands.index(merge)]:
        done = run(command)
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
        jobs |= submitted(done.stdout)
    assert jobs, "the documented commands submitted no job"
    wait_until(lambda: any(job_state(j) in ("RUNNING", "COMPLETED") for j in jobs.values()),
               120, "a documented job to start")  # fmt: skip
    left = [name for name, job in jobs.items() if job_state(job) != "COMPLETED"]
    subprocess.run(["scancel", *(jobs[name] for name in left)], check=True)
    merged = run(merge)
    if left:
        assert merged.returncode == 1, merged.stdout + merged.stderr
        assert f"shards {left} have not finished" in merged.stderr
    else:
        assert merged.returncode == 0, merged.stdout + merged.stderr
    assert shlex.split(merge)[-1] in merged.stdout + merged.stderr  # the folder it merged
