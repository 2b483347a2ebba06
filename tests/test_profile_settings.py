"""The table of what each profile runs, read from an experiment's DEFAULTS."""

from dataclasses import dataclass

from bplambda.experiments import EXPERIMENTS
from bplambda.experiments.options import ExperimentConfig
from bplambda.experiments.profile_settings import profile_settings


@dataclass(frozen=True, kw_only=True)
class _Config(ExperimentConfig):
    profile: str
    seeds: tuple[int, ...]
    epochs: int
    hidden_size: int = 30
    gamma: float = 1.0


DEFAULTS = {
    "smoke": {"seeds": (0,), "epochs": 2, "hidden_size": 8, "progress": False},
    "paper": {"seeds": (0, 1, 2), "epochs": 10_000},
}


def test_each_profile_shows_what_it_runs_and_the_default_where_it_sets_nothing():
    table = profile_settings(_Config, DEFAULTS).set_index("setting")
    assert list(table.columns) == ["smoke", "paper"]
    assert list(table.index) == ["seeds", "epochs", "hidden_size"]  # field order; gamma: unset
    assert table.loc["seeds"].tolist() == ["0", "0, 1, 2"]
    assert table.loc["epochs"].tolist() == ["2", "10,000"]
    assert table.loc["hidden_size"].tolist() == ["8", "30"]  # paper: the config's own default


def test_how_a_run_is_carried_out_is_left_out_of_every_notebooks_table():
    for module in EXPERIMENTS.values():
        table = profile_settings(module.Config, module.DEFAULTS)
        assert list(table.columns) == ["setting", *module.DEFAULTS]
        assert "progress" not in set(table.setting) and "seeds" in set(table.setting)
