"""`make reproduce`: run every notebook through papermill and write the results summary.

    python -m bplambda.reproduce [--profile quick] [--only 01 03] [--jobs N] [--results-dir DIR]
                                 [--force]

Each notebook ``notebooks/<name>.ipynb`` runs with the parameters ``profile`` and
``output_dir = <results-dir>/<name>``. Results go to ``results/`` for the ``quick`` profile and
``results/<profile>/`` otherwise (``smoke`` is git-ignored), so no profile replaces another's
committed results. The executed notebook is moved into its results folder only when it ran
through; a failing notebook stops the run with one line (notebook, cell, error) and its
executed copy goes to ``build/failed/``, leaving the results folder as it was (a notebook
running beside it finishes; none starts after it). Notebooks
03-05 keep their runs' states in ``<results-dir>/<name>/state/`` (:mod:`bplambda.resume`):
an interrupted run resumes, a finished one is reused; ``--force`` recomputes them.
``--jobs`` (default: one per usable core) spreads each notebook's conditions over that many
single-threaded worker processes (:mod:`bplambda.workers`); with ``--jobs`` above 1 two
notebooks run at once, and their workers share ``--jobs`` core slots
(:mod:`bplambda.core_slots`), so that no more than ``--jobs`` units compute at any moment.
Progress lines are printed here with their notebook's name; the workers' logs go to
``<results-dir>/<name>/state/logs/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import TextIO
from unittest import mock

import nbformat
import papermill as pm

from bplambda.core_slots import SLOTS_VARIABLE, make_slots
from bplambda.profiles import PROFILES, results_folder
from bplambda.provenance import stamp_notebook
from bplambda.results import OTHER_BUDGETS, build_summary
from bplambda.what_reproduces import update_readme
from bplambda.workers import usable_cores

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
FAILED = ROOT / "build" / "failed"
COMMITTED = Path("results")  # the committed results, whose claims the README's table shows
LANES = 2  # notebooks at once: a second fills the cores while the first is in a serial part


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The notebooks to run, in name order; ``only`` selects by name or name prefix
    (``01`` or ``01_toy_alignment``; without ``.ipynb``)."""
    found = sorted(NOTEBOOKS.glob("*.ipynb"))
    if not only:
        return found
    names = [p.stem for p in found]
    unmatched = [o for o in only if not any(n == o or n.startswith(f"{o}_") for n in names)]
    if unmatched:
        raise ValueError(f"no notebook named {unmatched}; choose from {names} (or their numbers)")
    return [p for p in found if any(p.stem == o or p.stem.startswith(f"{o}_") for o in only)]


def run_notebook(
    notebook: Path,
    output_dir: Path,
    profile: str,
    parameters: dict | None = None,
    stdout: TextIO = sys.stdout,
) -> Path:
    """Execute one notebook with papermill, progress bars off (an executed notebook would keep
    their every redraw; the workers' progress lines still come); its executed copy lands in
    ``output_dir`` when it ran through, in ``build/failed/`` when it did not (then papermill's
    error is raised).
    ``stdout`` receives the notebook's output (its workers' progress lines) as it comes."""
    parameters = {"profile": profile, "output_dir": str(output_dir), "progress": False,
                  **(parameters or {})}  # fmt: skip
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        executed = Path(scratch) / notebook.name
        try:
            pm.execute_notebook(
                str(notebook),
                str(executed),
                parameters=parameters,
                cwd=str(ROOT),
                kernel_name="python3",
                progress_bar=False,
                stdout_file=stdout,
            )
        except pm.PapermillExecutionError:
            FAILED.mkdir(parents=True, exist_ok=True)
            shutil.move(executed, FAILED / notebook.name)
            raise
        output = output_dir / notebook.name
        made = SimpleNamespace(**{"device": "auto", "jobs": 1, **parameters})
        stamped = stamp_notebook(nbformat.read(executed, as_version=4), output, made,
                                 time.perf_counter() - start)  # fmt: skip
        nbformat.write(stamped, executed)
        output_dir.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(executed, output))


class _Prefixed:
    """A text stream that prints each complete line of a notebook's output with its name, so
    that the lines of two notebooks running at once can be told apart."""

    def __init__(self, name: str) -> None:
        self.name, self.pending = name, ""

    def write(self, text: str) -> None:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            print(f"  {self.name}: {line}", flush=True)

    def flush(self) -> None:
        pass


def run_in_lanes(
    selected: list[Path], results_dir: Path, profile: str, parameters: dict[str, dict], jobs: int
) -> tuple[Path, pm.PapermillExecutionError] | None:
    """Run the notebooks, :data:`LANES` at a time when ``jobs > 1``, their units of work
    sharing ``jobs`` core slots (:mod:`bplambda.core_slots`): one notebook's serial parts
    (kernel start, tables, figures) overlap another's training. Returns the first notebook that
    failed with its error (the notebooks already running are let finish, none is started
    after it), or None."""
    lanes = min(LANES, jobs, len(selected))
    failures: list[tuple[Path, pm.PapermillExecutionError]] = []

    def run_one(notebook: Path) -> None:
        if failures:
            return
        start = time.perf_counter()
        print(f"[{profile}] {notebook.name} ...", flush=True)
        try:
            run_notebook(notebook, results_dir / notebook.stem, profile,
                         parameters[notebook.stem], _Prefixed(notebook.stem))  # fmt: skip
        except pm.PapermillExecutionError as error:
            failures.append((notebook, error))
            return
        print(f"[{profile}] {notebook.name} done in {time.perf_counter() - start:.0f} s")

    with tempfile.TemporaryDirectory() as scratch:
        shared = {SLOTS_VARIABLE: str(make_slots(Path(scratch), jobs))} if lanes > 1 else {}
        with mock.patch.dict(os.environ, shared), ThreadPoolExecutor(lanes) as pool:
            for finished in [pool.submit(run_one, n) for n in selected]:
                finished.result()
    return failures[0] if failures else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--only", nargs="*", help="notebook names or numbers (default: all)")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument(
        "--jobs", type=int, default=usable_cores(),
        help="worker processes per notebook, one thread each (default: the usable cores)",
    )  # fmt: skip
    parser.add_argument(
        "--force", action="store_true",
        help="recompute the runs saved in each notebook's state/ folder (default: reuse them)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 1:
        print(f"reproduce: --jobs {args.jobs} is invalid; pass a number >= 1", file=sys.stderr)
        return 2
    results_dir = (
        Path(args.results_dir) if args.results_dir else ROOT / results_folder(args.profile)
    )
    try:
        selected = notebooks(args.only)
    except ValueError as error:
        print(f"reproduce: {error}", file=sys.stderr)
        return 2
    from bplambda.experiments import EXPERIMENTS  # imports torch: only here
    from bplambda.experiments.options import ResumableOptions

    resumable = {name for name, e in EXPERIMENTS.items() if issubclass(e.Config, ResumableOptions)}

    profiles = {name: tuple(e.DEFAULTS) for name, e in EXPERIMENTS.items()}
    without = [n.stem for n in selected  # a notebook without a config takes any profile
               if args.profile not in profiles.get(n.stem, PROFILES)]  # fmt: skip
    if without and args.only:
        print(f"reproduce: {without} have no {args.profile} profile", file=sys.stderr)
        return 2
    for name in without:
        print(f"[{args.profile}] {name}: no {args.profile} profile, skipped")
    selected = [n for n in selected if n.stem not in without]
    total = time.perf_counter()
    forced = {"force": True} if args.force else {}
    parameters = {n.stem: {"jobs": args.jobs, **(forced if n.stem in resumable else {})}
                  for n in selected}  # fmt: skip
    failed = run_in_lanes(selected, results_dir, args.profile, parameters, args.jobs)
    if failed is not None:
        notebook, error = failed
        print(
            f"\nFAILED: {notebook.name}, cell {error.cell_index} (execution count "
            f"{error.exec_count}): {error.ename}: {error.evalue}\n"
            f"The executed notebook is {FAILED / notebook.name}.",
            file=sys.stderr,
        )
        return 1
    summary = build_summary(results_dir)
    print(f"summary written to {summary}")
    quick = ROOT / results_folder("quick")
    if args.profile in OTHER_BUDGETS and results_dir.parent == quick:
        print(f"verdict ({args.profile}) column updated in {build_summary(quick)}")
    if quick == ROOT / COMMITTED and results_dir in (quick, *(quick / b for b in OTHER_BUDGETS)):
        print(f"'What reproduces' updated in {update_readme(ROOT / 'README.md', quick)}")
    print(f"[{args.profile}] {len(selected)} notebook(s) in {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
