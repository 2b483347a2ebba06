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

CLAIM_COLUMNS = [
    "experiment", "claim", "paper", "official_code", "bplambda", "verdict", "still_improving",
]  # fmt: skip
"""``still_improving``: how many conditions were still improving when the budget ran out
(:func:`bplambda.analysis.still_improving`; empty where the notebook does not assess it)."""


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


def save_figure(figure: plt.Figure, output_dir: str | Path, name: str) -> plt.Figure:
    """``<name>.png`` (150 dpi) and ``<name>.svg`` in ``output_dir``, then close the figure
    (long JupyterLab sessions would otherwise keep every figure in memory). Returns the figure:
    a notebook cell that ends with this call still displays it."""
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
    for values in [1e-3, 1e4), ``digits`` significant digits outside (never ``0.000``)."""

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


def write_claims(claims: Sequence[dict], output_dir: str | Path) -> Path:
    """``claims.csv``: one row per checked claim, columns ``CLAIM_COLUMNS``."""
    return write_table(pd.DataFrame(list(claims), columns=CLAIM_COLUMNS), output_dir, "claims")


OTHER_BUDGETS = ("medium", "paper")
"""Profiles whose results live in ``results/<profile>/``: their verdicts join the claims table
of ``results/README.md`` as one column each, so a reader sees how a verdict moves with budget."""


def _claims(folders: list[Path]) -> pd.DataFrame | None:
    tables = [pd.read_csv(p / "claims.csv") for p in folders if (p / "claims.csv").exists()]
    return pd.concat(tables, ignore_index=True).astype(object).fillna("") if tables else None


def _with_budget(claims: pd.DataFrame, other: pd.DataFrame, budget: str) -> pd.DataFrame:
    """``claims`` with the column ``verdict (<budget>)`` from ``other`` (``not run`` where
    that budget lacks the claim); a claim only ``other`` has gets its own row (``not run`` at
    this budget), after its experiment's rows."""
    key, column = ["experiment", "claim"], f"verdict ({budget})"
    verdicts = other[[*key, "verdict"]].rename(columns={"verdict": column})
    merged = claims.merge(verdicts, on=key, how="left").fillna({column: "not run"})
    only = other[~other.set_index(key).index.isin(claims.set_index(key).index)]
    only = only.assign(**{column: only.verdict, "verdict": "not run",
                          "bplambda": f"see {budget}/README.md"})  # fmt: skip
    merged = pd.concat([merged, only[merged.columns]], ignore_index=True)
    order = {e: i for i, e in enumerate(dict.fromkeys(merged.experiment))}
    return merged.sort_values("experiment", key=lambda e: e.map(order), kind="stable")


def _experiment_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "summary.md").exists())


def build_summary(results_dir: str | Path = "results") -> Path:
    """Gather every experiment folder's ``summary.md``, figures and ``claims.csv`` into
    ``<results_dir>/README.md``; claims also run at a budget of :data:`OTHER_BUDGETS`
    (``<results_dir>/<profile>/``) get that budget's verdict beside their own."""
    root = Path(results_dir)
    folders = _experiment_folders(root)
    parts = [
        "# Results",
        "",
        "Generated by `make reproduce`; do not edit by hand. Each folder holds the executed "
        "notebook, tidy CSV tables and every figure as PNG and SVG.",
        "",
    ]
    claims = _claims(folders)
    budgets = [b for b in OTHER_BUDGETS if (root / b).is_dir() and _claims(
        _experiment_folders(root / b)) is not None]  # fmt: skip
    if claims is not None:
        for budget in budgets:
            claims = _with_budget(claims, _claims(_experiment_folders(root / budget)), budget)
        parts += [
            "## Paper vs official code vs bplambda",
            "",
            "“paper” is what the paper states (numbers are UNKNOWN where its text was not "
            "available, see PAPER.md); “official code” are numbers measured by running the "
            "authors' code; a disagreement is reported, not hidden."
            + "".join(
                f" “verdict ({b})”: the same claim at the `{b}` budget, whose numbers "
                f"are in [{b}/README.md]({b}/README.md)."
                for b in budgets
            ),
            "",
            markdown_table(claims),
            "",
        ]
    for folder in folders:
        parts += [f"## {folder.name}", "", (folder / "summary.md").read_text().strip(), ""]
        for png in sorted(folder.glob("*.png")):
            parts += [f"![{png.stem}]({folder.name}/{png.name})", ""]
    return write_text("\n".join(parts), root, "README.md")
