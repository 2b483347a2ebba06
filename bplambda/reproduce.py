"""`make reproduce`: run every notebook through papermill and write the results summary.

    python -m bplambda.reproduce [--profile quick] [--only 01_toy_alignment] [--results-dir DIR]

Each notebook ``notebooks/<name>.ipynb`` runs with the parameters ``profile`` and
``output_dir = <results-dir>/<name>``; the executed copy is saved there too. Results go to
``results/`` for the ``quick`` profile, ``results/paper/`` for ``paper`` and ``results/smoke/``
(git-ignored) for ``smoke``, so no profile replaces another's committed results. A failing
notebook stops the run with its name and cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import papermill as pm

from bplambda.profiles import PROFILES
from bplambda.results import build_summary

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The notebooks to run, in name order; ``only`` selects by name (without ``.ipynb``)."""
    found = sorted(NOTEBOOKS.glob("*.ipynb"))
    if only:
        names = {p.stem for p in found}
        missing = sorted(set(only) - names)
        if missing:
            raise ValueError(f"no notebook named {missing}; choose from {sorted(names)}")
        found = [p for p in found if p.stem in only]
    return found


def run_notebook(
    notebook: Path, output_dir: Path, profile: str, parameters: dict | None = None
) -> Path:
    """Execute one notebook with papermill into ``output_dir``; returns the executed copy."""
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / notebook.name
    pm.execute_notebook(
        str(notebook),
        str(executed),
        parameters={"profile": profile, "output_dir": str(output_dir), **(parameters or {})},
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
    )
    return executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--only", nargs="*", help="notebook names to run (default: all)")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    default_dir = ROOT / {"quick": "results"}.get(args.profile, f"results/{args.profile}")
    results_dir = Path(args.results_dir) if args.results_dir else default_dir
    for notebook in notebooks(args.only):
        start = time.perf_counter()
        print(f"[{args.profile}] {notebook.name} ...", flush=True)
        try:
            run_notebook(notebook, results_dir / notebook.stem, args.profile)
        except pm.PapermillExecutionError as error:
            print(
                f"\nFAILED: {notebook.name}, cell {error.cell_index} (execution count "
                f"{error.exec_count}): {error.ename}: {error.evalue}\n"
                f"The executed notebook is {results_dir / notebook.stem / notebook.name}.",
                file=sys.stderr,
            )
            return 1
        print(f"[{args.profile}] {notebook.name} done in {time.perf_counter() - start:.0f} s")
    summary = build_summary(results_dir)
    print(f"summary written to {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
