"""Notebook parameters: papermill's forms are parsed, bad values stop the notebook in its first
code cell with one line, and nothing in an existing results folder is touched."""

from __future__ import annotations

import hashlib
import re
from dataclasses import fields as dataclass_fields
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import torch

from bplambda import reproduce
from bplambda.errors import ParameterError
from bplambda.experiments import (
    EXPERIMENTS,
    copy_repeat_curriculum,
    generalisation,
    sequential_mnist,
    toy_alignment,
)
from bplambda.experiments.options import ResumableOptions
from bplambda.parameters import injected_names, notebook_parameters
from bplambda.paths import project_path, project_root
from bplambda.profiles import PROFILES, RESULTS_ROOT_VARIABLE, results_folder
from bplambda.reproduce import NOTEBOOKS
from bplambda.sweep import SHARD_PARAMETERS

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        ("[0, 1, 2]", (0, 1, 2)),  # -p seeds "[0, 1, 2]" arrives as a string
        ([3, 4], (3, 4)),  # -y "seeds: [3, 4]"
        (3, (3,)),  # -p seeds 3: one seed
        ("5 6", (5, 6)),
    ],
)
def test_seeds_in_every_form_papermill_passes(given, parsed):
    assert toy_alignment.config("smoke", seeds=given).seeds == parsed


def test_lists_of_numbers_and_names_in_every_form():
    assert toy_alignment.config("smoke", lambdas=0.5).lambdas == (0.5,)
    assert toy_alignment.config("smoke", lambdas="[0, 0.5, 1]").lambdas == (0.0, 0.5, 1.0)
    assert toy_alignment.config("smoke", windows="2").windows == (2,)
    cfg = copy_repeat_curriculum.config(
        "smoke", lstm_modes="[exact, faithful]", rules="bptt, bp_lambda"
    )
    assert cfg.lstm_modes == ("exact", "faithful") and cfg.rules == ("bptt", "bp_lambda")
    assert copy_repeat_curriculum.config("smoke", lstm_modes="exact").lstm_modes == ("exact",)


@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        ({"seeds": "["}, "seeds='['"),
        ({"seeds": []}, "seeds=[]"),
        ({"seeds": [0, 0]}, "distinct"),
        ({"seeds": [0.5]}, "seeds=[0.5]"),
        ({"seeds": ["a"]}, "seeds=['a']"),
        ({"seeds": True}, "seeds=True"),
        ({"epochs": 0}, "epochs=0"),
        ({"epochs": -2}, "epochs=-2"),
        ({"epochs": 1.5}, "epochs=1.5"),
        ({"lambdas": [0, 1.5]}, "lambdas=[0, 1.5]"),
        ({"gamma": 0}, "gamma=0"),
        ({"gamma": 1.1}, "gamma=1.1"),
        ({"windows": [0]}, "windows=[0]"),
        ({"lr_synthesiser": -1}, "lr_synthesiser=-1"),
        ({"divergence_threshold": 0}, "divergence_threshold=0"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"lambda_values": [0.5]}, "lambda_values=[0.5]"),
    ],
)
def test_a_bad_value_names_parameter_value_and_what_is_allowed(overrides, shown):
    with pytest.raises(ParameterError) as info:
        toy_alignment.config("smoke", **overrides)
    message = str(info.value)
    assert shown in message and "\n" not in message
    assert "pass" in message or "choose" in message or "its parameters are" in message


def test_grids_refuse_a_rule_without_its_values_and_unknown_names():
    with pytest.raises(ParameterError, match="windows=.*'sg', 'tbptt'"):
        copy_repeat_curriculum.config("smoke", windows=[])
    with pytest.raises(ParameterError, match="rules=.*'rtrl'"):
        copy_repeat_curriculum.config("smoke", rules=["bptt", "rtrl"])
    with pytest.raises(ParameterError, match="lstm_modes=.*exact"):
        copy_repeat_curriculum.config("smoke", lstm_modes=["fast"])
    with pytest.raises(ParameterError, match="implementation='magic'"):
        copy_repeat_curriculum.config("smoke", implementation="magic")
    with pytest.raises(ParameterError, match="profile='fast'"):
        copy_repeat_curriculum.config("fast")
    assert copy_repeat_curriculum.config("smoke", rules=["bptt"], windows=[]).rules == ("bptt",)


def test_a_config_field_without_a_check_is_refused():
    from dataclasses import dataclass

    from bplambda.checks import checked, positive_int, validate

    @dataclass(frozen=True)
    class Config:
        epochs: int = checked(positive_int, 1)
        unchecked: int = 0

    assert validate(Config, {"epochs": "3"}) == {"epochs": 3}
    with pytest.raises(TypeError, match="no check for \\['unchecked'\\]"):
        validate(Config, {"epochs": 3, "unchecked": 1})


def test_every_config_field_has_a_validator_and_every_profile_is_valid():
    for experiment in EXPERIMENTS.values():
        build, config, profiles = experiment.config, experiment.Config, experiment.DEFAULTS
        assert {"smoke", "quick", "paper"} <= set(profiles) <= set(PROFILES)
        for profile in profiles:
            build(profile)  # configure validates every field, defaults included
        for profile in set(PROFILES) - set(profiles):
            with pytest.raises(ParameterError, match=f"{config.NOTEBOOK} has the profiles"):
                build(profile)


def test_reproduce_refuses_a_notebook_named_without_the_profile(capsys):
    assert tuple(EXPERIMENTS["01_toy_alignment"].DEFAULTS) == ("smoke", "quick", "paper")
    assert reproduce.main(["--profile", "medium", "--only", "01"]) == 2
    assert "no medium profile" in capsys.readouterr().err


def test_the_missing_data_message_says_how_to_get_mnist(tmp_path):
    with pytest.raises(ParameterError) as info:
        sequential_mnist.config("smoke", data_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert "data_dir=" in message and "nowhere" in message and "\n" not in message
    assert "copy the four files" in message and "internet" in message
    assert not (tmp_path / "nowhere" / "MNIST").exists()  # no empty folder left behind


def test_papermill_injected_names_are_read_from_the_history():
    history = ["profile = 'quick'\nseeds = None", "# Parameters\nprofile = 'smoke'\nlamdas = 1\n"]
    assert injected_names(history) == {"profile", "lamdas"}
    assert injected_names(history[:1]) == set()
    namespace = {"In": history, "profile": "smoke", "lamdas": 1, "seeds": None}
    with pytest.raises(ParameterError, match=r"lamdas=1 is not a parameter of this notebook "
                       r"\(did you mean 'lambdas'\?\); its parameters are \["):  # fmt: skip
        notebook_parameters(namespace, toy_alignment.Config)
    singular = {"In": ["# Parameters\ntask = 'delayed_match'\n"], "task": "delayed_match"}
    with pytest.raises(ParameterError, match=r"\(did you mean 'tasks'\?\)"):
        notebook_parameters(singular, generalisation.Config)
    far = {"In": ["# Parameters\nxyzzy = 1\n"], "xyzzy": 1}
    with pytest.raises(ParameterError, match=r"xyzzy=1 is not a parameter of this notebook; "):
        notebook_parameters(far, toy_alignment.Config)  # nothing near: no guess
    namespace["In"] = history[:1]  # JupyterLab: no injected cell, nothing to refuse
    assert notebook_parameters(namespace, toy_alignment.Config) == {
        "profile": "smoke",
        "seeds": None,
    }


def test_relative_paths_resolve_against_the_project_wherever_the_kernel_starts(tmp_path):
    assert project_root(ROOT / "notebooks") == ROOT
    assert project_path("results/x", ROOT / "notebooks") == ROOT / "results" / "x"
    assert project_path(tmp_path / "abs") == tmp_path / "abs"
    assert project_root(tmp_path) == tmp_path  # no project above: the folder itself


def _notebooks_and_config_fields() -> list[tuple[Path, set[str]]]:
    """Every notebook with its config's fields."""
    configs = {config.NOTEBOOK[:2]: config for config in (e.Config for e in EXPERIMENTS.values())}
    assert sorted(configs) == sorted(n.stem[:2] for n in NOTEBOOKS.glob("*.ipynb"))
    return [(notebook, set(configs[notebook.stem[:2]].__dataclass_fields__))
            for notebook in sorted(NOTEBOOKS.glob("*.ipynb"))]  # fmt: skip


def test_every_notebook_parameter_is_a_config_field():
    for notebook, fields in _notebooks_and_config_fields():
        nb = nbformat.read(notebook, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        names = injected_names(["# Parameters\n" + cell.source])
        assert names <= fields, (notebook.name, names - fields)


def test_every_notebooks_profile_comment_names_the_profiles_it_has():
    """The ``profile = ...  # "smoke" (seconds), ...`` comment lists the experiment's profiles
    (notebooks 03 and 04 left out their ``medium``)."""
    for name, experiment in EXPERIMENTS.items():
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        line = next(line for line in cell.source.splitlines() if line.startswith("profile ="))
        listed = re.findall(r'"(\w+)"', line.partition("#")[2])
        assert listed == list(experiment.DEFAULTS), (name, listed)


def test_every_notebook_declares_the_settings_every_config_shares():
    """Papermill warns "Passed unknown parameter" of a name its reading of the parameters cell
    lacks (``-p dtype float64`` read like a fault); only a sweep's own options are left out,
    on purpose (:data:`bplambda.sweep.SHARD_PARAMETERS`)."""
    shared = {f.name for f in dataclass_fields(ResumableOptions)} - set(SHARD_PARAMETERS)
    for notebook, fields in _notebooks_and_config_fields():
        unknown_to_papermill = shared & fields - set(pm.inspect_notebook(str(notebook)))
        assert not unknown_to_papermill, (notebook.name, unknown_to_papermill)


# ----------------------------------------------------------------------------- via papermill
def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


BAD_RUNS = [
    ("01_toy_alignment", {"profile": "fast"}, "profile='fast'"),
    ("01_toy_alignment", {"seeds": []}, "seeds=[]"),
    ("01_toy_alignment", {"seeds": "[0, 1"}, "seeds='[0, 1'"),
    ("01_toy_alignment", {"seeds": {"a": 1}}, "seeds={'a': 1}"),
    ("01_toy_alignment", {"seeds": [0, "x"]}, "seeds=[0, 'x']"),
    ("01_toy_alignment", {"epochs": 0}, "epochs=0"),
    ("02_lambda_sweeps", {"epochs": -1}, "epochs=-1"),
    ("04_copy_repeat", {"updates": 0}, "updates=0"),
    ("01_toy_alignment", {"lambdas": [0.5, 2]}, "lambdas=[0.5, 2]"),
    ("02_lambda_sweeps", {"gamma": 1.5}, "gamma=1.5"),
    ("04_copy_repeat", {"windows": [0, 2]}, "windows=[0, 2]"),
    ("04_copy_repeat", {"rules": ["bptt", "rtrl"]}, "rules=['bptt', 'rtrl']"),
    ("03_sequential_mnist", {"lstm_modes": ["fast"]}, "lstm_modes=['fast']"),
    ("03_sequential_mnist", {"implementation": "magic"}, "implementation='magic'"),
    ("01_toy_alignment", {"lambda_values": [0.5]}, "lambda_values=[0.5] is not a parameter"),
]
if not torch.cuda.is_available():
    BAD_RUNS.append(("01_toy_alignment", {"device": "cuda"}, "CUDA is not available"))


def _run_bad(tmp_path: Path, notebook: str, parameters: dict) -> pm.PapermillExecutionError:
    """Run ``notebook`` (smoke) into an existing results folder; return papermill's error."""
    results = tmp_path / "results" / notebook
    results.mkdir(parents=True)
    (results / "final.csv").write_text("condition,value\nBP(1),0.93\n")
    before = _snapshot(results)
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(
            str(NOTEBOOKS / f"{notebook}.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"profile": "smoke", "output_dir": str(results), **parameters},
            cwd=str(ROOT), kernel_name="python3", progress_bar=False,
        )  # fmt: skip
    assert _snapshot(results) == before
    return info.value


@pytest.mark.parametrize(("notebook", "parameters", "shown"), BAD_RUNS,
                         ids=[f"{n[:2]}-{next(iter(p))}" for n, p, _ in BAD_RUNS])  # fmt: skip
@pytest.mark.slow
def test_a_bad_papermill_parameter_stops_the_first_code_cell_in_one_line(
    tmp_path, notebook, parameters, shown
):
    error = _run_bad(tmp_path, notebook, parameters)
    assert error.ename == "ParameterError"
    assert shown in error.evalue and "\n" not in error.evalue
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    injected = next(k for k, c in enumerate(code) if "injected-parameters" in c.metadata.tags)
    failed = code[injected + 1]  # the notebook's first own code cell after its parameters
    assert failed.execution_count == error.exec_count == injected + 2
    assert "notebook_parameters(" in failed.source
    assert all(c.execution_count is None for c in code[injected + 2 :])  # nothing ran after
    traceback = failed.outputs[-1]["traceback"]
    assert len(traceback) == 1 and shown in traceback[0]  # one line, also in JupyterLab


@pytest.mark.slow
def test_a_data_dir_without_mnist_says_how_to_get_it(tmp_path):
    error = _run_bad(tmp_path, "03_sequential_mnist", {"data_dir": str(tmp_path / "empty")})
    assert error.ename == "MissingMNISTError"  # a ParameterError and a FileNotFoundError
    assert "data_dir=" in error.evalue and "copy the four files" in error.evalue


def test_make_lab_writes_its_results_apart_from_the_committed_ones(monkeypatch):
    """JupyterLab's runs go under results/lab/ (git-ignored): `make lab` sets the variable."""
    monkeypatch.setenv(RESULTS_ROOT_VARIABLE, "results/lab")
    assert results_folder("quick") == Path("results/lab")
    assert results_folder("medium") == Path("results/lab/medium")
    monkeypatch.delenv(RESULTS_ROOT_VARIABLE)
    assert results_folder("quick") == Path("results")
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    lab = makefile.split("\nlab:")[1].split("\n\n")[0]
    assert f"{RESULTS_ROOT_VARIABLE}=results/lab" in lab
    ignored = (Path(__file__).resolve().parent.parent / ".gitignore").read_text().split()
    assert "results/lab/" in ignored
