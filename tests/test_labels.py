"""Conditions are ordered, coloured and found by their labels, never by their display names."""

import numpy as np
import pandas as pd
import pytest

from bplambda.experiments import sequential_mnist
from bplambda.experiments.grids import grid_condition_list
from bplambda.experiments.options import _with_variants
from bplambda.labels import LABELS, condition_order, in_condition_order, named
from bplambda.plots import _palette


def _labels(*rows):
    return pd.DataFrame([dict(zip(LABELS, row)) for row in rows])


NAN = np.nan
GRID = _labels(
    ("RFLO", "rflo", NAN, NAN, "default"),
    ("SG(10)", "sg", NAN, 10, "default"),
    ("MDGL-type", "mdgl", NAN, NAN, "cell_type"),
    ("SG(2)", "sg", NAN, 2, "default"),
    ("BP(1) faithful", "bp_lambda", 1.0, NAN, "faithful"),
    ("BPTT", "bptt", NAN, NAN, "default"),
    ("BP(1)", "bp_lambda", 1.0, NAN, "default"),
    ("MDGL", "mdgl", NAN, NAN, "default"),
    ("BP(0.5)", "bp_lambda", 0.5, NAN, "default"),
)


def test_the_house_order_comes_from_family_number_and_variant():
    """SG(10) after SG(2) (numbers, not characters); a variant after its rule."""
    assert condition_order(GRID) == ["BP(0.5)", "BP(1)", "BP(1) faithful", "BPTT", "SG(2)",
                                     "SG(10)", "MDGL", "MDGL-type", "RFLO"]  # fmt: skip


def test_the_order_does_not_read_the_names():
    renamed = GRID.assign(condition=[f"c{i}" for i in range(len(GRID))])
    assert condition_order(renamed) == ["c8", "c6", "c4", "c5", "c3", "c1", "c7", "c2", "c0"]


def test_a_frame_without_labels_is_refused_with_what_to_keep():
    with pytest.raises(ValueError, match="variant"):
        condition_order(GRID.drop(columns="variant"))


def test_a_summary_gets_its_labels_and_order_from_the_run_table():
    summary = pd.DataFrame({"condition": ["SG(10)", "BP(1)", "SG(2)"], "mean": [3.0, 1.0, 2.0]})
    ordered = in_condition_order(summary, GRID)
    assert ordered.condition.tolist() == ["BP(1)", "SG(2)", "SG(10)"]
    assert ordered["mean"].tolist() == [1.0, 2.0, 3.0] and ordered.n.iloc[2] == 10


def test_named_finds_a_condition_by_its_labels():
    assert named(GRID, family="bp_lambda", lmbda=1.0, variant="faithful") == "BP(1) faithful"
    assert named(GRID, family="bp_lambda", lmbda=0.0) is None
    with pytest.raises(ValueError, match="several"):
        named(GRID, family="bp_lambda", lmbda=1.0)


def test_colours_follow_the_family():
    palette = _palette(GRID)
    assert palette["BPTT"] == (0.0, 0.0, 0.0)
    assert palette["MDGL"] != palette["MDGL-type"] and palette["SG(2)"] != palette["SG(10)"]
    assert set(palette) == set(GRID.condition)


def test_a_shard_table_from_before_variants_gets_them_from_the_config():
    cfg = sequential_mnist.config("smoke", lambdas=(1.0,), lstm_modes=("exact", "faithful"))
    old = pd.DataFrame({"condition": ["BP(1)", "BP(1) faithful", "BPTT"], "family": "x",
                        "lmbda": NAN, "n": NAN, "T": 28})  # fmt: skip
    table = _with_variants(old, cfg, grid_condition_list)
    assert table.columns.tolist() == ["condition", "family", "lmbda", "n", "variant", "T"]
    assert table.variant.tolist() == ["default", "faithful", "default"]
