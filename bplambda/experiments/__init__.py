"""One module per notebook, each owning its config (profile defaults), conditions, runs, tables
and claims; :mod:`~bplambda.experiments.runs` holds what they share. A notebook imports this
package as ``ex`` and calls e.g. ``ex.toy_config(...)``, ``ex.run_toy_alignment(cfg)`` and
``ex.toy_tables(table, cfg)``.
"""

from bplambda.experiments.conditions import Condition
from bplambda.experiments.copy_repeat_curriculum import (
    COPY_DEFAULTS,
    CopyRepeatConfig,
    copy_repeat_claims,
    copy_repeat_config,
    copy_repeat_tables,
    run_copy_repeat,
)
from bplambda.experiments.generalisation import (
    GENERALISATION_DEFAULTS,
    GeneralisationConfig,
    generalisation_claims,
    generalisation_config,
    generalisation_tables,
    run_generalisation,
)
from bplambda.experiments.grids import GRID_RULES
from bplambda.experiments.lambda_sweeps import (
    LAMBDA_SWEEP_DEFAULTS,
    LambdaSweepConfig,
    by_length_table,
    lambda_sweep_claims,
    lambda_sweep_config,
    lambda_sweep_tables,
    run_lambda_sweep,
)
from bplambda.experiments.runs import StateStore, run_condition, state_store
from bplambda.experiments.sequential_mnist import (
    MNIST_DEFAULTS,
    MNISTConfig,
    mnist_claims,
    mnist_config,
    mnist_tables,
    run_mnist,
)
from bplambda.experiments.toy_alignment import (
    TOY_DEFAULTS,
    ToyConfig,
    plastic_tables,
    run_toy_alignment,
    run_toy_plastic,
    toy_claims,
    toy_config,
    toy_tables,
)

CONFIGS = (ToyConfig, LambdaSweepConfig, MNISTConfig, CopyRepeatConfig, GeneralisationConfig)
"""Every notebook's config type (each names its notebook in ``NOTEBOOK``)."""
NOTEBOOK_PROFILES = {
    config.NOTEBOOK: tuple(defaults)
    for config, defaults in zip(CONFIGS, (TOY_DEFAULTS, LAMBDA_SWEEP_DEFAULTS, MNIST_DEFAULTS,
                                          COPY_DEFAULTS, GENERALISATION_DEFAULTS))
}  # fmt: skip
"""The profiles each notebook defines (every one has smoke, quick and paper)."""
BUILDERS = dict(
    zip(
        (c.NOTEBOOK for c in CONFIGS),
        (toy_config, lambda_sweep_config, mnist_config, copy_repeat_config, generalisation_config),
    )
)
"""Each notebook's config builder: ``BUILDERS[name](profile, **parameters)``."""

__all__ = [
    "BUILDERS", "CONFIGS", "GRID_RULES", "NOTEBOOK_PROFILES", "Condition", "CopyRepeatConfig",
    "GeneralisationConfig", "MNISTConfig", "LambdaSweepConfig", "generalisation_claims",
    "generalisation_config", "generalisation_tables", "run_generalisation",
    "ToyConfig", "by_length_table", "copy_repeat_claims", "copy_repeat_config",
    "copy_repeat_tables", "mnist_claims", "mnist_config", "mnist_tables", "plastic_tables",
    "StateStore", "state_store", "run_condition", "run_copy_repeat", "run_lambda_sweep",
    "run_mnist", "run_toy_alignment", "run_toy_plastic", "lambda_sweep_claims",
    "lambda_sweep_config", "lambda_sweep_tables", "toy_claims", "toy_config", "toy_tables",
]  # fmt: skip
