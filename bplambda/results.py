"""Writing results: atomic CSV and figure files, claims tables, the results/README.md summary.

Each notebook writes into its own folder ``results/<notebook>/``: tidy CSVs, figures as PNG and
SVG, ``summary.md`` (its key table, in Markdown) and ``claims.csv`` (paper vs official code vs
bplambda, with a verdict). :func:`build_summary` gathers every folder into ``results/README.md``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bplambda.figure_checks import layout_problems
from bplambda.provenance import provenance

CLAIM_COLUMNS = [
    "experiment", "claim", "paper", "official_code", "bplambda", "verdict", "still_improving",
    "seeds_run",
]  # fmt: skip
"""``still_improving``: how many conditions were still improving when the budget ran out
(:func:`bplambda.analysis.still_improving`; empty where the notebook does not assess it);
``seeds_run``: the seeds the claim's runs held, counted from the runs (a merge of a campaign's
finished shards holds fewer than the profile asks for, and may hold more for some rules than
for others); empty where the notebook runs exactly its profile's seeds."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> Path:
    """Write through a temporary file and rename it into place, with the permissions a plain
    ``open(path, "w")`` would give (``mkstemp`` makes files readable by the owner only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_table(table: pd.DataFrame, output_dir: str | Path, name: str) -> Path:
    """``<output_dir>/<name>.csv``, written atomically (a reader never sees half a file)."""
    return _atomic_write(Path(output_dir) / f"{name}.csv", lambda p: table.to_csv(p, index=False))


CHECK_FIGURES_VARIABLE = "BPLAMBDA_CHECK_FIGURES"
"""Set (to anything but empty), :func:`save_figure` refuses a figure a reader could not read
(:func:`~bplambda.figure_checks.layout_problems`): the smoke run of the test suite sets it, so
every figure of every notebook is checked on a run's own tables, not only on hand-made ones."""


def save_figure(figure: plt.Figure, output_dir: str | Path, name: str) -> plt.Figure:
    """``<name>.png`` (150 dpi) and ``<name>.svg`` in ``output_dir``, then close the figure
    (long JupyterLab sessions would otherwise keep every figure in memory). Returns the figure:
    a notebook cell that ends with this call still displays it. With
    :data:`CHECK_FIGURES_VARIABLE` set, a figure with layout problems raises ``ValueError``
    naming them, before anything is written."""
    if os.environ.get(CHECK_FIGURES_VARIABLE):
        problems = layout_problems(figure)
        if problems:
            raise ValueError(f"figure {name!r} cannot be read: {'; '.join(problems)}")
    for suffix, options in ((".png", {"dpi": 150}), (".svg", {})):
        path = Path(output_dir) / f"{name}{suffix}"
        _atomic_write(path, lambda p, o=options, s=suffix: figure.savefig(
            p, bbox_inches="tight", format=s[1:], **o))  # fmt: skip
    plt.close(figure)
    return figure


def write_text(text: str, output_dir: str | Path, name: str) -> Path:
    def write(p: str) -> None:
        Path(p).write_text(text, encoding="utf-8")

    return _atomic_write(Path(output_dir) / name, write)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A small DataFrame as a GitHub Markdown table (no extra dependency): ``digits`` decimals
    for values in [1e-3, 1e4), ``digits`` significant digits outside (never ``0.000``). A
    table without columns (nothing to show, e.g. no pair of identical rules in a one-rule
    shard) cannot be drawn as one: it reads "(none)"."""
    if table.columns.empty:
        return "(none)"

    def cell(v: object) -> str:
        if isinstance(v, float):
            if pd.isna(v):
                return ""
            tiny_or_huge = v != 0 and not 1e-3 <= abs(v) < 1e4
            return f"{v:.{digits}g}" if tiny_or_huge else f"{v:.{digits}f}"
        return str(v)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_claims(claims: Sequence[dict], output_dir: str | Path, cfg: object) -> Path:
    """``claims.csv``: one row per checked claim, columns ``CLAIM_COLUMNS``, then the
    provenance of the run (:func:`~bplambda.provenance.provenance` of ``cfg``) on every row."""
    table = pd.DataFrame(list(claims), columns=CLAIM_COLUMNS)
    return write_table(table.assign(**provenance(cfg)), output_dir, "claims")


OTHER_BUDGETS = ("medium", "paper")
"""Profiles whose results live in ``results/<profile>/`` (quick's live in ``results/``)."""
BY_STRENGTH = ("paper", "medium", "quick")
"""The budgets, strongest first: a claim's main verdict comes from the first that ran it."""


def _claims(folders: list[Path]) -> pd.DataFrame | None:
    tables = [pd.read_csv(p / "claims.csv").assign(notebook=p.name) for p in folders
              if (p / "claims.csv").exists()]  # fmt: skip
    return pd.concat(tables, ignore_index=True).astype(object).fillna("") if tables else None


def claims_by_budget(root: Path) -> pd.DataFrame | None:
    """One row per claim found under ``root`` at any budget (``root/<notebook>/claims.csv`` is
    quick, ``root/<budget>/<notebook>/`` the others): its columns from the strongest budget
    that ran it (``budget`` names it; its numbers are in that budget's README), and a
    ``verdict (<budget>)`` column per budget present (``not run`` where the claim was not),
    and ``notebook`` (the folder it came from). Rows follow the notebooks, then each
    notebook's own order of claims."""
    found = {"quick": _claims(_experiment_folders(root))}
    for budget in OTHER_BUDGETS:
        if (root / budget).is_dir():
            found[budget] = _claims(_experiment_folders(root / budget))
    found = {b: t for b, t in found.items() if t is not None}
    if not found:
        return None
    key = ["experiment", "claim"]
    ordered = [b for b in BY_STRENGTH if b in found]
    rows = pd.concat([found[b].assign(budget=b) for b in ordered], ignore_index=True)
    main = rows.drop_duplicates(key, keep="first")  # the strongest budget's row of each claim
    for budget in reversed(ordered):
        column = f"verdict ({budget})"
        verdicts = found[budget][[*key, "verdict"]].rename(columns={"verdict": column})
        main = main.merge(verdicts, on=key, how="left").fillna({column: "not run"})
    first_seen = pd.concat([found[b] for b in reversed(ordered)])[key].drop_duplicates()
    main = first_seen.merge(main, on=key, how="left").sort_values("notebook", kind="stable")
    columns = [*CLAIM_COLUMNS[:5], "verdict", "budget", *(f"verdict ({b})" for b in
               reversed(ordered)), "still_improving", "seeds_run", "notebook"]  # fmt: skip
    return main.reindex(columns=columns).astype(object).fillna("").reset_index(drop=True)


def _experiment_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "summary.md").exists())


def build_summary(results_dir: str | Path = "results") -> Path:
    """Gather every experiment folder's ``summary.md``, figures and ``claims.csv`` into
    ``<results_dir>/README.md``, with the claims of every budget under it
    (:func:`claims_by_budget`)."""
    root = Path(results_dir)
    folders = _experiment_folders(root)
    parts = [
        "# Results",
        "",
        "Generated by `make reproduce`; do not edit by hand. Each folder holds the executed "
        "notebook, tidy CSV tables and every figure as PNG and SVG.",
        "",
    ]
    claims = claims_by_budget(root)
    if claims is not None:
        elsewhere = [b for b in OTHER_BUDGETS if f"verdict ({b})" in claims]
        parts += [
            "## Paper vs official code vs bplambda",
            "",
            "“paper” is what the paper states (numbers are UNKNOWN where its text was not "
            "available, see docs/paper-bp-lambda.md and docs/paper-liu2022.md); “official "
            "code” are numbers measured by running the authors' code; a disagreement is "
            "reported, not hidden. “verdict” and “bplambda” come from the strongest budget "
            "that ran the claim (“budget”: paper, then medium, then quick); the verdict at "
            "every budget stands beside it, so a reader sees how it moves with the budget. "
            "Quick runs are short and most use 2–3 seeds: their verdicts are indicative."
            + "".join(
                f" The `{b}` numbers are in [{b}/README.md]({b}/README.md)." for b in elsewhere
            ),
            "",
            markdown_table(claims.drop(columns="notebook")),
            "",
        ]
    for folder in folders:
        parts += [f"## {folder.name}", "", (folder / "summary.md").read_text().strip(), ""]
        for png in sorted(folder.glob("*.png")):
            parts += [f"![{png.stem}]({folder.name}/{png.name})", ""]
    return write_text("\n".join(parts), root, "README.md")
