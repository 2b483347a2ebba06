"""Two results folders, table by table: the check that a change of structure changed no
result (run the smoke profile before and after, then compare).

    python -m bplambda.compare_results BEFORE AFTER [--rtol 1e-6] [--added-columns]

Every CSV under ``BEFORE`` (its relative path) must exist under ``AFTER`` with the same rows
and columns and values within ``rtol``; with ``--added-columns`` ``AFTER`` may hold columns
``BEFORE`` lacks (a change that adds a label), compared on ``BEFORE``'s. Wall times and
provenance are not results: a column, or a row whose ``metric``, that names seconds is left
out, and so are the provenance columns (:data:`bplambda.provenance.FIELDS`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bplambda.provenance import FIELDS


def results_only(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` without wall times and provenance (see the module's docstring)."""
    table = table[[c for c in table.columns if "second" not in c and c not in FIELDS]]
    if "metric" in table.columns:
        table = table[~table["metric"].astype(str).str.contains("second")]
    return table.reset_index(drop=True)


def _read(path: Path) -> pd.DataFrame:
    """The table at ``path``; an empty file (a notebook's table with nothing to list, e.g.
    notebook 05's identities where no pair of rules coincides) is an empty table."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def differences(
    before: Path, after: Path, rtol: float = 1e-6, added_columns: bool = False
) -> list[str]:
    """One line per table that is missing or differs (empty: the folders agree)."""
    found = []
    for path in sorted(before.rglob("*.csv")):
        name = path.relative_to(before)
        other = after / name
        if not other.exists():
            found.append(f"{name}: missing in {after}")
            continue
        a, b = (results_only(_read(p)) for p in (path, other))
        if added_columns:
            b = b[[c for c in b.columns if c in set(a.columns)]]
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            found.append(f"{name}: columns or row count differ ({a.shape} vs {b.shape})")
            continue
        for column in a.columns:
            x, y = a[column], b[column]
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
                same = np.isclose(x, y, rtol=rtol, atol=0, equal_nan=True)
            else:
                same = ((x.astype(str) == y.astype(str)) | (x.isna() & y.isna())).to_numpy()
            if not same.all():
                row = int(np.flatnonzero(~same)[0])
                found.append(f"{name}: column {column!r} differs from row {row} "
                             f"({x.tolist()[row]!r} vs {y.tolist()[row]!r})")  # fmt: skip
                break
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--added-columns", action="store_true",
                        help="AFTER may hold columns BEFORE lacks")  # fmt: skip
    args = parser.parse_args(argv)
    tables = len(list(args.before.rglob("*.csv")))
    if not tables:
        print(f"compare_results: {args.before} holds no CSV tables", file=sys.stderr)
        return 2
    found = differences(args.before, args.after, args.rtol, args.added_columns)
    for line in found:
        print(line)
    left_out = "wall times and provenance left out"
    print(f"{tables - len(found)} of {tables} tables agree (rtol {args.rtol:g}, {left_out})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
