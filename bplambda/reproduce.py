"""`make reproduce`: run every notebook through papermill and write the results summary.

    python -m bplambda.reproduce [--profile quick] [--only 01 03] [--jobs N] [--results-dir DIR]
                                 [--force]

Each notebook ``notebooks/<name>.ipynb`` runs with the parameters ``profile`` and
``output_dir = <results-dir>/<name>``. Results go to ``results/`` for the ``quick`` profile and
``results/<profile>/`` otherwise (``smoke`` is git-ignored), so no profile replaces another's
committed results. The executed notebook is moved into its results folder only when it ran
through; a failing notebook stops the run with one line (notebook, cell, error) and its
executed copy goes to ``build/failed/``, leaving the results folder as it was. Notebooks
03-05 keep their runs' states in ``<results-dir>/<name>/state/`` (:mod:`bplambda.resume`):
an interrupted run resumes, a finished one is reused; ``--force`` recomputes them.
``--jobs`` (default: one per usable core) spreads each notebook's conditions over that many
single-threaded worker processes (:mod:`bplambda.workers`); their progress lines are printed
here, their logs go to ``<results-dir>/<name>/state/logs/``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill as pm

from bplambda.profiles import PROFILES, results_folder
from bplambda.provenance import stamp_notebook
from bplambda.results import OTHER_BUDGETS, build_summary
from bplambda.workers import usable_cores

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
FAILED = ROOT / "build" / "failed"


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
    notebook: Path, output_dir: Path, profile: str, parameters: dict | None = None
) -> Path:
    """Execute one notebook with papermill; its executed copy lands in ``output_dir`` when it
    ran through, in ``build/failed/`` when it did not (then papermill's error is raised)."""
    parameters = {"profile": profile, "output_dir": str(output_dir), **(parameters or {})}
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
                stdout_file=sys.stdout,  # the workers' progress lines, as they come
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
    for notebook in selected:
        start = time.perf_counter()
        print(f"[{args.profile}] {notebook.name} ...", flush=True)
        try:
            force = {"force": True} if args.force and notebook.stem in resumable else {}
            run_notebook(
                notebook, results_dir / notebook.stem, args.profile, {"jobs": args.jobs, **force}
            )
        except pm.PapermillExecutionError as error:
            print(
                f"\nFAILED: {notebook.name}, cell {error.cell_index} (execution count "
                f"{error.exec_count}): {error.ename}: {error.evalue}\n"
                f"The executed notebook is {FAILED / notebook.name}.",
                file=sys.stderr,
            )
            return 1
        print(f"[{args.profile}] {notebook.name} done in {time.perf_counter() - start:.0f} s")
    summary = build_summary(results_dir)
    print(f"summary written to {summary}")
    quick = ROOT / results_folder("quick")
    if args.profile in OTHER_BUDGETS and results_dir.parent == quick:
        print(f"verdict ({args.profile}) column updated in {build_summary(quick)}")
    print(f"[{args.profile}] {len(selected)} notebook(s) in {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
