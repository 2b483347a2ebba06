"""Every notebook runs through papermill in the smoke profile and writes its outputs."""

import json
import logging
import os
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from unittest import mock

import nbformat
import pandas as pd
import papermill as pm
import pytest
from conftest import assert_same_tables

from bplambda import reproduce, sweep
from bplambda.compare_results import differences
from bplambda.core_slots import SLOTS_VARIABLE
from bplambda.experiments.options import ShardOptions
from bplambda.results import CHECK_FIGURES_VARIABLE, build_summary

pytestmark = pytest.mark.slow  # every test here runs notebooks through papermill

NOTEBOOKS = reproduce.notebooks()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every notebook's smoke run, each figure checked for layout problems as it is saved
    (the kernels inherit the variable)."""
    root = tmp_path_factory.mktemp("results")
    with mock.patch.dict(os.environ, {CHECK_FIGURES_VARIABLE: "1"}):
        for notebook in NOTEBOOKS:
            reproduce.run_notebook(notebook, root / notebook.stem, "smoke")
    build_summary(root)
    return root


def _empty_by_design(csv: Path) -> bool:
    """Notebook 05's ``matched.csv`` is empty when no run learns (smoke's 4 iterations: none
    falls to 80% of chance or of its start), as its ``matched_runs.csv`` beside it says."""
    runs = csv.with_name("matched_runs.csv")
    return csv.name == "matched.csv" and runs.exists() and not pd.read_csv(runs).learns.any()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_writes_tables_figures_and_summary(smoke_results, notebook):
    folder = smoke_results / notebook.stem
    assert (folder / notebook.name).stat().st_size > 0
    csvs = list(folder.glob("*.csv"))
    assert len(csvs) >= 2
    for csv in csvs:
        assert len(pd.read_csv(csv)) > 0 or _empty_by_design(csv), csv.name
    pngs = list(folder.glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)
    assert {p.stem for p in pngs} == {p.stem for p in folder.glob("*.svg")}
    assert (folder / "summary.md").read_text().strip()
    # every saved figure is also shown in the notebook, although save_figure closed it
    executed = nbformat.read(folder / notebook.name, as_version=4)
    shown = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
             if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(shown) == len(pngs)


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


def _notebook_folder(tmp_path, monkeypatch, bodies: dict[str, str]):
    """A notebooks folder of small notebooks (name → the code after the parameters cell) that
    `reproduce` runs in place of the project's."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, body in bodies.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        params = nbformat.v4.new_code_cell("profile = 'smoke'\noutput_dir = '.'\njobs = 1")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(body)]
        nbformat.write(nb, folder / f"{name}.ipynb")
    monkeypatch.setattr(reproduce, "NOTEBOOKS", folder)
    monkeypatch.setattr(reproduce, "FAILED", tmp_path / "failed")


def test_a_failing_notebook_is_named_with_its_cell(tmp_path, monkeypatch, capsys):
    _notebook_folder(tmp_path, monkeypatch, {"99_broken": "raise ValueError('broken on purpose')"})
    out = tmp_path / "out"
    code = reproduce.main(["--profile", "smoke", "--results-dir", str(out), "--jobs", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "99_broken.ipynb" in err and "ValueError" in err and "broken on purpose" in err
    assert len(err.strip().splitlines()) <= 2  # no traceback
    assert (tmp_path / "failed" / "99_broken.ipynb").exists()
    assert not (out / "99_broken" / "99_broken.ipynb").exists()  # results folder untouched


def test_two_notebooks_run_at_once_sharing_the_core_slots(tmp_path, monkeypatch, capsys):
    """With two jobs two notebooks run side by side, their kernels see the shared core slots;
    one that fails lets the one beside it finish and no later one starts."""
    report = "import os, time\ntime.sleep(3)\nprint('slots', os.environ.get('{}'))"
    _notebook_folder(tmp_path, monkeypatch, {
        "01_beside": report.format(SLOTS_VARIABLE),
        "02_broken": "raise ValueError('broken on purpose')",
        "03_after": "print('ran')",
    })  # fmt: skip
    out = tmp_path / "out"
    assert reproduce.main(["--profile", "smoke", "--results-dir", str(out), "--jobs", "2"]) == 1
    captured = capsys.readouterr()
    assert "02_broken.ipynb" in captured.err and "broken on purpose" in captured.err
    slots = [line for line in captured.out.splitlines() if "slots" in line]
    assert slots and slots[0].startswith("  01_beside: slots ") and "None" not in slots[0]
    assert (out / "01_beside" / "01_beside.ipynb").exists()
    assert not (out / "03_after").exists() and "03_after" not in captured.out


def test_a_subset_of_notebooks_by_number():
    assert [p.stem[:2] for p in reproduce.notebooks(["01", "03"])] == ["01", "03"]
    assert [p.stem for p in reproduce.notebooks(["02_lambda_sweeps"])] == ["02_lambda_sweeps"]
    with pytest.raises(ValueError, match="07"):
        reproduce.notebooks(["07"])


def test_the_same_seed_gives_the_same_tables_on_two_workers(smoke_results, tmp_path):
    """Run again on two worker processes (the fixture ran on one, in the kernel): every table
    is the same."""
    notebook = NOTEBOOKS[1]  # 02_lambda_sweeps: the cheapest smoke run, with 8 conditions
    again = tmp_path / notebook.stem
    reproduce.run_notebook(notebook, again, "smoke", {"jobs": 2})
    assert "8 units of work on 2 workers" in (again / notebook.name).read_text()
    assert differences(smoke_results / notebook.stem, again, rtol=1e-5) == []


def _documented_papermill_examples() -> list[str]:
    """The commands of docs/reproducing.md's papermill example block (between its markers)."""
    guide = (ROOT / "docs" / "reproducing.md").read_text()
    block = guide.split("<!-- papermill-examples -->")[1].split("<!-- /papermill-examples -->")[0]
    code = block.split("```bash")[1].split("```")[0].replace("\\\n", " ")
    return [line.strip() for line in code.splitlines() if line.strip().startswith(".venv/")]


def test_the_documented_papermill_examples_run(tmp_path):
    commands = _documented_papermill_examples()
    assert len(commands) >= 2 and any(" -y " in c for c in commands)
    for k, command in enumerate(commands):
        args = shlex.split(command)
        assert args[0] == ".venv/bin/papermill"
        folder = tmp_path / str(k)
        folder.mkdir()
        args = [sys.executable, "-m", "papermill", args[1], str(folder / "out.ipynb"), *args[3:],
                "-p", "output_dir", str(folder), "--no-progress-bar"]  # fmt: skip
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert (folder / "summary.md").exists()
    toy = pd.read_csv(tmp_path / "0" / "final.csv")
    assert set(toy.condition) >= {"BP(1)"} and "BP(0.5)" not in set(toy.condition)


def test_unknown_profile_or_parameter_is_refused():
    from bplambda.experiments import toy_alignment

    with pytest.raises(ValueError, match="profile"):
        toy_alignment.config("fast")
    with pytest.raises(ValueError, match="lambda_values"):
        toy_alignment.config("smoke", lambda_values=[0.5])


def test_a_sweep_of_notebook_01_in_two_shards_gives_the_tables_of_one_run(tmp_path):
    # float64: one seed alone and two stacked differ in float32 rounding (~1e-5 after training).
    # Shard seed0 runs serially here, seed1 through submitit's local executor, and the sweep
    # folder is moved before the merge (the record keeps the shard folders relative to it).
    out, moved, single = tmp_path / "sweep", tmp_path / "moved", tmp_path / "single"
    options = ["01", "--profile", "smoke", "--shard-by", "seeds", "--output-dir", str(out),
               "-p", "dtype", "float64"]  # fmt: skip
    assert sweep.main([*options, "--executor", "serial", "--shards", "seed0"]) == 0
    assert not (out / "shards" / "1-seed1").exists() and not list(out.glob("*.csv"))
    assert sweep.main([*options, "--executor", "local", "--time", "10", "--cpus", "1",
                       "--shards", "seed1", "--wait"]) == 0  # fmt: skip
    assert not list(out.glob("*.csv"))  # a part of the sweep is never merged by itself
    record = json.loads((out / "sweep.json").read_text())
    assert [(s["folder"], s["parameters"]["seeds"], s["parameters"]["plastic_seeds"])
            for s in record["shards"]] == [("shards/0-seed0", [0], [0]),
                                           ("shards/1-seed1", [1], [1])]  # fmt: skip
    out.rename(moved)
    assert sweep.main(["merge", str(moved)]) == 0
    reproduce.run_notebook(NOTEBOOKS[0], single, "smoke", {"dtype": "float64"})
    assert_same_tables(moved, single)
    assert {p.stem for p in moved.glob("*.png")} == {p.stem for p in single.glob("*.png")}


def test_a_sweep_refuses_an_unknown_shard_and_a_folder_of_another_sweep(tmp_path, capsys):
    options = ["01", "--profile", "smoke", "--shard-by", "seeds", "--output-dir", str(tmp_path),
               "--executor", "serial"]  # fmt: skip
    assert sweep.main([*options, "--shards", "seed7"]) == 2
    assert "'seed7' is not a shard of this sweep; its shards are" in capsys.readouterr().err
    # -p values are typed as papermill's -p types them (a bool parameter was refused as 'True')
    assert [sweep.cli_value(v) for v in ("True", "None", "50", "1e-3", "[0, 1]")] == [
        True, None, 50, 1e-3, "[0, 1]"]  # fmt: skip
    typed = ["04", "--profile", "smoke", "--shard-by", "conditions", "--shards", "x",
             "-p", "compile_step", "True", "-p", "updates", "5",
             "--output-dir", str(tmp_path / "typed")]  # fmt: skip
    assert sweep.main(typed) == 2
    assert "'x' is not a shard of this sweep" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()
    (tmp_path / "sweep.json").write_text(json.dumps(
        {"notebook": "01_toy_alignment", "profile": "smoke", "parameters": {"seeds": "[5]"},
         "shard_by": "seeds", "shards": []}))  # fmt: skip
    assert sweep.main([*options, "--shards", "seed0"]) == 2
    assert "holds a sweep of other settings" in capsys.readouterr().err
    assert not (tmp_path / "shards").exists()


def test_a_sweep_record_is_renamed_into_place_so_shards_started_together_never_read_half(
    tmp_path, monkeypatch
):
    # Two shards launched at once into one folder each write sweep.json; written in place, one
    # read the other's truncated file and stopped with "Expecting value: line 1 column 1".
    renamed, rename = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(Path(b)), rename(a, b)))
    record = {"notebook": "01_toy_alignment", "profile": "smoke", "parameters": {},
              "shard_by": "seeds", "shards": []}  # fmt: skip
    folder = tmp_path / "sweep"
    sweep.write_record(folder, record)
    sweep.write_record(folder, record)  # the second shard: same settings, accepted
    assert renamed == [folder / sweep.RECORD] * 2
    assert json.loads((folder / sweep.RECORD).read_text()) == record
    assert [p.name for p in folder.iterdir()] == [sweep.RECORD]  # no temporary file left


def test_papermill_does_not_warn_of_the_parameters_a_sweep_sets(caplog):
    assert set(sweep.SHARD_PARAMETERS) == {f.name for f in fields(ShardOptions)}
    sweep.quiet_shard_parameters()
    sweep.quiet_shard_parameters()  # once is enough: no second filter
    assert len(logging.getLogger("papermill").filters) == 1
    with caplog.at_level(logging.WARNING, logger="papermill"):
        for name in ("save_raw", "merge_from", "lamdas"):
            logging.getLogger("papermill").warning(f"Passed unknown parameter: {name}")
    assert [r.getMessage() for r in caplog.records] == ["Passed unknown parameter: lamdas"]


def test_shards_split_the_rules_or_deal_out_the_seeds_and_refuse_what_cannot_be_split():
    by_rule = sweep.shard_parameters("04_copy_repeat", "smoke", {"windows": "[2, 5]"},
                                     "conditions")  # fmt: skip
    assert [name for name, _ in by_rule] == ["bptt", "tbptt", "sg", "bp_lambda", "oracle"]
    assert all(p["windows"] == "[2, 5]" and len(p["rules"]) == 1 for _, p in by_rule)
    seeds = {"seeds": [3, 4], "plastic_seeds": [0, 1, 2]}
    by_seed = sweep.shard_parameters("01_toy_alignment", "smoke", seeds, "seeds")
    assert [(n, p["seeds"], p["plastic_seeds"]) for n, p in by_seed] == [
        ("seed3", [3], [0, 2]), ("seed4", [4], [1])]  # fmt: skip
    both = sweep.shard_parameters("03_sequential_mnist", "smoke", {"seeds": "[0, 1, 2]",
                                  "rules": "[bptt, sg]"}, "conditions-seeds", 2)  # fmt: skip
    assert [(n, p["rules"], p["seeds"]) for n, p in both] == [
        ("bptt-seeds0-2", ["bptt"], [0, 2]), ("bptt-seed1", ["bptt"], [1]),
        ("sg-seeds0-2", ["sg"], [0, 2]), ("sg-seed1", ["sg"], [1])]  # fmt: skip
    with pytest.raises(ValueError, match="--seed-groups 4 is invalid"):
        sweep.shard_parameters("03_sequential_mnist", "smoke", {}, "conditions-seeds", 4)
    with pytest.raises(ValueError, match="has no 'rules'"):
        sweep.shard_parameters("01_toy_alignment", "smoke", {}, "conditions")
    with pytest.raises(ValueError, match="plastic_seeds"):
        sweep.shard_parameters("01_toy_alignment", "smoke", {"plastic_seeds": [0]}, "seeds")
    with pytest.raises(ValueError, match="lambda_values"):
        sweep.shard_parameters("01_toy_alignment", "smoke", {"lambda_values": [1]}, "seeds")


def test_papermill_runs_have_progress_bars_off(tmp_path, monkeypatch):
    """An executed notebook would keep every redraw of a progress bar: `reproduce` turns them
    off (a notebook's own ``progress`` still wins where a caller passes it)."""
    seen = []

    def execute(source, output, parameters, **options):
        seen.append(parameters)
        Path(output).write_text("{}")  # papermill leaves the partly executed copy
        raise pm.PapermillExecutionError(0, 1, "stop", "Stop", "here", [])

    monkeypatch.setattr(reproduce.pm, "execute_notebook", execute)
    monkeypatch.setattr(reproduce, "FAILED", tmp_path / "failed")
    (tmp_path / "x.ipynb").write_text("{}")
    for given in ({}, {"progress": True}):
        with pytest.raises(pm.PapermillExecutionError):
            reproduce.run_notebook(tmp_path / "x.ipynb", tmp_path / "out", "smoke", given)
    assert [p["progress"] for p in seen] == [False, True]
