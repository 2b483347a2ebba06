"""One module per notebook, each with the same names: ``Config`` (the notebook's parameters,
naming its notebook in ``NOTEBOOK``), ``DEFAULTS`` (per profile), ``config(profile,
**overrides)``, ``run(cfg)`` (the raw table; the resumable experiments take a
:class:`~bplambda.experiments.runs.StateStore` as well), ``tables(raw, cfg)`` and
``claims(tables, cfg)``. Notebook 01 has a second part with its own ``run_plastic`` and
``plastic_tables``. A notebook imports its module as ``experiment``:

    from bplambda.experiments import sequential_mnist as experiment
    cfg = experiment.config("quick")
    tables = experiment.tables(experiment.run(cfg, state_store(cfg)), cfg)
"""

from types import ModuleType

from bplambda.experiments import (
    copy_repeat_curriculum,
    generalisation,
    lambda_sweeps,
    sequential_mnist,
    toy_alignment,
)

EXPERIMENTS: dict[str, ModuleType] = {
    module.Config.NOTEBOOK: module
    for module in (toy_alignment, lambda_sweeps, sequential_mnist, copy_repeat_curriculum,
                   generalisation)
}  # fmt: skip
"""Each notebook's experiment module, by notebook name (e.g. ``"03_sequential_mnist"``)."""

__all__ = ["EXPERIMENTS"]
