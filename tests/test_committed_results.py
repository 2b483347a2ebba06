"""The committed results were made by code in this repository's history (clean, at a commit
that is an ancestor of HEAD), and their executed notebooks' imports still resolve against
today's package. A campaign's or a sweep's shard notebooks are left out: they are made by the
code a long campaign was pinned to, and only their merged notebook is the result."""

import ast
import importlib
import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

from bplambda.provenance import METADATA_KEY
from bplambda.verdicts import RANGE_ONLY

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def _results_notebooks() -> dict[str, Path]:
    """Each results folder's executed notebook, by folder (``03_sequential_mnist``,
    ``medium/04_copy_repeat``), outside ``shards/``."""
    found = {}
    for path in sorted(RESULTS.rglob("*.ipynb")):
        folder = path.parent.relative_to(RESULTS)
        if "shards" not in folder.parts and path.stem == folder.name:
            found[str(folder)] = path
    return found


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=False)  # fmt: skip


def test_every_committed_notebook_was_made_by_clean_code_in_this_history():
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() != "false":
        pytest.skip("needs the full git history (a shallow clone lacks older commits)")
    notebooks = _results_notebooks()
    assert "01_toy_alignment" in notebooks  # the results folders are where they should be
    made = {name: json.loads(path.read_text())["metadata"].get(METADATA_KEY)
            for name, path in notebooks.items()}  # fmt: skip
    assert not [name for name, m in made.items() if m is None], "made without provenance"
    for name, m in made.items():
        assert m["changes"] == "clean", f"{name} was made by uncommitted code"
        ancestor = _git("merge-base", "--is-ancestor", m["commit"], "HEAD")
        assert ancestor.returncode == 0, f"{name}: commit {m['commit']} is not in HEAD's history"
        papermill = json.loads(notebooks[name].read_text())["metadata"]["papermill"]
        assert not Path(papermill["output_path"]).is_absolute(), name
        assert not Path(papermill["input_path"]).is_absolute(), name


def test_every_committed_notebooks_imports_resolve():
    for name, path in _results_notebooks().items():
        cells = json.loads(path.read_text())["cells"]
        for cell in (c for c in cells if c["cell_type"] == "code"):
            source = "".join(cell["source"])
            tree = ast.parse("\n".join(line for line in source.splitlines()
                                       if not line.lstrip().startswith(("%", "!"))))  # fmt: skip
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bplambda"):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name) or importlib.util.find_spec(
                            f"{node.module}.{alias.name}"
                        ), f"{name}: from {node.module} import {alias.name} no longer resolves"
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.startswith("bplambda"):
                            importlib.import_module(alias.name)


def test_no_committed_notebook_names_a_machine_path_into_a_project_checkout():
    """The cells of a committed executed notebook (sources and outputs, e.g. the displayed
    ``cfg``) give the project's paths relative to it, not as the absolute path of the
    checkout or worktree that ran it (:func:`bplambda.provenance.relativise_cells`)."""
    from bplambda.provenance import ABSOLUTE_PROJECT_PATH

    for name, path in _results_notebooks().items():
        cells = json.dumps(json.loads(path.read_text())["cells"])
        heads = {m.group(0) for m in ABSOLUTE_PROJECT_PATH.finditer(cells)}
        assert not heads, f"{name} names {sorted(heads)}"


def test_no_committed_interval_over_3_seeds_or_fewer_is_called_a_ci():
    """Intervals are written "(95% CI, n seeds)" or "(range, n seeds)", "(range, 1 seed)"
    (:func:`bplambda.verdicts.interval_kind`)."""
    labelled = re.compile(r"\((95% CI|range), (\d+) seeds?\)")
    for path in RESULTS.rglob("*"):
        if path.suffix not in (".md", ".csv") or "shards" in path.parts:
            continue
        for kind, seeds in labelled.findall(path.read_text()):
            assert (kind == "range") == (int(seeds) <= RANGE_ONLY), f"{path}: {kind}, {seeds} seeds"


def _committed(name: str) -> list[Path]:
    """Every committed ``name`` (``claims.csv``, ``summary.md``) outside ``shards/``."""
    return [p for p in sorted(RESULTS.rglob(name)) if "shards" not in p.parts]


def test_every_committed_claims_row_and_summary_says_which_code_made_it():
    """Issue 24, item 4: provenance in every claims.csv row (all budgets) and every summary."""
    import pandas as pd

    from bplambda.provenance import FIELDS

    claims = _committed("claims.csv")
    assert len(claims) >= 5  # quick's five at least
    for path in claims:
        table = pd.read_csv(path, dtype=str)
        missing = [f for f in FIELDS if f not in table or table[f].isna().any()]
        assert not missing, f"{path}: no {missing}"
        assert (table.changes == "clean").all(), f"{path} was made by uncommitted code"
    for path in _committed("summary.md"):
        assert re.search(r"Made at commit `[0-9a-f]{12}` \(clean\)", path.read_text()), path


def _most_seeds(folder: Path) -> int:
    """The largest ``seeds`` count any table of ``folder`` gives a condition (0: none does)."""
    import pandas as pd

    counts = [0]
    for path in folder.glob("*.csv"):
        head = path.read_text().partition("\n")[0].split(",")
        if "seeds" in head:
            counts.append(int(pd.read_csv(path, usecols=["seeds"]).seeds.max()))
    return max(counts)


def test_no_committed_figure_of_3_seeds_or_fewer_names_a_bootstrap_interval():
    """Issue 24, item 2: where no condition of a result has more than RANGE_ONLY seeds, none of
    its figures' titles or legends (kept as text in the SVGs) speaks of a bootstrap or a CI."""
    few = [p.parent for p in _committed("summary.md") if 0 < _most_seeds(p.parent) <= RANGE_ONLY]
    assert few  # quick 03 and 04 have 2 seeds
    for folder in few:
        for svg in folder.glob("*.svg"):
            text = svg.read_text()
            assert "bootstrap" not in text and "95%" not in text, svg
