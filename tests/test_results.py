"""Writing results: permissions, number formatting, figures."""

import os
import stat
import subprocess

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from bplambda.analysis import summary_markdown
from bplambda.experiments import copy_repeat_curriculum
from bplambda.results import CHECK_FIGURES_VARIABLE, markdown_table, save_figure, write_table


def test_result_files_get_the_users_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_table(pd.DataFrame({"a": [1]}), tmp_path, "t")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0o600


def test_markdown_table_keeps_significant_digits_of_small_and_large_values():
    table = pd.DataFrame({"v": [0.123456, 4.2e-5, 0.0, 123456.0, float("nan")]})
    cells = [line.strip("| ") for line in markdown_table(table).splitlines()[2:]]
    assert cells == ["0.123", "4.2e-05", "0.000", "1.23e+05", ""]


def test_markdown_table_of_nothing_reads_none_and_of_no_rows_keeps_its_header():
    """A table built from no rows has no columns, and ``|  |`` over ``||`` is no table."""
    assert markdown_table(pd.DataFrame([])) == "(none)"
    assert markdown_table(pd.DataFrame(columns=["a", "b"])) == "| a | b |\n|---|---|"


def test_save_figure_writes_png_and_svg_and_closes_the_figure(tmp_path):
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert save_figure(figure, tmp_path, "f") is figure
    assert not plt.fignum_exists(figure.number)
    assert (tmp_path / "f.png").stat().st_size > 1000 and (tmp_path / "f.svg").exists()


def test_a_task_with_no_finite_bound_gets_a_panel_that_says_so():
    from bplambda.plots import measured_vs_predicted

    rows = [
        {"task": task, "condition": condition, "family": family, "lmbda": float("nan"),
         "n": float("nan"), "variant": "default", "seed": seed, "metric": metric, "value": value}
        for task, c1_positive in (("bounded", True), ("unbounded", False))
        for condition, family in (("BPTT", "bptt"), ("e-prop", "eprop"))
        for seed in (0, 1)
        for metric, value in (("lambda_max_final", 50.0 + seed),
                              ("predicted_lambda_max", 80.0 if c1_positive else float("inf")))
    ]  # fmt: skip
    fig = measured_vs_predicted(pd.DataFrame(rows), "test")
    bounded, unbounded = fig.axes
    assert len(bounded.collections) == 1 and not unbounded.collections  # points, none
    assert "no finite bound" in unbounded.texts[0].get_text()
    labels = [t.get_text() for t in unbounded.get_legend().get_texts()]
    assert labels == ["BPTT", "e-prop"] and bounded.get_legend() is None
    plt.close(fig)


def test_each_claims_main_verdict_comes_from_the_strongest_budget_that_ran_it(tmp_path):
    from bplambda.results import build_summary, claims_by_budget

    def experiment(folder, verdicts):
        folder.mkdir(parents=True)
        (folder / "summary.md").write_text("summary")
        pd.DataFrame([{"experiment": "x", "claim": claim, "paper": "yes", "official_code": "",
                       "bplambda": f"numbers of {folder.parent.name}", "verdict": verdict}
                      for claim, verdict in verdicts.items()]).to_csv(folder / "claims.csv",
                                                                      index=False)  # fmt: skip

    experiment(tmp_path / "05_x", {"a": "indicative (2 seeds)", "b": "reproduced"})
    experiment(tmp_path / "medium" / "05_x", {"a": "reproduced", "c": "NOT reproduced"})
    experiment(tmp_path / "paper" / "05_x", {"c": "inconclusive (5 seeds)"})
    claims = claims_by_budget(tmp_path).set_index("claim")
    assert list(claims.index) == ["a", "b", "c"]  # quick's order, then the claims it lacks
    assert claims.loc["a", ["verdict", "budget"]].tolist() == ["reproduced", "medium"]
    assert claims.loc["a", "bplambda"] == "numbers of medium"
    assert claims.loc["a", ["verdict (quick)", "verdict (paper)"]].tolist() == [
        "indicative (2 seeds)", "not run"]  # fmt: skip
    assert claims.loc["b", ["verdict", "budget", "verdict (medium)"]].tolist() == [
        "reproduced", "quick", "not run"]  # fmt: skip
    only_stronger = ["verdict", "budget", "verdict (medium)", "verdict (quick)"]
    assert claims.loc["c", only_stronger].tolist() == [
        "inconclusive (5 seeds)", "paper", "NOT reproduced", "not run"]  # fmt: skip
    readme = build_summary(tmp_path).read_text()
    assert "| verdict | budget | verdict (quick) | verdict (medium) | verdict (paper) |" in readme
    assert "medium/README.md" in readme and "paper/README.md" in readme


def test_the_summary_settings_leave_out_where_a_run_was_written_and_merged_from():
    cfg = copy_repeat_curriculum.config(
        "smoke", merge_from=("/somewhere/shards/0-bptt",), save_raw=True
    )
    table = pd.DataFrame({"condition": ["BPTT"], "mean": [3.0]})
    text = summary_markdown("Copy-repeat", cfg, table)
    assert "seeds=" in text and "updates=" in text
    for plumbing in ("merge_from", "save_raw", "output_dir", "/somewhere"):
        assert plumbing not in text
    # which shards went in, by folder name: a merge of the finished ones may hold fewer seeds
    assert "Merged from the run tables of the shards 0-bptt." in text
    alone = summary_markdown("Copy-repeat", copy_repeat_curriculum.config("smoke"), table)
    assert "Merged" not in alone


def test_a_summary_says_which_code_made_it():
    from types import SimpleNamespace

    from bplambda.analysis import summary_markdown
    from bplambda.provenance import provenance

    cfg = SimpleNamespace(profile="smoke", device="cpu", jobs=2, seeds=(0,))
    made = provenance(cfg)
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()  # fmt: skip
    assert made["commit"] == (head or "unknown") and made["changes"] in (
        "clean", "uncommitted changes", "unknown")  # fmt: skip
    text = summary_markdown("t", cfg, pd.DataFrame({"a": [1]}))
    assert f"commit `{made['commit']}`" in text and "2 worker(s)" in text
    assert f"torch {made['torch']}" in text and "profile `smoke`" in text


def test_a_stamped_notebook_names_no_absolute_path_of_the_project():
    """Issue 24, item 4: papermill's metadata and injected cell held machine-absolute paths
    (``output_dir``, a merge's ``merge_from``); stamped, they are relative to the project. So
    are the paths in the cells' outputs (the displayed ``cfg``, a warning's source line), also
    where another checkout made them (a campaign's worktree); base64 images are left alone."""
    import json
    from types import SimpleNamespace

    from bplambda.paths import project_root
    from bplambda.provenance import stamp_notebook

    root = project_root()
    out, shard = root / "results" / "x", root / "results" / "x" / "shards" / "0-a"
    source = f"# Parameters\noutput_dir = \"{out}\"\nmerge_from = ['{shard}']\n"
    parameters = {"output_dir": str(out), "jobs": 1, "merge_from": [str(shard)]}
    shown = f"Config(data_root='/elsewhere/worktree/data', output_dir='{out}', ratio=1/2)"
    warning = ["/elsewhere/worktree/.venv/lib/torch/x.py:9: UserWarning: w\n", "results/y\n"]
    image = "iVBO/home/me/results/AAA="  # base64 may hold anything that looks like a path
    outputs = [
        {"output_type": "execute_result", "data": {"text/plain": shown, "image/png": image}},
        {"output_type": "stream", "name": "stderr", "text": warning},
    ]
    notebook = {"cells": [{"cell_type": "code", "metadata": {"tags": ["injected-parameters"]},
                           "source": source},
                          {"cell_type": "code", "metadata": {}, "source": "cfg",
                           "outputs": outputs}],
                "metadata": {"papermill": {"input_path": str(root / "notebooks" / "x.ipynb"),
                                           "parameters": parameters}}}  # fmt: skip
    stamped = stamp_notebook(notebook, out / "x.ipynb", SimpleNamespace(profile="smoke"), 1.0)
    assert str(root) not in json.dumps(stamped)
    parameters = stamped["metadata"]["papermill"]["parameters"]
    assert parameters == {"output_dir": "results/x", "jobs": 1,
                          "merge_from": ["results/x/shards/0-a"]}  # fmt: skip
    assert 'output_dir = "results/x"' in stamped["cells"][0]["source"]
    data = stamped["cells"][1]["outputs"][0]["data"]
    assert data["text/plain"] == "Config(data_root='data', output_dir='results/x', ratio=1/2)"
    assert data["image/png"] == image
    assert stamped["cells"][1]["outputs"][1]["text"] == [
        ".venv/lib/torch/x.py:9: UserWarning: w\n", "results/y\n"]  # fmt: skip


def test_save_figure_refuses_an_unreadable_figure_where_asked(tmp_path, monkeypatch):
    """With the check on (the smoke run's), a label off the canvas stops the save before a file
    is written; without it, the figure is saved as drawn."""

    def figure() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.set_ylabel("y", labelpad=400)  # pushed off the canvas's left edge
        return fig

    monkeypatch.setenv(CHECK_FIGURES_VARIABLE, "1")
    with pytest.raises(ValueError, match="'off'.*y label.*outside the canvas"):
        save_figure(figure(), tmp_path, "off")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.delenv(CHECK_FIGURES_VARIABLE)
    save_figure(figure(), tmp_path, "off")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["off.png", "off.svg"]


def test_the_divergence_note_names_each_diverged_seed_and_where_it_diverged():
    from types import SimpleNamespace

    from bplambda.analysis import divergence_note

    def rows(condition: str, seed: int, at: float | None, batches: int = 3) -> pd.DataFrame:
        return pd.DataFrame({"task": "seq_mnist", "condition": condition, "seed": seed,
                             "diverged": at is not None, "diverged_at": at,
                             "batch": range(batches)})  # fmt: skip

    runs = pd.concat([rows("BPTT", 0, None), rows("BPTT", 1, None), rows("BP(1)", 1, 1707.0),
                      rows("BP(1)", 0, 761.0), rows("BP(0)", 0, None)])  # fmt: skip
    keys = ["task", "condition"]
    assert divergence_note(runs, keys, step="iteration") == (
        "Diverged (the loss passed the divergence threshold; the model was frozen there and is "
        "left out of every mean): BP(1) (seq_mnist): 2 of 2 seeds (seed 0 at iteration 761, "
        "seed 1 at iteration 1,707).")  # fmt: skip
    assert divergence_note(runs[runs.condition != "BP(1)"], keys) == ""
    assert divergence_note(runs.drop(columns="diverged_at"), keys) == ""
    # a column that changes along a run (copy-repeat's T) is no key: one model, one count
    grown = rows("BP(1)", 0, 5.0).assign(T=[2, 3, 4])
    assert divergence_note(grown).endswith(": BP(1): 1 of 1 seeds (seed 0 at batch 5).")
    cfg = SimpleNamespace(profile="smoke", device="cpu", jobs=1)
    text = summary_markdown("t", cfg, runs.head(1), runs=runs, run_keys=keys)
    assert "BP(1) (seq_mnist): 2 of 2 seeds" in text
    assert "Diverged" not in summary_markdown("t", cfg, runs.head(1))
