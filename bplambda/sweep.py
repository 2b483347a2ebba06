"""Spread one notebook's grid over a cluster: one papermill job per shard, through submitit.

    python -m bplambda.sweep NOTEBOOK [-p NAME VALUE ...] [--profile quick]
        --shard-by seeds|conditions|conditions-seeds [--seed-groups K]
        [--executor slurm|local|serial] [--output-dir DIR]
        [--shards NAME ...] [--partition P] [--gpus N] [--time MINUTES] [--mem-gb G]
        [--cpus N] [--slurm KEY=VALUE ...] [--wait]
    python -m bplambda.sweep merge OUTPUT_DIR [--finished-only]

A shard is the notebook with the same parameters except one seed (``--shard-by seeds``: the
``seeds`` list, and any other seed list such as notebook 01's ``plastic_seeds`` dealt out in
turn) or one rule (``--shard-by conditions``: one entry of ``rules``, with all its windows,
λ values and variants), or both (``--shard-by conditions-seeds``: every rule × every seed).
``--seed-groups K`` deals the seeds out into K shards instead of one per seed (seeds stacked
within a shard train faster per model than one seed alone). Shard ``i`` runs into
``OUTPUT_DIR/shards/<i>-<name>/`` with ``save_raw=True``: besides its usual outputs it keeps
its whole run tables in ``raw/``. Each shard resumes where it stopped and reuses finished
conditions (notebooks 03-05, see :mod:`bplambda.resume`), so a failed or pre-empted job
can simply be submitted again (``--shards NAME``: only that one).

``merge`` runs the notebook once more into ``OUTPUT_DIR`` with the sweep's own parameters and
``merge_from`` = the shard folders: the run functions return the shards' joined tables
instead of training (:func:`bplambda.experiments.options.shardable`), and the notebook builds its
tables, figures, summary and claims from them as a single run would (the same rows, shard
by shard; float32 rounding differs between one seed alone and seeds stacked, float64 agrees).
A merge waits for every shard; ``--finished-only`` merges those finished and names the others
(a long campaign's look part-way: each condition counts only its finished shards' seeds).
``OUTPUT_DIR/sweep.json`` records the notebook, profile, parameters and shards, the shard
folders relative to ``OUTPUT_DIR`` (a sweep folder can be moved or committed and merged
elsewhere); a second sweep with other parameters into the same folder is refused.

SLURM options pass through: ``--partition``, ``--gpus`` (per node), ``--time`` (minutes),
``--mem-gb``, ``--cpus`` (per task), and any other ``--slurm KEY=VALUE`` (submitit's
``slurm_<KEY>``, e.g. ``--slurm account=myproj --slurm qos=high``). ``--executor local`` runs
the shards as parallel processes of this machine (submitit's local executor): for trying a
sweep out. ``--executor serial`` runs them one after another in this process, without
submitit: a grid too long for one sitting on a small machine, done a few shards at a time
(each finished shard folder can be kept, say committed, and the rest run later). On SLURM the
output folder must be on a file system the compute nodes share.

``--wait`` reports each shard as its job ends (:mod:`bplambda.cluster_jobs`): done, or failed
with the state SLURM gives it (FAILED, CANCELLED, TIMEOUT, ...) and its log's path, while the
other shards are still waited on; when every shard of the sweep has run, it merges. A merge
is refused, the unfinished shards named, while a shard's folder holds neither an executed
notebook nor every run table (a shard whose report failed after its training ended is merged).
submitit asks SLURM to signal each job 90 s before its ``--time`` and ends it there (a shard
is not checkpointable): it fails as "timed-out" with its saved state kept (a ``--time``
under :data:`SHORTEST_MINUTES` is refused: it would end the job at once). A submitted shard
runs in a worker thread while the job's main thread only waits for it
(:func:`run_submitted_shard`), so that this signal always ends the job at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Any

from papermill.cli import _resolve_type as _papermill_cli_type

from bplambda.cluster_jobs import failed_jobs
from bplambda.errors import ParameterError
from bplambda.paths import project_path
from bplambda.reproduce import notebooks, run_notebook
from bplambda.results import write_text

SHARD_BY = ("seeds", "conditions", "conditions-seeds")
EXECUTORS = ("slurm", "local", "serial")
SEED_LISTS = ("seeds", "plastic_seeds")
"""Config fields that list seeds: ``--shard-by seeds`` deals each of them out over the shards."""
RECORD = "sweep.json"
SHORTEST_MINUTES = 2
"""The shortest ``--time`` on SLURM: submitit's warning signal, 90 s before the limit, ends a
one-minute job as it starts."""
SHARD_PARAMETERS = ("save_raw", "merge_from")
"""What a sweep sets in a notebook (:class:`bplambda.experiments.options.ShardOptions`)."""


class _SweepParametersAreKnown(logging.Filter):
    """Drops papermill's "Passed unknown parameter" warning for :data:`SHARD_PARAMETERS`: the
    notebooks' parameters cells leave them out on purpose (they are not the user's), and the
    warning read like a fault in every shard's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message == f"Passed unknown parameter: {n}" for n in SHARD_PARAMETERS)


def quiet_shard_parameters() -> None:
    """Install :class:`_SweepParametersAreKnown` on papermill's logger (once), where a sweep
    runs notebooks: in the shards' processes and the merge, not in whoever imports this."""
    papermill_log = logging.getLogger("papermill")
    if not any(isinstance(f, _SweepParametersAreKnown) for f in papermill_log.filters):
        papermill_log.addFilter(_SweepParametersAreKnown())


def cli_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value typed by papermill's own ``-p`` typing: ``True``, ``False``,
    ``None``, an int, a float, else the string (a list stays a string such as ``"[0, 1]"``,
    which the notebooks parse). Papermill's function, so a sweep and ``papermill -p`` can
    never disagree."""
    return _papermill_cli_type(text)


def shard_parameters(
    notebook: str,
    profile: str,
    parameters: dict[str, Any],
    shard_by: str,
    seed_groups: int | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """``[(shard name, its parameters)]``: ``parameters`` with one rule, one group of seeds
    (``seed_groups`` groups; None: one seed each), or both.

    The notebook's config is built first (profile defaults and ``parameters``), so that a bad
    parameter is refused here, before anything is submitted.
    """
    from bplambda.experiments import EXPERIMENTS

    if shard_by not in SHARD_BY:
        raise ParameterError(f"--shard-by {shard_by!r} is unknown; choose one of {list(SHARD_BY)}")
    cfg = EXPERIMENTS[notebook].config(profile, **parameters)
    by_rule = [("", parameters)]
    if shard_by.startswith("conditions"):
        if not hasattr(cfg, "rules"):
            raise ParameterError(
                f"{notebook} has no 'rules' parameter to shard by; use --shard-by seeds"
            )
        by_rule = [(rule, {**parameters, "rules": [rule]}) for rule in cfg.rules]
    if shard_by == "conditions":
        return by_rule
    return [
        (f"{rule}-{group}" if rule else group, {**rule_parameters, **dealt})
        for rule, rule_parameters in by_rule
        for group, dealt in _seed_groups(cfg, seed_groups)
    ]


def _seed_groups(cfg: Any, groups: int | None) -> list[tuple[str, dict[str, list[int]]]]:
    """The config's seeds dealt out into ``groups`` groups (None: one seed each), every seed
    list of :data:`SEED_LISTS` alike: ``[(name, {list name: its seeds})]``."""
    count = len(cfg.seeds) if groups is None else groups
    if not 1 <= count <= len(cfg.seeds):
        raise ParameterError(f"--seed-groups {groups} is invalid; pass 1 to {len(cfg.seeds)} "
                             f"(the number of seeds)")  # fmt: skip
    names = {f.name for f in fields(cfg)}
    shards = []
    for i in range(count):
        dealt = {name: list(getattr(cfg, name)[i::count]) for name in SEED_LISTS if name in names}
        empty = [name for name, seeds in dealt.items() if not seeds]
        if empty:
            raise ParameterError(
                f"{empty[0]}={list(getattr(cfg, empty[0]))} has fewer seeds than seeds="
                f"{list(cfg.seeds)}: one shard would have none; pass at least {count}"
            )
        seeds = dealt["seeds"]
        shards.append((f"seed{seeds[0]}" if len(seeds) == 1 else
                       "seeds" + "-".join(map(str, seeds)), dealt))  # fmt: skip
    return shards


def shard_folders(output_dir: Path, shards: list[tuple[str, dict[str, Any]]]) -> list[Path]:
    return [output_dir / "shards" / f"{i}-{name}" for i, (name, _) in enumerate(shards)]


def run_shard(notebook: Path, folder: Path, profile: str, parameters: dict[str, Any],
              threads: int | None = None) -> str:  # fmt: skip
    """One job: the notebook with a shard's parameters into its folder (raw tables kept).
    ``threads``: the kernel's CPU threads (``--cpus``): torch otherwise takes every core of
    the node, and shards sharing a machine slow each other down many times over."""
    if threads is not None:
        os.environ.update({name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    quiet_shard_parameters()
    return str(run_notebook(notebook, folder, profile, {**parameters, "save_raw": True}))


def run_submitted_shard(notebook: Path, folder: Path, profile: str, parameters: dict[str, Any],
                        threads: int | None = None) -> str:  # fmt: skip
    """A submitted job's :func:`run_shard`, run in a worker thread while the job's main thread
    waits on it. Python runs signal handlers in the main thread: submitit's time-limit handler
    (SIGUSR2, which raises its "not requeued" error) then interrupts a plain wait, where its
    error ends the job at once. Raised inside papermill's event loop, the same error can be
    taken for another (the job fails without saying it ran out of time) or wait on the
    notebook's kernel past the limit (the job ends TIMEOUT). The kernel ends with the job."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["folder"] = run_shard(notebook, folder, profile, parameters, threads)
        except BaseException as error:  # re-raised in the main thread, as submitit reports it
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"shard {folder.name}", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["folder"]


def selected(shards: list[tuple[str, dict[str, Any]]], names: list[str] | None) -> list[int]:
    """The indices of the shards named in ``names`` (every shard for None), in sweep order.
    Raises :class:`ParameterError` for a name that is not a shard of this sweep."""
    all_names = [name for name, _ in shards]
    unknown = sorted(set(names or ()) - set(all_names))
    if unknown:
        raise ParameterError(f"--shards {unknown[0]!r} is not a shard of this sweep; its "
                             f"shards are {all_names}")  # fmt: skip
    return [i for i, name in enumerate(all_names) if names is None or name in names]


def write_record(output_dir: Path, record: dict[str, Any]) -> None:
    """``output_dir/sweep.json``, renamed into place: shards started together into one folder
    each write it, and one must never read another's half-written record. Refuses a folder that
    holds a sweep of other settings (its shards would be merged with these)."""
    path = output_dir / RECORD
    if path.exists():
        settings = ("notebook", "profile", "parameters", "shard_by", "seed_groups")
        held = {key: json.loads(path.read_text()).get(key) for key in settings}
        if held != {key: record.get(key) for key in settings}:
            raise ParameterError(
                f"{output_dir} holds a sweep of other settings ({held}); pass another "
                "--output-dir or remove that folder"
            )
    write_text(json.dumps(record, indent=1), output_dir, RECORD)


def submit(args: argparse.Namespace) -> int:
    if args.executor == "slurm" and args.time < SHORTEST_MINUTES:
        raise ParameterError(f"--time {args.time} is too short: submitit has SLURM signal a job "
                             f"90 s before its limit and ends it there; pass at least "
                             f"{SHORTEST_MINUTES}")  # fmt: skip
    (notebook,) = notebooks([args.notebook])
    parameters = {name: cli_value(value) for name, value in args.parameter or []}
    output_dir = project_path(args.output_dir or f"results/sweeps/{notebook.stem}")
    shards = shard_parameters(
        notebook.stem, args.profile, parameters, args.shard_by, args.seed_groups
    )
    folders = shard_folders(output_dir, shards)
    chosen = selected(shards, args.shards)
    record = {"notebook": notebook.stem, "profile": args.profile, "parameters": parameters,
              "shard_by": args.shard_by,
              **({"seed_groups": args.seed_groups} if args.seed_groups else {}),
              "shards": [{"name": name, "folder": str(folder.relative_to(output_dir)),
                          "parameters": shard}
                         for (name, shard), folder in zip(shards, folders)]}  # fmt: skip
    write_record(output_dir, record)
    names = [shards[i][0] for i in chosen]
    to_run = [(shards[i], folders[i]) for i in chosen]
    if args.executor == "serial":  # each shard runs when its turn comes in failures()
        calls = [partial(run_shard, notebook, folder, args.profile, shard, args.cpus)
                 for (_, shard), folder in to_run]  # fmt: skip
        failed = failures(list(zip(names, calls)))
    else:
        jobs = submit_jobs(args, notebook, output_dir, to_run)
        if not args.wait:
            print(f"when they are done: python -m bplambda.sweep merge {output_dir}")
            return 0
        failed = failed_jobs(list(zip(names, jobs)))
    if failed:
        print(f"sweep: {failed} failed; submit again to resume them, then merge", file=sys.stderr)
        return 1
    if len(chosen) < len(shards):
        rest = [name for name, _ in shards if name not in names]
        print(f"ran {names}; the sweep's other shards {rest} run with --shards, then "
              f"python -m bplambda.sweep merge {output_dir}")  # fmt: skip
        return 0
    return merge(output_dir)


Shard = tuple[tuple[str, dict[str, Any]], Path]
"""``((name, parameters), folder)``: one shard to run."""


def submit_jobs(args: argparse.Namespace, notebook: Path, output_dir: Path,
                shards: list[Shard]) -> list[Any]:  # fmt: skip
    """One submitit job per shard (a job array on SLURM), with the sweep's SLURM options."""
    import submitit

    executor = submitit.AutoExecutor(folder=output_dir / "submitit" / "%j", cluster=args.executor)
    options: dict[str, Any] = {"name": f"bplambda-{notebook.stem[:2]}", "timeout_min": args.time}
    options.update({key: value for key, value in (("slurm_partition", args.partition),
                    ("gpus_per_node", args.gpus), ("mem_gb", args.mem_gb),
                    ("cpus_per_task", args.cpus)) if value is not None})  # fmt: skip
    if args.slurm:
        options["slurm_additional_parameters"] = dict(args.slurm)
    executor.update_parameters(**options)
    with executor.batch():  # one job array on SLURM
        jobs = [executor.submit(run_submitted_shard, notebook, folder, args.profile, shard,
                                args.cpus) for (_, shard), folder in shards]  # fmt: skip
    for job, ((name, _), _) in zip(jobs, shards):
        print(f"submitted {name}: job {job.job_id}", flush=True)
    return jobs


def failures(calls: list[tuple[str, Callable[[], object]]]) -> list[str]:
    """Each serial shard's run in turn; returns the names of those that raised, their errors
    printed (the next one still goes on). Submitted jobs are waited on by
    :func:`bplambda.cluster_jobs.failed_jobs`."""
    failed = []
    for name, call in calls:
        try:
            call()
        except Exception as error:  # papermill's error
            failed.append(name)
            print(f"shard {name} failed:\n{error}", file=sys.stderr)
        else:
            print(f"shard {name}: done", flush=True)
    return failed


def merge(output_dir: Path, finished_only: bool = False) -> int:
    """The notebook once more into ``output_dir``, from the shards' raw tables; refused, the
    unfinished shards named, while a shard's folder holds neither an executed notebook (it is
    moved there only when the shard ran through) nor every run table (its training ended and
    only its own report failed: :func:`~bplambda.experiments.options.trained`).
    ``finished_only``: merge the finished shards and name those left out, for a look at a long
    sweep part-way (a condition then counts only its finished shards' seeds; the summary names
    the shards merged)."""
    from bplambda.experiments import EXPERIMENTS
    from bplambda.experiments.options import trained

    record_path = output_dir / RECORD
    if not record_path.exists():
        print(f"sweep merge: {output_dir} holds no {RECORD}; pass a sweep's output folder",
              file=sys.stderr)  # fmt: skip
        return 2
    record = json.loads(record_path.read_text())
    (notebook,) = notebooks([record["notebook"]])
    # relative to the sweep folder (absolute in records written before that)
    folders = {shard["name"]: output_dir / shard["folder"] for shard in record["shards"]}
    module = EXPERIMENTS[record["notebook"]]
    ran = {name: (folder / notebook.name).exists() or trained(folder, module)
           for name, folder in folders.items()}  # fmt: skip
    finished = [str(folders[name]) for name, done in ran.items() if done]
    unfinished = [name for name, done in ran.items() if not done]
    if unfinished and not finished_only:
        print(f"sweep merge: shards {unfinished} have not finished (no executed "
              f"{notebook.name} nor run tables in their folders); submit them again with --shards "
              f"{' '.join(unfinished)} (they resume from their saved state), or pass "
              f"--finished-only to merge the others; the jobs' logs are in "
              f"{output_dir / 'submitit'}", file=sys.stderr)  # fmt: skip
        return 1
    if not finished:
        print(f"sweep merge: no shard of {output_dir} has finished yet (no executed "
              f"{notebook.name} nor run tables in their folders); nothing to merge",
              file=sys.stderr)  # fmt: skip
        return 1
    if unfinished:
        print(f"sweep merge: leaving out the unfinished shards {unfinished}", flush=True)
    parameters = {**record["parameters"], "merge_from": finished}
    quiet_shard_parameters()
    print(run_notebook(notebook, output_dir, record["profile"], parameters))
    return 0


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge"]:
        parser = argparse.ArgumentParser(
            prog="python -m bplambda.sweep merge", description="Merge a sweep's shards."
        )
        parser.add_argument("output_dir", help="the sweep's output folder")
        parser.add_argument("--finished-only", action="store_true",
                            help="merge the finished shards, naming those left out")  # fmt: skip
        args = parser.parse_args(argv[1:])
        return merge(project_path(args.output_dir), args.finished_only)
    from bplambda.profiles import PROFILES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", help="a notebook's name or number, e.g. 03")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="a notebook parameter, as papermill's -p")  # fmt: skip
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--shard-by", required=True, choices=SHARD_BY)
    parser.add_argument("--seed-groups", type=int, metavar="K",
                        help="deal the seeds out into K shards (default: 1 per seed)")  # fmt: skip
    parser.add_argument("--executor", default="slurm", choices=EXECUTORS)
    parser.add_argument("--output-dir", help="default: results/sweeps/<notebook>")
    parser.add_argument("--shards", nargs="+", metavar="NAME",
                        help="run or submit only these shards (default: all)")  # fmt: skip
    parser.add_argument("--partition")
    parser.add_argument("--gpus", type=int, help="GPUs per node")
    parser.add_argument("--time", type=int, default=24 * 60, help="minutes per job")
    parser.add_argument("--mem-gb", type=float)
    parser.add_argument("--cpus", type=int,
                        help="CPUs per task (and the kernel's threads; serial too)")  # fmt: skip
    parser.add_argument("--slurm", type=_key_value, action="append", metavar="KEY=VALUE",
                        help="any other sbatch option (slurm_additional_parameters)")  # fmt: skip
    parser.add_argument("--wait", action="store_true", help="wait for the jobs, then merge")
    args = parser.parse_args(argv)
    try:
        return submit(args)
    except ValueError as error:  # ParameterError and notebooks() name what is wrong
        print(f"sweep: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
