"""Every notebook runs through papermill in the smoke profile and writes its outputs."""

from pathlib import Path

import nbformat
import pandas as pd
import pytest

from bplambda import reproduce
from bplambda.results import build_summary

NOTEBOOKS = reproduce.notebooks()


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for notebook in NOTEBOOKS:
        reproduce.run_notebook(notebook, root / notebook.stem, "smoke")
    build_summary(root)
    return root


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_writes_tables_figures_and_summary(smoke_results, notebook):
    folder = smoke_results / notebook.stem
    assert (folder / notebook.name).stat().st_size > 0
    csvs = list(folder.glob("*.csv"))
    assert len(csvs) >= 2
    for csv in csvs:
        assert len(pd.read_csv(csv)) > 0, csv.name
    pngs = list(folder.glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)
    assert {p.stem for p in pngs} == {p.stem for p in folder.glob("*.svg")}
    assert (folder / "summary.md").read_text().strip()


def test_summary_readme_gathers_every_experiment(smoke_results):
    readme = (smoke_results / "README.md").read_text()
    for notebook in NOTEBOOKS:
        assert f"## {notebook.stem}" in readme
    assert "| experiment | claim | paper | official_code | bplambda | verdict |" in readme


def test_smoke_toy_run_shows_the_claim_in_miniature(smoke_results):
    final = pd.read_csv(smoke_results / "01_toy_alignment" / "final.csv")
    align = final[final.metric == "alignment_synthetic"].set_index("condition")["mean"]
    assert align["BP(1)"] > align["BP(0)"]


def test_committed_notebooks_have_parameters_and_no_outputs():
    for notebook in NOTEBOOKS:
        nb = nbformat.read(notebook, as_version=4)
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        assert any("parameters" in t for t in tags), notebook.name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), notebook.name


def test_a_failing_notebook_is_named_with_its_cell(tmp_path, monkeypatch, capsys):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell("profile = 'smoke'\noutput_dir = '.'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("raise ValueError('broken on purpose')")]
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(nb, folder / "99_broken.ipynb")
    monkeypatch.setattr(reproduce, "NOTEBOOKS", folder)
    code = reproduce.main(["--profile", "smoke", "--results-dir", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "99_broken.ipynb" in err and "ValueError" in err and "broken on purpose" in err


def test_unknown_profile_or_parameter_is_refused():
    from bplambda.experiments import toy_config

    with pytest.raises(ValueError, match="profile"):
        toy_config("fast")
    with pytest.raises(ValueError, match="lambda_values"):
        toy_config("smoke", lambda_values=[0.5])
