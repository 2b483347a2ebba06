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


def test_no_committed_interval_over_3_seeds_or_fewer_is_called_a_ci():
    """Intervals are written "(95% CI, n seeds)" or "(range, n seeds)", "(range, 1 seed)"
    (:func:`bplambda.verdicts.interval_kind`)."""
    labelled = re.compile(r"\((95% CI|range), (\d+) seeds?\)")
    for path in RESULTS.rglob("*"):
        if path.suffix not in (".md", ".csv") or "shards" in path.parts:
            continue
        for kind, seeds in labelled.findall(path.read_text()):
            assert (kind == "range") == (int(seeds) <= RANGE_ONLY), f"{path}: {kind}, {seeds} seeds"
