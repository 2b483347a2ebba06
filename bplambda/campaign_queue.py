"""Runs the campaign's unfinished shards from one queue, a few single-threaded processes at once.

Each process takes the next shard in the plan's order (sweep by sweep, each in its own
``order``) as soon as its last one ends, so every core stays busy however much a shard costs
(the shards of one notebook differ widely: docs/reproducing.md), where fixed per-core lists
leave a core idle once its list runs out. Each shard runs its sweep's command from a worktree
at that sweep's pinned commit (made here where missing), single-threaded, its output in a log
of its own; a shard that fails is tried again (up to :data:`TRIES` times in all, since a sweep
resumes from its saved state), and ``CAMPAIGN.md`` is written again after every shard.

With ``--commit`` each shard's folder is committed as soon as the shard ends (its tables when
it finished, its saved state when a stop or a failure ended it), with ``CAMPAIGN.md`` and
nothing else, so that a machine lost mid-campaign loses no finished shard.

Stopping: the first SIGINT or SIGTERM starts no further shard and ends each running one once it
has saved its state again (a sweep saves at most every ``resume.SAVE_SECONDS``; ending it just
after a save loses only what it trained since, within one poll), or after
:data:`SAVE_WAIT_SECONDS`; a second signal ends them at once.

    python -m bplambda.campaign_queue [results/paper] [--processes 2] [--notebooks 05 ...]
                                      [--shards mdgl-seed5 ...] [--commit]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bplambda.campaign import (
    CORES,
    PLAN,
    REPORT,
    ShardProgress,
    campaign_progress,
    hours,
    notebook_of,
    notebook_progress,
    report,
    unfinished_in_order,
    worktree_path,
)
from bplambda.paths import project_path, project_root
from bplambda.resume import SAVE_SECONDS

TRIES = 3
"""Runs of one shard at most: a failed run (a crashed kernel, a killed process) resumes from
the shard's last saved state."""

SAVE_WAIT_SECONDS = 2 * SAVE_SECONDS + 30
"""The longest a stop waits for a running shard's next save before ending it."""

LOCK = ".campaign_queue.lock"
"""Held by the running queue in the campaign's folder: a second queue would run the same
shards into the same saved states."""

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Every shard's environment: one thread per process, one process per core."""

GIT_TRIES = 5
"""Tries of a shard's commit: another git command (a person's, at the same moment) holds the
index's lock for a moment; a commit that still fails is said, and the campaign goes on."""


@dataclass(frozen=True)
class Job:
    """One shard of the plan's sweep ``sweep`` (its key: the sweep's folder, named after its
    notebook) to run: ``command`` from ``worktree`` (at the sweep's pinned ``commit``); its
    saved states lie under ``folder``'s ``shards/*-<shard>/state/``."""

    sweep: str
    shard: str
    command: str
    commit: str
    worktree: Path
    folder: Path

    @property
    def name(self) -> str:
        return f"{self.sweep} {self.shard}"

    def unfinished_states(self) -> list[Path]:
        """The shard's saved states of conditions still training (``*.done.pt`` are ended)."""
        return [path for path in (self.folder / "shards").glob(f"*-{self.shard}/state/*.pt")
                if not path.name.endswith(".done.pt")]  # fmt: skip


def make_worktree(commit: str) -> Path:
    """The worktree at ``commit`` (a detached ``git worktree``, its ``data`` linked to the
    project's so that data is fetched once), made if missing."""
    worktree = worktree_path(commit)
    if not worktree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), commit],
                       cwd=project_root(), check=True)  # fmt: skip
    data = project_root() / "data"
    if data.exists() and not (worktree / "data").exists():
        (worktree / "data").symlink_to(data)
    return worktree


def commit_shard(
    root: Path, job: Job, progress: list[ShardProgress], repo: Path | None = None
) -> str | None:
    """Commits ``job``'s shard folder as it is now (tables, figures and ``raw/`` of a finished
    shard; the saved state of one ended part-way) with ``root``'s ``CAMPAIGN.md``, leaving
    whatever else is staged or changed in ``repo`` (the project's checkout) alone; the message
    from ``progress``, its sweep's shards as the report just read them. The commit's message,
    or ``None`` where nothing of the shard changed."""
    repo = repo or project_root()
    folders = [str(p) for p in sorted((job.folder / "shards").glob(f"*-{job.shard}"))]
    if not folders:
        return None
    _git(repo, "add", "-A", "--", *folders)
    if _git(repo, "diff", "--cached", "--quiet", "--", *folders, check=False).returncode == 0:
        return None
    paths = [*folders, str(root / REPORT)]
    _git(repo, "add", "--", paths[-1])
    shard = next(p for p in progress if p.name == job.shard)
    state = (f"finished ({hours(shard.seconds)})" if shard.finished else
             f"saved at {shard.done:,} of {shard.total:,} batches "
             f"({100 * shard.done / max(shard.total, 1):.0f}%)")  # fmt: skip
    message = (
        f"Campaign, {job.sweep}: {job.shard} {state}; "
        f"{sum(p.finished for p in progress)} of {len(progress)} shards done; {REPORT}"
    )
    _git(repo, "commit", "-q", "-m", message, "--", *paths)
    return message


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``git -C repo args``, tried again while another git command holds the index's lock."""
    for attempt in range(GIT_TRIES):
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        if "index.lock" not in done.stderr or attempt == GIT_TRIES - 1:
            break
        time.sleep(1 + attempt)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done


def pending(root: Path, notebooks: list[str] | None = None,
            shards: list[str] | None = None) -> list[Job]:  # fmt: skip
    """The unfinished shards of the plan under ``root``, in the order to run them: sweep by
    sweep in the plan's order, or in the order ``notebooks`` names them (see :func:`_chosen`),
    each sweep's shards in its own ``order``; only those named in ``shards`` where given (a
    sitting that must end with no shard left part-way runs just the ones it can finish)."""
    plan = json.loads((root / PLAN).read_text())["notebooks"]
    jobs, known = [], set()
    for folder in list(plan) if notebooks is None else _chosen(notebooks, plan):
        entry = plan[folder]
        progress = notebook_progress(root / folder, notebook_of(folder, entry), entry)
        known |= {p.name for p in progress}
        for shard in unfinished_in_order(folder, progress, entry.get("order", [])):
            if shards is not None and shard not in shards:
                continue
            command = f"{entry['command']} --shards {shlex.quote(shard)}"
            jobs.append(Job(folder, shard, command, entry["commit"],
                            worktree_path(entry["commit"]), root / folder))  # fmt: skip
    unknown = sorted(set(shards or ()) - known)
    if unknown:
        raise ValueError(f"--shards {unknown}: no such shard in the sweeps chosen; name shards "
                         f"as CAMPAIGN.md lists them (e.g. {sorted(known)[:3]})")  # fmt: skip
    return jobs


def _chosen(notebooks: list[str], plan: dict) -> list[str]:
    """The plan's sweeps that ``notebooks`` name, in that order: each a sweep's folder, or a
    notebook's name or number (such as ``05``: every sweep of that notebook, side runs
    included, in the plan's order)."""
    chosen = []
    for given in notebooks:
        found = [folder for folder, entry in plan.items()
                 if given in (folder, notebook_of(folder, entry),
                              notebook_of(folder, entry).split("_")[0])]  # fmt: skip
        if not found:
            raise ValueError(f"the campaign plan has no notebook {given!r}; name one of "
                             f"{list(plan)}")  # fmt: skip
        chosen += [folder for folder in found if folder not in chosen]
    return chosen


class Queue:
    """Runs ``jobs`` in order, ``processes`` at once, each up to ``tries`` times; ``say`` gets
    one line per start and end, ``after_each`` each job and its last return code (negative:
    ended by a signal)."""

    def __init__(self, jobs: list[Job], processes: int, logs: Path, tries: int = TRIES,
                 save_wait: float = SAVE_WAIT_SECONDS, say: Callable[[str], None] = print,
                 after_each: Callable[[Job, int], None] = lambda job, rc: None):  # fmt: skip
        if processes < 1:
            raise ValueError(f"processes={processes}: run at least one process")
        self.waiting = deque((job, 1) for job in jobs)
        self.processes, self.logs, self.tries, self.save_wait = processes, logs, tries, save_wait
        self.say, self.after_each = say, after_each
        self.running: dict[subprocess.Popen, tuple[Job, int]] = {}
        self.ending: set[subprocess.Popen] = set()
        self.stop_requested: float | None = None
        self.returncodes: dict[str, int] = {}
        self.stopped: list[str] = []

    def request_stop(self) -> None:
        """Start nothing more; end each running shard after its next save (a second call: now)."""
        if self.stop_requested is not None:
            self.say(f"{_now()} stopping now")
            for process in self.running:
                self._end(process, again=True)
            return
        self.stop_requested = time.time()
        self.say(f"{_now()} stopping: each running shard ends after its next save "
                 f"(at most {self.save_wait:.0f} s); signal again to end them now")  # fmt: skip

    def run(self, poll: float = 1.0) -> dict[str, int]:
        """Runs until every job has ended or a stop has ended the running ones; the last
        return code of each job that ended on its own, by :attr:`Job.name` (those a stop ended
        are in :attr:`stopped`)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        while self.running or (self.waiting and self.stop_requested is None):
            while self.waiting and len(self.running) < self.processes and not self.stop_requested:
                job, attempt = self.waiting.popleft()
                self.running[self._start(job, attempt)] = (job, attempt)
            for process in [p for p in self.running if p.poll() is not None]:
                self._ended(process)
            if self.stop_requested is not None:
                for process, (job, _) in self.running.items():
                    if self._saved_since_stop(job) or time.time() > (
                        self.stop_requested + self.save_wait
                    ):
                        self._end(process)
            time.sleep(poll)
        return self.returncodes

    def _start(self, job: Job, attempt: int) -> subprocess.Popen:
        self.say(f"{_now()} start {job.name} (try {attempt} of {self.tries})")
        env = {**os.environ, **ONE_THREAD, "OLDPWD": str(project_root()), "PWD": str(job.worktree)}
        with (self.logs / f"{job.sweep.replace('/', '-')}-{job.shard}.log").open("a") as log:
            return subprocess.Popen(["bash", "-c", job.command], cwd=job.worktree, env=env,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def _ended(self, process: subprocess.Popen) -> None:
        job, attempt = self.running.pop(process)
        rc = process.returncode
        self.say(f"{_now()} end {job.name} rc={rc}")
        if rc != 0 and attempt < self.tries and self.stop_requested is None:
            self.waiting.appendleft((job, attempt + 1))
            return
        if process in self.ending:
            self.stopped.append(job.name)
        else:
            self.returncodes[job.name] = rc
        self.after_each(job, rc)

    def _end(self, process: subprocess.Popen, again: bool = False) -> None:
        """Ends a shard's process and everything it started (papermill's kernel runs in a
        session of its own, so it is found by parentage, not by process group); once, unless
        ``again``."""
        if process in self.ending and not again:
            return
        self.ending.add(process)
        for pid in reversed(_process_tree(process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _saved_since_stop(self, job: Job) -> bool:
        return any(_modified(path) > self.stop_requested for path in job.unfinished_states())


def _modified(path: Path) -> float:
    """``path``'s modification time; 0 where it has gone (a finished condition's state is
    renamed ``*.done.pt``)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, parents first (from ``/proc``; ``[pid]`` without it)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child, rest = stat.read_text().split(" ", 1)
        except OSError:
            continue
        parent = int(rest.rsplit(")", 1)[1].split()[1])
        parents.setdefault(parent, []).append(int(child))
    tree, i = [pid], 0
    while i < len(tree):
        tree += parents.get(tree[i], [])
        i += 1
    return tree


def _now() -> str:
    return time.strftime("%H:%M:%S")


def _after(root: Path, job: Job, commit: bool) -> None:
    """After each shard: the report written again, and with ``commit`` the shard committed (a
    failed commit is said, never fatal: the shard's files stay for the next one)."""
    progress = campaign_progress(root)
    (root / REPORT).write_text(report(root, progress))
    if not commit:
        return
    try:
        message = commit_shard(root, job, progress[job.sweep])
    except subprocess.CalledProcessError as error:
        print(f"{_now()} commit of {job.name} failed: {error.stderr.strip()}", file=sys.stderr)
        return
    if message:
        print(f"{_now()} committed: {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="results/paper",
                        help="the campaign's folder (holding campaign.json)")  # fmt: skip
    parser.add_argument("--processes", type=int, default=CORES,
                        help=f"shards at once, one core each (default {CORES})")  # fmt: skip
    parser.add_argument("--notebooks", nargs="+", metavar="NAME",
                        help="only these sweeps, in this order: folders, or notebooks by "
                             "name or number (05: its side runs too)")  # fmt: skip
    parser.add_argument("--logs", default=str(project_root().parent / "campaign-logs"),
                        help="the shards' logs' folder (default: ../campaign-logs)")  # fmt: skip
    parser.add_argument(
        "--shards",
        nargs="+",
        metavar="SHARD",
        help="only these shards of the chosen sweeps, in the plan's order",
    )
    parser.add_argument("--commit", action="store_true",
                        help="commit each shard's folder with CAMPAIGN.md as it ends")  # fmt: skip
    args = parser.parse_args(argv)
    root = project_path(args.root)
    if not (root / PLAN).exists():
        print(f"campaign_queue: {root} holds no {PLAN}; pass the campaign's folder",
              file=sys.stderr)  # fmt: skip
        return 2
    lock = (root / LOCK).open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"campaign_queue: another queue is running this campaign (it holds {root / LOCK});"
              f" stop it first (Ctrl-C or SIGTERM), or wait for it", file=sys.stderr)  # fmt: skip
        return 2
    try:
        jobs = pending(root, args.notebooks, args.shards)
        queue = Queue(jobs, args.processes, Path(args.logs),
                      after_each=lambda job, rc: _after(root, job, args.commit))  # fmt: skip
    except ValueError as error:
        print(f"campaign_queue: {error}", file=sys.stderr)
        return 2
    for commit in dict.fromkeys(job.commit for job in jobs):
        make_worktree(commit)
    print(f"{_now()} {len(jobs)} shards to run, {args.processes} at once; logs in {args.logs}")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: queue.request_stop())
    returncodes = queue.run()
    failed = sorted(name for name, rc in returncodes.items() if rc != 0)
    if failed:
        print(f"campaign_queue: {failed} failed {TRIES} times; see their logs in {args.logs}",
              file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
